"""Checkpoints: Orbax CheckpointManager holding the train state, the data-iterator state and the config.

Layout: ``<directory>/<step>/{state, data, config}``; saves are asynchronous (``wait()`` blocks) and
atomic (Orbax writes to a temporary directory and renames it when complete, so a run killed mid-save
leaves the previous checkpoint as the latest). Items:

* ``state``  — any pytree (a :class:`irlvla_jax.train.state.TrainState`), ``StandardSave``;
* ``data``   — the data iterator's ``get_state()`` as JSON (grain iterators and the DATA loader expose
  ``get_state()/set_state()``; this is what ``grain.checkpoint.CheckpointSave`` writes too), restored with
  ``set_state``;
* ``config`` — the full config as JSON.

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
from typing import Dict, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

MODEL_KEYS = ("scene", "model")


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


def compare_configs(saved: dict, current: dict, where: str) -> None:
    """Raise CheckpointMismatch naming the first model-defining config key that differs."""
    keys = [k for k in MODEL_KEYS if k in saved or k in current]
    s = _flat({k: saved.get(k) for k in keys})
    c = _flat({k: current.get(k) for k in keys})
    s["data.num_anchors"] = (saved.get("data") or {}).get("num_anchors")
    c["data.num_anchors"] = (current.get("data") or {}).get("num_anchors")
    for k in sorted(set(s) | set(c)):
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
    restore."""

    def __init__(self, directory: str, *, config=None, max_to_keep: int = 3, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self.config = _config_json(config)
        opts = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
                                            create=True)
        handlers = dict(state=ocp.StandardCheckpointHandler(), config=ocp.JsonCheckpointHandler(),
                        data=ocp.JsonCheckpointHandler())
        self.mngr = ocp.CheckpointManager(self.directory, options=opts, item_handlers=handlers)

    def latest_step(self) -> Optional[int]:
        return self.mngr.latest_step()

    def save(self, step: int, state, data_iter=None, force: bool = False) -> bool:
        args = dict(state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self.config))
        if data_iter is not None:
            args["data"] = ocp.args.JsonSave({"state": data_iter.get_state()})
        return self.mngr.save(int(step), args=ocp.args.Composite(**args), force=force)

    def wait(self) -> None:
        self.mngr.wait_until_finished()

    def close(self) -> None:
        self.mngr.wait_until_finished()
        self.mngr.close()

    def validate(self, abstract_state, step: Optional[int] = None) -> int:
        """Check config and state structure of ``step`` (default latest); return the step."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        where = os.path.join(self.directory, str(step))
        saved_cfg = self.mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        if self.config:
            compare_configs(saved_cfg or {}, self.config, where)
        md = self.mngr.item_metadata(step)["state"]
        md = getattr(md, "tree", md)
        if md is None:
            raise CheckpointMismatch(f"checkpoint {where} has no readable 'state' item (incomplete or foreign "
                                     "checkpoint); delete it or use a new workdir")
        compare_trees(_metadata_entries(md), tree_entries(abstract_state), where)
        return step

    def resume(self, state, data_iter=None, name: str = "train", unit: str = "step"):
        """Resume from the latest checkpoint if there is one: -> (state, start step); (state, 0) otherwise.

        ``state`` (concrete) gives the expected structure; the data iterator is restored in place."""
        if self.latest_step() is None:
            return state, 0
        from irlvla_jax.train.state import abstract_like
        state, start = self.restore(abstract_like(state), data_iter=data_iter)
        print(f"{name}: resumed from {unit} {start}")
        return state, start

    def restore(self, abstract_state, step: Optional[int] = None, data_iter=None):
        """Validate, then restore the state (and the data iterator in place). -> (state, step)."""
        step = self.validate(abstract_state, step)
        args = dict(state=ocp.args.StandardRestore(abstract_state))
        if data_iter is not None:
            args["data"] = ocp.args.JsonRestore()
        out = self.mngr.restore(step, args=ocp.args.Composite(**args))
        if data_iter is not None:
            if out.get("data") is None:
                raise CheckpointMismatch(f"checkpoint {self.directory}/{step} has no data-iterator state; "
                                         "resume with a fresh workdir or without a data iterator")
            data_iter.set_state(out["data"]["state"])
        return out["state"], step
