"""The world under construction and the building blocks the scenario-family builders share (numpy,
world frame, ego heading +x near the origin).

:class:`World` holds what a family builder places: the map (``roads.MapBuilder``), the ego's route, start
and speed limit, log-replay vehicles and fixed agents (``traffic``), lights on the route and the expert's
parameters and lateral offset (``expert``), the command and the instruction text. The helpers draw speed
limits and vehicle sizes, keep vehicles of one lane apart at t0 (:class:`Placer`), build a corridor road
with the ego's route on it (:func:`corridor_base`), place a lead vehicle (:func:`add_lead`), fill a
corridor with background traffic (:func:`populate_corridor`) and phrase the road's instruction
(:func:`road_text`). Every draw comes from the builder's one ``rng``, in a fixed order.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from irlvla_jax.geometry import EGO_CENTER, EGO_FRONT
from irlvla_jax import scene as S
from irlvla_jax.scene import AGENT_VEHICLE, DT
from irlvla_jax.world import expert as E
from irlvla_jax.world import language
from irlvla_jax.world import roads as R
from irlvla_jax.world.paths import Path
from irlvla_jax.world.traffic import Fixed, Vehicle, pedestrian, static_object

T7 = np.arange(71) * DT            # light schedules known to agents / the expert: t = 0 ... 7 s


@dataclasses.dataclass
class World:
    """One scene's world under construction (world frame), filled in by a family builder."""
    mb: R.MapBuilder
    route: Path
    s0: float
    v0: float
    limit: float
    vehicles: List[Vehicle]
    fixed: List[Fixed]
    lights: List[E.LightOnRoute]
    command: str
    text: str
    params: E.ExpertParams
    d_grid: np.ndarray                 # expert lateral offset on route.s
    lc_grid: Optional[np.ndarray] = None   # route offset relative to the start lane (lane changes)
    approach_lights: Optional[list] = None  # [(point, heading, red71)] lights facing the ego
    a0: Optional[float] = None
    attempts: int = 1                  # draws needed (a key agent conflicting with the expert re-draws)
    dropped: int = 0                   # agents removed by the sanity pass (conflicting with the expert)

    def d_of_s(self, s):
        """The expert's lateral offset (m, left +) at route arc length(s) ``s``."""
        return np.interp(s, self.route.s, self.d_grid)


def draw_limit(rng, choices):
    """A speed limit (m/s) drawn from ``choices`` in km/h."""
    return float(rng.choice(choices)) / 3.6


def smoothstep(x):
    """Smooth 0 -> 1 ramp of ``x`` clipped to [0, 1] (3x^2 - 2x^3)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def draw_car_size(rng):
    """(length, width, height) of a random vehicle: mostly cars, some vans / trucks."""
    r = rng.random()
    if r < 0.75:
        return rng.uniform(4.2, 5.0), rng.uniform(1.75, 2.0), rng.uniform(1.4, 1.7)
    if r < 0.92:
        return rng.uniform(5.0, 6.0), rng.uniform(1.9, 2.1), rng.uniform(1.8, 2.4)
    return rng.uniform(7.0, 10.0), rng.uniform(2.3, 2.55), rng.uniform(2.8, 3.4)


def _human_offset(rng, route: Path, s0: float) -> np.ndarray:
    """Small human lateral offset of the expert from the route centerline (|d| <= 0.2 m)."""
    d0 = rng.uniform(-0.15, 0.15)
    d1 = np.clip(d0 + rng.normal(0.0, 0.08), -0.2, 0.2)
    return d0 + (d1 - d0) * smoothstep((route.s - s0) / 40.0)


class Placer:
    """Keeps vehicles of the same group (lane) apart at t0 (centre arc lengths)."""

    def __init__(self):
        self.occ = {}

    def free(self, group, s, length, gap=2.0):
        """Whether a vehicle of ``length`` centred at ``s`` keeps ``gap`` metres to the others of ``group``."""
        for s2, l2 in self.occ.get(group, []):
            if abs(s - s2) < 0.5 * (length + l2) + gap:
                return False
        return True

    def add(self, group, s, length):
        """Record a vehicle of ``length`` centred at ``s`` in ``group``."""
        self.occ.setdefault(group, []).append((s, length))


# ----------------------------------------------------------------------------------------------------
# Corridor roads and their traffic.

def corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve=None, lane_change=None, width=None):
    """Build a corridor road with the ego in forward lane ``ego_k`` near the world origin.

    curve: None or (start_u_rel_ego, radius, angle). lane_change: None or (target_k, ua_rel, ub_rel).
    Returns (mb, corridor, route, s0, lc_grid): the map, the corridor, the ego's route (from 60 m behind it to
    the road's end), the ego's rear-axle arc length on it (60 m) and the route's offset from the start lane
    on ``route.s`` (lane changes)."""
    w = width if width is not None else rng.uniform(3.3, 3.8)
    u_e = 75.0
    total = 240.0
    if curve is None:
        pieces = [("straight", total, 0.0)]
    else:
        cu, rad, ang = curve
        a_len = rad * abs(ang)
        pieces = [("straight", u_e + cu, 0.0), ("arc", rad, ang),
                  ("straight", max(total - u_e - cu - a_len, 60.0), 0.0)]
    y_ref = (ego_k + 0.5) * w
    ref = R.corridor_reference((-u_e, y_ref), 0.0, pieces)
    cor = R.Corridor(ref, w, n_fwd, n_back, 0.0, ref.length, limit)
    mb = R.MapBuilder(spec)
    R.build_corridor(mb, cor)
    for ln in mb.lanes:
        ln.on_route = ln.key.startswith("fwd")
    uu = np.arange(0.0, ref.length + 0.5, 1.0)
    o = np.full(len(uu), cor.fwd_offset(ego_k))
    lc_rel = np.zeros(len(uu))
    if lane_change is not None:
        tk, ua, ub = lane_change
        f = smoothstep((uu - (u_e + ua)) / max(ub - ua, 1.0))
        o = o + (cor.fwd_offset(tk) - cor.fwd_offset(ego_k)) * f
        lc_rel = (cor.fwd_offset(tk) - cor.fwd_offset(ego_k)) * f
    pts = ref.offset_points(uu, o)
    full = Path(pts)
    s_e, _ = full.project(ref.offset_points(np.array([u_e]), cor.fwd_offset(ego_k)))
    s_e = float(s_e[0])
    route = full.sub(s_e - 60.0, full.length, 1.0)
    s0 = 60.0
    # lane-change offset on the route grid
    u_of_route, _ = ref.project(route.xy)
    lc_grid = np.interp(u_of_route, uu, lc_rel)
    return mb, cor, route, s0, lc_grid


def fwd_lane_s(cor: R.Corridor, k: int, u: float) -> tuple:
    """Lane path of forward lane k and the arc length on it at reference parameter u."""
    p = cor.fwd_path(k)
    s, _ = p.project(cor.ref.offset_points(np.array([u]), cor.fwd_offset(k)))
    return p, float(s[0])


def back_lane_s(cor: R.Corridor, j: int, u: float) -> tuple:
    """Lane path of oncoming lane j and the arc length on it at reference parameter u."""
    p = cor.back_path(j)
    s, _ = p.project(cor.ref.offset_points(np.array([u]), cor.back_offset(j)))
    return p, float(s[0])


def populate_corridor(rng, w: World, cor: R.Corridor, ego_k: int, placer: Placer, ego_u: float,
                      n_neighbors=(0, 3), n_oncoming=(0, 4), follower_p=0.4, neighbor_u=(-35.0, 70.0),
                      ped_side_p=0.35, parked_p=0.25, avoid_lanes=(), oncoming_u=(-30.0, 120.0),
                      carpark_p=0.12):
    """Neighbours in other forward lanes, oncoming traffic, a follower, sidewalk pedestrians, parked cars."""
    lim = w.limit
    for k in range(cor.n_fwd):
        if k == ego_k or k in avoid_lanes:
            continue
        path = cor.fwd_path(k)
        for _ in range(int(rng.integers(n_neighbors[0], n_neighbors[1] + 1))):
            L, W_, H = draw_car_size(rng)
            u = ego_u + rng.uniform(*neighbor_u)
            _, s = fwd_lane_s(cor, k, u)
            if not placer.free(("fwd", k), s, L, 4.0):
                continue
            v = lim * rng.uniform(0.6, 1.0)
            placer.add(("fwd", k), s, L)
            w.vehicles.append(Vehicle(path, s, v, v * rng.uniform(0.95, 1.1), L, W_, H, group=("fwd", k),
                                      headway=rng.uniform(1.0, 1.8)))
    for j in range(cor.n_back):
        path = cor.back_path(j)
        for _ in range(int(rng.integers(n_oncoming[0], n_oncoming[1] + 1))):
            L, W_, H = draw_car_size(rng)
            u = ego_u + rng.uniform(*oncoming_u)
            _, s = back_lane_s(cor, j, u)
            if not placer.free(("back", j), s, L, 6.0):
                continue
            v = lim * rng.uniform(0.6, 1.0)
            placer.add(("back", j), s, L)
            w.vehicles.append(Vehicle(path, s, v, v * rng.uniform(0.95, 1.1), L, W_, H, group=("back", j)))
    if rng.random() < follower_p:
        L, W_, H = draw_car_size(rng)
        s = w.s0 + EGO_CENTER - rng.uniform(8.0, 25.0) - 0.5 * L
        if placer.free("ego", s, L, 1.0) and s > 2.0:
            placer.add("ego", s, L)
            v = max(w.v0 + rng.uniform(-2.0, 1.0), 0.0)
            w.vehicles.append(Vehicle(w.route, s, v, max(v, lim * 0.9), L, W_, H, group="ego", follows_ego=True))
    # Sidewalk pedestrians (walking along the road, off the pavement).
    if rng.random() < ped_side_p:
        for _ in range(int(rng.integers(1, 3))):
            side = rng.choice([-1, 1]) if cor.n_back else -1
            off = (-cor.n_fwd * cor.widths - R.SHOULDER - rng.uniform(1.2, 3.0)) if side < 0 else \
                (cor.n_back * cor.widths + R.SHOULDER + rng.uniform(1.2, 3.0))
            u = ego_u + rng.uniform(-10.0, 60.0)
            p0 = cor.ref.offset_points(np.array([u]), off)[0]
            _, _, h = cor.ref.at(np.array([u]))
            dirn = float(h[0]) + (0.0 if rng.random() < 0.5 else np.pi)
            w.fixed.append(pedestrian(p0, dirn, rng.uniform(0.8, 1.6)))
    # A car park beside the road (drivable, kind car park) with parked cars in it.
    if rng.random() < carpark_p:
        u_cp = ego_u + rng.uniform(-15.0, 40.0)
        length, depth = rng.uniform(25.0, 45.0), rng.uniform(14.0, 22.0)
        edge = -cor.n_fwd * cor.widths - R.SHOULDER
        poly = R.carpark_polygon(cor.ref, u_cp, edge, length, depth)
        w.mb.add_drivable(poly, S.DRIVABLE_CARPARK)
        w.mb.markings.append(R.Marking(poly[[0, 1, 2, 3, 0]], 0))
        for slot in range(int(length // 3.0)):
            if rng.random() < 0.5:
                L, W_, H = draw_car_size(rng)
                L = min(L, 5.2)
                off = edge - depth + 0.5 + L / 2
                p = cor.ref.offset_points(np.array([u_cp + 1.5 + 3.0 * slot]), off)[0]
                _, _, h = cor.ref.at(np.array([u_cp + 1.5 + 3.0 * slot]))
                w.fixed.append(static_object(p, float(h[0]) + np.pi / 2, L, min(W_, 2.0), H, kind=AGENT_VEHICLE))
    # Parked cars beyond the right road edge.
    elif rng.random() < parked_p:
        for _ in range(int(rng.integers(1, 4))):
            L, W_, H = draw_car_size(rng)
            u = ego_u + rng.uniform(-10.0, 80.0)
            off = -cor.n_fwd * cor.widths - R.SHOULDER - 0.4 - W_ / 2
            p = cor.ref.offset_points(np.array([u]), off)[0]
            _, _, h = cor.ref.at(np.array([u]))
            w.fixed.append(static_object(p, float(h[0]), L, W_, H, kind=AGENT_VEHICLE))


def add_lead(rng, w: World, placer, gap_range, v_range, group="ego", path=None, priority=0, **kw):
    """A lead vehicle in the ego lane with ``gap`` bumper-to-bumper metres ahead of the ego front."""
    L, W_, H = draw_car_size(rng)
    gap = rng.uniform(*gap_range)
    s = w.s0 + EGO_FRONT + gap + 0.5 * L
    v = rng.uniform(*v_range)
    veh = Vehicle(path if path is not None else w.route, s, v, kw.pop("v_des", max(v, 0.5)), L, W_, H, group=group,
                  priority=priority, **kw)
    placer.add(group, s, L)
    w.vehicles.append(veh)
    return veh


def road_text(w: World, cor: R.Corridor, curve=None, extra: str = "") -> str:
    """The instruction for following corridor ``cor`` (its bend when ``curve`` is given, ``extra``, the limit)."""
    lim = language.kmh(w.limit)
    if curve is not None:
        side = "left" if curve[2] > 0 else "right"
        sharp = "sharp" if curve[1] < 70 else "gentle"
        base = f"follow the road, {sharp} bend to the {side} ahead"
    else:
        base = "follow the road" if cor.n_back == 0 else "follow the two-way road"
    if extra:
        base += ", " + extra
    return f"{base}, speed limit {lim} km/h"


def new_world(mb, route, s0, v0, limit, rng, command="straight", lc_grid=None) -> World:
    """An empty World on ``route`` with a freshly drawn expert (parameters, then human lateral offset)."""
    params = E.sample_params(rng)
    d = _human_offset(rng, route, s0)
    return World(mb=mb, route=route, s0=s0, v0=v0, limit=limit, vehicles=[], fixed=[], lights=[],
                 command=command, text="", params=params, d_grid=d, lc_grid=lc_grid)
