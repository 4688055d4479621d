"""Truncated-diffusion planner around K anchor trajectories (DiffusionDrive-style), with a per-step API.

Shapes: B scenes, C chains per scene (C = K anchors, or M*K when drawing M samples), 8 poses (0.5 ... 4.0 s
at 2 Hz), 3 = (x, y, heading), metres and radians in the ego frame at t0.

Trajectory normalisation (every diffusion quantity lives in normalised space)::

    x_norm = (x - offset) / scale,   offset, scale = config.model.planner.norm_offset / norm_scale  (3,)

e.g. offset (20, 0, 0), scale (20, 8, 0.5) maps a 0 ... 40 m forward plan to [-1, 1] in x, +-8 m to
[-1, 1] in y and +-0.5 rad to [-1, 1] in heading. :func:`normalise` / :func:`denormalise` do this.

Noise schedule: DDPM betas linear in [beta_start, beta_end] over ``train_timesteps`` (T) steps;
``abar[t] = prod_{s<=t} (1 - beta_s)``, with ``abar[-1] := 1`` (clean). Truncation: training draws
t ~ U{0, ..., trunc_steps-1} only, and sampling starts from noisy anchors at t = trunc_steps - 1:

    x_init = sqrt(abar[t0]) * anchor_norm + sqrt(1 - abar[t0]) * eps,  eps ~ N(0, I)

Training (stage 1, :meth:`Planner.imitation_loss`): all K anchors are noised (independent t per chain),
the network predicts the clean trajectory x0 of every chain and a mode logit; the positive anchor is
the one closest to the expert (mean xy distance over the 8 poses); losses = L1 between the positive
chain's x0 and the normalised expert, and cross-entropy of the mode logits against the positive index.

DDIM sampling (``ddim_steps`` = n, default 2): timesteps t_k = floor(linspace(trunc-1, 0, n+1))[k],
k = 0 ... n-1, previous timestep s_k = t_{k+1} (s_{n-1} = -1, the clean end). Step k from x_k at t_k:

    x0_k, logits_k = denoise(tokens, x_k, t_k)
    eps_k   = (x_k - sqrt(abar[t_k]) x0_k) / sqrt(1 - abar[t_k])
    sig_k   = eta * sqrt((1 - abar[s_k]) / (1 - abar[t_k])) * sqrt(1 - abar[t_k] / abar[s_k])   (DDIM sigma)
    mean_k  = sqrt(abar[s_k]) x0_k + sqrt(max(1 - abar[s_k] - sig_k^2, 0)) eps_k
    std_k   = max(sig_k, min_std)                                      (a constant per step k)
    x_{k+1} = mean_k + std_k * z,   z ~ N(0, I)      (with eta = 0 and min_std = 0: deterministic DDIM)

The last step (s = -1) has sig = 0, mean = x0, so its std is min_std. The final trajectory is x_n, and
the chain's mode score is logits_{n-1}.

**PPO view**: each denoising step k is a Gaussian policy step over the 24 normalised
coordinates of one chain, pi_k(x_{k+1} | x_k, scene) = N(mean_k, std_k^2 I), mean_k a deterministic
differentiable function of the parameters (:meth:`Planner.step_mean`), std_k fixed by (eta, min_std)
(:func:`step_stds`, numpy, static). Log-probability: :func:`gaussian_log_prob` (summed over the 8 x 3
coordinates, natural log, normalised units). :meth:`Planner.sample_chain` returns the whole chain (x_0 ...
x_n, means, log-probs, mode logits) in one pass; re-evaluating the log-prob of a stored transition under
new parameters is ``gaussian_log_prob(x_{k+1}, step_mean(params', x_k, k), std_k)``.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from irlvla_jax.models.layers import MLP, Attention, dtype_of, sinusoidal

N_POSES, POSE_DIM = 8, 3


class Anchors(nnx.Variable):
    """Anchor trajectories [K, 8, 3] (metres, radians): fixed, saved with the model, not trained."""


# ---------------------------------------------------------------------------------------------------
# Schedule (numpy, static).

@struct.dataclass
class Schedule:
    """Static diffusion schedule. abar [T] float32; timesteps [n] int; prev [n] int (-1 = clean);
    offset, scale [3] normalisation; eta, min_std floats."""
    abar: Any = struct.field(pytree_node=False)
    timesteps: Any = struct.field(pytree_node=False)
    prev: Any = struct.field(pytree_node=False)
    offset: Any = struct.field(pytree_node=False)
    scale: Any = struct.field(pytree_node=False)
    trunc: int = struct.field(pytree_node=False)
    eta: float = struct.field(pytree_node=False)
    min_std: float = struct.field(pytree_node=False)


class ScheduleKey(NamedTuple):
    """Everything that defines a :class:`Schedule`, hashable (stored on the module as static metadata)."""
    train_timesteps: int
    trunc_steps: int
    ddim_steps: int
    beta_start: float
    beta_end: float
    norm_offset: tuple
    norm_scale: tuple
    eta: float
    min_std: float


def schedule_key(pcfg, ddim_steps: int | None = None, eta: float | None = None,
                 min_std: float | None = None) -> ScheduleKey:
    """The :class:`ScheduleKey` of ``config.model.planner`` (overrides for ddim_steps / eta / min_std)."""
    return ScheduleKey(int(pcfg.train_timesteps), int(pcfg.trunc_steps),
                       int(pcfg.ddim_steps if ddim_steps is None else ddim_steps), float(pcfg.beta_start),
                       float(pcfg.beta_end), tuple(float(v) for v in pcfg.norm_offset),
                       tuple(float(v) for v in pcfg.norm_scale), float(pcfg.eta if eta is None else eta),
                       float(pcfg.min_std if min_std is None else min_std))


def make_schedule(pcfg, ddim_steps: int | None = None, eta: float | None = None,
                  min_std: float | None = None) -> Schedule:
    """Schedule from ``config.model.planner`` (overrides for ddim_steps / eta / min_std, e.g. by PPO)."""
    return _schedule_from_key(schedule_key(pcfg, ddim_steps, eta, min_std))


@functools.lru_cache(maxsize=64)
def _schedule_from_key(key: ScheduleKey) -> Schedule:
    T, trunc, n = key.train_timesteps, key.trunc_steps, key.ddim_steps
    beta_start, beta_end, offset, scale, eta, min_std = (key.beta_start, key.beta_end, key.norm_offset,
                                                         key.norm_scale, key.eta, key.min_std)
    if not 1 <= trunc <= T:
        raise ValueError(f"config.model.planner.trunc_steps={trunc} must be in [1, train_timesteps={T}]")
    if not 1 <= n <= trunc:
        raise ValueError(f"config.model.planner.ddim_steps={n} must be in [1, trunc_steps={trunc}]")
    betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
    abar = np.cumprod(1.0 - betas).astype(np.float32)
    ts = np.floor(np.linspace(trunc - 1, 0, n + 1)).astype(np.int32)
    timesteps, prev = ts[:-1], np.concatenate([ts[1:-1], [-1]]).astype(np.int32)
    return Schedule(abar=abar, timesteps=timesteps, prev=prev, offset=np.asarray(offset, np.float32),
                    scale=np.asarray(scale, np.float32), trunc=trunc, eta=eta, min_std=min_std)


def _abar(sched: Schedule, t):
    """abar at integer t (t = -1 -> 1.0). Works for numpy ints and jnp arrays."""
    a = jnp.asarray(np.concatenate([sched.abar, [1.0]]).astype(np.float32))
    return a[jnp.where(jnp.asarray(t) < 0, len(sched.abar), t)]


def ddim_sigmas(sched: Schedule) -> np.ndarray:
    """DDIM sigma_k (before the min_std floor) for every step k, numpy [n]."""
    a = np.concatenate([sched.abar, [1.0]])
    at, As = a[sched.timesteps], a[np.where(sched.prev < 0, len(sched.abar), sched.prev)]
    return (sched.eta * np.sqrt((1 - As) / (1 - at)) * np.sqrt(np.maximum(1 - at / As, 0.0))).astype(np.float32)


def step_stds(sched: Schedule) -> np.ndarray:
    """Policy std of every denoising step k, numpy [n]: max(ddim sigma_k, min_std) (normalised units)."""
    return np.maximum(ddim_sigmas(sched), sched.min_std).astype(np.float32)


def normalise(traj, sched: Schedule):
    """[..., 8, 3] metres/radians -> normalised."""
    return (traj - sched.offset) / sched.scale


def denormalise(x, sched: Schedule):
    """[..., 8, 3] normalised -> metres/radians."""
    return x * sched.scale + sched.offset


def gaussian_log_prob(x, mean, std):
    """log N(x; mean, std^2 I) summed over the last two axes ([..., 8, 3]) -> [...]. std: scalar or [...]."""
    std = jnp.asarray(std, jnp.float32)
    z = (x - mean) / std
    d = x.shape[-1] * x.shape[-2]
    return -0.5 * jnp.sum(z * z, (-1, -2)) - d * (jnp.log(std) + 0.5 * np.log(2 * np.pi))


@struct.dataclass
class Chain:
    """A sampled denoising chain. xs [n+1, B, C, 8, 3] (xs[0] = x_init, xs[n] = final, normalised);
    means [n, B, C, 8, 3]; log_probs [n, B, C] (of xs[k+1] under step k); x0 [n, B, C, 8, 3] the
    predicted clean trajectories; mode_logits [n, B, C]; timesteps [n] int (static copy in schedule)."""
    xs: Any
    means: Any
    log_probs: Any
    x0: Any
    mode_logits: Any


# ---------------------------------------------------------------------------------------------------
# Network.

CONTEXTS = ("meta", "bev", "map", "obj")     # the scene-token families a planner can cross-attend to
KINDS = ("diffusion", "regression")


class PlannerBlock(nnx.Module):
    """Self-attention over chains; cross-attention to meta, BEV, map, object tokens (in that order);
    FFN with timestep/command conditioning (adaptive LayerNorm shift/scale). ``[B, C, D] -> [B, C, D]``."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs, dtype=jnp.float32, contexts=CONTEXTS):
        self.contexts = tuple(contexts)
        self.ln_sa = nnx.LayerNorm(dim, rngs=rngs, dtype=dtype)
        self.sa = Attention(dim, heads, rngs=rngs, dtype=dtype)
        for name in self.contexts:
            setattr(self, f"ln_q_{name}", nnx.LayerNorm(dim, rngs=rngs, dtype=dtype))
            setattr(self, f"ln_c_{name}", nnx.LayerNorm(dim, rngs=rngs, dtype=dtype))
            setattr(self, f"ca_{name}", Attention(dim, heads, rngs=rngs, dtype=dtype))
        self.ln_ff = nnx.LayerNorm(dim, use_scale=False, use_bias=False, rngs=rngs, dtype=dtype)
        self.ada = nnx.Linear(dim, 2 * dim, rngs=rngs, dtype=dtype, kernel_init=nnx.initializers.zeros)
        self.ffn = MLP(dim, 4 * dim, dim, rngs=rngs, dtype=dtype)

    def __call__(self, h, ctx: dict, cond):
        h = h + self.sa(self.ln_sa(h))
        for name in self.contexts:
            c = getattr(self, f"ln_c_{name}")(ctx[name])
            h = h + getattr(self, f"ca_{name}")(getattr(self, f"ln_q_{name}")(h), c)
        shift, scale = jnp.split(self.ada(jax.nn.silu(cond)), 2, -1)
        return h + self.ffn(self.ln_ff(h) * (1 + scale) + shift)


class Planner(nnx.Module):
    """The diffusion decoder. ``denoise(tokens, x_t [B, C, 8, 3], t [B, C]) -> (x0 [B, C, 8, 3], logits [B, C])``."""

    def __init__(self, cfg, anchors, *, rngs: nnx.Rngs):
        p = cfg.planner
        dt = dtype_of(cfg.dtype)
        D = int(cfg.dim)
        anchors = np.asarray(anchors, np.float32)
        if anchors.ndim != 3 or anchors.shape[1:] != (N_POSES, POSE_DIM):
            raise ValueError(f"anchors must have shape [K, 8, 3] (metres, radians), got {anchors.shape}")
        self.sched_key = schedule_key(p)   # hashable static metadata; the Schedule itself is derived
        self.anchors = Anchors(jnp.asarray(anchors))
        self.num_layers = int(p.layers)
        self.t_mlp = MLP(D, D, D, rngs=rngs, dtype=dt)
        self.x_in = MLP(N_POSES * POSE_DIM, D, D, rngs=rngs, dtype=dt)
        self.pose_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (D,)))
        self.kind = str(p.kind)
        self.blocks = nnx.List([PlannerBlock(D, int(p.heads), rngs=rngs, dtype=dt, contexts=tuple(p.contexts))
                                for _ in range(self.num_layers)])
        self.ln_out = nnx.LayerNorm(D, rngs=rngs, dtype=dt)
        self.pose_head = nnx.Linear(D, N_POSES * POSE_DIM, rngs=rngs)
        self.mode_head = nnx.Linear(D, 1, rngs=rngs)
        self.dim = D

    @property
    def sched(self) -> Schedule:
        """The default schedule of this planner (from config.model.planner)."""
        return _schedule_from_key(self.sched_key)

    # -- core --------------------------------------------------------------------------------------
    def hidden(self, tokens, x_t, t):
        """The chain tokens the heads read: tokens: SceneTokens; x_t [B, C, 8, 3] normalised; t [B, C] int
        -> [B, C, D] float32 (after the blocks and the output LayerNorm)."""
        B, C = x_t.shape[:2]
        cond = self.t_mlp(sinusoidal(t, self.dim)) + tokens.cmd.astype(jnp.float32)      # [B, C, D]
        h = self.x_in(x_t.reshape(B, C, N_POSES * POSE_DIM)) + cond + self.pose_pos[...]
        ctx = {"meta": tokens.meta, "bev": tokens.bev, "map": tokens.map, "obj": tokens.obj}
        for blk in self.blocks:
            h = blk(h, ctx, cond)
        return self.ln_out(h).astype(jnp.float32)

    def denoise(self, tokens, x_t, t):
        """tokens: SceneTokens; x_t [B, C, 8, 3] normalised; t [B, C] int -> (x0 [B, C, 8, 3], logits [B, C])."""
        h = self.hidden(tokens, x_t, t)
        x0 = self.pose_head(h).reshape(x_t.shape[:2] + (N_POSES, POSE_DIM))   # direct x0 prediction
        return x0, self.mode_head(h)[..., 0]

    def anchors_norm(self):
        """[K, 8, 3] normalised anchors."""
        return normalise(self.anchors[...], self.sched)

    def init_chains(self, rng, batch: int, num_samples: int = 1):
        """Noisy anchors at t = trunc-1: [B, num_samples * K, 8, 3] normalised (sample-major: chain
        index = m * K + k)."""
        a = self.anchors_norm()
        K = a.shape[0]
        if self.kind == "regression":                      # no noise: the anchors themselves are the queries
            return jnp.broadcast_to(jnp.tile(a, (num_samples, 1, 1))[None], (batch, num_samples * K) + a.shape[1:])
        t0 = int(self.sched.timesteps[0])
        ab = _abar(self.sched, t0)
        eps = jax.random.normal(rng, (batch, num_samples * K, N_POSES, POSE_DIM))
        base = jnp.tile(a, (num_samples, 1, 1))[None]
        return jnp.sqrt(ab) * base + jnp.sqrt(1.0 - ab) * eps

    # -- per-step API (PPO) ---------------------------------------------------------------------------
    def step_mean(self, tokens, x, k: int, sched: Schedule | None = None):
        """Deterministic mean of denoising step k (static int): x [B, C, 8, 3] at t_k ->
        (mean [B, C, 8, 3], x0 [B, C, 8, 3], logits [B, C]). std is ``step_stds(sched)[k]``."""
        s = sched or self.sched
        t, prev = int(s.timesteps[k]), int(s.prev[k])
        B, C = x.shape[:2]
        x0, logits = self.denoise(tokens, x, jnp.full((B, C), t, jnp.int32))
        at, As = _abar(s, t), _abar(s, prev)
        eps = (x - jnp.sqrt(at) * x0) / jnp.sqrt(1.0 - at)
        sig = float(ddim_sigmas(s)[k])
        mean = jnp.sqrt(As) * x0 + jnp.sqrt(jnp.maximum(1.0 - As - sig ** 2, 0.0)) * eps
        return mean, x0, logits

    def sample_chain(self, tokens, rng, x_init, sched: Schedule | None = None) -> Chain:
        """Run the n denoising steps from ``x_init`` [B, C, 8, 3] (normalised). Noise std per step is
        ``step_stds(sched)``; a zero std gives the deterministic mean. Returns a :class:`Chain`."""
        s = sched or self.sched
        if self.kind == "regression":                      # one pass: x0 regressed from the anchors
            B, C = x_init.shape[:2]
            x0, logits = self.denoise(tokens, x_init, jnp.zeros((B, C), jnp.int32))
            return Chain(xs=jnp.stack([x_init, x0]), means=x0[None], log_probs=jnp.zeros((1, B, C)), x0=x0[None],
                         mode_logits=logits[None])
        stds = step_stds(s)
        xs, means, lps, x0s, lgs = [x_init], [], [], [], []
        x = x_init
        for k in range(len(s.timesteps)):
            mean, x0, logits = self.step_mean(tokens, x, k, s)
            if stds[k] > 0:
                rng, sub = jax.random.split(rng)
                x = mean + stds[k] * jax.random.normal(sub, mean.shape)
                lp = gaussian_log_prob(x, mean, stds[k])
            else:
                x, lp = mean, jnp.zeros(mean.shape[:2])
            xs.append(x); means.append(mean); lps.append(lp); x0s.append(x0); lgs.append(logits)
        st = lambda v: jnp.stack(v, 0)
        return Chain(xs=st(xs), means=st(means), log_probs=st(lps), x0=st(x0s), mode_logits=st(lgs))

    def sample(self, tokens, rng, num_samples: int = 1, sched: Schedule | None = None,
               return_scores: bool = False):
        """Draw ``num_samples`` trajectories per scene: each sample runs the K anchor chains (fresh noise)
        and keeps the chain with the highest mode score. -> trajectories [B, M, 8, 3] metres/radians
        (ego frame); with ``return_scores`` also (all [B, M, K, 8, 3], mode probabilities [B, M, K])."""
        s = sched or self.sched
        B = tokens.cmd.shape[0]
        K = self.anchors[...].shape[0]
        r1, r2 = jax.random.split(rng)
        chain = self.sample_chain(tokens, r2, self.init_chains(r1, B, num_samples), s)
        allx = denormalise(chain.xs[-1], s).reshape(B, num_samples, K, N_POSES, POSE_DIM)
        logits = chain.mode_logits[-1].reshape(B, num_samples, K)
        best = jnp.argmax(logits, -1)
        traj = jnp.take_along_axis(allx, best[..., None, None, None], axis=2)[:, :, 0]
        if return_scores:
            return traj, allx, jax.nn.softmax(logits, -1)
        return traj

    # -- imitation -----------------------------------------------------------------------------------
    def imitation_loss(self, tokens, expert, rng):
        """Stage-1 loss. expert [B, 8, 3] metres/radians -> dict(traj_l1, mode_ce, mode_acc)."""
        s = self.sched
        a = self.anchors_norm()
        K = a.shape[0]
        B = expert.shape[0]
        if self.kind == "regression":
            t = jnp.zeros((B, K), jnp.int32)
            x_t = jnp.broadcast_to(a[None], (B,) + a.shape)
        else:
            r1, r2 = jax.random.split(rng)
            t = jax.random.randint(r1, (B, K), 0, s.trunc)
            ab = _abar(s, t)[..., None, None]
            x_t = jnp.sqrt(ab) * a[None] + jnp.sqrt(1.0 - ab) * jax.random.normal(r2, (B, K, N_POSES, POSE_DIM))
        x0, logits = self.denoise(tokens, x_t, t)
        d = jnp.linalg.norm(self.anchors[...][None, :, :, :2] - expert[:, None, :, :2], axis=-1).mean(-1)
        pos = jnp.argmin(d, -1)                                                     # [B]
        x0_pos = jnp.take_along_axis(x0, pos[:, None, None, None], axis=1)[:, 0]
        traj_l1 = jnp.abs(x0_pos - normalise(expert, s)).mean()
        mode_ce = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), pos[:, None], -1).mean()
        mode_acc = (jnp.argmax(logits, -1) == pos).astype(jnp.float32).mean()
        return dict(traj_l1=traj_l1, mode_ce=mode_ce, mode_acc=mode_acc)


def ade_fde(pred, expert):
    """pred [B, 8, 3], expert [B, 8, 3] -> (ADE [B], FDE [B]) in metres (xy only)."""
    d = jnp.linalg.norm(pred[..., :2] - expert[..., :2], axis=-1)
    return d.mean(-1), d[..., -1]
