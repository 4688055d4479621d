"""Real driving logs -> Scene windows: the source-independent half of the Argoverse 2 and ScenarioNet
adapters (:mod:`irlvla_jax.data.av2`, :mod:`irlvla_jax.data.scenarionet`).

An adapter reads its format into a :class:`RealLog` (global frame, 10 Hz) and this module does the rest,
with the NAVSIM adapter's conventions (:mod:`irlvla_jax.data.navsim`) and its map code
(:func:`irlvla_jax.data.navsim.scene_map.fill_map`):

* **Windows**, like NAVSIM's scene filter: t0 every ``stride`` steps (default 5 = 0.5 s, one NAVSIM
  frame) wherever the log has 1.5 s of ego history and 4 s of ego future (``T_PAST`` + ``T_FUT`` steps);
  a window is named ``<log>@<t0 in ms>``.
* **Frame**: the ego rear-axle frame at t0. ``ego_state`` = (0, 0, 0, vx, vy, ax, ay): the velocity and
  acceleration of the rear axle in the body frame, by central differences of the 10 Hz poses (what a
  NAVSIM log's ``ego_dynamic_state`` holds). ``ego_past`` = the 15 logged 10 Hz states before t0;
  ``expert_future`` = the logged poses at 0.5 ... 4.0 s.
* **Agents** at their logged 10 Hz states (a NAVSIM log has 2 Hz boxes that its adapter interpolates to
  10 Hz): valid between a track's first and last sighting in [t0, t0 + 4 s], linearly interpolated over
  gaps; velocity by central differences, zero for static objects. Tracks present at t0 first, then by
  distance to the ego, as NAVSIM; the tracks beyond ``spec.num_agents`` are dropped and **counted** in
  the window's report (with the nearest dropped distance).
* **Route**: the lanes the logged ego drives. Every 10 Hz ego pose of the *whole log* is matched to the
  lanes whose polygon holds its rear axle with a heading error below 60 deg (the best-aligned one); the
  roadblocks of those lanes, in order of first visit, are the route (``roadblock_ids``). Assumes the
  driver followed its mission route (what NAVSIM's route is) and that the map covers the logged path; a
  window whose t0 pose matches no lane has no route and is rejected with that reason. Roadblocks group
  lanes that run side by side in the same direction (``real_map.group_roadblocks``), so a lane change
  stays on the route, as in nuPlan.
* **Driving command** (left / straight / right) from the route: the heading change of the route
  centerline between the ego's projection and 40 m further along (left / right beyond +-0.5 rad, else
  straight) -- NAVSIM's commands also come from the route, not from the future poses.
* **Map**: lanes longer than ``MAX_LANE_LENGTH`` are cut into chained pieces; the drivable area (the
  source's drivable polygons united with all lane polygons) is clipped to a box around the ego and cut
  into at most ``spec.num_drivable`` hole-free pieces of at most ``spec.drivable_vertices`` vertices
  (``real_map.drivable_pieces``); lanes, pieces and lights then go through NAVSIM's ``fill_map``. What was
  cut (lanes beyond the budget, drivable area beyond the budget, holes filled, the largest simplification
  error, agents beyond the budget and the nearest of them) is in the window's report, never silently.
* **Lights** from the log where it has them (per lane, per 10 Hz step, read at t0, t0 + 0.5 s, ...).
* **Sensors**: the world's camera / LiDAR / BEV renderers (:mod:`irlvla_jax.world.sensors`) fed with the
  window's real map and boxes -- simulated sensors of real geometry, not the log's cameras. The
  instruction is built from the command and the speed limit with the world's language.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data.navsim import geometry as G
from irlvla_jax.data.navsim.convert import MAP_RADIUS
from irlvla_jax.data.navsim.maps import MapArea, MapLane
from irlvla_jax.data.real_map import crop_box, drivable_pieces, match_route, prepare_lanes

COMMAND_LOOKAHEAD, COMMAND_TURN = 40.0, 0.5   # m, rad: route heading change that makes left / right


@dataclasses.dataclass
class Track:
    """One object's track on the log's 10 Hz clock, global frame.

    id: str; type: ``scene.AGENT_*``; length, width, height: metres (box size, constant);
    xyh [T, 3] float64: box centre x, y (m) and heading (rad) at every step (anything where not valid);
    valid [T] bool: observed at that step.
    """
    id: str
    type: int
    length: float
    width: float
    height: float
    xyh: np.ndarray
    valid: np.ndarray


@dataclasses.dataclass
class Marking:
    """A painted line for the camera: polyline [k, 2] (global, m) and style 0 solid / 1 dashed / 2 yellow."""
    points: np.ndarray
    style: int


@dataclasses.dataclass
class RealLog:
    """A real log in a global (city / dataset) frame on a uniform 10 Hz clock.

    source: "av2" | "nuscenes" | "waymo" | ...; name: the log / scenario id; path: the file or folder read
    (for messages); t [T] float64 s (t[i] = t[0] + 0.1 i); ego [T, 3] float64: rear-axle x, y (m),
    heading (rad); tracks: the other objects; lanes: :class:`MapLane` with polygon, centerline in driving
    direction, successors, ``speed_limit`` m/s or None, ``is_connector`` (inside an intersection) and
    ``roadblock_id`` (set by :func:`group_roadblocks` unless the source has roadblocks); drivable:
    drivable-area polygons (may be empty: the lanes then bound the drivable area); intersections:
    intersection polygons (may be empty); crosswalks: polygons [4, 2]; markings: painted lines;
    lights: None if the source has no light states, else one dict per step {lane id: is_red}.
    """
    source: str
    name: str
    path: str
    t: np.ndarray
    ego: np.ndarray
    tracks: List[Track]
    lanes: List[MapLane]
    drivable: List[MapArea]
    intersections: List[MapArea]
    crosswalks: List[np.ndarray]
    markings: List[Marking]
    lights: Optional[List[Dict[str, bool]]] = None


@dataclasses.dataclass
class Window:
    """One window of a log: its Scene, or ``None`` with a one-line ``reason``; ``report`` says what was cut
    (agents / lanes / drivable area dropped, the largest polygon simplification error in metres)."""
    log: str
    token: str
    t0: int
    scene: Optional[S.Scene]
    reason: str = ""
    report: Dict[str, Any] = dataclasses.field(default_factory=dict)


def failed_log(log: str, error: Exception) -> Window:
    """The one window an adapter yields for a log it cannot read: ``t0 = -1``, no scene, the error as reason."""
    return Window(log, log, -1, None, f"log failed: {error}")


class LogError(ValueError):
    """A log file is malformed: the message names the file and the field."""

    def __init__(self, path: str, field: str, problem: str):
        super().__init__(f"{path}: field '{field}': {problem}")


# ----------------------------------------------------------------------------------------------------
# Windows -> Scenes.

DEFAULT_SPEED_LIMIT = 40 / 3.6   # m/s: assumed where the source has no limit (AV2 maps carry none)
STATIC_TYPES = (S.AGENT_STATIC,)


DYNAMICS_WINDOW = 9    # steps (0.9 s): Savitzky-Golay window of the ego's velocity / acceleration


def ego_dynamics(ego: np.ndarray, dt: float = S.DT) -> np.ndarray:
    """Rear-axle (vx, vy, ax, ay) [T, 4] in the body frame from poses [T, 3] at ``dt``: first and second
    derivatives of a cubic Savitzky-Golay fit over ``DYNAMICS_WINDOW`` steps (exact for motion of constant
    jerk; plain double differences of logged poses turn 1 cm of localisation noise into ~2 m/s^2)."""
    from scipy.signal import savgol_filter
    w = min(DYNAMICS_WINDOW, len(ego) - (1 - len(ego) % 2))
    if w < 5:
        v = np.gradient(ego[:, :2], dt, axis=0)
        a = np.gradient(v, dt, axis=0)
    else:
        v = savgol_filter(ego[:, :2], w, 3, deriv=1, delta=dt, axis=0, mode="interp")
        a = savgol_filter(ego[:, :2], w, 3, deriv=2, delta=dt, axis=0, mode="interp")
    c, s = np.cos(ego[:, 2]), np.sin(ego[:, 2])
    rot = lambda u: np.stack([c * u[:, 0] + s * u[:, 1], -s * u[:, 0] + c * u[:, 1]], -1)  # noqa: E731
    return np.concatenate([rot(v), rot(a)], -1)


def _track_states(tr: Track, i0: int, origin: np.ndarray):
    """A track over steps i0 ... i0+40 in the t0 frame -> (states [41, 5] x, y, h, vx, vy; valid [41])."""
    sl = slice(i0, i0 + S.T_FUT)
    ok = tr.valid[sl].astype(bool)
    out = np.zeros((S.T_FUT, 5))
    if not ok.any():
        return out, ok
    idx = np.nonzero(ok)[0]
    valid = np.zeros(S.T_FUT, bool)
    valid[idx[0]:idx[-1] + 1] = True
    rel = G.relative_pose(tr.xyh[sl][ok], origin)
    rel[:, 2] = np.unwrap(rel[:, 2])
    t = np.arange(S.T_FUT)[valid]
    st = np.stack([np.interp(t, idx, rel[:, j]) for j in range(3)], -1)
    if tr.type not in STATIC_TYPES and len(idx) > 1:
        vel = np.gradient(st[:, :2], S.DT, axis=0)
    else:
        vel = np.zeros((len(t), 2))
    st[:, 2] = G.wrap_angle(st[:, 2])
    out[valid] = np.concatenate([st, vel], -1)
    return out, valid


def _agents(log: RealLog, i0: int, origin: np.ndarray, spec: S.SceneSpec, f: dict) -> Dict[str, Any]:
    rows = []
    for tr in log.tracks:
        st, valid = _track_states(tr, i0, origin)
        if not valid.any():
            continue
        first = int(np.argmax(valid))
        rows.append((not valid[0], float(np.hypot(*st[first, :2])), tr.id, tr, st, valid))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    for i, (_, _, _, tr, st, valid) in enumerate(rows[:spec.num_agents]):
        f["agent_boxes"][i, :, :3] = np.where(valid[:, None], st[:, :3], 0.0)
        f["agent_boxes"][i, :, 3:5] = (tr.length, tr.width)
        f["agent_velocity"][i] = np.where(valid[:, None], st[:, 3:5], 0.0)
        f["agent_type"][i] = tr.type
        f["agent_valid"][i] = valid
    dropped = rows[spec.num_agents:]
    return {"agents": len(rows), "agents_dropped": len(dropped),
            "nearest_dropped_m": round(min(r[1] for r in dropped), 1) if dropped else None,
            "heights": [r[3].height for r in rows[:spec.num_agents]]}


def route_command(route: np.ndarray) -> str:
    """left / straight / right from the heading change of ``route`` (t0 frame) over the ``COMMAND_LOOKAHEAD``
    m after the ego's projection."""
    s_ego, _ = G.project_on_polyline(route, np.zeros(2))
    ahead = G.crop_polyline(route, s_ego, s_ego + COMMAND_LOOKAHEAD)
    seg = np.diff(ahead, axis=0)
    seg = seg[np.linalg.norm(seg, axis=-1) > 1e-6]
    if len(seg) < 1:
        return "straight"
    dh = float(G.wrap_angle(np.arctan2(seg[-1, 1], seg[-1, 0]) - np.arctan2(seg[0, 1], seg[0, 0])))
    return "left" if dh > COMMAND_TURN else "right" if dh < -COMMAND_TURN else "straight"


def instruction_text(command: str, connectors: Sequence[np.ndarray], limit: float) -> str:
    """The world's phrasing: a turn (with its distance when an on-route connector lies ahead) or "follow the
    road", then the speed limit."""
    from irlvla_jax.world import language
    if command == "straight":
        base = "follow the road"
    else:
        base = f"turn {command} at the intersection"
        ahead = [float(c[0, 0]) for c in connectors if len(c) and c[0, 0] > 3.0]
        if ahead:
            base += f" in {language.round5(min(ahead))} m"
    return f"{base}, speed limit {language.kmh(limit)} km/h"


def window_token(log: RealLog, i0: int) -> str:
    """``<log>@<t0 in ms since the log's start>``."""
    return f"{log.name}@{int(round((log.t[i0] - log.t[0]) * 1000))}"


@dataclasses.dataclass
class PreparedLog:
    """What every window of a log shares: lanes cut and grouped (:func:`prepare_lanes`), the route's
    roadblock ids and the lane matched at each step (:func:`match_route`), ego dynamics [T, 4]."""
    log: RealLog
    lanes: List[MapLane]
    route_ids: List[str]
    lane_per_step: np.ndarray
    dynamics: np.ndarray
    shapes: Dict[str, Any] = dataclasses.field(default_factory=dict)   # lane id -> shapely polygon
    areas: Tuple[Any, Any] = (None, None)       # (drivable, intersections): shapely unions of the source's


def _shape(ring):
    from shapely.geometry import Polygon
    return Polygon(G.clean_ring(ring)).buffer(0)


def prepare(log: RealLog) -> PreparedLog:
    """The per-log work, done once: lanes, route, dynamics, and the map's shapely polygons."""
    from shapely.ops import unary_union
    lanes = prepare_lanes(log.lanes)
    route_ids, per_step = match_route(log.ego, lanes)
    areas = (unary_union([_shape(a.polygon) for a in log.drivable]),
             unary_union([_shape(a.polygon) for a in log.intersections]))
    return PreparedLog(log, lanes, route_ids, per_step, ego_dynamics(log.ego),
                       {ln.id: _shape(ln.polygon) for ln in lanes}, areas)


def window_steps(log: RealLog, stride: int = 5) -> List[int]:
    """The t0 steps of a log's windows: every ``stride`` steps with 1.5 s of history and 4 s of future."""
    return list(range(S.T_PAST, len(log.t) - S.T_FUT + 1, max(int(stride), 1)))


def _map_regions(p: PreparedLog, lanes: Sequence[MapLane], origin: np.ndarray):
    """(road, intersection) drivable regions of the window (shapely, global frame, clipped to the box)."""
    from shapely.ops import unary_union
    box = crop_box(origin)
    shapes = [p.shapes[ln.id] for ln in lanes]
    near = [(ln, sh) for ln, sh in zip(lanes, shapes) if sh.intersects(box)]
    inter = unary_union([p.areas[1]] + [sh for ln, sh in near if ln.is_connector]).intersection(box)
    allr = unary_union([p.areas[0]] + [sh for _, sh in near]).intersection(box)
    return allr.difference(inter), inter


def window_map(p: PreparedLog, i0: int, spec: S.SceneSpec):
    """The window's map query (global frame: every lane of the log for the route search, the drivable
    pieces), the lanes within ``MAP_RADIUS`` and what the drivable pieces cost
    (:func:`irlvla_jax.data.real_map.drivable_pieces`)."""
    from irlvla_jax.data.navsim.maps import MapQuery
    origin = p.log.ego[i0]
    near = [ln for ln in p.lanes if G.point_polygon_distance(origin[:2], ln.polygon) <= MAP_RADIUS]
    road, inter = _map_regions(p, near, origin)
    within = _shape_point(origin[:2]).buffer(MAP_RADIUS, 64)
    road, inter = road.intersection(within), inter.intersection(within)
    inter_rings, c_int = drivable_pieces(inter, spec.num_drivable // 4, spec.drivable_vertices)
    road_rings, c_road = drivable_pieces(road, spec.num_drivable - len(inter_rings), spec.drivable_vertices)
    q = MapQuery(lanes=list(p.lanes), roadblocks=[MapArea(f"road{k}", r) for k, r in enumerate(road_rings)],
                 intersections=[MapArea(f"inter{k}", r) for k, r in enumerate(inter_rings)], carparks=[])
    cost = {"drivable_dropped_m2": round(c_int["dropped_area_m2"] + c_road["dropped_area_m2"], 1),
            "holes_filled_m2": round(c_int["holes_filled_m2"] + c_road["holes_filled_m2"], 1),
            "max_simplify_m": max(c_int["max_simplify_m"], c_road["max_simplify_m"])}
    return q, near, cost


def window_scene(p: PreparedLog, i0: int, spec: S.SceneSpec, *, split: str = "real",
                 render: bool = True) -> Tuple[S.Scene, Dict[str, Any]]:
    """The Scene of the window with t0 = step ``i0`` (validated) and its report; SceneError if it cannot be
    made (the message is the window's rejection reason)."""
    from irlvla_jax.data.navsim.scene_map import fill_map
    log = p.log
    token = window_token(log, i0)
    where = f"{log.source} window {token}"
    f = {k: v.copy() for k, v in S.empty_scene(spec).to_dict().items()}
    origin = log.ego[i0]
    rel = G.relative_pose(log.ego[i0 - S.T_PAST:i0 + S.T_FUT], origin)
    dyn = p.dynamics
    f["ego_state"][:] = [0.0, 0.0, 0.0, *dyn[i0]]
    f["ego_past"][:] = np.concatenate([rel[:S.T_PAST], dyn[i0 - S.T_PAST:i0]], -1)
    f["expert_future"][:] = rel[S.T_PAST + 5::5][:S.N_POSES]
    speed = np.hypot(dyn[i0:i0 + S.T_FUT:5, 0], dyn[i0:i0 + S.T_FUT:5, 1])      # 2 Hz, t = 0 ... 4 s
    fut = f["expert_future"]
    f["meta_speed"][...] = S.meta_speed_label(speed[0], speed[-1], speed.min())
    f["meta_path"][...] = S.meta_path_label(float(G.wrap_angle(fut[-1, 2])), float(fut[-1, 1]), 2.5)
    report = _agents(log, i0, origin, spec, f)
    heights = report.pop("heights")

    if not p.lane_per_step[i0]:
        raise S.SceneError("route", "the ego's rear axle at t0 inside a lane running its way (within 60 deg)",
                           "no such lane in the map", where)
    q, near, cost = window_map(p, i0, spec)
    lights_t = [dict(log.lights[i0 + 5 * k]) if log.lights else {} for k in range(S.N_LIGHT)]
    route, fam = fill_map(f, spec, q, p.route_ids, origin, lights_t, where, MAP_RADIUS)
    s_ego, _ = G.project_on_polyline(route, np.zeros(2))
    route = G.crop_polyline(route, s_ego - 60.0, s_ego + 140.0)
    f["route"][:], f["route_valid"][:] = S.pad_polyline(G.fit_polyline(route, spec.route_points),
                                                        spec.route_points, "route")
    command = route_command(route)
    f["command"][:] = 0.0
    f["command"][S.COMMANDS.index(command)] = 1.0
    assumed = float(f["speed_limit"]) <= 0.0
    if assumed:
        f["speed_limit"][...] = DEFAULT_SPEED_LIMIT
    conn = [f["lane_centerlines"][i][f["lane_point_valid"][i]] for i in range(spec.num_lanes)
            if f["lane_valid"][i] and f["lane_on_route"][i] and f["lane_is_connector"][i]]
    from irlvla_jax.world import language
    f["instruction"][:], f["instruction_valid"][:] = language.encode(
        instruction_text(command, conn, float(f["speed_limit"])), spec.instruction_tokens)
    f["split"][...] = S.SPLITS.index(split)
    f["family"][...] = S.FAMILIES.index(fam)
    f["scene_id"][...] = zlib.crc32(token.encode()) & 0x7FFFFFFF
    if render:
        _render(f, spec, log, origin, [a.polygon for a in q.roadblocks + q.intersections], heights)
    report.update(lanes_near=len(near), lanes_dropped=max(0, len(near) - spec.num_lanes), **cost,
                  speed_limit_assumed=assumed, command=command)
    return S.validate(S.Scene.from_dict(f, where), spec, where), report


def _render(f: dict, spec: S.SceneSpec, log: RealLog, origin: np.ndarray, rings, heights) -> None:
    """Camera, LiDAR and BEV of the window from its real geometry (the world's renderers)."""
    from irlvla_jax.world import sensors
    from irlvla_jax.world.paths import ccw
    ok = f["agent_valid"][:, 0]
    types = f["agent_type"][ok]
    hts = np.asarray(heights + [1.5] * (spec.num_agents - len(heights)))[:spec.num_agents][ok]
    rng = np.random.default_rng(int(f["scene_id"]))          # agent colours, then LiDAR dropout
    colors = sensors.agent_colors(types, rng)
    box = crop_box(origin)
    inp = sensors.SensorInput(
        drivable=[ccw(G.to_frame(r, origin)) for r in rings],
        markings=[(G.to_frame(m.points, origin), m.style) for m in log.markings
                  if len(m.points) >= 2 and box.distance(_shape_point(m.points[len(m.points) // 2])) < 60.0],
        crosswalks=[G.to_frame(c, origin) for c in log.crosswalks
                    if box.distance(_shape_point(np.mean(c, 0))) < 1.0],
        boxes=f["agent_boxes"][ok, 0].astype(np.float64), types=types, heights=hts, colors=colors, lights=[])
    f["camera"][:] = sensors.render_camera(spec, inp)
    f["lidar"][:] = sensors.render_lidar(spec, inp, rng)
    f["bev_semantic"][:] = sensors.render_bev(spec, inp)


def _shape_point(xy):
    from shapely.geometry import Point
    return Point(float(xy[0]), float(xy[1]))


def log_windows(log: RealLog, spec: S.SceneSpec, *, stride: int = 5, render: bool = True) -> Iterator[Window]:
    """Every window of ``log``: converted (validated Scene + report) or rejected (reason)."""
    p = prepare(log)
    for i0 in window_steps(log, stride):
        token = window_token(log, i0)
        try:
            scene, report = window_scene(p, i0, spec, render=render)
            yield Window(log.name, token, i0, scene, "", report)
        except S.SceneError as e:
            yield Window(log.name, token, i0, None, f"{e.field}: expected {e.expected}, found {e.found}")


# ----------------------------------------------------------------------------------------------------
# The same window as a NAVSIM log (frames at 2 Hz + a DictMapLayers map): what the NAVSIM adapter reads.

NAVSIM_NAME = {S.AGENT_VEHICLE: "vehicle", S.AGENT_PEDESTRIAN: "pedestrian", S.AGENT_BICYCLE: "bicycle",
               S.AGENT_STATIC: "generic_object"}


def _quaternion(yaw: float) -> List[float]:
    return [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]


def navsim_window(p: PreparedLog, i0: int, spec: S.SceneSpec, command: np.ndarray):
    """Window ``i0`` written in NAVSIM's log format -> (frames, maps): 12 frame dicts at 2 Hz (4 history,
    t0 = frames[3], 8 future; token of frames[3] = the window token) and a ``DictMapLayers`` dict with one
    map named after the window (its lanes and drivable pieces, :func:`window_map`). Boxes and velocities
    are in each frame's ego rear-axle frame, the ego pose as translation + (w, x, y, z) quaternion, the
    dynamics in the body frame, as NAVSIM's logs hold them. ``command`` [4] is written into every frame."""
    log, token = p.log, window_token(p.log, i0)
    q, _, _ = window_map(p, i0, spec)
    frames = []
    for j in range(4 + S.N_POSES):
        k = i0 + 5 * (j - 3)
        x, y, h = log.ego[k]
        c, s = np.cos(h), np.sin(h)
        boxes, names, vel, tids = [], [], [], []
        for tr in log.tracks:
            if not tr.valid[k]:
                continue
            lo = k - 1 if k > 0 and tr.valid[k - 1] else k        # central difference over the observed
            hi = k + 1 if k + 1 < len(log.t) and tr.valid[k + 1] else k   # neighbours (one-sided at a gap)
            ok = hi > lo and tr.type != S.AGENT_STATIC
            v = (tr.xyh[hi, :2] - tr.xyh[lo, :2]) / ((hi - lo) * S.DT) if ok else np.zeros(2)
            d = tr.xyh[k, :2] - (x, y)
            boxes.append([c * d[0] + s * d[1], -s * d[0] + c * d[1], 0.0, tr.length, tr.width, tr.height,
                          float(G.wrap_angle(tr.xyh[k, 2] - h))])
            vel.append([c * v[0] + s * v[1], -s * v[0] + c * v[1], 0.0])
            names.append(NAVSIM_NAME[tr.type])
            tids.append(tr.id)
        frames.append({
            "token": token if j == 3 else f"{token}#{j}", "timestamp": int(round(log.t[k] * 1e6)),
            "log_name": log.name, "scene_token": token, "map_location": token,
            "roadblock_ids": list(p.route_ids), "ego2global_translation": [float(x), float(y), 0.0],
            "ego2global_rotation": _quaternion(float(h)), "ego_dynamic_state": [float(v) for v in p.dynamics[k]],
            "driving_command": [float(v) for v in command],
            "traffic_lights": sorted(log.lights[k].items()) if log.lights else [],
            "anns": {"gt_boxes": np.asarray(boxes, np.float64).reshape(-1, 7), "gt_names": np.asarray(names),
                     "gt_velocity_3d": np.asarray(vel, np.float64).reshape(-1, 3),
                     "instance_tokens": np.asarray(tids), "track_tokens": np.asarray(tids)}})
    lanes = [{"id": ln.id, "polygon": ln.polygon.tolist(), "centerline": ln.centerline.tolist(),
              "roadblock_id": ln.roadblock_id, "is_connector": ln.is_connector, "speed_limit": ln.speed_limit,
              "successors": list(ln.successors)} for ln in q.lanes]
    maps = {token: {"lanes": lanes,
                    "roadblocks": [{"id": a.id, "polygon": a.polygon.tolist()} for a in q.roadblocks],
                    "intersections": [{"id": a.id, "polygon": a.polygon.tolist()} for a in q.intersections]}}
    return frames, maps
