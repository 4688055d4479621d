"""Stage 3: group-relative PPO that fine-tunes the VLA's diffusion planner over its denoising chain.

    irlvla train --stage ppo --config configs/tiny.py --workdir DIR [--config.ppo.reward=scorer]
                                                                    [--config.ppo.objective=choice]

The math (rollout, per-chain log-probs, anchor-group advantages, the clipped objectives, the scan-structured
update) is generic and lives in :mod:`irlvla_jax.train.ppo_core`; this module adapts the VLA to it and
exposes the stage's four names (train/loop.py): :func:`loss`, :func:`train`, :func:`restore`, :func:`policy`.
A run is named by :func:`run_name` from ``ppo.reward`` and ``ppo.objective`` (``ppo_rwm``, ``ppo_scorer``,
``ppo_rwm_choice``); :func:`variant` makes the config of another run.

Policy: the VLA's truncated-diffusion planner (``models/planner.py``). A sample runs the K anchor chains
jointly through the ``ddim_steps`` DDIM steps; evaluation executes the chain with the highest mode logit
(deterministic DDIM). PPO (``ppo.objective = "denoise"``, the default) makes every DDIM step a Gaussian
policy step per chain, N(DDIM mean, ``ppo.sigma``^2 L L^T) with smooth noise L, rewards every chain of
every sample (``ppo.batch_size`` x ``ppo.samples_per_scene`` x K trajectories per update), takes each
chain's advantage against the other samples of the same anchor, and trains the whole planner (denoiser
and mode head; ``ppo.choice_lr`` > 0 gives the mode head its own learning rate) with the per-chain
clipped surrogate plus the expected clipped surrogate of the chain choice, plus (``ppo.reward_grad_weight``)
the RWM reward of the deterministic chains differentiated through them (the pathwise gradient; the RWM is
differentiable, the true scorer is not). The encoders stay the IL
checkpoint's: the scene tokens are computed once per scene and are exactly the tokens the RWM was
trained on. ``ppo.objective = "choice"`` is the re-ranking ablation: only the mode head is trained and
every candidate trajectory stays exactly the IL planner's.

Reward (``ppo.reward``): the RWM's EPDMS-formula reward (``"rwm"``) or the true JAX scorer's EPDMS
(``"scorer"``, the ablation), for the trajectories in metres, inside the jitted update. With
``ppo.log_true_score`` every update also scores the pre-update policy's executed trajectories with the
true scorer (``ppo/exec_true_epdms`` beside ``ppo/exec_reward``: the reward-hacking curve).

RWM refresh (``ppo.rwm_refresh_every``, RWM-reward runs only: :func:`refresh_every`): every that many updates
the RWM stage's training step runs ``ppo.rwm_refresh_steps`` more times on the current policy's candidates,
labelled by the true scorer (:func:`make_refresh`); the refreshed RWM rewards the updates that follow and is
checkpointed with the policy (the run's state is then {"ppo": PPOState, "rwm": the RWM's TrainState}).

Checkpoints: ``<workdir>/checkpoints/<run_name>`` (``ppo_rwm``, ``ppo_scorer``, ``ppo_rwm_choice``;
Orbax, with the data-iterator state; resumable); TensorBoard in ``<workdir>/tb/<run_name>``. A
non-finite reward stops training with :class:`~irlvla_jax.train.ppo_core.NonFiniteRewardError` before
anything of that update is saved. :func:`policy` gives the evaluation policy ``scenes -> [B, 1, 8, 3]``.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from irlvla_jax.models import planner as planner_lib
from irlvla_jax.scene import padded_chunks
from irlvla_jax.train import imitation, loop
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train import ppo_core as core
from irlvla_jax.train import reward as reward_stage

REWARD_SOURCES = ("rwm", "scorer")
# The run's own config keys checked on resume and restore: with the RWM refresh the checkpoint also holds the RWM.
RUN_KEYS = ("ppo.rwm_refresh_every",)
# Logged at every update that refreshes the RWM: its mean |reward - true EPDMS| on the first and the last
# refresh batch's candidates, each before that batch's updates (the first: the stale RWM on the current policy).
REFRESH_METRICS = ("rwm_refresh_mae_first", "rwm_refresh_mae_last")


def refresh_every(config) -> int:
    """Updates between RWM refreshes of the run ``config.ppo`` describes: ``ppo.rwm_refresh_every`` with the
    RWM reward, 0 (no refresh) with ``ppo.reward = "scorer"``, whose runs have no RWM."""
    return int(config.ppo.rwm_refresh_every) if config.ppo.reward == "rwm" else 0


# --------------------------------------------------------------------------------------------------
# The VLA as a PolicyAdapter.

def trainable_path(config) -> Tuple[str, ...]:
    """Where the PPO-trained sub-tree sits in the VLA params: ``("planner", "mode_head")`` for
    ``ppo.objective = "choice"`` (only the chain choice is trained, so every trajectory stays exactly the
    IL planner's), else ``("planner",)`` (the whole diffusion planner; the encoders stay the IL's, so
    the scene tokens are exactly those the RWM was trained on)."""
    return ("planner", "mode_head") if str(config.ppo.objective) == "choice" else ("planner",)


def run_name(config) -> str:
    """The name of the PPO run ``config.ppo`` describes: ``ppo_<reward>`` (+ ``_choice`` for the re-ranking
    ablation): its checkpoint folder, TensorBoard run, pipeline stage and table row."""
    pc = config.ppo
    return f"ppo_{pc.reward}" + ("_choice" if pc.objective == "choice" else "")


def run_config(config, name: str):
    """The config of the pipeline's PPO run ``name`` (``irlvla_jax.evaluate.RL_RUNS``: its stage, checkpoint
    folder and table row), made from ``config``; the one definition the pipeline trains and ``irlvla evaluate`` loads:
      ppo_rwm         ``config`` with the RWM reward (its refresh and reward gradient as configured);
      ppo_scorer      the true scorer's reward, PPO alone (no reward gradient: the scorer is not
                      differentiable; no RWM, so no refresh) at ``pipeline.scorer_lr`` for
                      ``pipeline.scorer_updates`` updates (0 = ``ppo.updates``);
      ppo_rwm_choice  the re-ranking ablation (today's method): ``ppo.objective = "choice"`` with the
                      ``pipeline.choice_only_*`` settings, rewarded by the RWM stage's model (no refresh)."""
    pc = config.pipeline
    if name == "ppo_rwm":
        return variant(config, reward="rwm")
    if name == "ppo_scorer":
        return variant(config, reward="scorer", reward_grad_weight=0.0, lr=float(pc.scorer_lr),
                       updates=int(pc.scorer_updates) or int(config.ppo.updates))
    if name == "ppo_rwm_choice":
        return variant(config, reward="rwm", objective="choice", lr=float(pc.choice_only_lr),
                       updates=int(pc.choice_only_updates), samples_per_scene=int(pc.choice_only_samples),
                       log_true_score=False, rwm_refresh_every=0)
    raise ValueError(f"unknown PPO run {name!r}; the runs are ppo_rwm, ppo_scorer, ppo_rwm_choice")


def run_keys(config) -> tuple:
    """The config keys a checkpoint of the run ``config.ppo`` describes must match on resume and restore
    (:data:`RUN_KEYS`; none for the true scorer's runs, whose checkpoints hold no RWM)."""
    return RUN_KEYS if config.ppo.reward == "rwm" else ()


def variant(config, **ppo):
    """A copy of ``config`` with the given ``ppo`` keys replaced (e.g. ``reward="scorer"``); the config
    itself when nothing changes."""
    if all(config.ppo[k] == v for k, v in ppo.items()):
        return config
    import copy
    config = copy.deepcopy(config)
    with config.unlocked():
        for k, v in ppo.items():
            config.ppo[k] = v
    return config


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


def make_vla_adapter(graphdef, consts, config) -> core.PolicyAdapter:
    path = trainable_path(config)
    sched = planner_lib.make_schedule(config.model.planner)
    n_steps = len(sched.timesteps)
    K = int(config.data.num_anchors)
    w_traj, w_mode = float(config.il.w_traj), float(config.il.w_mode)

    def merge(pp):
        trainable, frozen = pp
        return nnx.merge(graphdef, merge_trainable(frozen, path, trainable), consts)

    def encode(pp, batch):
        return merge(pp).encode(batch)

    def init_noise(pp, tokens, batch, rng, m):
        B = tokens.cmd.shape[0]
        return merge(pp).planner.init_chains(rng, B * m, 1).reshape(B, m, K, 8, 3)

    def denoise_mean(pp, tokens, x, k):
        B, M = x.shape[:2]   # the M samples of a scene share its tokens (encoded once), chains stay apart
        tok = jax.tree.map(lambda a: jnp.repeat(a, M, axis=0), tokens)
        mean, _, logits = merge(pp).planner.step_mean(tok, x.reshape(B * M, K, 8, 3), n_steps - int(k), sched)
        return mean.reshape(x.shape), logits.reshape(B, M, K)

    def to_traj(x, batch):
        return planner_lib.denormalise(x, sched)

    def bc_loss(pp, tokens, batch, rng):
        out = merge(pp).planner.imitation_loss(tokens, batch.expert_future.astype(jnp.float32), rng)
        return w_traj * out["traj_l1"] + w_mode * out["mode_ce"]

    return core.PolicyAdapter(encode=encode, init_noise=init_noise, denoise_mean=denoise_mean, to_traj=to_traj,
                              bc_loss=bc_loss, num_steps=n_steps)


def loss(config, adapter: core.PolicyAdapter, params, static, mb, rng):
    """The stage-3 objective with the knobs of ``config.ppo``: :func:`irlvla_jax.train.ppo_core.loss` (the
    per-chain clipped surrogate over the denoising steps + the chain-choice loss + behaviour cloning) on a
    minibatch ``mb`` of stored rollouts. -> (total, metrics)."""
    return core.loss(adapter, core.PPOHyper.from_config(config.ppo), params, static, mb, rng)


def make_reward_fn(config, rwm_graphdef=None, reward: Optional[str] = None, mesh=None):
    """reward_fn(static, batch, tokens, traj [B, N, 8, 3]) -> [B, N]: the RWM's EPDMS-formula reward of
    ``static["rwm"]`` (``reward = "rwm"``) or the true JAX scorer's EPDMS (``"scorer"``; each device of
    ``mesh`` scores its own scenes, ``epdms.score_sharded``)."""
    from irlvla_jax.models import reward_model as rwm_lib
    from irlvla_jax.scoring.epdms import score_sharded
    source = reward or config.ppo.reward
    if source not in REWARD_SOURCES:
        raise ValueError(f"config.ppo.reward must be one of {REWARD_SOURCES}, got {source!r}")
    mode, hf = config.scoring.mode, bool(config.scoring.human_filter)
    use_ec = bool(config.rwm.use_ec)

    def fn(static, batch, tokens, traj):
        if source == "scorer":
            return score_sharded(batch, traj, mesh, mode=mode, human_filter=hf).EPDMS
        return rwm_lib.predicted_reward(nnx.merge(rwm_graphdef, static["rwm"])(tokens, traj, scenes=batch), use_ec)

    return fn


MONITORED = {"true_epdms": "EPDMS", "NC": "NC", "DAC": "DAC", "EP": "EP", "TTC": "TTC", "HC": "HC"}


def make_monitor_fn(config, mesh=None):
    """``fn(batch, executed [B, 1, 8, 3]) -> {"exec_<name>": mean}``: the true scorer's EPDMS and sub-scores
    (:data:`MONITORED`) of the executed trajectories (``ppo.log_true_score``; what the RWM reward is
    compared with: reward hacking), or None. The scorer is jitted apart from the update and, on one device,
    is the process's shared scorer (``epdms.make_scorer``): compiled once for every PPO run of a process
    (the pipeline's RWM and true-scorer runs) instead of inside each update program; the means are one small
    program (:func:`monitored_means`), not one dispatch per sub-score."""
    if not bool(config.ppo.log_true_score):
        return None
    from irlvla_jax.scoring.epdms import make_scorer
    scorer = make_scorer(str(config.scoring.mode), bool(config.scoring.human_filter), mesh=mesh)

    def fn(batch, traj):
        return monitored_means(scorer(batch, traj))

    return fn


@jax.jit
def monitored_means(scores) -> Dict[str, jnp.ndarray]:
    """``{"exec_<name>": mean}`` of the :data:`MONITORED` fields of a scorer's ``Scores``."""
    return {f"exec_{k}": jnp.mean(getattr(scores, v)) for k, v in MONITORED.items()}


# --------------------------------------------------------------------------------------------------
# Building blocks shared by train(), restore(), policy() and the benchmark.

def build(config, graphdef, params, consts, rwm_graphdef=None, rwm_params=None, seed: int = 0, mesh=None):
    """-> (adapter, tx, state, static, update_fn (not jitted; with ``ppo.reward = "scorer"`` its scorer calls
    shard over ``mesh``))."""
    pc = config.ppo
    hp = core.PPOHyper.from_config(pc)
    adapter = make_vla_adapter(graphdef, consts, config)
    trainable, frozen = split_trainable(params, trainable_path(config))
    trainable = jax.tree.map(jnp.copy, trainable)  # the state is donated: never alias the caller's arrays
    tx = core.make_optimizer(float(pc.lr), float(pc.max_grad_norm), float(pc.choice_lr))
    state = core.init_state(trainable, tx, jax.random.PRNGKey(seed))
    static = {"frozen": frozen, "rwm": rwm_params}
    upd = core.make_update(adapter, make_reward_fn(config, rwm_graphdef, mesh=mesh), hp, tx)
    return adapter, tx, state, static, upd


def merged_params(config, params, trainable):
    """Full VLA params with the PPO-trained part put back."""
    return merge_trainable(params, trainable_path(config), trainable)


# --------------------------------------------------------------------------------------------------

def train(config, workdir: str, *, train_iter=None, progress: bool = True, num_updates: Optional[int] = None,
          mesh=None) -> Dict[str, Any]:
    """Run (or resume) PPO to ``config.ppo.updates`` (or ``num_updates``) with ``config.ppo.reward`` and
    ``config.ppo.objective``; returns a summary dict (last metrics, timings, the per-update history).
    With ``ppo.rwm_refresh_every`` the RWM goes on training on the current policy's candidates every that
    many updates (:func:`make_refresh`); the run's state is then {"ppo": PPOState, "rwm": the RWM's
    TrainState}, checkpointed together, and the refreshed RWM rewards the updates that follow."""
    pc = config.ppo
    reward = str(pc.reward)
    bs = int(pc.batch_size)
    every = refresh_every(config)
    mesh = loop.make_mesh(config, mesh, bs, "ppo.batch_size")
    graphdef, params, consts = imitation.restore(config, workdir, mesh)
    rwm_gd = rwm_params = rwm_state = None
    if every:            # the refresh goes on training the RWM: its whole train state (optimizer included)
        rwm_gd, rwm_state = reward_stage.restore_state(config, workdir, mesh)
        rwm_params = rwm_state.params
    elif reward == "rwm":
        rwm_gd, rwm_params = reward_stage.restore(config, workdir)
    _, _, state, static, upd = build(config, graphdef, params, consts, rwm_gd, rwm_params, seed=int(config.seed),
                                     mesh=mesh)
    if every:        # the RWM lives in the state (refreshed, checkpointed); each update gets the current one
        state, static = {"ppo": state, "rwm": rwm_state}, dict(static, rwm=None)
    static = mesh_lib.replicate(static, mesh)
    name = run_name(config)
    prep = loop.prepare(config, workdir, name, state, mesh, bs, train_iter=train_iter, unit="update",
                        run_keys=run_keys(config), batch_key="ppo.batch_size")
    update = jax.jit(upd, donate_argnums=(0,))
    monitor = make_monitor_fn(config, mesh)
    refresh = make_refresh(config, graphdef, params, consts, rwm_gd, mesh, prep.train_iter) if every else None
    done = [prep.start]                  # updates applied so far (the loop's step before this call)

    def step(st, b):
        m = {}
        if every and done[0] and done[0] % every == 0:
            st, m = refresh(st)
        if every:
            ps, m2 = update(st["ppo"], dict(static, rwm=st["rwm"].params), b)
            st = dict(st, ppo=ps)
        else:
            st, m2 = update(st, static, b)
        m.update(m2)
        done[0] += 1
        executed = m.pop(core.EXECUTED)
        if monitor is not None:
            m.update(monitor(b, executed))
        return st, m

    res = loop.run(workdir=workdir, name=name, prep=prep, total=int(num_updates if num_updates is not None
                                                                    else pc.updates),
                   step_fn=step, prefix="ppo/", log_every=1,
                   checkpoint_every=int(pc.checkpoint_every), progress=progress,
                   check=lambda m, step: core.check_finite(m, step - 1, reward))
    hist = res.history
    last = hist[-1] if hist else {}
    first = lambda k: hist[0].get(k) if hist else None  # noqa: E731
    return dict(stage=name, updates=res.step, start=prep.start, wall_s=res.wall_s, step_s=res.step_s,
                trajectories_per_update=last.get("trajectories"),
                reward_first=first("reward_mean"), reward_last=last.get("reward_mean"),
                exec_reward_first=first("exec_reward"), exec_reward_last=last.get("exec_reward"),
                exec_true_epdms_first=first("exec_true_epdms"), exec_true_epdms_last=last.get("exec_true_epdms"),
                rwm_refreshes=[{k: h[k] for k in ("step",) + REFRESH_METRICS} for h in hist
                               if REFRESH_METRICS[0] in h],
                history=hist)


def make_refresh(config, graphdef, params, consts, rwm_gd, mesh, train_iter):
    """The RWM refresh (``ppo.rwm_refresh_every`` > 0): ``refresh(state) -> (state, metrics)`` runs
    ``ppo.rwm_refresh_steps`` steps of the RWM stage's own training step (``reward.jitted_train_step``, the
    same compiled program when the RWM stage ran in this process: candidates drawn around the policy's
    chains, labelled by the true JAX scorer inside the step) on ``rwm.batch_size`` scenes each, cut in order
    from batches of ``train_iter`` (PPO's training stream: its position is checkpointed, so a resumed run
    refreshes on the same scenes), with the CURRENT policy ``state["ppo"]`` generating the candidates and the
    RWM's optimizer continued from ``state["rwm"]`` (past ``rwm.steps`` its schedule holds the end learning
    rate). Metrics: :data:`REFRESH_METRICS` (the first step's error is the stale RWM's on the current
    policy's candidates) and the finiteness of every step (``finite_rwm_*``)."""
    from irlvla_jax.scene import index
    from irlvla_jax.train.state import FINITE_PREFIX
    steps = int(config.ppo.rwm_refresh_steps)
    rows = mesh_lib.local_batch_size(int(config.rwm.batch_size))          # this process's rows per RWM step
    per_batch = int(config.ppo.batch_size) // int(config.rwm.batch_size)  # RWM steps per PPO batch
    rwm_step = reward_stage.jitted_train_step(config, graphdef, rwm_gd, mesh)

    def refresh(st):
        vla_params = merged_params(config, params, st["ppo"].params)
        rs, ms, host = st["rwm"], [], None
        for i in range(steps):
            j = i % per_batch
            if j == 0:
                host = next(train_iter)
            batch = mesh_lib.shard_batch(index(host, slice(j * rows, (j + 1) * rows)), mesh)
            rs, m = rwm_step(rs, vla_params, consts, batch)
            ms.append(m)
        out = {REFRESH_METRICS[0]: ms[0]["reward_mae"], REFRESH_METRICS[1]: ms[-1]["reward_mae"]}
        for k in ms[0]:
            if k.startswith(FINITE_PREFIX):
                out[FINITE_PREFIX + "rwm_" + k[len(FINITE_PREFIX):]] = jnp.all(jnp.stack([m[k] for m in ms]))
        return dict(st, rwm=rs), out

    return refresh


def open_state(config, workdir: str, il=None):
    """The latest checkpoint of run ``run_name(config)``: its PPOState, or with ``ppo.rwm_refresh_every``
    {"ppo": PPOState, "rwm": the refreshed RWM's TrainState}. ``il``: the IL checkpoint's (graphdef, params,
    consts) when already restored."""
    from irlvla_jax.train.state import abstract_like
    graphdef, params, consts = il or imitation.restore(config, workdir, mesh_lib.restore_mesh())
    _, _, state, _, _ = build(config, graphdef, params, consts)
    rep = mesh_lib.replicated(mesh_lib.restore_mesh())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract_like(state))
    if refresh_every(config):
        abstract = {"ppo": abstract, "rwm": reward_stage.abstract_state(config)[1]}
    name = run_name(config)
    return loop.open_latest(config, workdir, name, abstract,
                            f"run `irlvla train --stage ppo` with ppo.reward={config.ppo.reward!r} "
                            f"ppo.objective={config.ppo.objective!r} first", run_keys=run_keys(config))


def restore(config, workdir: str):
    """The IL checkpoint with the PPO-trained part of the latest checkpoint of ``run_name(config)`` put
    back -> (graphdef, full VLA params, consts)."""
    graphdef, params, consts = imitation.restore(config, workdir, mesh_lib.restore_mesh())
    state = open_state(config, workdir, (graphdef, params, consts))
    ppo_state = state["ppo"] if refresh_every(config) else state
    return graphdef, merged_params(config, params, ppo_state.params), consts


def reward_model(config, workdir: str):
    """The RWM that rewarded the last updates of run ``run_name(config)`` -> (graphdef, params): the RWM
    stage's, or with ``ppo.rwm_refresh_every`` the refreshed one in the PPO checkpoint."""
    if refresh_every(config):
        return reward_stage.abstract_state(config)[0], open_state(config, workdir)["rwm"].params
    return reward_stage.restore(config, workdir)


def policy(config, workdir: str, *, seed: int = 0, chunk: Optional[int] = None):
    """The latest PPO checkpoint of ``run_name(config)`` -> ``policy(scenes) -> [B, 1, 8, 3]`` (metres,
    radians, ego frame; deterministic DDIM, the top-scored anchor chain, like the IL policy; chunk i of
    the scenes drawn with ``jax.random.key(seed + i)``)."""
    graphdef, full, consts = restore(config, workdir)
    chunk = int(chunk or config.ppo.batch_size)

    @jax.jit
    def run(p, scene, rng):
        model = nnx.merge(graphdef, p, consts)
        return model.sample(model.encode(scene), rng, 1)

    def fn(scenes) -> np.ndarray:
        outs = [np.asarray(run(full, b, jax.random.key(seed + i)))[:m]
                for i, b, m in padded_chunks(scenes, chunk)]
        return np.concatenate(outs).astype(np.float32)

    return fn


def rwm_pick_policy(config, workdir: str, *, seed: int = 0, chunk: int = 32):
    """The run's K anchor chains (one sample, deterministic DDIM, drawn as the RWM stage's policy draws the
    IL's: :func:`reward.policy`), the one with the highest reward of the run's RWM (:func:`reward_model`)
    executed: re-ranking on top of RL. -> ``policy(scenes) -> np.ndarray [B, 1, 8, 3]``."""
    vla = restore(config, workdir)
    return reward_stage.pick_policy(config, vla, reward_model(config, workdir),
                                    lambda scenes: imitation.model_chains(vla, scenes, seed=seed, chunk=chunk), chunk)


def policy_samples(config, workdir: str, scenes, *, chunk: int = 16, seed: int = 0):
    """What PPO asks the RWM about, on ``scenes`` (held out): the trained policy's rollout exactly as in a
    PPO update (``ppo.samples_per_scene`` samples x K chains with the exploration noise), each trajectory
    rewarded by the RWM and scored by the true scorer. -> (trajectories [B, M K, 8, 3] metres / radians,
    RWM reward [B, M K], true EPDMS [B, M K]) numpy."""
    from irlvla_jax.scoring.epdms import make_scorer
    pc = config.ppo
    graphdef, full, consts = restore(config, workdir)
    rgd, rparams = reward_model(config, workdir)
    adapter = make_vla_adapter(graphdef, consts, config)
    reward_fn = make_reward_fn(config, rgd, "rwm")
    M = int(pc.samples_per_scene)
    factor = core.noise_factor(str(pc.noise))
    trainable, frozen = split_trainable(full, trainable_path(config))
    scorer = make_scorer(config.scoring.mode, bool(config.scoring.human_filter))

    @jax.jit
    def run(scene, rng):
        pp = (trainable, frozen)
        tokens = adapter.encode(pp, scene)
        roll = core.rollout(adapter, pp, tokens, scene, rng, M, float(pc.sigma), factor)
        traj = core.trajectories(adapter, roll, scene)
        return traj, reward_fn({"rwm": rparams}, scene, tokens, traj)

    trajs, preds, trues = [], [], []
    for i, b, m in padded_chunks(scenes, chunk):
        traj, pred = run(b, jax.random.key(seed + i))
        trues.append(np.asarray(scorer(b, traj).EPDMS)[:m]); preds.append(np.asarray(pred)[:m])
        trajs.append(np.asarray(traj)[:m])
    return np.concatenate(trajs), np.concatenate(preds), np.concatenate(trues)


def rwm_report(pred: np.ndarray, true: np.ndarray) -> Dict[str, Any]:
    """How well RWM rewards ``pred`` [B, N] rank the true EPDMS ``true`` [B, N] of the same trajectories:
    the within-scene Spearman correlation (mean over scenes whose true EPDMS is not constant), the regret
    of the RWM's top pick (true best minus true EPDMS of the RWM's argmax, mean over scenes), and the mean
    RWM reward vs mean true EPDMS (the reward's bias)."""
    rho = reward_stage.within_scene_spearman(pred, true)
    top = np.take_along_axis(true, np.argmax(pred, -1)[:, None], 1)[:, 0]
    return dict(scenes=int(true.shape[0]), trajectories_per_scene=int(true.shape[1]),
                spearman_within_scene=float(np.nanmean(rho)), spearman_scenes=int(np.sum(np.isfinite(rho))),
                regret=float(np.mean(true.max(1) - top)), rwm_reward_mean=float(pred.mean()),
                true_epdms_mean=float(true.mean()))


def rwm_report_on_policy(config, workdir: str, scenes, *, chunk: int = 16,
                         seed: int = 0) -> Dict[str, Any]:
    """How well the RWM ranks what PPO asks it about: :func:`rwm_report` of :func:`policy_samples`."""
    _, pred, true = policy_samples(config, workdir, scenes, chunk=chunk, seed=seed)
    return rwm_report(pred, true)
