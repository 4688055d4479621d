"""The expert planner on hand-built situations (straight route, one obstacle / light at a time)."""
import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.geometry import EGO_FRONT
from irlvla_jax.world import expert as E
from irlvla_jax.world.paths import Path
from irlvla_jax.world.traffic import pedestrian

T = np.arange(S.T_FUT) * S.DT
P = E.ExpertParams()
ROUTE = Path(np.stack([np.arange(-60.0, 201.0), np.zeros(261)], -1))   # rear axle at s = 60 <-> x = 0
ZERO = lambda s: np.zeros_like(np.asarray(s, float))  # noqa: E731


def _plan(v0, boxes=np.zeros((0, S.T_FUT, 5)), types=(), lights=(), limit=15.0):
    n = len(boxes)
    vel = np.gradient(boxes[..., :2], S.DT, axis=1) if n else np.zeros((0, S.T_FUT, 2))
    return E.plan(ROUTE, 60.0, v0, limit, P, ZERO, boxes, vel, np.ones((n, S.T_FUT), bool),
                  np.array(types, np.int32), list(lights))


def _car(x_of_t, y=0.0):
    b = np.zeros((1, S.T_FUT, 5))
    b[0, :, 0], b[0, :, 1], b[0, :, 3], b[0, :, 4] = x_of_t, y, 4.6, 1.9
    return b


def _gap(ex, boxes):
    """Bumper gap (m) between the expert's front and the obstacle's rear over 4 s."""
    front = ex.pose[S.T_PAST:, 0] + EGO_FRONT
    return boxes[0, :, 0] - 2.3 - front


def test_free_road_reaches_desired_speed_comfortably():
    ex = _plan(5.0)
    v = ex.v[S.T_PAST:]
    assert v[-1] > 8.0 and np.all(np.diff(v) >= -1e-6)
    assert ex.a.max() <= 2.0 + 1e-6 and np.all(np.abs(ex.pose[:, 1]) < 1e-6)


def test_stops_behind_a_stopped_car():
    car = _car(np.full(S.T_FUT, 40.0))
    ex = _plan(12.0, car, [S.AGENT_VEHICLE])
    g = _gap(ex, car)
    assert g.min() > 2.0 and ex.v[-1] < 4.0, (g.min(), ex.v[-1])
    assert np.all(np.diff(ex.v[S.T_PAST:]) <= 1e-6)  # brakes from the start (it knows the car is there)
    assert ex.a.min() > -4.5                      # a comfortable, anticipated stop
    near = _car(np.full(S.T_FUT, 20.0))
    ex = _plan(6.0, near, [S.AGENT_VEHICLE])
    assert ex.v[-1] < 1.0 and 1.5 < _gap(ex, near)[-1] < 6.0


def test_follows_a_hard_braking_lead_without_contact():
    v_l = np.maximum(14.0 - 7.0 * np.clip(T - 0.5, 0, None), 0.0)
    x_l = 25.0 + np.concatenate([[0.0], np.cumsum(0.5 * (v_l[1:] + v_l[:-1]) * S.DT)])
    car = _car(x_l)
    ex = _plan(14.0, car, [S.AGENT_VEHICLE])
    assert _gap(ex, car).min() > 0.5
    assert ex.a.min() < -4.0                      # it does brake hard


def test_ignores_cars_in_the_next_lane_but_not_a_cut_in():
    side = _car(20.0 + 8.0 * T, y=3.5)
    ex_side = _plan(12.0, side, [S.AGENT_VEHICLE])
    ex_free = _plan(12.0)
    np.testing.assert_allclose(ex_side.v, ex_free.v)
    cut = side.copy()
    cut[0, :, 1] = 3.5 * (1 - np.clip((T - 0.5) / 2.0, 0, 1))
    ex_cut = _plan(12.0, cut, [S.AGENT_VEHICLE])
    assert ex_cut.v[-1] < ex_free.v[-1] - 1.0
    assert _gap(ex_cut, cut)[T > 2.5].min() > 0.5


@pytest.mark.parametrize("red_until,must_stop", [(99.0, True), (0.0, False)])
def test_red_light(red_until, must_stop):
    red = np.arange(71) * S.DT < red_until
    light = E.LightOnRoute(s_stop=60.0 + EGO_FRONT + 18.0, s_end=60.0 + EGO_FRONT + 38.0, red=red)
    ex = _plan(8.0, lights=[light])
    front = ex.s[S.T_PAST:] + EGO_FRONT
    if must_stop:
        assert front.max() <= light.s_stop and ex.v[-1] < 1.5, (front.max() - light.s_stop, ex.v[-1])
    else:
        assert front.max() > light.s_stop + 5.0


def test_commits_when_the_light_turns_red_too_late_to_stop():
    red = np.arange(71) * S.DT >= 1.0              # turns red in 1 s, stop line 8 m ahead at 14 m/s
    light = E.LightOnRoute(s_stop=60.0 + EGO_FRONT + 8.0, s_end=60.0 + EGO_FRONT + 28.0, red=red)
    ex = _plan(14.0, lights=[light], limit=15.0)
    assert ex.committed_red and ex.s[-1] + EGO_FRONT > light.s_stop


def test_yields_to_a_crossing_pedestrian():
    ped = pedestrian((30.0, -6.0), np.pi / 2, 1.4, delay=0.0).boxes[None]
    ex = _plan(10.0, ped, [S.AGENT_PEDESTRIAN])
    front = ex.pose[S.T_PAST:, 0] + EGO_FRONT
    on_path = np.abs(ped[0, :, 1]) < 2.5
    assert np.all(front[on_path] < ped[0, on_path, 0] - 0.5)
    assert ex.v[S.T_PAST:].min() < 6.0
