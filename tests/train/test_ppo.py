"""PPO over the denoising chain (irlvla_jax/train/ppo_core.py) with a toy diffusion policy.

The toy: scene tokens [B, 4, 8]; mean of x_{k-1} = sigmoid(a_k) x_k + tanh(pool(tokens) W + b);
reward = -mean squared distance of the final trajectory to a per-scene target.
"""
import numpy as np
import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from scipy.stats import norm

from irlvla_jax.train import ppo_core as P

B, M, K, T = 8, 3, 3, 2


def _encode(pp, batch):
    return {"tok": jnp.tanh(batch["tok"] @ pp[0]["enc"])}


def _mean(pp, tokens, x, k):
    p = pp[0]
    pooled = tokens["tok"].mean(1)                                      # [B, 8]
    h = jnp.tanh(pooled @ p["w"] + p["b"]).reshape(-1, 1, 8, 3)         # [B, 1, 8, 3]
    return jax.nn.sigmoid(p["a"][k]) * x + h, None


def _mean_chains(pp, tokens, x, k):
    """Event [C=3, 8, 3]: three chains denoised jointly, mode logits from the chain states."""
    mean = jax.nn.sigmoid(pp[0]["a"][k]) * x + jnp.tanh(tokens["tok"].mean(1) @ pp[0]["w"]).reshape(-1, 1, 1, 8, 3)
    return mean, jnp.sum(x * pp[0]["w"][0].reshape(8, 3), (-2, -1))     # [B, M, 3]


ADAPTER = P.PolicyAdapter(
    encode=_encode,
    init_noise=lambda pp, tokens, batch, rng, m: jax.random.normal(rng, (batch["tok"].shape[0], m, 8, 3)),
    denoise_mean=_mean,
    to_traj=lambda x0, choice, batch: 10.0 * x0,
    bc_loss=lambda pp, tokens, batch, rng: jnp.mean((_mean(pp, tokens, jnp.zeros((batch["tok"].shape[0], 1, 8, 3)), 1)[0]
                                                     - batch["target"][:, None] / 10.0) ** 2),
    features=lambda tokens: tokens["tok"].mean(1),
    num_steps=K,
)
CHAIN_ADAPTER = P.PolicyAdapter(
    encode=_encode,
    init_noise=lambda pp, tokens, batch, rng, m: jax.random.normal(rng, (batch["tok"].shape[0], m, 3, 8, 3)),
    denoise_mean=_mean_chains,
    to_traj=lambda x0, choice, batch: 10.0 * jnp.take_along_axis(x0, choice[..., None, None, None], 2)[:, :, 0],
    bc_loss=None, features=lambda tokens: tokens["tok"].mean(1), num_steps=K, num_choices=3,
)


def _reward(static, batch, tokens, traj):
    """static["poison"] (bool) puts one NaN into the rewards (same compiled function for every test)."""
    r = -jnp.mean((traj - batch["target"][:, None]) ** 2, axis=(-2, -1)) / 10.0
    r = jnp.where(static["poison"], r.at[1, 2].set(jnp.nan), r)
    return r, {"dist": -r}


HP = P.PPOHyper(samples_per_scene=M, finetune_steps=T, epochs=2, num_minibatches=2, ent_coef=0.01,
                bc_weight=0.1, sigma_max=0.3, sigma_min=0.1)
SIGMAS = P.std_schedule(K, HP.sigma_max, HP.sigma_min)


def _setup(seed=0):
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    policy = {"enc": 0.3 * jax.random.normal(k[0], (8, 8)), "w": 0.3 * jax.random.normal(k[1], (8, 24)),
              "b": jnp.zeros(24), "a": jnp.zeros(K + 1)}
    batch = {"tok": jax.random.normal(k[2], (B, 4, 8)), "target": 3.0 * jax.random.normal(k[3], (B, 8, 3))}
    vh = P.ValueHead(8, K, 16, rngs=nnx.Rngs(1))
    vgd, vstate = nnx.split(vh)
    tx = P.make_optimizer(3e-3, 1.0)
    state = P.init_state(policy, vstate, T, tx, k[4])
    static = {"frozen": None, "ref": policy, "poison": jnp.array(False)}
    return vgd, tx, state, static, batch


@pytest.fixture(scope="module")
def setup():
    return _setup()


@pytest.fixture(scope="module")
def update_fn(setup):
    vgd, tx, *_ = setup
    return jax.jit(P.make_update(ADAPTER, vgd, _reward, HP, tx, SIGMAS))


def test_gae_hand_computed():
    # gamma 0.9, lambda 0.8; reward only at the end (the denoising chain case).
    adv, ret = P.gae(jnp.array([[0.0, 0.0, 1.0]]), jnp.array([[0.2, 0.5, 0.7]]), jnp.array([[0.0, 0.0, 1.0]]),
                     jnp.array([5.0]), 0.9, 0.8)
    # t=2: delta = 1 - 0.7 = 0.3 (done: bootstrap 5.0 ignored)             A2 = 0.3
    # t=1: delta = 0.9*0.7 - 0.5 = 0.13                                     A1 = 0.13 + 0.72*0.3 = 0.346
    # t=0: delta = 0.9*0.5 - 0.2 = 0.25                                     A0 = 0.25 + 0.72*0.346 = 0.49912
    np.testing.assert_allclose(adv[0], [0.49912, 0.346, 0.3], atol=1e-6)
    np.testing.assert_allclose(ret[0], [0.69912, 0.846, 1.0], atol=1e-6)
    # A done in the middle cuts the recursion; the bootstrap value is used after the last step.
    adv, _ = P.gae(jnp.array([1.0, 2.0]), jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0]), jnp.array(1.0), 0.5, 1.0)
    np.testing.assert_allclose(adv, [0.5, 2.0], atol=1e-6)   # t=1: 2 + 0.5*1 - 0.5; t=0: 1 - 0.5


def test_std_schedule_and_bad_finetune_steps():
    s = P.std_schedule(4, 0.4, 0.05)
    assert s[0] == pytest.approx(0.4) and s[-1] == pytest.approx(0.05) and np.all(np.diff(s) < 0)
    with pytest.raises(ValueError, match="finetune_steps"):
        P.finetuned_ks(2, 3)


def test_log_prob_of_stored_chain_matches_recomputation(setup):
    vgd, tx, state, static, batch = setup
    pp = (state.params["policy"], None)
    tokens = _encode(pp, batch)
    chain = P.rollout(ADAPTER, pp, pp, tokens, batch, jax.random.PRNGKey(3), HP, SIGMAS, state.params["log_std"])
    assert chain.x_in.shape == (B, M, T, 8, 3) and chain.logp.shape == (B, M, T)
    np.testing.assert_array_equal(chain.x0, chain.x_out[:, :, -1])
    np.testing.assert_array_equal(chain.x_in[:, :, 1], chain.x_out[:, :, 0])   # a chain, not samples
    re, _, _ = P.chain_log_prob(ADAPTER, pp, tokens, chain, HP, SIGMAS, state.params["log_std"])
    np.testing.assert_allclose(re, chain.logp, rtol=1e-5, atol=1e-4)
    # Independent check with scipy on one step: k of step t=0 is T, std = last-T schedule entry.
    mean = np.asarray(_mean(pp, tokens, chain.x_in[:, :, 0], T)[0])
    ref = norm.logpdf(np.asarray(chain.x_out[:, :, 0]), mean, SIGMAS[K - T]).sum((-2, -1))
    np.testing.assert_allclose(chain.logp[:, :, 0], ref, rtol=1e-5, atol=1e-3)


def test_smooth_noise_log_prob_matches_scipy():
    """ppo.noise='smooth': x = mean + std L z; the log-prob is the multivariate normal's with covariance
    std^2 L L^T over the pose axis, independently per coordinate column."""
    from scipy.stats import multivariate_normal
    L = P.noise_factor("smooth")
    assert np.allclose(np.triu(L, 1), 0) and np.sqrt(np.mean(np.sum(L * L, 1))) == pytest.approx(1.0, rel=1e-5)
    rng = np.random.default_rng(0)
    mean, std = rng.normal(size=(2, 5, 8, 3)).astype(np.float32), 0.3
    x = mean + std * np.einsum("ij,...jc->...ic", L, rng.normal(size=mean.shape)).astype(np.float32)
    got = np.asarray(P.gaussian_log_prob(jnp.asarray(x), jnp.asarray(mean), std, 3, L))
    cov = std ** 2 * (L.astype(np.float64) @ L.T.astype(np.float64))
    ref = sum(multivariate_normal(mean[0, :, :, c][k], cov).logpdf(x[0, :, :, c][k])
              for k in range(5) for c in range(3))
    assert got.shape == (2,) and got[0] == pytest.approx(ref, rel=1e-4)
    # Smooth samples are smoother: mean squared second difference over the poses is far smaller.
    z = rng.normal(size=(4000, 8))
    white, smooth = 0.1 * z, 0.1 * z @ L.T
    assert np.mean(np.diff(smooth, 2, 1) ** 2) < 0.1 * np.mean(np.diff(white, 2, 1) ** 2)


def test_log_prob_with_chain_choice(setup):
    """Jointly denoised chains + a categorical choice at the end: the choice is its own policy step
    (log softmax(logits)[choice] at the last denoising step's input); recomputation and scipy agree."""
    _, _, state, _, batch = setup
    pp = (state.params["policy"], None)
    tokens = _encode(pp, batch)
    chain = P.rollout(CHAIN_ADAPTER, pp, pp, tokens, batch, jax.random.PRNGKey(5), HP, SIGMAS, state.params["log_std"])
    assert chain.x_in.shape == (B, M, T, 3, 8, 3) and chain.choice.shape == (B, M)
    np.testing.assert_array_equal(chain.choice_state, chain.x_in[:, :, -1])
    re, ent, _ = P.chain_log_prob(CHAIN_ADAPTER, pp, tokens, chain, HP, SIGMAS, state.params["log_std"])
    assert re.shape == (B, M, T + 1)
    np.testing.assert_allclose(re, P.step_log_probs(chain, 3), rtol=1e-5, atol=1e-3)
    mean, logits = _mean_chains(pp, tokens, chain.x_in[:, :, -1], 1)
    lse = np.log(np.exp(np.asarray(logits, np.float64)).sum(-1))
    cat = np.take_along_axis(np.asarray(logits), np.asarray(chain.choice)[..., None], -1)[..., 0] - lse
    # The last step: noise only on the executed chain; its log-prob covers that chain alone.
    c = np.asarray(chain.choice)
    out, mean = np.asarray(chain.x_out[:, :, -1]), np.asarray(mean)
    pick = lambda a: np.take_along_axis(a, c[:, :, None, None, None], 2)[:, :, 0]  # noqa: E731
    others = np.arange(3)[None, None] != c[..., None]
    np.testing.assert_allclose(out[others], mean[others], rtol=1e-5, atol=1e-5)
    ref = norm.logpdf(pick(out), pick(mean), SIGMAS[-1]).sum((-2, -1))
    np.testing.assert_allclose(chain.logp[:, :, -1], ref, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(chain.choice_logp, cat, rtol=1e-5, atol=1e-5)
    assert 0.0 < float(ent) <= np.log(3) + 1e-6


def test_choice_only_policy(setup):
    """finetune_steps = 0: the chain is the reference's, deterministic after the noisy prefix (the last
    step adds no noise), only the choice is a policy step, and the update runs (ratio 1 at first)."""
    vgd, _, state, static, batch = setup
    hp0 = P.PPOHyper(samples_per_scene=M, finetune_steps=0, epochs=1, num_minibatches=2, sigma_max=0.3,
                     sigma_min=0.1)
    pp = (state.params["policy"], None)
    tokens = _encode(pp, batch)
    chain = P.rollout(CHAIN_ADAPTER, pp, pp, tokens, batch, jax.random.PRNGKey(7), hp0, SIGMAS, jnp.zeros((0,)))
    assert chain.x_in.shape == (B, M, 0, 3, 8, 3) and chain.logp.shape == (B, M, 0)
    mean_last, logits = _mean_chains(pp, tokens, chain.choice_state, 1)
    np.testing.assert_allclose(chain.x0, mean_last, rtol=1e-6, atol=1e-6)      # no noise on the output
    re, _, _ = P.chain_log_prob(CHAIN_ADAPTER, pp, tokens, chain, hp0, SIGMAS, jnp.zeros((0,)))
    assert re.shape == (B, M, 1)
    np.testing.assert_allclose(re[..., 0], jax.nn.log_softmax(logits)[
        jnp.arange(B)[:, None], jnp.arange(M)[None], chain.choice], rtol=1e-5, atol=1e-5)
    tx = P.make_optimizer(1e-2, 1.0)
    cgd, cstate = nnx.split(P.ValueHead(8, K, 16, rngs=nnx.Rngs(1), event_size=3 * 24))
    st = P.init_state(state.params["policy"], cstate, 0, tx, jax.random.PRNGKey(2))
    upd = jax.jit(P.make_update(CHAIN_ADAPTER, cgd, _reward, hp0, tx, SIGMAS))
    new, m = upd(st, static, batch)
    assert np.isfinite(float(m["loss"])) and float(m["mb_ratio"][0, 0]) == pytest.approx(1.0, abs=1e-5)
    assert float(m["choice_entropy"]) > 0
    with pytest.raises(ValueError, match="finetune_steps=0"):
        P.make_update(ADAPTER, vgd, _reward, hp0, tx, SIGMAS)


def test_first_minibatch_ratio_is_one_and_learning_happens(setup, update_fn):
    _, _, state, static, batch = setup
    new, m = update_fn(state, static, batch)
    m = jax.device_get(m)
    assert m["mb_ratio"].shape == (HP.epochs, HP.num_minibatches)
    assert m["mb_ratio"][0, 0] == pytest.approx(1.0, abs=1e-5)
    assert m["mb_clipfrac"][0, 0] == 0.0 and abs(m["mb_approx_kl"][0, 0]) < 1e-7
    # After the first step the policy moved: later ratios differ from 1.
    assert abs(m["mb_ratio"][-1, -1] - 1.0) > 1e-6 or m["mb_approx_kl"][-1, -1] > 1e-9
    assert int(new.step) == 1 and bool(m["reward_finite"])
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params["policy"], state.params["policy"])
    assert moved["w"] > 0 and moved["enc"] == 0.0   # frozen encoder: no gradient path


def test_ppo_improves_toy_reward(update_fn):
    vgd, tx, state, static, batch = _setup(seed=1)
    rewards = []
    for _ in range(25):
        state, m = update_fn(state, static, batch)
        rewards.append(float(m["reward_mean"]))
    assert np.mean(rewards[-5:]) > np.mean(rewards[:5]) + 0.05, rewards


def test_sharded_update_matches_single_device(setup, update_fn):
    _, _, state, static, batch = setup
    assert jax.device_count() >= 8, "conftest should give 8 simulated CPU devices"
    one, m1 = update_fn(state, static, batch)
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    b8 = jax.device_put(batch, shard)
    s8 = jax.device_put(state, repl)
    st8 = jax.device_put(static, repl)
    assert len(b8["tok"].sharding.device_set) == 8
    eight, m8 = update_fn(s8, st8, b8)
    np.testing.assert_allclose(m8["reward_mean"], m1["reward_mean"], rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(eight.params), jax.tree.leaves(one.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_nan_reward_stops_training_before_saving(setup, update_fn):
    vgd, tx, state, static, batch = setup
    static = dict(static, poison=jnp.array(True))
    upd = update_fn
    saved = []
    with pytest.raises(P.NonFiniteRewardError, match=r"update 0: 1 non-finite reward.*'rwm'.*no checkpoint"):
        P.ppo_loop(upd, state, static, lambda u: batch, 3, reward_source="rwm",
                   save_fn=lambda s, st: saved.append(s), progress=False)
    assert saved == []
    new, m = upd(state, static, batch)   # the jitted update itself leaves params untouched
    assert not bool(m["reward_finite"]) and int(new.step) == 0
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_expected_choice_objective_improves_the_greedy_choice(setup):
    """choice_objective='expected': all C chains are rewarded and the choice's surrogate is averaged over
    c ~ pi_old exactly. On the toy (T = 0: chains fixed; reward = mean forward position, which the
    toy's linear logits can rank) the probability of each sample's best chain rises."""
    _, _, state, static, batch = setup
    hp = P.PPOHyper(samples_per_scene=2, finetune_steps=0, epochs=2, num_minibatches=2, sigma_max=0.3,
                    sigma_min=0.1, choice_objective="expected", advantage="group")
    cgd, cstate = nnx.split(P.ValueHead(8, K, 16, rngs=nnx.Rngs(1), event_size=3 * 24))
    tx = P.make_optimizer(3e-2, 1.0)
    # The chains come from the frozen reference (static["ref"]); only the choice is a policy step.
    st = P.init_state(state.params["policy"], cstate, 0, tx, jax.random.PRNGKey(4))
    reward = lambda static, batch, tokens, traj: (jnp.mean(traj[..., 0], -1) / 10.0, {})  # noqa: E731
    upd = jax.jit(P.make_update(CHAIN_ADAPTER, cgd, reward, hp, tx, SIGMAS))

    def p_best(s):
        pp = (s.params["policy"], None)
        tokens = _encode(pp, batch)
        ch = P.rollout(CHAIN_ADAPTER, pp, (static["ref"], None), tokens, batch, jax.random.PRNGKey(9), hp, SIGMAS,
                       jnp.zeros((1,)))
        r = jnp.mean(ch.x0[..., 0], -1)                                                     # [B, M, C]
        return float(jnp.mean(jnp.take_along_axis(jax.nn.softmax(ch.choice_logits, -1),
                                                  jnp.argmax(r, -1)[..., None], -1)))
    before = p_best(st)
    for _ in range(15):
        st, m = upd(st, static, batch)
    assert float(m["choice_approx_kl"]) >= 0 and np.isfinite(float(m["loss"]))
    assert p_best(st) > before + 0.05, (before, p_best(st))
    with pytest.raises(ValueError, match="choice_objective"):
        P.make_update(ADAPTER, cgd, _reward, P.PPOHyper(finetune_steps=1, choice_objective="expected"), tx, SIGMAS)


def test_choice_lr_applies_to_the_mode_head_only():
    tx = P.make_optimizer(1e-5, 1.0, choice_lr=1e-2)
    p = {"policy": {"mode_head": {"kernel": jnp.ones(3)}, "x_in": {"kernel": jnp.ones(3)}},
         "value": {"w": jnp.ones(2)}, "log_std": jnp.zeros(1)}
    upd, _ = tx.update(jax.tree.map(jnp.ones_like, p), tx.init(p), p)
    assert float(upd["policy"]["mode_head"]["kernel"][0]) == pytest.approx(-1e-2, rel=1e-3)
    for leaf in (upd["policy"]["x_in"]["kernel"][0], upd["value"]["w"][0], upd["log_std"][0]):
        assert float(leaf) == pytest.approx(-1e-5, rel=1e-3)
