"""Group-relative PPO over the denoising chain (irlvla_jax/train/ppo_core.py) with a toy multi-chain denoiser.

The toy: scene tokens [B, 4, 8]; C = 3 chains per sample; the mean of x_{k-1} is
sigmoid(a_k) x_k + tanh(pool(tokens) W + b) (the same shift for every chain), the mode logit of a chain
is a linear function of its state; reward = -mean squared distance of a chain's trajectory to a
per-scene target (a known optimum).
"""
import dataclasses
import functools

import numpy as np
import jax
import jax.numpy as jnp
import pytest
from scipy.stats import multivariate_normal, norm

from irlvla_jax.train import ppo_core as P

B, M, C, S = 8, 3, 3, 2
# The updates are compiled without XLA's backend (LLVM) optimisations, as the multi-host test's are: compiling
# is nearly all of these tests' time (one program per knob below) and what they check does not depend on how
# the kernels are optimised.
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def _encode(pp, batch):
    return {"tok": jnp.tanh(batch["tok"] @ pp[0]["enc"])}


def _mean(pp, tokens, x, k):
    p = pp[0]
    shift = jnp.tanh(tokens["tok"].mean(1) @ p["w"] + p["b"]).reshape(-1, 1, 1, 8, 3)
    return jax.nn.sigmoid(p["a"][k]) * x + shift, jnp.sum(x * p["m"].reshape(8, 3), (-2, -1))


ADAPTER = P.PolicyAdapter(
    encode=_encode,
    init_noise=lambda pp, tokens, batch, rng, m: jax.random.normal(rng, (batch["tok"].shape[0], m, C, 8, 3)),
    denoise_mean=_mean,
    to_traj=lambda x, batch: 10.0 * x,
    bc_loss=lambda pp, tokens, batch, rng: jnp.mean(
        (_mean(pp, tokens, jnp.zeros((batch["tok"].shape[0], 1, 1, 8, 3)), 1)[0] - batch["target"][:, None, None] / 10.0) ** 2),
    num_steps=S,
)


def _reward(static, batch, tokens, traj):
    """static["poison"] (bool) puts one NaN into the rewards (same compiled function for every test)."""
    r = -jnp.mean((traj - batch["target"][:, None]) ** 2, axis=(-2, -1)) / 10.0
    return jnp.where(static["poison"], r.at[1, 2].set(jnp.nan), r)


HP = P.PPOHyper(objective="denoise", samples_per_scene=M, epochs=2, num_minibatches=2, clip_eps=0.2, sigma=0.2,
                noise="white", advantage="anchor", negative_advantages="keep", denoise_discount=1.0, choice_weight=1.0,
                choice_loss="surrogate", choice_temperature=0.02, bc_weight=0.0, reward_grad_weight=0.0)


def _setup(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    policy = {"enc": 0.3 * jax.random.normal(k[0], (8, 8)), "w": 0.3 * jax.random.normal(k[1], (8, 24)),
              "b": jnp.zeros(24), "a": jnp.zeros(S + 1), "m": 0.1 * jax.random.normal(k[5], (24,))}
    batch = {"tok": jax.random.normal(k[2], (B, 4, 8)), "target": 3.0 * jax.random.normal(k[3], (B, 8, 3))}
    tx = P.make_optimizer(3e-3, 1.0)
    state = P.init_state(policy, tx, k[4])
    static = {"frozen": None, "poison": jnp.array(False)}
    return tx, state, static, batch


@pytest.fixture(scope="module")
def setup():
    return _setup()


@pytest.fixture(scope="module")
def update_fn(setup):
    tx = setup[0]
    return _jit(P.make_update(ADAPTER, _reward, HP, tx))


def test_log_probs_of_the_rollout_match_a_recomputation(setup):
    _, state, _, batch = setup
    pp = (state.params, None)
    tokens = _encode(pp, batch)
    roll = P.rollout(ADAPTER, pp, tokens, batch, jax.random.PRNGKey(3), M, 0.2)
    assert roll.x_in.shape == (B, M, S, C, 8, 3) and roll.logp.shape == (B, M, S, C)
    np.testing.assert_array_equal(roll.x0, roll.x_out[:, :, -1])
    np.testing.assert_array_equal(roll.x_in[:, :, 1], roll.x_out[:, :, 0])     # one chain, not samples
    np.testing.assert_array_equal(roll.choice_state, roll.x_in[:, :, -1])
    re, logits = P.policy_log_probs(ADAPTER, pp, tokens, roll, 0.2)
    np.testing.assert_allclose(re, roll.logp, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(logits, roll.logits, rtol=1e-6, atol=1e-6)
    # Independent: scipy on the first step (k = S), per chain over its 24 coordinates.
    mean = np.asarray(_mean(pp, tokens, roll.x_in[:, :, 0], S)[0])
    ref = norm.logpdf(np.asarray(roll.x_out[:, :, 0]), mean, 0.2).sum((-2, -1))
    np.testing.assert_allclose(roll.logp[:, :, 0], ref, rtol=1e-5, atol=1e-3)


def test_smooth_noise_log_prob_matches_scipy():
    """noise='smooth': x = mean + sigma L z; the log-prob is the multivariate normal's with covariance
    sigma^2 L L^T over the pose axis, independently per coordinate column."""
    L = P.noise_factor("smooth")
    assert np.allclose(np.triu(L, 1), 0) and np.sqrt(np.mean(np.sum(L * L, 1))) == pytest.approx(1.0, rel=1e-5)
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=(5, 8, 3)).astype(np.float32), 0.3
    x = mean + std * np.einsum("ij,...jc->...ic", L, rng.normal(size=mean.shape)).astype(np.float32)
    got = np.asarray(P.gaussian_log_prob(jnp.asarray(x), jnp.asarray(mean), std, L))
    cov = std ** 2 * (L.astype(np.float64) @ L.T.astype(np.float64))
    ref = [sum(multivariate_normal(mean[k, :, c], cov).logpdf(x[k, :, c]) for c in range(3)) for k in range(5)]
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    z = rng.normal(size=(4000, 8))          # smooth samples are smoother: far smaller second differences
    assert np.mean(np.diff(0.1 * z @ L.T, 2, 1) ** 2) < 0.1 * np.mean(np.diff(0.1 * z, 2, 1) ** 2)


def test_smooth_noise_factor():
    L = P.noise_factor("smooth", 8)   # the one smooth factor (RWM candidates and PPO)
    assert L.shape == (8, 8) and np.allclose(np.triu(L, 1), 0.0)
    np.testing.assert_allclose(np.sqrt(np.mean(np.sum(L * L, 1))), 1.0, rtol=1e-5)   # RMS pose std = std
    # Second differences of L z are the (scaled) i.i.d. kicks: smooth, unlike white noise.
    z = np.random.default_rng(0).normal(size=(8, 2000))
    d2 = np.diff(np.concatenate([np.zeros((2, 2000)), L @ z]), 2, axis=0)
    np.testing.assert_allclose(d2.std(), L[0, 0], rtol=0.05)


def test_advantages_hand_computed():
    r = jnp.array([[[1.0, 0.0], [3.0, 0.0]]])                    # [B=1, M=2, C=2]
    # Per anchor: chain 0 group {1, 3} mean 2, LOO scale M / (M - 1) = 2; chain 1 all zero.
    np.testing.assert_allclose(P.anchor_advantage(r, "anchor"), [[[-2.0, 0.0], [2.0, 0.0]]])
    # Per scene: mean 1, scale 4 / 3.
    np.testing.assert_allclose(P.anchor_advantage(r, "scene"), [[[0.0, -4 / 3], [8 / 3, -4 / 3]]], rtol=1e-6)
    with pytest.raises(ValueError, match="samples_per_scene >= 2"):
        P.anchor_advantage(r[:, :1], "anchor")
    # Choice: A_c = R_c - E_pi[R]; uniform logits over {1, 0}: A = (+0.5, -0.5), RMS 0.5 -> (+1, -1).
    np.testing.assert_allclose(P.choice_advantage(r[:, :1], jnp.zeros((1, 1, 2))), [[[1.0, -1.0]]], rtol=1e-5)
    np.testing.assert_allclose(P.step_weights(3, 0.6), [0.36, 0.6, 1.0], rtol=1e-6)
    # Distilled choice: softmax of the per-chain mean reward over the samples / temperature.
    t = P.choice_target(r, 1.0)                                   # chain means (2, 0)
    np.testing.assert_allclose(t, [[np.exp(2) / (np.exp(2) + 1), 1 / (np.exp(2) + 1)]], rtol=1e-5)
    assert float(P.choice_target(r, 0.01)[0, 0]) == pytest.approx(1.0)


def test_first_minibatch_ratio_is_one_and_learning_happens(setup, update_fn):
    _, state, static, batch = setup
    new, m = jax.device_get(update_fn(state, static, batch))
    assert int(new.step) == 1 and bool(m["reward_finite"]) and m["trajectories"] == B * M * C
    assert m["approx_kl"] > 0 and np.isfinite(m["loss"])
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), new.params, state.params)
    assert moved["w"] > 0 and moved["m"] > 0 and moved["enc"] == 0.0   # encoder: no gradient path


def test_first_step_ratio_is_exactly_one(setup):
    """One epoch, one minibatch: the loss is evaluated at the rollout's own parameters (ratio 1, kl 0)."""
    tx, state, static, batch = setup
    hp = dataclasses.replace(HP, epochs=1, num_minibatches=1)
    _, m = _jit(P.make_update(ADAPTER, _reward, hp, tx))(state, static, batch)
    assert float(m["ratio"]) == pytest.approx(1.0, abs=1e-5) and abs(float(m["approx_kl"])) < 1e-7
    assert float(m["clipfrac"]) == 0.0 and abs(float(m["choice_kl"])) < 1e-7


def test_ppo_moves_the_toy_denoiser_toward_its_reward(update_fn):
    _, state, static, batch = _setup(seed=1)
    rewards, execs = [], []
    for _ in range(30):
        state, m = update_fn(state, static, batch)
        rewards.append(float(m["reward_mean"])); execs.append(float(m["exec_reward"]))
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.05, rewards
    assert np.mean(execs[-5:]) > np.mean(execs[:5]) + 0.05, execs     # the deterministic policy too


def test_reward_gradient_moves_the_deterministic_chains_toward_their_reward(setup):
    """reward_grad_weight: the chains re-run deterministically from the rollout's stored initial noise and
    the reward differentiated through them (the pathwise gradient of a differentiable reward). Against the
    same updates without it, it raises the deterministic chains' reward, and its loss term is minus their
    mean reward."""
    tx, state, static, batch = setup
    hp0 = dataclasses.replace(HP, choice_weight=0.0, epochs=1, num_minibatches=1)

    def det_reward(s, key=jax.random.PRNGKey(5)):
        pp = (s.params, None)
        roll = P.rollout(ADAPTER, pp, _encode(pp, batch), batch, key, M, 0.0)
        return float(jnp.mean(_reward(static, batch, None, P.trajectories(ADAPTER, roll, batch))))

    before, after, first = det_reward(state), {}, None
    for w in (0.0, 1.0):
        upd = _jit(P.make_update(ADAPTER, _reward, dataclasses.replace(hp0, reward_grad_weight=w), tx))
        st = state
        for i in range(10):
            st, m = upd(st, static, batch)
            if w and i == 0:
                first = float(m["reward_grad_loss"])
        after[w] = det_reward(st)
    assert after[1.0] > after[0.0] + 0.02 and after[1.0] > before + 0.05, (before, after)
    # The first update's term at the rollout's own parameters: minus the mean reward of the deterministic
    # chains from its initial noise (another draw of that noise than det_reward's: close, not equal).
    assert first == pytest.approx(-before, rel=0.3)


@pytest.mark.parametrize("choice_loss", ["surrogate", "distill"])
def test_choice_objective_improves_the_greedy_choice_and_keeps_the_chains(setup, choice_loss):
    """objective='choice': chains are the deterministic DDIM chains; only the choice surrogate acts. With
    the chain means frozen (the toy's 'w', 'b', 'a' get no gradient from the choice loss) the probability
    of each sample's best chain rises."""
    tx, state, static, batch = setup
    hp = dataclasses.replace(HP, objective="choice", samples_per_scene=2, choice_loss=choice_loss)
    tx = P.make_optimizer(3e-2, 1.0)
    st = P.init_state(state.params, tx, jax.random.PRNGKey(4))
    upd = _jit(P.make_update(ADAPTER, _reward, hp, tx))

    def p_best(s):
        pp = (s.params, None)
        roll = P.rollout(ADAPTER, pp, _encode(pp, batch), batch, jax.random.PRNGKey(9), 2, 0.0)
        assert roll.x_in.shape[2] == 0
        r = _reward(static, batch, None, 10.0 * roll.x0.reshape(B, -1, 8, 3)).reshape(B, 2, C)
        return float(jnp.mean(jnp.take_along_axis(jax.nn.softmax(roll.logits, -1), jnp.argmax(r, -1)[..., None], -1)))
    before = p_best(st)
    for _ in range(15):
        new, m = upd(st, static, batch)
        for k in ("w", "b", "a"):
            np.testing.assert_array_equal(new.params[k], st.params[k])
        st = new
    assert float(m["pg_loss"]) == 0.0 and float(m["choice_kl"]) >= 0
    assert p_best(st) > before + 0.05, (before, p_best(st))


KNOBS = [("objective", "choice"), ("samples_per_scene", 2), ("epochs", 1), ("num_minibatches", 1),
         ("clip_eps", 0.01), ("sigma", 0.05), ("noise", "smooth"), ("advantage", "scene"),
         ("negative_advantages", "clip"), ("denoise_discount", 0.6), ("choice_weight", 0.0), ("choice_loss", "distill"),
         ("bc_weight", 0.5), ("reward_grad_weight", 1.0)]


KNOBS_DISTILL = [("choice_temperature", 0.5)]   # acts with choice_loss='distill'
_BASE_UPDATE = {}


@pytest.mark.parametrize("name,value", KNOBS + KNOBS_DISTILL)
def test_every_knob_changes_the_update(setup, name, value):
    """Each PPOHyper field (the ppo config section's optimisation knobs) changes the updated params."""
    tx, state, static, batch = setup
    names = {f.name for f in dataclasses.fields(P.PPOHyper)}
    assert {k for k, _ in KNOBS + KNOBS_DISTILL} == names, "every knob must be covered here"
    distill = (name, value) in KNOBS_DISTILL
    hp0 = dataclasses.replace(HP, choice_loss="distill") if distill else HP
    if distill not in _BASE_UPDATE:         # the unchanged update, computed once per baseline (not per knob)
        _BASE_UPDATE[distill] = _jit(P.make_update(ADAPTER, _reward, hp0, tx))(state, static, batch)[0]
    base = _BASE_UPDATE[distill]
    hp = dataclasses.replace(hp0, **{name: value})
    other = _jit(P.make_update(ADAPTER, _reward, hp, tx))(state, static, batch)[0]
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(base.params), jax.tree.leaves(other.params)))
    assert diff > 1e-7, f"ppo.{name}={value!r} did not change the update"


def test_bad_knobs_are_one_line_errors():
    with pytest.raises(ValueError, match="ppo.objective"):
        dataclasses.replace(HP, objective="dppo").validate()
    with pytest.raises(ValueError, match="ppo.advantage"):
        dataclasses.replace(HP, advantage="gae").validate()
    with pytest.raises(ValueError, match="ppo.negative_advantages"):
        dataclasses.replace(HP, negative_advantages="drop").validate()
    with pytest.raises(ValueError, match="ppo.noise"):
        dataclasses.replace(HP, noise="pink").validate()
    with pytest.raises(ValueError, match="ppo.choice_loss"):
        dataclasses.replace(HP, choice_loss="ce").validate()
    with pytest.raises(ValueError, match="samples_per_scene must be >= 2"):
        dataclasses.replace(HP, samples_per_scene=1).validate()
    dataclasses.replace(HP, objective="choice", samples_per_scene=1).validate()    # fine: no anchor groups


@pytest.mark.parametrize("reward_grad", [False, True])
def test_sharded_update_matches_single_device(setup, update_fn, reward_grad):
    tx, state, static, batch = setup
    assert jax.device_count() >= 8, "conftest should give 8 simulated CPU devices"
    if reward_grad:   # the objective with the pathwise reward term
        update_fn = _jit(P.make_update(ADAPTER, _reward, dataclasses.replace(HP, reward_grad_weight=1.0), tx))
    one, m1 = update_fn(state, static, batch)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    b8 = jax.device_put(batch, shard)
    assert len(b8["tok"].sharding.device_set) == 8
    eight, m8 = update_fn(jax.device_put(state, repl), jax.device_put(static, repl), b8)
    np.testing.assert_allclose(m8["reward_mean"], m1["reward_mean"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(eight.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_nan_reward_stops_training_before_saving(setup, update_fn, tmp_path):
    """The shared host loop (train/loop.py) with PPO's check: the error comes before any checkpoint."""
    from irlvla_jax.train import loop
    from irlvla_jax.train.checkpoint import Checkpointer
    _, state, static, batch = setup
    static = dict(static, poison=jnp.array(True))
    ckpt = Checkpointer(str(tmp_path / "checkpoints" / "ppo_rwm"), async_save=False)
    prep = loop.Prepared(mesh=None, state=state, start=0, ckpt=ckpt, train_iter=None)
    with pytest.raises(P.NonFiniteRewardError, match=r"update 0: 1 non-finite reward.*'rwm'.*no checkpoint"):
        loop.run(workdir=str(tmp_path), name="ppo_rwm", prep=prep, total=3, prefix="ppo/", log_every=1,
                 checkpoint_every=1, progress=False, step_fn=lambda st, b: update_fn(st, static, b),
                 next_batch=lambda step: batch, check=lambda m, step: P.check_finite(m, step - 1, "rwm"))
    assert ckpt.latest_step() is None
    new, m = update_fn(state, static, batch)   # the jitted update itself leaves params untouched
    assert not bool(m["reward_finite"]) and int(new.step) == 0
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_choice_lr_applies_to_the_mode_head_only():
    tx = P.make_optimizer(1e-5, 1.0, choice_lr=1e-2)
    p = {"mode_head": {"kernel": jnp.ones(3)}, "x_in": {"kernel": jnp.ones(3)}}
    upd, _ = tx.update(jax.tree.map(jnp.ones_like, p), tx.init(p), p)
    assert float(upd["mode_head"]["kernel"][0]) == pytest.approx(-1e-2, rel=1e-3)
    assert float(upd["x_in"]["kernel"][0]) == pytest.approx(-1e-5, rel=1e-3)


def _tiny():
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.py")
    sp = importlib.util.spec_from_file_location("tiny_cfg", path)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    return mod.get_config()


@pytest.mark.parametrize("key,value,extra,expect", [
    ("finetune_steps", 1, {}, "config.ppo.finetune_steps: unknown key"),
    ("objective", "dppo", {}, "config.ppo.objective: must be 'denoise'"),
    ("advantage", "gae", {}, "config.ppo.advantage: must be 'anchor'"),
    ("negative_advantages", "drop", {}, "config.ppo.negative_advantages: must be 'keep' or 'clip'"),
    ("samples_per_scene", 1, {}, "config.ppo.samples_per_scene: must be >= 2"),
    ("denoise_discount", 0.0, {}, "config.ppo.denoise_discount: must be in"),
    ("sigma", 0.0, {}, "config.ppo.sigma: must be > 0"),
    # the reward_grad variant's weight, or an RWM refresh, with the (non-differentiable, RWM-less) scorer
    ("reward", "scorer", {"reward_grad_weight": 10.0}, "config.ppo.reward_grad_weight: must be 0 with ppo.reward='scorer'"),
    ("rwm_refresh_every", -1, {}, "config.ppo.rwm_refresh_every: must be >= 0"),
    ("rwm_refresh_steps", 0, {"rwm_refresh_every": 75}, "config.ppo.rwm_refresh_steps: must be >= 1"),
    ("batch_size", 12, {"num_minibatches": 1}, "config.ppo.batch_size: must be a multiple of rwm.batch_size=8")])
def test_ppo_config_is_checked_strictly(key, value, extra, expect):
    from irlvla_jax import config as config_lib
    c = _tiny()
    config_lib.check(c)
    with c.unlocked():
        c.ppo[key] = value
        c.ppo.update(extra)
    with pytest.raises(ValueError, match=expect):
        config_lib.check(c)


def test_every_named_variant_is_a_valid_config():
    """Each variant of configs/default.py passes the config check (rl_scorer: the RWM refresh, on by default,
    does not apply to the true scorer's runs); reward_grad turns the reward gradient and the warped chains on."""
    import importlib.util
    import os
    from irlvla_jax import config as config_lib
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "default.py")
    sp = importlib.util.spec_from_file_location("default_cfg", path)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    names = mod.VARIANTS
    assert {"tiny", "base", "reward_grad", "rl_scorer"} <= set(names)
    for name in names:
        config_lib.check(config_lib.load_config(path, name))
    c = config_lib.load_config(path, "reward_grad")
    assert c.ppo.reward_grad_weight > 0 and c.rwm.warped_chains > 0 and c.ppo.reward == "rwm"


def test_configs_size_the_rollout():
    """One update rewards >= 1,024 trajectories on tiny (scenes x samples x anchors), >= 16k on base."""
    c = _tiny()
    assert c.ppo.batch_size * c.ppo.samples_per_scene * c.data.num_anchors >= 1024
    import importlib.util
    import os
    sp = importlib.util.spec_from_file_location("base_cfg", os.path.join(os.path.dirname(__file__), "..", "..",
                                                                         "configs", "base.py"))
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    b = mod.get_config()
    assert b.ppo.batch_size * b.ppo.samples_per_scene * b.data.num_anchors >= 16384


def test_loss_at_the_rollout_parameters_is_the_mean_advantage(setup):
    """``ppo_core.loss`` (the objective lifted out of make_update) on a stored rollout, evaluated at the
    rollout's own parameters: every ratio is 1, so the denoising term is -mean(advantage) exactly, the
    choice surrogate is -E_old[A_choice] and behaviour cloning is off."""
    _, state, static, batch = setup
    pp = (state.params, static["frozen"])
    tokens = ADAPTER.encode(pp, batch)
    roll = P.rollout(ADAPTER, pp, tokens, batch, jax.random.PRNGKey(3), M, HP.sigma, P.noise_factor(HP.noise))
    r = _reward(static, batch, tokens, P.trajectories(ADAPTER, roll, batch)).reshape(B, M, C)
    adv = P.anchor_advantage(r, HP.advantage)
    cadv = P.choice_advantage(r, roll.logits)
    mb = dict(batch=batch, tokens=tokens, x_in=roll.x_in, x_out=roll.x_out, logp=roll.logp,
              choice_state=roll.choice_state, logits=roll.logits, adv=adv, choice_adv=cadv,
              choice_target=P.choice_target(r, HP.choice_temperature))
    total, m = _jit(lambda p: P.loss(ADAPTER, HP, p, static, mb, jax.random.PRNGKey(0)))(state.params)
    np.testing.assert_allclose(float(m["pg_loss"]), -float(jnp.mean(adv)), atol=1e-6)
    probs = jax.nn.softmax(roll.logits, -1)
    np.testing.assert_allclose(float(m["choice_loss"]), -float(jnp.mean(jnp.sum(probs * cadv, -1))), atol=1e-6)
    assert float(m["bc_loss"]) == 0.0 and float(m["ratio"]) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(float(total), float(m["pg_loss"]) + HP.choice_weight * float(m["choice_loss"]),
                               rtol=1e-6)
