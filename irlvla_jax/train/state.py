"""TrainState: the whole training state as one pytree (no graphdef inside), jit- and Orbax-friendly.

    params   nested dict of arrays (the model's nnx.Param values, ``vla.split``)
    consts   nested dict of non-trained variables (planner anchors); saved so a checkpoint is complete
    opt_state  optax state for ``params``
    step     int32 scalar
    rng      a raw uint32 PRNG key [2] (``jax.random.key_data``), advanced once per step

The graphdef (the static model structure) lives outside, rebuilt from the config; ``nnx.merge(graphdef,
state.params, state.consts)`` inside the jitted step re-creates the module.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class TrainState:
    params: Any
    consts: Any
    opt_state: Any
    step: Any
    rng: Any

    @classmethod
    def create(cls, params, consts, tx, seed: int) -> "TrainState":
        return cls(params=params, consts=consts, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                   rng=jax.random.key_data(jax.random.key(seed)))

    def next_rng(self):
        """-> (a fresh typed key for this step, the state's next raw key)."""
        k1, k2 = jax.random.split(jax.random.wrap_key_data(self.rng))
        return k1, jax.random.key_data(k2)


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStruct pytree (keeps shardings when present) for restoring."""
    def f(x):
        sh = getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh)
    return jax.tree.map(f, tree)


FINITE_PREFIX = "finite_"


def finite_flags(loss, grads, params) -> dict:
    """In-jit finiteness of a training step's quantities: {"finite_loss", "finite_grads", "finite_params"}
    (bool scalars). A step function returns them among its metrics; the host loop (train/loop.py) checks
    them before any checkpoint of that step and names the first quantity that is not finite."""
    def all_finite(tree):
        leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
                  if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
        return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
    return {f"{FINITE_PREFIX}loss": all_finite(loss), f"{FINITE_PREFIX}grads": all_finite(grads),
            f"{FINITE_PREFIX}params": all_finite(params)}
