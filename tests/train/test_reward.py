"""Tests of irlvla_jax/train/reward.py (RWM training): the report metrics against scipy, the loss's ranking
term, the inner updates (the candidates: test_rwm_candidates.py)."""
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
