"""The shape every training stage shares: the preamble and the host loop (IL, RWM and PPO use both).

Each stage module (``train/imitation.py``, ``train/reward.py``, ``train/ppo.py``) exposes the same four
public names: ``loss(...)`` (its objective, a pure function), ``train(config, workdir, *, ...)``,
``restore(config, workdir, ...)`` (its latest checkpoint) and ``policy(config, workdir, ...)`` (the
evaluation policy ``scenes -> [B, 1, 8, 3]``). Their ``train`` is: build the state, :func:`prepare`
(distributed init, mesh, batch-size check, the training-data iterator, resume from the latest
checkpoint), then :func:`run` (the loop below) with the stage's jitted step.

The loop, for step in [start, total): ``state, metrics = step_fn(state, next_batch(step))``; the
optional host ``check(metrics, step)`` (PPO: raises on a non-finite reward) runs BEFORE any checkpoint
of that step. Every step function returns the finiteness of its loss, gradients and parameters
(``train.state.finite_flags``); the loop keeps those device flags without a host round-trip and reads
them at every log / checkpoint step and at the end, so a non-finite step stops training with
:class:`~irlvla_jax.errors.NonFiniteError` naming the first bad step and quantity, before any checkpoint
of it (saves of earlier steps still in flight finish first). Scalars are logged every ``log_every`` steps (TensorBoard ``<workdir>/tb/<name>``, the
JSON-lines history and the progress bar, :class:`~irlvla_jax.train.logging.Logger`); ``validate(step,
state)`` every ``validate_every`` steps and at the end; a checkpoint every ``checkpoint_every`` steps and
at the end (with the data-iterator state: a killed run resumes exactly).

Data access shared by the stages (the training iterator, the first scenes of a split, the anchors)
lives here too.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Optional

import jax
import numpy as np

from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train.checkpoint import Checkpointer
from irlvla_jax.errors import NonFiniteError
from irlvla_jax.train.logging import Logger, quiet_libraries
from irlvla_jax.train.state import FINITE_PREFIX


# --------------------------------------------------------------------------------------------------
# Data.

def make_train_iter(config, workdir: str, batch_size: int):
    """The endless, shuffled (seed ``config.seed``), resumable iterator over this process's share of the
    train split, ``batch_size`` scenes per batch."""
    from irlvla_jax.data import loader as L
    return L.make_loader(config, "train", batch_size, shuffle=True, seed=int(config.seed), num_epochs=None,
                         data_dir=L.data_dir(config, workdir))


def load_scenes(config, workdir: str, split: str, n: int):
    """The first ``n`` scenes (by scene id) of ``split`` as one numpy Scene batch."""
    from irlvla_jax.data import loader as L
    return L.load_split(config, split, data_dir=L.data_dir(config, workdir), limit=int(n))


def load_anchors(config, workdir: str) -> np.ndarray:
    """The dataset's anchor trajectories [K, 8, 3] float32 (metres, radians)."""
    from irlvla_jax.data import loader as L
    return np.asarray(L.load_anchors(config, data_dir=L.data_dir(config, workdir)), np.float32)


# --------------------------------------------------------------------------------------------------
# Preamble.

@dataclasses.dataclass
class Prepared:
    """What :func:`prepare` returns: the mesh, the resumed state and the step it resumes at, the
    checkpointer and the training-data iterator (restored in place on resume)."""
    mesh: Any
    state: Any
    start: int
    ckpt: Checkpointer
    train_iter: Any
    batch_size: int = 0         # rows of each host batch of ``train_iter`` (this process's share); 0: unchecked
    batch_key: str = ""         # the config key that sets it (named by the error when a batch has other rows)


def make_mesh(config, mesh=None, batch_size: Optional[int] = None, batch_key: str = ""):
    """Initialise ``jax.distributed`` when launched multi-process, build the ('data',) mesh over
    ``config.train.num_devices`` (unless ``mesh`` is given), print the layout (process, host, devices) and
    check that ``batch_size`` splits over it."""
    quiet_libraries()
    mesh_lib.maybe_initialize_distributed()
    mesh = mesh or mesh_lib.make_mesh(int(config.train.num_devices))
    print(f"{mesh_lib.layout(mesh_lib.cluster_source())}; the 'data' mesh spans {mesh.size}", flush=True)
    if batch_size is not None:
        mesh_lib.check_batch_size(int(batch_size), mesh, batch_key)
    return mesh


def prepare(config, workdir: str, name: str, state, mesh, batch_size: int, *, train_iter=None,
            unit: str = "step", run_keys: tuple = (), batch_key: str = "batch_size") -> Prepared:
    """Replicate ``state`` over ``mesh``, open ``<workdir>/checkpoints/<name>`` and resume from its latest
    checkpoint (state and data iterator), building the training iterator unless one is given. ``run_keys``:
    the run's model-defining config keys checked on resume (``checkpoint.compare_configs``); every host batch
    must hold this process's share of ``batch_size`` rows (``batch_key``: the config key named if not)."""
    state = mesh_lib.replicate(state, mesh)
    local = mesh_lib.local_batch_size(int(batch_size))
    if train_iter is None:
        train_iter = make_train_iter(config, workdir, local)
    ckpt = Checkpointer(checkpoint_dir(workdir, name), config=config, max_to_keep=int(config.train.max_to_keep),
                        async_save=bool(config.train.async_checkpoint), run_keys=run_keys)
    state, start = ckpt.resume(state, data_iter=train_iter, name=name, unit=unit)
    return Prepared(mesh=mesh, state=state, start=start, ckpt=ckpt, train_iter=train_iter, batch_size=local,
                    batch_key=batch_key)


def check_rows(host, rows: int, key: str) -> None:
    """A host batch (a pytree of arrays with the batch leading) holds ``rows`` rows, or a one-line error naming
    ``key`` (another size would compile the step again for it and train on other batches than configured)."""
    n = int(np.shape(jax.tree.leaves(host)[0])[0])
    if rows and n != rows:
        raise ValueError(f"{key}: the training iterator gave a batch of {n} rows, expected {rows} (this process's "
                         f"share of {key}); give batches of {key} rows or set {key} to the iterator's")


def checkpoint_dir(workdir: str, name: str) -> str:
    """Where the run ``name`` (``il``, ``rwm``, ``ppo_rwm``, ...) keeps its checkpoints."""
    return os.path.join(workdir, "checkpoints", name)


def open_latest(config, workdir: str, name: str, abstract_state, hint: str, run_keys: tuple = ()):
    """Restore the newest intact checkpoint of run ``name`` into ``abstract_state`` -> state (a damaged
    newer step is reported in one line and skipped). No checkpoint raises FileNotFoundError ending with
    ``hint`` (the command that makes one); no intact one raises CheckpointCorrupt."""
    from irlvla_jax.errors import CheckpointCorrupt
    ckpt = Checkpointer(checkpoint_dir(workdir, name), config=config, async_save=False, run_keys=run_keys)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no {name} checkpoint in {ckpt.directory}; {hint}")
    state, _ = ckpt.restore_intact(abstract_state, name=name, set_aside=False)
    if state is None:
        raise CheckpointCorrupt(f"no intact {name} checkpoint in {ckpt.directory} (`irlvla checkpoints` lists "
                                f"them); {hint}")
    return state


# --------------------------------------------------------------------------------------------------
# The host loop.

class Stop(Exception):
    """Raised inside :func:`run` at ``stop_at`` (tests simulate a crash: no final checkpoint)."""


@dataclasses.dataclass
class Result:
    """What :func:`run` returns: the final state, the step reached, the logged scalars (one dict per
    logged step, with ``step``), the median seconds per step after the first (measured between host syncs),
    the first step's seconds (compilation included) and the wall time."""
    state: Any
    step: int
    history: List[Dict[str, float]]
    step_s: Optional[float]
    compile_s: Optional[float]
    wall_s: float
    last_validation: Dict[str, float]


def run(*, workdir: str, name: str, prep: Prepared, total: int, step_fn: Callable, prefix: str,
        log_every: int, checkpoint_every: int, validate: Optional[Callable] = None, validate_every: int = 0,
        check: Optional[Callable] = None, next_batch: Optional[Callable] = None, stop_at: Optional[int] = None,
        progress: bool = True, before_step: Optional[Callable] = None) -> Result:
    """Run steps ``prep.start + 1 .. total`` (see the module docstring). ``step_fn(state, batch) ->
    (state, metrics)``; ``next_batch(step)`` defaults to the next batch of ``prep.train_iter`` sharded over
    the mesh; ``before_step(step, host_batch)`` sees each host batch first (IL: the boundary check);
    ``check(host_metrics, step)`` runs on every step's metrics before its checkpoint."""
    mesh, state, start, ckpt, it = prep.mesh, prep.state, prep.start, prep.ckpt, prep.train_iter
    log = Logger(workdir, name, total, start, enable_tqdm=progress)
    pending: List[tuple] = []           # (step, device finiteness flags) not yet read on the host
    last_saved = [start if start else None]

    def check_pending():
        for s, flags in jax.device_get(pending):
            bad = [k[len(FINITE_PREFIX):] for k, ok in flags.items() if not bool(ok)]
            if bad:
                raise NonFiniteError(
                    f"{name}: step {s}: non-finite {' and '.join(bad)}; stopped before saving it (last checkpoint: "
                    f"{'step ' + str(last_saved[0]) if last_saved[0] else 'none'}); lower the learning rate "
                    f"or check the inputs")
        pending.clear()

    history: List[Dict[str, float]] = []
    last_val: Dict[str, float] = {}
    times: List[float] = []
    compile_s = None
    t_start = t_mark = time.time()
    step_mark = start
    step = start
    try:
        while step < total:
            if next_batch is not None:
                batch = next_batch(step)
            else:
                host = next(it)
                check_rows(host, prep.batch_size, prep.batch_key)
                if before_step is not None:
                    before_step(step, host)
                batch = mesh_lib.shard_batch(host, mesh)
            t0 = time.time()
            state, metrics = step_fn(state, batch)
            step += 1
            pending.append((step, {k: v for k, v in metrics.items() if k.startswith(FINITE_PREFIX)}))
            metrics = {k: v for k, v in metrics.items() if not k.startswith(FINITE_PREFIX)}
            host_metrics = None
            save_now = step % checkpoint_every == 0 or step == total
            if check is not None or step % log_every == 0 or save_now or step == start + 1:
                host_metrics = jax.device_get(metrics)         # the only host sync: at logged / saved steps
                now = time.time()
                if step == start + 1:
                    compile_s = now - t0
                else:
                    times.append((now - t_mark) / (step - step_mark))
                t_mark, step_mark = now, step
            if check is not None:
                check(host_metrics, step)
            if host_metrics is not None:
                check_pending()
            log.advance()
            if step % log_every == 0 or step == total:
                vals = log.scalars(step, {k: v for k, v in host_metrics.items() if np.ndim(v) == 0}, prefix)
                history.append({"step": step, **{k[len(prefix):]: v for k, v in vals.items()}})
            if validate is not None and validate_every > 0 and (step % validate_every == 0 or step == total):
                last_val = log.scalars(step, validate(step, state), "val/")
            if step % checkpoint_every == 0 and step != total:
                ckpt.save(step, state, it)
                last_saved[0] = step
            if stop_at is not None and step >= stop_at:
                raise Stop()
        check_pending()
        ckpt.save(step, state, it, force=True)
        ckpt.wait()
    except Stop:
        ckpt.wait()
    except BaseException:
        ckpt.wait()            # saves of earlier steps in flight finish; nothing of the failing step is written
        raise
    finally:
        log.close()
    jax.block_until_ready(state)
    return Result(state=state, step=step, history=history, step_s=float(np.median(times)) if times else None,
                  compile_s=compile_s, wall_s=time.time() - t_start, last_validation=last_val)
