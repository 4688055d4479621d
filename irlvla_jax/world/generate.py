"""Scene generation of the embedded world: ``generate_scene(spec, seed, index, split, family=None)``.

Deterministic in (seed, split, index): one ``np.random.default_rng([seed, split_id, index])`` drives
everything (the family, when not given, comes from :func:`family_for`, which uses its own stream), so
the same inputs give byte-identical arrays and different seeds give different scenes. Each scene is built
in a world frame (ego heading +x near the origin), then transformed into the ego rear-axle frame at t0.

Pipeline: family builder (map via ``roads``, agents via ``traffic``, route, lights, ego start) ->
log-replay simulation of the agents -> the expert plan (``expert``) -> followers in the ego lane
re-simulated behind the expert -> a sanity pass (no agent overlapping the ego at t0 or the expert's
future; key-agent conflicts re-draw the scene, up to 4 times, others drop the agent) -> transform, budget
(drop farthest agents / lanes / polygons by priority, resample to the SceneSpec sizes) -> sensors ->
instruction text and meta-actions -> ``scene.validate``.

Families (``scene.FAMILIES``): cruise_lead, lead_brake, cut_in, blocked_lane, intersection,
pedestrian_crossing, curve, lane_change, oncoming. Split mixes: train / val / test draw the nine families
uniformly (a fresh permutation of the nine for every block of nine indices, so every family appears in
every split of >= 9 scenes); hard draws from blocks of 15 = the nine families + the six interactive
families once more (``scene.INTERACTIVE_FAMILIES`` at 2x).

Decisions: parked cars / cones that *block* a lane (blocked_lane) are AGENT_STATIC (NC 1/2, as the
design asks); parked cars at the roadside / in car parks elsewhere are stopped vehicles. Lane changes
that the route needs (lane_change, and the lane bypass in blocked_lane) give the command left / right.
Followers in the ego's lane react to the expert (so the log is plausible); every other agent ignores the
ego; all of them are fixed log replay for whatever policy is evaluated. Agents are observed within
``SENSOR_RANGE`` (120 m) of the ego at t0, so a few leave during the 4 s.

Family variants: cruise_lead (straight or gentle curve, 1-3 lanes, one- or two-way); lead_brake (lead
brakes at 4-8 m/s^2 from 0-1.5 s, sometimes because of a stopped car further ahead); cut_in (from either
side, 0.5-12 m ahead, over 2-3.5 s); blocked_lane (bypass: the route changes lane before cones / barrier
/ parked car; nudge: an object intrudes 0.1-0.9 m and the expert shifts <= 0.9 m; stop: the lane is
blocked and the expert stops behind); intersection (1-3 x 1-2 lanes, left / straight / right, the ego's
light green / red / turns red / turns green, ego approaching, queued, stopped at the line or already
inside; queue, oncoming and crossing traffic obeying their lights, pedestrians on the exit crosswalk);
pedestrian_crossing (1-3 pedestrians on a zebra crossing, other vehicles yield); curve (R 30-200 m,
30-90°); lane_change (adjacent lane, 3-4.5 s, gap left in the target lane); oncoming (two-way road,
close oncoming traffic, a cyclist or lead ahead). Any family may add neighbours, oncoming cars, a
follower, sidewalk pedestrians, roadside parked cars or a car park with parked cars.

Known simplifications: the camera skips boxes that reach behind its near plane; the LiDAR is a BEV
histogram, not ray-cast points; curved lanes are split into segments (the scorer's "multiple lanes" test
fires where the ego straddles a join); agents do not react to each other across lanes (the crosswalk
and traffic lights excepted).
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.scene import (AGENT_BICYCLE, AGENT_PEDESTRIAN, AGENT_STATIC, AGENT_VEHICLE, DT, FAMILIES,
                              INTERACTIVE_FAMILIES, N_LIGHT, SPLITS, T_FUT, T_PAST, Scene, SceneSpec,
                              pad_polygon, pad_polyline, validate)
from irlvla_jax.world import expert as E
from irlvla_jax.world import language
from irlvla_jax.world import roads as R
from irlvla_jax.world import sensors
from irlvla_jax.world.traffic import (Fixed, Vehicle, boxes_overlap, pedestrian, simulate_vehicles,
                                      static_object, vehicle_boxes)

SENSOR_RANGE = 120.0               # metres from the ego at t0: agents farther away are not observed
T7 = np.arange(71) * DT            # light schedules known to agents / the expert: t = 0 ... 7 s
_HARD_BLOCK = tuple(FAMILIES) + tuple(INTERACTIVE_FAMILIES)


class _Retry(Exception):
    """The draw produced an unusable scene; draw again from the same stream."""


# ----------------------------------------------------------------------------------------------------
# Family mix.

def family_for(split: str, seed: int, index: int) -> str:
    """The family of scene ``index`` of ``split``: a permutation per block (9 for train/val/test, 15 with
    the interactive families doubled for hard), so every family appears in every split of reasonable size."""
    sid = _split_id(split)
    block = list(FAMILIES) if split != "hard" else list(_HARD_BLOCK)
    n = len(block)
    perm = np.random.default_rng([int(seed), sid, int(index) // n, 7919]).permutation(n)
    return block[int(perm[int(index) % n])]


def _split_id(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return SPLITS.index(split)


# ----------------------------------------------------------------------------------------------------
# The world under construction (world frame).

@dataclasses.dataclass
class World:
    mb: R.MapBuilder
    route: R.Path
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
        return np.interp(s, self.route.s, self.d_grid)


def _kmh(rng, choices):
    return float(rng.choice(choices)) / 3.6


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _car(rng, priority=1):
    """(length, width, height) of a random vehicle: mostly cars, some vans / trucks."""
    r = rng.random()
    if r < 0.75:
        return rng.uniform(4.2, 5.0), rng.uniform(1.75, 2.0), rng.uniform(1.4, 1.7)
    if r < 0.92:
        return rng.uniform(5.0, 6.0), rng.uniform(1.9, 2.1), rng.uniform(1.8, 2.4)
    return rng.uniform(7.0, 10.0), rng.uniform(2.3, 2.55), rng.uniform(2.8, 3.4)


def _human_offset(rng, route: R.Path, s0: float) -> np.ndarray:
    """Small human lateral offset of the expert from the route centerline (|d| <= 0.2 m)."""
    d0 = rng.uniform(-0.15, 0.15)
    d1 = np.clip(d0 + rng.normal(0.0, 0.08), -0.2, 0.2)
    return d0 + (d1 - d0) * _smoothstep((route.s - s0) / 40.0)


class _Placer:
    """Keeps vehicles of the same group (lane) apart at t0 (centre arc lengths)."""

    def __init__(self):
        self.occ = {}

    def free(self, group, s, length, gap=2.0):
        for s2, l2 in self.occ.get(group, []):
            if abs(s - s2) < 0.5 * (length + l2) + gap:
                return False
        return True

    def add(self, group, s, length):
        self.occ.setdefault(group, []).append((s, length))


# ----------------------------------------------------------------------------------------------------
# Corridor families.

def _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve=None, lane_change=None, width=None):
    """Build a corridor road with the ego in forward lane ``ego_k`` near the world origin.

    curve: None or (start_u_rel_ego, radius, angle). lane_change: None or (target_k, ua_rel, ub_rel).
    Returns (mb, corridor, route, s0, lc_grid, ego lane path u->route mapping helpers)."""
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
        f = _smoothstep((uu - (u_e + ua)) / max(ub - ua, 1.0))
        o = o + (cor.fwd_offset(tk) - cor.fwd_offset(ego_k)) * f
        lc_rel = (cor.fwd_offset(tk) - cor.fwd_offset(ego_k)) * f
    pts = ref.offset_points(uu, o)
    full = R.Path(pts)
    s_e, _ = full.project(ref.offset_points(np.array([u_e]), cor.fwd_offset(ego_k)))
    s_e = float(s_e[0])
    route = full.sub(s_e - 60.0, full.length, 1.0)
    s0 = 60.0
    # lane-change offset on the route grid
    u_of_route, _ = ref.project(route.xy)
    lc_grid = np.interp(u_of_route, uu, lc_rel)
    return mb, cor, route, s0, lc_grid


def _u_of(cor: R.Corridor, route: R.Path, s_route):
    u, _ = cor.ref.project(np.stack(route.at(s_route)[:2], -1).reshape(-1, 2))
    return u


def _fwd_lane_s(cor: R.Corridor, k: int, u: float) -> tuple:
    """Lane path of forward lane k and the arc length on it at reference parameter u."""
    p = cor.fwd_path(k)
    s, _ = p.project(cor.ref.offset_points(np.array([u]), cor.fwd_offset(k)))
    return p, float(s[0])


def _back_lane_s(cor: R.Corridor, j: int, u: float) -> tuple:
    p = cor.back_path(j)
    s, _ = p.project(cor.ref.offset_points(np.array([u]), cor.back_offset(j)))
    return p, float(s[0])


def _populate_corridor(rng, w: World, cor: R.Corridor, ego_k: int, placer: _Placer, ego_u: float,
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
            L, W_, H = _car(rng)
            u = ego_u + rng.uniform(*neighbor_u)
            _, s = _fwd_lane_s(cor, k, u)
            if not placer.free(("fwd", k), s, L, 4.0):
                continue
            v = lim * rng.uniform(0.6, 1.0)
            placer.add(("fwd", k), s, L)
            w.vehicles.append(Vehicle(path, s, v, v * rng.uniform(0.95, 1.1), L, W_, H, group=("fwd", k),
                                      headway=rng.uniform(1.0, 1.8)))
    for j in range(cor.n_back):
        path = cor.back_path(j)
        for _ in range(int(rng.integers(n_oncoming[0], n_oncoming[1] + 1))):
            L, W_, H = _car(rng)
            u = ego_u + rng.uniform(*oncoming_u)
            _, s = _back_lane_s(cor, j, u)
            if not placer.free(("back", j), s, L, 6.0):
                continue
            v = lim * rng.uniform(0.6, 1.0)
            placer.add(("back", j), s, L)
            w.vehicles.append(Vehicle(path, s, v, v * rng.uniform(0.95, 1.1), L, W_, H, group=("back", j)))
    if rng.random() < follower_p:
        L, W_, H = _car(rng)
        s = w.s0 + E.EGO_CENTER - rng.uniform(8.0, 25.0) - 0.5 * L
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
                L, W_, H = _car(rng)
                L = min(L, 5.2)
                off = edge - depth + 0.5 + L / 2
                p = cor.ref.offset_points(np.array([u_cp + 1.5 + 3.0 * slot]), off)[0]
                _, _, h = cor.ref.at(np.array([u_cp + 1.5 + 3.0 * slot]))
                w.fixed.append(static_object(p, float(h[0]) + np.pi / 2, L, min(W_, 2.0), H, kind=AGENT_VEHICLE))
    # Parked cars beyond the right road edge.
    elif rng.random() < parked_p:
        for _ in range(int(rng.integers(1, 4))):
            L, W_, H = _car(rng)
            u = ego_u + rng.uniform(-10.0, 80.0)
            off = -cor.n_fwd * cor.widths - R.SHOULDER - 0.4 - W_ / 2
            p = cor.ref.offset_points(np.array([u]), off)[0]
            _, _, h = cor.ref.at(np.array([u]))
            w.fixed.append(static_object(p, float(h[0]), L, W_, H, kind=AGENT_VEHICLE))


def _lead(rng, w: World, placer, gap_range, v_range, group="ego", path=None, priority=0, **kw):
    """A lead vehicle in the ego lane with ``gap`` bumper-to-bumper metres ahead of the ego front."""
    L, W_, H = _car(rng)
    gap = rng.uniform(*gap_range)
    s = w.s0 + E.EGO_FRONT + gap + 0.5 * L
    v = rng.uniform(*v_range)
    veh = Vehicle(path if path is not None else w.route, s, v, kw.pop("v_des", max(v, 0.5)), L, W_, H, group=group,
                  priority=priority, **kw)
    placer.add(group, s, L)
    w.vehicles.append(veh)
    return veh


def _road_text(w: World, cor: R.Corridor, curve=None, extra: str = "") -> str:
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


def _new_world(mb, route, s0, v0, limit, rng, command="straight", lc_grid=None):
    params = E.sample_params(rng)
    d = _human_offset(rng, route, s0)
    return World(mb, route, s0, v0, limit, [], [], [], command, "", params, d, lc_grid)


def _fam_cruise(spec, rng, brake=False):
    n_fwd = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = _kmh(rng, [40, 50, 60, 70, 80] if not brake else [40, 50, 60, 70])
    curve = None
    if rng.random() < 0.25:
        curve = (rng.uniform(-20, 40), rng.uniform(250, 800), rng.choice([-1, 1]) * rng.uniform(0.1, 0.3))
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve)
    placer = _Placer()
    if brake:
        v_lead = limit * rng.uniform(0.5, 0.95)
        v0 = float(np.clip(v_lead + rng.uniform(-1.5, 1.5), 2.0, limit))
    else:
        v_lead = limit * rng.uniform(0.4, 0.95)
        v0 = float(np.clip(v_lead + rng.uniform(-2.0, 3.0), 0.0, limit))
    w = _new_world(mb, route, s0, v0, limit, rng)
    if brake:
        gmin = max(8.0, 1.0 * v0)
        lead = _lead(rng, w, placer, (gmin, gmin + 15.0), (v_lead, v_lead), brake_t=rng.uniform(0.0, 1.5),
                     brake_a=rng.uniform(4.0, 8.0), v_des=v_lead)
        if rng.random() < 0.5:   # the reason it brakes: a slow or stopped car further ahead
            gap2 = lead.s0 + 0.5 * lead.length - (w.s0 + E.EGO_FRONT) + rng.uniform(12.0, 30.0)
            lead2 = _lead(rng, w, placer, (gap2, gap2), (0.0, 2.0), priority=1)
            lead2.parked = lead2.v0 < 0.5
    else:
        gmin = max(6.0, 0.8 * v0)
        _lead(rng, w, placer, (gmin, gmin + 30.0), (v_lead, v_lead), v_des=v_lead * rng.uniform(0.95, 1.1))
    ego_u = 75.0
    _populate_corridor(rng, w, cor, ego_k, placer, ego_u)
    w.text = _road_text(w, cor, curve if curve is not None and curve[1] < 300 else None)
    return w


def _fam_cut_in(spec, rng):
    n_fwd = int(rng.choice([2, 3], p=[0.65, 0.35]))
    n_back = int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = _kmh(rng, [50, 60, 70, 80])
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit)
    placer = _Placer()
    v0 = limit * rng.uniform(0.55, 0.95)
    w = _new_world(mb, route, s0, v0, limit, rng)
    side_choices = [k for k in (ego_k - 1, ego_k + 1) if 0 <= k < n_fwd]
    k_c = int(rng.choice(side_choices))
    lat0 = cor.fwd_offset(k_c) - cor.fwd_offset(ego_k)
    L, W_, H = _car(rng)
    gap = rng.uniform(0.5, 12.0)
    s = w.s0 + E.EGO_FRONT + gap + 0.5 * L
    v = float(np.clip(v0 + rng.uniform(-3.0, 1.5), 2.0, None))
    tc, dur = rng.uniform(0.0, 1.5), rng.uniform(2.0, 3.5)
    lat = lat0 * (1.0 - _smoothstep((np.arange(T_FUT) * DT - tc) / dur))
    w.vehicles.append(Vehicle(route, s, v, v * rng.uniform(0.95, 1.05), L, W_, H, group="cutin", lat=lat,
                              priority=0))
    placer.add(("fwd", k_c), s, L)
    if rng.random() < 0.5:
        _lead(rng, w, placer, (gap + L + 12.0, gap + L + 40.0), (v0 * 0.7, v0 * 1.05), priority=1)
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=(k_c,))
    w.text = _road_text(w, cor)
    return w


def _fam_blocked(spec, rng):
    variant = rng.choice(["bypass", "nudge", "stop"], p=[0.4, 0.3, 0.3])
    n_fwd = 2 if variant == "bypass" else int(rng.choice([1, 2]))
    if variant == "bypass":
        n_fwd = int(rng.choice([2, 3], p=[0.7, 0.3]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2])) if n_fwd > 1 or variant != "stop" else 1
    ego_k = n_fwd - 1 if variant != "bypass" else int(rng.integers(0, n_fwd))
    limit = _kmh(rng, [30, 40, 50, 60])
    v0 = limit * rng.uniform(0.5, 0.95)
    if variant == "bypass":      # room for an unhurried lane change before the obstacle
        obs_gap = rng.uniform(max(30.0, 3.5 * v0) + 8.0, max(45.0, 5.0 * v0) + 8.0)
    else:
        obs_gap = rng.uniform(max(15.0, 1.6 * v0), max(25.0, 3.5 * v0))
    lane_change = None
    tgt = None
    command = "straight"
    if variant == "bypass":
        tgt = int(rng.choice([k for k in (ego_k - 1, ego_k + 1) if 0 <= k < n_fwd]))
        ub = obs_gap - 4.0
        ua = max(ub - max(30.0, 3.5 * v0), 2.0)
        lane_change = (tgt, ua, ub)
        command = "left" if tgt < ego_k else "right"
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, lane_change=lane_change)
    w = _new_world(mb, route, s0, v0, limit, rng, command=command, lc_grid=lc)
    placer = _Placer()
    u_obs = 75.0 + E.EGO_FRONT + obs_gap
    o_lane = cor.fwd_offset(ego_k)
    _, _, h = cor.ref.at(np.array([u_obs]))
    h = float(h[0])
    kind = rng.choice(["car", "cones", "barrier"])
    objs = []
    if variant == "nudge":
        intr = rng.uniform(0.1, 0.9)     # how far the object reaches into the lane from its right edge
        inner = o_lane - cor.widths / 2 + intr
    else:
        inner = o_lane + rng.uniform(-0.3, 0.3) + 0.8
    if kind == "car":
        L, W_, H = rng.uniform(4.3, 5.0), rng.uniform(1.8, 2.0), 1.5
        c = cor.ref.offset_points(np.array([u_obs + L / 2]), inner - W_ / 2)[0]
        objs.append(static_object(c, h + rng.uniform(-0.1, 0.1), L, W_, H, AGENT_STATIC, priority=0))
    elif kind == "cones":
        n = int(rng.integers(3, 6))
        for i in range(n):
            frac = i / max(n - 1, 1)
            off = inner - 0.2 - (1.0 - frac) * 0.0 if variant == "nudge" else inner - 0.2 - 1.6 * frac
            c = cor.ref.offset_points(np.array([u_obs + 2.5 * i]), off)[0]
            objs.append(static_object(c, h, 0.4, 0.4, 0.7, AGENT_STATIC, priority=0))
    else:
        L = rng.uniform(1.8, 2.6)
        c = cor.ref.offset_points(np.array([u_obs + 0.2]), inner - L / 2)[0]
        objs.append(static_object(c, h + np.pi / 2, 0.4, L, 1.0, AGENT_STATIC, priority=0))
        if variant != "nudge":
            c2 = cor.ref.offset_points(np.array([u_obs + 0.2]), inner - L - 0.2 - L / 2)[0]
            objs.append(static_object(c2, h + np.pi / 2, 0.4, L, 1.0, AGENT_STATIC, priority=0))
    w.fixed.extend(objs)
    if variant == "nudge":
        # Nudge away from the object by what it takes (<= 0.9 m) while passing it.
        s_obs = w.s0 + E.EGO_FRONT + obs_gap
        obj_len = {"car": L if kind == "car" else 0.0, "cones": 2.5 * (len(objs) - 1) + 0.4, "barrier": 0.4}[kind]
        need = (o_lane - cor.widths / 2 + intr) - (o_lane - E.EGO_WIDTH / 2 - 0.3)  # > 0: into our corridor
        if 0 < need <= 0.9:
            a0, a1 = s_obs - E.EGO_FRONT - 1.0, s_obs + obj_len + E.EGO_REAR + 1.0
            ramp = _smoothstep((route.s - (a0 - 10.0)) / 10.0) * (1 - _smoothstep((route.s - a1) / 10.0))
            w.d_grid = w.d_grid * (1 - ramp) + (need + 0.05) * ramp
    extra = {"car": "parked car", "cones": "cones", "barrier": "obstacle"}[kind]
    if variant == "bypass":
        side = "left" if tgt < ego_k else "right"
        w.text = f"{extra} ahead, change to the {side} lane, speed limit {language.kmh(limit)} km/h"
    else:
        w.text = _road_text(w, cor, extra=f"{extra} ahead")
    avoid = (tgt,) if tgt is not None else ()
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=avoid, n_oncoming=(0, 2),
                       oncoming_u=(40.0, 120.0) if n_fwd == 1 else (-30.0, 120.0))
    return w


def _fam_curve(spec, rng):
    n_fwd = int(rng.choice([1, 2], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    rad = float(np.exp(rng.uniform(np.log(30.0), np.log(200.0))))
    ang = float(rng.choice([-1, 1]) * rng.uniform(np.radians(30), np.radians(90)))
    ang = float(np.sign(ang) * min(abs(ang), 130.0 / rad))
    cu = rng.uniform(-25.0, 30.0)
    limit = _kmh(rng, [40, 50, 60, 70] if rad > 80 else [30, 40, 50])
    width = rng.uniform(3.5, 3.9) if rad < 60 else None
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, (cu, rad, ang), width=width)
    v_curve = np.sqrt(2.2 * rad)
    v_reach = np.sqrt(v_curve ** 2 + 2.0 * 1.5 * max(cu, 0.0))     # can still slow down for the curve
    v0 = float(min(limit, v_reach) * rng.uniform(0.75, 1.0))
    w = _new_world(mb, route, s0, v0, limit, rng)
    # keep the human offset small in tight curves
    if rad < 80:
        w.d_grid *= 0.5
    placer = _Placer()
    if rng.random() < 0.4:
        gmin = max(8.0, v0)
        _lead(rng, w, placer, (gmin, gmin + 30.0), (0.7 * v0, v0 + 1.0), v_des=min(v_curve, limit))
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_neighbors=(0, 2), n_oncoming=(0, 3))
    w.text = _road_text(w, cor, (cu, rad, ang))
    return w


def _fam_lane_change(spec, rng):
    n_fwd = int(rng.choice([2, 3], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    tgt = int(rng.choice([k for k in (ego_k - 1, ego_k + 1) if 0 <= k < n_fwd]))
    limit = _kmh(rng, [40, 50, 60, 70, 80])
    v0 = limit * rng.uniform(0.5, 0.95)
    ua = rng.uniform(0.0, 25.0)
    ub = ua + max(30.0, v0 * rng.uniform(3.0, 4.5))
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, lane_change=(tgt, ua, ub))
    side = "left" if tgt < ego_k else "right"
    w = _new_world(mb, route, s0, v0, limit, rng, command=side, lc_grid=lc)
    placer = _Placer()
    # Lead in the current lane (slower: the reason to change), vehicles in the target lane leave a gap.
    if rng.random() < 0.6:
        p, s_l = _fwd_lane_s(cor, ego_k, 75.0)
        L, W_, H = _car(rng)
        gap = rng.uniform(15.0, 40.0)
        v = v0 * rng.uniform(0.5, 0.9)
        w.vehicles.append(Vehicle(p, s_l + E.EGO_FRONT + gap + L / 2, v, v, L, W_, H, group=("fwd", ego_k)))
    pt = cor.fwd_path(tgt)
    for rel in (rng.uniform(ub + 15.0, ub + 50.0), -rng.uniform(30.0, 50.0)):
        if rng.random() < 0.6:
            L, W_, H = _car(rng)
            _, s = _fwd_lane_s(cor, tgt, 75.0 + rel)
            v = v0 * (rng.uniform(0.95, 1.15) if rel > 0 else rng.uniform(0.7, 0.95))
            w.vehicles.append(Vehicle(pt, s, v, v, L, W_, H, group=("fwd", tgt)))
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=(tgt, ego_k), follower_p=0.0)
    w.text = f"change to the {side} lane, speed limit {language.kmh(limit)} km/h"
    return w


def _fam_oncoming(spec, rng):
    n_fwd = int(rng.choice([1, 2], p=[0.7, 0.3]))
    n_back = int(rng.choice([1, 2], p=[0.7, 0.3]))
    ego_k = 0 if rng.random() < 0.7 else n_fwd - 1
    limit = _kmh(rng, [40, 50, 60, 70])
    curve = None
    if rng.random() < 0.3:
        curve = (rng.uniform(-20, 40), rng.uniform(120, 400), rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve,
                                            width=rng.uniform(3.1, 3.6))
    v0 = limit * rng.uniform(0.5, 0.95)
    w = _new_world(mb, route, s0, v0, limit, rng)
    placer = _Placer()
    # Oncoming traffic close by (key agents), maybe a slow cyclist or lead ahead.
    for j in range(n_back):
        p = cor.back_path(j)
        for _ in range(int(rng.integers(1, 4))):
            L, W_, H = _car(rng)
            _, s = _back_lane_s(cor, j, 75.0 + rng.uniform(5.0, 110.0))
            if not placer.free(("back", j), s, L, 6.0):
                continue
            placer.add(("back", j), s, L)
            v = limit * rng.uniform(0.7, 1.0)
            w.vehicles.append(Vehicle(p, s, v, v, L, W_, H, group=("back", j), priority=0))
    r = rng.random()
    if r < 0.35:
        # Cyclist near the right edge of the ego lane.
        gap = rng.uniform(max(10.0, 1.5 * v0), 45.0)
        s = w.s0 + E.EGO_FRONT + gap
        v = rng.uniform(3.0, 6.0)
        lat = np.full(T_FUT, -(cor.widths / 2 - 0.6)) if ego_k == n_fwd - 1 else None
        w.vehicles.append(Vehicle(route, s, v, v, 1.8, 0.7, 1.6, kind=AGENT_BICYCLE, group="ego", lat=lat,
                                  priority=0))
        placer.add("ego", s, 1.8)
        extra = "watch for the cyclist ahead"
    elif r < 0.7:
        gmin = max(8.0, v0)
        _lead(rng, w, placer, (gmin, gmin + 30.0), (0.6 * v0, v0), v_des=limit * 0.9)
        extra = "watch for oncoming traffic"
    else:
        extra = "watch for oncoming traffic"
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_oncoming=(0, 1), follower_p=0.3)
    w.text = _road_text(w, cor, curve if curve is not None and curve[1] < 200 else None, extra)
    return w


def _fam_ped_crossing(spec, rng):
    n_fwd = int(rng.choice([1, 2], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.25, 0.55, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = _kmh(rng, [30, 40, 50])
    mb, cor, route, s0, lc = _corridor_base(spec, rng, n_fwd, n_back, ego_k, limit)
    v0 = limit * rng.uniform(0.5, 1.0)
    w = _new_world(mb, route, s0, v0, limit, rng)
    placer = _Placer()
    dist = rng.uniform(max(12.0, v0 * v0 / (2 * 3.0) + 6.0), 45.0)    # ego front -> crosswalk near edge
    u_cw = 75.0 + E.EGO_FRONT + dist
    right = -cor.n_fwd * cor.widths - R.SHOULDER
    left = cor.n_back * cor.widths + R.SHOULDER if cor.n_back else R.SHOULDER
    cw_pts = cor.ref.offset_points(np.array([u_cw, u_cw + 3.0, u_cw + 3.0, u_cw]), np.array([left, left, right, right]))
    mb.crosswalks.append(cw_pts)
    _, _, hh = cor.ref.at(np.array([u_cw + 1.5]))
    h = float(hh[0])
    n_ped = int(rng.integers(1, 4))
    occ_t = np.zeros(71, bool)
    for i in range(n_ped):
        from_right = rng.random() < 0.6
        width = left - right
        start_frac = rng.uniform(-0.35, 0.5)
        off = right + start_frac * width if from_right else left - start_frac * width
        direction = h + (np.pi / 2 if from_right else -np.pi / 2)
        p0 = cor.ref.offset_points(np.array([u_cw + rng.uniform(0.6, 2.4)]), off)[0]
        spd = rng.uniform(1.0, 1.7)
        delay = rng.uniform(0.0, 1.5) if start_frac < 0 else 0.0
        total = width + 3.0 - max(start_frac, 0.0) * width
        w.fixed.append(pedestrian(p0, direction, spd, delay, stop_after=total, priority=0))
        # When is it on the road (for other vehicles' yielding, up to 7 s)?
        pos = np.clip(spd * np.clip(T7 - delay, 0, None), 0, total) + start_frac * width
        occ_t |= (pos > -0.5) & (pos < width + 0.5)
    # Other vehicles yield at the crosswalk while someone is on it.
    _populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_oncoming=(0, 2), ped_side_p=0.5)
    for veh in w.vehicles:
        if veh.path is w.route or veh.kind != AGENT_VEHICLE:
            continue
        sc, lat = veh.path.project(cor.ref.offset_points(np.array([u_cw - 1.0, u_cw + 4.0]), np.zeros(2)))
        s_line = float(sc.min())
        veh.stop_s = s_line - 1.0
        veh.red = occ_t.copy()
    w.text = _road_text(w, cor, extra="pedestrian crossing ahead")
    return w


# ----------------------------------------------------------------------------------------------------
# Intersection family.

def _fam_intersection(spec, rng):
    movement = str(rng.choice(["left", "straight", "right"], p=[0.35, 0.35, 0.3]))
    pattern = str(rng.choice(["green", "red", "turns_red", "turns_green"], p=[0.3, 0.25, 0.22, 0.23]))
    n_m = int(rng.choice([1, 2, 3], p=[0.4, 0.45, 0.15]))
    n_c = int(rng.choice([1, 2], p=[0.6, 0.4]))
    # Fit the lane budget: 4 arms x (in + out) lanes + connectors.
    while 2 * (2 * n_m + 2 * n_c) + 2 * (n_m + 2) + 2 * (n_c + 2) > spec.num_lanes and (n_m > 1 or n_c > 1):
        if n_c > 1:
            n_c -= 1
        else:
            n_m -= 1
    w_m, w_c = rng.uniform(3.3, 3.7), rng.uniform(3.2, 3.6)
    margin = rng.uniform(6.5, 9.0)
    limit = _kmh(rng, [30, 40, 50, 60])
    signal = R.make_signal(rng, pattern)
    k_e = 0 if movement == "left" else (n_m - 1 if movement == "right" else int(rng.integers(0, n_m)))
    red_a = signal.red(0, T7)
    green_now = not red_a[0]
    # Ego start: distance D of its front from the stop line (negative: already inside, green only), speed.
    r_turn = {"left": n_m * w_m + margin, "straight": 1e3, "right": 0.5 * w_m + margin}[movement]
    v_turn = np.sqrt(2.0 * r_turn)        # nominal, for the start inside the intersection
    if pattern in ("red", "turns_green"):
        D = rng.uniform(2.0, 30.0)
        vmax = np.sqrt(2 * 2.0 * max(D - 1.0, 0.0))
        v0 = float(min(limit, vmax) * rng.uniform(0.3, 0.95))
        if rng.random() < 0.2:
            v0, D = 0.0, rng.uniform(0.5, 3.0)
    elif pattern == "green" and rng.random() < 0.35:
        D = -rng.uniform(0.0, 12.0)
        v0 = float(min(limit, v_turn) * rng.uniform(0.6, 1.0))
    else:
        D = rng.uniform(3.0, 40.0)
        v0 = float(limit * rng.uniform(0.4, 0.95))
        if rng.random() < 0.1:
            v0, D = 0.0, rng.uniform(0.5, 3.0)
    hx = n_c * w_c + margin
    centre = np.array([hx, (k_e + 0.5) * w_m])        # stop line of the ego's approach at x = 0
    lens = [max(D, 0.0) + 95.0, rng.uniform(80.0, 100.0), rng.uniform(60.0, 90.0), rng.uniform(60.0, 90.0)]
    mb = R.MapBuilder(spec)
    inter = R.build_intersection(mb, centre, 0.0, n_m, n_c, w_m, w_c, margin, lens, signal, limit)
    exit_arm = {"straight": 1, "left": 3, "right": 2}[movement]
    k_out = {"straight": min(k_e, n_m - 1), "left": 0, "right": inter.arms[2].n_out - 1}[movement]
    conn = inter.connectors[(0, k_e, movement)]
    p_in = mb.lane_paths[("in", 0, k_e)]
    p_out = mb.lane_paths[("out", exit_arm, k_out)]
    full = R.Path(np.concatenate([p_in.xy, conn.xy[1:], p_out.xy[1:]]))
    D = max(D, -0.7 * conn.length)
    # A human approaching a turn is already slow enough to take it at <= 2 m/s^2 lateral acceleration.
    v_turn = np.sqrt(2.0 / max(float(np.abs(E.smooth(conn.k, 7)).max()), 1e-3))
    v0 = float(min(v0, np.sqrt(v_turn ** 2 + 2.0 * 1.5 * max(D, 0.0))))
    s_e = p_in.length - E.EGO_FRONT - D
    route = full.sub(s_e - 60.0, full.length, 1.0)
    s0 = 60.0
    s_stop = s0 + E.EGO_FRONT + D
    s_end = s_stop + conn.length
    for ln in mb.lanes:
        ln.on_route = (ln.key.startswith("in0_") or ln.key.startswith(f"out{exit_arm}_")
                       or (ln.key.startswith("conn0_") and ln.key.endswith("_" + movement)))
    w = _new_world(mb, route, s0, v0, limit, rng, command=movement)
    w.lights.append(E.LightOnRoute(s_stop, s_end, red_a))
    # Lights that face the ego (its approach), for the camera.
    w.approach_lights = [(inter.connectors[key].xy[0], 0.0, red_a) for key in inter.connectors if key[0] == 0]
    placer = _Placer()
    lights_for = lambda phase: signal.red(phase, T7)  # noqa: E731
    # Lead / queue in the ego lane.
    if rng.random() < 0.55:
        L, W_, H = _car(rng)
        if not green_now and D > 10.0:
            s = s_stop - 1.0 - L / 2 - rng.uniform(0.0, 1.0)
            v = 0.0
            gap = s - L / 2 - (s0 + E.EGO_FRONT)
            w.v0 = float(min(w.v0, np.sqrt(max(0.0, 4.0 * (gap - 3.0)))))
        else:
            gap = rng.uniform(max(6.0, v0), 30.0)
            s = s0 + E.EGO_FRONT + gap + L / 2
            v = float(np.clip(v0 + rng.uniform(-2.0, 2.0), 0.0, limit))
        if s - L / 2 > s0 + E.EGO_FRONT + 3.0:
            stop = s_stop if s + L / 2 < s_stop else np.inf
            w.vehicles.append(Vehicle(route, s, v, limit * 0.9, L, W_, H, group="ego", stop_s=stop,
                                      red=red_a if np.isfinite(stop) else None, priority=0))
            placer.add("ego", s, L)
    # Other approach lanes and arms.
    for ai, arm in enumerate(inter.arms):
        phase = arm.phase
        red = lights_for(phase)
        for k in range(arm.n_in):
            if ai == 0 and k == k_e:
                continue
            nveh = int(rng.integers(0, 3 if ai != 0 else 2))
            for _ in range(nveh):
                mv_choices = ["straight"] + (["left"] if k == 0 else []) + (["right"] if k == arm.n_in - 1 else [])
                mv = str(rng.choice(mv_choices))
                c = inter.connectors[(ai, k, mv)]
                pin = mb.lane_paths[("in", ai, k)]
                travel = arm.phi + np.pi
                if mv == "straight":
                    bi = R._arm_lookup(inter.arms, travel)
                    kb = min(k, inter.arms[bi].n_out - 1)
                elif mv == "left":
                    bi, kb = R._arm_lookup(inter.arms, travel + np.pi / 2), 0
                else:
                    bi = R._arm_lookup(inter.arms, travel - np.pi / 2)
                    kb = inter.arms[bi].n_out - 1
                pout = mb.lane_paths[("out", bi, kb)]
                path = R.Path(np.concatenate([pin.xy, c.xy[1:], pout.xy[1:]]))
                L, W_, H = _car(rng)
                stop = pin.length
                if red[0] and rng.random() < 0.6:
                    s = stop - L / 2 - 1.0 - rng.uniform(0.0, 8.0)
                    v = 0.0
                else:
                    s = stop - rng.uniform(-15.0, 50.0)
                    v = limit * rng.uniform(0.5, 0.95)
                    if s > stop - 3.0 and s < stop + c.length + 5:  # inside the intersection: only when green
                        if red[0]:
                            continue
                grp = ("in", ai, k)
                if not placer.free(grp, s, L, 3.0):
                    continue
                placer.add(grp, s, L)
                w.vehicles.append(Vehicle(path, s, v, limit * rng.uniform(0.8, 1.0), L, W_, H, group=grp,
                                          stop_s=stop, red=red, priority=1 if ai == 0 else 0))
    # Pedestrians on the crosswalk of the exit arm (they walk with the ego's phase for turns).
    if rng.random() < 0.45:
        arm = inter.arms[exit_arm]
        cw_d = arm.h - 2.1
        wl, wr = arm.n_in * arm.width, arm.n_out * arm.width
        for _ in range(int(rng.integers(1, 3))):
            from_r = rng.random() < 0.5
            p_start = inter.centre + arm.e * (cw_d + rng.uniform(-0.8, 0.8)) + arm.n * ((-wr - 2.0) if from_r else (wl + 2.0))
            direction = arm.phi + (np.pi / 2 if from_r else -np.pi / 2)
            spd = rng.uniform(1.0, 1.6)
            delay = rng.uniform(0.0, 2.0) if rng.random() < 0.5 else 0.0
            start_in = rng.uniform(0.0, wl + wr + 2.0) if rng.random() < 0.5 else 0.0
            p_start = p_start + start_in * np.array([np.cos(direction), np.sin(direction)])
            w.fixed.append(pedestrian(p_start, direction, spd, delay, stop_after=wl + wr + 4.0 - start_in))
    mtxt = {"left": "turn left at the intersection", "right": "turn right at the intersection",
            "straight": "go straight through the intersection"}[movement]
    if D >= 3.0:
        mtxt += f" in {language.round5(D)} m"
    w.text = f"{mtxt}, speed limit {language.kmh(limit)} km/h"
    return w


_BUILDERS = {
    "cruise_lead": lambda spec, rng: _fam_cruise(spec, rng, brake=False),
    "lead_brake": lambda spec, rng: _fam_cruise(spec, rng, brake=True),
    "cut_in": _fam_cut_in,
    "blocked_lane": _fam_blocked,
    "intersection": _fam_intersection,
    "pedestrian_crossing": _fam_ped_crossing,
    "curve": _fam_curve,
    "lane_change": _fam_lane_change,
    "oncoming": _fam_oncoming,
}


# ----------------------------------------------------------------------------------------------------
# Simulation, expert, sanity.

def _ego_boxes(pose: np.ndarray) -> np.ndarray:
    """Rear-axle poses [..., 3] -> ego boxes [..., 5]."""
    x = pose[..., 0] + E.EGO_CENTER * np.cos(pose[..., 2])
    y = pose[..., 1] + E.EGO_CENTER * np.sin(pose[..., 2])
    return np.stack([x, y, pose[..., 2], np.full(x.shape, E.EGO_LENGTH), np.full(x.shape, E.EGO_WIDTH)], -1)


def _simulate(w: World):
    """Agents, expert, followers. Returns (boxes, vel, types, valid, heights, priority, expert)."""
    vs = w.vehicles
    Sv, Vv = simulate_vehicles(vs)
    vb, vv = vehicle_boxes(vs, Sv, Vv)
    fx = w.fixed
    n = len(vs) + len(fx)
    boxes = np.zeros((n, T_FUT, 5))
    vel = np.zeros((n, T_FUT, 2))
    types = np.zeros(n, np.int32)
    valid = np.ones((n, T_FUT), bool)
    heights = np.zeros(n)
    prio = np.zeros(n, np.int32)
    if vs:
        boxes[:len(vs)], vel[:len(vs)] = vb, vv
        types[:len(vs)] = [v.kind for v in vs]
        heights[:len(vs)] = [v.height for v in vs]
        prio[:len(vs)] = [v.priority for v in vs]
    for i, f in enumerate(fx):
        j = len(vs) + i
        boxes[j], vel[j], types[j], heights[j], prio[j] = f.boxes, f.vel, f.kind, f.height, f.priority
        if f.valid is not None:
            valid[j] = f.valid
    # The expert ignores agents behind it in its own lane that follow it (they react to it).
    follow = np.array([v.follows_ego for v in vs] + [False] * len(fx), bool)
    ex = E.plan(w.route, w.s0, w.v0, w.limit, w.params, w.d_of_s, boxes[~follow], vel[~follow],
                valid[~follow], types[~follow], w.lights, a0=w.a0)
    if follow.any():
        ego_s = ex.s[T_PAST:] + E.EGO_CENTER
        Sv, Vv = simulate_vehicles(vs, ego_s=ego_s, ego_group="ego")
        vb, vv = vehicle_boxes(vs, Sv, Vv)
        fi = np.nonzero(follow[:len(vs)])[0]
        boxes[fi], vel[fi] = vb[fi], vv[fi]
    return boxes, vel, types, valid, heights, prio, ex


def _conflicts(boxes, valid, ex) -> np.ndarray:
    """Agents [n] that come within ~0.3 m (front / rear) or 0.1 m (sides) of the expert's box."""
    if len(boxes) == 0:
        return np.zeros(0, bool)
    eb = _ego_boxes(ex.pose[T_PAST:]).copy()                           # [41, 5]
    eb[:, 3] += 0.6
    eb[:, 4] += 0.2
    return (boxes_overlap(eb[None], boxes) & valid).any(1)


def _build(spec, family, rng):
    """Draw a world, simulate it, sanity-check it: re-draw (up to 6 times) while a key agent of the
    family conflicts with the expert; then remove any other conflicting agent and re-plan without it."""
    for attempt in range(6):
        try:
            w = _BUILDERS[family](spec, rng)
        except _Retry:
            continue
        sim = _simulate(w)
        bad = _conflicts(sim[0], sim[3], sim[6])
        if not (bad & (sim[5] == 0)).any():
            break
    w.attempts = attempt + 1
    for _ in range(4):
        if not bad.any():
            break
        w.dropped += int(bad.sum())
        nv = len(w.vehicles)
        w.vehicles = [v for i, v in enumerate(w.vehicles) if not bad[i]]
        w.fixed = [f for i, f in enumerate(w.fixed) if not bad[nv + i]]
        sim = _simulate(w)
        bad = _conflicts(sim[0], sim[3], sim[6])
    boxes, vel, types, valid, heights, prio, ex = sim
    keep = ~bad
    return w, boxes[keep], vel[keep], types[keep], valid[keep], heights[keep], prio[keep], ex


# ----------------------------------------------------------------------------------------------------
# Packing into the Scene (ego frame, budgets).

def _to_ego(xy: np.ndarray, pose) -> np.ndarray:
    x0, y0, h0 = pose
    c, s = np.cos(h0), np.sin(h0)
    d = np.asarray(xy, np.float64)[..., :2] - np.array([x0, y0])
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _fit_polygon(poly: np.ndarray, n: int) -> np.ndarray:
    if len(poly) <= n:
        return poly
    idx = np.unique(np.round(np.linspace(0, len(poly) - 1, n)).astype(int))
    return poly[idx]


def _route_points(route: R.Path, n: int) -> np.ndarray:
    s = R.adaptive_params(route, 0.0, route.length, n, alpha=30.0)
    x, y, _ = route.at(s)
    return np.stack([x, y], -1)


def _meta(w: World, ex: E.ExpertResult) -> tuple:
    v = ex.v[T_PAST:]
    sp = S.meta_speed_label(v[0], v[-1], v.min())
    path = "straight"
    if w.lc_grid is not None:
        seg = np.interp([ex.s[T_PAST], ex.s[-1]], w.route.s, w.lc_grid)
        dl = seg[1] - seg[0]
        if abs(dl) > 1.0:
            path = "lane_change_left" if dl > 0 else "lane_change_right"
    if path == "straight":
        dh = _wrap(ex.pose[-1, 2] - ex.pose[T_PAST, 2])
        if dh > 0.3:
            path = "left"
        elif dh < -0.3:
            path = "right"
    return sp, S.META_PATH.index(path)


_COLORS = np.array([[200, 40, 40], [40, 70, 180], [230, 230, 230], [40, 40, 40], [150, 150, 160],
                    [30, 120, 60], [220, 180, 40], [120, 60, 30]], float)


def _pack(spec: SceneSpec, w: World, boxes, vel, types, valid, heights, prio, ex: E.ExpertResult,
          rng, seed: int, index: int, split_id: int, family: str) -> Scene:
    pose0 = ex.pose[T_PAST]
    d = S.empty_scene(spec).to_dict()
    # Ego.
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
    # Agents: drop any overlapping the ego at t0; key agents first, then nearest.
    ego0 = _ego_boxes(np.array(pose0))
    if len(boxes):
        ov = boxes_overlap(ego0[None], boxes[:, 0]) & valid[:, 0]
        dist = np.hypot(boxes[:, 0, 0] - pose0[0], boxes[:, 0, 1] - pose0[1])
        order = np.lexsort((dist, prio))
        order = [i for i in order if not ov[i] and dist[i] < SENSOR_RANGE][: spec.num_agents]
    else:
        order = []
    na = len(order)
    if na:
        b = boxes[order]
        d["agent_boxes"][:na, :, :2] = _to_ego(b[..., :2], pose0)
        d["agent_boxes"][:na, :, 2] = _wrap(b[..., 2] - pose0[2])
        d["agent_boxes"][:na, :, 3:5] = b[..., 3:5]
        vv = vel[order]
        c, s = np.cos(pose0[2]), np.sin(pose0[2])
        d["agent_velocity"][:na, :, 0] = c * vv[..., 0] + s * vv[..., 1]
        d["agent_velocity"][:na, :, 1] = -s * vv[..., 0] + c * vv[..., 1]
        d["agent_type"][:na] = types[order]
        # Agents are observed while within SENSOR_RANGE of the ego's t0 position (some leave the range).
        far = np.hypot(d["agent_boxes"][:na, :, 0], d["agent_boxes"][:na, :, 1]) > SENSOR_RANGE
        d["agent_valid"][:na] = valid[order] & ~far
    # Lanes.
    lanes = w.mb.lanes
    ld = [float(np.min(np.hypot(ln.polygon[:, 0] - pose0[0], ln.polygon[:, 1] - pose0[1]))) for ln in lanes]
    lorder = sorted(range(len(lanes)), key=lambda i: (not lanes[i].on_route, ld[i]))[: spec.num_lanes]
    for j, i in enumerate(lorder):
        ln = lanes[i]
        d["lane_polygons"][j], d["lane_vertex_valid"][j] = pad_polygon(
            R.ccw(_to_ego(_fit_polygon(ln.polygon, spec.lane_vertices), pose0)), spec.lane_vertices, "lane_polygons")
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
        poly = R.ccw(_to_ego(_fit_polygon(dv[i][0], spec.drivable_vertices), pose0))
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
            R.ccw(_to_ego(_fit_polygon(ln.polygon, spec.light_vertices), pose0)), spec.light_vertices,
            "light_polygons")
        d["light_valid"][j] = True
        d["light_on_route"][j] = ln.on_route
        d["light_red"][j] = sig.red(phase, t9)
    # Route.
    d["route"][:], d["route_valid"][:] = pad_polyline(_to_ego(_route_points(w.route, spec.route_points), pose0),
                                                      spec.route_points, "route")
    # Sensors.
    t0_ok = d["agent_valid"][:na, 0]
    colors = np.zeros((na, 3))
    for i in range(na):
        t = d["agent_type"][i]
        colors[i] = (_COLORS[rng.integers(0, len(_COLORS))] if t == AGENT_VEHICLE else
                     np.array([230, 120, 40.0]) if t == AGENT_PEDESTRIAN else
                     np.array([150, 60, 170.0]) if t == AGENT_BICYCLE else np.array([240, 100, 20.0]))
    lights_cam = []
    for p, h, red71 in (w.approach_lights or []):
        pe = _to_ego(np.asarray(p)[None], pose0)[0]
        lights_cam.append((pe, float(_wrap(h - pose0[2])), bool(red71[0])))
    hts = heights[order] if na else np.zeros(0)
    inp = sensors.SensorInput(
        drivable=drivable_ego,
        markings=[(_to_ego(m.pts, pose0), m.style) for m in w.mb.markings],
        crosswalks=[_to_ego(c, pose0) for c in w.mb.crosswalks],
        boxes=d["agent_boxes"][:na, 0].astype(np.float64)[t0_ok], types=d["agent_type"][:na][t0_ok],
        heights=np.asarray(hts)[t0_ok], colors=colors[t0_ok], lights=lights_cam)
    d["camera"][:] = sensors.render_camera(spec, inp)
    d["lidar"][:] = sensors.render_lidar(spec, inp, rng)
    d["bev_semantic"][:] = sensors.render_bev(spec, inp)
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


# ----------------------------------------------------------------------------------------------------
# Public API.

def generate_scene(spec: SceneSpec, seed: int, index: int, split: str, family: Optional[str] = None) -> Scene:
    """One validated numpy Scene, deterministic in (seed, split, index) (and ``family`` if given).

    ``family`` None -> :func:`family_for(split, seed, index)`. ``scene_id`` = split_id * 1e8 + index.
    Raises ValueError naming the argument on bad input."""
    if not isinstance(spec, SceneSpec):
        raise ValueError(f"generate_scene: spec must be a SceneSpec, got {type(spec).__name__}")
    split_id = _split_id(split)
    for name, val, hi in (("seed", seed, 2 ** 31 - 1), ("index", index, 10 ** 8 - 1)):
        if not isinstance(val, (int, np.integer)) or not 0 <= int(val) <= hi:
            raise ValueError(f"generate_scene: {name} must be an int in [0, {hi}], got {val!r}")
    fam = family if family is not None else family_for(split, seed, index)
    if fam not in FAMILIES:
        raise ValueError(f"generate_scene: family must be one of {FAMILIES} or None, got {fam!r}")
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    w, boxes, vel, types, valid, heights, prio, ex = _build(spec, fam, rng)
    sc = _pack(spec, w, boxes, vel, types, valid, heights, prio, ex, rng, int(seed), int(index), split_id, fam)
    return validate(sc, spec, where=f"world scene {split}/{index} (seed {seed}, {fam})")


def generate_world(spec: SceneSpec, seed: int, index: int, split: str, family: Optional[str] = None):
    """Debug helper: the world-frame World, agents and expert result behind a scene."""
    split_id = _split_id(split)
    fam = family if family is not None else family_for(split, seed, index)
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    return _build(spec, fam, rng)


def _main(argv=None) -> None:
    """Speed check: ``python -m irlvla_jax.world.generate [--config configs/tiny.py] [--n 180]``.
    Prints one JSON line (wall and CPU ms per scene, scenes/s, family counts)."""
    import argparse
    import importlib.util
    import json
    import time
    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("--config", default="configs/tiny.py")
    ap.add_argument("--n", type=int, default=180)
    ap.add_argument("--split", default="train")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sp = importlib.util.spec_from_file_location("world_speed_cfg", a.config)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    spec = SceneSpec.from_config(mod.get_config().scene)
    generate_scene(spec, a.seed, 0, a.split)                       # warm caches
    counts = {f: 0 for f in FAMILIES}
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(a.n):
        counts[FAMILIES[int(generate_scene(spec, a.seed, i, a.split).family)]] += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"config": a.config, "scenes": a.n, "wall_ms_per_scene": round(1e3 * wall / a.n, 2),
                      "cpu_ms_per_scene": round(1e3 * cpu / a.n, 2), "scenes_per_s": round(a.n / wall, 1),
                      "families": counts}))


if __name__ == "__main__":
    _main()
