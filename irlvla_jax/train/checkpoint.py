"""Checkpoints: Orbax CheckpointManager holding the train state, the data-iterator state and the config.

Layout: ``<directory>/<step>/{state, data, config}``; saves are asynchronous (``wait()`` blocks) and
atomic (Orbax writes to a temporary directory and renames it when complete, so a run killed mid-save
leaves the previous checkpoint as the latest). Items:

* ``state``  — any pytree (a :class:`irlvla_jax.train.state.TrainState`), ``StandardSave``;
* ``data``   — the data iterator's ``get_state()`` as JSON (grain iterators and the DATA loader expose
  ``get_state()/set_state()``; this is what ``grain.checkpoint.CheckpointSave`` writes too), restored with
  ``set_state``;
* ``config`` — the full config as JSON;
* ``digest`` — the integrity record written at save time: a CRC-32 of every saved array's bytes, the
  names of non-finite arrays (a state with any is refused: NaN is never saved) and every array's shape and
  dtype (what restore validates against; older steps without them are validated from Orbax's metadata).

Integrity on restore: the restored arrays are re-hashed and compared with ``digest`` and checked finite;
a step that fails (or whose files cannot be read at all) raises :class:`~irlvla_jax.errors.CheckpointCorrupt`
naming the step's folder and the array. :meth:`Checkpointer.resume` then sets the step aside
(``<step>.corrupt``), says so in one line, and falls back to the newest intact step.
:func:`verify_directory` checks every step of a folder (``irlvla checkpoints``).

Restore validates before reading any array: (1) the saved config's model-defining sections
(``scene``, ``model``, ``data.num_anchors``) against the current config, and (2) every entry of the
saved state tree (path, shape, dtype) against the abstract target state. A mismatch raises
:class:`CheckpointMismatch` (a ValueError) naming the first mismatched entry, e.g.
``checkpoint .../250 does not match the model: params/planner/pose_head/kernel has shape (64, 24) in the
checkpoint but (32, 24) in the model``.
"""
from __future__ import annotations

import json
import os
import zlib
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from irlvla_jax.errors import CheckpointCorrupt, NonFiniteError

MODEL_KEYS = ("scene", "model")
# Scene sizes that only pad arrays the models read with any size (agents, map, route, lights): a checkpoint
# trained at one padding serves scenes of another (e.g. real logs converted with room for more agents).
PADDING_KEYS = tuple(f"scene.{k}" for k in ("num_agents", "num_lanes", "lane_vertices", "lane_points",
                                             "num_drivable", "drivable_vertices", "route_points", "num_lights",
                                             "light_vertices"))
CORRUPT_SUFFIX = ".corrupt"
# Orbax's replica-parallel save (its default off GPU) writes each replicated array as one slice per replica,
# and every (shape, device) slice is a small XLA program: a VLA on 8 devices compiled ~250 of them at its
# first save (7 s on 2 CPU cores, a third of a 3-step run's IL stage). Only arrays of at least this many
# bytes per replica slice are split; smaller ones are written whole from replica 0 (same files, same bytes).
REPLICA_SLICE_MIN_BYTES = 1 << 20


def register_array_handler() -> bool:
    """Register Orbax's jax.Array handler with :data:`REPLICA_SLICE_MIN_BYTES` -> whether it was registered.
    Its metadata store (Orbax's own default) is not in Orbax's public API: where a later Orbax moves it,
    Orbax's default handler stays (same files; only the first save of a replicated model is slower)."""
    import logging
    try:
        from orbax.checkpoint._src.metadata import array_metadata_store
    except ImportError:
        return False
    log = logging.getLogger("absl")              # (the registry warns on stderr that it replaces a handler)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        ocp.type_handlers.register_type_handler(jax.Array, ocp.type_handlers.ArrayHandler(
            array_metadata_store=array_metadata_store.Store(),
            min_slice_bytes_for_replica_parallel=REPLICA_SLICE_MIN_BYTES), override=True)
    finally:
        log.setLevel(level)
    return True


ARRAY_HANDLER_TUNED = register_array_handler()


class CheckpointMismatch(ValueError):
    """A checkpoint does not fit the current config / model."""


def _key_str(k) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def tree_entries(tree) -> Dict[str, Tuple[tuple, str]]:
    """Pytree of arrays / ShapeDtypeStructs -> {"a/b/0": (shape, dtype name)}."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(_key_str(k) for k in path)] = (tuple(leaf.shape), np.dtype(leaf.dtype).name)
    return out


def host_arrays(tree) -> Dict[str, np.ndarray]:
    """Pytree of (device) arrays -> {"a/b/0": contiguous host numpy array} (typed PRNG keys as their data)."""
    names, leaves = [], []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)      # a replicated multi-process array: this process's copy
        names.append("/".join(_key_str(k) for k in path))
        leaves.append(leaf)
    return {n: np.ascontiguousarray(a) for n, a in zip(names, jax.device_get(leaves))}   # one transfer


def digest(tree) -> Dict[str, Any]:
    """The integrity record of a state: {"crc32": {name: CRC-32 of the array's bytes}, "nonfinite": [names of
    floating arrays holding a NaN / inf], "entries": {name: [shape, dtype name]} (:func:`tree_entries`: what
    :meth:`Checkpointer.validate` checks a model against without opening every array's metadata)}."""
    crc, bad = {}, []
    for name, a in host_arrays(tree).items():
        crc[name] = zlib.crc32(a.reshape(-1).view(np.uint8)) if a.size else 0
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            bad.append(name)
    return {"crc32": crc, "nonfinite": bad, "entries": {k: [list(s), d] for k, (s, d) in tree_entries(tree).items()}}


def check_digest(saved: Optional[Dict[str, Any]], state, where: str) -> None:
    """Raise CheckpointCorrupt naming the first array of ``state`` that is not finite or whose bytes differ
    from ``saved`` (the digest written at save time; None: an old checkpoint without one, only finiteness)."""
    now = digest(state)
    if now["nonfinite"]:
        raise CheckpointCorrupt(f"checkpoint {where}: array {now['nonfinite'][0]} holds NaN/inf "
                                f"({len(now['nonfinite'])} array(s) non-finite)")
    if saved is None:
        return
    for name, c in now["crc32"].items():
        if saved["crc32"].get(name) != c:
            raise CheckpointCorrupt(f"checkpoint {where}: array {name} does not match the digest written when "
                                    "it was saved (damaged file)")


def _metadata_entries(md, prefix="") -> Dict[str, Tuple[tuple, str]]:
    out = {}
    if md is None:
        return out
    if isinstance(md, dict):
        for k, v in md.items():
            out.update(_metadata_entries(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(md, (list, tuple)):
        for i, v in enumerate(md):
            out.update(_metadata_entries(v, f"{prefix}/{i}" if prefix else str(i)))
    elif hasattr(md, "shape"):
        out[prefix] = (tuple(md.shape), np.dtype(md.dtype).name)
    return out


def _config_json(config) -> dict:
    if config is None:
        return {}
    if hasattr(config, "to_json_best_effort"):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config, default=str))


def _flat(d, prefix=""):
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = d
    return out


def compare_configs(saved: dict, current: dict, where: str, run_keys: tuple = ()) -> None:
    """Raise CheckpointMismatch naming the first model-defining config key that differs (``PADDING_KEYS``
    may differ). ``run_keys``: dotted keys that define this run's own model besides ``MODEL_KEYS`` (e.g. the
    RWM's ``rwm.d_model``); one the saved config lacks (a checkpoint from before the key existed) is left to
    the state-tree check."""
    keys = [k for k in MODEL_KEYS if k in saved or k in current]
    s = _flat({k: saved.get(k) for k in keys})
    c = _flat({k: current.get(k) for k in keys})
    s["data.num_anchors"] = (saved.get("data") or {}).get("num_anchors")
    c["data.num_anchors"] = (current.get("data") or {}).get("num_anchors")
    for key in run_keys:
        sec, leaf = key.split(".")
        if leaf in (saved.get(sec) or {}):
            s[key], c[key] = saved[sec][leaf], (current.get(sec) or {}).get(leaf, "<absent>")
    for k in sorted((set(s) | set(c)) - set(PADDING_KEYS)):
        a, b = s.get(k, "<absent>"), c.get(k, "<absent>")
        if isinstance(a, list):
            a = tuple(a)
        if isinstance(b, list):
            b = tuple(b)
        if a != b:
            raise CheckpointMismatch(f"checkpoint {where} does not match the config: config.{k} is {a!r} in "
                                     f"the checkpoint but {b!r} now; use the checkpoint's config or a new workdir")


def compare_trees(saved: Dict[str, tuple], target: Dict[str, tuple], where: str) -> None:
    """Raise CheckpointMismatch naming the first entry missing, extra, or of another shape/dtype."""
    for k in sorted(target):
        if k not in saved:
            raise CheckpointMismatch(f"checkpoint {where} does not match the model: entry {k} is missing "
                                     "from the checkpoint")
    for k in sorted(saved):
        if k not in target:
            raise CheckpointMismatch(f"checkpoint {where} does not match the model: the checkpoint has entry "
                                     f"{k} that the model does not have")
    for k in sorted(target):
        if saved[k][0] != target[k][0]:
            raise CheckpointMismatch(f"checkpoint {where} does not match the model: {k} has shape "
                                     f"{saved[k][0]} in the checkpoint but {target[k][0]} in the model")
        if saved[k][1] != target[k][1]:
            raise CheckpointMismatch(f"checkpoint {where} does not match the model: {k} has dtype "
                                     f"{saved[k][1]} in the checkpoint but {target[k][1]} in the model")


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager``. ``config`` is saved with every step and checked on
    restore (``MODEL_KEYS`` and the run's own ``run_keys``, :func:`compare_configs`); every step carries the
    digest of its arrays, checked on restore."""

    def __init__(self, directory: str, *, config=None, max_to_keep: int = 3, async_save: bool = True,
                 run_keys: tuple = ()):
        self.directory = os.path.abspath(directory)
        self.config = _config_json(config)
        self.run_keys = tuple(run_keys)
        self.max_to_keep, self.async_save = max_to_keep, async_save
        self._open()

    def _open(self) -> None:
        opts = ocp.CheckpointManagerOptions(max_to_keep=self.max_to_keep, enable_async_checkpointing=self.async_save,
                                            create=True)
        handlers = dict(state=ocp.StandardCheckpointHandler(), config=ocp.JsonCheckpointHandler(),
                        data=ocp.JsonCheckpointHandler(), digest=ocp.JsonCheckpointHandler())
        self.mngr = ocp.CheckpointManager(self.directory, options=opts, item_handlers=handlers)

    def latest_step(self) -> Optional[int]:
        return self.mngr.latest_step()

    def all_steps(self) -> List[int]:
        return sorted(self.mngr.all_steps())

    def save(self, step: int, state, data_iter=None, force: bool = False) -> bool:
        """Save ``state`` (+ the data iterator's state, the config and the digest) as ``step``. A state
        holding NaN / inf is refused with NonFiniteError before anything is written."""
        dg = digest(state)
        if dg["nonfinite"]:
            raise NonFiniteError(f"refusing to save step {step} to {self.directory}: array {dg['nonfinite'][0]} "
                                 f"holds NaN/inf ({len(dg['nonfinite'])} array(s))")
        args = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self.config),
                    digest=ocp.args.JsonSave(dg))
        if data_iter is not None:
            args["data"] = ocp.args.JsonSave({"state": data_iter.get_state()})
        return self.mngr.save(int(step), args=ocp.args.Composite(**args), force=force)

    def wait(self) -> None:
        self.mngr.wait_until_finished()

    def close(self) -> None:
        self.mngr.wait_until_finished()
        self.mngr.close()

    def where(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def validate(self, abstract_state, step: Optional[int] = None) -> int:
        """Check config and state structure of ``step`` (default latest); return the step."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        where = self.where(step)
        try:
            saved_cfg = self.mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        except Exception as e:  # noqa: BLE001 - any failure to read is damage, reported in one line
            raise CheckpointCorrupt(f"checkpoint {where}: its config item cannot be read "
                                    f"({type(e).__name__}: {_first_line(e)})") from e
        if self.config:
            compare_configs(saved_cfg or {}, self.config, where, self.run_keys)
        compare_trees(self._saved_entries(step), tree_entries(abstract_state), where)
        return step

    def _saved_entries(self, step: int) -> Dict[str, Tuple[tuple, str]]:
        """{name: (shape, dtype name)} of the state saved as ``step``: from its digest (one small JSON file),
        or from Orbax's metadata of every array for a checkpoint written before digests held them (~1 s for
        a model of ~500 arrays on 2 cores)."""
        where = self.where(step)
        if os.path.isdir(os.path.join(where, "digest")):
            try:
                saved = self.mngr.restore(step, args=ocp.args.Composite(digest=ocp.args.JsonRestore()))["digest"]
            except Exception as e:  # noqa: BLE001
                raise CheckpointCorrupt(f"checkpoint {where}: its digest cannot be read "
                                        f"({type(e).__name__}: {_first_line(e)})") from e
            if isinstance(saved, dict) and isinstance(saved.get("entries"), dict):
                return {k: (tuple(v[0]), str(v[1])) for k, v in saved["entries"].items()}
        try:
            md = self.mngr.item_metadata(step)["state"]
        except Exception as e:  # noqa: BLE001
            raise CheckpointCorrupt(f"checkpoint {where}: its state metadata cannot be read "
                                    f"({type(e).__name__}: {_first_line(e)})") from e
        md = getattr(md, "tree", md)
        if md is None:
            raise CheckpointCorrupt(f"checkpoint {where}: no readable 'state' item (incomplete or foreign "
                                    "checkpoint)")
        return _metadata_entries(md)

    def restore(self, abstract_state, step: Optional[int] = None, data_iter=None):
        """Validate, restore and verify the state (and the data iterator in place). -> (state, step).
        Raises CheckpointMismatch (the checkpoint is of another config / model) or CheckpointCorrupt."""
        step = self.validate(abstract_state, step)
        where = self.where(step)
        args = dict(state=ocp.args.StandardRestore(abstract_state))
        has_digest = os.path.isdir(os.path.join(where, "digest"))
        if has_digest:
            args["digest"] = ocp.args.JsonRestore()
        if data_iter is not None:
            args["data"] = ocp.args.JsonRestore()
        try:
            out = self.mngr.restore(step, args=ocp.args.Composite(**args))
        except Exception as e:  # noqa: BLE001 - TensorStore / JSON errors of a damaged step: one line
            raise CheckpointCorrupt(f"checkpoint {where}: cannot be read ({type(e).__name__}: "
                                    f"{_first_line(e)})") from e
        check_digest(out.get("digest") if has_digest else None, out["state"], where)
        if data_iter is not None:
            if out.get("data") is None:
                raise CheckpointMismatch(f"checkpoint {where} has no data-iterator state; "
                                         "resume with a fresh workdir or without a data iterator")
            data_iter.set_state(out["data"]["state"])
        return out["state"], step

    def set_aside(self, step: int) -> str:
        """Rename a damaged step's folder to ``<step>.corrupt`` (kept for inspection, no longer a step)."""
        self.mngr.wait_until_finished()
        src = self.where(step)
        dst = src + CORRUPT_SUFFIX
        n = 1
        while os.path.exists(dst):
            n += 1
            dst = f"{src}{CORRUPT_SUFFIX}{n}"
        os.replace(src, dst)
        self.mngr.close()
        self._open()
        return dst

    def restore_intact(self, abstract_state, data_iter=None, name: str = "", set_aside: bool = True):
        """Restore the newest step that passes its integrity check; each damaged newer step is reported in
        one line and (``set_aside``) renamed ``<step>.corrupt``. -> (state, step), or (None, None) when no
        step is intact."""
        for step in reversed(self.all_steps()):
            try:
                return self.restore(abstract_state, step, data_iter=data_iter)
            except CheckpointCorrupt as e:
                msg = f"{name + ': ' if name else ''}{e}"
                if set_aside:
                    msg += f"; set aside as {self.set_aside(step)}"
                print(msg + "; falling back to the previous step", flush=True)
        return None, None

    def resume(self, state, data_iter=None, name: str = "train", unit: str = "step"):
        """Resume from the newest intact checkpoint if there is one: -> (state, start step); (state, 0)
        otherwise. ``state`` (concrete) gives the expected structure; the data iterator is restored in
        place. Damaged steps are set aside (see :meth:`restore_intact`)."""
        if self.latest_step() is None:
            return state, 0
        from irlvla_jax.train.state import abstract_like
        restored, start = self.restore_intact(abstract_like(state), data_iter=data_iter, name=name)
        if restored is None:
            print(f"{name}: no intact checkpoint left in {self.directory}; starting from {unit} 0", flush=True)
            return state, 0
        print(f"{name}: resumed from {unit} {start}")
        return restored, start


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def verify_directory(directory: str) -> List[Dict[str, Any]]:
    """Every step of a checkpoint folder with its status: "ok" (digest and finiteness pass), "unverified"
    (saved without a digest; finite), "corrupt: <reason>"; set-aside folders listed as "set aside".
    Arrays are restored as saved (no model needed). -> [{"step", "status", "path"}]."""
    rows = []
    mngr = ocp.CheckpointManager(os.path.abspath(directory), item_handlers=dict(
        state=ocp.StandardCheckpointHandler(), digest=ocp.JsonCheckpointHandler()))
    for step in sorted(mngr.all_steps()):
        where = os.path.join(directory, str(step))
        has_digest = os.path.isdir(os.path.join(where, "digest"))
        args = dict(state=ocp.args.StandardRestore())
        if has_digest:
            args["digest"] = ocp.args.JsonRestore()
        try:
            out = mngr.restore(step, args=ocp.args.Composite(**args))
            check_digest(out.get("digest") if has_digest else None, out["state"], where)
            status = "ok" if has_digest else "unverified (saved without a digest)"
        except CheckpointCorrupt as e:
            status = f"corrupt: {_first_line(e)}"
        except Exception as e:  # noqa: BLE001
            status = f"corrupt: cannot be read ({type(e).__name__}: {_first_line(e)})"
        rows.append(dict(step=step, status=status, path=where))
    mngr.close()
    for entry in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if CORRUPT_SUFFIX in entry:
            rows.append(dict(step=entry.split(".")[0], status="set aside", path=os.path.join(directory, entry)))
    return rows
