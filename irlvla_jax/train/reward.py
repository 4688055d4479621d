"""Stage 2: train the Reward World Model (inverse environment learning) on scorer labels.

    irlvla train --stage rwm --config configs/tiny.py --workdir DIR

The stage module's four names (train/loop.py): :func:`loss`, :func:`train`, :func:`restore` and
:func:`policy` (the IL planner's anchor chains, the one with the highest RWM reward executed).

Per training scene, the jitted step builds N candidate trajectories [B, N, 8, 3] (metres / radians, ego
frame at t0; train/rwm_candidates.py):
  * policy: ``rwm.policy_samples`` samples of the IL policy, *all* K anchor chains of each (the set the
    PPO policy chooses from), deterministic DDIM as in evaluation;
  * noisy policy: ``rwm.noisy_chains`` of those chains plus Gaussian noise in the planner's normalised
    space with std ~ U(0, ``rwm.noise_std``) (what PPO exploration produces): i.i.d. over poses, or for
    a fraction ``rwm.smooth_noise_frac`` of them smooth (``ppo_core.noise_factor("smooth")``, PPO's noise);
  * perturbed expert: ``rwm.expert_perturbations`` copies of the expert plan, each with (independently
    switched on with probability 1/2) a time warp (speed x U(0.4, 1.5)), a lateral offset ramping to
    U(-3.5, 3.5) m at 4 s, a longitudinal offset ramping to U(-4, 4) m, and a rotation about the ego by
    U(-0.25, 0.25) rad; plus the expert itself;
  * the anchor vocabulary (``rwm.use_anchors``): the K anchors as they are;
  * PPO samples (``rwm.ppo_samples``): all K chains drawn as the PPO rollout draws them;
  * warped policy (``rwm.warped_chains``): policy chains replayed at U(0.4, 1.2) x their pace
    (``rwm_candidates.time_warp``; the slower plans PPO's reward gradient drives the policy to).
Labels come from the JAX EPDMS scorer (``irlvla_jax.scoring.epdms.score``, mode/human filter of
``config.scoring``) computed inside the same jitted step. The VLA (IL checkpoint) is frozen: its scene
tokens are computed under ``stop_gradient`` (decision: no shared/co-trained encoder in this stage, so
the PPO stage sees exactly the token distribution the RWM was trained on). Loss: CE (NC, DDC), BCE
(binary heads; EC only with ``rwm.use_ec``), soft BCE for EP, + ``rwm.epdms_weight`` x MSE(reward, EPDMS)
+ ``rwm.rank_weight`` x a within-scene pairwise logistic ranking loss on the predicted reward (pairs of
policy / noisy-policy candidates weighted 1 + ``rwm.policy_rank_boost``: PPO ranks those). Labelling
(VLA sampling + scorer) dominates a step's cost, so each labelled batch gets ``rwm.inner_steps`` AdamW
updates (a ``lax.scan`` in the same jitted step). With ``rwm.kinematic_features`` / ``ego_features`` /
``scene_features`` the RWM also sees finite-difference kinematics of each plan, the ego's recent
dynamics and plan-vs-map/agent geometry at t0 (models/reward_model.py); it is then called as
``model(tokens, traj, scenes=batch)``.
AdamW with warm-up + cosine; Orbax checkpoints in ``<workdir>/checkpoints/rwm`` (resumable, with the
data-iterator state); TensorBoard in ``<workdir>/tb/rwm``.

Held-out report (``rwm.eval_scenes`` scenes of ``rwm.eval_split``), written to
``<workdir>/rwm_report.json``: per sub-score AUROC (binary: P(=1); NC/DDC: E[score] vs "score = 1") and
accuracy; EP mean absolute error; within-scene Spearman correlation between predicted reward and true
EPDMS over the candidates (mean over scenes whose true EPDMS is not constant); regret = EPDMS of the
scorer's best candidate minus EPDMS of the RWM's top candidate (mean over scenes), also restricted to
the policy chains (the PPO action set).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from irlvla_jax.models import planner as planner_lib
from irlvla_jax.models import reward_model as R
from irlvla_jax.scoring.epdms import SUB_SCORES
from irlvla_jax.train import imitation, loop
from irlvla_jax.train import rwm_candidates as C
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train.state import finite_flags

RUN = "rwm"   # checkpoints/rwm, tb/rwm, rwm_metrics.jsonl
# The config keys that shape the RWM's parameters or inputs: an RWM checkpoint is refused, naming the key, when
# one of them differs (training keys such as rwm.steps may change on resume).
RWM_MODEL_KEYS = tuple(f"rwm.{k}" for k in ("d_model", "num_layers", "num_heads", "ff_mult", "arch",
                                              "kinematic_features", "ego_features", "scene_features",
                                              "scene_pose_stride"))

def labels_of(scores) -> Dict[str, Any]:
    return {k: getattr(scores, k) for k in SUB_SCORES}


# --------------------------------------------------------------------------------------------------
# Metrics (numpy, host).

def auroc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for binary ``label`` (ties averaged); nan if one class."""
    score, label = np.asarray(score, np.float64).ravel(), np.asarray(label).ravel().astype(bool)
    npos, nneg = label.sum(), (~label).sum()
    if npos == 0 or nneg == 0:
        return float("nan")
    ranks = _rankdata(score)
    return float((ranks[label].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) along the last axis."""
    order = np.argsort(x, axis=-1, kind="mergesort")
    ranks = np.empty_like(x, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(1, x.shape[-1] + 1, dtype=np.float64) *
                      np.ones_like(x, dtype=np.float64), axis=-1)
    # Average over ties.
    flat = x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x[None]
    rflat = ranks.reshape(flat.shape)
    for row in range(flat.shape[0]):
        vals, inv, counts = np.unique(flat[row], return_inverse=True, return_counts=True)
        if np.any(counts > 1):
            sums = np.bincount(inv, weights=rflat[row])
            rflat[row] = (sums / counts)[inv]
    return rflat.reshape(x.shape)


def within_scene_spearman(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """[B] Spearman correlation over candidates per scene (nan where either side is constant)."""
    rp, rt = _rankdata(pred), _rankdata(true)
    rp = rp - rp.mean(-1, keepdims=True)
    rt = rt - rt.mean(-1, keepdims=True)
    den = np.sqrt((rp ** 2).sum(-1) * (rt ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rp * rt).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def report(pred_exp: Dict[str, np.ndarray], pred_reward: np.ndarray, labels: Dict[str, np.ndarray],
           true_epdms: np.ndarray, source: np.ndarray, use_ec: bool) -> Dict[str, Any]:
    """Held-out metrics from host arrays (each [B, N]); see the module docstring."""
    out: Dict[str, Any] = {"scenes": int(true_epdms.shape[0]), "candidates_per_scene": int(true_epdms.shape[1])}
    for k in SUB_SCORES:
        if k == "EC" and not use_ec:
            continue
        lab, p = labels[k], pred_exp[k]
        if k == "EP":
            out["EP_mae"] = float(np.mean(np.abs(p - lab)))
            continue
        pos = lab >= 1.0
        out[f"{k}_auroc"] = auroc(p, pos)
        if k in R.TERNARY:
            acc = np.mean(np.clip(np.round(p * 2), 0, 2) == np.clip(np.round(lab * 2), 0, 2))
        else:
            acc = np.mean((p >= 0.5) == pos)
        out[f"{k}_accuracy"] = float(acc)
        out[f"{k}_positive_rate"] = float(np.mean(pos))
    pol = source == 0
    if pol.any():  # the PPO action set: the same AUROCs over the policy chains only
        for k in SUB_SCORES:
            if k in ("EP", "EC"):
                continue
            out[f"{k}_auroc_policy"] = auroc(pred_exp[k][:, pol], labels[k][:, pol] >= 1.0)
    rho = within_scene_spearman(pred_reward, true_epdms)
    out["spearman_within_scene"] = float(np.nanmean(rho)) if np.any(np.isfinite(rho)) else float("nan")
    out["spearman_scenes"] = int(np.sum(np.isfinite(rho)))
    rho_pol = within_scene_spearman(pred_reward[:, source == 0], true_epdms[:, source == 0])
    out["spearman_within_scene_policy"] = float(np.nanmean(rho_pol)) if np.any(np.isfinite(rho_pol)) else float("nan")
    if np.any(source == 5):   # the PPO rollout's own distribution: what the RL policy asks about
        rho_ppo = within_scene_spearman(pred_reward[:, source == 5], true_epdms[:, source == 5])
        out["spearman_within_scene_ppo"] = float(np.nanmean(rho_ppo)) if np.any(np.isfinite(rho_ppo)) else float("nan")
    idx = np.argmax(pred_reward, -1)
    best = true_epdms.max(-1)
    picked = np.take_along_axis(true_epdms, idx[:, None], -1)[:, 0]
    out["regret"] = float(np.mean(best - picked))
    out["epdms_best"] = float(np.mean(best))
    out["epdms_rwm_top"] = float(np.mean(picked))
    pol = source == 0
    if pol.any():
        tp, pp = true_epdms[:, pol], pred_reward[:, pol]
        pk = np.take_along_axis(tp, np.argmax(pp, -1)[:, None], -1)[:, 0]
        out["regret_policy_chains"] = float(np.mean(tp.max(-1) - pk))
        out["epdms_policy_best"] = float(np.mean(tp.max(-1)))
        out["epdms_policy_rwm_top"] = float(np.mean(pk))
    out["reward_mae"] = float(np.mean(np.abs(pred_reward - true_epdms)))
    return out


# --------------------------------------------------------------------------------------------------
# Model, state, steps.

def build_rwm(config, seed: int = 0):
    """-> (graphdef, params pure dict)."""
    model = R.build(config.rwm, int(config.model.dim), rngs=nnx.Rngs(seed + 101))
    gd, st = nnx.split(model)
    return gd, st.to_pure_dict()


def make_optimizer(rc):
    steps = max(int(rc.steps) * int(rc.inner_steps), 1)
    warm = min(int(rc.warmup_steps) * int(rc.inner_steps), steps - 1) if steps > 1 else 0
    sched = optax.warmup_cosine_decay_schedule(0.0, float(rc.lr), max(warm, 1), steps, float(rc.lr) * 0.05)
    return optax.chain(optax.clip_by_global_norm(float(rc.grad_clip)),
                       optax.adamw(sched, weight_decay=float(rc.weight_decay)))


def loss(model, tokens, cands, scenes, labels, epdms, rc, pair_weight):
    """The stage-2 objective: the RWM ``model`` on candidates ``cands`` [B, N, 8, 3] of scenes with scene
    tokens ``tokens`` (``scenes`` the Scene batch when the RWM reads scene features, else None), against the
    scorer's ``labels`` (:func:`labels_of`) and ``epdms`` [B, N]; ``rc`` = ``config.rwm``, ``pair_weight``
    [N, N] the ranking-pair weights. -> (total, (loss terms, raw predictions))."""
    out = model(tokens, cands, scenes=scenes)
    losses = R.rwm_losses(out, labels, epdms, use_ec=bool(rc.use_ec), epdms_weight=float(rc.epdms_weight),
                          rank_weight=float(rc.rank_weight), rank_scale=float(rc.rank_scale), pair_weight=pair_weight)
    return losses["total"], (losses, out)


def inner_updates(loss_fn, tx, params, opt_state, num: int):
    """``num`` optimizer steps of ``tx`` on one batch's ``loss_fn(params) -> (loss, (terms, outputs))`` (a
    ``lax.scan``; ``rwm.inner_steps``) -> ((params, opt_state), (terms, outputs, gradient global norm), each
    stacked over the ``num`` steps)."""
    def update(carry, _):
        p, opt = carry
        (_, (terms, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(p)
        upd, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, upd), opt), (terms, out, optax.global_norm(grads))

    return jax.lax.scan(update, (params, opt_state), None, length=int(num))


def make_fns(config, vla_gd, rwm_gd, tx, mesh=None):
    """-> (train_step(state, vla_params, vla_consts, scenes), eval_step(params, vla_params, vla_consts,
    scenes, rng)) — both pure, jit them; the scorer's labels shard over ``mesh`` (``epdms.score_sharded``)."""
    from irlvla_jax.scoring.epdms import score_sharded
    rc = config.rwm
    use_ec = bool(rc.use_ec)
    mode, hf = config.scoring.mode, bool(config.scoring.human_filter)
    sched = planner_lib.make_schedule(config.model.planner)

    inner = int(rc.inner_steps)
    src_np = C.candidate_sources(config)
    pol = np.isin(src_np, [C.SOURCES.index(n) for n in C.POLICY_SOURCES]).astype(np.float32)
    ppo_noise = C.ppo_noise_of(config)
    pair_w = 1.0 + float(rc.policy_rank_boost) * np.outer(pol, pol)  # [N, N]
    use_scenes = bool(rc.ego_features) or bool(rc.scene_features)

    def prepare(vla_params, vla_consts, scenes, key):
        vla = nnx.merge(vla_gd, vla_params, vla_consts)
        tokens = jax.lax.stop_gradient(vla.encode(scenes))
        cands, src = C.make_candidates(vla, tokens, scenes, key, rc, sched, ppo_noise)
        cands = jax.lax.stop_gradient(cands)
        s = score_sharded(scenes, cands, mesh, mode=mode, human_filter=hf)
        return tokens, cands, src, s

    def apply(p, tokens, cands, scenes):
        return nnx.merge(rwm_gd, p)(tokens, cands, scenes=scenes if use_scenes else None)

    def train_step(state, vla_params, vla_consts, scenes):
        """One labelled batch (candidates + scorer labels), then ``rwm.inner_steps`` AdamW updates on it."""
        key, nxt = state.next_rng()
        tokens, cands, _, s = prepare(vla_params, vla_consts, scenes, key)
        labels = labels_of(s)

        def lf(p):
            return loss(nnx.merge(rwm_gd, p), tokens, cands, scenes if use_scenes else None, labels, s.EPDMS, rc,
                        jnp.asarray(pair_w))

        (params, opt), (losses, out, gnorm) = inner_updates(lf, tx, state.params, state.opt_state, inner)
        losses = jax.tree.map(lambda x: x[-1], losses)
        out = jax.tree.map(lambda x: x[0], out)          # predictions before this batch's updates
        pred = R.predicted_reward(out, use_ec)
        m = {f"loss_{k}": v for k, v in losses.items()}
        m.update(grad_norm=gnorm[-1], true_epdms=jnp.mean(s.EPDMS),
                 reward_mae=jnp.mean(jnp.abs(pred - s.EPDMS)), **finite_flags(losses["total"], gnorm, params))
        return state.replace(params=params, opt_state=opt, step=state.step + 1, rng=nxt), m

    def eval_step(params, vla_params, vla_consts, scenes, rng):
        tokens, cands, src, s = prepare(vla_params, vla_consts, scenes, rng)
        out = apply(params, tokens, cands, scenes)
        return R.expectations(out), R.predicted_reward(out, use_ec), labels_of(s), s.EPDMS, cands

    return train_step, eval_step


# (config JSON, VLA graphdef, RWM graphdef, mesh) -> the jitted training step: one compiled program per process.
_TRAIN_STEPS: Dict[tuple, Any] = {}


def jitted_train_step(config, vla_gd, rwm_gd, mesh):
    """:func:`make_fns`'s ``train_step``, jitted (state donated) once per process for a given config, models
    and mesh: the RWM stage and PPO's RWM refresh (``ppo.rwm_refresh_every``) in the same process share one
    compiled program (in the README main job the refresh's compile was 40 s of the PPO stage's 204 s)."""
    key = (config.to_json_best_effort(sort_keys=True), vla_gd, rwm_gd, mesh)
    if key not in _TRAIN_STEPS:
        while len(_TRAIN_STEPS) >= 4:                 # a few runs' programs at most (tests build many)
            _TRAIN_STEPS.pop(next(iter(_TRAIN_STEPS)))
        train_step = make_fns(config, vla_gd, rwm_gd, make_optimizer(config.rwm), mesh)[0]
        _TRAIN_STEPS[key] = jax.jit(train_step, donate_argnums=(0,))
    return _TRAIN_STEPS[key]


def evaluate_rwm(config, eval_fn, params, vla_params, vla_consts, scenes, mesh, batch_size: int,
                 seed: int = 1234) -> Dict[str, Any]:
    """Held-out report on ``scenes`` (numpy Scene batch), in batches of ``batch_size``."""
    from irlvla_jax.scene import index
    n = (int(np.asarray(scenes.scene_id).shape[0]) // batch_size) * batch_size
    if n == 0:
        raise ValueError(f"rwm evaluation needs at least {batch_size} scenes (rwm.batch_size), got "
                         f"{int(np.asarray(scenes.scene_id).shape[0])}")
    acc = {"exp": [], "pred": [], "lab": [], "true": []}
    pid, nproc = jax.process_index(), jax.process_count()
    lb = mesh_lib.local_batch_size(batch_size)
    for i in range(0, n, batch_size):
        b = mesh_lib.shard_batch(index(scenes, slice(i + pid * lb, i + (pid + 1) * lb)), mesh)   # this process's rows
        out = eval_fn(params, vla_params, vla_consts, b, jax.random.PRNGKey(seed + i))[:4]
        if nproc > 1:
            from jax.experimental import multihost_utils
            out = multihost_utils.process_allgather(out, tiled=True)
        e, r, lab, t = jax.device_get(out)
        acc["exp"].append(e); acc["pred"].append(r); acc["lab"].append(lab); acc["true"].append(t)
    cat = lambda xs: {k: np.concatenate([x[k] for x in xs]) for k in xs[0]}  # noqa: E731
    return report(cat(acc["exp"]), np.concatenate(acc["pred"]), cat(acc["lab"]), np.concatenate(acc["true"]),
                  C.candidate_sources(config), bool(config.rwm.use_ec))


# --------------------------------------------------------------------------------------------------
# Train, restore, policy.

def train(config, workdir: str, *, train_iter=None, eval_scenes=None, progress: bool = True, mesh=None,
          num_steps: Optional[int] = None, report: bool = True) -> Dict[str, Any]:
    """Run (or resume) RWM training to ``config.rwm.steps``, then (``report``) write the held-out report
    (``<workdir>/rwm_report.json``) and return it; without it, return the training summary."""
    from irlvla_jax.train.state import TrainState
    rc = config.rwm
    bs = int(rc.batch_size)
    mesh = loop.make_mesh(config, mesh, bs, "rwm.batch_size")
    vla_gd, vla_params, vla_consts = imitation.restore(config, workdir, mesh)
    rwm_gd, params = build_rwm(config, int(config.seed))
    tx = make_optimizer(rc)
    prep = loop.prepare(config, workdir, RUN, TrainState.create(params, {}, tx, int(config.seed)), mesh, bs,
                        train_iter=train_iter, run_keys=RWM_MODEL_KEYS, batch_key="rwm.batch_size")
    eval_step = make_fns(config, vla_gd, rwm_gd, tx, mesh)[1]
    step_fn = jitted_train_step(config, vla_gd, rwm_gd, mesh)
    total = int(num_steps if num_steps is not None else rc.steps)
    res = loop.run(workdir=workdir, name=RUN, prep=prep, total=total, prefix="rwm/",
                   step_fn=lambda st, b: step_fn(st, vla_params, vla_consts, b),
                   log_every=int(config.train.log_every), checkpoint_every=int(rc.checkpoint_every),
                   progress=progress)
    if not report:
        return dict(steps=total, train_wall_s=res.wall_s, step_s=res.step_s)
    if eval_scenes is None:
        eval_scenes = loop.load_scenes(config, workdir, str(rc.eval_split), int(rc.eval_scenes))
    rep = evaluate_rwm(config, jax.jit(eval_step), res.state.params, vla_params, vla_consts, eval_scenes, mesh, bs)
    rep.update(steps=total, train_wall_s=res.wall_s, step_s=res.step_s, split=str(rc.eval_split),
               scoring_mode=str(config.scoring.mode))
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "rwm_report.json"), "w") as f:
            json.dump(rep, f, indent=1, default=float)
        print(json.dumps({"stage": RUN, **{k: rep[k] for k in ("spearman_within_scene", "regret",
                                                               "regret_policy_chains", "steps") if k in rep}},
                         default=float))
    return rep


def abstract_state(config, mesh=None):
    """-> (graphdef, the RWM TrainState's shapes and dtypes, replicated over ``mesh`` (default: the restore
    mesh)): what a checkpoint holding an RWM state restores into."""
    from irlvla_jax.train.state import TrainState
    gd, params = build_rwm(config, int(config.seed))
    tx = make_optimizer(config.rwm)
    rep = mesh_lib.replicated(mesh or mesh_lib.restore_mesh())
    return gd, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                            jax.eval_shape(lambda p: TrainState.create(p, {}, tx, 0), params))


def restore_state(config, workdir: str, mesh=None):
    """The latest RWM checkpoint of ``workdir`` -> (graphdef, its whole TrainState: params, optimizer
    state, step, rng; what PPO's RWM refresh goes on training)."""
    gd, abstract = abstract_state(config, mesh)
    return gd, loop.open_latest(config, workdir, RUN, abstract, "run `irlvla train --stage rwm` first",
                                run_keys=RWM_MODEL_KEYS)


def restore(config, workdir: str):
    """The latest RWM checkpoint of ``workdir`` -> (graphdef, params pure dict)."""
    gd, state = restore_state(config, workdir)
    return gd, state.params


def policy(config, workdir: str, *, seed: int = 0, chunk: int = 32):
    """The RWM stage's policy: the IL planner's K anchor chains (one sample, :func:`imitation.chains`), the
    one with the highest RWM reward executed -- what the RWM knows without RL.
    -> ``policy(scenes) -> np.ndarray [B, 1, 8, 3]`` (metres, radians, ego frame)."""
    vla = imitation.restore(config, workdir, mesh_lib.restore_mesh())
    return pick_policy(config, vla, restore(config, workdir),
                       lambda scenes: imitation.model_chains(vla, scenes, samples=1, seed=seed, chunk=chunk), chunk)


def pick_policy(config, vla, rwm, candidates, chunk: int = 32):
    """The candidate with the highest reward of the RWM ``rwm = (graphdef, params)`` executed, the scene
    tokens from the VLA ``vla = (graphdef, params, consts)``; ``candidates(scenes) -> [B, N, 8, 3]``.
    -> ``policy(scenes) -> np.ndarray [B, 1, 8, 3]`` (metres, radians, ego frame)."""
    from irlvla_jax.scene import padded_chunks, pad_rows
    gd, params, consts = vla
    rgd, rparams = rwm
    use_ec = bool(config.rwm.use_ec)

    @jax.jit
    def reward(scene, traj):
        tok = nnx.merge(gd, params, consts).encode(scene)
        return R.predicted_reward(nnx.merge(rgd, rparams)(tok, traj, scenes=scene), use_ec)

    def fn(scenes) -> np.ndarray:
        cands = candidates(scenes)
        r = np.concatenate([np.asarray(reward(b, pad_rows(cands[i:i + m], chunk)))[:m]
                            for i, b, m in padded_chunks(scenes, chunk)])
        return np.take_along_axis(cands, np.argmax(r, -1)[:, None, None, None], 1)

    return fn
