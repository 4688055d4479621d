"""The rule-based expert ("logged human") of the embedded world (numpy, world frame).

It has full knowledge of the scene (every agent's logged future, every light's schedule) and drives the
route centerline (plus a small human lateral offset and nudges) with a longitudinal car-following model:
IDM combined with the constant-acceleration heuristic (Treiber & Kesting's "ACC model"; it uses the
leader's true acceleration, and its kinematic part aims at stopping ``s_min`` behind an obstacle), so a
close cut-in by a car that is not slower causes no emergency brake, while a braking lead or a stopped
obstacle is answered with at least the kinematically needed deceleration (at most 1 m/s^2 more):

* desired speed = a human fraction of the speed limit, capped by a curvature profile
  (|lateral acceleration| <= a_lat, anticipated with a comfortable 1.5 m/s^2 deceleration);
* leaders = agents inside the ego's corridor (route ± half ego width + margin) ahead of it, and agents
  *about to enter* it within 2.5 s (as a virtual leader where they will be; ignored when the ego clears
  their entry point first) — lead cars, cut-ins, crossing pedestrians, oncoming traffic at a left turn;
* red lights: a stopped virtual leader at the stop line whenever the light is red now or will turn red
  before the ego has cleared the connector, as long as it can stop comfortably (<= 3 m/s^2); otherwise it
  commits and drives on (as humans do, so it can still get TLC = 0 on a light that turns red);
* jerk-limited acceleration: 2 m/s^3 up, 4 m/s^3 down, 8 m/s^3 when it must brake harder than 3.5 m/s^2;
  acceleration in [-8, 2] m/s^2.

Human-like variation per scene (:func:`sample_params`): desired speed 0.88-1.0 x limit, headway 1.1-1.6 s,
standstill gap 2.5-3.5 m, comfortable lateral acceleration 1.8-2.5 m/s^2, IDM a/b.

Output: 10 Hz states for t = -1.5 ... 4.0 s; the past is constant acceleration (a0 = the IDM command
at t0, clipped so the past speed stays >= 0) along the same route, which makes the logged past and the
plan consistent for history comfort.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from irlvla_jax.geometry import EGO_FRONT, EGO_REAR, EGO_WIDTH
from irlvla_jax.scene import AGENT_PEDESTRIAN, AGENT_BICYCLE, T_FUT, T_PAST, DT
from irlvla_jax.world.paths import Path


@dataclasses.dataclass
class ExpertParams:
    v_factor: float = 0.95       # desired speed / limit
    a_max: float = 1.6
    b: float = 2.2
    headway: float = 1.3
    s_min: float = 2.5
    a_lat: float = 2.2
    jerk_up: float = 2.0
    jerk_dn: float = 4.0
    stop_comfort: float = 3.0


def sample_params(rng: np.random.Generator) -> ExpertParams:
    """Human-like expert parameters of one scene (see the module docstring)."""
    return ExpertParams(v_factor=rng.uniform(0.88, 1.0), a_max=rng.uniform(1.2, 1.9), b=rng.uniform(1.8, 2.6),
                        headway=rng.uniform(1.1, 1.6), s_min=rng.uniform(2.5, 3.5), a_lat=rng.uniform(1.8, 2.5))


@dataclasses.dataclass
class LightOnRoute:
    s_stop: float                # route arc length of the connector start (stop line)
    s_end: float                 # route arc length of the connector end
    red: np.ndarray              # [71] red at t = 0.0 ... 7.0 s


@dataclasses.dataclass
class ExpertResult:
    t: np.ndarray                # [56] -1.5 ... 4.0 s
    s: np.ndarray                # rear-axle route arc length
    v: np.ndarray
    a: np.ndarray
    pose: np.ndarray             # [56, 3] world (x, y, heading), rear axle
    ay: np.ndarray               # lateral acceleration
    committed_red: bool


def smooth(x: np.ndarray, n: int) -> np.ndarray:
    if n <= 1 or len(x) < n:
        return x
    k = np.ones(n) / n
    xp = np.concatenate([np.full(n // 2, x[0]), x, np.full(n - 1 - n // 2, x[-1])])
    return np.convolve(xp, k, mode="valid")


def corridor_occupancy(route: Path, d_of_s, boxes: np.ndarray, vel: np.ndarray, valid: np.ndarray,
                       types: np.ndarray, margin: float = 0.35) -> Tuple[np.ndarray, ...]:
    """Project agent boxes [n, 41, 5] onto the route. Returns (in_corridor [n, 41], s [n, 41],
    longitudinal half extent [n, 41], speed along the route [n, 41])."""
    n = boxes.shape[0]
    if n == 0:
        z = np.zeros((0, T_FUT))
        return z.astype(bool), z, z, z
    pts = boxes[..., :2].reshape(-1, 2)
    s, lat = route.project(pts)
    s, lat = s.reshape(n, T_FUT), lat.reshape(n, T_FUT)
    hr = np.interp(s, route.s, route.h)
    dpsi = boxes[..., 2] - hr
    L, W = boxes[..., 3], boxes[..., 4]
    lat_ext = np.abs(0.5 * L * np.sin(dpsi)) + np.abs(0.5 * W * np.cos(dpsi))
    lon_ext = np.abs(0.5 * L * np.cos(dpsi)) + np.abs(0.5 * W * np.sin(dpsi))
    vru = (types == AGENT_PEDESTRIAN) | (types == AGENT_BICYCLE)
    mg = np.where(vru, margin + 0.35, margin)[:, None]
    clear = np.abs(lat - d_of_s(s)) - lat_ext - 0.5 * EGO_WIDTH
    inside = (clear < mg) & valid & (s > -5.0) & (s < route.length + 5.0)
    v_al = vel[..., 0] * np.cos(hr) + vel[..., 1] * np.sin(hr)
    return inside, s, lon_ext, v_al


def _acc_model(v, vt, g, vl, p: ExpertParams, sq, al=0.0, coolness=0.99):
    """IDM with the constant-acceleration heuristic (Treiber & Kesting's ACC model), using the
    leader's acceleration ``al`` (the expert knows it): a leader that cuts in close but is not slower
    does not cause an emergency brake, a braking leader is answered in proportion, and a stopped
    obstacle still gets at least the kinematically required deceleration v^2 / (2 gap)."""
    g = max(g, 0.05)
    sstar = p.s_min + max(0.0, v * p.headway + v * (v - vl) / sq)
    a_idm = p.a_max * (1.0 - (v / vt) ** 4 - (sstar / g) ** 2)
    al = min(al, p.a_max)
    gc = max(g - p.s_min, 0.1)        # the CAH aims at stopping s_min behind, not bumper to bumper
    if vl * (v - vl) <= -2.0 * gc * al and vl ** 2 - 2.0 * gc * al > 1e-6:
        a_cah = v * v * al / (vl * vl - 2.0 * gc * al)
    else:
        a_cah = al - (max(v - vl, 0.0) ** 2) / (2.0 * gc)
    if a_idm >= a_cah:
        return a_idm
    bw = 1.0          # how much harder than the CAH deceleration it may brake (m/s^2)
    return (1 - coolness) * a_idm + coolness * (a_cah + bw * np.tanh((a_idm - a_cah) / bw))


def plan(route: Path, s0: float, v0: float, v_limit: float, p: ExpertParams, d_of_s,
         boxes: np.ndarray, vel: np.ndarray, valid: np.ndarray, types: np.ndarray,
         lights: List[LightOnRoute], a0: Optional[float] = None) -> ExpertResult:
    """Simulate the expert at 10 Hz for 4 s. See the module docstring."""
    inside, sa, lon, val = corridor_occupancy(route, d_of_s, boxes, vel, valid, types)
    n = inside.shape[0]
    acc_al = np.gradient(val, DT, axis=1) if n else val
    idx = np.where(inside, np.arange(T_FUT)[None], 10 ** 6)
    next_in = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1] if n else idx
    # Curvature speed profile along the route.
    k = np.abs(smooth(route.k, 7))
    v_des = max(p.v_factor * v_limit, 0.5)
    v_c = np.minimum(np.sqrt(p.a_lat / np.maximum(k, 1e-4)), v_des)
    b_c = 1.5
    w = v_c ** 2 + 2 * b_c * route.s
    v_allow = np.sqrt(np.maximum(np.minimum.accumulate(w[::-1])[::-1] - 2 * b_c * route.s, 0.0))
    sq = 2.0 * np.sqrt(p.a_max * p.b)
    committed = [False] * len(lights)
    any_committed = False

    def command(kk, s, v):
        nonlocal any_committed
        vt = max(float(np.interp(s + 2.0, route.s, v_allow)), 0.3)
        acc = max(p.a_max * (1.0 - (v / vt) ** 4), -3.0)
        gaps, vls, als = [], [], []
        if n:
            kp = next_in[:, kk]
            cand = kp <= min(kk + 25, T_FUT - 1)
            if cand.any():
                ii = np.nonzero(cand)[0]
                kpi = kp[ii]
                s_a = sa[ii, kpi]
                le = lon[ii, kpi]
                va = np.maximum(val[ii, kpi], 0.0)
                dte = (kpi - kk) * DT
                s_v = s_a - va * dte
                front = s + EGO_FRONT
                ok = (s_a - le > front - 1.0) & (s_a > s + 1.0)
                t_clear = (s_a + le + EGO_REAR - s) / max(v, 0.5)
                ok &= ~((kpi > kk) & (t_clear < dte - 0.3))
                gaps += list((s_v - le - front)[ok])
                vls += list(va[ok])
                # leader acceleration (full knowledge) for agents in the corridor now, 0 for future entries
                als += list(np.where(kpi == kk, acc_al[ii, kpi], 0.0)[ok])
        for li, lt in enumerate(lights):
            if committed[li]:
                continue
            front = s + EGO_FRONT
            if front > lt.s_stop + 0.3:
                continue
            t_pass = (lt.s_end + EGO_REAR + 1.0 - s) / max(v, 3.0)
            npass = int(np.ceil(t_pass / DT))
            redsoon = lt.red[kk:kk + npass + 1].any()
            if not redsoon:
                continue
            gl = lt.s_stop - front - 0.5
            b_req = v * v / (2 * max(gl, 0.05))
            red_now = bool(lt.red[kk])
            if (not red_now and b_req > p.stop_comfort) or (red_now and b_req > 6.0):
                committed[li] = True
                any_committed = True
                continue
            gaps.append(gl)
            vls.append(0.0)
            als.append(0.0)
        for g, vl, al in zip(gaps, vls, als):
            acc = min(acc, _acc_model(v, vt, g, vl, p, sq, al))
        return float(np.clip(acc, -8.0, 2.0))

    # t0 state.
    if a0 is None:
        a0 = command(0, s0, v0)
        a0 = float(np.clip(a0, -3.0, 1.2))
    a0 = min(a0, v0 / 1.5)
    s, v, a = s0, v0, a0
    S, V, A = [s], [v], [a]
    for kk in range(T_FUT - 1):
        ac = command(kk, s, v)
        jdn = p.jerk_dn if ac > -3.5 else 8.0
        a = a + float(np.clip(ac - a, -jdn * DT, p.jerk_up * DT))
        vn = max(v + a * DT, 0.0)
        s = s + 0.5 * (v + vn) * DT
        a_eff = (vn - v) / DT
        if vn == 0.0:
            a = max(a, 0.0) if ac >= 0 else a_eff
        v = vn
        S.append(s), V.append(v), A.append(a_eff if vn == 0.0 else a)
    tp = -np.arange(T_PAST, 0, -1) * DT
    s_past = s0 + v0 * tp + 0.5 * a0 * tp ** 2
    v_past = v0 + a0 * tp
    t = np.concatenate([tp, np.arange(T_FUT) * DT])
    s_all = np.concatenate([s_past, np.array(S)])
    v_all = np.concatenate([v_past, np.array(V)])
    a_all = np.concatenate([np.full(T_PAST, a0), np.array(A)])
    x, y, h = route.at(s_all)
    d = d_of_s(s_all)
    dd = d_of_s(s_all + 0.5) - d_of_s(s_all - 0.5)
    x = x - np.sin(h) * d
    y = y + np.cos(h) * d
    h = h + np.arctan(dd)
    kap = route.curvature(s_all)
    pose = np.stack([x, y, h], -1)
    return ExpertResult(t, s_all, v_all, a_all, pose, v_all ** 2 * kap, any_committed)
