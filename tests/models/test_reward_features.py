"""Tests of irlvla_jax/models/reward_features.py: kinematic features of constant-acceleration and
constant-turn plans, and the scene features of a hand-built scene."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest

from irlvla_jax.models import reward_features as F
from tests.models.conftest import const_accel_plan, micro_scenes


def _ego(vx=0.0, ax=0.0, yaw_rate=0.0):
    """[1, 16, 7] ego past + state with the given current dynamics (heading at -0.1 s set from yaw_rate)."""
    e = np.zeros((1, 16, 7), np.float32)
    e[0, :, 3], e[0, :, 5] = vx, ax
    e[0, 14, 2] = -0.1 * yaw_rate
    return jnp.asarray(e)


def test_kinematic_features_of_constant_acceleration_plan():
    """x = v0 t + a t^2 / 2: segment velocities are v(t_mid) exactly, acceleration a, zero jerk and yaw."""
    traj, t = const_accel_plan(5.0, 1.0)
    k = {n: np.asarray(v)[0, 0] for n, v in F.kinematic_features(jnp.asarray(traj), _ego(5.0, 1.0)).items()}
    np.testing.assert_allclose(k["v_lon"], 5.0 + 1.0 * (t - 0.25), atol=1e-4)
    np.testing.assert_allclose(k["acc_lon"], 1.0, atol=1e-3)
    np.testing.assert_allclose(k["jerk_lon"], 0.0, atol=1e-2)
    for n in ("v_lat", "yaw_rate", "yaw_acc", "acc_lat"):
        np.testing.assert_allclose(k[n], 0.0, atol=1e-5)
    # A plan that brakes hard from the ego's 10 m/s to 5 m/s shows it at the first segment only with ego.
    k_slow = F.kinematic_features(jnp.asarray(traj), _ego(10.0, 0.0))
    assert float(k_slow["acc_lon"][0, 0, 0]) == pytest.approx((5.25 - 10.0) / 0.25, abs=1e-3)
    assert float(k_slow["jerk_lon"][0, 0, 0]) == pytest.approx((5.25 - 10.0) / 0.25 / 0.375, abs=1e-2)
    k_none = F.kinematic_features(jnp.asarray(traj), None)   # no ego: extrapolated, still a
    np.testing.assert_allclose(np.asarray(k_none["acc_lon"])[0, 0], 1.0, atol=1e-3)


def test_kinematic_features_of_constant_turn():
    """Constant speed v on a circle at yaw rate w: yaw_rate = w, acc_lat = chord speed x w, no slip."""
    v, w = 8.0, 0.3
    t = np.arange(1, 9) * 0.5
    R_ = v / w
    traj = np.stack([R_ * np.sin(w * t), R_ * (1 - np.cos(w * t)), w * t], -1)[None, None].astype(np.float32)
    k = {n: np.asarray(x)[0, 0] for n, x in F.kinematic_features(jnp.asarray(traj), _ego(v, 0.0, w)).items()}
    chord = 2 * R_ * np.sin(w * 0.25) / 0.5
    np.testing.assert_allclose(k["yaw_rate"], w, atol=1e-4)
    np.testing.assert_allclose(k["v_lon"], chord, atol=1e-3)
    np.testing.assert_allclose(k["v_lat"], 0.0, atol=1e-3)
    np.testing.assert_allclose(k["acc_lat"], chord * w, atol=1e-3)
    np.testing.assert_allclose(k["yaw_acc"], 0.0, atol=1e-2)
    np.testing.assert_allclose(k["acc_lon"][1:], 0.0, atol=1e-3)


def test_scene_features_hand_built():
    """One square drivable polygon, a route along +x, one agent 20 m ahead moving at 5 m/s like the ego."""
    sc = micro_scenes(1)
    dp = np.zeros_like(sc.drivable_polygons)
    dp[0, 0] = np.array([[-10, -5], [100, -5], [100, 5], [-10, 5]], np.float32)[np.minimum(np.arange(dp.shape[2]), 4) % 4]
    dv = np.zeros_like(sc.drivable_valid); dv[0, 0] = True
    route = np.stack([np.linspace(-10, 100, sc.route.shape[1]), np.zeros(sc.route.shape[1])], -1)[None]
    boxes = np.zeros_like(sc.agent_boxes); boxes[0, 0, :, :] = [20.0 + 1.461, 0, 0, 5.0, 2.0]
    vel = np.zeros_like(sc.agent_velocity); vel[0, 0, :, 0] = 5.0
    av = np.zeros_like(sc.agent_valid); av[0, 0] = True
    sc = sc.replace(drivable_polygons=dp, drivable_valid=dv, route=route.astype(np.float32),
                    route_valid=np.ones_like(sc.route_valid), agent_boxes=boxes, agent_velocity=vel, agent_valid=av)
    t = np.arange(1, 9) * 0.5
    straight = np.stack([5.0 * t, np.zeros(8), np.zeros(8)], -1)             # keeps the 20 m gap
    left = np.stack([5.0 * t, 1.5 * t, np.zeros(8)], -1)                     # drifts off the road (|y| > 5)
    f = np.asarray(jax.jit(F.scene_features)(sc, jnp.asarray(np.stack([straight, left])[None], jnp.float32)))[0]
    names = F.SCENE_FEATURE_NAMES
    col = lambda n: f[..., names.index(n)]  # noqa: E731
    np.testing.assert_allclose(col("corners_off_road")[0], 0.0)
    assert col("corners_off_road")[1, -1] == 0.5 and col("boundary_dist")[1, -1] < 0   # y = 6: 2 corners out
    np.testing.assert_allclose(col("boundary_dist")[0], 1.0)                  # 5 m from the edge, clipped
    np.testing.assert_allclose(col("route_lateral")[0], 0.0, atol=1e-5)
    np.testing.assert_allclose(col("route_lateral")[1], np.minimum(1.5 * t / 2.0, 3.0), atol=1e-4)
    # Gap ahead = 20 m - (5.176 + 5.0) / 2 at every pose (agent and ego at the same speed), / 5.
    np.testing.assert_allclose(col("gap_ahead")[0], (20.0 - (5.176 + 5.0) / 2) / 5.0, atol=1e-4)
    np.testing.assert_allclose(col("gap_any")[0], col("gap_moving")[0])
    np.testing.assert_allclose(col("gap_static")[0], 3.0)                     # no static object: far
    np.testing.assert_allclose(col("route_progress")[0], 5.0 * t / 40.0, atol=1e-4)   # along the route


def test_scene_features_pose_stride_is_a_subset_of_every_pose():
    """Stride 2 / 8 compute exactly the stride-1 features at poses 1, 3, 5, 7 / 7 (same times for the agents'
    constant-velocity positions and the lights' 2 Hz states; stride 4 is the same gather, poses 3, 7: not
    compiled again here); a bad stride names the key. Micro scenes: few polygon buckets to compile."""
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import synthetic
    sc = synthetic.random_scenes(SceneSpec.from_config(synthetic.micro_config().scene), 2, seed=3)
    red = np.zeros_like(sc.light_red); red[:, :, 1::3] = True                 # a light that changes in time
    lp = np.array(sc.light_polygons)
    lp[:, 0] = np.array([[0, -10], [60, -10], [60, 10], [0, 10]], np.float32)[np.minimum(np.arange(lp.shape[2]), 4) % 4]
    sc = sc.replace(light_red=red, light_polygons=lp, light_valid=np.ones_like(sc.light_valid),
                    light_on_route=np.ones_like(sc.light_on_route))
    t = np.arange(1, 9) * 0.5
    traj = np.random.default_rng(0).normal(size=(2, 6, 8, 3)).astype(np.float32) * [2.0, 1.0, 0.1]
    traj[..., 0] += 6.0 * t
    f = jax.jit(F.scene_features, static_argnums=2)
    full = np.asarray(f(sc, jnp.asarray(traj), 1))
    assert full.shape == (2, 6, 8, len(F.SCENE_FEATURE_NAMES)) and full[..., 4].std() > 0   # red varies
    assert F.scene_poses(4) == (3, 7)
    for stride in (2, 8):
        sub = np.asarray(f(sc, jnp.asarray(traj), stride))
        np.testing.assert_allclose(sub, full[:, :, list(F.scene_poses(stride))], atol=1e-5)
    with pytest.raises(ValueError, match="rwm.scene_pose_stride"):
        F.scene_poses(3)


def test_agent_gaps_equal_the_dense_reduction():
    """The agent loop of :func:`agent_gaps` gives what one [B, N, P, A] array of box gaps reduced over the
    agents gives (the formula of its docstring, written out here), masks included."""
    from configs.tiny import get_config
    from irlvla_jax.geometry import EGO_LENGTH, EGO_WIDTH
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import synthetic
    sc = synthetic.random_scenes(SceneSpec.from_config(get_config().scene), 3, seed=5)
    rng = np.random.default_rng(1)
    boxes = np.array(sc.agent_boxes)
    boxes[..., :2] = rng.uniform(-10, 30, boxes.shape[:-1] + (2,))            # agents near the plans
    atype = rng.integers(0, 4, np.shape(sc.agent_type))
    vel = rng.normal(0, 3, np.shape(sc.agent_velocity)).astype(np.float32)
    vel[:, :2] = 0.0                                                            # two parked agents per scene
    sc = sc.replace(agent_boxes=boxes, agent_type=atype, agent_velocity=vel)
    poses = (1, 3, 5, 7)
    ctr = jnp.asarray(rng.uniform(-5, 25, (3, 6, 4, 2)), jnp.float32)
    h = jnp.asarray(rng.normal(0, 0.5, (3, 6, 4)), jnp.float32)
    got = np.stack(jax.jit(F.agent_gaps, static_argnums=3)(sc, ctr, h, poses), -1)
    box0, vel0 = np.asarray(sc.agent_boxes)[:, :, 0], np.asarray(sc.agent_velocity)[:, :, 0]
    aval = np.asarray(sc.agent_valid)[:, :, 0]
    static = atype == 3
    moving = aval & ~static & (np.linalg.norm(vel0, axis=-1) > 0.05)
    t = (np.asarray(poses) + 1.0) * 0.5
    rel = box0[:, None, None, :, :2] + vel0[:, None, None] * t[None, None, :, None, None] - np.asarray(ctr)[:, :, :, None]
    c, s = np.cos(np.asarray(h))[..., None], np.sin(np.asarray(h))[..., None]
    dx, dy = rel[..., 0] * c + rel[..., 1] * s, -rel[..., 0] * s + rel[..., 1] * c
    dh = box0[:, None, None, :, 2] - np.asarray(h)[..., None]
    ex = 0.5 * box0[:, None, None, :, 3] * np.abs(np.cos(dh)) + 0.5 * box0[:, None, None, :, 4] * np.abs(np.sin(dh))
    ey = 0.5 * box0[:, None, None, :, 3] * np.abs(np.sin(dh)) + 0.5 * box0[:, None, None, :, 4] * np.abs(np.cos(dh))
    gap = np.maximum(np.abs(dx) - 0.5 * EGO_LENGTH - ex, np.abs(dy) - 0.5 * EGO_WIDTH - ey)
    ahead = (dx > 0) & (np.abs(dy) < np.tan(np.pi / 6) * dx)
    av = aval[:, None, None]
    want = np.stack([np.clip(np.min(np.where(m, gap, 15.0), -1) / 5.0, -1, 3) for m in
                     (av, av & moving[:, None, None], av & ahead, av & static[:, None, None])], -1)
    assert got.shape == (3, 6, 4, 4) and (want < 3.0).all(-1).any() and (want[..., 3] < 3.0).any()
    np.testing.assert_allclose(got, want, atol=2e-5)


@pytest.mark.parametrize("count", [0, 1, 3, 9, 16])
def test_valid_polygons_equals_all_polygons(count):
    """Compacting to the batch's valid polygons (any bucket) gives what the test over every padded polygon
    gives: invalid polygons are masked out either way."""
    rng = np.random.default_rng(count)
    poly = jnp.asarray(rng.normal(size=(3, 16, 5, 2)) * 4.0, jnp.float32)
    valid = np.zeros((3, 16), bool)
    valid[0, rng.permutation(16)[:count]] = True
    valid[1, rng.permutation(16)[:max(count - 1, 0)]] = True
    pts = jnp.asarray(rng.normal(size=(3, 1, 40, 2)) * 4.0, jnp.float32)
    red = jnp.asarray(rng.random((3, 16)) < 0.5)
    from irlvla_jax import geometry as G
    fn = lambda p, v, r: jnp.any(G.points_in_polygon(pts, p) & (v & r)[..., None], 1)  # noqa: E731
    got = np.asarray(jax.jit(lambda p, v, r: F.valid_polygons(p, v, fn, r))(poly, jnp.asarray(valid), red))
    want = np.asarray(fn(poly, jnp.asarray(valid), red))
    np.testing.assert_array_equal(got, want)
    assert want.any() == (count >= 3)               # the check is not vacuous where polygons are valid
    assert F.polygon_buckets(16) == (2, 4, 8, 12, 16) and F.polygon_buckets(32) == (4, 8, 16, 24, 32)
