"""The intersection scenario family: a signalised 4-way intersection (``roads.build_intersection``,
1-3 x 1-2 lanes) with the ego turning left, going straight or turning right; the ego's light green / red /
turns red / turns green; the ego approaching, queued, stopped at the line or already inside; a queue or
lead in its lane, oncoming and crossing traffic obeying their lights, and pedestrians on the exit
crosswalk (walking with the ego's phase). Returns the world-frame :class:`~irlvla_jax.world.scaffold.World`.
"""
from __future__ import annotations

import numpy as np

from irlvla_jax.geometry import EGO_FRONT
from irlvla_jax.world import expert as E
from irlvla_jax.world import language
from irlvla_jax.world import roads as R
from irlvla_jax.world.paths import Path
from irlvla_jax.world.scaffold import T7, Placer, World, draw_car_size, draw_limit, new_world
from irlvla_jax.world.traffic import Vehicle, pedestrian


def build_intersection_family(spec, rng) -> World:
    """Draw one intersection scene (see the module docstring) from ``rng``."""
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
    limit = draw_limit(rng, [30, 40, 50, 60])
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
    full = Path(np.concatenate([p_in.xy, conn.xy[1:], p_out.xy[1:]]))
    D = max(D, -0.7 * conn.length)
    # A human approaching a turn is already slow enough to take it at <= 2 m/s^2 lateral acceleration.
    v_turn = np.sqrt(2.0 / max(float(np.abs(E.smooth(conn.k, 7)).max()), 1e-3))
    v0 = float(min(v0, np.sqrt(v_turn ** 2 + 2.0 * 1.5 * max(D, 0.0))))
    s_e = p_in.length - EGO_FRONT - D
    route = full.sub(s_e - 60.0, full.length, 1.0)
    s0 = 60.0
    s_stop = s0 + EGO_FRONT + D
    s_end = s_stop + conn.length
    for ln in mb.lanes:
        ln.on_route = (ln.key.startswith("in0_") or ln.key.startswith(f"out{exit_arm}_")
                       or (ln.key.startswith("conn0_") and ln.key.endswith("_" + movement)))
    w = new_world(mb, route, s0, v0, limit, rng, command=movement)
    w.lights.append(E.LightOnRoute(s_stop, s_end, red_a))
    # Lights that face the ego (its approach), for the camera.
    w.approach_lights = [(inter.connectors[key].xy[0], 0.0, red_a) for key in inter.connectors if key[0] == 0]
    placer = Placer()
    lights_for = lambda phase: signal.red(phase, T7)  # noqa: E731
    # Lead / queue in the ego lane.
    if rng.random() < 0.55:
        L, W_, H = draw_car_size(rng)
        if not green_now and D > 10.0:
            s = s_stop - 1.0 - L / 2 - rng.uniform(0.0, 1.0)
            v = 0.0
            gap = s - L / 2 - (s0 + EGO_FRONT)
            w.v0 = float(min(w.v0, np.sqrt(max(0.0, 4.0 * (gap - 3.0)))))
        else:
            gap = rng.uniform(max(6.0, v0), 30.0)
            s = s0 + EGO_FRONT + gap + L / 2
            v = float(np.clip(v0 + rng.uniform(-2.0, 2.0), 0.0, limit))
        if s - L / 2 > s0 + EGO_FRONT + 3.0:
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
                    bi = R.arm_lookup(inter.arms, travel)
                    kb = min(k, inter.arms[bi].n_out - 1)
                elif mv == "left":
                    bi, kb = R.arm_lookup(inter.arms, travel + np.pi / 2), 0
                else:
                    bi = R.arm_lookup(inter.arms, travel - np.pi / 2)
                    kb = inter.arms[bi].n_out - 1
                pout = mb.lane_paths[("out", bi, kb)]
                path = Path(np.concatenate([pin.xy, c.xy[1:], pout.xy[1:]]))
                L, W_, H = draw_car_size(rng)
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
            p_start = (inter.centre + arm.e * (cw_d + rng.uniform(-0.8, 0.8))
                       + arm.n * ((-wr - 2.0) if from_r else (wl + 2.0)))
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
