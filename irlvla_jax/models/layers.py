"""Small shared NNX building blocks: attention, MLP, transformer blocks, sinusoidal embeddings.

All blocks take ``[B, N, D]`` token arrays (batch, tokens, features) and are pure functions of their
parameters once split (no dropout, no mutable state), so ``nnx.merge`` inside ``jit`` is cheap.
Attention uses ``jax.nn.dot_product_attention`` (softmax in float32 whatever the compute dtype).
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx


def dtype_of(name: str):
    """'float32' | 'bfloat16' -> jnp dtype (the compute dtype; parameters stay float32)."""
    try:
        return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]
    except KeyError:
        raise ValueError(f"config.model.dtype must be 'float32' or 'bfloat16', got {name!r}") from None


class Attention(nnx.Module):
    """Multi-head (self- or cross-) attention.

    ``__call__(x [B, N, D], ctx [B, S, Dc] | None, mask [B, N, S] | [B, 1, N, S] bool | None,
    causal=False) -> [B, N, D]``. ``ctx=None`` means self-attention. ``mask`` True = attend.
    """

    def __init__(self, dim: int, heads: int, *, ctx_dim: Optional[int] = None, rngs: nnx.Rngs,
                 dtype=jnp.float32):
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by heads {heads}: change config.model")
        self.heads, self.dim = heads, dim
        cd = ctx_dim or dim
        self.q = nnx.Linear(dim, dim, rngs=rngs, dtype=dtype)
        self.k = nnx.Linear(cd, dim, rngs=rngs, dtype=dtype)
        self.v = nnx.Linear(cd, dim, rngs=rngs, dtype=dtype)
        self.o = nnx.Linear(dim, dim, rngs=rngs, dtype=dtype)

    def __call__(self, x, ctx=None, mask=None, causal: bool = False):
        ctx = x if ctx is None else ctx
        B, N, _ = x.shape
        S = ctx.shape[1]
        h, d = self.heads, self.dim // self.heads
        q = self.q(x).reshape(B, N, h, d)
        k = self.k(ctx).reshape(B, S, h, d)
        v = self.v(ctx).reshape(B, S, h, d)
        if mask is not None and mask.ndim == 3:
            mask = mask[:, None]
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)
        return self.o(out.reshape(B, N, h * d))


class MLP(nnx.Module):
    """Two-layer GELU MLP: ``[..., din] -> [..., dout]``."""

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.fc1 = nnx.Linear(din, hidden, rngs=rngs, dtype=dtype)
        self.fc2 = nnx.Linear(hidden, dout, rngs=rngs, dtype=dtype)

    def __call__(self, x):
        return self.fc2(jax.nn.gelu(self.fc1(x)))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: self-attention (optionally causal, masked) + MLP.

    ``__call__(x [B, N, D], mask [B, N, N] bool | None, causal) -> [B, N, D]``.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.ln1 = nnx.LayerNorm(dim, rngs=rngs, dtype=dtype)
        self.attn = Attention(dim, heads, rngs=rngs, dtype=dtype)
        self.ln2 = nnx.LayerNorm(dim, rngs=rngs, dtype=dtype)
        self.mlp = MLP(dim, mlp_ratio * dim, dim, rngs=rngs, dtype=dtype)

    def __call__(self, x, mask=None, causal: bool = False):
        x = x + self.attn(self.ln1(x), mask=mask, causal=causal)
        return x + self.mlp(self.ln2(x))


def sinusoidal(t, dim: int, max_period: float = 10000.0):
    """Sinusoidal embedding of (integer or real) positions/timesteps: ``t [...] -> [..., dim]`` float32."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = jnp.asarray(t, jnp.float32)[..., None] * freqs
    emb = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, [(0, 0)] * (emb.ndim - 1) + [(0, 1)])
    return emb


def conv_stack(cin: int, channels, *, rngs: nnx.Rngs, dtype=jnp.float32, stride: int = 2):
    """A list of 3x3 stride-``stride`` convolutions (GELU between), channel widths ``channels``."""
    layers, c = [], cin
    for w in channels:
        layers.append(nnx.Conv(c, w, kernel_size=(3, 3), strides=(stride, stride), padding="SAME",
                               rngs=rngs, dtype=dtype))
        c = w
    return nnx.List(layers)


def run_convs(convs, x):
    """Apply a ``conv_stack``; GELU after each conv. ``x [B, H, W, C]``."""
    for conv in convs:
        x = jax.nn.gelu(conv(x))
    return x


def count_params(state) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree.leaves(state)))
