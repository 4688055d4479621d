"""The Scene pytree: one driving scene with fixed shapes, so that everything jits.

Frame and units: every spatial field is in the **ego rear-axle frame at t0** (x forward, y left,
heading counter-clockwise from +x), metres, seconds, radians, m/s. Time axes:

* ``T_FUT = 41`` states at 10 Hz, t = 0.0 ... 4.0 s (agents, scoring).
* ``T_PAST = 15`` ego states at 10 Hz, t = -1.5 ... -0.1 s (history comfort).
* 8 expert poses at 2 Hz, t = 0.5 ... 4.0 s.
* 9 traffic-light states at 2 Hz, t = 0.0 ... 4.0 s; state k holds for steps 5k ... 5k+4.

Padding is explicit: every padded axis has a ``*_valid`` mask. Padded polygon vertices are copies of
vertex 0 (so a padded polygon is still closed and zero-length edges never count in crossing tests);
padded polyline points are copies of the last valid point. ``validate`` checks all of this.

Static sizes live in :class:`SceneSpec`; a spec is part of every config (``config.scene``).
The Scene holds everything NAVSIM's metric cache and the official EPDMS test vectors hold (lanes with
polygon, centerline, connector / on-route flags and speed limit; drivable roadblocks, intersections and
car parks; lights per lane connector; agents at 10 Hz with type; past ego at 10 Hz), so such scenes
convert without loss (``irlvla_jax.scoring.vectors``).

Design decisions, and why:
* ``ego_history`` [4, 7] is not stored: it is ``ego_past`` at -1.5, -1.0, -0.5 s plus ``ego_state``
  (property :meth:`Scene.ego_history`), so the two can never disagree.
* Detection boxes at t0 are ``agent_boxes[:, 0]``; map polylines are the lane centerlines: not stored.
* Traffic lights are polygons (``light_polygons``, the lane-connector polygons, or stop zones) with an
  on-route flag, so TLC needs no lane lookup and the official vectors convert directly.
* Drivable polygons carry a kind (roadblock / intersection / car park); the intersection polygons are
  those of kind ``DRIVABLE_INTERSECTION``.
* Metadata are integers (scene id, split, family, seed) so a batch of scenes is one pytree of arrays.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

import numpy as np
from flax import struct

T_FUT = 41
T_PAST = 15
N_POSES = 8
N_LIGHT = 9
DT = 0.1

# Agent types.
AGENT_VEHICLE, AGENT_PEDESTRIAN, AGENT_BICYCLE, AGENT_STATIC = 0, 1, 2, 3
AGENT_TYPES = ("vehicle", "pedestrian", "bicycle", "static")
# Drivable polygon kinds.
DRIVABLE_ROADBLOCK, DRIVABLE_INTERSECTION, DRIVABLE_CARPARK = 0, 1, 2
DRIVABLE_KINDS = ("roadblock", "intersection", "carpark")
# Driving command one-hot order.
COMMANDS = ("left", "straight", "right", "unknown")
# Meta-action vocabularies.
META_SPEED = ("accelerate", "keep", "decelerate", "stop")
META_PATH = ("straight", "left", "right", "lane_change_left", "lane_change_right")


def meta_speed_label(v0: float, v4: float, vmin: float) -> int:
    """Expert speed meta-action (index into META_SPEED) from its speed at t0, at 4 s and its minimum, m/s:
    stop if it ends below 0.3 m/s (or dips below 0.2 m/s and ends below 1 m/s); accelerate / decelerate if
    the 4 s speed change exceeds +1 / -1 m/s; keep otherwise. Shared by the world and the NAVSIM adapter."""
    if v4 < 0.3 or (vmin < 0.2 and v4 < 1.0):
        return META_SPEED.index("stop")
    if v4 - v0 > 1.0:
        return META_SPEED.index("accelerate")
    if v4 - v0 < -1.0:
        return META_SPEED.index("decelerate")
    return META_SPEED.index("keep")


TURN_HEADING = 0.3   # rad: a 4 s heading change above this is a turn


def meta_path_label(heading_change: float, lane_shift: float, lane_change_threshold: float) -> int:
    """Expert path meta-action (index into META_PATH): a lane change left / right when the lateral shift
    over the 4 s future (metres, left positive) exceeds ``lane_change_threshold``; otherwise a turn left /
    right when the heading change (radians, wrapped) exceeds ``TURN_HEADING``; straight otherwise. The world
    passes its route's lane offset change (threshold 1 m); the NAVSIM adapter the final lateral offset in
    the t0 frame (threshold 2.5 m)."""
    if abs(lane_shift) > lane_change_threshold:
        return META_PATH.index("lane_change_left" if lane_shift > 0 else "lane_change_right")
    if heading_change > TURN_HEADING:
        return META_PATH.index("left")
    if heading_change < -TURN_HEADING:
        return META_PATH.index("right")
    return META_PATH.index("straight")


# BEV semantic classes (priority: later classes overwrite earlier ones when rasterised).
BEV_CLASSES = ("background", "drivable", "lane_line", "vehicle", "pedestrian", "static")
# Splits and scenario families.
# WORLD_SPLITS: the generated world's splits (`irlvla generate`); "real": every window converted from real logs
# (`irlvla convert`: NAVSIM, Argoverse 2, ScenarioNet), the only split of a converted dataset. A scene's
# ``split`` field is its index in SPLITS ("real" is appended last so the world's codes never change).
WORLD_SPLITS = ("train", "val", "test", "hard")
SPLITS = WORLD_SPLITS + ("real",)
FAMILIES = (
    "cruise_lead",        # cruising behind a lead vehicle
    "lead_brake",         # lead vehicle braking hard (NC, TTC)
    "cut_in",             # cut-in from the adjacent lane
    "blocked_lane",       # parked car or cones blocking the lane (NC 1/2, DAC)
    "intersection",       # signalised 4-way, red/green, left/straight/right (TLC, DDC)
    "pedestrian_crossing",
    "curve",              # curved road (LK, comfort)
    "lane_change",        # route needs a lane change
    "oncoming",           # two-way road with oncoming traffic (DDC)
)
INTERACTIVE_FAMILIES = ("lead_brake", "cut_in", "blocked_lane", "intersection", "pedestrian_crossing",
                        "oncoming")


class SceneError(ValueError):
    """A scene (or a batch of scenes) is malformed. The message names field, expected and found."""

    def __init__(self, field: str, expected: str, found: str, where: str = ""):
        self.field, self.expected, self.found, self.where = field, expected, found, where
        loc = f"{where}: " if where else ""
        super().__init__(f"{loc}scene field '{field}': expected {expected}, found {found}")


@dataclasses.dataclass(frozen=True)
class SceneSpec:
    """Static sizes of a Scene. Every array shape below is a function of these numbers."""
    num_agents: int = 16            # A
    num_lanes: int = 32             # L (lanes and lane connectors)
    lane_vertices: int = 32         # Vl, polygon vertices per lane
    lane_points: int = 16           # P, centerline points per lane
    num_drivable: int = 16          # G (roadblocks, intersections, car parks)
    drivable_vertices: int = 32     # Vd
    route_points: int = 64          # R
    num_lights: int = 16            # S
    light_vertices: int = 32        # Vs
    instruction_tokens: int = 24    # T
    camera_hw: Tuple[int, int] = (48, 96)
    lidar_hw: Tuple[int, int] = (48, 48)
    lidar_channels: int = 4
    bev_hw: Tuple[int, int] = (48, 48)
    # BEV extent in the ego frame, metres: (x_min, x_max, y_min, y_max). Shared by LiDAR and BEV labels.
    bev_range: Tuple[float, float, float, float] = (-16.0, 48.0, -32.0, 32.0)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "SceneSpec":
        """Build from a (ml_collections) mapping; unknown keys are an error naming the key."""
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(cfg)
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config.scene has unknown key(s) {unknown}; known keys: {sorted(names)}")
        for k, v in d.items():
            if isinstance(v, list):
                d[k] = tuple(v)
        spec = cls(**d)
        for f in dataclasses.fields(cls):
            v = getattr(spec, f.name)
            vals = v if isinstance(v, tuple) else (v,)
            if f.name != "bev_range" and any((not isinstance(x, (int, np.integer))) or x <= 0 for x in vals):
                raise ValueError(f"config.scene.{f.name} must be positive integer(s), got {v!r}")
        x0, x1, y0, y1 = spec.bev_range
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"config.scene.bev_range must be (x_min<x_max, y_min<y_max), got {spec.bev_range}")
        return spec

    def shapes(self) -> Dict[str, Tuple[Tuple[int, ...], Any]]:
        """Field name -> (shape, numpy dtype) of one (unbatched) scene."""
        A, L, Vl, P = self.num_agents, self.num_lanes, self.lane_vertices, self.lane_points
        G, Vd, R, S, Vs = self.num_drivable, self.drivable_vertices, self.route_points, self.num_lights, self.light_vertices
        f32, i32, b, u8 = np.float32, np.int32, np.bool_, np.uint8
        return {
            "ego_state": ((7,), f32),
            "ego_past": ((T_PAST, 7), f32),
            "command": ((4,), f32),
            "speed_limit": ((), f32),
            "expert_future": ((N_POSES, 3), f32),
            "agent_boxes": ((A, T_FUT, 5), f32),
            "agent_velocity": ((A, T_FUT, 2), f32),
            "agent_type": ((A,), i32),
            "agent_valid": ((A, T_FUT), b),
            "lane_polygons": ((L, Vl, 2), f32),
            "lane_vertex_valid": ((L, Vl), b),
            "lane_centerlines": ((L, P, 2), f32),
            "lane_point_valid": ((L, P), b),
            "lane_valid": ((L,), b),
            "lane_on_route": ((L,), b),
            "lane_is_connector": ((L,), b),
            "lane_speed_limit": ((L,), f32),
            "drivable_polygons": ((G, Vd, 2), f32),
            "drivable_vertex_valid": ((G, Vd), b),
            "drivable_valid": ((G,), b),
            "drivable_kind": ((G,), i32),
            "route": ((R, 2), f32),
            "route_valid": ((R,), b),
            "light_polygons": ((S, Vs, 2), f32),
            "light_vertex_valid": ((S, Vs), b),
            "light_valid": ((S,), b),
            "light_on_route": ((S,), b),
            "light_red": ((S, N_LIGHT), b),
            "camera": ((*self.camera_hw, 3), u8),
            "lidar": ((*self.lidar_hw, self.lidar_channels), f32),
            "bev_semantic": (tuple(self.bev_hw), u8),
            "instruction": ((self.instruction_tokens,), i32),
            "instruction_valid": ((self.instruction_tokens,), b),
            "meta_speed": ((), i32),
            "meta_path": ((), i32),
            "scene_id": ((), i32),
            "split": ((), i32),
            "family": ((), i32),
            "seed": ((), i32),
        }


@struct.dataclass
class Scene:
    """One scene (or a batch: every field gains the same leading axes). Shapes per :meth:`SceneSpec.shapes`.

    ego_state [7]          (x, y, heading, vx, vy, ax, ay) at t0; x = y = heading = 0 by construction;
                           velocity / acceleration in the body frame, m/s and m/s^2.
    ego_past [15, 7]       the same at t = -1.5 ... -0.1 s (pose in the t0 frame, dynamics in the body frame).
    command [4]            driving command one-hot (left, straight, right, unknown).
    speed_limit []         of the ego's lane, m/s.
    expert_future [8, 3]   the logged ("human") plan, (x, y, heading) at 0.5 ... 4.0 s.
    agent_boxes [A, 41, 5] (x, y, heading, length, width) of the box centre at t = 0 ... 4 s.
    agent_velocity [A, 41, 2]  (vx, vy) in the t0 frame, m/s; zero for static objects.
    agent_type [A]         AGENT_* code.            agent_valid [A, 41]  present at that step.
    lane_polygons [L, Vl, 2], lane_vertex_valid [L, Vl]; lane_centerlines [L, P, 2] in driving direction,
    lane_point_valid [L, P]; lane_valid, lane_on_route, lane_is_connector [L]; lane_speed_limit [L] m/s
                           (0 = unknown).
    drivable_polygons [G, Vd, 2], drivable_vertex_valid [G, Vd], drivable_valid [G], drivable_kind [G].
    route [R, 2], route_valid [R]: the route centerline, starting behind the ego.
    light_polygons [S, Vs, 2], light_vertex_valid, light_valid [S], light_on_route [S],
    light_red [S, 9]       True = red at 2 Hz sample k (t = 0.5 k s), holding for 0.5 s.
    camera [Hc, Wc, 3] uint8; lidar [Hl, Wl, C] float32 (height histogram, counts/normalised);
    bev_semantic [Hb, Wb] uint8 (BEV_CLASSES); BEV rows run along +x (row 0 = x_max), columns along -y.
    instruction [T] int32 token ids, instruction_valid [T]; meta_speed, meta_path: expert meta-actions.
    scene_id, split, family, seed: int32 metadata.
    """
    ego_state: Any
    ego_past: Any
    command: Any
    speed_limit: Any
    expert_future: Any
    agent_boxes: Any
    agent_velocity: Any
    agent_type: Any
    agent_valid: Any
    lane_polygons: Any
    lane_vertex_valid: Any
    lane_centerlines: Any
    lane_point_valid: Any
    lane_valid: Any
    lane_on_route: Any
    lane_is_connector: Any
    lane_speed_limit: Any
    drivable_polygons: Any
    drivable_vertex_valid: Any
    drivable_valid: Any
    drivable_kind: Any
    route: Any
    route_valid: Any
    light_polygons: Any
    light_vertex_valid: Any
    light_valid: Any
    light_on_route: Any
    light_red: Any
    camera: Any
    lidar: Any
    bev_semantic: Any
    instruction: Any
    instruction_valid: Any
    meta_speed: Any
    meta_path: Any
    scene_id: Any
    split: Any
    family: Any
    seed: Any

    @property
    def ego_history(self):
        """[..., 4, 7] ego states at -1.5, -1.0, -0.5, 0.0 s (2 Hz), the model's ego-status input."""
        xp = np if isinstance(self.ego_past, np.ndarray) else __import__("jax.numpy").numpy
        return xp.concatenate([self.ego_past[..., 0:15:5, :], self.ego_state[..., None, :]], axis=-2)

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "") -> "Scene":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        if missing:
            raise SceneError(missing[0], "a field of the Scene record", "nothing (missing)", where)
        extra = [k for k in d if k not in names]
        if extra:
            raise SceneError(extra[0], "no such field", "an unknown field", where)
        return cls(**{n: d[n] for n in names})


FIELDS = tuple(f.name for f in dataclasses.fields(Scene))


def empty_scene(spec: SceneSpec) -> Scene:
    """A valid all-padding scene (numpy); builders fill it in."""
    d = {}
    for name, (shape, dtype) in spec.shapes().items():
        d[name] = np.zeros(shape, dtype)
    d["command"][3] = 1.0
    d["agent_boxes"][..., 3:5] = 1.0
    d["route"][:], d["route_valid"][:] = pad_polyline([[-10.0, 0.0], [50.0, 0.0]], spec.route_points)
    return Scene(**d)


def stack(scenes) -> Scene:
    """Stack numpy scenes along a new leading batch axis."""
    return Scene(**{n: np.stack([getattr(s, n) for s in scenes]) for n in FIELDS})


def index(scenes: Scene, i) -> Scene:
    """Select element(s) i of the leading axis of a batched scene."""
    return Scene(**{n: getattr(scenes, n)[i] for n in FIELDS})


# ----------------------------------------------------------------------------------------------------
# Validation (numpy, host side: on write and on read).

_RANGES = {  # field -> (min, max), inclusive, on valid entries
    "speed_limit": (0.0, 60.0),
    "lane_speed_limit": (0.0, 60.0),
    "agent_type": (0, len(AGENT_TYPES) - 1),
    "drivable_kind": (0, len(DRIVABLE_KINDS) - 1),
    "bev_semantic": (0, len(BEV_CLASSES) - 1),
    "meta_speed": (0, len(META_SPEED) - 1),
    "meta_path": (0, len(META_PATH) - 1),
    "split": (0, len(SPLITS) - 1),
    "family": (0, len(FAMILIES) - 1),
    "instruction": (0, 1 << 20),
    "scene_id": (0, (1 << 31) - 1),
}
_COORD_LIMIT = 2000.0  # metres; anything farther from the ego is a unit or frame error


def validate(scene: Scene, spec: SceneSpec, where: str = "", batch_dims: int = 0) -> Scene:
    """Check shapes, dtypes, finiteness, ranges and masks of a numpy scene; return it or raise SceneError.

    ``batch_dims`` leading axes are allowed on every field (all equal). ``where`` (e.g. a scene id or
    record path) is prefixed to the message.
    """
    shapes = spec.shapes()
    batch = None
    for name, (shape, dtype) in shapes.items():
        v = getattr(scene, name)
        if v is None:
            raise SceneError(name, f"array of shape {shape}", "None", where)
        v = np.asarray(v)
        if v.ndim != len(shape) + batch_dims or tuple(v.shape[batch_dims:]) != tuple(shape):
            raise SceneError(name, f"shape {('B',) * batch_dims + tuple(shape)}", f"shape {v.shape}", where)
        b = v.shape[:batch_dims]
        if batch is None:
            batch = b
        elif b != batch:
            raise SceneError(name, f"batch shape {batch}", f"batch shape {b}", where)
        if v.dtype != np.dtype(dtype):
            raise SceneError(name, f"dtype {np.dtype(dtype)}", f"dtype {v.dtype}", where)
        if np.issubdtype(v.dtype, np.floating):
            bad = ~np.isfinite(v)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise SceneError(name, "finite values", f"{v[idx]} at index {idx}", where)
        if name in _RANGES:
            lo, hi = _RANGES[name]
            if v.size and (v.min() < lo or v.max() > hi):
                idx = tuple(int(i) for i in np.argwhere((v < lo) | (v > hi))[0])
                raise SceneError(name, f"values in [{lo}, {hi}]", f"{v[idx]} at index {idx}", where)
    for name in ("agent_boxes", "lane_polygons", "lane_centerlines", "drivable_polygons", "route",
                 "light_polygons", "expert_future", "ego_past"):
        v = np.asarray(getattr(scene, name))[..., :2]
        if v.size and np.abs(v).max() > _COORD_LIMIT:
            idx = tuple(int(i) for i in np.argwhere(np.abs(v) > _COORD_LIMIT)[0])
            raise SceneError(name, f"|x|, |y| <= {_COORD_LIMIT} m (ego frame)", f"{v[idx]} at index {idx}", where)
    s = scene
    if np.any(np.abs(np.asarray(s.ego_state)[..., :3]) > 1e-3):
        raise SceneError("ego_state", "x = y = heading = 0 (ego frame at t0)",
                         f"{np.asarray(s.ego_state)[..., :3].reshape(-1, 3)[0]}", where)
    cmd = np.asarray(s.command)
    if not (np.all((cmd == 0) | (cmd == 1)) and np.all(cmd.sum(-1) == 1)):
        raise SceneError("command", "a one-hot vector of 4", f"{cmd.reshape(-1, 4)[0]}", where)
    dims = np.asarray(s.agent_boxes)[..., 3:5]
    valid = np.asarray(s.agent_valid)
    if np.any(valid & np.any(dims <= 0, -1)):
        raise SceneError("agent_boxes", "length, width > 0 where agent_valid", "a non-positive size", where)
    for poly, vmask, pmask in (("lane_polygons", "lane_vertex_valid", "lane_valid"),
                               ("drivable_polygons", "drivable_vertex_valid", "drivable_valid"),
                               ("light_polygons", "light_vertex_valid", "light_valid")):
        _check_polygons(np.asarray(getattr(s, poly)), np.asarray(getattr(s, vmask)),
                        np.asarray(getattr(s, pmask)), poly, vmask, where)
    _check_polyline(np.asarray(s.lane_centerlines), np.asarray(s.lane_point_valid), "lane_centerlines",
                    "lane_point_valid", where, np.asarray(s.lane_valid))
    _check_polyline(np.asarray(s.route), np.asarray(s.route_valid), "route", "route_valid", where, None)
    return scene


def _prefix_ok(mask: np.ndarray) -> np.ndarray:
    """True where the mask along the last axis is a prefix of Trues followed by Falses."""
    m = mask.astype(np.int8)
    return np.all(np.diff(m, axis=-1) <= 0, axis=-1)


def _check_polygons(poly, vmask, pmask, name, vname, where):
    if not np.all(_prefix_ok(vmask)):
        raise SceneError(vname, "valid vertices first, padding after", "a gap in the mask", where)
    n = vmask.sum(-1)
    if np.any(pmask & (n < 3)):
        raise SceneError(vname, ">= 3 valid vertices for every valid polygon", f"{int(n[pmask].min())}", where)
    pad_ok = np.all(np.where(vmask[..., None], True, poly == poly[..., :1, :]), axis=(-1, -2))
    if not np.all(pad_ok):
        raise SceneError(name, "padded vertices equal to vertex 0", "other padding values", where)


def _check_polyline(line, pmask, name, mname, where, lane_valid):
    if not np.all(_prefix_ok(pmask)):
        raise SceneError(mname, "valid points first, padding after", "a gap in the mask", where)
    n = pmask.sum(-1)
    need = (n < 2) if lane_valid is None else (lane_valid & (n < 2))
    if np.any(need):
        raise SceneError(mname, ">= 2 valid points", f"{int(n[need].min())}", where)
    last = np.take_along_axis(line, np.maximum(n - 1, 0)[..., None, None], axis=-2)
    pad_ok = np.all(np.where(pmask[..., None], True, line == last), axis=(-1, -2))
    if not np.all(pad_ok):
        raise SceneError(name, "padded points equal to the last valid point", "other padding values", where)


def pad_polygon(points, n: int, field: str = "polygon") -> Tuple[np.ndarray, np.ndarray]:
    """[k, 2] -> ([n, 2] padded with vertex 0, [n] mask). Raises SceneError if k > n."""
    p = np.asarray(points, np.float32).reshape(-1, 2)
    if len(p) > n:
        raise SceneError(field, f"at most {n} vertices (raise the SceneSpec size)", f"{len(p)}")
    out = np.repeat(p[:1], n, axis=0) if len(p) else np.zeros((n, 2), np.float32)
    out[: len(p)] = p
    mask = np.zeros(n, bool)
    mask[: len(p)] = True
    return out, mask


def pad_polyline(points, n: int, field: str = "polyline") -> Tuple[np.ndarray, np.ndarray]:
    """[k, 2] -> ([n, 2] padded with the last point, [n] mask). Raises SceneError if k > n."""
    p = np.asarray(points, np.float32).reshape(-1, 2)
    if len(p) > n:
        raise SceneError(field, f"at most {n} points (raise the SceneSpec size)", f"{len(p)}")
    out = np.repeat(p[-1:], n, axis=0) if len(p) else np.zeros((n, 2), np.float32)
    out[: len(p)] = p
    mask = np.zeros(n, bool)
    mask[: len(p)] = True
    return out, mask


def padded_chunks(scenes: Scene, chunk: int):
    """Yield ``(start, batch, m)``: consecutive chunks of a batched numpy scene, each padded to exactly
    ``chunk`` scenes (by repeating the last one) so a jitted function sees one shape; ``m`` real scenes."""
    n = int(np.asarray(scenes.scene_id).shape[0])
    for i in range(0, n, chunk):
        b = index(scenes, slice(i, min(i + chunk, n)))
        m = int(np.asarray(b.scene_id).shape[0])
        if m < chunk:
            b = Scene(**{f: np.concatenate([getattr(b, f), np.repeat(getattr(b, f)[-1:], chunk - m, 0)])
                         for f in FIELDS})
        yield i, b, m


def pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` padded to ``n`` rows by repeating its last row (per-scene arrays beside :func:`padded_chunks`)."""
    return np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], 0)])
