"""Per-step map flags of the EPDMS rules on real-size maps, sparse (``batch_flags``, ``map_flags``): the
same flags as ``metrics.area_flags`` per trajectory, computed only for the (row, step, polygon) pairs
whose bounding boxes meet, batch-wide; TLC's light hits likewise."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from irlvla_jax import geometry as geo
from irlvla_jax.scene import DRIVABLE_INTERSECTION
from irlvla_jax.scoring.metrics import ego_boxes
from irlvla_jax.scoring.sparse import bit_words, bucket_switch, expand_bits, sparse_pairs

# Sparse map tests (``scene_flags``). Every per-step map test is done only for the (row, step, polygon)
# pairs whose bounding boxes overlap, and each polygon only up to its last real edge. Why dropping the
# other pairs changes no bit:
# 1. A point is inside a polygon (crossing number) only if it lies in the polygon's bounding box: for y
#    exactly (an edge must straddle the point's y), for x up to the rounding of the edge intersection
#    abscissa (ulps, far below BBOX_MARGIN); a point left of the box crosses every straddling edge, an
#    even number on a closed polygon. So a pair whose step box (the 6 points) misses the polygon's box
#    grown by BBOX_MARGIN metres tests False, exactly what it is set to.
# 2. ``geo.box_polygon_overlap`` is True only if a polygon edge touches the box (a point of the polygon
#    in the box) or the box's front-left corner has an odd crossing number (the corner lies between two
#    boundary points, in the polygon's bounding box): both need the step's box to meet the polygon's
#    box, up to rounding (ulps). TLC only counts steps where the light is red, so pairs at other steps
#    are not computed either (set False, masked by ``red`` anyway).
# 3. Edges after ``geo.polygon_edge_count`` join padding copies of vertex 0 (zero length): no crossing.
# The relevant pairs of the whole batch are listed and evaluated PAIR_BLOCK at a time (lights: LIGHT_BLOCK;
# ``sparse.sparse_pairs``: as many blocks as there are pairs), and scattered back, so no pair is ever
# dropped; within a block of (group, polygon) pairs, the edge chunks that can hold a crossing are counted
# TRIPLE_BLOCK (group, polygon, chunk) triples at a time (``sparse.expand_bits``).
# Small polygons (at most DENSE_POLYGON_VERTICES vertices, e.g. the generated worlds) are cheaper the
# older way: per trajectory, the first K polygons whose box meets the box of all its points (K the
# smallest of POLYGON_BUCKETS holding the largest count, by argument 1), tested densely over all
# vertices; lights that small are tested in ``metrics.trajectory_metrics``.
BBOX_MARGIN = 0.05
PAIR_BLOCK = 4096
LIGHT_BLOCK = 256
POLYGON_BUCKETS = (4, 8, 16)
DENSE_POLYGON_VERTICES = 64
EDGE_CHUNK = 8
TRIPLE_BLOCK = 8192


def _poly_bbox(poly):
    """[..., V, 2] -> (xmin, xmax, ymin, ymax) [...] grown by BBOX_MARGIN (padding repeats vertex 0)."""
    return (jnp.min(poly[..., 0], -1) - BBOX_MARGIN, jnp.max(poly[..., 0], -1) + BBOX_MARGIN,
            jnp.min(poly[..., 1], -1) - BBOX_MARGIN, jnp.max(poly[..., 1], -1) + BBOX_MARGIN)


def _relevant(box_pts, polys, valid):
    """box_pts (xmin, xmax, ymin, ymax) [G] of point groups; polys [L, V, 2]; valid [L] -> bool [G, L]:
    the group's box meets the polygon's grown box."""
    x0, x1, y0, y1 = (v[None, :] for v in _poly_bbox(polys))
    px0, px1, py0, py1 = (v[:, None] for v in box_pts)
    return valid[None] & (x0 <= px1) & (x1 >= px0) & (y0 <= py1) & (y1 >= py0)


def _points_in_small_polygons(pts, polys, valid, r):
    """Point groups ``pts [B, G, P, 2]`` (G = r x T) in small polygons ``polys [B, L, V, 2]`` -> bool
    [B, G, L, P], per trajectory over its first K relevant polygons (a lax.switch on the batch's K)."""
    b_n, g_n, p_n = pts.shape[:3]
    rows = pts.reshape(b_n, r, -1, 2)                                                      # [B, r, T P, 2]
    rel = jax.vmap(_relevant)(tuple(f(rows[..., i], -1) for i in (0, 1) for f in (jnp.min, jnp.max)), polys,
                              valid)                                                       # [B, r, L]
    sizes = tuple(k for k in POLYGON_BUCKETS if k < polys.shape[1]) + (polys.shape[1],)

    def one(rows, polys, rel, k):
        order = jnp.argsort(~rel, axis=-1, stable=True)[:, :k]                              # [r, k]
        ok = jnp.take_along_axis(rel, order, axis=-1)
        inside = geo.points_in_polygon(rows[:, None], polys[order], max_dense=DENSE_POLYGON_VERTICES)
        inside = (inside & ok[..., None]).reshape(r, k, -1, p_n)                            # [r, k, T, P]
        full = jnp.zeros((r, polys.shape[0]) + inside.shape[2:], bool)
        full = full.at[jnp.arange(r)[:, None], order].set(inside, mode="drop", unique_indices=True)
        return jnp.moveaxis(full, 1, 2).reshape(g_n, -1, p_n)

    branches = [lambda _, k=k: jax.vmap(lambda a, b, c: one(a, b, c, k))(rows, polys, rel) for k in sizes]
    return bucket_switch(jnp.max(jnp.sum(rel, axis=-1)), sizes, branches, None)


def _points_in_map(pts, box, polys, valid, r):
    """Point groups ``pts [B, G, P, 2]`` (boxes ``box``, 4 x [B, G]; G = r x T) in the polygons ``polys
    [B, L, V, 2]`` -> bool [B, G, L, P]. Large polygons: per relevant (group, polygon) pair, only the
    chunks of EDGE_CHUNK edges whose box can hold a crossing of the group's points
    (``geo.edge_chunks``; the others add none), gathered by ``expand_bits``; the crossing counts summed
    per pair give the same parity."""
    if polys.shape[-2] <= DENSE_POLYGON_VERTICES:
        return _points_in_small_polygons(pts, polys, valid, r)
    b_n, g_n, p_n = pts.shape[:3]
    l_n, v_n = polys.shape[1:3]
    size = max(EDGE_CHUNK, -(-v_n // 32))
    edges, (cy0, cy1, cx1), c_ok = jax.vmap(lambda p: geo.edge_chunks(p, size))(polys)    # [B, L, NC, ...]
    nc = edges.shape[2]
    edges = tuple(edges[..., i].reshape(-1, size) for i in range(4))                      # planar [B L NC, C]
    cy0, cy1, cx1, c_ok = (x.reshape(b_n * l_n, nc) for x in (cy0, cy1, cx1, c_ok))
    flat_pts = pts.reshape(b_n * g_n, p_n, 2)
    px, py = flat_pts[..., 0], flat_pts[..., 1]
    bx0, _, by0, by1 = (x.reshape(-1) for x in box)
    rel = jax.vmap(_relevant)(box, polys, valid).reshape(b_n * g_n, l_n)

    def fn(g, l, ok):
        pl = (g // g_n) * l_n + l                                                          # polygon of the batch
        near = (ok[:, None] & c_ok[pl] & (cy0[pl] <= by1[g, None]) & (cy1[pl] >= by0[g, None])
                & (cx1[pl] >= bx0[g, None] - BBOX_MARGIN))                                 # [n, NC]
        bits = bit_words(near)[:, 0]
        counts = expand_bits(bits, lambda i, k, _: geo.ray_crossing_counts(
            px[g[i]], py[g[i]], tuple(e[pl[i] * nc + k] for e in edges)), TRIPLE_BLOCK)
        return counts % 2 == 1

    return sparse_pairs(rel, fn, PAIR_BLOCK).reshape(b_n, g_n, l_n, p_n)


def _lights_hit(corners, box, light_poly, red):
    """Ego boxes ``corners [B, R, T, 4, 2]`` (step boxes ``box``, 4 x [B, R T]) touching the lights
    ``light_poly [B, K, V, 2]`` at the steps where they are red (``red [B, K, T]``) -> bool [B, R, T, K]
    (False elsewhere)."""
    b_n, r, t = corners.shape[:3]
    k_n = light_poly.shape[1]
    rel = jax.vmap(_relevant)(box, light_poly, jnp.ones(light_poly.shape[:2], bool))
    rel = (rel.reshape(b_n, r, t, k_n) & jnp.swapaxes(red, 1, 2)[:, None]).reshape(b_n * r * t, k_n)
    flat, polys = corners.reshape(-1, 4, 2), light_poly.reshape((b_n * k_n,) + light_poly.shape[2:])
    hit = sparse_pairs(rel, lambda g, l, ok: geo.box_polygon_overlap(flat[g], polys[(g // (r * t)) * k_n + l]),
                       LIGHT_BLOCK)
    return hit.reshape(b_n, r, t, k_n)


def batch_flags(scenes, states, lights=()):
    """Per-step map flags of the trajectories ``states [B, R, 41, 11]`` of a batch of scenes (not vmapped:
    the sparse pair lists take real branches) -> dict of bool [B, R, 41]; equal to ``area_flags`` per
    row. ``lights``: (light_poly [B, K, V, 2], red [B, K, 41]) per metrics context (``ctx["light_poly"],
    ctx["red"]``); then, for lights of more than DENSE_POLYGON_VERTICES vertices, also ``light_hit``
    [B, R, 41, C, K]: the ego box touches light k of context c at a red step (the TLC test of
    :func:`trajectory_metrics`)."""
    b_n, r, t = states.shape[:3]
    corners, center = ego_boxes(states)
    pts = jnp.concatenate([corners, center[..., None, :], states[..., None, :2]], axis=-2)  # [B, R, T, 6, 2]
    pts = pts.reshape(b_n, r * t, 6, 2)
    box = tuple(f(pts[..., i], -1) for i in (0, 1) for f in (jnp.min, jnp.max))           # 4 x [B, R T]

    lane = lambda x: x[:, None, None]
    in_lane = _points_in_map(pts, box, scenes.lane_polygons, scenes.lane_valid, r).reshape(b_n, r, t, -1, 6)
    corner_lane = in_lane[..., :4]                                                          # [B, R, T, L, 4]
    touched = jnp.sum(jnp.any(corner_lane, axis=-1), axis=3)
    none_full = jnp.all(jnp.sum(corner_lane, axis=-1) != 4, axis=3)
    on_route = jnp.any(in_lane[..., 4] & lane(scenes.lane_on_route), axis=3)
    in_drv = _points_in_map(pts, box, scenes.drivable_polygons, scenes.drivable_valid, r).reshape(b_n, r, t, -1, 6)
    inter = lane(scenes.drivable_kind == DRIVABLE_INTERSECTION)
    out = dict(multiple_lanes=(touched > 1) & none_full,
               non_drivable=jnp.sum(jnp.any(in_drv[..., :4], axis=3), -1) < 4, oncoming=~on_route,
               center_in_intersection=jnp.any(in_drv[..., 4] & inter, axis=3),
               rear_in_intersection=jnp.any(in_drv[..., 5] & inter, axis=3))
    if lights and scenes.light_polygons.shape[-2] > DENSE_POLYGON_VERTICES:
        # The ego box's bounding box (its 4 corners) per step.
        cb = tuple(f(pts[..., :4, i], -1) for i in (0, 1) for f in (jnp.min, jnp.max))
        out["light_hit"] = jnp.stack([_lights_hit(corners, cb, lp, red) for lp, red in lights], axis=3)
    return out


def scene_flags(scene, states, lights=()):
    """:func:`batch_flags` of ONE scene: ``states [R, 41, 11]``, ``lights`` (light_poly [K, V, 2], red
    [K, 41]) per context -> dict of bool [R, 41] (and ``light_hit`` [R, 41, C, K])."""
    one = lambda x: jnp.asarray(x)[None]
    out = batch_flags(jax.tree.map(one, scene), one(states), tuple((one(lp), one(red)) for lp, red in lights))
    return jax.tree.map(lambda x: x[0], out)



def map_flags(scenes, states, lights=()):
    """:func:`batch_flags` of a batch, the sparse lists built the way that is faster for its map size (the
    same flags either way): on real-size maps (polygons of more than DENSE_POLYGON_VERTICES padded
    vertices) one list for the whole batch, on small maps one per scene (``lax.map`` of
    :func:`scene_flags`). Measured on 2 CPU cores, one jitted call: official-vector scenes (224 / 160
    vertices, 15 scenes x 18 plans) 24 ms batch-wide vs 32 ms per scene; tiny-world scenes (32 vertices,
    16 scenes x 64 plans) 80 ms batch-wide vs 28 ms per scene."""
    if max(scenes.lane_polygons.shape[-2], scenes.drivable_polygons.shape[-2]) > DENSE_POLYGON_VERTICES:
        return batch_flags(scenes, states, lights)
    return jax.lax.map(lambda a: scene_flags(*a), (scenes, states, lights))
