"""The sparse map tests of ``flags.scene_flags`` are conservative: pruning changes no bit.

The per-step flags and TLC hits computed on the bounding-box-pruned pair lists (bucketed, edges cut at
the last real vertex) equal the unpruned dense tests (every polygon, every edge) on official-vector
scenes, with tiny buckets (the fallback branches), and on scenes with a polygon placed just inside and
just outside the pruning bound (BBOX_MARGIN) of a step's points.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irlvla_jax import geometry as G
from irlvla_jax import scene as S
from irlvla_jax.scoring import flags as F
from irlvla_jax.scoring import metrics as M
from irlvla_jax.scoring import sparse as SP
from irlvla_jax.scoring import rollout as R
from irlvla_jax.scoring import vectors as V
from tests.scoring.vector_data import vectors_dir

FLAGS = ("multiple_lanes", "non_drivable", "oncoming", "center_in_intersection", "rear_in_intersection")


def _dense(scene, states, lights):
    """Unpruned reference: area_flags per row, TLC hits over every light at every step, masked by red."""
    corners, center = M.ego_boxes(states)
    fl = jax.vmap(lambda c, m, r: M.area_flags(scene, c, m, r))(corners, center, states[..., :2])
    hits = [jnp.moveaxis(G.box_polygon_overlap(corners[:, None], lp[None, :, None]) & red[None], 1, 2)
            for lp, red in lights]                                                   # [R, T, K] each
    fl["light_hit"] = jnp.stack(hits, axis=2)
    return fl


def _check(scene, states, lights):
    got = jax.jit(F.scene_flags)(scene, states, lights)
    want = jax.jit(_dense)(scene, states, lights)
    for k in FLAGS + ("light_hit",):
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(want[k]), err_msg=k)
    return got


@jax.jit
def _rows(scene, props):
    """Direct-mode states [N, 41, 11] of the proposals (one program, not op by op)."""
    init = R.ego_state_array(jnp.asarray(scene.ego_state))
    ref = R.interpolate_poses(jnp.asarray(props, jnp.float32))
    return R.rollout(ref, jnp.broadcast_to(init, ref.shape[:-2] + (11,)), "direct")


def _all_red_lights(scene):
    """Every light polygon (up to MAX_ROUTE_LIGHTS) red at every step: the TLC test runs wherever boxes meet."""
    k = M.MAX_ROUTE_LIGHTS
    return ((jnp.asarray(scene.light_polygons[:k]), jnp.ones((k, M.T), bool)),)


@pytest.fixture(scope="module")
def vectors():
    return V.load_vectors(vectors_dir())


@pytest.mark.parametrize("i", [0, 4, 10, 28])
def test_sparse_flags_equal_dense_on_vector_scenes(vectors, i):
    names, scenes, props, prevs, has = vectors
    sc = jax.tree.map(jnp.asarray, S.index(scenes, i))
    ctx = M.scene_context(sc)
    states = _rows(sc, props[i])
    got = _check(sc, states, ((ctx["light_poly"], ctx["red"]),) + _all_red_lights(sc))
    assert np.asarray(got["light_hit"][:, :, 1]).any() or i != 0   # scene 0 enters a light: pairs exist


def test_batch_wide_flags_equal_per_scene_flags(vectors):
    """``flags.map_flags``' two ways of building the pair lists give the same flags: one list for a batch
    of scenes (``batch_flags``, real-size maps) and one per scene (``scene_flags``, small maps), here on
    4 vector scenes, the TLC hits of every light included."""
    names, scenes, props, prevs, has = vectors
    idx = [0, 4, 10, 28]
    sc = jax.tree.map(jnp.asarray, S.index(scenes, np.asarray(idx)))
    states = jnp.stack([_rows(jax.tree.map(lambda x: x[j], sc), props[i]) for j, i in enumerate(idx)])
    lights = ((sc.light_polygons[:, :M.MAX_ROUTE_LIGHTS], jnp.ones((len(idx), M.MAX_ROUTE_LIGHTS, M.T), bool)),)
    batch = jax.jit(F.batch_flags)(sc, states, lights)
    per_scene = jax.jit(lambda a, b, c: jax.lax.map(lambda x: F.scene_flags(*x), (a, b, c)))(sc, states, lights)
    assert np.asarray(batch["light_hit"]).any() and np.asarray(batch["non_drivable"]).any()
    for k in FLAGS + ("light_hit",):
        np.testing.assert_array_equal(np.asarray(batch[k]), np.asarray(per_scene[k]), err_msg=k)


def test_tiny_blocks_agree(vectors, monkeypatch):
    """Blocks far smaller than the pair lists (and dividing none of them): many rounds of each loop, the
    last one partly padding, and the same flags as the dense tests."""
    names, scenes, props, prevs, has = vectors
    sc = jax.tree.map(jnp.asarray, S.index(scenes, 0))
    states = _rows(sc, props[0])
    monkeypatch.setattr(F, "PAIR_BLOCK", 97)
    monkeypatch.setattr(F, "LIGHT_BLOCK", 5)
    monkeypatch.setattr(F, "TRIPLE_BLOCK", 131)
    _check(sc, states, _all_red_lights(sc))


@pytest.mark.parametrize("count,want", [(0, 2), (2, 2), (3, 5), (5, 5), (6, 9), (9, 9), (40, 9)])
def test_bucket_switch_takes_the_smallest_size_that_holds_the_count(count, want):
    sizes = (2, 5, 9)
    got = jax.jit(lambda c: SP.bucket_switch(c, sizes, [lambda x, n=n: x * 0 + n for n in sizes], c))(count)
    assert int(got) == want


def test_sparse_pairs_fills_and_scatters():
    rel = jnp.asarray(np.random.default_rng(0).random((7, 5)) < 0.3)
    fn = lambda g, l, ok: jnp.stack([g * 10 + l == g * 10 + l, (g + l) % 2 == 0], -1)
    g, l = np.meshgrid(np.arange(7), np.arange(5), indexing="ij")
    want = np.asarray(rel)[..., None] & np.stack([np.ones_like(g, bool), (g + l) % 2 == 0], -1)
    # Evaluated block pairs at a time: 3 and 4 do not divide the 10 pairs (the last block is partly
    # padding), 10 is one full block, 64 more than all 35 entries.
    assert int(rel.sum()) == 10
    for block in (1, 3, 4, 10, 64):
        got = jax.jit(lambda r: SP.sparse_pairs(r, fn, block))(rel)
        np.testing.assert_array_equal(np.asarray(got), want)
    none = jax.jit(lambda r: SP.sparse_pairs(r, fn, 4))(jnp.zeros_like(rel))
    assert none.shape == (7, 5, 2) and not np.asarray(none).any()


@pytest.mark.parametrize("shape", [(4, 3), (300, 40), (2000, 70)])
def test_the_function_is_traced_twice_whatever_the_size(shape):
    """The program does not grow with the relation: ``fn`` is traced for the first block and the loop's
    body only (a branch per list size traced it up to 7 times, 35 with expand_bits nested in it)."""
    traced = []

    def fn(g, l, ok):
        traced.append(g.shape)
        return g >= 0

    def bits_fn(i, k, ok):
        traced.append(i.shape)
        return k

    rel = jnp.zeros(shape, bool)
    jax.make_jaxpr(lambda r: SP.sparse_pairs(r, fn, 64))(rel)
    jax.make_jaxpr(lambda b: SP.expand_bits(b, bits_fn, 64))(jnp.zeros(shape[:1], jnp.uint32))
    k = min(64, shape[0] * shape[1])
    # (the output-shape probe traces each once more at size 1)
    assert traced == [(1,), (k,), (k,), (1,), (64,), (64,)], traced


def test_sparse_pairs_over_several_words_per_row():
    """Rows of more than 32 columns (several bit words each), bits 0 and 31 of a word set: every pair found
    once, in place."""
    rng = np.random.default_rng(3)
    rel = rng.random((9, 70)) < 0.4
    rel[0, [0, 31, 32, 63, 64, 69]] = True
    fn = lambda g, l, ok: jnp.stack([g == g, l % 3 == 0], -1)
    want = rel[..., None] & np.stack([np.ones(rel.shape, bool), (np.arange(70) % 3 == 0)[None].repeat(9, 0)], -1)
    for block in (7, 64, 1000):
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda r: SP.sparse_pairs(r, fn, block))(jnp.asarray(rel))),
                                      want)


def test_expand_bits_sums_over_the_set_bits():
    """fn(i, k) = 2^k summed over the set bits of entry i rebuilds the word (bit 31 included, int64-free:
    the low and high halves separately)."""
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2 ** 32, 40, dtype=np.uint64).astype(np.uint32)
    bits[:3] = [0, 1, 2 ** 31]
    fn = lambda i, k, ok: jnp.stack([jnp.where(k < 16, 1 << k, 0), jnp.where(k >= 16, 1 << (k - 16), 0)], -1)
    for block in (1, 5, 64, 4096):
        got = np.asarray(jax.jit(lambda b: SP.expand_bits(b, fn, block))(jnp.asarray(bits))).astype(np.uint64)
        np.testing.assert_array_equal(got[:, 0] + (got[:, 1] << 16), bits.astype(np.uint64), err_msg=str(block))


@pytest.mark.parametrize("gap", [0.5, 0.9, 1.1, 2.0, -0.5])
def test_polygon_at_the_pruning_bound(vectors, gap):
    """A lane / drivable / light square just right of the ego's points at one step, ``gap`` x BBOX_MARGIN
    away (negative: overlapping the points), with a long zero-length padding tail."""
    names, scenes, props, prevs, has = vectors
    sc = S.index(scenes, 1)
    states = np.asarray(_rows(jax.tree.map(jnp.asarray, sc), props[1]))
    corners, center = M.ego_boxes(jnp.asarray(states))
    pts = np.concatenate([np.asarray(corners), np.asarray(center)[..., None, :], states[..., None, :2]], -2)
    r, t = 3, 20
    x_edge = pts[r, t, :, 0].max() + gap * F.BBOX_MARGIN
    y0, y1 = pts[r, t, :, 1].min() - 1.0, pts[r, t, :, 1].max() + 1.0
    square = np.asarray([[x_edge, y0], [x_edge + 4.0, y0], [x_edge + 4.0, y1], [x_edge, y1]])
    d = {k: np.array(v) for k, v in sc.to_dict().items()}          # copies: the fixture stays intact
    for field, n_v in (("lane", d["lane_polygons"].shape[-2]), ("drivable", d["drivable_polygons"].shape[-2])):
        d[f"{field}_polygons"][0] = np.concatenate([square, np.repeat(square[:1], n_v - 4, 0)])
        d[f"{field}_valid"][0] = True
    sc2 = jax.tree.map(jnp.asarray, type(sc)(**d))
    lp = np.concatenate([square, np.repeat(square[:1], d["light_polygons"].shape[-2] - 4, 0)])[None]
    lights = ((jnp.asarray(lp), jnp.ones((1, M.T), bool)),)
    got = _check(sc2, jnp.asarray(states), lights)
    assert bool(np.asarray(got["light_hit"])[r, t].any()) == (gap < 0)


def test_edge_count_is_the_real_vertices():
    rng = np.random.default_rng(1)
    polys, counts = [], []
    for n in (3, 5, 9, 16):
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        p = np.stack([np.cos(ang), np.sin(ang)], -1) * rng.uniform(1, 3, (n, 1))
        polys.append(S.pad_polygon(p, 20)[0])
        counts.append(n)
    polys = jnp.asarray(np.stack(polys), jnp.float32)
    np.testing.assert_array_equal(np.asarray(G.polygon_edge_count(polys)), counts)
