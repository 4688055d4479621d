"""Device mesh and batch sharding: the ONE module that decides mesh axis types.

Decision: a 1-D mesh with axis ``'data'`` and **Auto** axis types (``jax.sharding.AxisType.Auto``), i.e.
the classic GSPMD behaviour: we place inputs (batch sharded over 'data', parameters / optimizer state
replicated) and let the compiler propagate shardings through ``jit``. ``jax.make_mesh`` defaults to
Explicit axes in this JAX (0.10); Explicit would force ``out_sharding=`` on sharded contractions in the
models, which are written sharding-agnostic. Everything that needs a mesh calls :func:`make_mesh`.

Multi-host: :func:`maybe_initialize_distributed` is the one place that reads the cluster, in this order:
(1) explicit: ``IRLVLA_COORDINATOR=host:port``, ``IRLVLA_NUM_PROCESSES``, ``IRLVLA_PROCESS_ID``
(launch/local.sh sets them); (2) SLURM: ``SLURM_NTASKS > 1`` inside an allocation (launch/slurm.sbatch;
JAX's SLURM detection derives the coordinator from ``SLURM_JOB_NODELIST`` and the rank from
``SLURM_PROCID``); (3) JAX's own auto-detection (Cloud TPU pods, ...) with ``IRLVLA_DISTRIBUTED=1``
(launch/tpu_vm.sh). It prints the process / device layout it sees. A process silent for
``IRLVLA_HEARTBEAT_TIMEOUT`` seconds is declared dead and every other process stops with an error.
Each process loads its own shard of the batch (the grain loader shards by ``jax.process_index()``) and
:func:`shard_batch` assembles the global array with ``jax.make_array_from_process_local_data``.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA = "data"
_INITIALIZED = False


HEARTBEAT_TIMEOUT_S = 30     # a process silent this long is declared dead and the job stops (JAX default: 100)


def _timeouts() -> dict:
    """Failure detection of jax.distributed: ``IRLVLA_HEARTBEAT_TIMEOUT`` seconds (default
    :data:`HEARTBEAT_TIMEOUT_S`) without a heartbeat from a process ends every other process with an error
    naming the dead task, instead of a hang in the next collective."""
    return dict(heartbeat_timeout_seconds=int(os.environ.get("IRLVLA_HEARTBEAT_TIMEOUT", HEARTBEAT_TIMEOUT_S)))


def cluster_source() -> str:
    """Where the cluster layout comes from: "explicit", "slurm", "auto" or "single" (see the module doc)."""
    if os.environ.get("IRLVLA_COORDINATOR"):
        return "explicit"
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_PROCID") is not None:
        return "slurm"
    if os.environ.get("IRLVLA_DISTRIBUTED") == "1":
        return "auto"
    return "single"


def maybe_initialize_distributed() -> bool:
    """Initialise multi-process JAX if the environment says so (idempotent; see the module docstring).
    Returns True if initialised."""
    global _INITIALIZED
    if _INITIALIZED:
        return True
    source = cluster_source()
    if source == "explicit":
        try:
            n, pid = int(os.environ["IRLVLA_NUM_PROCESSES"]), int(os.environ["IRLVLA_PROCESS_ID"])
        except KeyError as e:
            raise ValueError(f"IRLVLA_COORDINATOR is set but environment variable {e.args[0]} is missing; "
                             "set IRLVLA_NUM_PROCESSES and IRLVLA_PROCESS_ID too") from None
        jax.distributed.initialize(os.environ["IRLVLA_COORDINATOR"], num_processes=n, process_id=pid, **_timeouts())
    elif source == "slurm":
        jax.distributed.initialize(cluster_detection_method="slurm", **_timeouts())
    elif source == "auto":
        jax.distributed.initialize(**_timeouts())
    else:
        return False
    _INITIALIZED = True
    return True


def layout(source: str = "") -> str:
    """One line: this process's index and host, its devices, the global device count."""
    import socket
    local = jax.local_devices()
    return (f"irlvla: process {jax.process_index()}/{jax.process_count()} on {socket.gethostname()}"
            f"{' (' + source + ')' if source else ''}: {len(local)} local {local[0].platform} device(s), "
            f"{jax.device_count()} in all")


def make_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
    """1-D ('data',) mesh with Auto axis types over the first ``num_devices`` devices (0 = all)."""
    devs = jax.devices()
    n = len(devs) if not num_devices else int(num_devices)
    if n < 1 or n > len(devs):
        raise ValueError(f"config.train.num_devices={num_devices}: {len(devs)} device(s) available "
                         "(0 = use all)")
    if jax.process_count() > 1 and n != len(devs):
        raise ValueError("config.train.num_devices must be 0 (all devices) in a multi-process run")
    return jax.make_mesh((n,), (DATA,), axis_types=(jax.sharding.AxisType.Auto,), devices=devs[:n])


def restore_mesh() -> jax.sharding.Mesh:
    """The mesh a restored checkpoint is placed on outside training: one device in a single process (policies,
    evaluation), every device in a multi-process job (the arrays are global there)."""
    return make_mesh(1 if jax.process_count() == 1 else 0)


def batch_sharding(mesh) -> NamedSharding:
    """Leading (batch) axis over 'data', the rest replicated."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_size(global_batch: int, mesh, key: str = "il.batch_size") -> None:
    n = mesh.devices.size
    if global_batch % n:
        raise ValueError(f"config.{key}={global_batch} must be divisible by the number of devices ({n})")


def shard_batch(tree: Any, mesh) -> Any:
    """Host-local numpy batch (this process's rows) -> global jax arrays sharded over 'data'."""
    sh = batch_sharding(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sh, np.asarray(x)), tree)


def replicate(tree: Any, mesh) -> Any:
    """Put every leaf on every device of the mesh (parameters, optimizer state)."""
    return jax.device_put(tree, replicated(mesh))


def local_batch_size(global_batch: int) -> int:
    """Rows this process loads for a given global batch size."""
    if global_batch % jax.process_count():
        raise ValueError(f"global batch {global_batch} not divisible by process count {jax.process_count()}")
    return global_batch // jax.process_count()
