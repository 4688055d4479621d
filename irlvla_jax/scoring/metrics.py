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
from irlvla_jax.scoring.sparse import bucket_switch, sparse_pairs

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


_COS2_AHEAD = float(np.cos(np.deg2rad(AHEAD_DEG)) ** 2)      # 0.75
_COS2_BEHIND = float(np.cos(np.deg2rad(BEHIND_DEG)) ** 2)    # 0.75


def _bearing(rear, target, cos_h, sin_h):
    """Is ``target`` ahead (angle to the heading < 30 deg) / behind (> 150 deg) of the ego at ``rear``
    (both (x, y) pairs of arrays)?

    cos(angle) = d.h / |d| compared with cos 30 / cos 150, without the square root and the division
    (which dominated the per-object cost): d.h > 0 and (d.h)^2 > cos^2(30) |d|^2, and d.h < 0 and
    (d.h)^2 > cos^2(150) |d|^2. A zero offset is neither (cos taken as 0). -> (ahead, behind) bool."""
    dx, dy = target[0] - rear[0], target[1] - rear[1]
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


def moved_centers(center, speed, cos_h, sin_h):
    """TTC's projected ego centres ``[..., 4, 32, 2]``: the centre at steps 0..31 moved along the heading
    at the current speed for 0, 0.3, 0.6 and 0.9 s (materialised)."""
    n_eval = TTC_LAST + 1
    dirv = jnp.stack([cos_h, sin_h], axis=-1) * speed[..., None]                      # [..., T, 2]
    shift = dirv[..., None, :n_eval, :] * jnp.asarray(np.asarray(TTC_STEPS) * 0.1, dirv.dtype)[:, None, None]
    return jax.lax.optimization_barrier(center[..., None, :n_eval, :] + shift)


def object_events(ego, obj, multi_or_off, area):
    """NC and TTC events of ego / object pairs, over the leading axis K of every argument (planar
    coordinates, so that XLA:CPU vectorises over the steps).

    ``ego``: (front-left x, y, front-right x, y, centre x, y, speed, cos, sin, rear axle x, y [K, T],
    moved centres x, y [K, 4, 32]) (:func:`ego_terms`, :func:`moved_centers`); ``obj``: (rect (6 x [K, T],
    :func:`agent_rects`), centre x, y [K, T], valid [K, T], stopped [K]); ``multi_or_off``, ``area`` [K, T]:
    the ego's multiple-lanes-or-off-road and TTC area flags. K may be 1 on either side (broadcast).
    -> (counted [K]: the object counts for NC (its first at-fault contact comes before its first excused
    one), bad [K]: some at-fault TTC event comes before the first excused one)."""
    fl_x, fl_y, fr_x, fr_y, cx, cy, speed, cos_h, sin_h, rx, ry, mx, my = ego
    a_rect, ax, ay, a_valid, a_stopped = obj
    # NC.
    ego_rect = (cx, cy, cos_h, sin_h, HALF_LENGTH, HALF_WIDTH)                            # [K, T]
    overlap = geo.rects_overlap(ego_rect, a_rect) & a_valid                             # [K, T]
    _, behind = _bearing((rx, ry), (ax, ay), cos_h, sin_h)
    front = geo.segment_rect_overlap_xy(fl_x, fl_y, fr_x, fr_y, a_rect)                  # FL-FR edge
    ego_stopped = speed <= STOPPED_EGO_NC
    at_fault = ~ego_stopped & (a_stopped[:, None] | (~behind & (front | multi_or_off)))
    # Objects excused once stay excused (proposal_collided_track_ids): an object counts iff its first
    # at-fault step comes before its first excused step.
    counted = _first_before(overlap & at_fault, overlap & ~at_fault)
    # TTC: all look-aheads at once, [K, 4 (delta), 32 (t)], without concatenations (whose fusions
    # XLA:CPU evaluates element by element); events are ordered by (t, delta) through their index 4 t + d.
    n_eval = TTC_LAST + 1
    ds = np.asarray(TTC_STEPS)
    stack_d = lambda x: jnp.stack([x[:, d:d + n_eval] for d in TTC_STEPS], axis=1)
    a_val, a_cen = stack_d(a_valid), (stack_d(ax), stack_d(ay))                         # [K, 4, n]
    a_rect_d = tuple(stack_d(x) for x in a_rect)
    first = lambda x: x[:, None, :n_eval]
    ego_moved = (mx, my, first(cos_h), first(sin_h), HALF_LENGTH, HALF_WIDTH)
    ov = geo.rects_overlap(ego_moved, a_rect_d) & a_val & first(speed >= STOPPED_EGO_TTC)
    ahead_d, behind_d = _bearing((first(rx), first(ry)), a_cen, first(cos_h), first(sin_h))  # [K, 4, n]
    infr = ahead_d | (first(area) & ~behind_d)
    order = jnp.asarray(np.arange(n_eval)[None, :] * len(ds) + np.arange(len(ds))[:, None])  # [4, n]
    big = n_eval * len(ds)
    first_f = jnp.min(jnp.where(ov & infr, order, big), axis=(1, 2))
    first_e = jnp.min(jnp.where(ov & ~infr, order, big), axis=(1, 2))
    return counted, first_f < first_e


def planar_ego(corners, center, speed, cos_h, sin_h, rear, moved):
    """The ``ego`` tuple of :func:`object_events` from :func:`ego_terms` arrays, the rear axle [..., T, 2]
    and :func:`moved_centers`."""
    return (corners[..., 0, 0], corners[..., 0, 1], corners[..., 3, 0], corners[..., 3, 1], center[..., 0],
            center[..., 1], speed, cos_h, sin_h, rear[..., 0], rear[..., 1], moved[..., 0], moved[..., 1])


# NC and TTC (``object_scores``) are computed only for the (trajectory, object) pairs that can touch.
# ``geo.rects_overlap`` of the ego rectangle (half extents hl, hw, unit heading (c, s)) and an object's
# (half extents l, w) is False once |d . (c, s)| > hl + l |c'| + w |s'| or |d x (c, s)| > hw + l |s'| + w |c'|
# (d the centre offset, (c', s') the relative heading): by Cauchy-Schwarz l |c'| + w |s'| <= r =
# hypot(l, w), so a True test needs |d| <= hypot(hl + r, hw + r) (up to float32 rounding, ~1e-3 m at map
# scale; OBJECT_MARGIN covers it 100 times). Every NC / TTC event needs such a contact (with the object
# valid at that step), so a pair whose centre boxes over all steps (the ego's: its centres and TTC's
# moved centres; the object's: its centres at its valid steps) stay further apart than that reach has
# no event: ``counted`` and ``bad`` False, exactly what is set. The other pairs go through
# ``sparse_pairs``, OBJECT_BLOCK at a time.
OBJECT_MARGIN = 0.1
OBJECT_BLOCK = 512


def _object_candidates(center, moved, a_center, a_valid, a_rect, row_ctx):
    """Pairs that may touch (see above): ego centres [B, R, T, 2] and moved centres [B, R, 4, 32, 2];
    objects' centres [B, C, A, T, 2], valid [B, C, A, T], rectangles (6 x [B, C, A, T]) of C contexts;
    ``row_ctx`` [R] (numpy) the context of each row. -> bool [B, R, A]."""
    b_n, r_n = center.shape[:2]
    ex = jnp.concatenate([center[..., 0], moved[..., 0].reshape(b_n, r_n, -1)], axis=-1)
    ey = jnp.concatenate([center[..., 1], moved[..., 1].reshape(b_n, r_n, -1)], axis=-1)
    e_box = [f(v, axis=-1)[..., None] for v in (ex, ey) for f in (jnp.min, jnp.max)]     # [B, R, 1]
    r_a = jnp.max(jnp.where(a_valid, jnp.hypot(a_rect[4], a_rect[5]), 0.0), axis=-1)    # [B, C, A]
    reach = jnp.hypot(HALF_LENGTH + r_a + OBJECT_MARGIN, HALF_WIDTH + r_a + OBJECT_MARGIN)
    inf = jnp.asarray(jnp.inf, center.dtype)
    a_box = [f(jnp.where(a_valid, a_center[..., i], s * inf), axis=-1) for i in (0, 1)
             for f, s in ((jnp.min, 1), (jnp.max, -1))]                                  # [B, C, A]
    rows = lambda v: v[:, row_ctx]                                                       # [B, R, A]
    lo_x, hi_x, lo_y, hi_y = (rows(v) for v in a_box)
    reach, any_valid = rows(reach), rows(jnp.any(a_valid, axis=-1))
    return (any_valid & (e_box[0] - reach <= hi_x) & (e_box[1] + reach >= lo_x)
            & (e_box[2] - reach <= hi_y) & (e_box[3] + reach >= lo_y))


def object_scores(ego, multi_or_off, area, objects, row_ctx):
    """NC and TTC of a batch: ``ego`` (as :func:`object_events`, each [B, R, ...]) of R trajectories per
    scene; ``multi_or_off``, ``area`` [B, R, T]; ``objects`` (rect (6 x [B, C, A, T]), centre [B, C, A, T, 2],
    valid [B, C, A, T], stopped [B, C, A], penalty [B, C, A]) of C object contexts (metrics contexts
    stacked); ``row_ctx`` [R] (numpy int) the context of each row. -> (NC, TTC) float32 [B, R].

    Not vmapped: the pair list of the whole batch runs as many blocks as it needs (``sparse_pairs``)."""
    corners, center, speed, cos_h, sin_h, rear, moved = ego
    rect, a_center, a_valid, a_stopped, penalty = objects
    b_n, r_n = center.shape[:2]
    c_n, a_n = a_valid.shape[1:3]
    row_ctx = np.asarray(row_ctx, np.int32)
    rel = _object_candidates(center, moved, a_center, a_valid, rect, row_ctx).reshape(b_n * r_n, a_n)
    flat = lambda x, n: x.reshape((-1,) + x.shape[n:])
    ego_f = tuple(flat(x, 2) for x in planar_ego(*ego))
    mo_f, area_f = flat(multi_or_off, 2), flat(area, 2)
    obj_f = (tuple(flat(x, 3) for x in rect), flat(a_center[..., 0], 3), flat(a_center[..., 1], 3),
             flat(a_valid, 3), flat(a_stopped, 3))
    ctx_of = jnp.asarray(row_ctx)

    def fn(g, a, ok):
        j = ((g // r_n) * c_n + ctx_of[g % r_n]) * a_n + a
        o = jax.tree.map(lambda x: x[j], obj_f)
        counted, bad = object_events(tuple(x[g] for x in ego_f), o, mo_f[g], area_f[g])
        return jnp.stack([counted, bad], axis=-1)

    ev = sparse_pairs(rel, fn, OBJECT_BLOCK).reshape(b_n, r_n, a_n, 2)
    nc = jnp.min(jnp.where(ev[..., 0], penalty[:, row_ctx], 1.0), axis=-1)
    ttc = 1.0 - jnp.any(ev[..., 1], axis=-1).astype(jnp.float32)
    return nc, ttc


# LK only asks whether each step's centre is further than LK_LIMIT from the route (``route_exceed``). A
# route segment whose bounding box stays further than LK_LIMIT + LK_MARGIN (far above float32 rounding)
# from the box of some centres is further than that from each of them, so the distance to the others,
# when it is at most the limit, is the same minimum, and otherwise above the limit too. Per trajectory
# and run of LK_STEPS_PER_WINDOW steps, the index window from the first to the last near segment (every
# segment in it included) is measured, LK_WINDOWS segments at a time (the batch's widest window; the
# last branch is the whole route).
LK_MARGIN = 0.1
LK_STEPS_PER_WINDOW = 4
LK_WINDOWS = (8, 16, 24, 32, 48, 64)


def route_exceed(center, route):
    """Centres ``[B, R, T, 2]`` further than LK_LIMIT from the scene's route ``[B, S, 2]`` -> bool [B, R, T]
    (``geo.polyline_distance(center, route) > LK_LIMIT``). Not vmapped: the window size is a real branch."""
    b_n, r_n, t_n = center.shape[:3]
    a, b = route[:, :-1], route[:, 1:]                                                    # [B, S-1, 2]
    s_n = a.shape[1]
    w = LK_STEPS_PER_WINDOW
    n_w = -(-t_n // w)
    pad = jnp.broadcast_to(center[:, :, -1:], (b_n, r_n, n_w * w - t_n, 2))
    cw = jnp.concatenate([center, pad], axis=2).reshape(b_n, r_n, n_w, w, 2)
    reach = LK_LIMIT + LK_MARGIN
    # (Bounds and the near mask materialised: otherwise XLA:CPU broadcasts the bounds to full size.)
    seg, ctr = jax.lax.optimization_barrier((
        [f(a[..., i], b[..., i])[:, None, None] for i in (0, 1) for f in (jnp.minimum, jnp.maximum)],
        [f(cw[..., i], axis=-1)[..., None] + s * reach for i in (0, 1)
         for f, s in ((jnp.min, -1), (jnp.max, 1))]))                       # [B, 1, 1, S-1], [B, R, W, 1]
    near = jax.lax.optimization_barrier((seg[0] <= ctr[1]) & (seg[1] >= ctr[0]) & (seg[2] <= ctr[3])
                                        & (seg[3] >= ctr[2]))                                # [B, R, W, S-1]
    idx = jnp.arange(s_n)
    first = jnp.min(jnp.where(near, idx, s_n), axis=-1)
    last = jnp.max(jnp.where(near, idx, -1), axis=-1)
    sizes = tuple(k for k in LK_WINDOWS if k < s_n) + (s_n,)

    def branch(k):
        def f(_):
            if k == s_n:
                return jax.vmap(jax.vmap(geo.polyline_distance))(center, jnp.broadcast_to(
                    route[:, None], center.shape[:2] + route.shape[1:])) > LK_LIMIT
            j = first[..., None] + jnp.arange(k)                                          # [B, R, W, k]
            jc = jnp.minimum(j, s_n - 1).reshape(b_n, -1)
            take = lambda x: tuple(jnp.take_along_axis(x[..., i], jc, axis=1).reshape(j.shape) for i in (0, 1))
            d = geo.segments_distance(cw, take(a), take(b), j <= last[..., None])        # [B, R, W, w]
            return d.reshape(b_n, r_n, -1)[:, :, :t_n] > LK_LIMIT
        return f

    span = jnp.max(last - first + 1)
    return bucket_switch(span, sizes, [branch(k) for k in sizes], None)


def ego_terms(states):
    """Per-step ego quantities of trajectories ``states [..., 41, 11]``, materialised (otherwise XLA fuses
    their cos / sin into every per-object consumer and recomputes them once per object): corners
    [..., 41, 4, 2], centre [..., 41, 2], speed, cos and sin of the heading [..., 41]."""
    corners, center = ego_boxes(states)
    heading = states[..., 2]
    speed = jnp.hypot(states[..., 3], states[..., 4])
    cos_h, sin_h = jnp.cos(heading), jnp.sin(heading)
    return jax.lax.optimization_barrier((corners, center, speed, cos_h, sin_h))


def trajectory_metrics(scene, ctx, states, fl=None, objects=None, exceed=None):
    """Sub-scores of one trajectory ``states [41, 11]`` in one scene (``fl``: precomputed flags, with
    ``light_hit`` [41, K] for ``ctx``'s lights if ``flags.scene_flags`` computed the TLC test;
    ``objects``: (NC, TTC) from :func:`object_scores`, else computed here against every object;
    ``exceed`` [41]: LK's per-step test from :func:`route_exceed`, else computed here).

    Returns dict: NC, DAC, DDC, TLC, TTC, LK (float), progress (raw, m, >= 0), and the per-step flags.
    """
    rear = states[:, :2]
    corners, center, speed, cos_h, sin_h = ego_terms(states)
    ctx = jax.lax.optimization_barrier(ctx)
    if fl is None:
        fl = area_flags(scene, corners, center, rear)
    fl = dict(fl)
    light_hit = fl.pop("light_hit", None)
    multi_or_off = fl["multiple_lanes"] | fl["non_drivable"]
    if objects is None:
        area = multi_or_off | fl["rear_in_intersection"]
        ego = planar_ego(corners, center, speed, cos_h, sin_h, rear, moved_centers(center, speed, cos_h, sin_h))
        obj = (ctx["rect"], ctx["center"][..., 0], ctx["center"][..., 1], ctx["valid"], ctx["stopped"])
        counted, bad = object_events(tuple(x[None] for x in ego), obj, multi_or_off[None], area[None])
        nc = jnp.min(jnp.where(counted, ctx["penalty"], 1.0))
        ttc = 1.0 - jnp.any(bad).astype(jnp.float32)
    else:
        nc, ttc = objects

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

    # --- LK, progress --------------------------------------------------------------------------
    # Distances of every step to the route; the arc length (a projection) only at the two ends.
    if exceed is None:
        exceed = geo.polyline_distance(center, scene.route) > LK_LIMIT
    arc = geo.project_to_polyline(center[jnp.asarray([0, T - 1])], scene.route)[0]
    skip = fl["center_in_intersection"]

    def lk_step(count, inp):
        ex, sk = inp
        new = jnp.where(sk, count, jnp.where(ex, count + 1, 0))
        return new, new >= LK_STEPS

    _, fails = jax.lax.scan(lk_step, jnp.int32(0), (exceed, skip))
    lk = 1.0 - jnp.any(fails).astype(jnp.float32)
    progress = jnp.maximum(arc[1] - arc[0], 0.0)
    return dict(NC=nc, DAC=dac, DDC=ddc, TLC=tlc, TTC=ttc, LK=lk, progress=progress, **fl)
