"""Reward World Model (irlvla_jax/models/reward_model.py): shapes, reward formula, losses, errors."""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import pytest
from flax import nnx

from irlvla_jax.models import reward_model as R

CFG = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2))
SIZES = dict(meta=3, bev=5, map=4, obj=6, cmd=1)


def _tokens(b, dt=12, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), len(SIZES))
    return {k: jax.random.normal(kk, (b, n, dt)) for kk, (k, n) in zip(keys, SIZES.items())}


@pytest.fixture(scope="module")
def model():
    return R.RewardWorldModel(CFG, 12, rngs=nnx.Rngs(0))


def test_output_shapes_and_ranges(model):
    out = model(_tokens(2), jax.random.normal(jax.random.PRNGKey(1), (2, 5, 8, 3)))
    assert out.ternary_logits["NC"].shape == (2, 5, 3) and out.ternary_logits["DDC"].shape == (2, 5, 3)
    assert set(out.binary_logits) == {"DAC", "TLC", "TTC", "LK", "HC", "EC"}
    assert all(v.shape == (2, 5) for v in out.binary_logits.values()) and out.ep.shape == (2, 5)
    e = R.expectations(out)
    assert set(e) == set(R.SUB_SCORES)
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
    epdms = R.epdms_formula(labels, use_ec=False)
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
    labels = {k: np.ones_like(true2) for k in R.SUB_SCORES}
    rep = RW.report({k: np.full_like(true2, 0.5) for k in R.SUB_SCORES}, pred2, labels, true2,
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
