"""EPDMS rules on hand-built scenes, at both sides of every threshold (shared/EPDMS.md).

Every case is scored by the independent numpy reference (tests/reference) AND by the JAX scorer
(``irlvla_jax.scoring.epdms.score``, contract 3); both must give the expected value. Threshold cases use
direct mode (states = interpolated poses, so positions and speeds are exact); a few use tracked mode with
wide margins. The comfort cases put the excursion into the logged history (HC reads its rows as states)
and choose amplitudes from the linearity of the Savitzky-Golay filters: amplitude = bound / (peak of the
unit profile) x (1 -/+ 2 %).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy.signal import savgol_filter

from irlvla_jax import scene as S
from tests.reference import builders as B
from tests.reference import epdms_ref as R

KEYS = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC", "EPDMS")


# ---------------------------------------------------------------------------------------------------
# The two scorers behind one call.

def _jax_module():
    try:
        from irlvla_jax.scoring import epdms  # noqa: F401
        return epdms
    except Exception as e:  # pragma: no cover - only while the module is being written
        pytest.skip(f"JAX scorer irlvla_jax.scoring.epdms not importable yet ({type(e).__name__}: {e})")


N_JAX = 2  # proposals per JAX call (padded), so every case shares one compiled shape


@functools.lru_cache(maxsize=None)
def _jitted(mode, human_filter):
    """One compile per (mode, human_filter): a previous plan is always passed, ``has_prev`` says if it counts."""
    import jax
    epdms = _jax_module()
    return jax.jit(lambda sc, tr, pv, hp: epdms.score(sc, tr, pv, mode=mode, human_filter=human_filter,
                                                        has_prev=hp))


def jax_scores(scene, trajs, prevs=None, mode="direct", human_filter=False):
    """trajs [N, 8, 3] on one scene -> list of dicts (JAX scorer)."""
    batch = S.stack([scene])
    n = len(trajs)
    assert n <= N_JAX
    pad = lambda x: np.concatenate([x, np.repeat(x[-1:], N_JAX - n, 0)], 0)  # one shape -> one compile
    tr = pad(np.asarray(trajs, np.float32))[None]
    pv = np.zeros_like(tr) if prevs is None else pad(np.asarray(prevs, np.float32))[None]
    out = _jitted(mode, human_filter)(batch, tr, pv, np.array([prevs is not None]))
    return [{k: float(np.asarray(getattr(out, k))[0, i]) for k in KEYS} for i in range(n)]


def ref_scores(scene, trajs, prevs=None, mode="direct", human_filter=False):
    return R.score_scene(scene, trajs, prevs, mode=mode, human_filter=human_filter)


@pytest.fixture(params=["reference", "jax"])
def scorer(request):
    if request.param == "jax":
        _jax_module()
        return jax_scores
    return ref_scores


def check(scorer, scene, traj, expected, prev=None, mode="direct", human_filter=None):
    """Score one plan; compare the sub-scores in ``expected``. The human filter is on in direct mode (the
    default experts fail nothing, see builders) and off in tracked mode: two JAX compiles in all."""
    if human_filter is None:
        human_filter = mode == "direct"
    prevs = None if prev is None else np.asarray(prev)[None]
    got = scorer(scene, np.asarray(traj)[None], prevs, mode=mode, human_filter=human_filter)[0]
    bad = {k: (got[k], v) for k, v in expected.items() if abs(got[k] - v) > 1e-4}
    assert not bad, f"(got, expected) per sub-score: {bad}; all: { {k: round(got[k], 4) for k in KEYS} }"
    return got


def epdms_of(d, with_ec=False):
    w = 5 * d["EP"] + 5 * d["TTC"] + 2 * d["LK"] + 2 * d["HC"] + (2 * d["EC"] if with_ec else 0.0)
    return d["NC"] * d["DAC"] * d["DDC"] * d["TLC"] * w / (16.0 if with_ec else 14.0)


def car(x, y=0.0, h=0.0, length=4.5, width=1.8):
    return (x, y, h, length, width)


# ---------------------------------------------------------------------------------------------------
# NC fault classes.

def test_nc_stopped_ego_not_at_fault(scorer):
    # ego at rest; an oncoming car drives into it from the front (moving: not a stopped track)
    a = B.agent(lambda t: car(20.0 - 6.0 * t, h=math.pi), vel=(-6.0, 0.0))
    scene = B.make_scene(ego_v=0.0, agents=[a])
    check(scorer, scene, np.zeros((8, 3)), {"NC": 1.0, "TTC": 1.0})


@pytest.mark.parametrize("kind,expected", [(S.AGENT_VEHICLE, 0.0), (S.AGENT_STATIC, 0.5)])
def test_nc_stopped_object_at_fault(scorer, kind, expected):
    # parked car (vehicle, zero velocity) or a generic static object in the lane, ego drives into it
    a = B.agent(lambda t: car(15.0), kind=kind)
    scene = B.make_scene(ego_v=5.0, agents=[a])
    check(scorer, scene, B.const_velocity(5.0), {"NC": expected, "TTC": 0.0})


def test_nc_stopped_judged_at_first_occurrence(scorer):
    # zero velocity at its first step, "moving" afterwards: still a stopped track (devkit quirk) -> at fault
    a = B.agent(lambda t: car(15.0), vel=lambda t: (0.0, 0.0) if t < 0.05 else (3.0, 0.0))
    scene = B.make_scene(ego_v=5.0, agents=[a])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.0})


def test_nc_rear_hit_not_at_fault(scorer):
    # a faster follower closes in from behind and overlaps the ego's rear (centre at 180 deg)
    a = B.agent(lambda t: car(5.0 * t - max(3.0, 8.0 - 5.0 * t)), vel=(10.0, 0.0))
    scene = B.make_scene(ego_v=5.0, agents=[a])
    # TTC = 0 is the devkit quirk (vectors README): the box projected 0.9 s ahead meets the follower's
    # future box, whose centre is then "ahead" of the *current* rear axle.
    check(scorer, scene, B.const_velocity(5.0), {"NC": 1.0, "TTC": 0.0})


def test_nc_front_hit_at_fault(scorer):
    # a slower moving lead car: the ego's front edge hits it
    a = B.agent(lambda t: car(12.0 + 2.0 * t), vel=(2.0, 0.0))
    scene = B.make_scene(ego_v=5.0, agents=[a])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.0})


def _lateral_agent():
    # drives alongside the ego (centre 1.5 m ahead of the rear axle) and moves in from the right
    return B.agent(lambda t: car(5.0 * t + 1.5, min(-4.5 + 2.0 * t, -1.8485)), vel=(5.0, 2.0))


def test_nc_lateral_single_lane_not_at_fault(scorer):
    scene = B.make_scene(ego_v=5.0, agents=[_lateral_agent()],
                         drivable=[(B.rect(B.X0, B.X1, -6.0, 5.25), S.DRIVABLE_ROADBLOCK)])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 1.0, "DAC": 1.0})


def test_nc_lateral_multiple_lanes_at_fault(scorer):
    # lane boundary at y = 0: the ego box straddles two on-route lanes
    lanes = [B.lane(-3.5, 0.0, True), B.lane(0.0, 3.5, True)]
    scene = B.make_scene(ego_v=5.0, agents=[_lateral_agent()], lanes=lanes,
                         drivable=[(B.rect(B.X0, B.X1, -6.0, 3.5), S.DRIVABLE_ROADBLOCK)])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.0, "DAC": 1.0})


def test_nc_lateral_off_road_at_fault(scorer):
    # same lateral contact, but the drivable area ends at y = -1.0: a right corner is off road (from t0,
    # so the standing expert is off road too and the filter lifts DAC; NC stays 0)
    scene = B.make_scene(ego_v=5.0, agents=[_lateral_agent()],
                         drivable=[(B.rect(B.X0, B.X1, -1.0, 5.25), S.DRIVABLE_ROADBLOCK)])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.0, "DAC": 1.0})


@pytest.mark.parametrize("y_end,expected", [(-0.5, 1.0), (-0.7, 0.0)])
def test_dac_leaving_the_road(scorer, y_end, expected):
    # the road's right edge is y = -1.75; the box's right side is 1.1485 m right of the pose
    ys = y_end * np.clip(B.KNOT_T / 2.0, 0.0, 1.0)  # full offset from 2 s on
    check(scorer, B.make_scene(ego_v=5.0), B.lateral_profile(5.0, ys), {"DAC": expected})


# ---------------------------------------------------------------------------------------------------
# DDC: the ego drives in a lane that is not on route (on-route lane far away), constant speed v, so the
# largest 1 s window (11 steps of 0.1 s) holds 1.1 * v metres.

def _oncoming_scene(v, intersection=False):
    lanes = [B.lane(-1.75, 1.75, False, forward=False), B.lane(10.0, 13.5, True)]
    drv = [(B.rect(B.X0, B.X1, -1.75, 13.5), S.DRIVABLE_ROADBLOCK)]
    if intersection:
        drv.append((B.rect(-5.0, 40.0, -3.0, 3.0), S.DRIVABLE_INTERSECTION))
    return B.make_scene(ego_v=v, lanes=lanes, drivable=drv, route=[[-60.0, 11.75], [200.0, 11.75]])


@pytest.mark.parametrize("window_m,expected", [(1.9, 1.0), (2.1, 0.5), (5.9, 0.5), (6.1, 0.0)])
def test_ddc_thresholds(scorer, window_m, expected):
    v = window_m / 1.1
    check(scorer, _oncoming_scene(v), B.const_velocity(v), {"DDC": expected, "DAC": 1.0})


def test_ddc_window_axis_pin(scorer):
    # 6.4 m oncoming over 4 s but only 1.76 m in any 1 s window: DDC = 1 (a sum over the whole horizon,
    # the devkit v1 axis bug, would give 0)
    check(scorer, _oncoming_scene(1.6), B.const_velocity(1.6), {"DDC": 1.0})


def test_ddc_batch_axis_pin():
    """Proposals of one scene are independent: one oncoming, one compliant (JAX scorer, N = 2)."""
    _jax_module()
    scene = _oncoming_scene(5.5)
    # the compliant plan creeps (0.2 m/s -> window 0.22 m), the other drives 5.5 m/s (window 6.05 m)
    trajs = np.stack([B.const_velocity(0.2), B.const_velocity(5.5)])
    got = jax_scores(scene, trajs, human_filter=True)
    assert [g["DDC"] for g in got] == [1.0, 0.0], got
    ref = ref_scores(scene, trajs, human_filter=True)
    assert [g["DDC"] for g in ref] == [1.0, 0.0], ref


def test_ddc_intersection_excluded(scorer):
    check(scorer, _oncoming_scene(5.5, intersection=True), B.const_velocity(5.5), {"DDC": 1.0})


# ---------------------------------------------------------------------------------------------------
# LK: box centre more than 0.5 m from the route for 20 consecutive steps -> 0 (heading 0 throughout, so
# the centre's lateral offset is the pose's y).

LK_19 = [0.45, 1.0, 1.0, 1.0, 0.45, 0.0, 0.0, 0.0]   # y > 0.5 at t = 0.6 ... 2.4 s: 19 steps
LK_21 = [0.3, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]     # y > 0.5 at t = 0.7 ... 2.7 s: 21 steps


@pytest.mark.parametrize("ys,expected", [(LK_19, 1.0), (LK_21, 0.0)])
def test_lk_duration(scorer, ys, expected):
    scene = B.make_scene(ego_v=5.0)
    check(scorer, scene, B.lateral_profile(5.0, ys), {"LK": expected, "DAC": 1.0})


@pytest.mark.parametrize("x0,expected", [(6.2, 1.0), (6.7, 0.0)])
def test_lk_through_intersection(scorer, x0, expected):
    # route 0.8 m to the right: every step deviates. The intersection [x0, 17.2] holds the box centre
    # (x = 1.461 + 0.5 k) at steps 10..31 (x0 = 6.2: 10 + 9 = 19 counted steps) or 11..31 (x0 = 6.7:
    # 11 + 9 = 20). Skipped steps do not reset the count.
    drv = B.default_drivable() + [(B.rect(x0, 17.2, -1.75, 5.25), S.DRIVABLE_INTERSECTION)]
    scene = B.make_scene(ego_v=5.0, drivable=drv, route=[[-60.0, -0.8], [200.0, -0.8]],
                         expert=B.lateral_profile(0.0, [-0.8] * 8))  # the expert keeps to the route
    check(scorer, scene, B.const_velocity(5.0), {"LK": expected})


# ---------------------------------------------------------------------------------------------------
# TLC: an on-route connector x in [20, 30]; the ego front is at 4.049 + 4 v at t = 4 s.

def _light_scene(v, red, on_route=True):
    light = dict(polygon=B.rect(20.0, 30.0, -1.75, 1.75), red=red, on_route=on_route)
    return B.make_scene(ego_v=v, lights=[light])


@pytest.mark.parametrize("v,expected", [(3.9, 1.0), (4.0, 0.0)])
def test_tlc_red_entered_or_not(scorer, v, expected):
    check(scorer, _light_scene(v, True), B.const_velocity(v), {"TLC": expected})


def test_tlc_entered_on_green_turns_red(scorer):
    red = [False] * 6 + [True] * 3  # red from t = 3.0 s; the ego (8 m/s) is inside the connector then
    check(scorer, _light_scene(8.0, red), B.const_velocity(8.0), {"TLC": 0.0})


def test_tlc_green_and_off_route_red(scorer):
    check(scorer, _light_scene(8.0, False), B.const_velocity(8.0), {"TLC": 1.0})
    check(scorer, _light_scene(8.0, True, on_route=False), B.const_velocity(8.0), {"TLC": 1.0})


# ---------------------------------------------------------------------------------------------------
# HC: each bound just inside (x 0.98) and just outside (x 1.02). The ego is at rest in the future; the
# history rows (-1.5 ... -0.2 s, the -0.1 s row is not used) and the t0 state carry the excursion.
# Sample layout of the 55-sample comfort sequence: 14 history rows, t0, 40 future states.

N_SEQ = 55


def _sg(x, w, order, deriv=0):
    return savgol_filter(x, window_length=w, polyorder=order, deriv=deriv, delta=0.1)


def _step_profile():
    p = np.zeros(N_SEQ)
    p[:15] = 1.0  # history and t0 at 1, future 0
    return p


def _plateau_profile():
    p = np.zeros(N_SEQ)
    p[3:15] = 1.0
    return p


def _unit_peaks(profile):
    acc = np.round(_sg(profile, 8, 2), 8)
    jerk = np.round(_sg(acc, 15, 2, 1), 8)
    return np.abs(acc).max(), np.abs(jerk).max()


def _hc_scene(ax=None, ay=None, heading=None, future_omega=0.0):
    """ax/ay/heading: arrays over the first 15 samples (14 history rows + t0)."""
    past = np.zeros((15, 7), np.float32)
    z = np.zeros(15)
    ax = z if ax is None else ax
    ay = z if ay is None else ay
    past[:14, 5], past[:14, 6] = ax[:14], ay[:14]
    if heading is not None:
        past[:14, 2] = heading[:14]
    scene = B.make_scene(ego_v=0.0, ego_a=float(ax[14]), ego_ay=float(ay[14]), past=past,
                         expert=B.rotate_in_place(future_omega))
    return scene


@pytest.mark.parametrize("factor,expected", [(0.98, 1.0), (1.02, 0.0)])
@pytest.mark.parametrize("which", ["lon_upper", "lon_lower", "lat", "lon_jerk", "jerk"])
def test_hc_acceleration_and_jerk_bounds(scorer, which, factor, expected):
    if which in ("lon_upper", "lon_lower", "lat"):
        prof = _step_profile()
        peak_acc, _ = _unit_peaks(prof)
        bound = {"lon_upper": 2.40, "lon_lower": -4.05, "lat": 4.89}[which]
        amp = factor * bound / peak_acc
    else:
        prof = _plateau_profile()
        _, peak_jerk = _unit_peaks(prof)
        amp = factor * (4.13 if which == "lon_jerk" else 8.37) / peak_jerk
    series = amp * prof[:15]
    if which in ("lat", "jerk"):
        scene = _hc_scene(ay=series)       # lateral: no effect on the longitudinal terms
    else:
        scene = _hc_scene(ax=series)
    check(scorer, scene, np.zeros((8, 3)), {"HC": expected})


@pytest.mark.parametrize("factor,expected", [(0.98, 1.0), (1.02, 0.0)])
def test_hc_yaw_rate_bound(scorer, factor, expected):
    # heading grows linearly over the whole comfort sequence (history rows placed on the sample grid the
    # comfort filter uses), the future rotates in place: yaw rate = omega at every sample
    omega = factor * 0.95
    heading = omega * 0.1 * (np.arange(15) - 14)
    scene = _hc_scene(heading=heading, future_omega=omega)
    check(scorer, scene, B.rotate_in_place(omega), {"HC": expected})


@pytest.mark.parametrize("factor,expected", [(0.98, 1.0), (1.02, 0.0)])
def test_hc_yaw_acceleration_bound(scorer, factor, expected):
    # a raised-cosine heading bump inside the history (samples 1..13)
    prof = np.zeros(N_SEQ)
    idx = np.arange(1, 14)
    prof[1:14] = 0.5 * (1 - np.cos(2 * np.pi * (idx - 1) / 12))
    peak = np.abs(np.round(_sg(np.unwrap(prof), 5, 3, 2), 8)).max()
    amp = factor * 1.93 / peak
    assert np.abs(_sg(amp * prof, 5, 2, 1)).max() < 0.9  # the yaw rate stays far inside its bound
    scene = _hc_scene(heading=amp * prof[:15])
    check(scorer, scene, np.zeros((8, 3)), {"HC": expected})


# ---------------------------------------------------------------------------------------------------
# EC and the EPDMS denominator.

def test_ec_without_previous_plan(scorer):
    scene = B.make_scene(ego_v=5.0)
    got = check(scorer, scene, B.const_velocity(5.0), {"EC": 1.0})
    assert abs(got["EPDMS"] - epdms_of(got, with_ec=False)) < 1e-4


def test_ec_consistent_previous_plan(scorer):
    # the same constant-velocity motion, planned 0.5 s earlier (in the ego frame at -0.5 s)
    scene = B.make_scene(ego_v=5.0)
    got = check(scorer, scene, B.const_velocity(5.0), {"EC": 1.0}, prev=B.const_velocity(5.0))
    assert abs(got["EPDMS"] - epdms_of(got, with_ec=True)) < 1e-4


def test_ec_inconsistent_previous_plan(scorer):
    # previous plan braked at 3 m/s^2 to a stop; the current plan keeps 5 m/s: acceleration RMS >> 0.7
    t = B.KNOT_T
    s = np.where(t < 5 / 3, 5 * t - 1.5 * t ** 2, 25 / 6)
    prev = np.stack([s, np.zeros(8), np.zeros(8)], -1)
    scene = B.make_scene(ego_v=5.0)
    got = check(scorer, scene, B.const_velocity(5.0), {"EC": 0.0}, prev=prev)
    assert abs(got["EPDMS"] - epdms_of(got, with_ec=True)) < 1e-4
    assert got["EPDMS"] < 0.9  # 2/16 of the weight is lost


# ---------------------------------------------------------------------------------------------------
# EP.

def test_ep_standing_still_on_free_road(scorer):
    # PDM-Closed drives off (N > 5 m); a plan that stays put gets EP = 0 (and still the other terms)
    scene = B.make_scene(ego_v=5.0)
    got = check(scorer, scene, np.zeros((8, 3)), {"EP": 0.0})
    assert abs(got["EPDMS"] - epdms_of(got)) < 1e-4


def test_ep_both_stand_still(scorer):
    # ego at rest, a stopped car right ahead: PDM-Closed cannot move 5 m, so N <= 5 m and EP = 1
    a = B.agent(lambda t: car(9.0))
    scene = B.make_scene(ego_v=0.0, agents=[a])
    check(scorer, scene, np.zeros((8, 3)), {"EP": 1.0, "NC": 1.0})


# ---------------------------------------------------------------------------------------------------
# Human filter and the "score 0 while all sub-scores 1" pin.

def _parked_car_scene(expert):
    return B.make_scene(ego_v=5.0, agents=[B.agent(lambda t: car(15.0))], expert=expert)


def test_human_filter_expert_fails_nc(scorer):
    # the expert also drives into the parked car: the agent's NC (and TTC) 0 are set to 1, product recomputed
    # (test_human_filter_expert_fine shows the same plan scoring NC = 0, EPDMS = 0 unfiltered)
    scene = _parked_car_scene(B.const_velocity(5.0))
    got = check(scorer, scene, B.const_velocity(5.0), {"NC": 1.0, "TTC": 1.0}, human_filter=True)
    # pin: all multiplicative sub-scores shown as 1 -> the score is the recomputed weighted sum, not 0
    assert got["DAC"] == got["DDC"] == got["TLC"] == 1.0
    assert abs(got["EPDMS"] - epdms_of(got)) < 1e-4 and got["EPDMS"] > 0.5, got


def test_human_filter_expert_fine(scorer):
    # the expert stops before the car: nothing is filtered
    t = B.KNOT_T
    s = np.where(t < 2.0, 5 * t - 1.25 * t ** 2, 5.0)
    expert = np.stack([s, np.zeros(8), np.zeros(8)], -1)
    check(scorer, _parked_car_scene(expert), B.const_velocity(5.0), {"NC": 0.0, "EPDMS": 0.0},
          human_filter=True)


def test_human_filter_half_not_filtered(scorer):
    # expert hits a cone too: NC 0.5 is not filtered
    scene = B.make_scene(ego_v=5.0, agents=[B.agent(lambda t: car(15.0, length=0.5, width=0.5),
                                                    kind=S.AGENT_STATIC)])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.5}, human_filter=True)


# ---------------------------------------------------------------------------------------------------
# A few tracked-mode cases (wide margins: the LQR tracks a constant-velocity plan almost exactly).

def test_tracked_stopped_object_and_free_road(scorer):
    scene = B.make_scene(ego_v=5.0, agents=[B.agent(lambda t: car(15.0))])
    check(scorer, scene, B.const_velocity(5.0), {"NC": 0.0}, mode="tracked")
    free = B.make_scene(ego_v=5.0)
    got = check(scorer, free, B.const_velocity(5.0),
                {"NC": 1.0, "DAC": 1.0, "DDC": 1.0, "TLC": 1.0, "TTC": 1.0, "LK": 1.0, "HC": 1.0}, mode="tracked")
    assert abs(got["EPDMS"] - epdms_of(got)) < 1e-4


@pytest.mark.parametrize("v,expected", [(3.0, 1.0), (5.0, 0.0)])
def test_tracked_red_light(scorer, v, expected):
    check(scorer, _light_scene(v, True), B.const_velocity(v), {"TLC": expected}, mode="tracked")


@pytest.mark.parametrize("v,expected", [(1.0, 1.0), (6.0, 0.0)])
def test_tracked_ddc(scorer, v, expected):
    check(scorer, _oncoming_scene(v), B.const_velocity(v), {"DDC": expected}, mode="tracked")


@pytest.mark.parametrize("route_y,expected", [(0.0, 1.0), (-0.8, 0.0)])
def test_tracked_lk(scorer, route_y, expected):
    scene = B.make_scene(ego_v=5.0, route=[[-60.0, route_y], [200.0, route_y]])
    check(scorer, scene, B.const_velocity(5.0), {"LK": expected}, mode="tracked")
