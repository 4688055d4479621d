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
