"""Command encoder: driving command one-hot + ego status -> one cmd token [B, 1, D].

Inputs: ``command [B, 4]`` (left, straight, right, unknown), ``ego_history [B, 4, 7]`` (x, y, heading,
vx, vy, ax, ay at -1.5, -1.0, -0.5, 0.0 s; metres, radians, m/s, m/s^2, ego frame at t0) and
``speed_limit [B]`` (m/s). Features are scaled to O(1) by fixed constants (positions / 10 m, speeds /
10 m/s, accelerations / 3 m/s^2, speed limit / 20 m/s) and fed to a 2-layer MLP.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx

from irlvla_jax.models.layers import MLP, dtype_of

_SCALE = np.array([10.0, 10.0, 1.0, 10.0, 10.0, 3.0, 3.0], np.float32)


class CommandEncoder(nnx.Module):
    """``__call__(command [B, 4], ego_history [B, 4, 7], speed_limit [B]) -> [B, 1, D]``."""

    def __init__(self, cfg, dim: int, *, rngs: nnx.Rngs):
        self.mlp = MLP(4 + 28 + 1, 2 * dim, dim, rngs=rngs, dtype=dtype_of(cfg.dtype))

    def __call__(self, command, ego_history, speed_limit):
        B = command.shape[0]
        x = jnp.concatenate([command.astype(jnp.float32), (ego_history / _SCALE).reshape(B, 28),
                             speed_limit.reshape(B, 1) / 20.0], -1)
        return self.mlp(x)[:, None]
