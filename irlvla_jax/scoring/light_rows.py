"""The compact edge rows of the reference planner's light polygons (``reference_planner``, sparse path).

Real maps have light (lane-connector) polygons of hundreds of vertices, most scenes none that can lead.
Every quantity the planner takes from a light polygon is a min / any / parity over its edges, so only
the edges that matter are kept, packed in front (:func:`edge_rows`), and visited a chunk at a time in a
while loop that stops at the last real row (:func:`over_edge_chunks`); the per-step distances of the
leading-agent search pack the rows of the whole batch once more (:func:`pack_rows`), so the loop runs
to the batch's sum of rows instead of every (scene, path) running to the longest one. The terms are
``geo.polygon_distance``'s / ``geo.box_polygon_overlap``'s, elementwise (:func:`edge_terms`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from irlvla_jax import geometry as geo

EDGE_CHUNK = 32     # rows per loop step of one element's edge rows
PACK_CHUNK = 64     # packed rows per loop step of the batch-wide light distances


def edge_rows(poly, use):
    """The edges that matter of the polygons ``poly [K, V, 2]`` flagged ``use [K]``, packed in front.

    Every quantity the planner takes from a light polygon is a min / any / parity over its edges (or
    their start vertices). Padded vertices repeat vertex 0 (``geo.polygon_edge_count``), so of a
    polygon with n = edge count < V the edges 0 .. n - 1 plus edge V - 1 (zero length at vertex 0,
    kept so that the padding's own terms are reproduced bit for bit; it never crosses a ray) give the
    same min / any / parity as all V edges; with n = V all V edges are kept (no duplicate: parity).
    -> (rows [E, 4] (x0, y0, x1, y1), owner [E] int32 (K for filler rows), total (traced int)),
    E = K * V rounded up to a multiple of EDGE_CHUNK, rows in polygon order.
    """
    k, v = poly.shape[:2]
    n = geo.polygon_edge_count(poly)                                          # [K]
    m = jnp.where(use, jnp.where(n < v, n + 1, v), 0).astype(jnp.int32)
    end = jnp.cumsum(m)
    start = end - m
    size = -(-(k * v) // EDGE_CHUNK) * EDGE_CHUNK
    pos = jnp.arange(size, dtype=jnp.int32)
    owner = jnp.sum((pos[:, None] >= end[None, :]).astype(jnp.int32), axis=-1)  # K past the end
    oc = jnp.minimum(owner, k - 1)
    j = pos - start[oc]
    j = jnp.clip(jnp.where((j == m[oc] - 1) & (n[oc] < v), v - 1, j), 0, v - 1)
    table = jnp.concatenate([poly, jnp.roll(poly, -1, axis=-2)], axis=-1)     # [K, V, 4]
    return table[oc, j], owner, end[-1]


def over_edge_chunks(rows, owner, total, k, init, body):
    """Folds ``body(chunk [C, 4], onehot [k, C], acc)`` over the packed rows, EDGE_CHUNK at a time, up
    to ``total`` (a while loop: under vmap it runs to the batch's largest total, zero times when no
    scene has a row)."""
    def step(c):
        i0, acc = c
        ch = jax.lax.dynamic_slice_in_dim(rows, i0, EDGE_CHUNK)
        oh = jax.lax.dynamic_slice_in_dim(owner, i0, EDGE_CHUNK)[None, :] == jnp.arange(k)[:, None]
        return i0 + EDGE_CHUNK, body(ch, oh, acc)

    return jax.lax.while_loop(lambda c: c[0] < total, step, (jnp.int32(0), init))[1]


def edge_terms(c, u, w, hl, hw, e):
    """Box-frame terms of ``geo._box_polygon_local`` / ``geo.polygon_distance``, the same elementwise
    formulas, for box frames (``c, u, w [..., 2]``, ``hl, hw [...]``) and edges ``e [..., 4]`` (x0, y0, x1,
    y1) broadcast together -> (edge touches box, ray crossing of the box's front-left corner, squared
    distance of the edge's start vertex to the box), each [...]."""
    lx, ly = geo.to_box(e[..., None, 0:2], c, u, w)                          # [..., 1]
    nx, ny = geo.to_box(e[..., None, 2:4], c, u, w)
    touch = geo.segments_hit_box(lx, ly, nx, ny, hl, hw)
    cross = geo.crossings(hl[..., None], hw[..., None], lx, ly, nx, ny)
    dx = jnp.maximum(jnp.abs(lx) - hl[..., None], 0.0)
    dy = jnp.maximum(jnp.abs(ly) - hw[..., None], 0.0)
    return touch[..., 0], cross[..., 0], (dx * dx + dy * dy)[..., 0]


def box_edge_terms(box_frame, ch):
    """:func:`edge_terms` of boxes [P] (a ``geo.box_frame``) and edges ``ch [C, 4]`` -> each [P, C]."""
    c, u, w, hl, hw = box_frame
    return edge_terms(c[:, None], u[:, None], w[:, None], hl[:, None], hw[:, None], ch[None])


def per_owner(oh, x, fill, op):
    """Reduce ``x [P, C]`` over the chunk per owner (``oh [k, C]``) -> [P, k]."""
    return op(jnp.where(oh[None], x[:, None, :], fill), axis=-1)


def pack_rows(rows, owner, total, k):
    """The packed edge rows of every (scene, path) element (``rows [B, P, E, 4]``, ``owner [B, P, E]``,
    ``total [B, P]`` of :func:`edge_rows`) packed again batch-wide, element after element -> dict(rows
    [G, 4], owner [G] (element x k + light; B P k for filler rows), total (traced int)), G = B P E rounded
    up to a multiple of PACK_CHUNK: the loop over them runs to the batch's sum of rows, not B P times
    its longest element."""
    nb, e = rows.shape[0] * rows.shape[1], rows.shape[2]
    rows, owner, total = rows.reshape(nb, e, 4), owner.reshape(nb, e), total.reshape(nb)
    end = jnp.cumsum(total)
    size = -(-(nb * e) // PACK_CHUNK) * PACK_CHUNK
    pos = jnp.arange(size, dtype=jnp.int32)
    el = jnp.clip(jnp.searchsorted(end, pos, side="right"), 0, nb - 1)
    j = jnp.clip(pos - (end - total)[el], 0, e - 1)
    own = jnp.where(pos < end[-1], el * k + owner[el, j], nb * k)
    return dict(rows=rows[el, j], owner=own, total=end[-1])


def light_distances_packed(corners, packed, k):
    """``geo.polygon_distance`` of the ego boxes ``corners [B, P, n, 4, 2]`` of every element to its k
    selected lights, from the batch-wide rows of :func:`pack_rows` -> [B, P, n, k] (meaningless for lights
    without rows)."""
    b, p, n = corners.shape[:3]
    nb = b * p
    cf = corners.reshape(nb, n, 4, 2)
    frame = geo.box_frame(cf)                                                  # [nb, n, ...]

    def step(c):
        i0, (d2v, d2c, hit, par) = c
        ch = jax.lax.dynamic_slice_in_dim(packed["rows"], i0, PACK_CHUNK)       # [C, 4]
        own = jax.lax.dynamic_slice_in_dim(packed["owner"], i0, PACK_CHUNK)     # [C]
        el = jnp.minimum(own // k, nb - 1)
        touch, cross, dv = edge_terms(*(jnp.swapaxes(x[el], 0, 1) for x in frame), ch[None])   # [n, C]
        dc = jnp.min(geo.point_segment_d2(jnp.moveaxis(cf[el], 0, 2), ch[:, 0:2], ch[:, 2:4]), axis=1)
        return i0 + PACK_CHUNK, (d2v.at[own].min(dv.T), d2c.at[own].min(dc.T), hit.at[own].max(touch.T),
                                 par.at[own].add(cross.T.astype(jnp.int32)))

    inf = jnp.full((nb * k + 1, n), jnp.inf, corners.dtype)
    init = (inf, inf, jnp.zeros((nb * k + 1, n), bool), jnp.zeros((nb * k + 1, n), jnp.int32))
    d2v, d2c, hit, par = jax.lax.while_loop(lambda c: c[0] < packed["total"], step, (jnp.int32(0), init))[1]
    d = jnp.where(hit | (par % 2 == 1), 0.0, jnp.sqrt(jnp.minimum(d2v, d2c)))[:-1]
    return jnp.swapaxes(d.reshape(b, p, k, n), -1, -2)


def corridor_hits_sparse(rect, seg_ok, joints, joint_ok, half_w, rows, owner, total, k):
    """The dense ``in_corridor`` of ``reference_planner._path_setup`` on the k packed polygons -> bool [k] (exact on
    the polygons that have rows, False on the others)."""
    frame = geo.box_frame(rect)
    nk = rect.shape[0]

    def body(ch, oh, acc):
        hit, par, dj = acc
        touch, cross, _ = box_edge_terms(frame, ch)
        d = geo.point_segment_d2(joints[:, None, :], ch[None, :, 0:2], ch[None, :, 2:4])      # [K, C]
        return (hit | per_owner(oh, touch, False, jnp.any),
                par + per_owner(oh, cross.astype(jnp.int32), 0, jnp.sum),
                jnp.minimum(dj, per_owner(oh, d, jnp.inf, jnp.min)))

    init = (jnp.zeros((nk, k), bool), jnp.zeros((nk, k), jnp.int32), jnp.full((nk, k), jnp.inf, rect.dtype))
    hit, par, dj = over_edge_chunks(rows, owner, total, k, init, body)
    hit_rect = jnp.any((hit | (par % 2 == 1)) & seg_ok[:, None], axis=0)
    hit_disc = jnp.any((jnp.sqrt(dj) <= half_w) & joint_ok[:, None], axis=0)
    return hit_rect | hit_disc
