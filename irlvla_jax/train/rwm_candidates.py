"""The Reward World Model's training candidates: what the RWM stage (train/reward.py) labels with the true
scorer, per scene [B, N, 8, 3] (metres / radians, ego frame at t0), in the order of :func:`layout` (source ids
into :data:`SOURCES`): the IL policy's K anchor chains, noisy copies of them, perturbed experts and the expert,
the anchors, PPO-rollout samples and time-warped chains (train/reward.py's docstring says why each)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax.models import planner as planner_lib
from irlvla_jax.train.ppo_core import noise_factor

WARP_SPEED = (0.4, 1.2)   # rwm.warped_chains: the policy chain's pace x U(0.4, 1.2)
SOURCES = ("policy", "noisy", "expert_perturbed", "expert", "anchor", "ppo", "warped")
# The candidates drawn from the policy's own chains (what PPO asks the RWM to rank): their pairs weigh more in the
# ranking loss (rwm.policy_rank_boost).
POLICY_SOURCES = ("policy", "noisy", "ppo", "warped")


def time_warp(traj, speed):
    """traj [B, 8, 3] (poses at 0.5 .. 4 s, ego frame at t0), speed [B, P] -> [B, P, 8, 3]: each plan
    replayed at ``speed`` x its pace along its own path (linear between poses, the t0 pose the origin;
    extrapolates past 4 s for speed > 1)."""
    pts = jnp.concatenate([jnp.zeros((traj.shape[0], 1, 3), traj.dtype), traj], 1)   # [B, 9, 3] at t = 0..4 s
    t = jnp.arange(1, 9, dtype=jnp.float32) * 0.5
    q = speed[..., None] * t / 0.5                                              # [B, P, 8] in 0.5 s units
    i = jnp.clip(jnp.floor(q), 0, 7).astype(jnp.int32)
    f = (q - i)[..., None]
    p0 = jax.vmap(lambda p, ii: p[ii])(pts, i)                                   # [B, P, 8, 3]
    p1 = jax.vmap(lambda p, ii: p[ii])(pts, i + 1)
    return p0 + f * (p1 - p0)


def perturb_expert(expert, rng, num: int):
    """expert [B, 8, 3] -> [B, num, 8, 3] perturbed copies (time warp, lateral / longitudinal ramps,
    rotation about the ego), each component on with probability 1/2."""
    B = expert.shape[0]
    ks = jax.random.split(rng, 5)
    u = lambda k, lo, hi: jax.random.uniform(k, (B, num), minval=lo, maxval=hi)  # noqa: E731
    on = jax.random.bernoulli(ks[4], 0.5, (4, B, num))
    s = jnp.where(on[0], u(ks[0], 0.4, 1.5), 1.0)
    d = jnp.where(on[1], u(ks[1], -3.5, 3.5), 0.0)
    lon = jnp.where(on[2], u(ks[2], -4.0, 4.0), 0.0)
    a = jnp.where(on[3], u(ks[3], -0.25, 0.25), 0.0)
    t = jnp.arange(1, 9, dtype=jnp.float32) * 0.5
    w = time_warp(expert, s)
    h = w[..., 2]
    r = (t / 4.0)[None, None]
    x = w[..., 0] + lon[..., None] * r * jnp.cos(h) - d[..., None] * r * jnp.sin(h)
    y = w[..., 1] + lon[..., None] * r * jnp.sin(h) + d[..., None] * r * jnp.cos(h)
    v = jnp.maximum(jnp.linalg.norm(expert[:, -1, :2], axis=-1) / 4.0, 1.0)[:, None, None]
    h = h + d[..., None] * 0.25 / v
    ca, sa = jnp.cos(a)[..., None], jnp.sin(a)[..., None]
    x, y = ca * x - sa * y, sa * x + ca * y
    return jnp.stack([x, y, h + a[..., None]], -1)


def ppo_samples(planner, tokens, rng, num: int, sigma: float, factor, sched):
    """[B, num * K, 8, 3] metres: ``num`` samples of all K anchor chains drawn exactly as a PPO rollout
    draws them (every DDIM step's mean plus sigma L z, L the PPO noise factor over the poses): the
    distribution the RL policy asks the RWM about."""
    B = tokens.cmd.shape[0]
    K = planner.anchors[...].shape[0]
    keys = jax.random.split(rng, len(sched.timesteps) + 1)
    x = planner.init_chains(keys[0], B * num, 1)                                  # [B*num, K, 8, 3]
    tok = jax.tree.map(lambda a: jnp.repeat(a, num, axis=0), tokens)
    for k in range(len(sched.timesteps)):
        mean, _, _ = planner.step_mean(tok, x, k, sched)
        z = jnp.einsum("ij,...jc->...ic", jnp.asarray(factor), jax.random.normal(keys[k + 1], x.shape))
        x = mean + sigma * z
    return planner_lib.denormalise(x, sched).reshape(B, num * K, 8, 3)


def ppo_noise_of(config):
    """(sigma, factor [8, 8]) of the PPO exploration noise (config section ``ppo``)."""
    return float(config.ppo.sigma), noise_factor(str(config.ppo.noise))


def make_candidates(model, tokens, scenes, rng, rc, sched, ppo_noise=None):
    """-> (candidates [B, N, 8, 3] metres/radians, source id [N] int (index into SOURCES)).

    ``model``: the merged (frozen) VLA; ``rc``: config.rwm; ``sched``: the planner's schedule;
    ``ppo_noise``: (sigma, factor [8, 8]) of the PPO exploration (``rwm.ppo_samples`` > 0 needs it)."""
    B = tokens.cmd.shape[0]
    k1, k2, k3, k4 = jax.random.split(rng, 4)
    _, allx, _ = model.planner.sample(tokens, k1, int(rc.policy_samples), return_scores=True)
    K = allx.shape[2]
    pol = allx.reshape(B, -1, 8, 3)                                              # [B, S*K, 8, 3]
    parts = [pol]
    n_noisy = int(rc.noisy_chains)
    if n_noisy:
        pick = jax.random.randint(k2, (B, n_noisy), 0, pol.shape[1])
        base = planner_lib.normalise(jnp.take_along_axis(pol, pick[..., None, None], 1), sched)
        std = jax.random.uniform(k3, (B, n_noisy, 1, 1), maxval=float(rc.noise_std))
        z = jax.random.normal(k4, base.shape)
        n_smooth = int(round(n_noisy * float(rc.smooth_noise_frac)))
        if n_smooth:  # the last n_smooth chains: smooth noise L z over the pose axis (PPO's "smooth" noise)
            zs = jnp.einsum("ij,bnjc->bnic", jnp.asarray(noise_factor("smooth", 8)), z)
            z = jnp.where((jnp.arange(n_noisy) >= n_noisy - n_smooth)[None, :, None, None], zs, z)
        noisy = planner_lib.denormalise(base + std * z, sched)
        parts.append(noisy)
    expert = scenes.expert_future.astype(jnp.float32)
    n_pert = int(rc.expert_perturbations)
    if n_pert:
        parts.append(perturb_expert(expert, jax.random.fold_in(rng, 7), n_pert))
    parts.append(expert[:, None])
    if bool(rc.use_anchors):
        anchors = model.planner.anchors[...]
        parts.append(jnp.broadcast_to(anchors[None], (B, K, 8, 3)))
    n_ppo = int(rc.ppo_samples)
    if n_ppo:
        sigma, factor = ppo_noise
        parts.append(ppo_samples(model.planner, tokens, jax.random.fold_in(rng, 11), n_ppo, sigma, factor, sched))
    n_warp = int(rc.warped_chains)
    if n_warp:
        kw = jax.random.split(jax.random.fold_in(rng, 13), 2)
        pick = jax.random.randint(kw[0], (B, n_warp), 0, pol.shape[1])
        speed = jax.random.uniform(kw[1], (B, n_warp), minval=WARP_SPEED[0], maxval=WARP_SPEED[1])
        base = jnp.take_along_axis(pol, pick[..., None, None], 1).reshape(B * n_warp, 8, 3)
        warped = time_warp(base, speed.reshape(B * n_warp, 1)).reshape(B, n_warp, 8, 3)
        parts.append(warped)
    return jnp.concatenate(parts, 1), layout(rc, K)


def layout(rc, K: int) -> np.ndarray:
    """[N] source ids (indices into :data:`SOURCES`) of the candidates :func:`make_candidates` builds from
    ``rc`` (config.rwm) with K anchors, in order: the one definition of the layout."""
    parts = [np.full(int(rc.policy_samples) * K, 0), np.full(int(rc.noisy_chains), 1),
             np.full(int(rc.expert_perturbations), 2), np.full(1, 3)]
    if bool(rc.use_anchors):
        parts.append(np.full(K, 4))
    parts.append(np.full(int(rc.ppo_samples) * K, 5))
    parts.append(np.full(int(rc.warped_chains), 6))
    return np.concatenate(parts).astype(np.int32)




def candidate_sources(config) -> np.ndarray:
    """[N] source ids of the candidate layout (static, from the config): :func:`layout`."""
    return layout(config.rwm, int(config.data.num_anchors))
