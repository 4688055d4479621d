"""Sparse pair lists in static shapes: evaluate a function only on the True entries of a [G, L] relation
(bit-packed; a fixed-size block of them at a time, in a while loop that runs as many blocks as there are
entries), the way the scorer's map flags, TLC light hits and NC / TTC object pairs avoid the dense G x L
work. Each block finds its entries by rank (a binary search over the cumulative bit counts), so the
function is traced twice, at the block size (the first block, then the loop's body), whatever the list's
size: no branch per list size (the scorer's program on real maps: 13,672 jaxpr equations, 29,079 with a
branch per size; half the compile time). Call them on a whole batch, not under vmap (under vmap the loop
runs for the batch's largest count)."""
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


def _rank_slots(words, ends, i0, k):
    """The set bits of rank i0 .. i0 + k - 1 (row-major order) of ``words [M]`` (uint32; ``ends [M]`` their
    inclusive cumulative bit counts, int32) -> (word [k], bit [k]) int32. Ranks past the last set bit give
    some valid word index and a bit in [0, 32) (callers mask them). The word: a binary search of the rank in
    ``ends``; the bit: the largest n with popcount(word & (2^n - 1)) <= the rank within the word (5 halvings)."""
    r = i0 + jnp.arange(k, dtype=jnp.int32)
    j = jnp.minimum(jnp.searchsorted(ends, r, side="right"), ends.shape[0] - 1).astype(jnp.int32)
    w = words[j]
    rank = r - (ends[j] - jax.lax.population_count(w).astype(jnp.int32))
    n = jnp.zeros((k,), jnp.int32)
    for s in (16, 8, 4, 2, 1):                       # n + s <= 31: the mask fits 32 bits
        m = n + s
        below = jax.lax.population_count(w & ((jnp.uint32(1) << m.astype(jnp.uint32)) - jnp.uint32(1)))
        n = jnp.where(below.astype(jnp.int32) <= rank, m, n)
    return j, n


def _blocks(count, block, step, init):
    """``step(i0, acc)`` for i0 = 0, block, 2 block, ... < ``count``: the first block straight (XLA:CPU runs
    a while loop's body slower than the same ops outside one, and one block is the common case), the others
    in a while loop (as many rounds as needed, so the work follows the count; each round's temporaries are
    one block)."""
    acc = step(jnp.int32(0), init)
    return jax.lax.while_loop(lambda c: c[0] < count, lambda c: (c[0] + block, step(c[0], c[1])),
                              (jnp.int32(block), acc))[1]


def _out_shape(fn):
    probe = jnp.zeros((1,), jnp.int32)
    return jax.eval_shape(fn, probe, probe, probe.astype(bool))


def _set_bit_blocks(words, block: int, body, init):
    """``acc = body(word [block], bit [block], ok [block], acc)`` over the set bits of ``words [M]`` (uint32), in
    rank order, ``block`` at a time (:func:`_rank_slots`, :func:`_blocks`; ``ok`` False on the last block's
    padding) -> the final ``acc``."""
    ends = jnp.cumsum(jax.lax.population_count(words).astype(jnp.int32))
    count = ends[-1]

    def step(i0, acc):
        j, bit = _rank_slots(words, ends, i0, block)
        return body(j, bit, i0 + jnp.arange(block) < count, acc)

    return _blocks(count, block, step, init)


def sparse_pairs(rel, fn, block: int):
    """Evaluate ``fn`` on the True pairs of ``rel [G, L]`` only -> ``[G, L, ...]`` (False elsewhere).

    ``fn(g [n], l [n], ok [n]) -> bool [n, ...]`` computes n = min(``block``, G L) pairs at a time, in
    row-major order (``ok`` False on the padding of the last block, whose g, l are valid indices but whose
    results are dropped); as many blocks run as the pairs need (none when there are none)."""
    g_n, l_n = rel.shape
    total = g_n * l_n
    k = max(1, min(int(block), total))
    out = _out_shape(fn)
    words = bit_words(rel)                                                             # [G, W]
    w_n = words.shape[1]

    def body(j, bit, ok, acc):
        g, l = j // w_n, jnp.minimum(32 * (j % w_n) + bit, l_n - 1)
        val = fn(g, l, ok) & ok.reshape((k,) + (1,) * (len(out.shape) - 1))
        return acc.at[jnp.where(ok, g * l_n + l, total)].set(val, mode="drop")

    acc = _set_bit_blocks(words.reshape(-1), k, body, jnp.zeros((total,) + out.shape[1:], out.dtype))
    return acc.reshape((g_n, l_n) + out.shape[1:])


def expand_bits(bits, fn, block: int):
    """Evaluate ``fn`` on the set bits of ``bits [n]`` (uint32) only, summed per entry -> ``[n, ...]``.

    ``fn(i [block], k [block], ok [block]) -> int [block, ...]`` computes (entry i, bit k) items ``block``
    at a time (``ok`` False on the padding of the last block, whose results are dropped); as many blocks
    run as the set bits need."""
    out = _out_shape(fn)

    def body(i, k, ok, acc):
        return acc.at[i].add(jnp.where(ok.reshape((block,) + (1,) * (len(out.shape) - 1)), fn(i, k, ok), 0))

    return _set_bit_blocks(bits, block, body, jnp.zeros((bits.shape[0],) + out.shape[1:], out.dtype))
