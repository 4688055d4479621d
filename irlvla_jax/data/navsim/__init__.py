"""NAVSIM adapter: NAVSIM log frames (+ map layers) -> Scene records; predictions -> a submission pickle.

Everything here is numpy. The NAVSIM devkit (``navsim`` + ``nuplan-devkit``) is optional and imported only
inside :class:`DevkitMapLayers` (the nuPlan map API); reading logs, converting scenes, the dict / JSON map
provider and the submission writer / reader never import it.

Layout (each module imports only those above it):

* :mod:`.geometry` - numpy SE(2) frame changes, polygon / polyline fitting, cropping and projection.
* :mod:`.maps` - map layers: :class:`MapLane` / :class:`MapArea` / :class:`MapQuery`, the :class:`MapLayers`
  provider interface, :class:`DictMapLayers` (dict / JSON) and :class:`DevkitMapLayers` (nuPlan devkit).
* :mod:`.logs` - NAVSIM's on-disk log format: :func:`load_log`, :func:`split_log` (scene windows) and
  checked readers of one frame's fields.
* :mod:`.scene_map` - a map query cropped and written into a Scene's lanes, drivable area and lights, and
  the route centerline derived from the on-route lanes (PDM-Closed's search).
* :mod:`.convert` - log conversion: :func:`convert_scene` (frames -> validated Scene: ego, agents, meta
  labels, map), :func:`convert_log`, :func:`iter_scenes`, :func:`scene_id_of`.
* :mod:`.submission` - :func:`write_submission` / :func:`read_submission` (NAVSIM's ``submission.pkl``,
  devkit-free) and :func:`predictions_from_batch`.

The names below are re-exported, so ``from irlvla_jax.data import navsim as N; N.convert_scene(...)`` works.
"""
from irlvla_jax.data.navsim.convert import MAP_RADIUS, convert_log, convert_scene, iter_scenes, scene_id_of
from irlvla_jax.data.navsim.geometry import fit_polygon, fit_polyline, quaternion_yaw, relative_pose, to_frame
from irlvla_jax.data.navsim.logs import (AGENT_TYPE_OF_NAME, COMMAND_ORDER, FRAME_DT, NUM_FUTURE, NUM_HISTORY,
                                         SKIPPED_NAMES, load_log, split_log)
from irlvla_jax.data.navsim.maps import (INSTALL_HINT, DevkitMapLayers, DictMapLayers, MapArea, MapLane, MapLayers,
                                         MapQuery)
from irlvla_jax.data.navsim.submission import predictions_from_batch, read_submission, write_submission

__all__ = [
    "AGENT_TYPE_OF_NAME", "COMMAND_ORDER", "FRAME_DT", "INSTALL_HINT", "MAP_RADIUS", "NUM_FUTURE", "NUM_HISTORY",
    "SKIPPED_NAMES", "DevkitMapLayers", "DictMapLayers", "MapArea", "MapLane", "MapLayers", "MapQuery",
    "convert_log", "convert_scene", "fit_polygon", "fit_polyline", "iter_scenes", "load_log",
    "predictions_from_batch", "quaternion_yaw", "read_submission", "relative_pose", "scene_id_of", "split_log",
    "to_frame", "write_submission",
]
