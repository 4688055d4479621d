"""DPPO-style PPO over the denoising chain of a diffusion planner (pure JAX; generic in the policy).

The denoising chain x_K -> x_{K-1} -> ... -> x_0 is an MDP: state (scene, x_k, k), action x_{k-1},
policy pi(x_{k-1} | x_k) = N(mu_theta(x_k, k), sigma_k^2 I) where mu_theta is the planner's (DDIM)
denoising mean and sigma_k comes from a fixed schedule times a learned per-step scale. The reward is given
once, at the chain's end (reward of the trajectory x_0), so with gamma = 1 every step's return is the
final reward; GAE (gamma, lambda) over the denoising steps with a learned value V(scene, x_k, k) reduces
variance. Only the last ``finetune_steps`` denoising steps are policy steps being fine-tuned; earlier
steps use the frozen reference (IL) parameters and are not part of the objective (DPPO's "fine-tune the
last K' steps"). A policy with C jointly denoised chains ends with one more step: the categorical choice
of the executed chain (its own ratio; the value of that step is V(scene, x_1, k=0)). With
``finetune_steps = 0`` only that choice is trained.

Everything a policy must provide is a :class:`PolicyAdapter` (static functions), so this module is
tested with a toy denoiser and used with the VLA's planner (irlvla_jax/train/ppo.py builds the adapter).

Shapes: B scenes, M samples per scene, T fine-tuned steps, poses [8, 3] *normalised* (the planner's
diffusion space); ``to_traj`` maps to metres / radians in the ego frame.

One update (``make_update``) = rollout (sample B·M chains, store x_k, x_{k-1}, log-probs) -> reward ->
values -> GAE -> ``lax.scan`` over epochs, each a ``lax.scan`` over minibatches of scenes (all M samples
and T steps of a scene stay together, so tokens are gathered once per scene) with a clipped surrogate,
value loss, entropy bonus and an optional behaviour-cloning term toward the expert. It is one jitted
function; the batch is sharded over the mesh 'data' axis by the caller (params replicated), and jit
semantics make the result independent of the sharding up to float reduction order.

A non-finite reward leaves the parameters untouched (the new state is selected with ``jnp.where``) and is
reported in the metrics; the host loop (:func:`check_finite`) raises :class:`NonFiniteRewardError`
before any checkpoint of that update is written.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

LOG_2PI = math.log(2.0 * math.pi)
POSE_DIM = 8 * 3


class NonFiniteRewardError(FloatingPointError):
    """Raised on the host when an update saw a NaN/inf reward (the update was not applied)."""


# --------------------------------------------------------------------------------------------------
# Math.

def std_schedule(num_steps: int, sigma_max: float, sigma_min: float) -> np.ndarray:
    """[K] exploration std of denoising step j = 0..K-1 (j = 0 maps x_K -> x_{K-1}), geometric from
    ``sigma_max`` (first step) to ``sigma_min`` (last step), in normalised pose units."""
    if num_steps < 1 or not (0.0 < sigma_min <= sigma_max):
        raise ValueError(f"std_schedule: need num_steps >= 1 and 0 < sigma_min <= sigma_max, got "
                         f"{num_steps}, {sigma_min}, {sigma_max}")
    if num_steps == 1:
        return np.array([sigma_min], np.float32)
    return np.geomspace(sigma_max, sigma_min, num_steps).astype(np.float32)


def noise_factor(kind: str, num_poses: int = 8) -> np.ndarray:
    """[P, P] lower-triangular factor L of the exploration noise over the pose axis: a step samples
    x = mean + std * L @ z (z ~ N(0, I), per coordinate column), i.e. covariance std^2 L L^T.

    "white": L = I (independent poses; a 0.4 m kick between consecutive 0.5 s poses is a jerk far past
    the comfort bounds, so every explored plan fails HC). "smooth": L = double cumulative sum (an
    acceleration kick per 0.5 s interval, integrated twice), scaled so the RMS pose std is ``std``: the
    first pose moves least (std 0.12 x), the last most (1.74 x), and perturbations are as smooth as
    the motion itself, so exploration (and the policy-gradient directions it produces) keep HC intact."""
    if kind == "white":
        return np.eye(num_poses, dtype=np.float32)
    if kind == "smooth":
        i, j = np.meshgrid(np.arange(num_poses), np.arange(num_poses), indexing="ij")
        L = np.where(j <= i, i - j + 1, 0).astype(np.float64)
        return (L / np.sqrt(np.mean(np.sum(L * L, 1)))).astype(np.float32)
    raise ValueError(f"ppo.noise must be 'white' or 'smooth', got {kind!r}")


def gaussian_log_prob(x, mean, std, event_ndim: int = 2, factor=None):
    """log N(x; mean, std^2 L L^T) summed over the last ``event_ndim`` axes (default the pose axes
    [8, 3]); L = ``factor`` [P, P] acts on the pose axis (-2; None = identity); std broadcasts to x.
    Natural log, normalised units."""
    std = jnp.broadcast_to(std, x.shape)
    d = x - mean
    logdet = 0.0
    if factor is not None:
        f = np.asarray(factor, np.float64)
        d = jnp.einsum("ij,...jc->...ic", jnp.asarray(np.linalg.inv(f), jnp.float32), d)
        # log|det L| per coordinate column; there are prod(event) / P columns.
        cols = int(np.prod(x.shape[x.ndim - event_ndim:])) // f.shape[0]
        logdet = cols * float(np.sum(np.log(np.abs(np.diag(f)))))
    z = d / std
    return -0.5 * jnp.sum(z * z + 2.0 * jnp.log(std) + LOG_2PI, axis=tuple(range(-event_ndim, 0))) - logdet


def gaussian_entropy(std, dim: int = POSE_DIM):
    """Entropy of N(., std^2 I_dim) for scalar std (any shape)."""
    return dim * (0.5 * (LOG_2PI + 1.0) + jnp.log(std))


def categorical_log_prob(logits, choice):
    """log softmax(logits)[choice]: logits [..., C], choice [...] int."""
    return jnp.take_along_axis(jax.nn.log_softmax(logits, -1), choice[..., None], -1)[..., 0]


def categorical_entropy(logits):
    lp = jax.nn.log_softmax(logits, -1)
    return -jnp.sum(jnp.exp(lp) * lp, -1)


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimation along the LAST axis (time).

    rewards, values, dones: [..., T]; last_value: [...] (bootstrap value after step T-1).
    delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t;  A_t = delta_t + gamma lam (1 - d_t) A_{t+1}.
    Returns (advantages [..., T], returns = advantages + values).
    """
    r, v, d = (jnp.moveaxis(a, -1, 0) for a in (rewards, values, dones))

    def body(carry, x):
        adv_next, v_next = carry
        rt, vt, dt = x
        nonterm = 1.0 - dt
        delta = rt + gamma * v_next * nonterm - vt
        adv = delta + gamma * lam * nonterm * adv_next
        return (adv, vt), adv

    _, adv = jax.lax.scan(body, (jnp.zeros_like(last_value), last_value), (r, v, d), reverse=True)
    adv = jnp.moveaxis(adv, 0, -1)
    return adv, adv + values


def group_advantage(reward):
    """reward [B, M] -> [B, M]: reward minus the mean of the scene's other M - 1 samples (leave-one-out
    baseline: unbiased, and scene difficulty cancels)."""
    M = reward.shape[-1]
    if M < 2:
        raise ValueError("ppo.advantage='group' needs ppo.samples_per_scene >= 2")
    return (reward - reward.mean(-1, keepdims=True)) * (M / (M - 1.0))


def clipped_surrogate(logp_new, logp_old, adv, clip_eps: float):
    """PPO clipped objective (a loss: negated). Returns (loss, ratio, clipped_fraction)."""
    ratio = jnp.exp(logp_new - logp_old)
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    clipfrac = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    return loss, ratio, clipfrac


# --------------------------------------------------------------------------------------------------
# Policy interface and value head.

@dataclasses.dataclass(frozen=True)
class PolicyAdapter:
    """Static functions of a diffusion policy. ``pp`` = (trainable params, frozen params) pytrees.

    encode(pp, batch) -> tokens                       scene tokens (any pytree with leading B)
    init_noise(pp, tokens, batch, rng, M) -> x_K      [B, M, *E] normalised (E = event shape, e.g. [8, 3]
                                                      or [C, 8, 3] for C jointly denoised anchor chains)
    denoise_mean(pp, tokens, x_k, k) -> (mean, logits)  mean of x_{k-1} [B, M, *E]; k a static Python
                                                      int in K..1; logits [B, M, C] (mode scores) or None
    to_traj(x_0, choice, batch) -> traj               [B, M, 8, 3] metres / radians, ego frame
                                                      (choice [B, M] int: the selected chain, or None)
    bc_loss(pp, tokens, batch, rng) -> scalar         imitation loss toward the expert
    features(tokens) -> [B, F]                        pooled scene features for the value head
    num_steps                                         K denoising steps
    num_choices                                       C > 0: after the last step the policy also draws
                                                      a chain c ~ Categorical(logits of the last step),
                                                      whose log-prob joins the last step's; 0: none
    """
    encode: Callable
    init_noise: Callable
    denoise_mean: Callable
    to_traj: Callable
    bc_loss: Callable
    features: Callable
    num_steps: int
    num_choices: int = 0


class ValueHead(nnx.Module):
    """V(scene, x_k, k): MLP on [pooled scene features, flattened x_k, one-hot k] -> [...] scalar."""

    def __init__(self, feature_dim: int, num_steps: int, hidden: int, *, rngs: nnx.Rngs,
                 event_size: int = POSE_DIM):
        self.num_steps = num_steps
        self.event_size = event_size
        self.feat = nnx.Linear(feature_dim, hidden, rngs=rngs)
        self.inp = nnx.Linear(event_size + num_steps + 1, hidden, rngs=rngs)
        self.h1 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, 1, kernel_init=nnx.initializers.zeros, rngs=rngs)

    def __call__(self, feats, x, k):
        """feats [B, F]; x [B, M, T, *E] (prod(E) = event_size); k [T] int -> [B, M, T]."""
        B, M, T = x.shape[:3]
        kk = jax.nn.one_hot(k, self.num_steps + 1)                       # [T, K+1]
        kk = jnp.broadcast_to(kk, (B, M, T, self.num_steps + 1))
        h = self.inp(jnp.concatenate([x.reshape(B, M, T, self.event_size), kk], -1))
        h = h + self.feat(feats)[:, None, None, :]
        h = self.h1(jax.nn.gelu(h))
        return self.out(jax.nn.gelu(h))[..., 0]


@struct.dataclass
class PPOState:
    """params = {"policy": trainable policy params, "value": value-head state, "log_std": [T]}."""
    params: Any
    opt_state: Any
    step: Any
    rng: Any


@dataclasses.dataclass(frozen=True)
class PPOHyper:
    samples_per_scene: int = 4
    finetune_steps: int = 2
    epochs: int = 2
    num_minibatches: int = 2
    clip_eps: float = 0.2
    gamma: float = 1.0
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    bc_weight: float = 0.0
    sigma_max: float = 0.2
    sigma_min: float = 0.05
    log_std_bound: float = 1.0
    freeze_encoders: bool = True
    normalize_advantages: bool = True
    kl_ref_coef: float = 0.0        # > 0: + coef * KL(pi || pi_ref) of the Gaussian steps (mean shift vs the
                                    # frozen IL planner at the rollout states, per chain, in nats)
    noise: str = "white"            # exploration noise over the poses: "white" | "smooth" (noise_factor)
    choice_temperature: float = 1.0  # the choice is c ~ softmax(logits / temperature) (argmax unchanged)
    choice_objective: str = "sampled"  # "expected": every chain of a sample is rewarded and the choice's
                                       # clipped surrogate is averaged over c ~ pi_old exactly
    advantage: str = "gae"          # "gae": GAE over the steps with the value head; "group": every step of a
                                    # sample gets its reward minus the mean over the scene's M samples
    target_kl: float = 0.0          # > 0: skip a minibatch step once its approx KL exceeds this

    @classmethod
    def from_config(cls, c) -> "PPOHyper":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (type(getattr(cls, k))(c[k])) for k in names if k in c})


# --------------------------------------------------------------------------------------------------
# Rollout.

@struct.dataclass
class Chain:
    """x_in [B,M,T,*E] states x_k of the fine-tuned steps; x_out [B,M,T,*E] sampled x_{k-1};
    logp [B,M,T] log pi(x_out | x_in) of the Gaussian denoising steps; x0 [B,M,*E] the chain's end;
    choice [B,M] int the executed chain (0 when the policy has no choice); choice_state [B,M,*E] the
    input of the last denoising step (the mode logits are computed there); choice_logp [B,M]
    log softmax(logits)[choice] (0 without choices).

    With C > 0 choices the MDP has S = T + 1 policy steps: the T Gaussian denoising steps, then the
    categorical choice, each with its own PPO ratio (a 384-dimensional Gaussian ratio would otherwise
    swamp the choice's). T may be 0: then only the choice is trained and the chain is the reference's."""
    x_in: Any
    x_out: Any
    logp: Any
    x0: Any
    choice: Any
    choice_state: Any = None
    choice_logp: Any = None
    choice_logits: Any = None     # [B, M, C] the (tempered) logits the choice was drawn from


def finetuned_ks(num_steps: int, finetune_steps: int) -> np.ndarray:
    """[T] the k of each fine-tuned step (the last T of K): T, T-1, ..., 1 (empty for T = 0: only the
    chain choice is a policy step, see :class:`Chain`)."""
    if not 0 <= finetune_steps <= num_steps:
        raise ValueError(f"ppo.finetune_steps must be in [0, {num_steps}] (denoising steps; 0 = train only "
                         f"the chain choice), got {finetune_steps}")
    return np.arange(finetune_steps, 0, -1, dtype=np.int32)


def step_stds(sigmas, log_std, bound):
    """[T] std of the fine-tuned steps: schedule (last T entries) x exp(clip(log_std))."""
    T = log_std.shape[0]   # (with finetune_steps = 0 the one unused entry is never read)
    sig = jnp.asarray(sigmas)
    return sig[sig.shape[0] - T:] * jnp.exp(jnp.clip(log_std, -bound, bound))   # (not [-T:]: T may be 0)


def rollout(adapter: PolicyAdapter, pp, ref_pp, tokens, batch, rng, hp: PPOHyper, sigmas, log_std) -> Chain:
    """Sample M chains per scene: frozen prefix steps with ``ref_pp``, fine-tuned steps with ``pp``.

    Frozen steps add their schedule noise except the very last denoising step (T = 0), whose output is
    the executed trajectory and stays the reference's deterministic mean, as at evaluation. With
    choices, the last fine-tuned step first draws the executed chain c (logits at its input), then noise
    only for that chain (the others' outputs are discarded, so they stay at their means): its Gaussian
    log-prob covers one chain's 24 coordinates, not all C x 24 (whose noise would be irrelevant to the
    reward and only add variance to the ratio). The K denoising steps are a static Python loop (K is
    small: 2 DDIM steps by default)."""
    K, T, M = adapter.num_steps, hp.finetune_steps, hp.samples_per_scene
    keys = jax.random.split(rng, K + 2)
    x = adapter.init_noise(pp, tokens, batch, keys[0], M)
    ev = x.ndim - 2
    stds = step_stds(sigmas, log_std, hp.log_std_bound)
    factor = noise_factor(hp.noise, x.shape[-2])
    xs_in, xs_out, logps = [], [], []
    logits, x_last_in, choice = None, x, None
    C = adapter.num_choices
    for j in range(K):
        k = K - j
        x_last_in = x
        if j < K - T:
            mean, logits = adapter.denoise_mean(ref_pp, tokens, x, k)
            if j == K - 1:
                if adapter.num_choices:  # T = 0: the choice's logits come from the trained policy
                    logits = adapter.denoise_mean(pp, tokens, x, k)[1]
                x = mean
            else:
                x = mean + float(sigmas[j]) * jax.random.normal(keys[j + 1], x.shape)
            continue
        s = stds[j - (K - T)]
        mean, logits = adapter.denoise_mean(pp, tokens, x, k)
        if C and j == K - 1:   # the executed chain first; noise for it alone
            choice = jax.random.categorical(keys[-1], logits / hp.choice_temperature, axis=-1)
            eps = jnp.einsum("ij,...jc->...ic", factor, jax.random.normal(keys[j + 1], x.shape[:2] + x.shape[3:]))
            x_next = mean + s * jax.nn.one_hot(choice, C)[..., None, None] * eps[:, :, None]
            lp = gaussian_log_prob(chosen(x_next, choice), chosen(mean, choice), s, 2, factor)
        else:
            x_next = mean + s * jnp.einsum("ij,...jc->...ic", factor, jax.random.normal(keys[j + 1], x.shape))
            lp = gaussian_log_prob(x_next, mean, s, ev, factor)
        xs_in.append(x); xs_out.append(x_next); logps.append(lp)
        x = x_next
    B = x.shape[0]
    if C:
        logits = logits / hp.choice_temperature
        if choice is None:   # T = 0
            choice = jax.random.categorical(keys[-1], logits, axis=-1)
        choice = jax.random.categorical(keys[-1], logits, axis=-1)
        choice_logp = categorical_log_prob(logits, choice)
    else:
        choice = jnp.zeros((B, M), jnp.int32)
        choice_logp = jnp.zeros((B, M), jnp.float32)
    if T:
        st = lambda v: jnp.stack(v, 2)  # noqa: E731  T x [B, M, ...] -> [B, M, T, ...]
        x_in, x_out, logp = st(xs_in), st(xs_out), st(logps)
    else:
        x_in = x_out = jnp.zeros((B, M, 0) + x.shape[2:], x.dtype)
        logp = jnp.zeros((B, M, 0), jnp.float32)
    return Chain(x_in=x_in, x_out=x_out, logp=logp, x0=x, choice=choice, choice_state=x_last_in,
                 choice_logp=choice_logp, choice_logits=logits if C else None)


def chosen(x, choice):
    """x [B, M, C, ...], choice [B, M] int -> [B, M, ...] the selected chain."""
    idx = choice.reshape(choice.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=2)[:, :, 0]


def chain_log_prob(adapter: PolicyAdapter, pp, tokens, chain: Chain, hp: PPOHyper, sigmas, log_std):
    """Recompute the log-probs [B, M, S] of the S policy steps under ``pp``: the T Gaussian denoising
    steps, then (with choices) the categorical choice. Also returns the mean categorical entropy of the
    choice (0 without choices) and the tempered choice logits [B, M, C] (None without choices)."""
    ks = finetuned_ks(adapter.num_steps, hp.finetune_steps)
    stds = step_stds(sigmas, log_std, hp.log_std_bound)
    ev = chain.x_in.ndim - 3
    factor = noise_factor(hp.noise, chain.x_in.shape[-2])
    out, ent, logits = [], jnp.zeros(()), None
    for t, k in enumerate(ks):
        mean, logits = adapter.denoise_mean(pp, tokens, chain.x_in[:, :, t], int(k))
        if adapter.num_choices and t == len(ks) - 1:   # only the executed chain is an action (rollout)
            out.append(gaussian_log_prob(chosen(chain.x_out[:, :, t], chain.choice), chosen(mean, chain.choice),
                                         stds[t], 2, factor))
        else:
            out.append(gaussian_log_prob(chain.x_out[:, :, t], mean, stds[t], ev, factor))
    if adapter.num_choices:
        if not len(ks):  # T = 0: the logits of the (frozen) last step's input under pp
            logits = adapter.denoise_mean(pp, tokens, chain.choice_state, 1)[1]
        logits = logits / hp.choice_temperature
        out.append(categorical_log_prob(logits, chain.choice))
        ent = jnp.mean(categorical_entropy(logits))
    return jnp.stack(out, 2), ent, logits


def step_log_probs(chain: Chain, num_choices: int):
    """The rollout's log-probs of the S policy steps [B, M, S] (Gaussian steps, then the choice)."""
    if num_choices:
        return jnp.concatenate([chain.logp, chain.choice_logp[:, :, None]], 2)
    return chain.logp


def step_states(chain: Chain, num_choices: int):
    """States [B, M, S, *E] the value head reads: the choice step's is ``choice_state``."""
    if num_choices:
        return jnp.concatenate([chain.x_in, chain.choice_state[:, :, None]], 2)
    return chain.x_in


def step_ks(ks, num_choices: int) -> np.ndarray:
    """[S] the k of each policy step: the fine-tuned denoising steps' ``ks``, then 0 for the choice."""
    return np.concatenate([ks, [0]]).astype(np.int32) if num_choices else np.asarray(ks, np.int32)


# --------------------------------------------------------------------------------------------------
# The update.

def make_update(adapter: PolicyAdapter, value_graphdef, reward_fn: Callable, hp: PPOHyper,
                tx: optax.GradientTransformation, sigmas) -> Callable:
    """Build ``update(state, static, batch) -> (state, metrics)`` (jit it once; donate ``state``).

    static = {"frozen": frozen policy params, "ref": reference (IL) trainable params, ...anything the
    reward needs}; batch: a pytree with leading axis B (scenes), B divisible by ``num_minibatches``.
    reward_fn(static, batch, tokens, traj [B,M,8,3]) -> (reward [B,M], info dict of [B,M] arrays).
    metrics: scalars plus "mb_ratio", "mb_clipfrac", "mb_approx_kl" [epochs, num_minibatches].
    """
    sigmas = np.asarray(sigmas, np.float32)
    if len(sigmas) != adapter.num_steps:
        raise ValueError(f"std schedule has {len(sigmas)} entries, the planner {adapter.num_steps} steps")
    ks_np = finetuned_ks(adapter.num_steps, hp.finetune_steps)
    T, C = hp.finetune_steps, adapter.num_choices
    if hp.advantage not in ("gae", "group"):
        raise ValueError(f"ppo.advantage must be 'gae' or 'group', got {hp.advantage!r}")
    if T == 0 and not C:
        raise ValueError("ppo.finetune_steps=0 trains only the chain choice, but this policy has no choice "
                         "(num_choices=0); set ppo.finetune_steps >= 1")

    ks_all = step_ks(ks_np, C)
    expected = hp.choice_objective == "expected"
    if hp.choice_objective not in ("sampled", "expected"):
        raise ValueError(f"ppo.choice_objective must be 'sampled' or 'expected', got {hp.choice_objective!r}")
    if expected and not C:
        raise ValueError("ppo.choice_objective='expected' needs a policy with a chain choice (num_choices > 0)")

    def gauss_entropy(log_std, event_size):
        if T == 0:
            return jnp.zeros(())
        return jnp.mean(gaussian_entropy(step_stds(sigmas, log_std, hp.log_std_bound), event_size))

    def ref_kl(pp, ref_pp, tokens, x_in, log_std):
        """KL(N(mu, s^2 LL^T) || N(mu_ref, s^2 LL^T)) = |L^-1 (mu - mu_ref)|^2 / (2 s^2), per chain
        (summed over its 8 x 3 coordinates), averaged over scenes, samples, steps and chains."""
        stds = step_stds(sigmas, log_std, hp.log_std_bound)
        linv = jnp.asarray(np.linalg.inv(noise_factor(hp.noise, x_in.shape[-2]).astype(np.float64)), jnp.float32)
        kls = []
        for t, k in enumerate(ks_np):
            mu = adapter.denoise_mean(pp, tokens, x_in[:, :, t], int(k))[0]
            mu_ref = jax.lax.stop_gradient(adapter.denoise_mean(ref_pp, tokens, x_in[:, :, t], int(k))[0])
            d = jnp.einsum("ij,...jc->...ic", linv, mu - mu_ref) / jax.lax.stop_gradient(stds[t])
            kls.append(0.5 * jnp.mean(jnp.sum(d * d, (-2, -1))))
        return jnp.mean(jnp.stack(kls)) if kls else jnp.zeros(())

    def value_apply(vstate, feats, x, ks):
        return nnx.merge(value_graphdef, vstate)(feats, x, ks)

    def loss_fn(params, static, mb, rng):
        pp = (params["policy"], static["frozen"])
        tokens = mb["tokens"] if hp.freeze_encoders else adapter.encode(pp, mb["batch"])
        chain = Chain(x_in=mb["x_in"], x_out=mb["x_out"], logp=None, x0=None, choice=mb["choice"],
                      choice_state=mb["choice_state"])
        logp, cat_ent, logits = chain_log_prob(adapter, pp, tokens, chain, hp, sigmas, params["log_std"])
        if expected:
            # Gaussian steps: sampled surrogate; the choice: E_{c ~ pi_old}[clipped surrogate] exactly.
            if T:
                g_loss, ratio, clipfrac = clipped_surrogate(logp[..., :T], mb["logp"][..., :T], mb["adv"][..., :T],
                                                            hp.clip_eps)
            else:
                g_loss, ratio, clipfrac = jnp.zeros(()), jnp.ones(()), jnp.zeros(())
            lp_new, lp_old = jax.nn.log_softmax(logits, -1), jax.nn.log_softmax(mb["choice_logits"], -1)
            r_c = jnp.exp(lp_new - lp_old)
            a_c = mb["choice_adv"]
            surr = jnp.minimum(r_c * a_c, jnp.clip(r_c, 1.0 - hp.clip_eps, 1.0 + hp.clip_eps) * a_c)
            pg_loss = g_loss - jnp.mean(jnp.sum(jnp.exp(lp_old) * surr, -1))
        else:
            pg_loss, ratio, clipfrac = clipped_surrogate(logp, mb["logp"], mb["adv"], hp.clip_eps)
        feats = jax.lax.stop_gradient(adapter.features(tokens))
        v = value_apply(params["value"], feats, mb["states"], jnp.asarray(ks_all))
        v_loss = 0.5 * jnp.mean((v - mb["ret"]) ** 2)
        ent = gauss_entropy(params["log_std"], int(np.prod(mb["x_in"].shape[3:]))) + cat_ent
        bc = adapter.bc_loss(pp, tokens, mb["batch"], rng) if hp.bc_weight > 0 else jnp.zeros(())
        kl_ref = (ref_kl(pp, (static["ref"], static["frozen"]), tokens, mb["x_in"], params["log_std"])
                  if hp.kl_ref_coef > 0 else jnp.zeros(()))
        total = pg_loss + hp.vf_coef * v_loss - hp.ent_coef * ent + hp.bc_weight * bc + hp.kl_ref_coef * kl_ref
        log_ratio = logp - mb["logp"]
        kl = (jnp.exp(log_ratio) - 1.0) - log_ratio                     # [b, M, S] per-step estimate
        approx_kl = jnp.mean(kl)
        out = dict(loss=total, pg_loss=pg_loss, v_loss=v_loss, entropy=ent, bc_loss=bc, kl_ref=kl_ref,
                   ratio=jnp.mean(ratio), clipfrac=clipfrac, approx_kl=approx_kl)
        if expected:
            out["choice_approx_kl"] = jnp.mean(jnp.sum(jnp.exp(lp_old) * (lp_old - lp_new), -1))   # exact KL
            out["choice_entropy"] = cat_ent
        elif C:
            out["choice_approx_kl"] = jnp.mean(kl[..., -1])
            out["choice_entropy"] = cat_ent
        return total, out

    def update(state: PPOState, static, batch):
        rng, r_roll, r_perm, r_bc = jax.random.split(state.rng, 4)
        params = state.params
        pp = (params["policy"], static["frozen"])
        ref_pp = (static["ref"], static["frozen"])
        tokens = jax.lax.stop_gradient(adapter.encode(pp, batch))
        chain = rollout(adapter, pp, ref_pp, tokens, batch, r_roll, hp, sigmas, params["log_std"])
        chain = jax.lax.stop_gradient(chain)
        if expected:   # reward every chain of every sample: [B, M * C] trajectories
            Bn, Mn = chain.choice.shape
            x_all = chain.x0.reshape((Bn, Mn * C, 1) + chain.x0.shape[3:])
            traj = adapter.to_traj(x_all, jnp.zeros((Bn, Mn * C), jnp.int32), batch)
            r_all, info = reward_fn(static, batch, tokens, traj)
            r_all = r_all.astype(jnp.float32).reshape(Bn, Mn, C)
            info = {k: chosen(v.reshape(Bn, Mn, C), chain.choice) for k, v in info.items()}
            reward = chosen(r_all, chain.choice)
        else:
            traj = adapter.to_traj(chain.x0, chain.choice if adapter.num_choices else None, batch)
            reward, info = reward_fn(static, batch, tokens, traj)
            reward = reward.astype(jnp.float32)
        finite = jnp.all(jnp.isfinite(reward))
        safe_reward = jnp.where(jnp.isfinite(reward), reward, 0.0)
        feats = adapter.features(tokens)
        states = step_states(chain, C)
        values = value_apply(params["value"], feats, states, jnp.asarray(ks_all))       # [B, M, S]
        rewards = jnp.zeros_like(values).at[..., -1].set(safe_reward)
        dones = jnp.zeros_like(values).at[..., -1].set(1.0)
        adv, ret = gae(rewards, values, dones, jnp.zeros_like(safe_reward), hp.gamma, hp.gae_lambda)
        if hp.advantage == "group":  # per-scene baseline (RLOO/GRPO-style); the value head still fits ret
            adv = jnp.broadcast_to(group_advantage(safe_reward)[..., None], values.shape)
        if hp.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-6)
        extra = {}
        if expected:   # A_c = R_c - E_{pi_old}[R], per sample
            r_all = jnp.where(jnp.isfinite(r_all), r_all, 0.0)
            pi_old = jax.nn.softmax(chain.choice_logits, -1)
            a_c = r_all - jnp.sum(pi_old * r_all, -1, keepdims=True)
            if hp.normalize_advantages:
                a_c = a_c / (jnp.sqrt(jnp.sum(pi_old * a_c ** 2, -1).mean()) + 1e-6)
            extra = dict(choice_adv=a_c, choice_logits=chain.choice_logits)
        B = reward.shape[0]
        nmb = hp.num_minibatches
        if B % nmb:
            raise ValueError(f"PPO: batch of {B} scenes is not divisible by ppo.num_minibatches={nmb}")
        data = dict(batch=batch, tokens=tokens, x_in=chain.x_in, x_out=chain.x_out,
                    logp=step_log_probs(chain, C), choice=chain.choice, choice_state=chain.choice_state,
                    states=states, adv=adv, ret=ret, **extra)

        def mb_step(carry, inp):
            p, o = carry
            idx, key = inp
            mb = jax.tree.map(lambda a: jnp.take(a, idx, axis=0), data)
            grads, m = jax.grad(loss_fn, has_aux=True)(p, static, mb, key)
            upd, o_new = tx.update(grads, o, p)
            p_new = optax.apply_updates(p, upd)
            if hp.target_kl > 0:  # PPO early stop: the policy already moved too far from the rollout's
                go = m["approx_kl"] <= hp.target_kl
                p_new, o_new = jax.tree.map(lambda a, b: jnp.where(go, a, b), (p_new, o_new), (p, o))
                m["skipped"] = 1.0 - go.astype(jnp.float32)
            else:
                m["skipped"] = jnp.zeros(())
            m["grad_norm"] = optax.global_norm(grads)
            return (p_new, o_new), m

        def epoch(carry, key):
            kp, kb = jax.random.split(key)
            perm = jax.random.permutation(kp, B).reshape(nmb, B // nmb)
            return jax.lax.scan(mb_step, carry, (perm, jax.random.split(kb, nmb)))

        (new_p, new_o), ms = jax.lax.scan(epoch, (params, state.opt_state),
                                          jax.random.split(r_perm, hp.epochs))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = PPOState(params=keep(new_p, params), opt_state=keep(new_o, state.opt_state),
                             step=state.step + finite.astype(state.step.dtype), rng=rng)
        metrics = {k: jnp.mean(v) for k, v in ms.items()}
        metrics.update(mb_ratio=ms["ratio"], mb_clipfrac=ms["clipfrac"], mb_approx_kl=ms["approx_kl"])
        metrics.update(reward_mean=jnp.mean(safe_reward), reward_std=jnp.std(safe_reward),
                       reward_nonfinite=jnp.sum(~jnp.isfinite(reward)), reward_finite=finite,
                       value_mean=jnp.mean(values), adv_raw_std=jnp.std(ret - values),
                       std_last=(step_stds(sigmas, params["log_std"], hp.log_std_bound)[-1] if T
                                 else jnp.zeros(())))
        for k, v in info.items():
            metrics[f"rollout_{k}"] = jnp.mean(v)
        return new_state, metrics

    return update


def check_finite(metrics, update_index: int, reward_source: str) -> None:
    """Host check once per update, BEFORE saving: raise NonFiniteRewardError on a NaN/inf reward."""
    if not bool(np.asarray(metrics["reward_finite"])):
        n = int(np.asarray(metrics["reward_nonfinite"]))
        raise NonFiniteRewardError(
            f"PPO update {update_index}: {n} non-finite reward(s) from reward source '{reward_source}'; "
            f"the update was not applied and no checkpoint was written for it (check the RWM checkpoint "
            f"/ scorer inputs, or lower ppo.lr)")


def init_state(policy_params, value_state, finetune_steps: int, tx, rng) -> PPOState:
    # log_std [max(T, 1)]: with T = 0 one unused entry (Orbax cannot save zero-size arrays).
    params = {"policy": policy_params, "value": value_state,
              "log_std": jnp.zeros((max(finetune_steps, 1),), jnp.float32)}
    return PPOState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32), rng=rng)


def make_optimizer(lr: float, max_grad_norm: float, weight_decay: float = 0.0,
                   choice_lr: float = 0.0, choice_key: str = "mode_head") -> optax.GradientTransformation:
    """Clipped AdamW over the PPO params; with ``choice_lr > 0``, the policy leaves under a dict key
    ``choice_key`` (the planner's mode head: the chain choice) use ``choice_lr`` and the rest ``lr``
    (the choice's 65 weights tolerate far larger steps than the denoiser's)."""
    if choice_lr <= 0:
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adamw(lr, weight_decay=weight_decay))

    def labels(params):
        def lab(path, _):
            keys = [getattr(k, "key", None) for k in path]
            return "choice" if keys and keys[0] == "policy" and choice_key in keys[1:] else "base"
        return jax.tree_util.tree_map_with_path(lab, params)

    return optax.chain(optax.clip_by_global_norm(max_grad_norm),
                       optax.multi_transform({"base": optax.adamw(lr, weight_decay=weight_decay),
                                              "choice": optax.adamw(choice_lr, weight_decay=weight_decay)},
                                             labels))


def ppo_loop(update: Callable, state: PPOState, static, next_batch: Callable[[int], Any], num_updates: int,
             *, reward_source: str, start: int = 0, save_fn: Callable | None = None,
             log_fn: Callable | None = None, progress: bool = True):
    """Host loop: for u in [start, num_updates): state = update(state, static, next_batch(u)); check the
    reward on the host (NaN -> NonFiniteRewardError, raised before ``save_fn(u + 1, state)``); then log.
    Returns (state, list of per-update host metrics)."""
    from tqdm import tqdm
    history = []
    it = range(start, num_updates)
    bar = tqdm(it, desc=f"ppo[{reward_source}]", disable=not progress, leave=False)
    for u in bar:
        state, metrics = update(state, static, next_batch(u))
        host = jax.device_get(metrics)
        check_finite(host, u, reward_source)
        scalars = {k: float(np.asarray(v)) for k, v in host.items() if np.asarray(v).ndim == 0}
        history.append(scalars)
        if log_fn is not None:
            log_fn(u + 1, scalars)
        if save_fn is not None:
            save_fn(u + 1, state)
        bar.set_postfix(reward=f"{scalars['reward_mean']:.3f}", kl=f"{scalars['approx_kl']:.4f}")
    return state, history
