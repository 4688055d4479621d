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
