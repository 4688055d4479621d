"""Hand-built Scenes for the rule tests (numpy, small SceneSpec). Units: metres, seconds, radians, ego frame.

A straight two-lane road along +x: the ego lane y in [-1.75, 1.75] (on route, route centreline y = 0)
and a lane y in [1.75, 5.25] running the other way (not on route). Each lane has its roadblock.
Everything can be overridden: lanes, drivable polygons, route, agents, lights, ego past, expert. The
default expert stands still, which fails no rule in these scenes (so the human filter changes nothing
unless a test gives the expert a failing plan).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from irlvla_jax import scene as S

SPEC = S.SceneSpec(num_agents=4, num_lanes=4, lane_vertices=8, lane_points=4, num_drivable=4,
                   drivable_vertices=8, route_points=8, num_lights=2, light_vertices=8,
                   instruction_tokens=4, camera_hw=(4, 4), lidar_hw=(4, 4), lidar_channels=1, bev_hw=(4, 4))
TIMES = np.arange(41) * 0.1
X0, X1 = -80.0, 220.0


def rect(x0, x1, y0, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def lane(y0, y1, on_route=True, connector=False, speed=15.0, x0=X0, x1=X1, forward=True):
    yc = 0.5 * (y0 + y1)
    cl = [[x0, yc], [x1, yc]] if forward else [[x1, yc], [x0, yc]]
    return dict(polygon=rect(x0, x1, y0, y1), centerline=cl, on_route=on_route, connector=connector,
                speed=speed)


def default_lanes():
    return [lane(-1.75, 1.75, True), lane(1.75, 5.25, False, forward=False)]


def default_drivable():
    return [(rect(X0, X1, -1.75, 1.75), S.DRIVABLE_ROADBLOCK), (rect(X0, X1, 1.75, 5.25), S.DRIVABLE_ROADBLOCK)]


def const_accel_past(v0: float, a: float = 0.0):
    """[15, 7] past rows (t = -1.5 ... -0.1 s) of straight motion with speed v0 at t0 and accel a."""
    t = np.arange(-15, 0) * 0.1
    v = v0 + a * t
    x = v0 * t + 0.5 * a * t ** 2
    rows = np.zeros((15, 7), np.float32)
    rows[:, 0], rows[:, 3], rows[:, 5] = x, v, a
    return rows


def agent(boxes, vel=None, kind=S.AGENT_VEHICLE, valid=None):
    """boxes: [41, 5] (x, y, h, length, width) or a function t -> (x, y, h, l, w)."""
    if callable(boxes):
        boxes = np.array([boxes(t) for t in TIMES], np.float32)
    boxes = np.asarray(boxes, np.float32)
    if vel is None:
        vel = np.zeros((41, 2), np.float32)
    elif callable(vel):
        vel = np.array([vel(t) for t in TIMES], np.float32)
    vel = np.broadcast_to(np.asarray(vel, np.float32), (41, 2)).copy()
    valid = np.ones(41, bool) if valid is None else np.asarray(valid, bool)
    return dict(boxes=boxes, vel=vel, kind=kind, valid=valid)


def make_scene(*, ego_v=0.0, ego_a=0.0, ego_ay=0.0, past=None, expert=None, lanes=None, drivable=None,
               route=None, agents: Sequence[dict] = (), lights: Sequence[dict] = (), speed_limit=15.0,
               spec: S.SceneSpec = SPEC) -> S.Scene:
    d = S.empty_scene(spec).to_dict()
    d["ego_state"][:] = [0, 0, 0, ego_v, 0, ego_a, ego_ay]
    d["ego_past"][:] = const_accel_past(ego_v, 0.0) if past is None else past
    d["speed_limit"][()] = speed_limit
    d["expert_future"][:] = np.zeros((8, 3)) if expert is None else expert  # default: stand still
    for i, l in enumerate(default_lanes() if lanes is None else lanes):
        d["lane_polygons"][i], d["lane_vertex_valid"][i] = S.pad_polygon(l["polygon"], spec.lane_vertices)
        d["lane_centerlines"][i], d["lane_point_valid"][i] = S.pad_polyline(l["centerline"], spec.lane_points)
        d["lane_valid"][i] = True
        d["lane_on_route"][i] = l["on_route"]
        d["lane_is_connector"][i] = l["connector"]
        d["lane_speed_limit"][i] = l["speed"]
    for i, (p, k) in enumerate(default_drivable() if drivable is None else drivable):
        d["drivable_polygons"][i], d["drivable_vertex_valid"][i] = S.pad_polygon(p, spec.drivable_vertices)
        d["drivable_valid"][i] = True
        d["drivable_kind"][i] = k
    r = [[-60.0, 0.0], [X1 - 1.0, 0.0]] if route is None else route
    d["route"][:], d["route_valid"][:] = S.pad_polyline(r, spec.route_points)
    from shapely.geometry import Polygon
    from tests.reference.epdms_ref import box_polygon, ego_corners
    ego0 = Polygon(ego_corners(np.zeros(11)))
    for j, a in enumerate(agents):
        if a["valid"][0] and box_polygon(*a["boxes"][0].astype(float)).intersects(ego0):
            raise ValueError(f"agent {j} overlaps the ego box at t0 (such agents are ignored by the scorer)")
        d["agent_boxes"][j] = a["boxes"]
        d["agent_velocity"][j] = a["vel"]
        d["agent_type"][j] = a["kind"]
        d["agent_valid"][j] = a["valid"]
    for i, l in enumerate(lights):
        d["light_polygons"][i], d["light_vertex_valid"][i] = S.pad_polygon(l["polygon"], spec.light_vertices)
        d["light_valid"][i] = True
        d["light_on_route"][i] = l.get("on_route", True)
        d["light_red"][i] = np.broadcast_to(np.asarray(l["red"], bool), (S.N_LIGHT,))
    scene = S.Scene(**d)
    return S.validate(scene, spec, where="rule-test scene")


# --- trajectories (8 poses at 0.5 ... 4.0 s)
KNOT_T = np.arange(1, 9) * 0.5


def const_velocity(v, y=0.0, heading=0.0):
    return np.stack([v * KNOT_T, np.full(8, y), np.full(8, heading)], -1).astype(np.float32)


def lateral_profile(v, ys: Sequence[float]):
    """Straight at speed v, lateral offsets ys at 0.5 ... 4.0 s, heading 0 (crab motion, exact in direct mode)."""
    return np.stack([v * KNOT_T, np.asarray(ys, float), np.zeros(8)], -1).astype(np.float32)


def rotate_in_place(omega):
    return np.stack([np.zeros(8), np.zeros(8), omega * KNOT_T], -1).astype(np.float32)
