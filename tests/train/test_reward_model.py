"""Reward World Model (irlvla_jax/models/reward_model.py): shapes, reward formula, losses, errors."""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import pytest
from flax import nnx

from irlvla_jax.models import reward_features as F
from irlvla_jax.models import reward_model as R
from irlvla_jax.scoring.epdms import SUB_SCORES, epdms_formula

CFG = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, kinematic_features=False,
                                    ego_features=False, scene_features=False))
SIZES = dict(meta=3, bev=5, map=4, obj=6, cmd=1)


def _tokens(b, dt=12, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(SIZES))
    return {k: jax.random.normal(kk, (b, n, dt)) for kk, (k, n) in zip(keys, SIZES.items())}


@pytest.fixture(scope="module", params=R.ARCHS)
def model(request):
    cfg = ml_collections.ConfigDict(dict(CFG, arch=request.param))
    m = R.build(cfg, 12, rngs=nnx.Rngs(0))
    assert isinstance(m, R.LightRewardWorldModel if request.param == "light" else R.RewardWorldModel)
    return m


def test_output_shapes_and_ranges(model):
    out = model(_tokens(2), jax.random.normal(jax.random.PRNGKey(1), (2, 5, 8, 3)))
    assert out.ternary_logits["NC"].shape == (2, 5, 3) and out.ternary_logits["DDC"].shape == (2, 5, 3)
    assert set(out.binary_logits) == {"DAC", "TLC", "TTC", "LK", "HC", "EC"}
    assert all(v.shape == (2, 5) for v in out.binary_logits.values()) and out.ep.shape == (2, 5)
    e = R.expectations(out)
    assert set(e) == set(SUB_SCORES)
    for v in e.values():
        assert v.shape == (2, 5) and float(v.min()) >= 0.0 and float(v.max()) <= 1.0
    r = R.predicted_reward(out, use_ec=False)
    assert r.shape == (2, 5) and bool(jnp.all((r >= 0) & (r <= 1)))


def test_candidates_are_scored_independently(model):
    """Permuting candidates permutes predictions (no leakage across the N axis)."""
    tok = _tokens(1)
    traj = jax.random.normal(jax.random.PRNGKey(2), (1, 4, 8, 3)) * 3.0
    r = R.predicted_reward(model(tok, traj), False)
    r_perm = R.predicted_reward(model(tok, traj[:, ::-1]), False)
    np.testing.assert_allclose(r_perm, r[:, ::-1], rtol=1e-5, atol=1e-6)
    r_one = R.predicted_reward(model(tok, traj[:, 2:3]), False)
    np.testing.assert_allclose(r_one[0, 0], r[0, 2], rtol=1e-5, atol=1e-6)


def _out_from_probs(nc, ddc, binp, ep):
    """RWMOutput whose softmax/sigmoid give exactly the hand-set probabilities."""
    tern = {"NC": jnp.log(jnp.asarray(nc))[None, None], "DDC": jnp.log(jnp.asarray(ddc))[None, None]}
    binl = {k: jnp.log(p / (1 - p)) * jnp.ones((1, 1)) for k, p in binp.items()}
    return R.RWMOutput(ternary_logits=tern, binary_logits=binl, ep=jnp.full((1, 1), ep))


def test_reward_is_epdms_formula_on_expectations():
    nc, ddc = [0.1, 0.2, 0.7], [0.0 + 1e-9, 0.4, 0.6 - 1e-9]
    binp = dict(DAC=0.9, TLC=0.8, TTC=0.6, LK=0.7, HC=0.95, EC=0.5)
    out = _out_from_probs(nc, ddc, binp, 0.55)
    e_nc = 0.2 * 0.5 + 0.7          # 0.8
    e_ddc = 0.4 * 0.5 + 0.6         # 0.8
    prod = e_nc * 0.9 * e_ddc * 0.8
    want14 = prod * (5 * 0.55 + 5 * 0.6 + 2 * 0.7 + 2 * 0.95) / 14
    want16 = prod * (5 * 0.55 + 5 * 0.6 + 2 * 0.7 + 2 * 0.95 + 2 * 0.5) / 16
    np.testing.assert_allclose(R.predicted_reward(out, use_ec=False)[0, 0], want14, rtol=1e-5)
    np.testing.assert_allclose(R.predicted_reward(out, use_ec=True)[0, 0], want16, rtol=1e-5)
    # With certain predictions the reward equals EPDMS of those sub-scores exactly.
    sure = _out_from_probs([1e-12, 1.0, 1e-12], [1e-12, 1e-12, 1.0],
                           {k: 1 - 1e-7 for k in binp} | {"TTC": 1e-7}, 0.5)
    np.testing.assert_allclose(R.predicted_reward(sure, False)[0, 0], 0.5 * (2.5 + 0 + 2 + 2) / 14, rtol=1e-4)


def test_losses_decrease_when_fitting_labels(model):
    import optax
    tok = _tokens(2, seed=3)
    traj = jax.random.normal(jax.random.PRNGKey(4), (2, 6, 8, 3)) * 5.0
    rng = np.random.default_rng(0)
    labels = {k: jnp.asarray(rng.integers(0, 3, (2, 6)) / 2.0, jnp.float32) for k in R.TERNARY}
    labels |= {k: jnp.asarray(rng.integers(0, 2, (2, 6)), jnp.float32) for k in R.BINARY}
    labels["EP"] = jnp.asarray(rng.uniform(0, 1, (2, 6)), jnp.float32)
    epdms = epdms_formula(labels, False)
    gd, state = nnx.split(model)
    tx = optax.adam(1e-2)
    opt = tx.init(state)

    @jax.jit
    def step(state, opt):
        def lf(s):
            return R.rwm_losses(nnx.merge(gd, s)(tok, traj), labels, epdms, use_ec=False)["total"]
        l, g = jax.value_and_grad(lf)(state)
        u, opt = tx.update(g, opt, state)
        return optax.apply_updates(state, u), opt, l

    losses = []
    for _ in range(30):
        state, opt, l = step(state, opt)
        losses.append(float(l))
    assert losses[-1] < 0.5 * losses[0], losses
    assert R.ternary_index(jnp.array([0.0, 0.5, 1.0])).tolist() == [0, 1, 2]


def test_bad_inputs_raise_clear_errors(model):
    with pytest.raises(ValueError, match=r"\[B, N, 8, 3\]"):
        model(_tokens(1), jnp.zeros((1, 8, 3)))
    tok = _tokens(1)
    del tok["bev"]
    with pytest.raises(ValueError, match="lack field 'bev'"):
        model(tok, jnp.zeros((1, 2, 8, 3)))


def test_report_metrics_against_scipy():
    from scipy.stats import spearmanr
    from irlvla_jax.train import reward as RW
    # AUROC: perfect, reversed, and a hand-counted case with a tie.
    assert RW.auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert RW.auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    # pos {0.5, 0.7}, neg {0.5, 0.1}: pairs (0.5>0.5 tie=.5, 0.5>0.1, 0.7>0.5, 0.7>0.1) -> 3.5/4
    assert RW.auroc(np.array([0.5, 0.7, 0.5, 0.1]), np.array([1, 1, 0, 0])) == pytest.approx(0.875)
    assert np.isnan(RW.auroc(np.array([0.3, 0.4]), np.array([1, 1])))
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(5, 12))
    true = np.round(pred + rng.normal(size=(5, 12)), 1)
    true[:, :3] = true[:, 3:4]  # ties
    rho = RW.within_scene_spearman(pred, true)
    want = [spearmanr(p, t).statistic for p, t in zip(pred, true)]
    np.testing.assert_allclose(rho, want, atol=1e-9)
    assert np.isnan(RW.within_scene_spearman(pred[:1], np.ones((1, 12))))[0]
    # Regret: RWM picks the true best in scene 0, a 0.5 candidate in scene 1 (best 1.0).
    true2 = np.array([[0.2, 0.9, 0.5], [1.0, 0.5, 0.0]])
    pred2 = np.array([[0.1, 0.8, 0.3], [0.2, 0.9, 0.1]])
    labels = {k: np.ones_like(true2) for k in SUB_SCORES}
    rep = RW.report({k: np.full_like(true2, 0.5) for k in SUB_SCORES}, pred2, labels, true2,
                    np.array([0, 0, 1]), use_ec=False)
    assert rep["regret"] == pytest.approx(0.25) and rep["epdms_rwm_top"] == pytest.approx(0.7)
    assert rep["regret_policy_chains"] == pytest.approx(0.25)
    assert rep["spearman_within_scene"] == pytest.approx(np.mean([1.0, 0.5]))


def test_expert_perturbations_are_valid_and_varied():
    from irlvla_jax.train.reward import perturb_expert
    t = np.arange(1, 9, dtype=np.float32) * 0.5
    expert = np.stack([8.0 * t, np.zeros(8), np.zeros(8)], -1)[None].astype(np.float32)  # 8 m/s straight
    p = np.asarray(perturb_expert(jnp.asarray(expert), jax.random.PRNGKey(0), 64))
    assert p.shape == (1, 64, 8, 3) and np.all(np.isfinite(p))
    end = p[0, :, -1]
    assert end[:, 0].std() > 1.0 and end[:, 1].std() > 0.5       # speed and lateral variation
    assert np.any(np.all(np.abs(p[0] - expert[0]) < 1e-5, axis=(-2, -1)))  # some copies untouched
    # At 0.5 s: lateral ramp <= 3.5 m / 8 plus rotation <= 0.25 rad of x <= 1.5 x 4 m -> |y| < 1.93 m.
    assert np.all(np.abs(p[0, :, 0, 1]) < 0.4375 + 6.0 * np.sin(0.25) + 1e-4)
    assert np.all(np.abs(p[0, :, :, 2]) < 0.25 + 3.5 * 0.25 / 8.0 + 1e-4)      # heading change bounded


def _const_accel_plan(v0=5.0, a=1.0):
    t = np.arange(1, 9, dtype=np.float64) * 0.5
    x = v0 * t + 0.5 * a * t ** 2
    return np.stack([x, np.zeros(8), np.zeros(8)], -1)[None, None].astype(np.float32), t


def _ego(vx=0.0, ax=0.0, yaw_rate=0.0):
    """[1, 16, 7] ego past + state with the given current dynamics (heading at -0.1 s set from yaw_rate)."""
    e = np.zeros((1, 16, 7), np.float32)
    e[0, :, 3], e[0, :, 5] = vx, ax
    e[0, 14, 2] = -0.1 * yaw_rate
    return jnp.asarray(e)


def test_kinematic_features_of_constant_acceleration_plan():
    """x = v0 t + a t^2 / 2: segment velocities are v(t_mid) exactly, acceleration a, zero jerk and yaw."""
    traj, t = _const_accel_plan(5.0, 1.0)
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


def _scenes(b=1, vx=0.0, ax=0.0):
    from irlvla_jax.scene import SceneSpec, empty_scene, stack
    from configs.tiny import get_config
    sc = empty_scene(SceneSpec.from_config(get_config().scene))
    sc = sc.replace(ego_state=np.array([0, 0, 0, vx, 0, ax, 0], np.float32),
                    ego_past=np.tile(np.array([0, 0, 0, vx, 0, ax, 0], np.float32), (15, 1)))
    return stack([sc] * b)


@pytest.mark.parametrize("arch", R.ARCHS)
def test_ego_and_scene_pathways_and_errors(arch):
    cfg = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, arch=arch,
                                         kinematic_features=True, ego_features=True, scene_features=True))
    m = R.build(cfg, 12, rngs=nnx.Rngs(0))
    traj, _ = _const_accel_plan()
    traj = jnp.asarray(np.repeat(traj, 3, axis=1))
    with pytest.raises(ValueError, match="scenes="):
        m(_tokens(1), traj)
    with pytest.raises(ValueError, match="batch 2"):
        m(_tokens(1), traj, scenes=_scenes(2))
    gd, st = nnx.split(m)
    fwd = jax.jit(lambda tok, sc: R.predicted_reward(nnx.merge(gd, st)(tok, traj, scenes=sc), False))
    r_slow, r_fast = fwd(_tokens(1), _scenes(1, 5.0)), fwd(_tokens(1), _scenes(1, 15.0, 2.0))
    assert r_slow.shape == (1, 3) and float(jnp.max(jnp.abs(r_slow - r_fast))) > 1e-6   # the ego state is used
    np.testing.assert_allclose(np.asarray(F.ego_inputs(_scenes(2, 7.0)))[:, :, 3], 7.0)


def test_scene_features_hand_built():
    """One square drivable polygon, a route along +x, one agent 20 m ahead moving at 5 m/s like the ego."""
    sc = _scenes(1)
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


def test_pairwise_rank_loss():
    true = jnp.array([[0.9, 0.5, 0.1, 0.5]])
    good = R.pairwise_rank_loss(jnp.array([[0.8, 0.4, 0.0, 0.4]]), true)
    bad = R.pairwise_rank_loss(jnp.array([[0.0, 0.4, 0.8, 0.4]]), true)
    assert float(good) < float(bad)
    # Hand value: pairs (0,1) gap .4, (0,2) .8, (0,3) .4, (1,2) .4, (3,2) .4; all pred gaps equal the true ones.
    gaps = np.array([0.4, 0.8, 0.4, 0.4, 0.4])
    want = np.sum(gaps * np.log1p(np.exp(-10 * gaps))) / gaps.sum()
    np.testing.assert_allclose(float(good), want, rtol=1e-5)
    # Ties (the two 0.5s) never form a pair; constant labels give 0.
    assert float(R.pairwise_rank_loss(jnp.zeros((1, 4)), jnp.full((1, 4), 0.7))) == 0.0


def test_smooth_noise_factor():
    from irlvla_jax.train.ppo_core import noise_factor   # the one smooth factor (RWM candidates and PPO)
    L = noise_factor("smooth", 8)
    assert L.shape == (8, 8) and np.allclose(np.triu(L, 1), 0.0)
    np.testing.assert_allclose(np.sqrt(np.mean(np.sum(L * L, 1))), 1.0, rtol=1e-5)   # RMS pose std = std
    # Second differences of L z are the (scaled) i.i.d. kicks: smooth, unlike white noise.
    z = np.random.default_rng(0).normal(size=(8, 2000))
    d2 = np.diff(np.concatenate([np.zeros((2, 2000)), L @ z]), 2, axis=0)
    np.testing.assert_allclose(d2.std(), L[0, 0], rtol=0.05)


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="config.rwm.arch must be one of"):
        R.build(ml_collections.ConfigDict(dict(CFG, arch="mlp")), 12, rngs=nnx.Rngs(0))


def test_light_rwm_is_cheaper_per_trajectory():
    """The light head's per-trajectory multiply-adds (XLA cost analysis, features off) are < 1/4 of the
    transformer RWM's at the same width."""
    cfg = ml_collections.ConfigDict(dict(d_model=64, num_layers=2, num_heads=4, ff_mult=2, kinematic_features=False,
                                         ego_features=False, scene_features=False))
    tok, traj = _tokens(2, 64), jnp.zeros((2, 64, 8, 3))

    def flops(arch):
        gd, st = nnx.split(R.build(ml_collections.ConfigDict(dict(cfg, arch=arch)), 64, rngs=nnx.Rngs(0)))
        f = jax.jit(lambda st, tok, tr: R.predicted_reward(nnx.merge(gd, st)(tok, tr), False))
        return f.lower(st, tok, traj).compile().cost_analysis()["flops"]
    assert flops("light") < 0.25 * flops("transformer")


def test_ppo_candidates_follow_the_ppo_rollout_distribution():
    """rwm.ppo_samples: samples of all K chains drawn as the PPO rollout draws them; their source id (5)
    and count match candidate_sources, and the exploration noise moves them by about sigma."""
    from irlvla_jax.models import planner as planner_lib, vla
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import reward as RW
    from irlvla_jax.train.ppo_core import noise_factor
    from irlvla_jax.train.synthetic import micro_config, random_anchors, random_scenes
    cfg = micro_config()
    spec = SceneSpec.from_config(cfg.scene)
    K = int(cfg.data.num_anchors)
    gd, params, consts = vla.build(cfg.model, spec, random_anchors(K))
    model = nnx.merge(gd, params, consts)
    scenes = random_scenes(spec, 2, seed=1)
    tok = model.encode(scenes)
    sched = planner_lib.make_schedule(cfg.model.planner)
    L = noise_factor("smooth")
    key = jax.random.PRNGKey(3)
    x0 = RW.ppo_samples(model.planner, tok, key, 2, 0.0, L, sched)
    x1 = RW.ppo_samples(model.planner, tok, key, 2, 0.05, L, sched)
    assert x0.shape == (2, 2 * K, 8, 3)
    rms = float(jnp.sqrt(jnp.mean((planner_lib.normalise(x1, sched) - planner_lib.normalise(x0, sched)) ** 2)))
    assert 0.025 < rms < 0.15, rms
    with cfg.unlocked():
        cfg.rwm.ppo_samples = 2
    cands, src = RW.make_candidates(model, tok, scenes, key, cfg.rwm, sched, (0.05, L))
    np.testing.assert_array_equal(src, RW.candidate_sources(cfg))
    assert cands.shape[1] == len(src) and int(np.sum(src == 5)) == 2 * K
