"""Per-step ego flags and the EPDMS sub-scores NC, DAC, DDC, TLC, TTC, LK and raw progress (NAVSIM v2.2).

Everything is for ONE scene (vmap over scenes outside) and K trajectories of states ``[K, 41, 11]``
(see ``rollout``). The map / object work that does not depend on the trajectory is done once per scene
in :func:`scene_context`. Official-code quirks are matched and named in comments ("NAVSIM quirk").
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax import geometry as geo
from irlvla_jax.scene import AGENT_STATIC, DRIVABLE_INTERSECTION
from irlvla_jax.scoring.rollout import HALF_LENGTH, HALF_WIDTH, REAR_AXLE_TO_CENTER

T = 41
STOPPED_EGO_NC = 5e-2          # m/s, get_collision_type
STOPPED_TRACK = 5e-2           # m/s, is_track_stopped
STOPPED_EGO_TTC = 5e-3         # m/s, PDMScorerConfig.stopped_speed_threshold
TTC_STEPS = (0, 3, 6, 9)       # 0, 0.3, 0.6, 0.9 s
TTC_LAST = 31                  # steps 0..31
AHEAD_DEG, BEHIND_DEG = 30.0, 150.0
DDC_WINDOW = 10                # steps before t, plus t: 11 steps
DDC_OK, DDC_BAD = 2.0, 6.0
LK_LIMIT, LK_STEPS = 0.5, 20
NC_STATIC_PENALTY = 0.5
# TLC tests the ego box only against the lights that are ever red on the route; at most this many
# (a static subset, so the box-polygon tests stay cheap). Scenes with more are refused at conversion
# (``irlvla_jax.scoring.vectors``).
MAX_ROUTE_LIGHTS = 4


def ego_boxes(states):
    """States ``[..., 11]`` -> (corners [..., 4, 2] FL RL RR FR, centre [..., 2])."""
    h = states[..., 2]
    c = states[..., :2] + REAR_AXLE_TO_CENTER * jnp.stack([jnp.cos(h), jnp.sin(h)], axis=-1)
    return geo.box_corners(c, h, 2 * HALF_LENGTH, 2 * HALF_WIDTH), c


def agent_rects(center, heading, length, width):
    """Object rectangles in centre-extent form (``geo.rects_overlap``): (x, y, cos, sin, half length,
    half width), each broadcast to ``heading``'s shape [A, T]."""
    shape = jnp.shape(heading)
    b = lambda v: jnp.broadcast_to(v, shape)
    return (b(center[..., 0]), b(center[..., 1]), jnp.cos(heading), jnp.sin(heading), b(0.5 * length),
            b(0.5 * width))


def scene_context(scene):
    """Per-scene constants for the metrics: agent rectangles, first-occurrence properties, masks."""
    boxes = scene.agent_boxes                                     # [A, 41, 5]
    rect = agent_rects(boxes[..., :2], boxes[..., 2], boxes[..., 3], boxes[..., 4])
    valid = scene.agent_valid
    first = jnp.argmax(valid, axis=1)                             # first occurrence per agent
    v_first = jnp.take_along_axis(scene.agent_velocity, first[:, None, None], axis=1)[:, 0]
    is_static = scene.agent_type == AGENT_STATIC
    # NAVSIM quirk: "stopped" uses the object's velocity at its first occurrence; static objects are
    # not nuPlan Agents and always count as stopped.
    stopped = is_static | (jnp.linalg.norm(v_first, axis=-1) <= STOPPED_TRACK)
    penalty = jnp.where(is_static, NC_STATIC_PENALTY, 0.0)
    light_red_t = jnp.repeat(scene.light_red, 5, axis=1)[:, :T]   # [S, 41], 2 Hz held for 5 steps
    red_route = light_red_t & (scene.light_valid & scene.light_on_route)[:, None]
    light_poly, red = select_lights(scene.light_polygons, red_route)
    return dict(rect=rect, center=boxes[..., :2], valid=valid, stopped=stopped, penalty=penalty,
                red=red, light_poly=light_poly)


def select_lights(polygons, red):
    """The (at most MAX_ROUTE_LIGHTS) lights with any red step: (polygons [K, V, 2], red [K, T])."""
    k = min(MAX_ROUTE_LIGHTS, polygons.shape[0])
    order = jnp.argsort(~jnp.any(red, axis=-1), stable=True)[:k]
    return polygons[order], red[order]


def area_flags(scene, corners, center, rear):
    """Per-step areas for one trajectory: corners [T, 4, 2], centre [T, 2], rear axle [T, 2] ->
    dict of bool [T]: multiple_lanes, non_drivable, oncoming, center_in_intersection, rear_in_intersection."""
    t = corners.shape[0]
    pts = jnp.concatenate([corners, center[:, None], rear[:, None]], axis=1).reshape(-1, 2)   # [T*6, 2]
    in_lane = geo.points_in_polygon(pts[None], scene.lane_polygons)                          # [L, T*6]
    in_lane = (in_lane & scene.lane_valid[:, None]).reshape(-1, t, 6)
    in_drv = geo.points_in_polygon(pts[None], scene.drivable_polygons)
    in_drv = (in_drv & scene.drivable_valid[:, None]).reshape(-1, t, 6)
    corner_lane = in_lane[..., :4]                                                            # [L, T, 4]
    lanes_touched = jnp.sum(jnp.any(corner_lane, axis=-1), axis=0)                            # [T]
    none_full = jnp.all(jnp.sum(corner_lane, axis=-1) != 4, axis=0)
    multiple = (lanes_touched > 1) & none_full
    non_drivable = jnp.sum(jnp.any(in_drv[..., :4], axis=0), axis=-1) < 4
    oncoming = ~jnp.any(in_lane[..., 4] & scene.lane_on_route[:, None], axis=0)
    inter = (scene.drivable_kind == DRIVABLE_INTERSECTION)[:, None]
    return dict(multiple_lanes=multiple, non_drivable=non_drivable, oncoming=oncoming,
                center_in_intersection=jnp.any(in_drv[..., 4] & inter, axis=0),
                rear_in_intersection=jnp.any(in_drv[..., 5] & inter, axis=0))


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
# The relevant pairs are gathered into a static list of the smallest bucket in PAIR_BUCKETS (lights:
# LIGHT_PAIR_BUCKETS) that holds them all (a real branch per scene, lax.switch under lax.map; the last
# branch is every pair), and scattered back, so no pair is ever dropped.
# Small polygons (at most DENSE_POLYGON_VERTICES vertices, e.g. the generated worlds) are cheaper the
# older way: per trajectory, the first K polygons whose box meets the box of all its points (K the
# smallest of POLYGON_BUCKETS holding the largest count, by argument 1), tested densely over all
# vertices; lights that small are tested in ``trajectory_metrics``.
BBOX_MARGIN = 0.05
PAIR_BUCKETS = (512, 2048, 8192, 32768)
LIGHT_PAIR_BUCKETS = (0, 64, 512, 4096)
POLYGON_BUCKETS = (4, 8, 16)
DENSE_POLYGON_VERTICES = 64


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


def sparse_pairs(rel, fn, buckets):
    """Evaluate ``fn`` on the True pairs of ``rel [G, L]`` only -> ``[G, L, ...]`` (False elsewhere).

    ``fn(g [n], l [n], ok [n]) -> bool [n, ...]`` computes n pairs (``ok`` False on padding entries,
    whose g, l are valid indices but whose results are dropped). n is the smallest of ``buckets`` (then
    G x L) holding all True pairs; each size is a branch of a lax.switch (call it per scene, not under
    vmap, or every branch runs)."""
    g_n, l_n = rel.shape
    total = g_n * l_n
    flat = rel.reshape(-1)
    count = jnp.sum(flat)
    sizes = tuple(k for k in buckets if k < total) + (total,)
    probe = jnp.zeros((1,), jnp.int32)
    out = jax.eval_shape(fn, probe, probe, probe.astype(bool))

    def branch(n):
        def f(_):
            if n == 0:
                return jnp.zeros((g_n, l_n) + out.shape[1:], out.dtype)
            if n == total:
                idx = jnp.arange(total)
                ok = flat
            else:
                idx = jnp.nonzero(flat, size=n, fill_value=total)[0]
                ok = idx < total
            g, l = jnp.minimum(idx // l_n, g_n - 1), idx % l_n
            val = fn(g, l, ok)
            val = val & ok.reshape((n,) + (1,) * (val.ndim - 1))
            res = val if n == total else jnp.zeros((total,) + val.shape[1:], val.dtype).at[idx].set(val, mode="drop")
            return res.reshape((g_n, l_n) + val.shape[1:])
        return f

    return jax.lax.switch(jnp.sum(count > jnp.asarray(sizes[:-1])), [branch(n) for n in sizes], None)


def _points_in_small_polygons(pts, polys, valid, r):
    """Point groups ``pts [G, P, 2]`` (G = r x T) in small polygons ``polys [L, V, 2]`` -> bool [G, L, P],
    per trajectory over its first K relevant polygons (a lax.switch on K)."""
    g_n, p_n = pts.shape[:2]
    rows = pts.reshape(r, -1, 2)                                                            # [r, T * P, 2]
    rel = _relevant(tuple(f(rows[..., i], -1) for i in (0, 1) for f in (jnp.min, jnp.max)), polys, valid)
    sizes = tuple(k for k in POLYGON_BUCKETS if k < polys.shape[0]) + (polys.shape[0],)

    def branch(k):
        def f(_):
            order = jnp.argsort(~rel, axis=-1, stable=True)[:, :k]                          # [r, k]
            ok = jnp.take_along_axis(rel, order, axis=-1)
            inside = geo.points_in_polygon(rows[:, None], polys[order], max_dense=DENSE_POLYGON_VERTICES)
            inside = (inside & ok[..., None]).reshape(r, k, -1, p_n)                        # [r, k, T, P]
            full = jnp.zeros((r, polys.shape[0]) + inside.shape[2:], bool)
            full = full.at[jnp.arange(r)[:, None], order].set(inside, mode="drop", unique_indices=True)
            return jnp.moveaxis(full, 1, 2).reshape(g_n, -1, p_n)
        return f

    idx = jnp.sum(jnp.max(jnp.sum(rel, axis=-1)) > jnp.asarray(sizes[:-1]))
    return jax.lax.switch(idx, [branch(k) for k in sizes], None)


def _points_in_map(pts, box, polys, valid, r):
    """Point groups ``pts [G, P, 2]`` (boxes ``box``; G = r x T) in the polygons ``polys [L, V, 2]`` ->
    bool [G, L, P]."""
    if polys.shape[-2] <= DENSE_POLYGON_VERTICES:
        return _points_in_small_polygons(pts, polys, valid, r)
    edges, n_edges = geo.edge_table(polys), geo.polygon_edge_count(polys)

    def fn(g, l, ok):
        last = jnp.max(jnp.where(ok, n_edges[l], 0))
        return geo.points_in_indexed_polygons(pts[g], edges, l, last)

    return sparse_pairs(_relevant(box, polys, valid), fn, PAIR_BUCKETS)


def _lights_hit(corners, box, light_poly, red):
    """Ego boxes ``corners [R, T, 4, 2]`` (step boxes ``box`` [R * T]) touching the lights ``light_poly
    [K, V, 2]`` at the steps where they are red (``red [K, T]``) -> bool [R, T, K] (False elsewhere)."""
    r, t = corners.shape[:2]
    rel = _relevant(box, light_poly, jnp.ones(light_poly.shape[:1], bool))
    rel = (rel.reshape(r, t, -1) & red.T[None]).reshape(r * t, -1)
    flat = corners.reshape(r * t, 4, 2)
    hit = sparse_pairs(rel, lambda g, l, ok: geo.box_polygon_overlap(flat[g], light_poly[l]), LIGHT_PAIR_BUCKETS)
    return hit.reshape(r, t, -1)


def scene_flags(scene, states, lights=()):
    """Per-step map flags of the trajectories ``states [R, 41, 11]`` of ONE scene (not vmapped: the
    sparse pair lists branch per scene) -> dict of bool [R, 41]; equal to ``area_flags`` per row.

    ``lights``: (light_poly [K, V, 2], red [K, 41]) per metrics context (``ctx["light_poly"], ctx["red"]``);
    then, for lights of more than DENSE_POLYGON_VERTICES vertices, also ``light_hit`` [R, 41, C, K]: the
    ego box touches light k of context c at a red step (the TLC test of :func:`trajectory_metrics`)."""
    r = states.shape[0]
    corners, center = ego_boxes(states)
    pts = jnp.concatenate([corners, center[:, :, None], states[:, :, None, :2]], axis=2)    # [R, T, 6, 2]
    t = pts.shape[1]
    pts = pts.reshape(r * t, 6, 2)
    box = (jnp.min(pts[..., 0], -1), jnp.max(pts[..., 0], -1), jnp.min(pts[..., 1], -1), jnp.max(pts[..., 1], -1))

    in_lane = _points_in_map(pts, box, scene.lane_polygons, scene.lane_valid, r).reshape(r, t, -1, 6)
    corner_lane = in_lane[..., :4]                                                          # [R, T, L, 4]
    touched = jnp.sum(jnp.any(corner_lane, axis=-1), axis=2)
    none_full = jnp.all(jnp.sum(corner_lane, axis=-1) != 4, axis=2)
    on_route = jnp.any(in_lane[..., 4] & scene.lane_on_route, axis=2)
    in_drv = _points_in_map(pts, box, scene.drivable_polygons, scene.drivable_valid, r).reshape(r, t, -1, 6)
    inter = scene.drivable_kind == DRIVABLE_INTERSECTION
    out = dict(multiple_lanes=(touched > 1) & none_full, non_drivable=jnp.sum(jnp.any(in_drv[..., :4], axis=2), -1) < 4,
               oncoming=~on_route, center_in_intersection=jnp.any(in_drv[..., 4] & inter, axis=2),
               rear_in_intersection=jnp.any(in_drv[..., 5] & inter, axis=2))
    if lights and scene.light_polygons.shape[-2] > DENSE_POLYGON_VERTICES:
        # The ego box's bounding box (its 4 corners) per step.
        cb = (jnp.min(pts[:, :4, 0], -1), jnp.max(pts[:, :4, 0], -1), jnp.min(pts[:, :4, 1], -1),
              jnp.max(pts[:, :4, 1], -1))
        out["light_hit"] = jnp.stack([_lights_hit(corners, cb, lp, red) for lp, red in lights], axis=2)
    return out


_COS2_AHEAD = float(np.cos(np.deg2rad(AHEAD_DEG)) ** 2)      # 0.75
_COS2_BEHIND = float(np.cos(np.deg2rad(BEHIND_DEG)) ** 2)    # 0.75


def _bearing(rear, target, cos_h, sin_h):
    """Is ``target`` ahead (angle to the heading < 30 deg) / behind (> 150 deg) of the ego at ``rear``?

    cos(angle) = d.h / |d| compared with cos 30 / cos 150, without the square root and the division
    (which dominated the per-object cost): d.h > 0 and (d.h)^2 > cos^2(30) |d|^2, and d.h < 0 and
    (d.h)^2 > cos^2(150) |d|^2. A zero offset is neither (cos taken as 0). -> (ahead, behind) bool."""
    dx, dy = target[..., 0] - rear[..., 0], target[..., 1] - rear[..., 1]
    dot = cos_h * dx + sin_h * dy
    n2, dot2 = dx * dx + dy * dy, dot * dot
    return (dot > 0) & (dot2 > _COS2_AHEAD * n2), (dot < 0) & (dot2 > _COS2_BEHIND * n2)


def _first_before(a, b):
    """Per row of ``a, b [R, n]`` (disjoint events): some ``a`` event occurs with no ``b`` event before it,
    i.e. the first ``a`` comes before the first ``b`` -> bool [R]. The same as
    "some a event with no b event at or before it", computed with two O(n) min-reductions."""
    n = a.shape[-1]
    idx = jnp.arange(n)
    return jnp.min(jnp.where(a, idx, n), axis=-1) < jnp.min(jnp.where(b, idx, n), axis=-1)


def trajectory_metrics(scene, ctx, states, fl=None):
    """Sub-scores of one trajectory ``states [41, 11]`` in one scene (``fl``: precomputed flags, with
    ``light_hit`` [41, K] for ``ctx``'s lights if :func:`scene_flags` computed the TLC test).

    Returns dict: NC, DAC, DDC, TLC, TTC, LK (float), progress (raw, m, >= 0), and the per-step flags.
    """
    corners, center = ego_boxes(states)                                   # [T, 4, 2], [T, 2]
    rear, heading = states[:, :2], states[:, 2]
    speed = jnp.hypot(states[:, 3], states[:, 4])
    # Materialise the per-step ego quantities (and the scene context): otherwise XLA fuses their
    # cos / sin into every per-object consumer and recomputes them once per object.
    cos_h, sin_h = jnp.cos(heading), jnp.sin(heading)
    corners, center, speed, cos_h, sin_h, ctx = jax.lax.optimization_barrier(
        (corners, center, speed, cos_h, sin_h, ctx))
    if fl is None:
        fl = area_flags(scene, corners, center, rear)
    fl = dict(fl)
    light_hit = fl.pop("light_hit", None)
    multi_or_off = fl["multiple_lanes"] | fl["non_drivable"]

    # --- NC -------------------------------------------------------------------------------------
    a_rect, a_center, a_valid = ctx["rect"], ctx["center"], ctx["valid"]                 # [A, T, ...]
    ego_rect = (center[:, 0], center[:, 1], cos_h, sin_h, HALF_LENGTH, HALF_WIDTH)       # [T]
    overlap = geo.rects_overlap(ego_rect, a_rect) & a_valid                             # [A, T]
    _, behind = _bearing(rear[None], a_center, cos_h[None], sin_h[None])                  # [A, T]
    front = geo.segment_rect_overlap(corners[None, :, 0], corners[None, :, 3], a_rect)  # FL-FR edge
    ego_stopped = (speed <= STOPPED_EGO_NC)[None]
    at_fault = ~ego_stopped & (ctx["stopped"][:, None] | (~behind & (front | multi_or_off[None])))
    fault_ev = overlap & at_fault
    excuse_ev = overlap & ~at_fault
    # Objects excused once stay excused (proposal_collided_track_ids): an object counts iff its first
    # at-fault step comes before its first excused step.
    counted = _first_before(fault_ev, excuse_ev)                                        # [A]
    nc = jnp.min(jnp.where(counted, ctx["penalty"], 1.0))

    # --- DAC, DDC ------------------------------------------------------------------------------
    dac = 1.0 - jnp.any(fl["non_drivable"]).astype(jnp.float32)
    dc = jnp.diff(center, axis=0)
    step = jnp.concatenate([jnp.zeros(1), jnp.sqrt(dc[:, 0] * dc[:, 0] + dc[:, 1] * dc[:, 1])])
    step = jnp.where(fl["oncoming"] & ~fl["center_in_intersection"], step, 0.0)
    csum = jnp.concatenate([jnp.zeros(1), jnp.cumsum(step)])
    idx = jnp.arange(T)
    win = csum[idx + 1] - csum[jnp.maximum(idx - DDC_WINDOW, 0)]
    m = jnp.max(win)
    ddc = jnp.where(m < DDC_OK, 1.0, jnp.where(m < DDC_BAD, 0.5, 0.0))

    # --- TLC -----------------------------------------------------------------------------------
    if light_hit is None:
        hit = geo.box_polygon_overlap(corners[None], ctx["light_poly"][:, None])        # [K, T]
    else:
        hit = light_hit.T
    tlc = 1.0 - jnp.any(hit & ctx["red"]).astype(jnp.float32)

    # --- TTC -----------------------------------------------------------------------------------
    # All look-aheads at once: [A, 4 (delta), 32 (t)] without concatenations (whose fusions XLA:CPU
    # evaluates element by element); events are ordered by (t, delta) through their index 4 t + d.
    n_eval = TTC_LAST + 1
    ds = np.asarray(TTC_STEPS)
    stack_d = lambda x: jnp.stack([x[:, d:d + n_eval] for d in TTC_STEPS], axis=1)      # per scene
    a_val, a_cen = stack_d(a_valid), stack_d(a_center)                                  # [A, 4, n, ...]
    a_rect_d = tuple(stack_d(x) for x in a_rect)
    dirv = jnp.stack([cos_h, sin_h], axis=-1) * speed[:, None]                         # [T, 2]
    shift = dirv[None, :n_eval] * jnp.asarray(ds * 0.1, dirv.dtype)[:, None, None]      # [4, n, 2]
    moved = jax.lax.optimization_barrier(center[None, :n_eval] + shift)                # [4, n, 2] centres
    ego_moved = (moved[..., 0], moved[..., 1], cos_h[None, :n_eval], sin_h[None, :n_eval], HALF_LENGTH,
                 HALF_WIDTH)
    ov = geo.rects_overlap(ego_moved, a_rect_d) & a_val & (speed[:n_eval] >= STOPPED_EGO_TTC)[None, None]
    ahead_d, behind_d = _bearing(rear[None, None, :n_eval], a_cen, cos_h[None, None, :n_eval],
                                 sin_h[None, None, :n_eval])                             # [A, 4, n]
    area = (multi_or_off | fl["rear_in_intersection"])[None, None, :n_eval]
    infr = ahead_d | (area & ~behind_d)
    order = jnp.asarray(np.arange(n_eval)[None, :] * len(ds) + np.arange(len(ds))[:, None])  # [4, n]
    big = n_eval * len(ds)
    first_f = jnp.min(jnp.where(ov & infr, order, big), axis=(1, 2))
    first_e = jnp.min(jnp.where(ov & ~infr, order, big), axis=(1, 2))
    ttc = 1.0 - jnp.any(first_f < first_e).astype(jnp.float32)

    # --- LK, progress --------------------------------------------------------------------------
    # Distances of every step to the route; the arc length (a projection) only at the two ends.
    dist = geo.polyline_distance(center, scene.route)
    arc = geo.project_to_polyline(center[jnp.asarray([0, T - 1])], scene.route)[0]
    exceed = dist > LK_LIMIT
    skip = fl["center_in_intersection"]

    def lk_step(count, inp):
        ex, sk = inp
        new = jnp.where(sk, count, jnp.where(ex, count + 1, 0))
        return new, new >= LK_STEPS

    _, fails = jax.lax.scan(lk_step, jnp.int32(0), (exceed, skip))
    lk = 1.0 - jnp.any(fails).astype(jnp.float32)
    progress = jnp.maximum(arc[1] - arc[0], 0.0)
    return dict(NC=nc, DAC=dac, DDC=ddc, TLC=tlc, TTC=ttc, LK=lk, progress=progress, **fl)
