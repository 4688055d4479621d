"""Stage 1: imitation learning of the VLA (diffusion planner + auxiliary perception / meta-action heads).

    irlvla train --stage il --config configs/tiny.py --workdir DIR

The stage module's four names (train/loop.py): :func:`loss`, :func:`train`, :func:`restore`, :func:`policy`.

Loss (:func:`loss`, weights ``config.il.w_*``)::

    w_traj * L1(x0 of the positive anchor chain, expert)     (normalised trajectory space, planner.py)
  + w_mode * CE(mode logits, positive anchor)
  + w_det_heat * focal(heatmap) + w_det_box * L1(boxes)     (perception.py)
  + w_bev_seg * CE(BEV segmentation) + w_map_line * map set L1 + w_map_exist * BCE(map queries)
  + w_meta * (CE(meta speed) + CE(meta path))                (semantic.py)

Optimiser: AdamW, linear warm-up then cosine decay to ``end_lr_ratio * lr``, global-norm clipping.
One jitted train step (``make_train_step``) with the state donated; parameters replicated, the batch
sharded over the mesh's 'data' axis (train/mesh.py); the host loop is train/loop.py. Validation every
``val_every`` steps on a fixed val subset: loss terms, ADE / FDE (metres, the top-scored of K chains, one
sample) and EPDMS (``config.scoring``). Checkpoints every ``checkpoint_every`` steps and at the end, with
the data-iterator state, so a killed run resumes exactly. TensorBoard scalars in ``<workdir>/tb/il``;
checkpoints in ``<workdir>/checkpoints/il``.

:func:`policy` ``(config, workdir) -> fn(scenes) -> [B, 1, 8, 3]`` (metres, radians, ego frame) restores
the latest IL checkpoint (``irlvla evaluate --policies il``); :func:`chains` gives all K anchor chains
(the candidates of best-of-N and of the RWM stage's policy).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from irlvla_jax.models import vla as vla_lib
from irlvla_jax.models.layers import count_params
from irlvla_jax.models.perception import perception_losses
from irlvla_jax.models.planner import ade_fde
from irlvla_jax.models.semantic import check_vocab
from irlvla_jax.scene import Scene, SceneSpec, padded_chunks, validate
from irlvla_jax.train import loop
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train.state import TrainState, finite_flags

RUN = "il"   # checkpoints/il, tb/il, il_metrics.jsonl
LOSS_TERMS = ("traj_l1", "mode_ce", "det_heat", "det_box", "bev_seg", "map_line", "map_exist", "meta_speed",
              "meta_path")


def loss_weights(il) -> Dict[str, float]:
    """Weight of every loss term from ``config.il``."""
    return dict(traj_l1=il.w_traj, mode_ce=il.w_mode, det_heat=il.w_det_heat, det_box=il.w_det_box,
                bev_seg=il.w_bev_seg, map_line=il.w_map_line, map_exist=il.w_map_exist, meta_speed=il.w_meta,
                meta_path=il.w_meta)


def make_optimizer(il, total_steps: Optional[int] = None):
    """AdamW + warm-up cosine + global-norm clipping. -> (tx, schedule)."""
    total = int(total_steps or il.steps)
    warm = min(int(il.warmup_steps), max(total - 1, 0))
    sched = optax.warmup_cosine_decay_schedule(0.0, float(il.lr), max(warm, 1), max(total, warm + 1),
                                               end_value=float(il.lr) * float(il.end_lr_ratio))
    tx = optax.chain(optax.clip_by_global_norm(float(il.grad_clip)),
                     optax.adamw(sched, weight_decay=float(il.weight_decay)))
    return tx, sched


def loss(model, scene, rng, il):
    """The stage-1 objective, every term and weight in one place. ``model`` a VLA, ``scene`` a Scene batch,
    ``il`` = ``config.il`` -> (total, terms): the weighted sum of :data:`LOSS_TERMS` and a dict of every
    unweighted term plus the metrics mode_acc and meta_acc.

    planner (models/planner.py):        traj_l1, mode_ce (and mode_acc)
    perception (models/perception.py):  det_heat, det_box, bev_seg, map_line, map_exist
    meta-actions (models/semantic.py):  meta_speed, meta_path = CE of the speed / path heads (and meta_acc)
    """
    tokens, per, speed, path = model.encode_with_aux(scene)
    terms = model.planner.imitation_loss(tokens, scene.expert_future.astype(jnp.float32), rng)
    terms.update(perception_losses(per, scene, model.spec, model.heatmap_sigma))
    ce = lambda lg, y: -jnp.take_along_axis(jax.nn.log_softmax(lg, -1), y[:, None], -1).mean()  # noqa: E731
    terms["meta_speed"] = ce(speed, scene.meta_speed.astype(jnp.int32))
    terms["meta_path"] = ce(path, scene.meta_path.astype(jnp.int32))
    terms["meta_acc"] = 0.5 * ((jnp.argmax(speed, -1) == scene.meta_speed).mean()
                               + (jnp.argmax(path, -1) == scene.meta_path).mean())
    w = loss_weights(il)
    return sum(float(w[k]) * terms[k] for k in LOSS_TERMS), terms


def make_loss_fn(graphdef, il):
    """-> loss_fn(params, consts, scene, rng) -> (total, terms): :func:`loss` on merged parameters."""
    def loss_fn(params, consts, scene, rng):
        return loss(nnx.merge(graphdef, params, consts), scene, rng, il)
    return loss_fn


def make_train_step(graphdef, tx, il, mesh, sched=None) -> Callable:
    """Jitted ``step(state: TrainState, scene) -> (state, metrics)``; state donated, replicated; scene
    sharded over 'data'. Compiles once per (shapes, mesh)."""
    loss_fn = make_loss_fn(graphdef, il)

    def step(state: TrainState, scene):
        rng, next_rng = state.next_rng()
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.consts, scene, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(terms, loss=loss, grad_norm=optax.global_norm(grads), **finite_flags(loss, grads, params))
        if sched is not None:
            metrics["lr"] = sched(state.step)
        new = state.replace(params=params, opt_state=opt_state, step=state.step + 1, rng=next_rng)
        return new, metrics

    rep, bat = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    return jax.jit(step, in_shardings=(rep, bat), out_shardings=(rep, rep), donate_argnums=0)


def make_eval_fn(graphdef, il, mesh) -> Callable:
    """Jitted ``eval(params, consts, scene, rng) -> (terms dict, traj [B, 8, 3], ade [B], fde [B])``."""
    loss_fn = make_loss_fn(graphdef, il)

    def ev(params, consts, scene, rng):
        r1, r2 = jax.random.split(rng)
        loss, terms = loss_fn(params, consts, scene, r1)
        model = nnx.merge(graphdef, params, consts)
        traj = model.sample(model.encode(scene), r2, 1)[:, 0]
        ade, fde = ade_fde(traj, scene.expert_future)
        return dict(terms, loss=loss), traj, ade, fde

    rep, bat = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
    return jax.jit(ev, in_shardings=(rep, rep, bat, rep), out_shardings=(rep, bat, bat, bat))


def init_state(config, spec: SceneSpec, anchors, total_steps: Optional[int] = None):
    """Build the model and its TrainState. -> (graphdef, tx, sched, state)."""
    graphdef, params, consts = vla_lib.build(config.model, spec, anchors, seed=int(config.seed))
    tx, sched = make_optimizer(config.il, total_steps)
    return graphdef, tx, sched, TrainState.create(params, consts, tx, int(config.seed))


def abstract_state(config, spec: SceneSpec, mesh=None):
    """ShapeDtypeStruct TrainState for restoring (anchors only need the right shape)."""
    anchors = np.zeros((int(config.data.num_anchors), 8, 3), np.float32)
    graphdef, params, consts = vla_lib.abstract(config.model, spec, anchors)
    tx, _ = make_optimizer(config.il)
    st = jax.eval_shape(lambda p, c: TrainState.create(p, c, tx, 0), params, consts)
    if mesh is not None:
        rep = mesh_lib.replicated(mesh)
        st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), st)
    return graphdef, tx, st


def check_batch(batch: Scene, config, spec: SceneSpec, full: bool) -> None:
    """Host-side boundary check of a numpy batch (SceneError / ValueError naming the field)."""
    if full:
        validate(batch, spec, where="il batch", batch_dims=1)
    check_vocab(np.asarray(batch.instruction), int(config.model.semantic.vocab_size))


def make_epdms_fn(config, mesh):
    """-> fn(scenes, traj [B, 1, 8, 3]) -> mean EPDMS (``config.scoring`` mode and human filter), scored in
    chunks of ``evaluate.chunk`` scenes (rounded to the mesh; fewer scenes: one call) by the process's shared
    scorer over ``mesh``: on one device, the program ``irlvla evaluate`` and the pipeline's table run."""
    from irlvla_jax.scoring.epdms import make_scorer, round_chunk, score_in_chunks
    scorer = make_scorer(str(config.scoring.mode), bool(config.scoring.human_filter), mesh=mesh)
    chunk = round_chunk(int(config.evaluate.chunk), mesh.size)

    def fn(scenes, traj):
        return float(np.mean(score_in_chunks(scorer, scenes, traj, min(chunk, len(traj)))["EPDMS"]))
    return fn


# ---------------------------------------------------------------------------------------------------

def validate_model(eval_fn, state, val: Scene, bs: int, mesh, epdms_fn=None) -> Dict[str, float]:
    """Loss terms, ADE/FDE and (if available) EPDMS on the val subset ``val`` in batches of ``bs``."""
    n = (int(np.asarray(val.scene_id).shape[0]) // bs) * bs
    if n == 0:
        return {}
    from irlvla_jax.scene import index
    pid, npr = jax.process_index(), jax.process_count()
    lb = mesh_lib.local_batch_size(bs)
    rows, trajs, ades, fdes = [], [], [], []
    for i in range(0, n, bs):
        b = index(val, slice(i + pid * lb, i + (pid + 1) * lb))          # this process's rows
        terms, traj, ade, fde = eval_fn(state.params, state.consts, mesh_lib.shard_batch(b, mesh),
                                        jax.random.key(i))
        if npr > 1:
            from jax.experimental import multihost_utils
            traj, ade, fde = multihost_utils.process_allgather((traj, ade, fde), tiled=True)
        rows.append({k: float(v) for k, v in terms.items()})
        trajs.append(np.asarray(traj)); ades.append(np.asarray(ade)); fdes.append(np.asarray(fde))
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["ADE"] = float(np.mean(np.concatenate(ades)))
    out["FDE"] = float(np.mean(np.concatenate(fdes)))
    if epdms_fn is not None:
        out["EPDMS"] = epdms_fn(index(val, slice(0, n)), np.concatenate(trajs)[:, None])
    return out


def train(config, workdir: str, *, train_iter=None, val_scenes: Optional[Scene] = None,
          anchors: Optional[np.ndarray] = None, stop_at: Optional[int] = None, progress: bool = True,
          mesh=None) -> Dict[str, Any]:
    """Run (or resume) stage 1 to ``config.il.steps``. Returns a summary dict (parameter count, timings,
    last validation, the final ``state``). ``train_iter`` / ``val_scenes`` / ``anchors`` override the
    dataset (tests, benchmarks); ``stop_at`` stops after that step without a final checkpoint (a crash)."""
    il, spec = config.il, SceneSpec.from_config(config.scene)
    bs = int(il.batch_size)
    mesh = loop.make_mesh(config, mesh, bs, "il.batch_size")
    if anchors is None:
        anchors = loop.load_anchors(config, workdir)
    if val_scenes is None and int(il.val_every) > 0:
        try:
            val_scenes = loop.load_scenes(config, workdir, "val", max(int(il.epdms_scenes), bs * int(il.val_batches)))
        except FileNotFoundError as e:
            print(f"il: no validation data ({e}); validation disabled")
    graphdef, tx, sched, state = init_state(config, spec, anchors)
    n_params = count_params(state.params)
    prep = loop.prepare(config, workdir, RUN, state, mesh, bs, train_iter=train_iter, batch_key="il.batch_size")
    step_fn = make_train_step(graphdef, tx, il, mesh, sched)
    validate = None
    if val_scenes is not None:
        eval_fn, epdms_fn = make_eval_fn(graphdef, il, mesh), make_epdms_fn(config, mesh)
        validate = lambda step, st: validate_model(eval_fn, st, val_scenes, bs, mesh, epdms_fn)  # noqa: E731
    res = loop.run(workdir=workdir, name=RUN, prep=prep, total=int(il.steps), step_fn=step_fn, prefix="train/",
                   log_every=int(config.train.log_every), checkpoint_every=int(il.checkpoint_every),
                   validate=validate, validate_every=int(il.val_every), stop_at=stop_at, progress=progress,
                   before_step=lambda step, b: check_batch(b, config, spec, full=(step == prep.start)))
    last_val = {k[len("val/"):]: v for k, v in res.last_validation.items()} if res.last_validation else {}
    return dict(params=n_params, steps=res.step, start=prep.start, compile_s=res.compile_s, step_s=res.step_s,
                wall_s=res.wall_s, val=last_val, state=res.state)


# ---------------------------------------------------------------------------------------------------
# Checkpoint and policy.

def restore(config, workdir: str, mesh=None):
    """The latest IL checkpoint of ``workdir`` -> (graphdef, params, consts) (params / consts replicated
    over ``mesh`` when given)."""
    graphdef, _, abstract = abstract_state(config, SceneSpec.from_config(config.scene), mesh)
    state = loop.open_latest(config, workdir, RUN, abstract, "run `irlvla train --stage il` first")
    return graphdef, state.params, state.consts


def policy(config, workdir: str, *, seed: int = 0, chunk: Optional[int] = None):
    """The latest IL checkpoint of ``workdir`` -> ``policy(scenes) -> np.ndarray [B, 1, 8, 3]`` (metres,
    radians, ego frame; the top-scored of the K anchor chains, deterministic DDIM, chunk i of the scenes
    drawn with ``jax.random.key(seed + i)``). Any batch size works: scenes run in fixed chunks
    (``config.il.batch_size`` unless given; the last padded)."""
    graphdef, params, consts = restore(config, workdir, mesh_lib.restore_mesh())
    chunk = int(chunk or config.il.batch_size)

    @jax.jit
    def run(params, consts, scene, rng):
        model = nnx.merge(graphdef, params, consts)
        return model.sample(model.encode(scene), rng, 1)

    def fn(scenes: Scene) -> np.ndarray:
        check_vocab(np.asarray(scenes.instruction), int(config.model.semantic.vocab_size))
        outs = [np.asarray(run(params, consts, b, jax.random.key(seed + i)))[:m]
                for i, b, m in padded_chunks(scenes, chunk)]
        return np.concatenate(outs).astype(np.float32)

    return fn


def chains(config, workdir: str, scenes: Scene, *, samples: int = 1, seed: int = 0, chunk: int = 32) -> np.ndarray:
    """All K anchor chains of ``samples`` samples of the latest IL policy per scene: :func:`model_chains` of
    the IL checkpoint -> [B, samples * K, 8, 3] metres / radians: the candidates that best-of-N and the RWM's
    pick choose among."""
    return model_chains(restore(config, workdir, mesh_lib.restore_mesh()), scenes, samples=samples, seed=seed,
                        chunk=chunk)


def model_chains(vla, scenes: Scene, *, samples: int = 1, seed: int = 0, chunk: int = 32) -> np.ndarray:
    """All K anchor chains of ``samples`` samples per scene of the VLA ``vla = (graphdef, params, consts)``
    (deterministic DDIM, chunk i drawn with ``jax.random.key(seed + i)``) -> [B, samples * K, 8, 3]."""
    graphdef, params, consts = vla

    @jax.jit
    def run(scene, rng):
        model = nnx.merge(graphdef, params, consts)
        _, allx, _ = model.sample(model.encode(scene), rng, samples, return_scores=True)
        return allx.reshape(allx.shape[0], -1, 8, 3)

    return np.concatenate([np.asarray(run(b, jax.random.key(seed + i)))[:m]
                           for i, b, m in padded_chunks(scenes, chunk)]).astype(np.float32)
