"""Tests of irlvla_jax/models/reward_model.py (the Reward World Model): output shapes, candidates scored
independently, the reward as the EPDMS formula on expectations, losses, the pairwise rank loss, the
architectures and the ego / scene pathways, and clear errors."""
import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import pytest
from flax import nnx

from irlvla_jax.models import reward_features as F
from irlvla_jax.models import reward_model as R
from irlvla_jax.scoring.epdms import SUB_SCORES, epdms_formula
from tests.models.conftest import const_accel_plan, micro_scenes

CFG = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, kinematic_features=False,
                                    ego_features=False, scene_features=False, scene_pose_stride=1))
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


def _jitted(model, fn):
    """``fn(model, *args)`` as one jitted function of ``*args`` (the model's state passed in): dispatched op by
    op, the transformer RWM compiles hundreds of small kernels per input shape."""
    gd, st = nnx.split(model)
    f = jax.jit(lambda st, *args: fn(nnx.merge(gd, st), *args))
    return lambda *args: f(st, *args)


def test_output_shapes_and_ranges(model):
    out = _jitted(model, lambda m, tok, traj: m(tok, traj))(_tokens(2), jax.random.normal(jax.random.PRNGKey(1),
                                                                                        (2, 5, 8, 3)))
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

    def rewards(m, tok, traj):
        reward = lambda t: R.predicted_reward(m(tok, t), False)  # noqa: E731
        return reward(traj), reward(traj[:, ::-1]), reward(traj[:, 2:3])
    r, r_perm, r_one = _jitted(model, rewards)(tok, traj)
    np.testing.assert_allclose(r_perm, r[:, ::-1], rtol=1e-5, atol=1e-6)
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


@pytest.mark.parametrize("arch", R.ARCHS)
def test_ego_and_scene_pathways_and_errors(arch):
    cfg = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, arch=arch,
                                         kinematic_features=True, ego_features=True, scene_features=True, scene_pose_stride=1))
    m = R.build(cfg, 12, rngs=nnx.Rngs(0))
    traj, _ = const_accel_plan()
    traj = jnp.asarray(np.repeat(traj, 3, axis=1))
    with pytest.raises(ValueError, match="scenes="):
        m(_tokens(1), traj)
    with pytest.raises(ValueError, match="batch 2"):
        m(_tokens(1), traj, scenes=micro_scenes(2))
    gd, st = nnx.split(m)
    fwd = jax.jit(lambda tok, sc: R.predicted_reward(nnx.merge(gd, st)(tok, traj, scenes=sc), False))
    r_slow, r_fast = fwd(_tokens(1), micro_scenes(1, 5.0)), fwd(_tokens(1), micro_scenes(1, 15.0, 2.0))
    assert r_slow.shape == (1, 3) and float(jnp.max(jnp.abs(r_slow - r_fast))) > 1e-6   # the ego state is used
    np.testing.assert_allclose(np.asarray(F.ego_inputs(micro_scenes(2, 7.0)))[:, :, 3], 7.0)


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


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="config.rwm.arch must be one of"):
        R.build(ml_collections.ConfigDict(dict(CFG, arch="mlp")), 12, rngs=nnx.Rngs(0))


def test_light_rwm_is_cheaper_per_trajectory():
    """The light head's per-trajectory multiply-adds (XLA cost analysis, features off) are < 1/4 of the
    transformer RWM's at the same width."""
    cfg = ml_collections.ConfigDict(dict(d_model=64, num_layers=2, num_heads=4, ff_mult=2, kinematic_features=False,
                                         ego_features=False, scene_features=False, scene_pose_stride=1))
    tok, traj = _tokens(2, 64), jnp.zeros((2, 64, 8, 3))

    def flops(arch):
        gd, st = nnx.split(R.build(ml_collections.ConfigDict(dict(cfg, arch=arch)), 64, rngs=nnx.Rngs(0)))
        f = jax.jit(lambda st, tok, tr: R.predicted_reward(nnx.merge(gd, st)(tok, tr), False))
        return f.lower(st, tok, traj).compile().cost_analysis()["flops"]
    assert flops("light") < 0.25 * flops("transformer")


def test_scene_pose_stride_config_and_checkpoint_shape():
    """rwm.scene_pose_stride is checked with the config (one line naming the key), and it sets the light
    RWM's input width: stride 2 feeds 4 poses of geometry (40 fewer inputs than stride 1)."""
    from irlvla_jax import config as C
    from configs import tiny
    c = tiny.get_config()
    c.rwm.scene_pose_stride = 3
    with pytest.raises(ValueError, match=r"config.rwm.scene_pose_stride: must be one of \(1, 2, 4, 8\)"):
        C.check(c)
    widths = {}
    for stride in (1, 2):
        cfg = ml_collections.ConfigDict(dict(d_model=16, num_layers=1, num_heads=2, ff_mult=2, arch="light",
                                             kinematic_features=True, ego_features=False, scene_features=True,
                                             scene_pose_stride=stride))
        widths[stride] = R.build(cfg, 12, rngs=nnx.Rngs(0)).traj_in.kernel.shape[0]
    assert widths[1] - widths[2] == 4 * len(F.SCENE_FEATURE_NAMES)
