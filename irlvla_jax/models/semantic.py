"""Semantic reasoning: instruction tokens + driving vision -> a small causal "LLM" -> meta tokens.

Tokenizer: the dataset's fixed vocabulary (``irlvla_jax.world.language.VOCAB``) — the scene already
holds token ids (``scene.instruction [B, T] int32``, ``instruction_valid [B, T]``), so tokenisation is
done when the dataset is built and the model only embeds ids (``config.model.semantic.vocab_size`` must
cover every id; :func:`check_vocab` validates a batch on the host).

Sequence fed to the backbone (length S = Nv + T + Nm), causal attention, padded text masked out:

    [ vision prefix: adaptor(BEV tokens) [Nv] | text embeddings [T] | learned meta queries [Nm] ]

The driving vision adaptor is LayerNorm + Linear(D -> Dl) over the perception BEV tokens plus a
learned type embedding. The outputs at the meta-query positions, projected back to D, are the meta
tokens [B, Nm, D]; meta-action heads read their mean: speed logits [B, 4] (META_SPEED) and path logits
[B, 5] (META_PATH), trained with cross-entropy on ``scene.meta_speed`` / ``scene.meta_path``.

Backbone interface (:class:`LanguageBackbone`): anything with

    width: int                                       # Dl
    embed(ids [B, T] int32) -> [B, T, Dl]            # token embedding
    __call__(x [B, S, Dl], valid [B, S] bool) -> [B, S, Dl]   # causal transformer over embeddings

can replace :class:`SmallCausalLM`. A pretrained JAX VLM (e.g. a Gemma-family NNX port restored from a
local Orbax checkpoint) plugs in by registering a constructor in ``BACKBONES`` that builds the module
and loads its weights; its tokenizer would then replace the dataset vocabulary ids (re-tokenise the
instruction text with ``irlvla_jax.world.language.decode``). Nothing else in the VLA changes.
"""
from __future__ import annotations

from typing import Callable, Dict, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from irlvla_jax.models.layers import Block, dtype_of
from irlvla_jax.scene import META_PATH, META_SPEED


class LanguageBackbone(Protocol):
    width: int

    def embed(self, ids):  # [B, T] int32 -> [B, T, Dl]
        ...

    def __call__(self, x, valid):  # [B, S, Dl], [B, S] -> [B, S, Dl]
        ...


class SmallCausalLM(nnx.Module):
    """A small pre-LN causal transformer (the default backbone). Learned absolute positions."""

    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, max_len: int, *,
                 rngs: nnx.Rngs, dtype=jnp.float32):
        self.width, self.max_len, self.num_layers = width, max_len, layers
        self.tok = nnx.Embed(vocab_size, width, rngs=rngs, dtype=dtype)
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, width)))
        self.blocks = nnx.List([Block(width, heads, rngs=rngs, dtype=dtype) for _ in range(layers)])
        self.ln = nnx.LayerNorm(width, rngs=rngs, dtype=dtype)

    def embed(self, ids):
        return self.tok(ids)

    def __call__(self, x, valid):
        S = x.shape[1]
        x = x + self.pos[...][:S].astype(x.dtype)
        causal = jnp.tril(jnp.ones((S, S), bool))
        mask = causal[None] & valid[:, None, :]            # [B, S, S]; query i sees valid keys j <= i
        mask = mask | jnp.eye(S, dtype=bool)[None]          # a padded query still sees itself (no NaN)
        for blk in self.blocks:
            x = blk(x, mask=mask)
        return self.ln(x)


BACKBONES: Dict[str, Callable[..., LanguageBackbone]] = {"small": SmallCausalLM}


class Semantic(nnx.Module):
    """``__call__(bev_tokens [B, Nv, D], ids [B, T], valid [B, T]) -> (meta [B, Nm, D], speed [B, 4],
    path [B, 5])`` logits."""

    def __init__(self, cfg, spec, dim: int, num_vision: int, *, rngs: nnx.Rngs):
        s = cfg.semantic
        dt = dtype_of(cfg.dtype)
        if s.backbone not in BACKBONES:
            raise ValueError(f"config.model.semantic.backbone={s.backbone!r}: choose one of {sorted(BACKBONES)}")
        self.nm = int(s.num_meta)
        w = int(s.width)
        max_len = num_vision + spec.instruction_tokens + self.nm
        self.backbone = BACKBONES[s.backbone](int(s.vocab_size), w, int(s.layers), int(s.heads), max_len,
                                              rngs=rngs, dtype=dt)
        self.adapt_ln = nnx.LayerNorm(dim, rngs=rngs, dtype=dt)
        self.adapt = nnx.Linear(dim, w, rngs=rngs, dtype=dt)
        self.type_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (3, w)))
        self.meta_q = nnx.Param(0.02 * jax.random.normal(rngs.params(), (self.nm, w)))
        self.out = nnx.Linear(w, dim, rngs=rngs, dtype=dt)
        self.speed_head = nnx.Linear(dim, len(META_SPEED), rngs=rngs)
        self.path_head = nnx.Linear(dim, len(META_PATH), rngs=rngs)

    def __call__(self, bev_tokens, ids, valid):
        B = ids.shape[0]
        te = self.type_emb[...]
        vis = self.adapt(self.adapt_ln(bev_tokens)) + te[0]
        txt = self.backbone.embed(ids) + te[1].astype(vis.dtype)
        mq = jnp.broadcast_to(self.meta_q[...] + te[2], (B, self.nm, te.shape[-1])).astype(vis.dtype)
        x = jnp.concatenate([vis, txt.astype(vis.dtype), mq], 1)
        v = jnp.concatenate([jnp.ones(vis.shape[:2], bool), valid.astype(bool),
                             jnp.ones((B, self.nm), bool)], 1)
        h = self.backbone(x, v)[:, -self.nm:]
        meta = self.out(h)
        pooled = meta.mean(1).astype(jnp.float32)
        return meta, self.speed_head(pooled), self.path_head(pooled)


def check_vocab(instruction: np.ndarray, vocab_size: int) -> None:
    """Host-side boundary check: every instruction id must be < vocab_size (else ValueError)."""
    m = int(np.max(instruction)) if np.size(instruction) else 0
    if m >= vocab_size:
        raise ValueError(f"scene field 'instruction' holds token id {m} >= config.model.semantic.vocab_size="
                         f"{vocab_size}; raise the vocab size to at least {m + 1} (len(world.language.VOCAB))")
