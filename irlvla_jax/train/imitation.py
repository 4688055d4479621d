"""Stage 1: imitation learning of the VLA (diffusion planner + auxiliary perception / meta-action heads).

    irlvla train --stage il --config configs/tiny.py --workdir DIR

Loss (weights ``config.il.w_*``)::

    w_traj * L1(x0 of the positive anchor chain, expert)     (normalised trajectory space, planner.py)
  + w_mode * CE(mode logits, positive anchor)
  + w_det_heat * focal(heatmap) + w_det_box * L1(boxes)     (perception.py)
  + w_bev_seg * CE(BEV segmentation) + w_map_line * map set L1 + w_map_exist * BCE(map queries)
  + w_meta * (CE(meta speed) + CE(meta path))                (semantic.py)

Optimiser: AdamW, linear warm-up then cosine decay to ``end_lr_ratio * lr``, global-norm clipping.
One jitted train step (``make_train_step``) with the state donated; parameters replicated, the batch
sharded over the mesh's 'data' axis (train/mesh.py). Validation every ``val_every`` steps on a fixed
val subset: loss terms, ADE / FDE (metres, the top-scored of K chains, one sample) and EPDMS through
``irlvla_jax.scoring.epdms.make_scorer`` when the scorer is available. Checkpoints (train/checkpoint.py)
every ``checkpoint_every`` steps and at the end, with the data-iterator state, so a killed run resumes
exactly. TensorBoard scalars in ``<workdir>/tb/il``; checkpoints in ``<workdir>/checkpoints/il``.

Evaluation hook: :func:`load_policy` ``(config, workdir) -> fn(scenes) -> [B, 1, 8, 3]`` (metres,
radians, ego frame) restores the latest IL checkpoint; ``irlvla_jax.evaluate`` registers it as "il".
"""
from __future__ import annotations

import inspect
import os
import time
from typing import Any, Callable, Dict, Optional

import jax
import numpy as np
import optax
from flax import nnx

from irlvla_jax.models import vla as vla_lib
from irlvla_jax.models.layers import count_params
from irlvla_jax.models.planner import ade_fde
from irlvla_jax.models.semantic import check_vocab
from irlvla_jax.scene import Scene, SceneSpec, validate
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train.checkpoint import Checkpointer
from irlvla_jax.train.logging import Logger, quiet_libraries
from irlvla_jax.train.state import TrainState

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


def make_loss_fn(graphdef, il):
    """-> loss_fn(params, consts, scene, rng) -> (total loss, dict of terms and metrics)."""
    w = loss_weights(il)

    def loss_fn(params, consts, scene, rng):
        model = nnx.merge(graphdef, params, consts)
        terms = model.imitation_losses(scene, rng)
        total = sum(float(w[k]) * terms[k] for k in LOSS_TERMS)
        return total, terms
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
        metrics = dict(terms, loss=loss, grad_norm=optax.global_norm(grads))
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


def init_state(config, spec: SceneSpec, anchors, mesh, total_steps: Optional[int] = None):
    """Build the model and a replicated TrainState. -> (graphdef, tx, sched, state)."""
    graphdef, params, consts = vla_lib.build(config.model, spec, anchors, seed=int(config.seed))
    tx, sched = make_optimizer(config.il, total_steps)
    state = TrainState.create(params, consts, tx, int(config.seed))
    return graphdef, tx, sched, mesh_lib.replicate(state, mesh)


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


# ---------------------------------------------------------------------------------------------------
# Data access (DATA helper's loader; resolved lazily so tests can inject iterators).

def _call_loader(fn, config, workdir, *args, **kw):
    from irlvla_jax.data import loader as L
    params = inspect.signature(fn).parameters
    if "data_dir" in params and workdir is not None and hasattr(L, "data_dir"):
        kw["data_dir"] = L.data_dir(config, workdir)
    return fn(config, *args, **kw)


def make_train_iter(config, workdir, batch_size: int):
    from irlvla_jax.data import loader as L
    return _call_loader(L.make_loader, config, workdir, "train", batch_size, shuffle=True,
                        seed=int(config.seed), num_epochs=None)


def load_val(config, workdir, n: int) -> Scene:
    from irlvla_jax.data import loader as L
    from irlvla_jax.scene import index
    kw = {"limit": n} if "limit" in inspect.signature(L.load_split).parameters else {}
    scenes = _call_loader(L.load_split, config, workdir, "val", **kw)
    n = min(n, int(np.asarray(scenes.scene_id).shape[0]))
    return index(scenes, slice(0, n))


def load_anchors(config, workdir) -> np.ndarray:
    from irlvla_jax.data import loader as L
    return np.asarray(_call_loader(L.load_anchors, config, workdir), np.float32)


def _make_epdms(config, mesh):
    """EPDMS scorer fn(scenes, traj [B, 1, 8, 3]) -> mean EPDMS, or None if the scorer is unavailable."""
    try:
        from irlvla_jax.scoring.epdms import make_scorer
    except ImportError:
        return None
    sc = config.get("scoring", {}) if hasattr(config, "get") else {}
    scorer = make_scorer(sc.get("mode", "tracked"), bool(sc.get("human_filter", True)), mesh=mesh)

    broken = []

    def fn(scenes, traj):
        if broken:
            return float("nan")
        try:
            return float(np.mean(np.asarray(scorer(scenes, traj).EPDMS)))
        except Exception as e:  # the scorer is developed concurrently: never let it kill training
            broken.append(e)
            print(f"il: EPDMS scorer failed ({type(e).__name__}: {str(e)[:200]}); EPDMS disabled for this run")
            return float("nan")
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


class _Stop(Exception):
    pass


def train(config, workdir: str, args=None, *, train_iter=None, val_scenes: Optional[Scene] = None,
          anchors: Optional[np.ndarray] = None, stop_at: Optional[int] = None, progress: bool = True,
          mesh=None) -> Dict[str, Any]:
    """Run (or resume) stage 1 to ``config.il.steps``. Returns a summary dict (params, timings, last
    validation). ``train_iter`` / ``val_scenes`` / ``anchors`` override the dataset (tests, benchmarks);
    ``stop_at`` stops after that step without a final checkpoint (simulates a crash)."""
    il, spec = config.il, SceneSpec.from_config(config.scene)
    quiet_libraries()
    mesh_lib.maybe_initialize_distributed()
    mesh = mesh or mesh_lib.make_mesh(int(config.train.num_devices))
    bs = int(il.batch_size)
    mesh_lib.check_batch_size(bs, mesh)
    if anchors is None:
        anchors = load_anchors(config, workdir)
    if train_iter is None:
        train_iter = make_train_iter(config, workdir, mesh_lib.local_batch_size(bs))
    if val_scenes is None and int(il.val_every) > 0:
        try:
            val_scenes = load_val(config, workdir, max(int(il.epdms_scenes), bs * int(il.val_batches)))
        except (ImportError, FileNotFoundError) as e:
            print(f"il: no validation data ({e}); validation disabled")
    graphdef, tx, sched, state = init_state(config, spec, anchors, mesh)
    n_params = count_params(state.params)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints", "il"), config=config,
                        max_to_keep=int(config.train.max_to_keep), async_save=bool(config.train.async_checkpoint))
    state, start = ckpt.resume(state, data_iter=train_iter, name="il")
    step_fn = make_train_step(graphdef, tx, il, mesh, sched)
    eval_fn = make_eval_fn(graphdef, il, mesh) if val_scenes is not None else None
    epdms_fn = _make_epdms(config, mesh) if val_scenes is not None else None
    total = int(il.steps)
    log = Logger(workdir, "il", total, start, enable_tqdm=progress)
    log_every = int(config.train.log_every)
    last_val, t_first, t_start, times = {}, None, time.time(), []
    step = start
    try:
        while step < total:
            batch = next(train_iter)
            check_batch(batch, config, spec, full=(step == start))
            t0 = time.time()
            state, metrics = step_fn(state, mesh_lib.shard_batch(batch, mesh))
            step += 1
            if step == start + 1:
                jax.block_until_ready(metrics["loss"])
                t_first = time.time() - t0
            else:
                times.append(time.time() - t0)
            log.advance()
            if step % log_every == 0 or step == total:
                log.scalars(step, metrics, "train/")
            if eval_fn is not None and int(il.val_every) > 0 and (step % int(il.val_every) == 0 or step == total):
                last_val = validate_model(eval_fn, state, val_scenes, bs, mesh, epdms_fn)
                log.scalars(step, last_val, "val/")
            if step % int(il.checkpoint_every) == 0 and step != total:
                ckpt.save(step, state, train_iter)
            if stop_at is not None and step >= stop_at:
                raise _Stop()
        ckpt.save(step, state, train_iter, force=True)
        ckpt.wait()
    except _Stop:
        ckpt.wait()
    finally:
        log.close()
    jax.block_until_ready(state.params)
    wall = time.time() - t_start
    return dict(params=n_params, steps=step, start=start, compile_s=t_first,
                step_s=float(np.median(times)) if times else None, wall_s=wall, val=last_val, state=state)


# ---------------------------------------------------------------------------------------------------
# Policy for evaluation.

def load_policy(config, workdir: str, *, seed: int = 0, chunk: Optional[int] = None):
    """Restore the latest IL checkpoint of ``workdir`` -> ``policy(scenes) -> np.ndarray [B, 1, 8, 3]``
    (metres, radians, ego frame; the top-scored of the K anchor chains, deterministic given ``seed``).
    Any batch size works: scenes are run in fixed chunks (``config.il.batch_size``; the last padded)."""
    spec = SceneSpec.from_config(config.scene)
    mesh = mesh_lib.make_mesh(1)
    graphdef, _, abstract = abstract_state(config, spec, mesh)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints", "il"), config=config, async_save=False)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no IL checkpoint in {ckpt.directory}; run `irlvla train --stage il` first")
    state, _ = ckpt.restore(abstract)
    params, consts = state.params, state.consts
    chunk = int(chunk or config.il.batch_size)

    @jax.jit
    def run(params, consts, scene, rng):
        model = nnx.merge(graphdef, params, consts)
        return model.sample(model.encode(scene), rng, 1)

    def policy(scenes: Scene) -> np.ndarray:
        from irlvla_jax.scene import padded_chunks
        check_vocab(np.asarray(scenes.instruction), int(config.model.semantic.vocab_size))
        outs = [np.asarray(run(params, consts, b, jax.random.key(seed + i)))[:m]
                for i, b, m in padded_chunks(scenes, chunk)]
        return np.concatenate(outs).astype(np.float32)

    return policy
