"""Scene record codec and the generation worker (light: no TFDS import, so spawned workers start fast).

A record is the bytes stored in the ``record`` feature of the TFDS dataset (one per scene)::

    MAGIC (8 bytes) + zlib( uint32 header length + JSON header + raw field bytes )

The JSON header lists ``[name, dtype, shape]`` for every Scene field in :data:`irlvla_jax.scene.FIELDS`
order; the raw bytes are the fields' C-order little-endian buffers, concatenated. zlib's Adler-32
checksum catches corrupted and truncated records; the header lets the reader name the field when a
record disagrees with the dataset's :class:`SceneSpec`. Encoding is a pure function of the arrays
(no timestamps), so the same scene gives byte-identical records.

Why bytes rather than one ``tfds.features.Tensor`` per field: one zlib stream per scene compresses the
padding well (~4x on the tiny spec), decodes with a single C call, and lets a malformed record fail
with a one-line :class:`SceneError` that names the field and the scene, instead of a proto-parser error.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import signal
import struct
import sys
import threading
import time
import zlib
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from irlvla_jax.scene import FIELDS, SPLITS, Scene, SceneError, SceneSpec, validate

MAGIC = b"IRLSCN01"
ZLIB_LEVEL = 1  # level 1: ~3x faster than the default 6, ~10% larger records on the tiny spec.

_HEADER_CACHE: Dict[Tuple, bytes] = {}


def _header(scene: Scene) -> bytes:
    desc = [[n, np.asarray(getattr(scene, n)).dtype.str, list(np.shape(getattr(scene, n)))] for n in FIELDS]
    key = tuple((d[0], d[1], tuple(d[2])) for d in desc)
    h = _HEADER_CACHE.get(key)
    if h is None:
        h = json.dumps(desc, separators=(",", ":")).encode()
        _HEADER_CACHE[key] = h
    return h


def encode_scene(scene: Scene) -> bytes:
    """One numpy (unbatched) Scene -> record bytes. Deterministic: equal arrays give equal bytes."""
    header = _header(scene)
    parts = [struct.pack("<I", len(header)), header]
    for n in FIELDS:
        a = np.asarray(getattr(scene, n))
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        parts.append(np.ascontiguousarray(a).tobytes())
    return MAGIC + zlib.compress(b"".join(parts), ZLIB_LEVEL)


_LAYOUTS: Dict[Tuple[bytes, SceneSpec], Tuple[list, int]] = {}
_LAYOUTS_LOCK = threading.Lock()


def _layout(header: bytes, spec: SceneSpec, where: str) -> Tuple[list, int]:
    """A record header checked against ``spec`` -> ([(name, dtype, count, byte offset, shape, spec dtype)], the
    payload's length). Every record of a dataset has the same header: it is parsed and checked once per
    (header, spec) and process (:func:`_walk`), and decoding a record is then one ``frombuffer`` per field."""
    key = (header, spec)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _walk(header, spec, where, None)
        with _LAYOUTS_LOCK:                       # grain decodes in threads
            if len(_LAYOUTS) >= 16:
                _LAYOUTS.clear()
            _LAYOUTS[key] = layout
    return layout


def _walk(header: bytes, spec: SceneSpec, where: str, payload_len: Optional[int]) -> Tuple[list, int]:
    """Parse the JSON header and check every field against ``spec`` (and, given ``payload_len``, that the
    payload holds exactly the fields' bytes), raising a one-line :class:`SceneError` naming the field."""
    try:
        desc = json.loads(header.decode())
    except Exception as e:  # noqa: BLE001 - any header problem is the same user-facing error
        raise SceneError("record", "a JSON field header", f"an unreadable header ({type(e).__name__})",
                         where) from None
    if not isinstance(desc, list):
        raise SceneError("record", "a JSON field header", "an unreadable header (not a list)", where)
    shapes = spec.shapes()
    by_name = {d[0]: d for d in desc if isinstance(d, list) and len(d) == 3}
    for n in FIELDS:
        if n not in by_name:
            raise SceneError(n, "a field of the Scene record", "nothing (missing)", where)
    off = 4 + len(header)
    fields = []
    for name, dt, shape in desc:
        if name not in shapes:
            raise SceneError(name, "no such field", "an unknown field in the record", where)
        want_shape, want_dtype = shapes[name]
        dt = np.dtype(dt)
        if tuple(shape) != tuple(want_shape):
            raise SceneError(name, f"shape {tuple(want_shape)} (this config's SceneSpec)",
                             f"shape {tuple(shape)} in the record", where)
        if dt.newbyteorder("=") != np.dtype(want_dtype):
            raise SceneError(name, f"dtype {np.dtype(want_dtype)}", f"dtype {dt} in the record", where)
        count = math.prod(shape)
        nbytes = count * dt.itemsize
        if payload_len is not None and off + nbytes > payload_len:
            raise SceneError(name, f"{nbytes} bytes", f"{max(0, payload_len - off)} (truncated record)", where)
        fields.append((name, dt, count, off, tuple(shape), np.dtype(want_dtype)))
        off += nbytes
    if payload_len is not None and off != payload_len:
        raise SceneError("record", f"{off} payload bytes", f"{payload_len} (trailing data)", where)
    return fields, off


def decode_scene(record: Any, spec: SceneSpec, where: str = "", check: bool = True) -> Scene:
    """Record bytes -> numpy Scene, checked against ``spec`` (and ``validate``d when ``check``).

    Raises a one-line :class:`SceneError` naming the field and ``where`` (record / scene id) for a record
    that is not an irlvla scene record, truncated or corrupted, has a field of the wrong shape or dtype,
    or fails :func:`irlvla_jax.scene.validate` (NaN, out-of-range values, bad masks).
    """
    if isinstance(record, (bytearray, memoryview, np.bytes_)):
        record = bytes(record)
    if not isinstance(record, bytes):
        raise SceneError("record", "bytes of an irlvla scene record", f"{type(record).__name__}", where)
    if not record.startswith(MAGIC):
        raise SceneError("record", f"bytes starting with {MAGIC!r}", f"{record[:8]!r} (not a scene record)",
                         where)
    try:
        payload = zlib.decompress(record[len(MAGIC):])
    except zlib.error as e:
        raise SceneError("record", "a complete zlib stream",
                         f"truncated or corrupted data ({e}); regenerate the dataset (irlvla generate)",
                         where) from None
    try:
        (hlen,) = struct.unpack_from("<I", payload, 0)
        header = payload[4:4 + hlen]
    except struct.error:
        raise SceneError("record", "a JSON field header", "an unreadable header (error)", where) from None
    fields, end = _layout(header, spec, where)
    if end != len(payload):        # truncated or trailing bytes: the field-by-field walk names the field
        _walk(header, spec, where, len(payload))
    out = {name: np.frombuffer(payload, dt, count=count, offset=off).reshape(shape).astype(want, copy=False)
           for name, dt, count, off, shape, want in fields}
    scene = Scene(**{n: out[n] for n in FIELDS})
    if check:
        validate(scene, spec, where=where)
    return scene


# ----------------------------------------------------------------------------------------------------
# Generation worker (runs in spawned processes; module-level so it pickles by reference).

DEFAULT_GENERATOR = "irlvla_jax.world.generate:generate_scene"
_W: Dict[str, Any] = {}


def load_generator(path: str) -> Callable:
    """'module:function' -> the function (the scene generator)."""
    mod, _, fn = path.partition(":")
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"scene generator {path!r} cannot be imported ({e}); is irlvla_jax.world installed?") \
            from None


def init_worker(spec: SceneSpec, seed: int, generator: str, parent_pid: Optional[int] = None) -> None:
    """Set up this process to make records. In a pool worker, ``parent_pid`` (the pid of the process that
    started the pool) makes the worker die with its parent (:func:`die_with_parent`); None: in-process."""
    if parent_pid is not None:
        die_with_parent(int(parent_pid))
    _W.update(spec=spec, seed=int(seed), gen=load_generator(generator))


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int, poll_s: float = PARENT_POLL_S) -> None:
    """End this process when its parent (``parent_pid``) ends, even by ``kill -9``.

    A killed pool owner cannot stop its workers, and spawned workers blocked on the task queue never see
    EOF (each holds a copy of the queue's write end), so without this they live on as orphans. Two
    guards, each a no-op where unsupported:
    - Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills this process as soon as the parent
      dies. (It fires when the *thread* that started this process exits: start pool workers from a
      thread that outlives the pool, as generate_dataset does.)
    - anywhere: a daemon thread that exits the process once ``os.getppid()`` is no longer ``parent_pid``
      (the orphan was re-parented), checked every ``poll_s`` seconds.
    If the parent is already gone when this runs, the process exits at once.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
        except (OSError, AttributeError):  # no libc / no prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="irlvla-parent-watchdog", daemon=True).start()


def make_record(task: Tuple[str, int]) -> Tuple[bytes, Dict[str, Any]]:
    """(split, index) -> (record bytes, summary) for one scene, validated. Needs :func:`init_worker`."""
    split, index = task
    spec, seed = _W["spec"], _W["seed"]
    where = f"generated scene {split}[{index}] (seed {seed})"
    scene = _W["gen"](spec, seed, index, split)
    scene = Scene(**{n: np.asarray(getattr(scene, n)) for n in FIELDS})
    validate(scene, spec, where=where)
    if int(scene.split) != SPLITS.index(split):
        raise SceneError("split", f"{SPLITS.index(split)} ({split})", f"{int(scene.split)}", where)
    return encode_scene(scene), summarize(scene)


def make_records(tasks):
    """A chunk of tasks -> [make_record(t) for t in tasks] (one inter-process round trip per chunk)."""
    return [make_record(t) for t in tasks]


def summarize(scene: Scene) -> Dict[str, Any]:
    """Small per-scene numbers kept by the writer (metadata, anchors, inspect)."""
    ef = np.asarray(scene.expert_future, np.float32)
    return {
        "scene_id": int(scene.scene_id), "family": int(scene.family), "split": int(scene.split),
        "expert_future": ef,
        "ego_speed": float(np.hypot(*np.asarray(scene.ego_state)[3:5])),
        "num_agents": int(np.asarray(scene.agent_valid)[:, 0].sum()),
        "expert_progress": float(np.sum(np.hypot(*np.diff(np.concatenate([np.zeros((1, 2), np.float32),
                                                                           ef[:, :2]]), axis=0).T))),
    }

