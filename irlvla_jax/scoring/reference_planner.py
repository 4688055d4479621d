"""PDM-Closed reference planner in JAX (the EP normaliser), after NAVSIM's metric-cache PDM-Closed.

What it does, per scene (``proposals_batch`` runs a batch of scenes: per-path setup vmapped, one time loop):

1. Paths: the route centerline (each vertex takes its segment's heading, the last repeats the one
   before) and two copies offset by -1 m and +1 m along heading + pi/2 -> 3 paths.
2. Speeds: IDM (min gap 1 m, headway 1.5 s, a_max 1.5, b_max 3 m/s^2, exponent 10) with target speeds
   0.2, 0.4, 0.6, 0.8, 1.0 x the speed limit of the starting lane (the on-route lane containing the rear
   axle with the smallest heading error; unknown limit -> 15 m/s) -> 15 proposals, unrolled 4 s at 0.1 s
   along each path.
3. Observation: only the objects at t = 0 within 100 m, extrapolated at constant velocity and sampled
   every 0.2 s (NAVSIM's observation_sample_res = 2); red lights of on-route connectors at t = 0, held.
4. Leading agent: every second step, objects that intersect the path's driving corridor (the path
   from the ego's projection, ``limit x 5 s`` ahead, taken vertex-wise, buffered by half the ego width
   with square caps), project ahead of the ego, nearest by polygon distance.
   NAVSIM quirks reproduced (named): at the first step the leading-agent record is still all zeros
   (so the IDM brakes at up to 3 m/s^2 unless the ego is at rest); the record is one buffer reused
   across the 5 speeds of a path within a step, so fields not written for one proposal leak from the
   previous one (velocity of a red light, rear length after free driving).
5. Each proposal is tracked by the LQR on the bicycle model, scored like the agent (NC, DAC, DDC, TLC,
   TTC, LK and progress normalised among the 15; HC = 1 as there is no past), and the best (first
   argmax of the PDM score) is returned as 41 reference poses (state 0 = the path point at the ego's
   projection, as in NAVSIM).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from irlvla_jax import geometry as geo
from irlvla_jax.scene import AGENT_STATIC
from irlvla_jax.scoring import light_rows, metrics, rollout

SPEED_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)
LATERAL_OFFSETS = (0.0, -1.0, 1.0)
FALLBACK_SPEED = 15.0
MIN_GAP, HEADWAY, A_MAX, B_MAX, EXPONENT = 1.0, 1.5, 1.5, 3.0, 10
MAP_RADIUS = 100.0
TRAJ_HORIZON_S = 5.0
DT = rollout.DT
T = rollout.T
EGO_LENGTH = 2 * rollout.HALF_LENGTH
MAX_LIGHTS = 4
# Light polygons with more (padded) vertices than this take the compact-edge path (see
# ``light_rows.edge_rows``); smaller maps keep the dense code, which is cheaper there.
SPARSE_MIN_VERTICES = 64
POINT_CHUNK = 32
# Slack (metres) of the corridor's bounding-box prefilter, far above float32 rounding at map scale.
BBOX_MARGIN = 1.0


def _vertex_headings(line, valid):
    """Headings [R] of a padded polyline: each vertex its segment's, the last valid repeats the previous."""
    seg = jnp.diff(line, axis=0)
    seg_h = jnp.arctan2(seg[:, 1], seg[:, 0])
    n = jnp.sum(valid)
    idx = jnp.minimum(jnp.arange(line.shape[0]), n - 2)
    return seg_h[idx]


def _unwrap(h):
    d = geo.normalize_angle(jnp.diff(h))
    return jnp.concatenate([h[:1], h[0] + jnp.cumsum(d)])


def _polygon_centroid(poly):
    """Area centroid of polygons [..., V, 2] (padding repeats vertex 0, adding zero-area triangles)."""
    p0, p1 = poly, jnp.roll(poly, -1, axis=-2)
    cr = p0[..., 0] * p1[..., 1] - p1[..., 0] * p0[..., 1]
    a = jnp.sum(cr, axis=-1) / 2.0
    cx = jnp.sum((p0[..., 0] + p1[..., 0]) * cr, axis=-1) / (6.0 * a)
    cy = jnp.sum((p0[..., 1] + p1[..., 1]) * cr, axis=-1) / (6.0 * a)
    return jnp.stack([cx, cy], axis=-1)


def starting_speed_limit(scene):
    """Speed limit of NAVSIM's starting lane (m/s; FALLBACK_SPEED when unknown)."""
    origin = jnp.zeros((1, 2))
    on = scene.lane_valid & scene.lane_on_route
    contains = geo.points_in_polygon(origin[None], scene.lane_polygons)[:, 0] & on          # [L]
    cl = scene.lane_centerlines                                                            # [L, P, 2]
    heads = jax.vmap(_vertex_headings)(cl, scene.lane_point_valid)
    d = jnp.linalg.norm(cl, axis=-1)
    d = jnp.where(scene.lane_point_valid, d, jnp.inf)
    herr = jnp.abs(geo.normalize_angle(jnp.take_along_axis(heads, jnp.argmin(d, axis=-1)[:, None], 1)[:, 0]))
    # Fallback (no lane contains the rear axle): the on-route lane whose centerline passes nearest.
    nearest = jnp.argmin(jnp.where(on, jnp.min(d, axis=-1), jnp.inf))
    lane = jnp.where(jnp.any(contains), jnp.argmin(jnp.where(contains, herr, jnp.inf)), nearest)
    lim = scene.lane_speed_limit[lane]
    return jnp.where(lim > 0, lim, FALLBACK_SPEED)


def forecast_context(scene):
    """The planner's observation as a metrics context: t0 objects at constant velocity, 0.2 s samples."""
    boxes0 = scene.agent_boxes[:, 0]                                       # [A, 5]
    static = scene.agent_type == AGENT_STATIC
    vel = jnp.where(static[:, None], 0.0, scene.agent_velocity[:, 0])
    # PDMObjectManager: objects move at their speed along their box heading (flipped when driving
    # backwards), not along their velocity vector.
    speed = jnp.linalg.norm(vel, axis=-1)
    forward = jnp.abs(geo.normalize_angle(boxes0[:, 2] - jnp.arctan2(vel[:, 1], vel[:, 0]))) < jnp.pi / 2
    th = jnp.where(forward, boxes0[:, 2], geo.normalize_angle(boxes0[:, 2] + jnp.pi))
    v0 = speed[:, None] * jnp.stack([jnp.cos(th), jnp.sin(th)], axis=-1)
    tk = (2 * (jnp.arange(T) // 2)) * DT                                   # sample time used at each step
    centers = boxes0[:, None, :2] + v0[:, None, :] * tk[None, :, None]     # [A, T, 2]
    corners = geo.box_corners(centers, boxes0[:, None, 2], boxes0[:, None, 3], boxes0[:, None, 4])
    ego_c, _ = metrics.ego_boxes(rollout.ego_state_array(scene.ego_state))
    ego_center = rollout.REAR_AXLE_TO_CENTER * jnp.array([1.0, 0.0])
    near = jnp.linalg.norm(boxes0[:, :2] - ego_center, axis=-1) <= MAP_RADIUS
    a_corners0 = geo.box_corners(boxes0[:, :2], boxes0[:, 2], boxes0[:, 3], boxes0[:, 4])
    collided = geo.boxes_overlap(ego_c[None], a_corners0)
    valid0 = scene.agent_valid[:, 0] & near & ~collided
    stopped = static | (jnp.linalg.norm(scene.agent_velocity[:, 0], axis=-1) <= metrics.STOPPED_TRACK)
    red0 = scene.light_red[:, 0] & scene.light_valid & scene.light_on_route
    # A red light the ego is already entirely within counts as collided: ignored as a leading object
    # (TLC still sees it).
    within = jnp.all(geo.points_in_polygon(ego_c[None], scene.light_polygons), axis=-1)
    red_t = jnp.broadcast_to(red0[:, None], (red0.shape[0], T))
    light_poly, red = metrics.select_lights(scene.light_polygons, red_t)
    rect = metrics.agent_rects(centers, jnp.broadcast_to(boxes0[:, None, 2], centers.shape[:2]),
                               boxes0[:, None, 3], boxes0[:, None, 4])
    return dict(lead_light=red0 & ~within, corners=corners, rect=rect, center=centers,
                valid=jnp.broadcast_to(valid0[:, None], centers.shape[:2]), stopped=stopped,
                penalty=jnp.where(static, metrics.NC_STATIC_PENALTY, 0.0), red=red, light_poly=light_poly,
                speed0=speed, heading0=boxes0[:, 2])


def _boxes_in_corridor(center, heading, hl, hw, a, b, u, seg_ok, joints, joint_ok, half_w):
    """Object boxes (centre [..., 2], heading, half length, half width [...]) touching the corridor.

    The same set as ``in_corridor`` (rectangles per segment from a to b along u, of half width
    ``half_w``, plus discs of radius ``half_w`` at the valid joints) for rectangular objects, with the
    separating-axis test of two rectangles in centre-extent form and the disc test as the distance from
    the joint to the object rectangle (0 inside; a joint inside an object also touches its segment's
    rectangle, so counting it here changes nothing). -> bool [...].
    """
    th = jnp.arctan2(u[:, 1], u[:, 0])
    ur = jnp.stack([jnp.cos(th), jnp.sin(th)], axis=-1)                     # as box_corners builds it
    cr, hl_r = 0.5 * (a + b), 0.5 * jnp.linalg.norm(b - a, axis=-1)          # [K, 2], [K]
    ca, sa = jnp.cos(heading)[..., None], jnp.sin(heading)[..., None]       # [..., 1]
    hl_a, hw_a = hl[..., None], hw[..., None]
    dx, dy = center[..., None, 0] - cr[:, 0], center[..., None, 1] - cr[:, 1]   # [..., K]
    c_d = ur[:, 0] * ca + ur[:, 1] * sa                                      # cos of the relative heading
    s_d = ur[:, 0] * sa - ur[:, 1] * ca
    ac, as_ = jnp.abs(c_d), jnp.abs(s_d)
    sep = ((jnp.abs(dx * ur[:, 0] + dy * ur[:, 1]) > hl_r + hl_a * ac + hw_a * as_)
           | (jnp.abs(-dx * ur[:, 1] + dy * ur[:, 0]) > half_w + hl_a * as_ + hw_a * ac)
           | (jnp.abs(dx * ca + dy * sa) > hl_a + hl_r * ac + half_w * as_)
           | (jnp.abs(-dx * sa + dy * ca) > hw_a + hl_r * as_ + half_w * ac))
    hit_rect = jnp.any(~sep & seg_ok, axis=-1)
    jx, jy = joints[:, 0] - center[..., None, 0], joints[:, 1] - center[..., None, 1]
    lx = jnp.maximum(jnp.abs(jx * ca + jy * sa) - hl_a, 0.0)
    ly = jnp.maximum(jnp.abs(-jx * sa + jy * ca) - hw_a, 0.0)
    hit_disc = jnp.any((lx * lx + ly * ly <= half_w * half_w) & joint_ok, axis=-1)
    return hit_rect | hit_disc


SEGMENT_CHUNK = 16   # corridor segments per loop step of the objects' corridor test


def _over_corridor(seg_ok, fn, init):
    """Folds ``fn(idx [SEGMENT_CHUNK] segment indices, ok [SEGMENT_CHUNK] (inside the range), acc)`` over
    the segments from the corridor's first to its last valid one (a while loop: the corridor is a short
    stretch of a long route, and every quantity taken from it is an any over its valid segments)."""
    k = seg_ok.shape[0]
    lo = jnp.argmax(seg_ok)
    hi = jnp.where(jnp.any(seg_ok), k - jnp.argmax(seg_ok[::-1]), lo)

    def step(c):
        i, acc = c
        idx = i + jnp.arange(SEGMENT_CHUNK)
        return i + SEGMENT_CHUNK, fn(jnp.minimum(idx, k - 1), idx < hi, acc)

    return jax.lax.while_loop(lambda c: c[0] < hi, step, (lo.astype(jnp.int32), init))[1]


def _corridor(pts, prog, ego_s, targets):
    """The driving corridor of a path: path vertices with progress in [ego_s, ego_s + max target x 5 s],
    buffered by half the ego width with square caps. -> (seg_ok [K], a, b [K, 2] (segment ends, the end
    segments lengthened by half the width), u [K, 2] (unit directions), rect [K, 4, 2] (one rectangle
    per segment), joints [K, 2], joint_ok [K] (round joins: discs at the interior vertices))."""
    length = prog[-1]
    s_end = ego_s + jnp.max(targets) * TRAJ_HORIZON_S
    inside = (prog >= jnp.clip(ego_s, 0.0, length)) & (prog <= jnp.clip(s_end, 0.0, length))
    seg_ok = inside[:-1] & inside[1:] & (prog[1:] > prog[:-1])
    first = seg_ok & ~jnp.concatenate([jnp.zeros(1, bool), seg_ok[:-1]])
    last = seg_ok & ~jnp.concatenate([seg_ok[1:], jnp.zeros(1, bool)])
    a, b = pts[:-1], pts[1:]
    u = (b - a) / jnp.maximum(jnp.linalg.norm(b - a, axis=-1, keepdims=True), 1e-9)
    half_w = rollout.HALF_WIDTH
    a = jnp.where(first[:, None], a - u * half_w, a)
    b = jnp.where(last[:, None], b + u * half_w, b)
    rect = geo.box_corners(0.5 * (a + b), jnp.arctan2(u[:, 1], u[:, 0]), jnp.linalg.norm(b - a, axis=-1),
                           jnp.full(a.shape[:1], 2 * half_w))                                   # [K, 4, 2]
    joint_ok = seg_ok & ~first                                                                 # disc at start of seg
    return seg_ok, a, b, u, rect, pts[:-1], joint_ok


def _prefilter_box(rect, seg_ok):
    """The corridor's pruning box (lo, hi [2]): the bounding box of the valid segment rectangles grown by
    half the ego width (the joints' discs) and BBOX_MARGIN. See the sparse branch of ``_path_setup``."""
    grow = rollout.HALF_WIDTH + BBOX_MARGIN
    lo = jnp.min(jnp.where(seg_ok[:, None, None], rect, jnp.inf), axis=(0, 1)) - grow
    hi = jnp.max(jnp.where(seg_ok[:, None, None], rect, -jnp.inf), axis=(0, 1)) + grow
    return lo, hi


def _project_masked(points, mask, line):
    """``geo.project_to_polyline(points, line)[0]`` [N] where ``mask`` [N] (0 elsewhere): the masked
    points packed in front and projected POINT_CHUNK at a time (a while loop, as
    ``light_rows.over_edge_chunks``)."""
    n = points.shape[0]
    size = -(-n // POINT_CHUNK) * POINT_CHUNK
    slot = jnp.where(mask, jnp.cumsum(mask.astype(jnp.int32)) - 1, size)
    idx = jnp.full((size,), n, jnp.int32).at[slot].set(jnp.arange(n, dtype=jnp.int32), mode="drop")
    padded = jnp.concatenate([points, jnp.zeros_like(points[:1])], axis=0)        # row n: filler

    def step(c):
        i0, out = c
        ix = jax.lax.dynamic_slice_in_dim(idx, i0, POINT_CHUNK)
        arc = geo.project_to_polyline(padded[ix], line)[0]
        return i0 + POINT_CHUNK, out.at[ix].set(arc, mode="drop")

    total = jnp.sum(mask.astype(jnp.int32))
    return jax.lax.while_loop(lambda c: c[0] < total, step,
                              (jnp.int32(0), jnp.zeros((n,), points.dtype)))[1]


def _path(route, valid, offset):
    h = _vertex_headings(route, valid)
    pts = route + offset * jnp.stack([jnp.cos(h + jnp.pi / 2), jnp.sin(h + jnp.pi / 2)], axis=-1)
    pts = jnp.where(valid[:, None], pts, pts[jnp.sum(valid) - 1])
    return pts, _unwrap(h), geo.polyline_arclength(pts)


def _interp_pose(s, prog, pts, hun):
    length = prog[-1]
    s = jnp.clip(s, 1e-5, length)
    xyh = geo.interp(s, prog, jnp.concatenate([pts, hun[:, None]], axis=-1))   # == jnp.interp per channel
    return jnp.concatenate([xyh[..., :2], geo.normalize_angle(xyh[..., 2:])], axis=-1)


def _path_setup(scene, ctx, pts, hun, prog, targets, sparse):
    """Everything of one path's IDM unroll that does not depend on the unrolled state: the corridor, the
    selected red lights (with ``sparse``: their packed edge rows), the objects' corridor tests and path
    progress at every leading-agent step. -> dict of arrays (the ``path`` of :func:`_lead_record` / :func:`_idm`)."""
    ego_s = geo.project_to_polyline(jnp.zeros((1, 2)), pts)[0][0]
    seg_ok, a, b, u, rect, joints, joint_ok = _corridor(pts, prog, ego_s, targets)
    half_w = rollout.HALF_WIDTH

    def in_corridor(poly):
        """poly [..., V, 2] -> bool [...]: intersects the corridor."""
        hit_rect = jnp.any(jax.vmap(lambda r: geo.box_polygon_overlap(r, poly), out_axes=-1)(rect) & seg_ok,
                           axis=-1)
        # A joint inside the polygon is already inside its segment's rectangle (hit_rect).
        dj = geo.points_to_edges_distance(joints, poly)                                       # [..., K]
        hit_disc = jnp.any((dj <= half_w) & joint_ok, axis=-1)
        return hit_rect | hit_disc

    a_valid0 = ctx["valid"][:, 0]
    # Only the MAX_LIGHTS red on-route lights nearest ahead along the path are considered (a static
    # subset: exact whenever at most MAX_LIGHTS such connectors lie ahead).
    light_prog_all = geo.project_to_polyline(_polygon_centroid(scene.light_polygons), pts)[0]      # [S]
    key = jnp.where(ctx["lead_light"], jnp.where(light_prog_all > ego_s - 1.0, light_prog_all, 1e6), jnp.inf)
    kl = min(MAX_LIGHTS, key.shape[0])
    order = jnp.argsort(key)[:kl]
    sel_poly, sel_prog = scene.light_polygons[order], light_prog_all[order]
    out = dict(ego_s=ego_s, sel_prog=sel_prog, pts=pts, hun=hun, prog=prog, targets=targets)
    if sparse:
        # Only red lights can lead: a light with lead_light False (not red at t = 0 -- the observation
        # holds the t = 0 state for the whole unroll --, off-route, invalid, or already around the ego)
        # has key inf and, if selected at all, sel_ok False, so it is masked out of every step. Such
        # lights get no rows at all.
        # The corridor test is pre-filtered by bounding boxes: a polygon that touches a valid segment
        # rectangle, or comes within half_w of a valid joint (a joint is the middle of its rectangle's
        # rear side), has its bounding box within half_w of the bounding box of the valid rectangles'
        # corners; BBOX_MARGIN (1 m) covers the float32 rounding of the box-frame tests (~1e-4 m at
        # map scale) many times over. A polygon that fails it gets no rows and in_corridor False,
        # as the dense test gives. No distance-based pruning is applied to the per-step distances:
        # a red light in the corridor leads whenever no object is nearer, however far it is (its
        # distance enters the IDM), and a light outside the corridor is already masked (sel_ok).
        lead = ctx["lead_light"][order]
        lo, hi = _prefilter_box(rect, seg_ok)
        near = (jnp.all(jnp.min(sel_poly, axis=1) <= hi, axis=-1)
                & jnp.all(jnp.max(sel_poly, axis=1) >= lo, axis=-1) & jnp.any(seg_ok))
        rows, owner, total = light_rows.edge_rows(sel_poly, lead & near)
        sel_ok = lead & near & light_rows.corridor_hits_sparse(rect, seg_ok, joints, joint_ok, half_w, rows,
                                                               owner, total, kl)
        # The per-step distances are needed only for the lights that can lead: rows of those alone.
        out["rows"], out["owner"], out["total"] = light_rows.edge_rows(sel_poly, sel_ok)
    else:
        sel_ok = ctx["lead_light"][order] & in_corridor(sel_poly)
        out["sel_poly"] = sel_poly
    out["sel_ok"] = sel_ok

    # The forecast objects do not depend on the proposals: their corridor tests and path progress at
    # every leading-agent step (t = 2, 4, ..., 40) are computed up front, outside the unroll loop.
    t_lead = jnp.arange(2, T, 2)
    box_args = (ctx["center"][:, t_lead], ctx["heading0"][:, None], 0.5 * scene.agent_boxes[:, 0, 3:4],
                0.5 * scene.agent_boxes[:, 0, 4:5])

    def corridor_chunk(idx, ok, acc):
        return acc | _boxes_in_corridor(*box_args, a[idx], b[idx], u[idx], seg_ok[idx] & ok, joints[idx],
                                        joint_ok[idx] & ok, half_w)

    cand_all = _over_corridor(seg_ok, corridor_chunk, jnp.zeros(box_args[0].shape[:2], bool)) \
        & a_valid0[:, None]                                                                      # [A, 20]
    if sparse:
        # Progress matters only where the object is a candidate (ok_a below): those pairs alone.
        prog_all = _project_masked(ctx["center"][:, t_lead].reshape(-1, 2), cand_all.reshape(-1),
                                   pts).reshape(cand_all.shape)                              # [A, 20]
    else:
        prog_all = geo.project_to_polyline(ctx["center"][:, t_lead], pts)[0]                 # [A, 20]
    out.update(cand_all=cand_all, prog_all=prog_all)
    return out


def _lead_record(path, ctx, agent_type, t, poses_prev, s_prev, ego_corners, d_l):
    """NAVSIM's leading-agent search at step t (even) along one path: records [5, 3] (progress, velocity,
    rear length) of the 5 proposals, given the ego boxes [5, 4, 2] at their poses and the distances
    d_l [5, kl] to the selected lights."""
    n_prop = poses_prev.shape[0]
    ac = ctx["corners"][:, t]                                                             # [A, 4, 2]
    a_prog = path["prog_all"][:, t // 2 - 1]                                              # [A]
    a_cand = path["cand_all"][:, t // 2 - 1]
    d_a = geo.rect_distances(ego_corners, ac)                                             # [5, A]
    ok_a = a_cand[None] & (a_prog[None] > s_prev[:, None])
    ok_l = path["sel_ok"][None] & (path["sel_prog"][None] > s_prev[:, None])
    # Objects come before lights in NAVSIM's token order (argmin takes the first minimum).
    d_all = jnp.concatenate([jnp.where(ok_a, d_a, jnp.inf), jnp.where(ok_l, d_l, jnp.inf)], axis=-1)
    k = jnp.argmin(d_all, axis=-1)
    dist = jnp.min(d_all, axis=-1)
    found = jnp.isfinite(dist)
    is_red = k >= ac.shape[0]
    ka = jnp.minimum(k, ac.shape[0] - 1)
    rel = geo.normalize_angle(ctx["heading0"][ka] - poses_prev[:, 2])
    lvel = jnp.where(agent_type[ka] == AGENT_STATIC, 0.0, ctx["speed0"][ka] * jnp.cos(rel))
    lprog = s_prev + dist
    # NAVSIM quirk: one leading-agent buffer reused across the 5 proposals of a path, so fields
    # not written for one proposal leak from the previous one.
    buf = jnp.zeros(3)
    recs = []
    for j in range(n_prop):
        buf = jnp.where(found[j],
                        buf.at[0].set(lprog[j]).at[1].set(jnp.where(is_red[j], buf[1], lvel[j])),
                        buf.at[0].set(path["prog"][-1]).at[2].set(EGO_LENGTH / 2))
        recs.append(buf)
    return jnp.stack(recs)


def _idm(path, s, v, lead):
    """One IDM step of the 5 proposals along a path -> (s, v, poses [5, 3])."""
    x_lead, v_lead, lr = lead[:, 0], lead[:, 1], lead[:, 2]
    s_star = MIN_GAP + v * HEADWAY + v * (v - v_lead) / (2 * np.sqrt(A_MAX * B_MAX))
    s_alpha = jnp.maximum(x_lead - s - lr, MIN_GAP)
    acc = jnp.clip(A_MAX * (1 - (v / path["targets"]) ** EXPONENT - (s_star / s_alpha) ** 2), -B_MAX, A_MAX)
    s_new, v_new = s + DT * v, v + DT * acc
    return s_new, v_new, _interp_pose(s_new, path["prog"], path["pts"], path["hun"])


def _unroll(scenes, ctx, paths, sparse):
    """IDM unroll of the 5 speed proposals along every path of every scene -> reference poses
    [B, P, 5, 41, 3]. ``paths``: :func:`_path_setup` of each (scene, path), leading axes [B, P]; ``ctx``
    the scenes' forecast contexts [B]. The loop over time runs once for the whole batch, so the light
    distances (sparse) are computed over the batch's packed edge rows, not to the longest element."""
    over = lambda f, ax: jax.vmap(jax.vmap(f, in_axes=ax), in_axes=ax)     # noqa: E731  [B, P] elements
    # The scene's context and agent types are shared by its paths; t by everything.
    lead_fn = jax.vmap(jax.vmap(_lead_record, in_axes=(0, None, None, None, 0, 0, 0, 0)),
                       in_axes=(0, 0, 0, None, 0, 0, 0, 0))
    idm_fn = over(_idm, (0, 0, 0, 0))
    boxes_fn = over(lambda poses: metrics.ego_boxes(jnp.concatenate([poses, jnp.zeros(poses.shape[:-1] + (8,))],
                                                                    axis=-1))[0], (0,))
    if sparse:
        kl = paths["sel_ok"].shape[-1]
        packed = light_rows.pack_rows(paths["rows"], paths["owner"], paths["total"], kl)

        def light_fn(corners):
            return light_rows.light_distances_packed(corners, packed, kl)
    else:
        dense = over(lambda e, poly: jax.vmap(lambda b: geo.polygon_distance(b[None], poly))(e), (0, 0))

        def light_fn(corners):
            return dense(corners, paths["sel_poly"])

    def lead_update(t, poses, s):
        corners = boxes_fn(poses)                                                         # [B, P, 5, 4, 2]
        return lead_fn(paths, ctx, scenes.agent_type, t, poses, s, corners, light_fn(corners))

    n_prop = paths["targets"].shape[-1]
    s0 = jnp.broadcast_to(paths["ego_s"][..., None], paths["targets"].shape)
    poses0 = over(lambda p, s: jnp.broadcast_to(_interp_pose(s, p["prog"], p["pts"], p["hun"]), (n_prop, 3)),
                  (0, 0))(paths, paths["ego_s"])
    v_ego = jnp.broadcast_to(scenes.ego_state[:, None, 3:4], s0.shape)
    # t = 1: NAVSIM quirk, the leading-agent record is still the all-zero one of t = 0.
    s1, v1, p1 = idm_fn(paths, s0, v_ego, jnp.zeros(s0.shape + (3,)))

    def double_step(carry, t):
        s, v, poses = carry                                   # state at t - 1 (t even)
        lead = lead_update(t, poses, s)
        s_a, v_a, p_a = idm_fn(paths, s, v, lead)             # step t
        s_b, v_b, p_b = idm_fn(paths, s_a, v_a, lead)         # step t + 1 reuses the record
        return (s_b, v_b, p_b), (p_a, p_b)

    ts = jnp.arange(2, T - 1, 2)                              # 2, 4, ..., 38 -> steps 2..39
    (s39, v39, p39), (pa, pb) = jax.lax.scan(double_step, (s1, v1, p1), ts)
    _, _, p40 = idm_fn(paths, s39, v39, lead_update(T - 1, p39, s39))
    mid = jnp.stack([pa, pb], axis=1).reshape((-1,) + pa.shape[1:])                   # steps 2..39
    traj = jnp.concatenate([poses0[None], p1[None], mid, p40[None]], axis=0)          # [41, B, P, 5, 3]
    return jnp.moveaxis(traj, 0, -2)


def proposals_batch(scenes, ctx=None, sparse=None):
    """PDM-Closed's 15 reference proposals [B, 15, 41, 3] of a Scene batch (3 paths x 5 speeds, path-major)
    and their forecast contexts [B].

    ``sparse`` (static): the compact-edge light path (the same proposals); None picks it for light
    polygons of more than SPARSE_MIN_VERTICES vertices."""
    ctx = jax.vmap(forecast_context)(scenes) if ctx is None else ctx
    if sparse is None:
        sparse = scenes.light_polygons.shape[-2] > SPARSE_MIN_VERTICES
    targets = jnp.asarray(SPEED_FRACTIONS) * jax.vmap(starting_speed_limit)(scenes)[:, None]   # [B, 5]

    def setup(scene, c, tg, off):
        pts, hun, prog = _path(scene.route, scene.route_valid, off)
        return _path_setup(scene, c, pts, hun, prog, tg, sparse)

    offsets = jnp.asarray(LATERAL_OFFSETS)
    paths = jax.vmap(lambda s, c, tg: jax.vmap(lambda off: setup(s, c, tg, off))(offsets))(scenes, ctx, targets)
    traj = _unroll(scenes, ctx, paths, sparse)                                        # [B, 3, 5, 41, 3]
    return traj.reshape(traj.shape[0], -1, T, 3), ctx


def proposals(scene, ctx=None, sparse=None):
    """:func:`proposals_batch` of one scene -> ([15, 41, 3], ctx)."""
    one = lambda x: x[None]                                                            # noqa: E731
    refs, c = proposals_batch(jax.tree.map(one, scene), None if ctx is None else jax.tree.map(one, ctx), sparse)
    return refs[0], jax.tree.map(lambda x: x[0], c)


def select(m):
    """Index of PDM-Closed's choice from the metrics of its 15 tracked proposals (first argmax of its
    PDM score: EP normalised among the 15, HC = 1, no EC)."""
    multi = m["NC"] * m["DAC"] * m["DDC"] * m["TLC"]
    norm = jnp.max(m["progress"] * multi)
    ep = jnp.where(norm > 5.0, jnp.clip(m["progress"] / jnp.where(norm > 0, norm, 1.0), 0.0, 1.0), 1.0)
    total = multi * (5 * ep + 5 * m["TTC"] + 2 * m["LK"] + 2 * 1.0) / 14.0
    return jnp.argmax(total), total

