"""Traffic of the embedded world: log-replay (non-reactive) agents, numpy, world frame, 10 Hz, 41 steps.

* Vehicles and bicycles drive along lane paths (:class:`paths.Path`) with the Intelligent Driver Model;
  each follows the nearest agent ahead in the same ``group`` (a lane / lane sequence), optional external
  leaders (the ego's expert trajectory, for followers), and optionally a red-light stop line (it stops
  when it comfortably can, like the expert). Programs: hard braking from ``brake_t`` at ``brake_a``
  m/s^2; a lateral offset profile (cut-in / lane change); parked (never moves).
* Pedestrians walk straight lines at constant speed after an optional delay.
* Static objects (cones, barriers, parked obstacles) do not move (velocity 0).

All agents of a scene are simulated together in one vectorised loop over 40 time steps.
Outputs: boxes [n, 41, 5] (x, y, heading, length, width of the box centre), velocity [n, 41, 2]
(world frame, m/s), type [n], valid [n, 41].
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from irlvla_jax.geometry import EGO_LENGTH
from irlvla_jax.scene import AGENT_PEDESTRIAN, AGENT_STATIC, AGENT_VEHICLE, T_FUT, DT
from irlvla_jax.world.paths import Path

T = np.arange(T_FUT) * DT          # 0.0 ... 4.0 s


@dataclasses.dataclass
class Vehicle:
    """An agent moving along ``path`` (its box centre follows path + lateral offset)."""
    path: Path
    s0: float
    v0: float
    v_des: float
    length: float = 4.6
    width: float = 1.9
    height: float = 1.6
    kind: int = AGENT_VEHICLE
    group: object = None
    a_max: float = 1.5
    b: float = 2.0
    headway: float = 1.4
    s_min: float = 2.0
    brake_t: float = np.inf
    brake_a: float = 0.0
    lat: Optional[np.ndarray] = None       # [41] lateral offset (left +), metres
    stop_s: float = np.inf                 # red-light stop line (path arc length of the line)
    red: Optional[np.ndarray] = None       # [71] red at t = 0.0 ... 7.0 s
    parked: bool = False
    priority: int = 1                      # 0 = key agent of the family (kept first)
    follows_ego: bool = False              # reacts to the ego (set for followers in the ego lane)


@dataclasses.dataclass
class Fixed:
    """An agent with a precomputed trajectory: boxes [41, 5] and velocity [41, 2]."""
    boxes: np.ndarray
    vel: np.ndarray
    kind: int
    height: float
    valid: Optional[np.ndarray] = None
    priority: int = 1


def pedestrian(p0, direction: float, speed: float, delay: float = 0.0, stop_after: float = np.inf,
               length: float = 0.6, width: float = 0.7, priority: int = 1) -> Fixed:
    """Walk from p0 along ``direction`` at ``speed`` after ``delay`` s, stopping after ``stop_after`` m."""
    tt = np.clip(T - delay, 0.0, None)
    dist = np.minimum(speed * tt, stop_after)
    e = np.array([np.cos(direction), np.sin(direction)])
    xy = np.asarray(p0, float)[None] + dist[:, None] * e[None]
    boxes = np.zeros((T_FUT, 5))
    boxes[:, :2] = xy
    boxes[:, 2] = direction
    boxes[:, 3], boxes[:, 4] = length, width
    vel = np.gradient(xy, DT, axis=0)
    return Fixed(boxes, vel, AGENT_PEDESTRIAN, 1.75, priority=priority)


def static_object(xy, heading: float, length: float, width: float, height: float = 0.9,
                  kind: int = AGENT_STATIC, priority: int = 1) -> Fixed:
    boxes = np.zeros((T_FUT, 5))
    boxes[:] = [xy[0], xy[1], heading, length, width]
    return Fixed(boxes, np.zeros((T_FUT, 2)), kind, height, priority=priority)


def simulate_vehicles(vs: List[Vehicle], ego_s: Optional[np.ndarray] = None,
                      ego_group: object = None, ego_len: float = EGO_LENGTH,
                      ego_offset: float = 0.0) -> tuple:
    """IDM for all vehicles at once. ``ego_s`` [41]: the ego's box-centre arc length on the path of
    ``ego_group`` (for followers with ``follows_ego``; ``ego_offset`` maps ego s to their path s).

    Returns s [n, 41], v [n, 41] (path arc length and speed)."""
    n = len(vs)
    if n == 0:
        return np.zeros((0, T_FUT)), np.zeros((0, T_FUT))
    s = np.array([v.s0 for v in vs], float)
    v = np.array([v.v0 for v in vs], float)
    vdes = np.array([max(v.v_des, 0.1) for v in vs])
    amax = np.array([v.a_max for v in vs])
    b = np.array([v.b for v in vs])
    hw = np.array([v.headway for v in vs])
    smin = np.array([v.s_min for v in vs])
    L = np.array([v.length for v in vs])
    brake_t = np.array([v.brake_t for v in vs])
    brake_a = np.array([v.brake_a for v in vs])
    stop_s = np.array([v.stop_s for v in vs])
    red = np.stack([v.red if v.red is not None else np.zeros(71, bool) for v in vs])
    parked = np.array([v.parked for v in vs])
    fe = np.array([v.follows_ego and ego_s is not None for v in vs])
    groups = [v.group for v in vs]
    same = np.array([[gi is not None and gi == gj for gj in groups] for gi in groups])
    np.fill_diagonal(same, False)
    half_ij = 0.5 * (L[:, None] + L[None, :])
    committed = np.zeros(n, bool)
    S = np.zeros((n, T_FUT))
    V = np.zeros((n, T_FUT))
    S[:, 0], V[:, 0] = s, v
    sq = 2.0 * np.sqrt(amax * b)
    has_light = np.isfinite(stop_s)
    any_light = bool(has_light.any())
    cr = np.concatenate([np.zeros((n, 1)), np.cumsum(red, axis=1)], axis=1)
    redsoon_all = (cr[:, 25:25 + T_FUT] - cr[:, :T_FUT]) > 0          # red within [k, k + 2.5 s)
    any_same = bool(same.any())
    for k in range(T_FUT - 1):
        if any_same:
            gap = s[None, :] - s[:, None] - half_ij
            ahead = same & (s[None, :] > s[:, None])
            gap = np.where(ahead, gap, np.inf)
            j = np.argmin(gap, axis=1)
            g = gap[np.arange(n), j]
            vl = v[j]
        else:
            g = np.full(n, np.inf)
            vl = v
        if fe.any():
            ge = ego_s[k] + ego_offset - s - 0.5 * (L + ego_len)
            ege = (ge > -0.5 * (L + ego_len)) & fe & (ge < g)
            vego = (ego_s[min(k + 1, T_FUT - 1)] - ego_s[k]) / DT
            g = np.where(ege, ge, g)
            vl = np.where(ege, vego, vl)
        # Red light: a virtual stopped leader at the stop line when it can comfortably stop.
        if any_light:
            front = s + 0.5 * L
            gl = stop_s - front - 0.5
            redsoon = redsoon_all[:, k]
            can = (v * v / (2.0 * np.maximum(gl, 0.1)) < 3.0) & (gl > -0.5)
            committed |= redsoon & ~can & (gl > -0.5) & ~red[:, k]
            light_on = redsoon & (gl > -1.0) & ~committed & has_light
            use_l = light_on & (gl < g)
            g = np.where(use_l, np.maximum(gl, 0.05), g)
            vl = np.where(use_l, 0.0, vl)
        sstar = smin + np.maximum(0.0, v * hw + v * (v - vl) / sq)
        inter = np.where(np.isfinite(g), (sstar / np.maximum(g, 0.05)) ** 2, 0.0)
        a = amax * (1.0 - (v / vdes) ** 4 - inter)
        a = np.where(T[k] >= brake_t, -brake_a, a)
        a = np.clip(a, -8.0, 3.0)
        vn = np.maximum(v + a * DT, 0.0)
        vn = np.where(parked, 0.0, vn)
        s = s + 0.5 * (v + vn) * DT
        v = vn
        S[:, k + 1], V[:, k + 1] = s, v
    return S, V


def vehicle_boxes(vs: List[Vehicle], S: np.ndarray, V: np.ndarray) -> tuple:
    """Path arc length/speed -> boxes [n, 41, 5] and velocity [n, 41, 2] (world frame)."""
    n = len(vs)
    boxes = np.zeros((n, T_FUT, 5))
    vel = np.zeros((n, T_FUT, 2))
    for i, veh in enumerate(vs):
        x, y, h = veh.path.at(S[i])
        if veh.lat is not None:
            d = veh.lat
            x = x - np.sin(h) * d
            y = y + np.cos(h) * d
            dd = np.gradient(d, DT)
            h = h + np.arctan2(dd, np.maximum(V[i], 0.5))
        boxes[i, :, 0], boxes[i, :, 1], boxes[i, :, 2] = x, y, h
        boxes[i, :, 3], boxes[i, :, 4] = veh.length, veh.width
        if veh.parked:
            continue
        vel[i] = np.gradient(np.stack([x, y], -1), DT, axis=0)
    return boxes, vel


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """[..., 5] (x, y, h, length, width) -> [..., 4, 2] corners, counter-clockwise."""
    x, y, h, l, w = (boxes[..., i] for i in range(5))
    c, s = np.cos(h), np.sin(h)
    dx = np.array([0.5, 0.5, -0.5, -0.5])
    dy = np.array([-0.5, 0.5, 0.5, -0.5])
    lx = dx * l[..., None]
    ly = dy * w[..., None]
    cx = x[..., None] + c[..., None] * lx - s[..., None] * ly
    cy = y[..., None] + s[..., None] * lx + c[..., None] * ly
    return np.stack([cx, cy], -1)


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis overlap test of oriented boxes a [..., 5], b [..., 5] (broadcast) -> bool."""
    ca, cb = box_corners(a), box_corners(b)
    ca, cb = np.broadcast_arrays(ca, cb)
    out = np.ones(ca.shape[:-2], bool)
    for poly in (ca, cb):
        for e in range(2):
            edge = poly[..., e + 1, :] - poly[..., e, :]
            axis = np.stack([-edge[..., 1], edge[..., 0]], -1)
            pa = (ca * axis[..., None, :]).sum(-1)
            pb = (cb * axis[..., None, :]).sum(-1)
            out &= (pa.max(-1) > pb.min(-1)) & (pb.max(-1) > pa.min(-1))
    return out
