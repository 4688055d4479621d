"""Packing a simulated world into a :class:`~irlvla_jax.scene.Scene` record: everything transformed into
the ego's rear-axle frame at t0 and cut to the SceneSpec budgets.

Ego state, past and the expert's future (2 Hz); agents (any overlapping the ego at t0 dropped; key agents
first, then nearest; observed while within ``SENSOR_RANGE`` of the ego's t0 position, so a few leave
during the 4 s); lanes (on-route first, then nearest), drivable polygons (intersections first, then
nearest), lights (connectors with a light, on-route first), all resampled to the spec's vertex counts;
the route; the sensors (``sensors``: camera, LiDAR histogram, BEV semantics); the instruction
(``language``) and the expert's meta-actions (``scene.meta_speed_label`` / ``scene.meta_path_label``).
"""
from __future__ import annotations

from typing import List

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.scene import (FAMILIES, N_LIGHT, T_PAST, Scene,
                              SceneSpec, pad_polygon, pad_polyline)
from irlvla_jax.world import expert as E
from irlvla_jax.world import language
from irlvla_jax.world import sensors
from irlvla_jax.world.paths import Path, adaptive_params, ccw
from irlvla_jax.world.scaffold import World
from irlvla_jax.world.simulate import Built, Simulation, ego_boxes
from irlvla_jax.world.traffic import boxes_overlap

SENSOR_RANGE = 120.0               # metres from the ego at t0: agents farther away are not observed

def _to_ego(xy: np.ndarray, pose) -> np.ndarray:
    """World points [..., 2] -> the frame of ``pose`` (x, y, heading)."""
    x0, y0, h0 = pose
    c, s = np.cos(h0), np.sin(h0)
    d = np.asarray(xy, np.float64)[..., :2] - np.array([x0, y0])
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def _wrap(a):
    """Angle(s) wrapped to [-pi, pi) (numpy)."""
    return (a + np.pi) % (2 * np.pi) - np.pi


def _fit_polygon(poly: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` evenly spread vertices of ``poly`` (first and last kept)."""
    if len(poly) <= n:
        return poly
    idx = np.unique(np.round(np.linspace(0, len(poly) - 1, n)).astype(int))
    return poly[idx]


def _route_points(route: Path, n: int) -> np.ndarray:
    """``n`` route points, denser where it turns."""
    s = adaptive_params(route, 0.0, route.length, n, alpha=30.0)
    x, y, _ = route.at(s)
    return np.stack([x, y], -1)


def _meta(w: World, ex: E.ExpertResult) -> tuple:
    """(meta_speed, meta_path) labels of the expert's 4 s future."""
    v = ex.v[T_PAST:]
    shift = 0.0
    if w.lc_grid is not None:
        seg = np.interp([ex.s[T_PAST], ex.s[-1]], w.route.s, w.lc_grid)
        shift = float(seg[1] - seg[0])
    dh = float(_wrap(ex.pose[-1, 2] - ex.pose[T_PAST, 2]))
    return S.meta_speed_label(v[0], v[-1], v.min()), S.meta_path_label(dh, shift, 1.0)


def _pack_ego(d: dict, w: World, ex: E.ExpertResult, pose0) -> None:
    """Ego state, past, expert future, command and speed limit."""
    v0, a0 = float(ex.v[T_PAST]), float(ex.a[T_PAST])
    d["ego_state"][:] = [0.0, 0.0, 0.0, v0, 0.0, a0, float(ex.ay[T_PAST])]
    pp = ex.pose[:T_PAST]
    d["ego_past"][:, :2] = _to_ego(pp[:, :2], pose0)
    d["ego_past"][:, 2] = _wrap(pp[:, 2] - pose0[2])
    d["ego_past"][:, 3] = ex.v[:T_PAST]
    d["ego_past"][:, 5] = ex.a[:T_PAST]
    d["ego_past"][:, 6] = ex.ay[:T_PAST]
    fut = ex.pose[T_PAST + 5::5]
    d["expert_future"][:, :2] = _to_ego(fut[:, :2], pose0)
    d["expert_future"][:, 2] = _wrap(fut[:, 2] - pose0[2])
    d["command"][:] = 0.0
    d["command"][S.COMMANDS.index(w.command)] = 1.0
    d["speed_limit"][...] = w.limit


def _pack_agents(d: dict, spec: SceneSpec, sim: Simulation, pose0) -> list:
    """Agents: drop any overlapping the ego at t0; key agents first, then nearest. Returns the chosen rows."""
    boxes, valid = sim.boxes, sim.valid
    ego0 = ego_boxes(np.array(pose0))
    if len(boxes):
        ov = boxes_overlap(ego0[None], boxes[:, 0]) & valid[:, 0]
        dist = np.hypot(boxes[:, 0, 0] - pose0[0], boxes[:, 0, 1] - pose0[1])
        order = np.lexsort((dist, sim.priority))
        order = [i for i in order if not ov[i] and dist[i] < SENSOR_RANGE][: spec.num_agents]
    else:
        order = []
    na = len(order)
    if na:
        b = boxes[order]
        d["agent_boxes"][:na, :, :2] = _to_ego(b[..., :2], pose0)
        d["agent_boxes"][:na, :, 2] = _wrap(b[..., 2] - pose0[2])
        d["agent_boxes"][:na, :, 3:5] = b[..., 3:5]
        vv = sim.vel[order]
        c, s = np.cos(pose0[2]), np.sin(pose0[2])
        d["agent_velocity"][:na, :, 0] = c * vv[..., 0] + s * vv[..., 1]
        d["agent_velocity"][:na, :, 1] = -s * vv[..., 0] + c * vv[..., 1]
        d["agent_type"][:na] = sim.types[order]
        # Agents are observed while within SENSOR_RANGE of the ego's t0 position (some leave the range).
        far = np.hypot(d["agent_boxes"][:na, :, 0], d["agent_boxes"][:na, :, 1]) > SENSOR_RANGE
        d["agent_valid"][:na] = valid[order] & ~far
    return order


def _pack_map(d: dict, spec: SceneSpec, w: World, pose0) -> List[np.ndarray]:
    """Lanes, drivable polygons, lights and the route. Returns the packed drivable polygons (ego frame)."""
    # Lanes.
    lanes = w.mb.lanes
    ld = [float(np.min(np.hypot(ln.polygon[:, 0] - pose0[0], ln.polygon[:, 1] - pose0[1]))) for ln in lanes]
    lorder = sorted(range(len(lanes)), key=lambda i: (not lanes[i].on_route, ld[i]))[: spec.num_lanes]
    for j, i in enumerate(lorder):
        ln = lanes[i]
        d["lane_polygons"][j], d["lane_vertex_valid"][j] = pad_polygon(
            ccw(_to_ego(_fit_polygon(ln.polygon, spec.lane_vertices), pose0)), spec.lane_vertices, "lane_polygons")
        d["lane_centerlines"][j], d["lane_point_valid"][j] = pad_polyline(
            _to_ego(_fit_polygon(ln.centerline, spec.lane_points), pose0), spec.lane_points, "lane_centerlines")
        d["lane_valid"][j] = True
        d["lane_on_route"][j] = ln.on_route
        d["lane_is_connector"][j] = ln.is_connector
        d["lane_speed_limit"][j] = ln.speed_limit
    # Drivable polygons: intersections first, then nearest.
    dv = w.mb.drivable
    dd = [float(np.min(np.hypot(p[:, 0] - pose0[0], p[:, 1] - pose0[1]))) for p, _ in dv]
    dorder = sorted(range(len(dv)), key=lambda i: (dv[i][1] != S.DRIVABLE_INTERSECTION, dd[i]))[: spec.num_drivable]
    drivable_ego = []
    for j, i in enumerate(dorder):
        poly = ccw(_to_ego(_fit_polygon(dv[i][0], spec.drivable_vertices), pose0))
        drivable_ego.append(poly)
        d["drivable_polygons"][j], d["drivable_vertex_valid"][j] = pad_polygon(poly, spec.drivable_vertices,
                                                                               "drivable_polygons")
        d["drivable_valid"][j] = True
        d["drivable_kind"][j] = dv[i][1]
    # Lights: connector polygons with a light; on-route first, then nearest.
    lit = [i for i in lorder if lanes[i].light is not None] + \
          [i for i in range(len(lanes)) if lanes[i].light is not None and i not in lorder]
    lit = sorted(lit, key=lambda i: (not lanes[i].on_route, ld[i]))[: spec.num_lights]
    t9 = np.arange(N_LIGHT) * 0.5
    for j, i in enumerate(lit):
        ln = lanes[i]
        sig, phase = ln.light
        d["light_polygons"][j], d["light_vertex_valid"][j] = pad_polygon(
            ccw(_to_ego(_fit_polygon(ln.polygon, spec.light_vertices), pose0)), spec.light_vertices,
            "light_polygons")
        d["light_valid"][j] = True
        d["light_on_route"][j] = ln.on_route
        d["light_red"][j] = sig.red(phase, t9)
    # Route.
    d["route"][:], d["route_valid"][:] = pad_polyline(_to_ego(_route_points(w.route, spec.route_points), pose0),
                                                      spec.route_points, "route")
    return drivable_ego


def _pack_sensors(d: dict, spec: SceneSpec, w: World, sim: Simulation, order: list,
                  drivable_ego: List[np.ndarray], pose0, rng) -> None:
    """Camera, LiDAR and BEV of the packed agents (visible at t0) and map; draws agent colours and LiDAR
    dropout from ``rng``."""
    na = len(order)
    t0_ok = d["agent_valid"][:na, 0]
    colors = sensors.agent_colors(d["agent_type"][:na], rng)
    lights_cam = []
    for p, h, red71 in (w.approach_lights or []):
        pe = _to_ego(np.asarray(p)[None], pose0)[0]
        lights_cam.append((pe, float(_wrap(h - pose0[2])), bool(red71[0])))
    hts = sim.heights[order] if na else np.zeros(0)
    inp = sensors.SensorInput(
        drivable=drivable_ego,
        markings=[(_to_ego(m.pts, pose0), m.style) for m in w.mb.markings],
        crosswalks=[_to_ego(c, pose0) for c in w.mb.crosswalks],
        boxes=d["agent_boxes"][:na, 0].astype(np.float64)[t0_ok], types=d["agent_type"][:na][t0_ok],
        heights=np.asarray(hts)[t0_ok], colors=colors[t0_ok], lights=lights_cam)
    d["camera"][:] = sensors.render_camera(spec, inp)
    d["lidar"][:] = sensors.render_lidar(spec, inp, rng)
    d["bev_semantic"][:] = sensors.render_bev(spec, inp)


def pack_scene(spec: SceneSpec, built: Built, rng, seed: int, index: int, split_id: int, family: str) -> Scene:
    """The Scene of ``built`` in the ego frame at t0, cut to ``spec``; ``rng`` continues the scene's stream
    (agent colours, LiDAR dropout). Not validated (``generate.generate_scene`` does that)."""
    w, sim = built.world, built.sim
    ex = sim.expert
    pose0 = ex.pose[T_PAST]
    d = S.empty_scene(spec).to_dict()
    _pack_ego(d, w, ex, pose0)
    order = _pack_agents(d, spec, sim, pose0)
    drivable_ego = _pack_map(d, spec, w, pose0)
    _pack_sensors(d, spec, w, sim, order, drivable_ego, pose0, rng)
    # Language and meta-actions.
    d["instruction"][:], d["instruction_valid"][:] = language.encode(w.text, spec.instruction_tokens)
    d["meta_speed"][...], d["meta_path"][...] = _meta(w, ex)
    d["scene_id"][...] = split_id * 100_000_000 + index
    d["split"][...] = split_id
    d["family"][...] = FAMILIES.index(family)
    d["seed"][...] = seed
    out = {}
    shapes = spec.shapes()
    for k, v in d.items():
        out[k] = np.asarray(v, dtype=shapes[k][1]).reshape(shapes[k][0])
    return Scene(**out)
