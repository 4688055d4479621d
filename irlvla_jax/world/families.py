"""The scenario-family builders of the corridor roads and the registry of all nine families: each builder
draws one family's situation from ``rng`` — road, ego start and speed, the key agents that make the family
what it is, background traffic, command and instruction — and returns the :class:`~irlvla_jax.world.
scaffold.World` (world frame). The intersection family lives in :mod:`irlvla_jax.world.intersection_family`.

Families (``scene.FAMILIES``): cruise_lead, lead_brake, cut_in, blocked_lane, intersection,
pedestrian_crossing, curve, lane_change, oncoming.

Decisions: parked cars / cones that *block* a lane (blocked_lane) are AGENT_STATIC (NC 1/2, as the
design asks); parked cars at the roadside / in car parks elsewhere are stopped vehicles. Lane changes
that the route needs (lane_change, and the lane bypass in blocked_lane) give the command left / right.

Family variants: cruise_lead (straight or gentle curve, 1-3 lanes, one- or two-way); lead_brake (lead
brakes at 4-8 m/s^2 from 0-1.5 s, sometimes because of a stopped car further ahead); cut_in (from either
side, 0.5-12 m ahead, over 2-3.5 s); blocked_lane (bypass: the route changes lane before cones / barrier
/ parked car; nudge: an object intrudes 0.1-0.9 m and the expert shifts <= 0.9 m; stop: the lane is
blocked and the expert stops behind); pedestrian_crossing (1-3 pedestrians on a zebra crossing, other
vehicles yield); curve (R 30-200 m, 30-90°); lane_change (adjacent lane, 3-4.5 s, gap left in the target
lane); oncoming (two-way road, close oncoming traffic, a cyclist or lead ahead). Any family may add
neighbours, oncoming cars, a follower, sidewalk pedestrians, roadside parked cars or a car park with
parked cars.
"""
from __future__ import annotations

import numpy as np

from irlvla_jax.geometry import EGO_FRONT, EGO_REAR, EGO_WIDTH
from irlvla_jax.scene import AGENT_BICYCLE, AGENT_STATIC, AGENT_VEHICLE, DT, T_FUT
from irlvla_jax.world import language
from irlvla_jax.world import roads as R
from irlvla_jax.world.intersection_family import build_intersection_family
from irlvla_jax.world.scaffold import (T7, Placer, World, add_lead, back_lane_s, corridor_base, draw_car_size,
                                       draw_limit, fwd_lane_s, new_world, populate_corridor, road_text,
                                       smoothstep)
from irlvla_jax.world.traffic import Vehicle, pedestrian, static_object


def _fam_cruise(spec, rng, brake=False) -> World:
    """cruise_lead (a lead ahead) or, with ``brake``, lead_brake (the lead brakes hard)."""
    n_fwd = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = draw_limit(rng, [40, 50, 60, 70, 80] if not brake else [40, 50, 60, 70])
    curve = None
    if rng.random() < 0.25:
        curve = (rng.uniform(-20, 40), rng.uniform(250, 800), rng.choice([-1, 1]) * rng.uniform(0.1, 0.3))
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve)
    placer = Placer()
    if brake:
        v_lead = limit * rng.uniform(0.5, 0.95)
        v0 = float(np.clip(v_lead + rng.uniform(-1.5, 1.5), 2.0, limit))
    else:
        v_lead = limit * rng.uniform(0.4, 0.95)
        v0 = float(np.clip(v_lead + rng.uniform(-2.0, 3.0), 0.0, limit))
    w = new_world(mb, route, s0, v0, limit, rng)
    if brake:
        gmin = max(8.0, 1.0 * v0)
        lead = add_lead(rng, w, placer, (gmin, gmin + 15.0), (v_lead, v_lead), brake_t=rng.uniform(0.0, 1.5),
                     brake_a=rng.uniform(4.0, 8.0), v_des=v_lead)
        if rng.random() < 0.5:   # the reason it brakes: a slow or stopped car further ahead
            gap2 = lead.s0 + 0.5 * lead.length - (w.s0 + EGO_FRONT) + rng.uniform(12.0, 30.0)
            lead2 = add_lead(rng, w, placer, (gap2, gap2), (0.0, 2.0), priority=1)
            lead2.parked = lead2.v0 < 0.5
    else:
        gmin = max(6.0, 0.8 * v0)
        add_lead(rng, w, placer, (gmin, gmin + 30.0), (v_lead, v_lead), v_des=v_lead * rng.uniform(0.95, 1.1))
    ego_u = 75.0
    populate_corridor(rng, w, cor, ego_k, placer, ego_u)
    w.text = road_text(w, cor, curve if curve is not None and curve[1] < 300 else None)
    return w


def _fam_cut_in(spec, rng) -> World:
    """cut_in: a car from an adjacent lane cuts in 0.5-12 m ahead of the ego."""
    n_fwd = int(rng.choice([2, 3], p=[0.65, 0.35]))
    n_back = int(rng.choice([0, 1, 2], p=[0.4, 0.4, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = draw_limit(rng, [50, 60, 70, 80])
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit)
    placer = Placer()
    v0 = limit * rng.uniform(0.55, 0.95)
    w = new_world(mb, route, s0, v0, limit, rng)
    side_choices = [k for k in (ego_k - 1, ego_k + 1) if 0 <= k < n_fwd]
    k_c = int(rng.choice(side_choices))
    lat0 = cor.fwd_offset(k_c) - cor.fwd_offset(ego_k)
    L, W_, H = draw_car_size(rng)
    gap = rng.uniform(0.5, 12.0)
    s = w.s0 + EGO_FRONT + gap + 0.5 * L
    v = float(np.clip(v0 + rng.uniform(-3.0, 1.5), 2.0, None))
    tc, dur = rng.uniform(0.0, 1.5), rng.uniform(2.0, 3.5)
    lat = lat0 * (1.0 - smoothstep((np.arange(T_FUT) * DT - tc) / dur))
    w.vehicles.append(Vehicle(route, s, v, v * rng.uniform(0.95, 1.05), L, W_, H, group="cutin", lat=lat,
                              priority=0))
    placer.add(("fwd", k_c), s, L)
    if rng.random() < 0.5:
        add_lead(rng, w, placer, (gap + L + 12.0, gap + L + 40.0), (v0 * 0.7, v0 * 1.05), priority=1)
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=(k_c,))
    w.text = road_text(w, cor)
    return w


def _fam_blocked(spec, rng) -> World:
    """blocked_lane: an object in the ego lane to bypass (lane change), nudge past or stop behind."""
    variant = rng.choice(["bypass", "nudge", "stop"], p=[0.4, 0.3, 0.3])
    n_fwd = 2 if variant == "bypass" else int(rng.choice([1, 2]))
    if variant == "bypass":
        n_fwd = int(rng.choice([2, 3], p=[0.7, 0.3]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2])) if n_fwd > 1 or variant != "stop" else 1
    ego_k = n_fwd - 1 if variant != "bypass" else int(rng.integers(0, n_fwd))
    limit = draw_limit(rng, [30, 40, 50, 60])
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
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, lane_change=lane_change)
    w = new_world(mb, route, s0, v0, limit, rng, command=command, lc_grid=lc)
    placer = Placer()
    u_obs = 75.0 + EGO_FRONT + obs_gap
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
        s_obs = w.s0 + EGO_FRONT + obs_gap
        obj_len = {"car": L if kind == "car" else 0.0, "cones": 2.5 * (len(objs) - 1) + 0.4, "barrier": 0.4}[kind]
        need = (o_lane - cor.widths / 2 + intr) - (o_lane - EGO_WIDTH / 2 - 0.3)  # > 0: into our corridor
        if 0 < need <= 0.9:
            a0, a1 = s_obs - EGO_FRONT - 1.0, s_obs + obj_len + EGO_REAR + 1.0
            ramp = smoothstep((route.s - (a0 - 10.0)) / 10.0) * (1 - smoothstep((route.s - a1) / 10.0))
            w.d_grid = w.d_grid * (1 - ramp) + (need + 0.05) * ramp
    extra = {"car": "parked car", "cones": "cones", "barrier": "obstacle"}[kind]
    if variant == "bypass":
        side = "left" if tgt < ego_k else "right"
        w.text = f"{extra} ahead, change to the {side} lane, speed limit {language.kmh(limit)} km/h"
    else:
        w.text = road_text(w, cor, extra=f"{extra} ahead")
    avoid = (tgt,) if tgt is not None else ()
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=avoid, n_oncoming=(0, 2),
                       oncoming_u=(40.0, 120.0) if n_fwd == 1 else (-30.0, 120.0))
    return w


def _fam_curve(spec, rng) -> World:
    """curve: a bend of radius 30-200 m ahead, approached at a speed that can take it."""
    n_fwd = int(rng.choice([1, 2], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    rad = float(np.exp(rng.uniform(np.log(30.0), np.log(200.0))))
    ang = float(rng.choice([-1, 1]) * rng.uniform(np.radians(30), np.radians(90)))
    ang = float(np.sign(ang) * min(abs(ang), 130.0 / rad))
    cu = rng.uniform(-25.0, 30.0)
    limit = draw_limit(rng, [40, 50, 60, 70] if rad > 80 else [30, 40, 50])
    width = rng.uniform(3.5, 3.9) if rad < 60 else None
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, (cu, rad, ang), width=width)
    v_curve = np.sqrt(2.2 * rad)
    v_reach = np.sqrt(v_curve ** 2 + 2.0 * 1.5 * max(cu, 0.0))     # can still slow down for the curve
    v0 = float(min(limit, v_reach) * rng.uniform(0.75, 1.0))
    w = new_world(mb, route, s0, v0, limit, rng)
    # keep the human offset small in tight curves
    if rad < 80:
        w.d_grid *= 0.5
    placer = Placer()
    if rng.random() < 0.4:
        gmin = max(8.0, v0)
        add_lead(rng, w, placer, (gmin, gmin + 30.0), (0.7 * v0, v0 + 1.0), v_des=min(v_curve, limit))
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_neighbors=(0, 2), n_oncoming=(0, 3))
    w.text = road_text(w, cor, (cu, rad, ang))
    return w


def _fam_lane_change(spec, rng) -> World:
    """lane_change: the route changes to an adjacent lane, with a gap left in the target lane."""
    n_fwd = int(rng.choice([2, 3], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    tgt = int(rng.choice([k for k in (ego_k - 1, ego_k + 1) if 0 <= k < n_fwd]))
    limit = draw_limit(rng, [40, 50, 60, 70, 80])
    v0 = limit * rng.uniform(0.5, 0.95)
    ua = rng.uniform(0.0, 25.0)
    ub = ua + max(30.0, v0 * rng.uniform(3.0, 4.5))
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, lane_change=(tgt, ua, ub))
    side = "left" if tgt < ego_k else "right"
    w = new_world(mb, route, s0, v0, limit, rng, command=side, lc_grid=lc)
    placer = Placer()
    # Lead in the current lane (slower: the reason to change), vehicles in the target lane leave a gap.
    if rng.random() < 0.6:
        p, s_l = fwd_lane_s(cor, ego_k, 75.0)
        L, W_, H = draw_car_size(rng)
        gap = rng.uniform(15.0, 40.0)
        v = v0 * rng.uniform(0.5, 0.9)
        w.vehicles.append(Vehicle(p, s_l + EGO_FRONT + gap + L / 2, v, v, L, W_, H, group=("fwd", ego_k)))
    pt = cor.fwd_path(tgt)
    for rel in (rng.uniform(ub + 15.0, ub + 50.0), -rng.uniform(30.0, 50.0)):
        if rng.random() < 0.6:
            L, W_, H = draw_car_size(rng)
            _, s = fwd_lane_s(cor, tgt, 75.0 + rel)
            v = v0 * (rng.uniform(0.95, 1.15) if rel > 0 else rng.uniform(0.7, 0.95))
            w.vehicles.append(Vehicle(pt, s, v, v, L, W_, H, group=("fwd", tgt)))
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, avoid_lanes=(tgt, ego_k), follower_p=0.0)
    w.text = f"change to the {side} lane, speed limit {language.kmh(limit)} km/h"
    return w


def _fam_oncoming(spec, rng) -> World:
    """oncoming: a two-way road with close oncoming traffic, a cyclist or a lead ahead."""
    n_fwd = int(rng.choice([1, 2], p=[0.7, 0.3]))
    n_back = int(rng.choice([1, 2], p=[0.7, 0.3]))
    ego_k = 0 if rng.random() < 0.7 else n_fwd - 1
    limit = draw_limit(rng, [40, 50, 60, 70])
    curve = None
    if rng.random() < 0.3:
        curve = (rng.uniform(-20, 40), rng.uniform(120, 400), rng.choice([-1, 1]) * rng.uniform(0.15, 0.35))
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit, curve,
                                            width=rng.uniform(3.1, 3.6))
    v0 = limit * rng.uniform(0.5, 0.95)
    w = new_world(mb, route, s0, v0, limit, rng)
    placer = Placer()
    # Oncoming traffic close by (key agents), maybe a slow cyclist or lead ahead.
    for j in range(n_back):
        p = cor.back_path(j)
        for _ in range(int(rng.integers(1, 4))):
            L, W_, H = draw_car_size(rng)
            _, s = back_lane_s(cor, j, 75.0 + rng.uniform(5.0, 110.0))
            if not placer.free(("back", j), s, L, 6.0):
                continue
            placer.add(("back", j), s, L)
            v = limit * rng.uniform(0.7, 1.0)
            w.vehicles.append(Vehicle(p, s, v, v, L, W_, H, group=("back", j), priority=0))
    r = rng.random()
    if r < 0.35:
        # Cyclist near the right edge of the ego lane.
        gap = rng.uniform(max(10.0, 1.5 * v0), 45.0)
        s = w.s0 + EGO_FRONT + gap
        v = rng.uniform(3.0, 6.0)
        lat = np.full(T_FUT, -(cor.widths / 2 - 0.6)) if ego_k == n_fwd - 1 else None
        w.vehicles.append(Vehicle(route, s, v, v, 1.8, 0.7, 1.6, kind=AGENT_BICYCLE, group="ego", lat=lat,
                                  priority=0))
        placer.add("ego", s, 1.8)
        extra = "watch for the cyclist ahead"
    elif r < 0.7:
        gmin = max(8.0, v0)
        add_lead(rng, w, placer, (gmin, gmin + 30.0), (0.6 * v0, v0), v_des=limit * 0.9)
        extra = "watch for oncoming traffic"
    else:
        extra = "watch for oncoming traffic"
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_oncoming=(0, 1), follower_p=0.3)
    w.text = road_text(w, cor, curve if curve is not None and curve[1] < 200 else None, extra)
    return w


def _fam_ped_crossing(spec, rng) -> World:
    """pedestrian_crossing: 1-3 pedestrians on a zebra crossing ahead; other vehicles yield."""
    n_fwd = int(rng.choice([1, 2], p=[0.6, 0.4]))
    n_back = int(rng.choice([0, 1, 2], p=[0.25, 0.55, 0.2]))
    ego_k = int(rng.integers(0, n_fwd))
    limit = draw_limit(rng, [30, 40, 50])
    mb, cor, route, s0, lc = corridor_base(spec, rng, n_fwd, n_back, ego_k, limit)
    v0 = limit * rng.uniform(0.5, 1.0)
    w = new_world(mb, route, s0, v0, limit, rng)
    placer = Placer()
    dist = rng.uniform(max(12.0, v0 * v0 / (2 * 3.0) + 6.0), 45.0)    # ego front -> crosswalk near edge
    u_cw = 75.0 + EGO_FRONT + dist
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
    populate_corridor(rng, w, cor, ego_k, placer, 75.0, n_oncoming=(0, 2), ped_side_p=0.5)
    for veh in w.vehicles:
        if veh.path is w.route or veh.kind != AGENT_VEHICLE:
            continue
        sc, lat = veh.path.project(cor.ref.offset_points(np.array([u_cw - 1.0, u_cw + 4.0]), np.zeros(2)))
        s_line = float(sc.min())
        veh.stop_s = s_line - 1.0
        veh.red = occ_t.copy()
    w.text = road_text(w, cor, extra="pedestrian crossing ahead")
    return w


BUILDERS = {  # family name -> builder(spec, rng) -> World
    "cruise_lead": lambda spec, rng: _fam_cruise(spec, rng, brake=False),
    "lead_brake": lambda spec, rng: _fam_cruise(spec, rng, brake=True),
    "cut_in": _fam_cut_in,
    "blocked_lane": _fam_blocked,
    "intersection": build_intersection_family,
    "pedestrian_crossing": _fam_ped_crossing,
    "curve": _fam_curve,
    "lane_change": _fam_lane_change,
    "oncoming": _fam_oncoming,
}


def build_world(spec, family: str, rng) -> World:
    """Draw a World of scenario ``family`` (a name in ``scene.FAMILIES``) from ``rng``."""
    return BUILDERS[family](spec, rng)
