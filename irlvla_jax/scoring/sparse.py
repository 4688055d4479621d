"""Sparse pair lists in static shapes: evaluate a function only on the True entries of a [G, L] relation
(bit-packed, listed in the smallest of a few bucket sizes that holds them all, a lax.switch branch each),
the way the scorer's map flags, TLC light hits and NC / TTC object pairs avoid the dense G x L work.
Call them on a whole batch, not under vmap (under vmap every branch runs)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def bit_words(mask):
    """``mask [N, L]`` -> its rows as bits in 32-bit words ``[N, ceil(L / 32)]`` (uint32; bit k of word w is
    column 32 w + k). Unrolled over the columns (XLA:CPU runs reductions over a short minor axis
    element by element)."""
    n, l_n = mask.shape
    cols = mask.T.astype(jnp.uint32)                                                       # [L, N]
    words = []
    for w in range(-(-l_n // 32)):
        acc = cols[32 * w]
        for k in range(1, min(32, l_n - 32 * w)):
            acc = acc | (cols[32 * w + k] << k)
        words.append(acc)
    return jnp.stack(words, axis=-1)


def bucket_switch(count, sizes, branches, *operands):
    """``branches[i](*operands)`` for sizes[i] the smallest of ``sizes`` (static, ascending) that is >= ``count``
    (a traced int), the last branch when none is: a ``lax.switch`` with one static-shape branch per size, so
    the work follows the count in a few compiled shapes. Call it on the whole batch, not under vmap (under
    vmap every branch runs)."""
    return jax.lax.switch(jnp.sum(count > jnp.asarray(sizes[:-1], jnp.int32)), list(branches), *operands)


def _bit_slots(words, m):
    """The set bits of ``words [N, W]`` (uint32) in row-major order, in m slots: (row [m], column [m]
    (32 w + k)), padded with (0, 0) after the last one. One round per bit rank (as many rounds as the
    most bits of one word), each a scatter of the N x W words' next lowest set bit: no cumulative sum
    over all N x 32 W columns (which XLA:CPU runs slowly), only over the N x W words."""
    n, w = words.shape
    count = jax.lax.population_count(words).astype(jnp.int32).reshape(-1)
    start = jnp.cumsum(count) - count
    rows = jnp.repeat(jnp.arange(n, dtype=jnp.int32), w)
    base = jnp.tile(32 * jnp.arange(w, dtype=jnp.int32), n)

    def body(c):
        rank, b, row, col = c
        low = b & (~b + jnp.uint32(1))                                                  # lowest set bit
        slot = jnp.where(b != 0, start + rank, m)
        row = row.at[slot].set(rows, mode="drop", unique_indices=True)
        col = col.at[slot].set(base + jax.lax.population_count(low - jnp.uint32(1)).astype(jnp.int32),
                               mode="drop", unique_indices=True)
        return rank + 1, b & (b - jnp.uint32(1)), row, col

    z = jnp.zeros((m,), jnp.int32)
    return jax.lax.while_loop(lambda c: jnp.any(c[1] != 0), body, (jnp.int32(0), words.reshape(-1), z, z))[2:]


def _blocks(count, block, step, init):
    """``step(i0, acc)`` for i0 = 0, block, 2 block, ... < ``count`` (a while loop: as many rounds as
    needed, so the work follows the count, not its bucket; each round's temporaries are one block)."""
    return jax.lax.while_loop(lambda c: c[0] < count, lambda c: (c[0] + block, step(c[0], c[1])),
                              (jnp.int32(0), init))[1]


def sparse_pairs(rel, fn, buckets, dense=None, block=None, overflow_block=None):
    """Evaluate ``fn`` on the True pairs of ``rel [G, L]`` only -> ``[G, L, ...]`` (False elsewhere).

    ``fn(g [n], l [n], ok [n]) -> bool [n, ...]`` computes n pairs (``ok`` False on padding entries,
    whose g, l are valid indices but whose results are dropped). The pairs are listed in the smallest of
    ``buckets`` (then G x L) holding them all, each size a branch of a lax.switch (call it on the whole
    batch, not under vmap, or every branch runs), and given to ``fn`` all at once, or ``block`` at a time
    (:func:`_blocks`). ``dense()`` (optional) gives the [G, L, ...] results of all pairs at once instead of
    the last branch (masked by ``rel`` here); with ``overflow_block`` the last branch (more pairs than the
    last bucket) lists them all and evaluates them ``overflow_block`` at a time instead (work follows the
    count: many trajectories per scene, as in vocabulary scoring, stay sparse)."""
    g_n, l_n = rel.shape
    total = g_n * l_n
    count = jnp.sum(rel, dtype=jnp.int32)
    sizes = tuple(k for k in buckets if k < total) + (total,)
    probe = jnp.zeros((1,), jnp.int32)
    out = jax.eval_shape(fn, probe, probe, probe.astype(bool))
    words = bit_words(rel)

    def branch(n):
        def f(_):
            if n == 0:
                return jnp.zeros((g_n, l_n) + out.shape[1:], out.dtype)
            k = overflow_block if n == total and overflow_block is not None else block
            if n == total and dense is not None and k is None:
                val = dense()
                return val & rel.reshape(rel.shape + (1,) * (val.ndim - 2))
            if n == total and k is None:
                idx = jnp.arange(total)
                val = fn(idx // l_n, idx % l_n, rel.reshape(-1))
                return (val & rel.reshape((total,) + (1,) * (val.ndim - 1))).reshape((g_n, l_n) + out.shape[1:])
            m = n if k is None else -(-n // k) * k
            g, l = _bit_slots(words, m)
            k = m if k is None else k

            def step(i0, acc):
                gb, lb = jax.lax.dynamic_slice_in_dim(g, i0, k), jax.lax.dynamic_slice_in_dim(l, i0, k)
                ok = i0 + jnp.arange(k) < count
                val = fn(gb, lb, ok) & ok.reshape((k,) + (1,) * (len(out.shape) - 1))
                return acc.at[jnp.where(ok, gb * l_n + lb, total)].set(val, mode="drop")

            acc = jnp.zeros((total,) + out.shape[1:], out.dtype)
            acc = step(0, acc) if k == m else _blocks(count, k, step, acc)
            return acc.reshape((g_n, l_n) + out.shape[1:])
        return f

    return bucket_switch(count, sizes, [branch(n) for n in sizes], None)


def expand_bits(bits, fn, buckets, dense, block):
    """Evaluate ``fn`` on the set bits of ``bits [n]`` (uint32) only, summed per entry -> ``[n, ...]``.

    ``fn(i [block], k [block], ok [block]) -> int [block, ...]`` computes (entry i, bit k) items ``block``
    at a time (``ok`` False on padding items, whose results are dropped). They are listed in the smallest
    of ``buckets`` holding them all (a lax.switch: call it on the whole batch, not under vmap); beyond the
    last bucket, ``dense()`` gives the per-entry results directly."""
    n = bits.shape[0]
    total = jnp.sum(jax.lax.population_count(bits).astype(jnp.int32))
    sizes = tuple(-(-k // block) * block for k in buckets if k < 32 * n)
    probe = jnp.zeros((1,), jnp.int32)
    out = jax.eval_shape(fn, probe, probe, probe.astype(bool))

    def branch(m):
        def f(_):
            item, bit = _bit_slots(bits[:, None], m)

            def step(i0, acc):
                ib, kb = jax.lax.dynamic_slice_in_dim(item, i0, block), jax.lax.dynamic_slice_in_dim(bit, i0, block)
                ok = i0 + jnp.arange(block) < total
                val = jnp.where(ok.reshape((block,) + (1,) * (len(out.shape) - 1)), fn(ib, kb, ok), 0)
                return acc.at[ib].add(val)

            return _blocks(total, block, step, jnp.zeros((n,) + out.shape[1:], out.dtype))
        return f

    return bucket_switch(total, sizes + (32 * n,), [branch(m) for m in sizes] + [lambda _: dense()], None)
