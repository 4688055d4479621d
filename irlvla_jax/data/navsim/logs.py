"""Reading NAVSIM logs: a ``navsim_logs`` pickle -> frame dicts -> scene windows, and checked readers of
one frame's fields (ego pose, dynamics, command, traffic lights, annotations) whose errors name the scene
token and the field (``frames[i].key``).

NAVSIM's on-disk format (what this module reads)
-----------------------------------------------
``navsim_logs/<split>/<log_name>.pkl`` holds a pickled ``list`` of frame dicts at 2 Hz (0.5 s apart).
The keys used here (others, e.g. ``cams``, ``lidar_path``, ``can_bus``, ``lidar2ego_*``, ``sample_prev``,
``sample_next``, are carried along but not read):

* ``token`` (str), ``timestamp`` (int, us), ``log_name``, ``scene_token``, ``map_location`` (str);
* ``roadblock_ids``: the route, a list of roadblock / roadblock-connector ids (str);
* ``ego2global_translation`` [3] and ``ego2global_rotation`` [4] quaternion (w, x, y, z): the ego
  **rear-axle** pose in the map frame; yaw follows pyquaternion's ``yaw_pitch_roll[0]``, as NAVSIM does;
* ``ego_dynamic_state`` [4]: (vx, vy, ax, ay) of the rear axle in the ego body frame;
* ``driving_command`` [4] one-hot (left, straight, right, unknown; see ``COMMAND_ORDER``);
* ``traffic_lights``: list of ``(lane_connector_id, is_red)``;
* ``anns``: ``gt_boxes`` [N, 7] (x, y, z, length, width, height, heading), ``gt_names`` [N],
  ``gt_velocity_3d`` [N, 3], ``instance_tokens`` [N], ``track_tokens`` [N]. NAVSIM's scenario builder
  treats ``gt_boxes`` and ``gt_velocity_3d`` as given **in that frame's ego rear-axle frame** (it rotates
  them by the rear-axle heading and adds the rear-axle position; the lidar-to-ego offset is not applied),
  so this adapter does the same.

A NAVSIM scene is a window of ``num_history + num_future`` consecutive frames (``num_history = 4``,
``num_future = 10`` in navtrain / navtest; windows start every ``frame_interval`` frames; windows whose
current frame has no ``roadblock_ids`` are skipped), named by the token of frame ``num_history - 1``
(t0). See :func:`split_log`.
"""
from __future__ import annotations

import pickle
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data.navsim.geometry import quaternion_yaw

NUM_HISTORY = 4         # frames up to and including t0 (t = -1.5 ... 0 s)
NUM_FUTURE = 10         # navtrain / navtest
FRAME_DT = 0.5          # NAVSIM frames are 2 Hz
COMMAND_ORDER = ("left", "straight", "right", "unknown")   # NAVSIM docs; equals scene.COMMANDS
AGENT_TYPE_OF_NAME = {
    "vehicle": S.AGENT_VEHICLE, "pedestrian": S.AGENT_PEDESTRIAN, "bicycle": S.AGENT_BICYCLE,
    "traffic_cone": S.AGENT_STATIC, "barrier": S.AGENT_STATIC, "czone_sign": S.AGENT_STATIC,
    "generic_object": S.AGENT_STATIC,
}
SKIPPED_NAMES = ("ego",)  # a box of the ego itself is not an agent


def load_log(path: str) -> List[Dict[str, Any]]:
    """A ``navsim_logs/<split>/<log>.pkl`` file -> its list of frame dicts (checked to be that)."""
    with open(path, "rb") as fh:
        frames = pickle.load(fh)
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise ValueError(f"{path}: expected a pickled list of frame dicts (NAVSIM navsim_logs format), "
                         f"found {type(frames).__name__}")
    return frames


def split_log(frames: Sequence[Dict[str, Any]], num_history: int = NUM_HISTORY, num_future: int = NUM_FUTURE,
              frame_interval: int = 1, has_route: bool = True) -> Dict[str, List[Dict[str, Any]]]:
    """A log's frames -> {token: scene frames}, windows as NAVSIM's ``filter_scenes`` makes them."""
    n = num_history + num_future
    out: Dict[str, List[Dict[str, Any]]] = {}
    for i in range(0, len(frames), frame_interval):
        win = list(frames[i:i + n])
        if len(win) < n:
            continue
        cur = win[num_history - 1]
        if has_route and len(cur.get("roadblock_ids") or []) == 0:
            continue
        out[str(frame_field(cur, "token", "?", num_history - 1))] = win
    return out


def frame_field(frame: Mapping[str, Any], key: str, token: str, idx: int, sub: Optional[str] = None):
    """frame[key] (or frame[key][sub]); a missing key raises a SceneError naming the token and field."""
    where = f"NAVSIM scene {token}"
    if key not in frame:
        raise S.SceneError(f"frames[{idx}].{key}", "a key of NAVSIM's frame dict", "nothing (missing)", where)
    v = frame[key]
    if sub is not None:
        if not isinstance(v, Mapping) or sub not in v:
            raise S.SceneError(f"frames[{idx}].{key}.{sub}", f"a key of '{key}'", "nothing (missing)", where)
        v = v[sub]
    return v


def frame_numbers(frame, key, token, idx, shape: Optional[Tuple[Optional[int], ...]], sub: Optional[str] = None,
                  finite: bool = True) -> np.ndarray:
    """frame[key] (or frame[key][sub]) as float64, checked: ``shape`` (None = any size on that axis, or
    no check at all) and finiteness. Errors name the token and ``frames[idx].key``."""
    name = f"frames[{idx}].{key}" + (f".{sub}" if sub else "")
    v = frame_field(frame, key, token, idx, sub)
    try:
        a = np.asarray(v, np.float64)
    except (TypeError, ValueError):
        raise S.SceneError(name, "numbers", f"{type(v).__name__}", f"NAVSIM scene {token}") from None
    if shape is not None:
        if a.size == 0 and shape[0] is None:
            a = a.reshape((0,) + tuple(shape[1:]))
        if a.ndim != len(shape) or any(n is not None and n != m for n, m in zip(shape, a.shape)):
            exp = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ("," if len(shape) == 1 else "") + ")"
            raise S.SceneError(name, f"shape {exp}", f"shape {a.shape}", f"NAVSIM scene {token}")
    if finite and not np.all(np.isfinite(a)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise S.SceneError(name, "finite values", f"{a[bad]} at index {bad}", f"NAVSIM scene {token}")
    return a


def frame_ego_pose(frame, token, idx) -> np.ndarray:
    """The frame's ego rear-axle pose (x, y, heading) in the map frame, checked."""
    t = frame_numbers(frame, "ego2global_translation", token, idx, (3,))
    q = frame_numbers(frame, "ego2global_rotation", token, idx, (4,))
    if np.linalg.norm(q) < 1e-6:
        raise S.SceneError(f"frames[{idx}].ego2global_rotation", "a non-zero (w, x, y, z) quaternion",
                           f"{q.tolist()}", f"NAVSIM scene {token}")
    return np.array([t[0], t[1], quaternion_yaw(q)])


def frame_command(frame, token, idx) -> np.ndarray:
    """The frame's driving command (an index or NAVSIM's one-hot) as a one-hot [4] in ``scene.COMMANDS`` order."""
    c = frame_numbers(frame, "driving_command", token, idx, None)
    out = np.zeros(4, np.float32)
    if c.ndim == 0:
        k = int(c)
        if k != c or not 0 <= k < 4:
            raise S.SceneError(f"frames[{idx}].driving_command", "an index 0..3 or a one-hot [4]", f"{c}",
                               f"NAVSIM scene {token}")
    else:
        c = c.reshape(-1)
        if c.shape != (4,) or not np.all((c == 0) | (c == 1)) or c.sum() > 1:
            raise S.SceneError(f"frames[{idx}].driving_command", "a one-hot [4] (left, straight, right, unknown)",
                               f"{c.tolist()}", f"NAVSIM scene {token}")
        k = int(np.argmax(c)) if c.sum() == 1 else 3   # all zeros -> unknown
    out[S.COMMANDS.index(COMMAND_ORDER[k])] = 1.0
    return out


def frame_lights(frame, token, idx) -> Dict[str, bool]:
    """The frame's traffic lights as {lane_connector_id: is_red}, checked."""
    v = frame_field(frame, "traffic_lights", token, idx)
    out = {}
    try:
        for lid, red in v:
            out[str(lid)] = bool(red)
    except (TypeError, ValueError):
        raise S.SceneError(f"frames[{idx}].traffic_lights", "a list of (lane_connector_id, is_red)",
                           f"{type(v).__name__}", f"NAVSIM scene {token}") from None
    return out


def frame_annotations(frame, token, idx) -> Tuple[np.ndarray, List[str], np.ndarray, List[str]]:
    """The frame's boxes [N, 7], names [N], velocities [N, 3] and track tokens [N], checked for consistency."""
    boxes = frame_numbers(frame, "anns", token, idx, (None, 7), "gt_boxes")
    vel = frame_numbers(frame, "anns", token, idx, (None, 3), "gt_velocity_3d", finite=False)
    names = [str(n) for n in frame_field(frame, "anns", token, idx, "gt_names")]
    tracks = [str(n) for n in frame_field(frame, "anns", token, idx, "track_tokens")]
    n = len(boxes)
    for key, v in (("gt_velocity_3d", vel), ("gt_names", names), ("track_tokens", tracks)):
        if len(v) != n:
            raise S.SceneError(f"frames[{idx}].anns.{key}", f"{n} entries (as gt_boxes)", f"{len(v)}",
                               f"NAVSIM scene {token}")
    for j, name in enumerate(names):
        if name not in AGENT_TYPE_OF_NAME and name not in SKIPPED_NAMES:
            raise S.SceneError(f"frames[{idx}].anns.gt_names", f"one of {sorted(AGENT_TYPE_OF_NAME)}",
                               repr(name), f"NAVSIM scene {token}")
        # Velocities of static objects are never read (NAVSIM gives them none); agents need finite ones.
        if AGENT_TYPE_OF_NAME.get(name) in (S.AGENT_VEHICLE, S.AGENT_PEDESTRIAN, S.AGENT_BICYCLE) \
                and not np.all(np.isfinite(vel[j, :2])):
            raise S.SceneError(f"frames[{idx}].anns.gt_velocity_3d", "finite values for moving object types",
                               f"{vel[j].tolist()} at index ({j},) ({name})", f"NAVSIM scene {token}")
    return boxes, names, vel, tracks
