"""Tests of irlvla_jax/train/reward.py (RWM training): the report metrics against scipy, the expert
perturbations, and the PPO-distributed candidates with their candidate_sources."""
import numpy as np
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from irlvla_jax.scoring.epdms import SUB_SCORES


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
    tok = jax.jit(lambda s: model.encode(s))(scenes)          # jitted: one compile, not op-by-op dispatch
    sched = planner_lib.make_schedule(cfg.model.planner)
    L = noise_factor("smooth")
    key = jax.random.PRNGKey(3)
    draw = jax.jit(lambda t, k, sigma: RW.ppo_samples(model.planner, t, k, 2, sigma, L, sched))
    x0, x1 = draw(tok, key, 0.0), draw(tok, key, 0.05)
    assert x0.shape == (2, 2 * K, 8, 3)
    rms = float(jnp.sqrt(jnp.mean((planner_lib.normalise(x1, sched) - planner_lib.normalise(x0, sched)) ** 2)))
    assert 0.025 < rms < 0.15, rms
    with cfg.unlocked():
        cfg.rwm.ppo_samples = 2
        cfg.rwm.warped_chains = 3
    cands, src = jax.jit(lambda t, s, k: RW.make_candidates(model, t, s, k, cfg.rwm, sched, (0.05, L)))(
        tok, scenes, key)
    np.testing.assert_array_equal(src, RW.candidate_sources(cfg))
    assert cands.shape[1] == len(src) and int(np.sum(src == 5)) == 2 * K and int(np.sum(src == 6)) == 3
    # Warped chains: policy chains replayed at another pace, so each ends on the path of one policy chain.
    pol, warped = np.asarray(cands[:, src == 0]), np.asarray(cands[:, src == 6])
    assert not np.allclose(warped[:, :, -1, :2], 0.0)
    for b in range(2):
        for w in warped[b]:
            path = np.concatenate([np.zeros((pol.shape[1], 1, 2)), pol[b, :, :, :2]], 1)   # [K, 9, 2]
            seg = path[:, 1:] - path[:, :-1]                                           # distance to each segment
            t = np.clip(np.sum((w[2, :2] - path[:, :-1]) * seg, -1) / np.maximum(np.sum(seg * seg, -1), 1e-9), 0, 1)
            d = np.linalg.norm(path[:, :-1] + t[..., None] * seg - w[2, :2], axis=-1)
            assert d.min() < 1e-3, d.min()


def test_time_warp_replays_a_plan_at_another_pace():
    from irlvla_jax.train.reward import time_warp
    t = np.arange(1, 9, dtype=np.float32) * 0.5
    plan = np.stack([8.0 * t + t ** 2, 0.5 * t ** 2, 0.1 * t], -1)[None].astype(np.float32)   # [1, 8, 3]
    w = np.asarray(time_warp(jnp.asarray(plan), jnp.asarray([[1.0, 0.5, 1.25]])))
    assert w.shape == (1, 3, 8, 3)
    np.testing.assert_allclose(w[0, 0], plan[0], atol=1e-6)                  # pace 1: the plan itself
    np.testing.assert_allclose(w[0, 1, 1], plan[0, 0], atol=1e-6)            # half pace: 1 s -> the 0.5 s pose
    np.testing.assert_allclose(w[0, 1, 0], 0.5 * plan[0, 0], atol=1e-6)      # halfway from the origin
    np.testing.assert_allclose(w[0, 2, 3], plan[0, 4], atol=1e-6)            # 1.25 x 2 s = 2.5 s
    assert w[0, 2, -1, 0] > plan[0, -1, 0]                                   # extrapolated past 4 s


def test_loss_adds_the_weighted_ranking_term():
    """reward.loss (the stage-2 objective): the RWM on candidates against scorer labels; the config's
    rank_weight adds exactly rank_weight x the within-scene ranking loss to the total."""
    import ml_collections
    from irlvla_jax.models import reward_model as R
    from irlvla_jax.train import reward as RW
    cfg = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, arch="light",
                                         kinematic_features=False, ego_features=False, scene_features=False, scene_pose_stride=1))
    model = R.build(cfg, 12, rngs=nnx.Rngs(0))
    tok = {k: jax.random.normal(jax.random.PRNGKey(i), (2, n, 12))
           for i, (k, n) in enumerate((("meta", 2), ("bev", 4), ("map", 3), ("obj", 3), ("cmd", 1)))}
    traj = jax.random.normal(jax.random.PRNGKey(9), (2, 5, 8, 3)) * 5.0
    rng = np.random.default_rng(0)
    labels = {k: jnp.asarray(rng.integers(0, 3, (2, 5)) / 2.0, jnp.float32) for k in R.TERNARY}
    labels |= {k: jnp.asarray(rng.integers(0, 2, (2, 5)), jnp.float32) for k in R.BINARY}
    labels["EP"] = jnp.asarray(rng.uniform(0, 1, (2, 5)), jnp.float32)
    epdms = jnp.asarray(rng.uniform(0, 1, (2, 5)), jnp.float32)
    rc = ml_collections.ConfigDict(dict(use_ec=False, epdms_weight=2.0, rank_weight=0.0, rank_scale=10.0))
    rc1 = ml_collections.ConfigDict(dict(rc.to_dict(), rank_weight=1.5))
    pair = jnp.ones((5, 5))
    gd, st = nnx.split(model)

    @jax.jit          # both losses in one call (dispatched op by op, the RWM compiles a hundred small kernels)
    def losses(st, tok, traj, labels, epdms, pair):
        m = nnx.merge(gd, st)
        return tuple(RW.loss(m, tok, traj, None, labels, epdms, c, pair) for c in (rc, rc1))
    (total0, (terms0, out)), (total1, (terms1, _)) = losses(st, tok, traj, labels, epdms, pair)
    assert set(SUB_SCORES) - {"EC"} <= set(terms0) and float(total0) == pytest.approx(float(terms0["total"]))
    np.testing.assert_allclose(float(total1) - float(total0), 1.5 * float(terms1["rank"]), rtol=1e-5)
    assert out.ep.shape == (2, 5)


def test_inner_updates_equal_that_many_sequential_steps():
    """rwm.inner_steps: ``reward.inner_updates`` applies num optimizer steps to one batch's loss, exactly the
    sequential steps recomputed by hand (a quadratic loss, Adam), with the per-step terms and gradient norms."""
    import optax
    from irlvla_jax.train.reward import inner_updates
    target = jnp.asarray([1.0, -2.0, 0.5])

    def loss_fn(p):
        l = jnp.sum((p["w"] - target) ** 2)
        return l, ({"total": l}, p["w"])
    tx = optax.adam(0.1)
    p0 = {"w": jnp.zeros(3)}
    (p, opt), (terms, out, gnorm) = jax.jit(lambda p, o: inner_updates(loss_fn, tx, p, o, 3))(p0, tx.init(p0))
    q, o = p0, tx.init(p0)
    norms = []
    for _ in range(3):
        g = jax.grad(lambda x: loss_fn(x)[0])(q)
        norms.append(float(optax.global_norm(g)))
        u, o = tx.update(g, o, q)
        q = optax.apply_updates(q, u)
    np.testing.assert_allclose(np.asarray(p["w"]), np.asarray(q["w"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(gnorm), norms, rtol=1e-6)
    assert terms["total"].shape == (3,) and float(terms["total"][-1]) < float(terms["total"][0])
    np.testing.assert_allclose(np.asarray(out[0]), 0.0)                   # outputs before the first step
    assert int(opt[0].count) == 3
