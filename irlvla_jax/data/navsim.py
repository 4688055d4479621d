"""NAVSIM adapter: NAVSIM log frames (+ map layers) -> Scene records; predictions -> a submission pickle.

Everything here is numpy. The NAVSIM devkit (``navsim`` + ``nuplan-devkit``) is optional and imported
only inside :class:`DevkitMapLayers` (the nuPlan map API); reading logs, converting scenes, the
dict/JSON map provider and the submission writer / reader never import it.

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

Conversion (as NAVSIM's metric cache builds its inputs)
------------------------------------------------------
* Frame: the ego rear-axle frame at t0 (x forward, y left), metres, seconds, radians.
* ``ego_state`` = (0, 0, 0, vx, vy, ax, ay) at t0. ``ego_past`` [15]: the 2 Hz ego states at
  -1.5, -1.0, -0.5, 0 s interpolated linearly (heading unwrapped) to -1.5 ... -0.1 s, as NAVSIM's
  ``past_human_trajectory`` (an interpolated trajectory of those four states) is read at 10 Hz.
* ``expert_future`` [8, 3]: the ego poses of the 8 frames after t0 (0.5 ... 4.0 s) in the t0 frame.
* Agents: boxes of frames t0 ... t0 + 4 s (9 frames, 2 Hz) in the t0 frame, grouped by ``track_tokens``,
  interpolated linearly (heading unwrapped) to the 41 steps at 10 Hz between each track's first and last
  appearance; length / width from the first appearance; velocity rotated into the t0 frame, zero for
  static objects. NAVSIM quirk reproduced: a track seen in only **one** of the 9 frames is kept, unmoved,
  at **all** 41 steps. Types: vehicle, pedestrian, bicycle; traffic_cone, barrier, czone_sign and
  generic_object -> static. More tracks than ``spec.num_agents``: those present at t0 first, then by
  distance to the ego; the rest are dropped.
* Map (from a :class:`MapLayers` provider, map frame, cropped to ``map_radius`` around the ego):
  lanes (lanes and lane connectors, ``lane_on_route`` = the lane's roadblock is in the t0 frame's
  ``roadblock_ids``, as NAVSIM's route-lane dict), drivable polygons = roadblocks, intersections, car
  parks (in that order; roadblock *connector* polygons are not drivable area, as in NAVSIM), the route
  centerline, and lights: for each connector in the ``traffic_lights`` of frames t0 ... t0 + 4 s that is
  in the map crop: its polygon, on-route flag and red state at t = 0, 0.5, ..., 4.0 s (from the 9
  frames; a connector missing from a frame is green there, as in NAVSIM's observation; NAVSIM holds each
  2 Hz state for 0.5 s, which is exactly ``light_red``'s meaning). Too many objects for the spec: on-route
  lanes first, then by distance; on-route lights first. Polygons with more vertices than the spec are
  reduced by Visvalingam-Whyatt area elimination; polylines are resampled by arc length.
* Route centerline, as NAVSIM's PDM-Closed: the starting lane is the on-route lane holding the rear axle
  with the smallest heading error (else the nearest on-route lane); a shortest-path search over on-route
  successors (cost = lane length) to the roadblock 29 places further along ``roadblock_ids`` (deepest
  path if not reached); its lanes' centerlines concatenated, then cropped to ``route_behind`` m behind and
  ``route_ahead`` m ahead of the ego. Not reproduced: nuPlan's route-roadblock correction (when the ego's
  roadblock is not on the route). A provider may instead give the centerline itself (``MapQuery.route``).
* Not filled (zeros): camera, lidar, bev_semantic, instruction. ``family`` is a heuristic
  (intersection if an on-route connector is in the crop, curve if the route turns > 0.5 rad ahead, else
  cruise_lead); ``meta_speed`` / ``meta_path`` come from the expert's speed and path like the world's
  labels; ``scene_id`` = crc32 of the token (31 bits) unless given.

Submission pickle
-----------------
:func:`write_submission` writes NAVSIM's ``submission.pkl`` (``run_create_submission_pickle.py``): a dict
with ``team_name``, ``authors``, ``email``, ``institution``, ``country / region`` and, for NAVSIM v2
(``version="v2"``), ``first_stage_predictions`` / ``second_stage_predictions`` = ``[{token: Trajectory}]``
or, for v1 (``version="v1"``), ``predictions`` = ``[{token: Trajectory}]``. Each value is pickled as a
``navsim.common.dataclasses.Trajectory`` (poses [8, 3] float32 at 0.5 s, ``trajectory_sampling`` a
nuPlan ``TrajectorySampling(num_poses=8, time_horizon=4.0, interval_length=0.5)``), so the devkit's
``pickle.load`` yields real objects, yet writing needs no devkit. :func:`read_submission` reads such a
file (ours or the devkit's) without the devkit.
"""
from __future__ import annotations

import copyreg
import dataclasses
import heapq
import io
import json
import os
import pickle
import tempfile
import zlib
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S

NUM_HISTORY = 4         # frames up to and including t0 (t = -1.5 ... 0 s)
NUM_FUTURE = 10         # navtrain / navtest
FRAME_DT = 0.5          # NAVSIM frames are 2 Hz
MAP_RADIUS = 100.0      # metres, NAVSIM's metric-cache map radius
COMMAND_ORDER = ("left", "straight", "right", "unknown")   # NAVSIM docs; equals scene.COMMANDS
AGENT_TYPE_OF_NAME = {
    "vehicle": S.AGENT_VEHICLE, "pedestrian": S.AGENT_PEDESTRIAN, "bicycle": S.AGENT_BICYCLE,
    "traffic_cone": S.AGENT_STATIC, "barrier": S.AGENT_STATIC, "czone_sign": S.AGENT_STATIC,
    "generic_object": S.AGENT_STATIC,
}
SKIPPED_NAMES = ("ego",)  # a box of the ego itself is not an agent

INSTALL_HINT = (
    "the NAVSIM devkit is needed for this (nuPlan map API). Install it with: pip install -e \".[navsim]\" && "
    "git clone https://github.com/autonomousvision/navsim && pip install -e navsim, plus nuplan-devkit as in "
    "NAVSIM's docs/install.md, and set NUPLAN_MAPS_ROOT. (Do NOT `pip install navsim`: that PyPI package is "
    "an unrelated simulator.)")


# ----------------------------------------------------------------------------------------------------
# Small geometry helpers (numpy).

def _wrap(a):
    return np.arctan2(np.sin(a), np.cos(a))


def quaternion_yaw(q) -> float:
    """Yaw (rad) of a (w, x, y, z) quaternion, pyquaternion's ``yaw_pitch_roll[0]`` (NAVSIM's ego heading)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return float(np.arctan2(2.0 * (w * z - x * y), 1.0 - 2.0 * (y * y + z * z)))


def to_frame(xy: np.ndarray, pose) -> np.ndarray:
    """Points [..., 2] in the map frame -> the frame of ``pose`` = (x, y, heading)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(xy, np.float64) - np.asarray(pose[:2], np.float64)
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def relative_pose(pose, origin) -> np.ndarray:
    """SE(2) pose(s) [..., 3] in the map frame -> the frame of ``origin`` (x, y, heading)."""
    pose = np.asarray(pose, np.float64)
    xy = to_frame(pose[..., :2], origin)
    return np.concatenate([xy, _wrap(pose[..., 2:3] - origin[2])], -1)


def _point_polygon_distance(p: np.ndarray, poly: np.ndarray) -> float:
    """Distance (m) from point p [2] to polygon poly [k, 2] (0 inside)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    d = np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=-1))
    return 0.0 if _inside(p, poly) else float(d)


def _inside(p: np.ndarray, poly: np.ndarray) -> bool:
    x, y = p
    xi, yi = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    cross = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / np.where(yj == yi, 1e-12, yj - yi) + xi)
    return bool(np.count_nonzero(cross) % 2)


def _clean_ring(points: np.ndarray) -> np.ndarray:
    """Drop the closing vertex and consecutive duplicates of a polygon ring [k, 2]."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) > 1 and np.allclose(p[0], p[-1]):
        p = p[:-1]
    if len(p) > 1:
        keep = np.ones(len(p), bool)
        keep[1:] = np.any(np.abs(np.diff(p, axis=0)) > 1e-9, -1)
        p = p[keep]
    return p


def fit_polygon(points, n: int) -> np.ndarray:
    """A polygon ring [k, 2] reduced to at most n vertices (Visvalingam-Whyatt: repeatedly drop the vertex
    whose triangle with its neighbours has the smallest area). Keeps k <= n rings as they are."""
    p = _clean_ring(points)
    idx = list(range(len(p)))
    while len(idx) > n:
        q = p[idx]
        prv, nxt = np.roll(q, 1, axis=0), np.roll(q, -1, axis=0)
        area = 0.5 * np.abs((q[:, 0] - prv[:, 0]) * (nxt[:, 1] - prv[:, 1])
                            - (nxt[:, 0] - prv[:, 0]) * (q[:, 1] - prv[:, 1]))
        del idx[int(np.argmin(area))]
    return p[idx]


def fit_polyline(points, n: int) -> np.ndarray:
    """A polyline [k, 2] with at most n points: unchanged if k <= n, else resampled to n points evenly
    spaced in arc length (end points kept)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) > 1:
        keep = np.ones(len(p), bool)
        keep[1:] = np.linalg.norm(np.diff(p, axis=0), axis=-1) > 1e-9
        p = p[keep]
    if len(p) <= n:
        return p
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=-1))])
    si = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(si, s, p[:, 0]), np.interp(si, s, p[:, 1])], -1)


def _arclength(p: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=-1))])


def _crop_polyline(p: np.ndarray, s_lo: float, s_hi: float) -> np.ndarray:
    """The part of polyline p [k, 2] with arc length in [s_lo, s_hi] (interpolated end points)."""
    s = _arclength(p)
    s_lo, s_hi = max(s_lo, 0.0), min(s_hi, s[-1])
    inner = p[(s > s_lo) & (s < s_hi)]
    a = np.array([np.interp(s_lo, s, p[:, 0]), np.interp(s_lo, s, p[:, 1])])
    b = np.array([np.interp(s_hi, s, p[:, 0]), np.interp(s_hi, s, p[:, 1])])
    return np.concatenate([a[None], inner, b[None]], 0)


def _project(p: np.ndarray, q: np.ndarray) -> Tuple[float, float]:
    """(arc length of the closest point of polyline p [k, 2] to point q [2], distance)."""
    a, b = p[:-1], p[1:]
    ab = b - a
    t = np.clip(np.sum((q - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(a + t[:, None] * ab - q, axis=-1)
    i = int(np.argmin(d))
    s = _arclength(p)
    return float(s[i] + t[i] * np.linalg.norm(ab[i])), float(d[i])


# ----------------------------------------------------------------------------------------------------
# Map layers: a provider interface, a dict / JSON provider (tests, exported maps) and the devkit one.

@dataclasses.dataclass
class MapLane:
    """A lane or lane connector, map frame. polygon [k, 2], centerline [m, 2] in driving direction (m/s)."""
    id: str
    polygon: np.ndarray
    centerline: np.ndarray
    roadblock_id: str
    is_connector: bool = False
    speed_limit: Optional[float] = None
    successors: Tuple[str, ...] = ()


@dataclasses.dataclass
class MapArea:
    """A roadblock, intersection or car park polygon [k, 2], map frame."""
    id: str
    polygon: np.ndarray


@dataclasses.dataclass
class MapQuery:
    """Map objects near a point, map frame. ``route`` [k, 2]: an optional route centerline (else built)."""
    lanes: List[MapLane]
    roadblocks: List[MapArea]
    intersections: List[MapArea]
    carparks: List[MapArea]
    route: Optional[np.ndarray] = None


class MapLayers:
    """Provider interface: ``query(map_name, x, y, radius, route_roadblock_ids) -> MapQuery`` (map frame):
    the lanes, roadblocks, intersections and car parks within ``radius`` m of (x, y), plus the lanes of the
    route roadblocks wherever they are (only those within the radius become Scene lanes; the others serve
    the route search)."""

    def query(self, map_name: str, x: float, y: float, radius: float,
              route_roadblock_ids: Sequence[str] = ()) -> MapQuery:
        raise NotImplementedError


def _as_xy(v, what: str) -> np.ndarray:
    a = np.asarray(v, np.float64)
    if a.ndim != 2 or a.shape[-1] != 2 or not np.all(np.isfinite(a)):
        raise ValueError(f"map field '{what}': expected finite [k, 2] points, found shape {a.shape}"
                         + ("" if a.ndim != 2 or a.shape[-1] != 2 else " with non-finite values"))
    return a


class DictMapLayers(MapLayers):
    """Map layers from a dict (or a JSON file) in the map frame::

        {"<map_name>": {
            "lanes": [{"id", "polygon": [[x, y], ...], "centerline": [[x, y], ...], "roadblock_id",
                       "is_connector": bool, "speed_limit": m/s or null, "successors": [ids]}, ...],
            "roadblocks" | "intersections" | "carparks": [{"id", "polygon"}, ...],
            "route": optional [[x, y], ...]}}

    ``query`` returns the objects whose polygon comes within ``radius`` of (x, y), plus every lane of
    the route roadblocks (for the route search).
    """

    def __init__(self, maps: Mapping[str, Mapping[str, Any]]):
        self._maps: Dict[str, Dict[str, Any]] = {}
        for name, m in maps.items():
            unknown = sorted(set(m) - {"lanes", "roadblocks", "intersections", "carparks", "route"})
            if unknown:
                raise ValueError(f"map '{name}': unknown layer(s) {unknown}; known: lanes, roadblocks, "
                                 "intersections, carparks, route")
            lanes = []
            for i, ln in enumerate(m.get("lanes") or []):
                for k in ("id", "polygon", "centerline", "roadblock_id"):
                    if k not in ln:
                        raise ValueError(f"map '{name}': lanes[{i}] lacks field '{k}'")
                lanes.append(MapLane(str(ln["id"]), _as_xy(ln["polygon"], f"{name}.lanes[{i}].polygon"),
                                     _as_xy(ln["centerline"], f"{name}.lanes[{i}].centerline"),
                                     str(ln["roadblock_id"]), bool(ln.get("is_connector", False)),
                                     None if ln.get("speed_limit") is None else float(ln["speed_limit"]),
                                     tuple(str(s) for s in ln.get("successors") or ())))
            layers = {"lanes": lanes}
            for key in ("roadblocks", "intersections", "carparks"):
                layers[key] = [MapArea(str(a["id"]), _as_xy(a["polygon"], f"{name}.{key}[{i}].polygon"))
                               for i, a in enumerate(m.get(key) or [])]
            layers["route"] = None if m.get("route") is None else _as_xy(m["route"], f"{name}.route")
            self._maps[str(name)] = layers

    @classmethod
    def from_json(cls, path: str) -> "DictMapLayers":
        with open(path) as fh:
            return cls(json.load(fh))

    def query(self, map_name, x, y, radius, route_roadblock_ids=()):
        if map_name not in self._maps:
            raise KeyError(f"map '{map_name}' not in this DictMapLayers (has {sorted(self._maps)})")
        m, p = self._maps[map_name], np.array([x, y], np.float64)
        near = lambda poly: _point_polygon_distance(p, poly) <= radius  # noqa: E731
        route = set(str(r) for r in route_roadblock_ids)
        return MapQuery(lanes=[ln for ln in m["lanes"] if ln.roadblock_id in route or near(ln.polygon)],
                        roadblocks=[a for a in m["roadblocks"] if near(a.polygon)],
                        intersections=[a for a in m["intersections"] if near(a.polygon)],
                        carparks=[a for a in m["carparks"] if near(a.polygon)], route=m["route"])


def _require_devkit():
    """Import the nuPlan map API (part of the NAVSIM devkit install) or raise a clear ImportError."""
    try:
        from nuplan.common.actor_state.state_representation import Point2D
        from nuplan.common.maps.maps_datatypes import SemanticMapLayer
        from nuplan.common.maps.nuplan_map.map_factory import get_maps_api
    except ImportError as e:  # pragma: no cover - message checked in tests with a blocked import
        raise ImportError(f"irlvla_jax.data.navsim: {INSTALL_HINT} (import failed: {e})") from e
    return Point2D, SemanticMapLayer, get_maps_api


class DevkitMapLayers(MapLayers):
    """Map layers from the nuPlan maps through the devkit's map factory (NAVSIM's own source).

    ``map_root`` defaults to $NUPLAN_MAPS_ROOT, ``map_version`` to NAVSIM's "nuplan-maps-v1.0". Queries
    ROADBLOCK, ROADBLOCK_CONNECTOR, INTERSECTION and CARPARK_AREA around (x, y) like NAVSIM's drivable
    area map; lanes are the interior edges of the roadblocks (lanes) and roadblock connectors (lane
    connectors). Polygons use their exterior ring (holes are dropped).
    """

    def __init__(self, map_root: Optional[str] = None, map_version: str = "nuplan-maps-v1.0"):
        self._api = _require_devkit()
        self.map_root = map_root or os.environ.get("NUPLAN_MAPS_ROOT")
        if not self.map_root:
            raise ValueError("DevkitMapLayers: no map_root given and $NUPLAN_MAPS_ROOT is not set")
        self.map_version = map_version
        self._cache: Dict[str, Any] = {}

    def _map(self, name: str):
        name = "us-nv-las-vegas-strip" if name == "las_vegas" else name   # as NAVSIM's scenario builder
        if name not in self._cache:
            self._cache[name] = self._api[2](self.map_root, self.map_version, name)
        return self._cache[name]

    def query(self, map_name, x, y, radius, route_roadblock_ids=()):  # pragma: no cover - needs devkit + maps
        Point2D, L, _ = self._api
        api = self._map(map_name)
        objs = api.get_proximal_map_objects(Point2D(x, y), radius,
                                            [L.ROADBLOCK, L.ROADBLOCK_CONNECTOR, L.INTERSECTION, L.CARPARK_AREA])
        ring = lambda o: np.asarray(o.polygon.exterior.coords, np.float64)  # noqa: E731
        lanes = []
        for layer, is_conn in ((L.ROADBLOCK, False), (L.ROADBLOCK_CONNECTOR, True)):
            for block in objs[layer]:
                for e in block.interior_edges:
                    cl = np.asarray([[s.x, s.y] for s in e.baseline_path.discrete_path], np.float64)
                    lanes.append(MapLane(str(e.id), ring(e), cl, str(block.id), is_conn, e.speed_limit_mps,
                                         tuple(str(o.id) for o in e.outgoing_edges)))
        seen = {ln.id for ln in lanes}
        for rid in dict.fromkeys(str(r) for r in route_roadblock_ids):   # as NAVSIM's route dicts
            block = api.get_map_object(rid, L.ROADBLOCK)
            is_conn = block is None
            block = block or api.get_map_object(rid, L.ROADBLOCK_CONNECTOR)
            for e in (block.interior_edges if block is not None else []):
                if str(e.id) not in seen:
                    cl = np.asarray([[s.x, s.y] for s in e.baseline_path.discrete_path], np.float64)
                    lanes.append(MapLane(str(e.id), ring(e), cl, str(block.id), is_conn, e.speed_limit_mps,
                                         tuple(str(o.id) for o in e.outgoing_edges)))
                    seen.add(str(e.id))
        area = lambda layer: [MapArea(str(o.id), ring(o)) for o in objs[layer]]  # noqa: E731
        return MapQuery(lanes, area(L.ROADBLOCK), area(L.INTERSECTION), area(L.CARPARK_AREA))


# ----------------------------------------------------------------------------------------------------
# Logs and scenes.

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
        out[str(_field(cur, "token", "?", num_history - 1))] = win
    return out


def _field(frame: Mapping[str, Any], key: str, token: str, idx: int, sub: Optional[str] = None):
    where = f"NAVSIM scene {token}"
    if key not in frame:
        raise S.SceneError(f"frames[{idx}].{key}", "a key of NAVSIM's frame dict", "nothing (missing)", where)
    v = frame[key]
    if sub is not None:
        if not isinstance(v, Mapping) or sub not in v:
            raise S.SceneError(f"frames[{idx}].{key}.{sub}", f"a key of '{key}'", "nothing (missing)", where)
        v = v[sub]
    return v


def _numbers(frame, key, token, idx, shape: Optional[Tuple[Optional[int], ...]], sub: Optional[str] = None,
             finite: bool = True) -> np.ndarray:
    """frame[key] (or frame[key][sub]) as float64, checked: ``shape`` (None = any size on that axis, or
    no check at all) and finiteness. Errors name the token and ``frames[idx].key``."""
    name = f"frames[{idx}].{key}" + (f".{sub}" if sub else "")
    v = _field(frame, key, token, idx, sub)
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


def _ego_pose(frame, token, idx) -> np.ndarray:
    t = _numbers(frame, "ego2global_translation", token, idx, (3,))
    q = _numbers(frame, "ego2global_rotation", token, idx, (4,))
    if np.linalg.norm(q) < 1e-6:
        raise S.SceneError(f"frames[{idx}].ego2global_rotation", "a non-zero (w, x, y, z) quaternion",
                           f"{q.tolist()}", f"NAVSIM scene {token}")
    return np.array([t[0], t[1], quaternion_yaw(q)])


def _command(frame, token, idx) -> np.ndarray:
    c = _numbers(frame, "driving_command", token, idx, None)
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


def _lights(frame, token, idx) -> Dict[str, bool]:
    v = _field(frame, "traffic_lights", token, idx)
    out = {}
    try:
        for lid, red in v:
            out[str(lid)] = bool(red)
    except (TypeError, ValueError):
        raise S.SceneError(f"frames[{idx}].traffic_lights", "a list of (lane_connector_id, is_red)",
                           f"{type(v).__name__}", f"NAVSIM scene {token}") from None
    return out


def _annotations(frame, token, idx) -> Tuple[np.ndarray, List[str], np.ndarray, List[str]]:
    boxes = _numbers(frame, "anns", token, idx, (None, 7), "gt_boxes")
    vel = _numbers(frame, "anns", token, idx, (None, 3), "gt_velocity_3d", finite=False)
    names = [str(n) for n in _field(frame, "anns", token, idx, "gt_names")]
    tracks = [str(n) for n in _field(frame, "anns", token, idx, "track_tokens")]
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


def _interp_states(t_obs: np.ndarray, st: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """Linear interpolation of states [k, D] (column 2 = heading, unwrapped then wrapped) at t_new."""
    st = st.copy()
    st[:, 2] = np.unwrap(st[:, 2])
    out = np.stack([np.interp(t_new, t_obs, st[:, j]) for j in range(st.shape[1])], -1)
    out[:, 2] = _wrap(out[:, 2])
    return out


def _agents(frames, token, t0_idx, poses_rel, spec: S.SceneSpec):
    """Tracks over the 9 frames t0 ... t0+4 s -> (boxes [A,41,5], vel [A,41,2], type [A], valid [A,41])."""
    tracks: Dict[str, Dict[str, Any]] = {}
    n_key = S.N_POSES + 1
    for k in range(n_key):
        idx = t0_idx + k
        boxes, names, vel, tids = _annotations(frames[idx], token, idx)
        rel = poses_rel[k]                       # ego pose of frame idx in the t0 frame
        c, s = np.cos(rel[2]), np.sin(rel[2])
        for b, name, v, tid in zip(boxes, names, vel, tids):
            if name in SKIPPED_NAMES:
                continue
            typ = AGENT_TYPE_OF_NAME[name]
            x, y = rel[0] + c * b[0] - s * b[1], rel[1] + s * b[0] + c * b[1]
            h = _wrap(rel[2] + b[6])
            vx, vy = (c * v[0] - s * v[1], s * v[0] + c * v[1]) if typ != S.AGENT_STATIC else (0.0, 0.0)
            tr = tracks.setdefault(tid, {"type": typ, "size": (b[3], b[4]), "t": [], "st": []})
            tr["t"].append(k * FRAME_DT)
            tr["st"].append([x, y, h, vx, vy])
    t_fine = np.arange(S.T_FUT) * S.DT
    rows = []
    for tid, tr in tracks.items():
        t_obs, st = np.asarray(tr["t"]), np.asarray(tr["st"], np.float64)
        out = np.zeros((S.T_FUT, 5))
        valid = np.zeros(S.T_FUT, bool)
        if len(t_obs) == 1:       # NAVSIM quirk: a single sighting is kept, unmoved, at every step
            out[:] = st[0]
            valid[:] = True
        else:
            valid = (t_fine >= t_obs[0] - 1e-9) & (t_fine <= t_obs[-1] + 1e-9)
            out[valid] = _interp_states(t_obs, st, t_fine[valid])
        first = int(np.argmax(valid))
        rows.append((not valid[0], float(np.hypot(*out[first, :2])), tid, tr, out, valid))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    A = spec.num_agents
    boxes = np.zeros((A, S.T_FUT, 5), np.float32)
    boxes[..., 3:5] = 1.0
    vel = np.zeros((A, S.T_FUT, 2), np.float32)
    typ = np.zeros(A, np.int32)
    valid = np.zeros((A, S.T_FUT), bool)
    for i, (_, _, tid, tr, out, vmask) in enumerate(rows[:A]):
        L, W = tr["size"]
        if not (L > 0 and W > 0):
            raise S.SceneError("anns.gt_boxes", "length, width > 0", f"({L}, {W}) for track {tid}",
                               f"NAVSIM scene {token}")
        boxes[i, :, :3] = np.where(vmask[:, None], out[:, :3], 0.0)
        boxes[i, :, 3:5] = (L, W)
        vel[i] = np.where(vmask[:, None], out[:, 3:5], 0.0)
        typ[i] = tr["type"]
        valid[i] = vmask
    return boxes, vel, typ, valid


def _start_lane(cand: List[MapLane], ego_pose: np.ndarray) -> Optional[MapLane]:
    """NAVSIM's starting lane: among on-route lanes holding the rear axle, the smallest heading error;
    else the nearest on-route lane (map frame)."""
    p = np.asarray(ego_pose[:2])
    best, best_key = None, None
    for ln in cand:
        if len(ln.centerline) < 2:
            continue
        s, d = _project(ln.centerline, p)
        seg = np.diff(ln.centerline, axis=0)
        i = int(np.clip(np.searchsorted(_arclength(ln.centerline), s, side="right") - 1, 0, len(seg) - 1))
        herr = abs(_wrap(np.arctan2(seg[i, 1], seg[i, 0]) - ego_pose[2]))
        key = (0, herr, d, ln.id) if _inside(p, ln.polygon) else (1, d, herr, ln.id)
        if best_key is None or key < best_key:
            best, best_key = ln, key
    return best


def _route_from_lanes(lanes: List[MapLane], on_route: Sequence[bool], route_ids: Sequence[str],
                      ego_pose: np.ndarray, search_depth: int = 30) -> Optional[np.ndarray]:
    """Route centerline [k, 2] (map frame) through the on-route lanes, as NAVSIM's PDM-Closed finds it:
    from the starting lane, a shortest-path search (cost = centerline length) over on-route lane successors
    to any lane of the roadblock ``search_depth - 1`` places after the start's in ``route_ids`` (or the last
    one); if that roadblock is not reached (e.g. it lies outside the lanes given), the deepest path, ties
    broken by length. The lanes' centerlines are concatenated."""
    cand = {ln.id: ln for ln, r in zip(lanes, on_route) if r and len(ln.centerline) >= 2}
    start = _start_lane(list(cand.values()), ego_pose)
    if start is None:
        return None
    order = list(dict.fromkeys(str(r) for r in route_ids))
    i0 = order.index(start.roadblock_id) if start.roadblock_id in order else 0
    target = order[i0:i0 + search_depth][-1]
    dist, depth, parent = {start.id: 1.0}, {start.id: 1}, {start.id: None}
    heap, done, end = [(1.0, start.id)], [], None
    while heap:
        d, lid = heapq.heappop(heap)
        if lid in done or d > dist[lid]:
            continue
        if cand[lid].roadblock_id == target:
            end = lid
            break
        done.append(lid)
        for nid in cand[lid].successors:
            if nid not in cand or nid in done:
                continue
            alt = d + float(_arclength(cand[nid].centerline)[-1])
            if alt < dist.get(nid, np.inf):
                dist[nid], depth[nid], parent[nid] = alt, depth[lid] + 1, lid
                heapq.heappush(heap, (alt, nid))
    if end is None:
        end = min(done, key=lambda i: (-depth[i], dist[i], i))
    path = [end]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    pts = [cand[path[-1]].centerline]
    for lid in reversed(path[:-1]):
        c = cand[lid].centerline
        pts.append(c[1:] if np.allclose(c[0], pts[-1][-1], atol=1e-3) else c)
    return np.concatenate(pts, 0)


def _meta_labels(ego_xyh_future: np.ndarray, v0: float, v4: float, vmin: float) -> Tuple[int, int]:
    sp = S.meta_speed_label(v0, v4, vmin)
    dh = float(_wrap(ego_xyh_future[-1, 2]))
    lat = float(ego_xyh_future[-1, 1])
    if dh > 0.3:
        path = "left"
    elif dh < -0.3:
        path = "right"
    elif abs(lat) > 2.5:
        path = "lane_change_left" if lat > 0 else "lane_change_right"
    else:
        path = "straight"
    return sp, S.META_PATH.index(path)


def scene_id_of(token: str) -> int:
    """A deterministic 31-bit integer id for a NAVSIM token (crc32)."""
    return zlib.crc32(str(token).encode()) & 0x7FFFFFFF


def convert_scene(frames: Sequence[Mapping[str, Any]], spec: S.SceneSpec, maps: Optional[MapLayers], *,
                  num_history: int = NUM_HISTORY, split: str = "test", scene_id: Optional[int] = None,
                  family: Optional[str] = None, map_radius: float = MAP_RADIUS, route_behind: float = 60.0,
                  route_ahead: float = 140.0) -> S.Scene:
    """One NAVSIM scene (its window of frame dicts, t0 = ``frames[num_history - 1]``) -> a validated Scene.

    Needs ``num_history >= 4`` (the 1.5 s past) and at least 8 frames after t0 (the 4 s future). ``maps``
    gives the map layers; ``None`` leaves the map empty and uses the ego's own past + expert path as the
    route (enough for imitation on ego / agents, not for DAC / DDC / TLC / LK scoring). Bad input raises a
    SceneError naming the token and the field (``frames[i].key``).
    """
    if num_history < 4:
        raise ValueError(f"num_history must be >= 4 (the 1.5 s ego past at 2 Hz), got {num_history}")
    if split not in S.SPLITS:
        raise ValueError(f"split must be one of {S.SPLITS}, got {split!r}")
    t0 = num_history - 1
    token = str(frames[t0]["token"]) if len(frames) > t0 and "token" in frames[t0] else "?"
    where = f"NAVSIM scene {token}"
    if len(frames) < t0 + 1 + S.N_POSES:
        raise S.SceneError("frames", f">= {t0 + 1 + S.N_POSES} frames ({num_history} history + 8 future)",
                           f"{len(frames)}", where)
    f = {k: v.copy() for k, v in S.empty_scene(spec).to_dict().items()}

    # Ego: poses of the 4 past/current frames and the 8 future ones, in the t0 frame.
    idxs = list(range(t0 - 3, t0 + 1 + S.N_POSES))
    poses = np.stack([_ego_pose(frames[i], token, i) for i in idxs])
    origin = poses[3]
    rel = relative_pose(poses, origin)
    dyn = np.stack([_numbers(frames[i], "ego_dynamic_state", token, i, (4,)) for i in idxs])
    f["ego_state"][:] = [0.0, 0.0, 0.0, *dyn[3]]
    past = np.concatenate([rel[:4], dyn[:4]], -1)                        # t = -1.5, -1, -0.5, 0
    f["ego_past"][:] = _interp_states(np.arange(-3, 1) * FRAME_DT, past, np.arange(-15, 0) * S.DT)
    f["expert_future"][:] = rel[4:]
    f["command"][:] = _command(frames[t0], token, t0)
    speed = np.hypot(dyn[:, 0], dyn[:, 1])
    f["meta_speed"][...], f["meta_path"][...] = _meta_labels(rel[4:], speed[3], speed[-1], speed[3:].min())

    # Agents at 10 Hz.
    f["agent_boxes"][:], f["agent_velocity"][:], f["agent_type"][:], f["agent_valid"][:] = _agents(
        frames, token, t0, rel[3:], spec)

    # Map.
    route_ids = [str(r) for r in (_field(frames[t0], "roadblock_ids", token, t0) or [])]
    fam = "cruise_lead"
    if maps is None:
        route = np.concatenate([rel[:4, :2], rel[4:, :2]], 0)
        d = np.linalg.norm(route[-1] - route[0])
        if d < 1.0:   # a standing ego: a short straight route along its heading
            route = np.array([[-route_behind, 0.0], [route_ahead, 0.0]])
    else:
        map_name = str(_field(frames[t0], "map_location", token, t0))
        q = maps.query(map_name, float(origin[0]), float(origin[1]), float(map_radius), route_ids)
        lights_t = [_lights(frames[t0 + k], token, t0 + k) for k in range(S.N_LIGHT)]
        route, fam = _fill_map(f, spec, q, route_ids, origin, lights_t, where, map_radius)
        s_ego, _ = _project(route, np.zeros(2)) if len(route) >= 2 else (0.0, 0.0)
        route = _crop_polyline(route, s_ego - route_behind, s_ego + route_ahead)
    f["route"][:], f["route_valid"][:] = S.pad_polyline(fit_polyline(route, spec.route_points),
                                                        spec.route_points, "route")
    f["split"][...] = S.SPLITS.index(split)
    f["family"][...] = S.FAMILIES.index(family or fam)
    f["scene_id"][...] = scene_id_of(token) if scene_id is None else int(scene_id)
    return S.validate(S.Scene.from_dict(f, where), spec, where)


def _fill_map(f, spec: S.SceneSpec, q: MapQuery, route_ids, origin, lights_t, where,
              map_radius: float) -> Tuple[np.ndarray, str]:
    """Write lanes, drivable polygons and lights of q (map frame) into f (t0 frame); return (route, family)."""
    route_set = set(route_ids)
    lanes = list(q.lanes)
    on_route = [ln.roadblock_id in route_set for ln in lanes]
    lit = set().union(*lights_t)          # connectors with a state in any of the 9 frames
    ego = np.asarray(origin[:2])
    dist = [_point_polygon_distance(ego, ln.polygon) for ln in lanes]
    near = [i for i in range(len(lanes)) if dist[i] <= map_radius]
    order = sorted(near, key=lambda i: (not on_route[i], lanes[i].id not in lit, dist[i], lanes[i].id))
    lane_row: Dict[str, int] = {}
    for row, i in enumerate(order[:spec.num_lanes]):
        ln = lanes[i]
        poly = fit_polygon(to_frame(_clean_ring(ln.polygon), origin), spec.lane_vertices)
        cl = fit_polyline(to_frame(ln.centerline, origin), spec.lane_points)
        if len(poly) < 3 or len(cl) < 2:
            raise S.SceneError("lane_polygons", ">= 3 polygon vertices and >= 2 centerline points",
                               f"{len(poly)} / {len(cl)} for map lane {ln.id}", where)
        f["lane_polygons"][row], f["lane_vertex_valid"][row] = S.pad_polygon(poly, spec.lane_vertices)
        f["lane_centerlines"][row], f["lane_point_valid"][row] = S.pad_polyline(cl, spec.lane_points)
        f["lane_valid"][row] = True
        f["lane_on_route"][row] = on_route[i]
        f["lane_is_connector"][row] = ln.is_connector
        f["lane_speed_limit"][row] = float(np.clip(ln.speed_limit or 0.0, 0.0, 60.0))
        lane_row[ln.id] = row

    g = 0
    for kind, areas in ((S.DRIVABLE_ROADBLOCK, q.roadblocks), (S.DRIVABLE_INTERSECTION, q.intersections),
                        (S.DRIVABLE_CARPARK, q.carparks)):
        for a in sorted(areas, key=lambda a: (_point_polygon_distance(ego, a.polygon), a.id)):
            if g >= spec.num_drivable:
                break
            poly = fit_polygon(to_frame(_clean_ring(a.polygon), origin), spec.drivable_vertices)
            if len(poly) < 3:
                raise S.SceneError("drivable_polygons", ">= 3 vertices", f"{len(poly)} for map object {a.id}", where)
            f["drivable_polygons"][g], f["drivable_vertex_valid"][g] = S.pad_polygon(poly, spec.drivable_vertices)
            f["drivable_valid"][g] = True
            f["drivable_kind"][g] = kind
            g += 1

    # Lights: connectors with a state at some 2 Hz step that are in the lane crop; on-route first.
    ids = sorted((lid for lid in lit if lid in lane_row),
                 key=lambda lid: (not f["lane_on_route"][lane_row[lid]], lid))
    for s_i, lid in enumerate(ids[:spec.num_lights]):
        row = lane_row[lid]
        f["light_polygons"][s_i], f["light_vertex_valid"][s_i] = S.pad_polygon(
            fit_polygon(f["lane_polygons"][row][f["lane_vertex_valid"][row]], spec.light_vertices),
            spec.light_vertices)
        f["light_valid"][s_i] = True
        f["light_on_route"][s_i] = f["lane_on_route"][row]
        f["light_red"][s_i] = [lt.get(lid, False) for lt in lights_t]

    # Route centerline (map frame) and the speed limit of its starting lane.
    route = q.route
    if route is None:
        route = _route_from_lanes(lanes, on_route, route_ids, np.asarray(origin))
    if route is None or len(route) < 2:
        raise S.SceneError("route", f"on-route lanes (roadblock_ids {list(route_ids)[:4]}...) within the map crop",
                           "none", where)
    route = to_frame(route, origin)
    start = _start_lane([ln for ln, r in zip(lanes, on_route) if r], np.asarray(origin))
    if start is not None:
        f["speed_limit"][...] = float(np.clip(start.speed_limit or 0.0, 0.0, 60.0))
    fam = "cruise_lead"
    if any(on_route[i] and lanes[i].is_connector for i in near):
        fam = "intersection"
    else:
        s_ego, _ = _project(route, np.zeros(2))
        ahead = _crop_polyline(route, s_ego, s_ego + 80.0)
        seg = np.diff(ahead, axis=0)
        seg = seg[np.linalg.norm(seg, axis=-1) > 1e-6]
        if len(seg) >= 2:
            h = np.unwrap(np.arctan2(seg[:, 1], seg[:, 0]))
            if np.ptp(h) > 0.5:
                fam = "curve"
    return route, fam


def convert_log(path: str, spec: S.SceneSpec, maps: Optional[MapLayers], *, num_history: int = NUM_HISTORY,
                num_future: int = NUM_FUTURE, frame_interval: int = 1, tokens: Optional[Sequence[str]] = None,
                **kw) -> Tuple[List[str], S.Scene]:
    """Every scene of one log pickle -> (tokens, stacked Scene batch). ``tokens`` keeps only those."""
    scenes = split_log(load_log(path), num_history, num_future, frame_interval)
    wanted = None if tokens is None else set(tokens)
    keep = [t for t in scenes if wanted is None or t in wanted]
    if not keep:
        raise ValueError(f"{path}: no scene (of {len(scenes)}) left after the token filter")
    out = [convert_scene(scenes[t], spec, maps, num_history=num_history, **kw) for t in keep]
    return keep, S.stack(out)


def iter_scenes(log_dir: str, spec: S.SceneSpec, maps: Optional[MapLayers], *, num_history: int = NUM_HISTORY,
                num_future: int = NUM_FUTURE, frame_interval: int = 1, tokens: Optional[Sequence[str]] = None,
                progress: bool = True, **kw) -> Iterator[Tuple[str, S.Scene]]:
    """Yield (token, Scene) for every scene of every ``*.pkl`` log in ``log_dir`` (sorted), with tqdm."""
    files = sorted(fn for fn in os.listdir(log_dir) if fn.endswith(".pkl"))
    if not files:
        raise FileNotFoundError(f"no *.pkl logs in {log_dir!r} (expected navsim_logs/<split>/)")
    wanted = None if tokens is None else set(tokens)
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="NAVSIM logs", unit="log")
    for fn in it:
        for tok, win in split_log(load_log(os.path.join(log_dir, fn)), num_history, num_future,
                                  frame_interval).items():
            if wanted is None or tok in wanted:
                yield tok, convert_scene(win, spec, maps, num_history=num_history, **kw)


# ----------------------------------------------------------------------------------------------------
# Submission pickle.

_TRAJ_GLOBAL = ("navsim.common.dataclasses", "Trajectory")
_SAMPLING_GLOBAL = ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling")


class _Trajectory:
    """Devkit-free stand-in for ``navsim.common.dataclasses.Trajectory`` (pickled under that name)."""


class _TrajectorySampling:
    """Devkit-free stand-in for nuPlan's ``TrajectorySampling`` (pickled under that name)."""


_STANDINS = {_Trajectory: _TRAJ_GLOBAL, _TrajectorySampling: _SAMPLING_GLOBAL}


class _NavsimPickler(pickle._Pickler):  # the Python pickler: lets us name the stand-in classes' globals
    def reducer_override(self, obj):
        if type(obj) in _STANDINS:
            return copyreg.__newobj__, (type(obj),), dict(obj.__dict__)
        return NotImplemented

    def save_global(self, obj, name=None):
        if obj in _STANDINS:
            module, qual = _STANDINS[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qual}\n".encode("utf-8"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _trajectory(poses: np.ndarray) -> _Trajectory:
    ts = _TrajectorySampling()
    ts.__dict__.update(num_poses=S.N_POSES, time_horizon=4.0, interval_length=0.5)
    t = _Trajectory()
    t.__dict__.update(poses=np.ascontiguousarray(poses, np.float32), trajectory_sampling=ts)
    return t


def _check_predictions(preds: Mapping[str, Any], what: str) -> Dict[str, _Trajectory]:
    if not isinstance(preds, Mapping):
        raise ValueError(f"{what}: expected a mapping token -> poses [8, 3], found {type(preds).__name__}")
    out = {}
    for tok, p in preds.items():
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"{what}: tokens must be non-empty str, found {tok!r}")
        a = np.asarray(p, np.float64)
        if a.shape != (S.N_POSES, 3):
            raise ValueError(f"{what}[{tok}]: expected poses of shape (8, 3) (x, y, heading at 0.5 ... 4.0 s, "
                             f"ego frame), found shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}[{tok}]: poses must be finite, found {a[~np.isfinite(a)][:1]}")
        out[tok] = _trajectory(a)
    return out


def predictions_from_batch(tokens: Sequence[str], trajectories) -> Dict[str, np.ndarray]:
    """(tokens [B], trajectories [B, 8, 3] (x, y, heading; ego frame at t0, m / rad)) -> {token: poses}."""
    traj = np.asarray(trajectories, np.float32)
    tokens = [str(t) for t in tokens]
    if traj.ndim != 3 or traj.shape[1:] != (S.N_POSES, 3) or len(traj) != len(tokens):
        raise ValueError(f"trajectories: expected shape ({len(tokens)}, 8, 3) for {len(tokens)} tokens, "
                         f"found {traj.shape}")
    if len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise ValueError(f"tokens: each token once, found {dup!r} more than once")
    return dict(zip(tokens, traj))


def write_submission(path: str, predictions: Mapping[str, Any], *, team_name: str, authors: Any, email: str,
                     institution: str, country: str, version: str = "v2",
                     second_stage: Optional[Mapping[str, Any]] = None) -> str:
    """Write NAVSIM's submission pickle atomically (temp file in the same folder, then os.replace).

    ``predictions``: {token: poses [8, 3]} (x, y, heading at 0.5 ... 4.0 s, metres / radians, ego rear-axle
    frame at t0). ``version="v2"`` (NAVSIM v2.x, two-stage: ``second_stage`` holds the stage-two tokens'
    poses, {} if None) or ``"v1"`` (one ``predictions`` list). Returns ``path``.
    """
    for k, v in (("team_name", team_name), ("email", email), ("institution", institution), ("country", country)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"submission field '{k}' must be a non-empty string (NAVSIM requires it), got {v!r}")
    if not authors:
        raise ValueError("submission field 'authors' must be non-empty (NAVSIM requires it)")
    first = _check_predictions(predictions, "predictions")
    if not first:
        raise ValueError("predictions is empty: nothing to submit")
    sub: Dict[str, Any] = {"team_name": team_name, "authors": authors, "email": email, "institution": institution,
                           "country / region": country}
    if version == "v2":
        sub["first_stage_predictions"] = [first]
        sub["second_stage_predictions"] = [_check_predictions(second_stage or {}, "second_stage")]
    elif version == "v1":
        if second_stage:
            raise ValueError("version='v1' submissions have no second stage; use version='v2'")
        sub["predictions"] = [first]
    else:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    buf = io.BytesIO()
    _NavsimPickler(buf, protocol=4).dump(sub)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".submission.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class _SubmissionUnpickler(pickle.Unpickler):
    """Reads NAVSIM submission pickles without the devkit: Trajectory / TrajectorySampling map to plain
    stand-ins; only numpy and builtins are otherwise allowed."""

    def find_class(self, module, name):
        if (module, name) == _TRAJ_GLOBAL:
            return _Trajectory
        if (module, name) == _SAMPLING_GLOBAL:
            return _TrajectorySampling
        if module.split(".")[0] in ("numpy", "builtins", "copyreg", "collections", "_codecs"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"submission pickle refers to {module}.{name}; only NAVSIM Trajectory, "
                                     "nuPlan TrajectorySampling and numpy objects are expected")


def read_submission(path: str) -> Dict[str, Any]:
    """Read a NAVSIM submission pickle (no devkit) -> the same dict with every Trajectory replaced by its
    poses (float32 [n, 3]); checks each has 8 poses at 0.5 s."""
    with open(path, "rb") as fh:
        sub = _SubmissionUnpickler(fh).load()
    if not isinstance(sub, dict):
        raise ValueError(f"{path}: expected a dict, found {type(sub).__name__}")
    out = dict(sub)
    keys = [k for k in ("predictions", "first_stage_predictions", "second_stage_predictions") if k in sub]
    if not keys:
        raise ValueError(f"{path}: no predictions / first_stage_predictions key (keys: {sorted(sub)})")
    for key in keys:
        lists = []
        for d in sub[key]:
            conv = {}
            for tok, tr in d.items():
                poses = np.asarray(getattr(tr, "poses", None), np.float32)
                ts = getattr(tr, "trajectory_sampling", None)
                ip = getattr(ts, "interval_length", None)
                if poses.shape != (S.N_POSES, 3) or ip is None or abs(float(ip) - 0.5) > 1e-9:
                    raise ValueError(f"{path}: {key}[{tok}] is not 8 poses at 0.5 s (poses {poses.shape}, "
                                     f"interval {ip})")
                conv[tok] = poses
            lists.append(conv)
        out[key] = lists
    return out
