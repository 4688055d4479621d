"""Stage 3: PPO fine-tuning of the VLA's diffusion planner over its denoising chain (DPPO-style).

    irlvla train --stage ppo --config configs/tiny.py --workdir DIR [--config.ppo.reward=scorer]

The math (rollout, log-probs, GAE, clipped objective, the scan-structured update) is generic and lives
in :mod:`irlvla_jax.train.ppo_core`; this module adapts the VLA (contract 4) to it and runs the loop.

Policy (the VLA's truncated-diffusion planner, ``models/planner.py``): a sample runs the K anchor chains
jointly (they attend to each other) through the ``ddim_steps`` DDIM steps and keeps the chain with the
highest mode score. As an MDP (``ppo_core`` has the details):
  * each fine-tuned denoising step (the last ``ppo.finetune_steps``) is a Gaussian step N(DDIM mean of
    the planner, std^2 L L^T) over the chains' normalised poses, L = I (``ppo.noise = "white"``) or a
    smooth double-integration factor (``"smooth"``); std ``ppo.sigma_max`` ... ``ppo.sigma_min`` times a
    learned per-step scale bounded by exp(+-``log_std_bound``). At the last step only the executed
    chain is perturbed, so its log-prob covers 24 coordinates, not K x 24;
  * the executed chain c ~ Categorical(mode logits / ``ppo.choice_temperature``) is its own policy step
    (own ratio). ``ppo.choice_objective = "expected"`` rewards every chain of a sample and averages
    the choice's clipped surrogate over c ~ pi_old exactly (no sampling noise in the choice's gradient);
    deterministic evaluation takes the argmax chain, as the IL policy does;
  * ``ppo.finetune_steps = 0`` (the tiny/base default, the best of the measured settings, see
    configs/tiny.py) trains only the planner's mode head: every candidate trajectory stays exactly the
    IL planner's and RL learns which one to execute;
  * reward at the chain's end: the RWM's EPDMS-formula reward (``ppo.reward = "rwm"``) or the true
    JAX scorer's EPDMS (``"scorer"``, the ablation), for the trajectory in metres.
The M = ``samples_per_scene`` samples of a scene are independent (tokens repeated M times), unlike
``Planner.sample(num_samples=M)`` which lets all M*K chains attend to each other.

Ablation switches (config section ``ppo``): reward ("rwm" | "scorer"), bc_weight (behaviour cloning
toward the expert: the planner's imitation loss, weights ``il.w_traj`` / ``il.w_mode``), finetune_steps
(the last n of the DDIM steps are policy steps; earlier ones use the frozen IL planner; 0 = only the chain
choice is a policy step and only the planner's mode head is trained, so every candidate trajectory stays
exactly the IL planner's and RL re-ranks them),
samples_per_scene, freeze_encoders (True: only the planner is trained and the scene tokens are those of
the IL encoders, exactly what the RWM was trained on; False: the whole VLA is trained and the RWM still
reads the IL encoders' tokens).

Checkpoints: ``<workdir>/checkpoints/ppo_<reward>`` (Orbax, with the data-iterator state; resumable);
TensorBoard in ``<workdir>/tb/ppo_<reward>``. A non-finite reward stops training with
:class:`~irlvla_jax.train.ppo_core.NonFiniteRewardError` before anything of that update is saved.
:func:`load_policy` gives the evaluation policy ``scenes -> [B, 1, 8, 3]``.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from irlvla_jax.models import planner as planner_lib
from irlvla_jax.scene import SceneSpec
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train import ppo_core as core

REWARD_SOURCES = ("rwm", "scorer")


# --------------------------------------------------------------------------------------------------
# The VLA as a PolicyAdapter.

def trainable_path(config) -> Tuple[str, ...]:
    """Where the PPO-trained sub-tree sits in the VLA params: ``("planner", "mode_head")`` when
    ``ppo.finetune_steps == 0`` (only the chain choice is trained, so every trajectory stays exactly the
    IL planner's), ``("planner",)`` with ``ppo.freeze_encoders``, else ``()`` (everything)."""
    if int(config.ppo.finetune_steps) == 0:
        return ("planner", "mode_head")
    return ("planner",) if bool(config.ppo.freeze_encoders) else ()


def split_trainable(params: Dict[str, Any], path: Tuple[str, ...]):
    """-> (trainable sub-tree at ``path``, the rest (None for path ``()``))."""
    if not path:
        return params, None
    node = params
    for i, name in enumerate(path):
        if not isinstance(node, dict) or name not in node:
            raise ValueError(f"VLA params have no entry {'/'.join(path[:i + 1])!r} "
                             f"(keys {sorted(node) if isinstance(node, dict) else type(node)}); cannot train "
                             f"only that part")
        node = node[name]
    return node, _put(params, path, None)


def _put(tree: Dict[str, Any], path: Tuple[str, ...], value):
    """Copy of the nested dict ``tree`` with ``tree[path] = value`` (path non-empty)."""
    out = dict(tree)
    out[path[0]] = value if len(path) == 1 else _put(tree[path[0]], path[1:], value)
    return out


def merge_trainable(frozen, path: Tuple[str, ...], trainable):
    """Inverse of :func:`split_trainable`: the full VLA params."""
    return _put(frozen, path, trainable) if path else trainable


def pooled_features(tokens):
    """[B, 5 D]: mean of each token family (meta, bev, map, obj, cmd)."""
    return jnp.concatenate([tokens.meta.mean(1), tokens.bev.mean(1), tokens.map.mean(1), tokens.obj.mean(1),
                            tokens.cmd.mean(1)], -1)


def make_vla_adapter(graphdef, consts, config) -> core.PolicyAdapter:
    path = trainable_path(config)
    sched = planner_lib.make_schedule(config.model.planner)
    n_steps = len(sched.timesteps)
    K = int(config.model.planner.num_anchors) if "num_anchors" in config.model.planner else int(config.data.num_anchors)
    w_traj, w_mode = float(config.il.get("w_traj", 1.0)), float(config.il.get("w_mode", 0.5))

    def merge(pp):
        trainable, frozen = pp
        return nnx.merge(graphdef, merge_trainable(frozen, path, trainable), consts)

    def encode(pp, batch):
        return merge(pp).encode(batch)

    def init_noise(pp, tokens, batch, rng, m):
        B = tokens.cmd.shape[0]
        x = merge(pp).planner.init_chains(rng, B * m, 1)
        return x.reshape(B, m, K, 8, 3)

    def denoise_mean(pp, tokens, x, k):
        B, M = x.shape[:2]
        tok = jax.tree.map(lambda a: jnp.repeat(a, M, axis=0), tokens)
        mean, _, logits = merge(pp).planner.step_mean(tok, x.reshape(B * M, K, 8, 3), n_steps - int(k), sched)
        return mean.reshape(x.shape), logits.reshape(B, M, K)

    def to_traj(x0, choice, batch):
        sel = jnp.take_along_axis(x0, choice[:, :, None, None, None], axis=2)[:, :, 0]
        return planner_lib.denormalise(sel, sched)

    def bc_loss(pp, tokens, batch, rng):
        out = merge(pp).planner.imitation_loss(tokens, batch.expert_future.astype(jnp.float32), rng)
        return w_traj * out["traj_l1"] + w_mode * out["mode_ce"]

    return core.PolicyAdapter(encode=encode, init_noise=init_noise, denoise_mean=denoise_mean, to_traj=to_traj,
                              bc_loss=bc_loss, features=pooled_features, num_steps=n_steps, num_choices=K)


def make_reward_fn(config, adapter: core.PolicyAdapter, rwm_graphdef=None, reward: Optional[str] = None):
    """reward_fn(static, batch, tokens, traj) -> (reward [B, M], info) for ``ppo.reward``."""
    from irlvla_jax.models import reward_model as rwm_lib
    from irlvla_jax.scoring.epdms import score
    pc = config.ppo
    source = reward or pc.reward
    if source not in REWARD_SOURCES:
        raise ValueError(f"config.ppo.reward must be one of {REWARD_SOURCES}, got {source!r}")
    mode, hf = config.scoring.mode, bool(config.scoring.human_filter)
    use_ec = bool(config.rwm.use_ec)
    freeze, log_true = bool(pc.freeze_encoders), bool(pc.log_true_score)

    def fn(static, batch, tokens, traj):
        if source == "scorer":
            s = score(batch, traj, mode=mode, human_filter=hf)
            return s.EPDMS, {"true_epdms": s.EPDMS, "NC": s.NC, "DAC": s.DAC, "EP": s.EP}
        rtok = tokens if freeze else jax.lax.stop_gradient(adapter.encode((static["ref"], static["frozen"]), batch))
        r = rwm_lib.predicted_reward(nnx.merge(rwm_graphdef, static["rwm"])(rtok, traj, scenes=batch), use_ec)
        info = {}
        if log_true:
            s = score(batch, traj, mode=mode, human_filter=hf)
            info = {"true_epdms": s.EPDMS, "NC": s.NC, "DAC": s.DAC, "EP": s.EP}
        return r, info

    return fn


# --------------------------------------------------------------------------------------------------
# Building blocks shared by train(), load_policy() and the benchmark.

def _restore_il(config, workdir, mesh):
    from irlvla_jax.train.checkpoint import Checkpointer
    from irlvla_jax.train.imitation import abstract_state
    spec = SceneSpec.from_config(config.scene)
    graphdef, _, abstract = abstract_state(config, spec, mesh)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints", "il"), config=config, async_save=False)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no IL checkpoint in {ckpt.directory}; run `irlvla train --stage il` first")
    state, _ = ckpt.restore(abstract)
    return graphdef, state.params, state.consts


def build(config, graphdef, params, consts, rwm_graphdef=None, rwm_params=None, reward: Optional[str] = None,
          seed: int = 0):
    """-> (adapter, value_graphdef, tx, state, static, update_fn (not jitted), sigmas)."""
    pc = config.ppo
    hp = core.PPOHyper.from_config(pc)
    adapter = make_vla_adapter(graphdef, consts, config)
    sigmas = core.std_schedule(adapter.num_steps, float(pc.sigma_max), float(pc.sigma_min))
    core.finetuned_ks(adapter.num_steps, hp.finetune_steps)  # validates finetune_steps
    trainable, frozen = split_trainable(params, trainable_path(config))
    trainable = jax.tree.map(jnp.copy, trainable)  # the state is donated: never alias the caller's arrays
    D = int(config.model.dim)
    vh = core.ValueHead(5 * D, adapter.num_steps, int(pc.value_hidden), rngs=nnx.Rngs(seed + 17),
                        event_size=adapter.num_choices * 24)
    vgd, vstate = nnx.split(vh)
    vstate = vstate.to_pure_dict()
    tx = core.make_optimizer(float(pc.lr), float(pc.max_grad_norm), choice_lr=float(pc.get("choice_lr", 0.0)))
    state = core.init_state(trainable, vstate, hp.finetune_steps, tx, jax.random.PRNGKey(seed))
    # `ref` must not alias state buffers: the state is donated to the jitted update.
    static = {"frozen": frozen, "ref": jax.tree.map(jnp.copy, trainable), "rwm": rwm_params}
    reward_fn = make_reward_fn(config, adapter, rwm_graphdef, reward)
    upd = core.make_update(adapter, vgd, reward_fn, hp, tx, sigmas)
    return adapter, vgd, tx, state, static, upd, sigmas


def merged_params(config, params, trainable):
    """Full VLA params with the PPO-trained part put back."""
    return merge_trainable(params, trainable_path(config), trainable)


def checkpoint_dir(workdir: str, reward: str) -> str:
    return os.path.join(workdir, "checkpoints", f"ppo_{reward}")


# --------------------------------------------------------------------------------------------------

def train(config, workdir: str, *, reward: Optional[str] = None, train_iter=None, progress: bool = True,
          num_updates: Optional[int] = None, mesh=None) -> Dict[str, Any]:
    """Run (or resume) PPO to ``config.ppo.updates``; returns a summary dict (last metrics, timings)."""
    from irlvla_jax.train.checkpoint import Checkpointer
    from irlvla_jax.train.imitation import make_train_iter
    from irlvla_jax.train.logging import Logger
    pc = config.ppo
    reward = reward or pc.reward
    mesh_lib.maybe_initialize_distributed()
    mesh = mesh or mesh_lib.make_mesh(int(config.train.num_devices))
    bs = int(pc.batch_size)
    mesh_lib.check_batch_size(bs, mesh, "ppo.batch_size")
    graphdef, params, consts = _restore_il(config, workdir, mesh)
    rwm_gd = rwm_params = None
    if reward == "rwm":
        from irlvla_jax.train.reward import load_rwm
        rwm_gd, rwm_params = load_rwm(config, workdir)
    adapter, vgd, tx, state, static, upd, sigmas = build(config, graphdef, params, consts, rwm_gd, rwm_params,
                                                          reward, seed=int(config.seed))
    state = mesh_lib.replicate(state, mesh)
    static = mesh_lib.replicate(static, mesh)
    if train_iter is None:
        train_iter = make_train_iter(config, workdir, mesh_lib.local_batch_size(bs))
    name = f"ppo_{reward}"
    ckpt = Checkpointer(checkpoint_dir(workdir, reward), config=config, max_to_keep=int(config.train.max_to_keep),
                        async_save=bool(config.train.async_checkpoint))
    state, start = ckpt.resume(state, data_iter=train_iter, name=name, unit="update")
    total = int(num_updates if num_updates is not None else pc.updates)
    update = jax.jit(upd, donate_argnums=(0,))
    log = Logger(workdir, name, total, start, enable_tqdm=progress)
    every = int(pc.checkpoint_every)
    t0 = time.time()
    times = []

    def next_batch(u):
        return mesh_lib.shard_batch(next(train_iter), mesh)

    def log_fn(step, scalars):
        log.advance()
        times.append(time.time())
        log.scalars(step, scalars, "ppo/")

    def save_fn(step, st):
        if step % every == 0 or step == total:
            ckpt.save(step, st, train_iter, force=step == total)

    try:
        state, hist = core.ppo_loop(update, state, static, next_batch, total, reward_source=reward, start=start,
                                    save_fn=save_fn, log_fn=log_fn, progress=False)
        ckpt.wait()
    finally:
        log.close()
    wall = time.time() - t0
    last = hist[-1] if hist else {}
    step_s = float(np.median(np.diff(times))) if len(times) > 2 else None
    return dict(stage=name, updates=total, start=start, wall_s=wall, step_s=step_s,
                reward_first=hist[0]["reward_mean"] if hist else None, reward_last=last.get("reward_mean"),
                true_epdms_first=hist[0].get("rollout_true_epdms") if hist else None,
                true_epdms_last=last.get("rollout_true_epdms"), history=hist)


def load_policy(config, workdir: str, reward: str = "rwm", *, seed: int = 0, chunk: Optional[int] = None):
    """Restore the IL checkpoint and the latest PPO checkpoint -> ``policy(scenes) -> [B, 1, 8, 3]``
    (metres, radians, ego frame; deterministic DDIM, the top-scored anchor chain, like the IL policy)."""
    from irlvla_jax.scene import padded_chunks
    from irlvla_jax.train.checkpoint import Checkpointer
    mesh = mesh_lib.make_mesh(1)
    graphdef, params, consts = _restore_il(config, workdir, mesh)
    _, _, _, state, _, _, _ = build(config, graphdef, params, consts, None, None, "scorer")
    ckpt = Checkpointer(checkpoint_dir(workdir, reward), config=config, async_save=False)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no PPO checkpoint in {ckpt.directory}; run `irlvla train --stage ppo` "
                                f"with ppo.reward={reward!r} first")
    from irlvla_jax.train.state import abstract_like
    state, _ = ckpt.restore(abstract_like(state))
    full = merged_params(config, params, state.params["policy"])
    chunk = int(chunk or config.ppo.batch_size)

    @jax.jit
    def run(p, scene, rng):
        model = nnx.merge(graphdef, p, consts)
        return model.sample(model.encode(scene), rng, 1)

    def policy(scenes) -> np.ndarray:
        outs = [np.asarray(run(full, b, jax.random.key(seed + i)))[:m]
                for i, b, m in padded_chunks(scenes, chunk)]
        return np.concatenate(outs).astype(np.float32)

    return policy
