"""The Reward World Model's explicit inputs: plan kinematics, the ego's recent dynamics, and plan-vs-scene
geometry from what is observable at t0 (models/reward_model.py feeds them to either RWM architecture).

Decision (the attention over scene tokens does not learn these exact, cheap functions within the tiny
training budget): :func:`kinematic_features` of each plan (finite differences: speed, acceleration, jerk,
yaw rate / acceleration, lateral acceleration, against the ego's current dynamics) for the comfort
scores; the ego's last 1.5 s of dynamics (:func:`ego_inputs`, :func:`ego_summary`); and
:func:`scene_features` (drivable area, route, on-route lanes, red lights, agents' current boxes at
constant velocity; never the logged futures the scorer uses, so the RWM stays a learned, imperfect model
of the environment). Shapes: traj [B, N, 8, 3] poses at 0.5 ... 4.0 s, metres / radians, ego frame at t0.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from irlvla_jax.geometry import EGO_CENTER, EGO_LENGTH, EGO_WIDTH
from irlvla_jax.scoring.sparse import bucket_switch

# Pose normalisation for the trajectory encoder (metres): 4 s at up to ~20 m/s forward.
_POS_SCALE = (40.0, 10.0)  # metres; a tuple, not a device array: nothing may touch a device at import (multi-host)


def pose_features(traj):
    """[..., 8, 3] poses -> [..., 8, 5] features (x/40, y/10, cos h, sin h, t/4)."""
    xy = traj[..., :2] / jnp.asarray(_POS_SCALE, traj.dtype)
    h = traj[..., 2:3]
    t = jnp.broadcast_to((jnp.arange(1, 9, dtype=jnp.float32) / 8.0)[:, None], traj.shape[:-1] + (1,))
    return jnp.concatenate([xy, jnp.cos(h), jnp.sin(h), t], axis=-1)


_DT = 0.5  # seconds between plan poses


def _wrap(a):
    """Angle(s) wrapped to [-pi, pi)."""
    return (a + jnp.pi) % (2.0 * jnp.pi) - jnp.pi


def ego_inputs(scenes):
    """Scene batch -> [B, 16, 7] ego past (-1.5 ... -0.1 s) followed by the current ego state: (x, y, heading,
    vx, vy, ax, ay) with poses in the ego frame at t0 and dynamics in the body frame (scene.py units)."""
    return jnp.concatenate([jnp.asarray(scenes.ego_past, jnp.float32),
                            jnp.asarray(scenes.ego_state, jnp.float32)[..., None, :]], axis=-2)


KINEMATIC_NAMES = ("v_lon", "v_lat", "acc_lon", "jerk_lon", "yaw_rate", "yaw_acc", "acc_lat")
_KIN_SCALE = (10.0, 2.0, 4.0, 8.0, 1.0, 2.0, 5.0)  # rough comfort-bound magnitudes (m/s, m/s^2, ...)


def kinematic_features(traj, ego=None):
    """Finite-difference kinematics of plans, in each segment's own heading frame.

    traj [..., N, 8, 3] poses at 0.5 ... 4.0 s (metres / radians, ego frame at t0; the pose at t = 0 is the
    origin by construction). ``ego`` [..., 16, 7] (:func:`ego_inputs`, leading dims = traj's minus N) or None.
    Returns a dict of [..., N, 8] arrays (SI units), index i describing the segment ending at pose i:
      v_lon, v_lat  mean longitudinal / lateral velocity over segment i (m/s) = velocity at its midpoint
                    (exact for constant acceleration), in the frame of the segment's mean heading;
      yaw_rate      heading change over segment i / 0.5 s (rad/s);
      acc_lon       (v_lon[i] - v_lon[i-1]) / 0.5 s (m/s^2); for i = 0 against the current speed ego vx
                    over 0.25 s (without ``ego``: a constant-acceleration extrapolation, = acc_lon[1]);
      jerk_lon      (acc_lon[i] - acc_lon[i-1]) / 0.5 s (m/s^3); i = 0 against ego ax (else 0);
      yaw_acc       (yaw_rate[i] - yaw_rate[i-1]) / 0.5 s (rad/s^2); i = 0 against the ego's yaw rate
                    over its last 0.1 s of history (else 0);
      acc_lat       v_lon * yaw_rate (m/s^2).
    """
    zero = jnp.zeros(traj.shape[:-2] + (1, 3), traj.dtype)
    p = jnp.concatenate([zero, traj], axis=-2)                                 # [..., N, 9, 3]
    d = p[..., 1:, :] - p[..., :-1, :]
    dh = _wrap(d[..., 2])
    hm = p[..., :-1, 2] + 0.5 * dh
    c, s = jnp.cos(hm), jnp.sin(hm)
    v_lon = (d[..., 0] * c + d[..., 1] * s) / _DT
    v_lat = (-d[..., 0] * s + d[..., 1] * c) / _DT
    yr = dh / _DT
    acc_rest = (v_lon[..., 1:] - v_lon[..., :-1]) / _DT                        # [..., N, 7]
    if ego is None:
        acc0 = acc_rest[..., :1]
        jerk0 = jnp.zeros_like(acc0)
        yacc0 = jnp.zeros_like(acc0)
    else:
        e = ego[..., None, :, :]                                               # [..., 1, 16, 7]
        vx0, ax0 = e[..., -1, 3:4], e[..., -1, 5:6]
        yr0 = _wrap(e[..., -1, 2:3] - e[..., -2, 2:3]) / 0.1
        acc0 = (v_lon[..., :1] - vx0) / (0.5 * _DT)
        jerk0 = (acc0 - ax0) / (0.75 * _DT)
        yacc0 = (yr[..., :1] - yr0) / (0.5 * _DT)
    acc = jnp.concatenate([acc0, acc_rest], axis=-1)
    jerk = jnp.concatenate([jerk0, (acc[..., 1:] - acc[..., :-1]) / _DT], axis=-1)
    yacc = jnp.concatenate([yacc0, (yr[..., 1:] - yr[..., :-1]) / _DT], axis=-1)
    return {"v_lon": v_lon, "v_lat": v_lat, "acc_lon": acc, "jerk_lon": jerk, "yaw_rate": yr,
            "yaw_acc": yacc, "acc_lat": v_lon * yr}


def kinematic_inputs(traj, ego):
    """-> (per-pose features [..., N, 8, 7], per-plan summary [..., N, 10]), scaled to O(1)."""
    k = kinematic_features(traj, ego)
    per = jnp.clip(jnp.stack([k[n] / sc for n, sc in zip(KINEMATIC_NAMES, _KIN_SCALE)], axis=-1), -10.0, 10.0)
    a = k["acc_lon"]
    summ = [jnp.max(a, -1) / 2.4, jnp.min(a, -1) / 4.05, jnp.max(jnp.abs(a), -1) / 4.0,
            jnp.max(jnp.abs(k["jerk_lon"]), -1) / 8.37, jnp.max(jnp.abs(k["yaw_rate"]), -1) / 0.95,
            jnp.max(jnp.abs(k["yaw_acc"]), -1) / 1.93, jnp.max(jnp.abs(k["acc_lat"]), -1) / 4.89,
            jnp.max(jnp.abs(k["v_lat"]), -1) / 2.0, jnp.max(k["v_lon"], -1) / 10.0, jnp.min(k["v_lon"], -1) / 10.0]
    return per, jnp.clip(jnp.stack(summ, -1), -10.0, 10.0)


def ego_summary(ego):
    """[B, 16, 7] -> [B, 35]: (heading, vx, vy, ax, ay) at -1.5, -1.0, -0.5, -0.3, -0.2, -0.1, 0 s, scaled."""
    sel = ego[..., (0, 5, 10, 12, 13, 14, 15), 2:7] / jnp.asarray((0.5, 10.0, 2.0, 3.0, 3.0), ego.dtype)
    return sel.reshape(sel.shape[:-2] + (35,))


_TAN_30 = 0.5773502691896257
SCENE_FEATURE_NAMES = ("corners_off_road", "boundary_dist", "route_lateral", "off_route_lane", "in_red_light",
                       "gap_any", "gap_moving", "gap_ahead", "route_progress", "gap_static")


SCENE_POSE_STRIDES = (1, 2, 4, 8)


def scene_poses(stride: int) -> tuple:
    """Indices of the plan poses the scene geometry is computed at: every ``stride``-th pose ending with the
    last (stride 2: poses 1, 3, 5, 7, i.e. t = 1, 2, 3, 4 s)."""
    if int(stride) not in SCENE_POSE_STRIDES:
        raise ValueError(f"rwm.scene_pose_stride must be one of {SCENE_POSE_STRIDES}, got {stride!r}")
    return tuple(range(int(stride) - 1, 8, int(stride)))


def polygon_buckets(n: int) -> tuple:
    """The static polygon counts :func:`valid_polygons` compacts to: n/8, n/4, n/2, 3n/4, n (rounded up)."""
    return tuple(sorted({max(1, -(-n * k // 8)) for k in (1, 2, 4, 6, 8)}))


def valid_polygons(poly, valid, fn, *per_polygon):
    """``fn(poly [B, k, V, 2], valid [B, k], *per_polygon)`` on the batch's valid polygons only: each scene's
    valid polygons are moved to the front (stable, with ``per_polygon`` arrays [B, n, ...] alongside) and the
    first k kept, k the smallest of :func:`polygon_buckets` >= the batch's largest valid count (a
    ``lax.switch``: the result is exact, only invalid polygons are dropped). Padded maps carry few valid
    polygons (tiny world scenes: 3.6 of 16 drivable areas, 2.9 of 32 on-route lanes), so most of the
    point-in-polygon work on padding is skipped."""
    order = jnp.argsort(~valid, axis=1, stable=True)
    take = lambda a: jnp.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), 1)  # noqa: E731
    args = (take(poly), take(valid)) + tuple(take(a) for a in per_polygon)
    sizes = polygon_buckets(poly.shape[1])
    return bucket_switch(jnp.max(jnp.sum(valid, 1)), sizes,
                         [lambda *a, n=n: fn(*(x[:, :n] for x in a)) for n in sizes], *args)


def scene_features(scenes, traj, stride: int = 1):
    """Per-pose plan-vs-scene geometry from what is observable at t0 (map, route, lights, agents' current
    boxes and velocities extrapolated at constant velocity; never the agents' logged futures).

    scenes: Scene batch [B]; traj [B, N, 8, 3] (metres / radians, ego frame at t0); ``stride``: the geometry
    is computed at the poses :func:`scene_poses` (``stride`` 1: all 8; the cost is linear in their number
    P = 8 / stride). Returns [B, N, P, 10] (order of ``SCENE_FEATURE_NAMES``), each O(1):
      corners_off_road  fraction of the ego box's 4 corners outside every drivable polygon (DAC);
      boundary_dist     box-centre distance to the nearest drivable edge / 5 m, negative off-road, in [-1, 1];
      route_lateral     signed lateral offset of the box centre from the route centerline / 2 m, in [-3, 3] (LK);
      off_route_lane    1 if the box centre is in no on-route lane polygon (oncoming, DDC);
      in_red_light      1 if the box centre is in an on-route light polygon that is red then (TLC);
      gap_any / gap_moving / gap_ahead / gap_static  separation (m, / 5, in [-1, 3]) between the ego box and
                        the nearest agent box (all / non-static / ahead within 30 deg of the pose heading /
                        static objects) by axis-aligned extents in the pose frame (<= 0: overlap) (NC, TTC);
      route_progress    arc length along the route of the box centre minus that at t0, / 40 m, in [-1, 3] (EP).
    """
    from irlvla_jax import geometry as G
    poses = scene_poses(stride)
    traj = traj[:, :, poses[0]::int(stride)]
    B, N, P = traj.shape[:3]
    f32 = jnp.float32
    h = traj[..., 2]
    ctr = traj[..., :2] + EGO_CENTER * jnp.stack([jnp.cos(h), jnp.sin(h)], -1)           # [B, N, P, 2]
    corners = G.box_corners(ctr, h, jnp.full_like(h, EGO_LENGTH), jnp.full_like(h, EGO_WIDTH))  # [B,N,P,4,2]
    pin = lambda p, poly: G.points_in_polygon(p, poly, points_minor=True)  # noqa: E731  many points, few polygons
    pc = ctr.reshape(B, 1, -1, 2)                                                          # [B, 1, N*P, 2]

    def drivable(poly, val):                                       # DAC: corners in any; centre depth
        cin = jnp.any(pin(corners.reshape(B, 1, -1, 2), poly) & val[..., None], 1)      # [B, N*P*4]
        inside = jnp.any(pin(pc, poly) & val[..., None], 1)                              # [B, N*P]
        dist = jnp.min(jnp.where(val[..., None], G.points_to_edges_distance(pc, poly), 1e3), 1)
        return cin, inside, dist

    cin, inside, dist = valid_polygons(jnp.asarray(scenes.drivable_polygons, f32),
                                       jnp.asarray(scenes.drivable_valid, bool), drivable)
    off = 1.0 - cin.reshape(B, N, P, 4).astype(f32).mean(-1)
    bdist = jnp.clip(jnp.where(inside, dist, -dist) / 5.0, -1.0, 1.0).reshape(B, N, P)
    # Route centerline.
    route = jnp.asarray(scenes.route, f32)
    arc, lat, _ = G.project_to_polyline(ctr.reshape(B, -1, 2), route)
    lat = jnp.clip(lat / 2.0, -3.0, 3.0).reshape(B, N, P)
    arc0, _, _ = G.project_to_polyline(jnp.broadcast_to(jnp.asarray([[EGO_CENTER, 0.0]], f32), (B, 1, 2)), route)
    prog = jnp.clip((arc - arc0) / 40.0, -1.0, 3.0).reshape(B, N, P)
    # On-route lanes.
    in_lane = valid_polygons(jnp.asarray(scenes.lane_polygons, f32),
                             jnp.asarray(scenes.lane_valid, bool) & jnp.asarray(scenes.lane_on_route, bool),
                             lambda poly, val: jnp.any(pin(pc, poly) & val[..., None], 1))
    off_lane = 1.0 - in_lane.astype(f32).reshape(B, N, P)
    # Red lights on the route: pose i (t = 0.5 (i + 1) s) uses 2 Hz sample i + 1.
    red = jnp.asarray(scenes.light_red, bool)[:, :, poses[0] + 1:9:int(stride)]            # [B, S, P]
    in_red = valid_polygons(
        jnp.asarray(scenes.light_polygons, f32), jnp.asarray(scenes.light_valid, bool) & jnp.asarray(scenes.light_on_route, bool),
        lambda poly, val, red: jnp.any(pin(pc, poly).reshape(B, -1, N, P) & (red & val[..., None])[:, :, None], 1),
        red).astype(f32)
    # Agents at t0, constant velocity.
    gaps = agent_gaps(scenes, ctr, h, poses)
    return jnp.stack([off, bdist, lat, off_lane, in_red, gaps[0], gaps[1], gaps[2], prog, gaps[3]], -1)


def agent_gaps(scenes, ctr, h, poses):
    """(gap_any, gap_moving, gap_ahead, gap_static) [B, N, P] of :func:`scene_features` for ego-box centres
    ``ctr [B, N, P, 2]`` and headings ``h [B, N, P]`` at the plan poses ``poses``. A loop over the agents
    (``lax.scan``, 4 per iteration) keeps every array [B, N, P] with running masked minima: on 2 CPU cores
    about 10x faster than one [B, N, P, A] array reduced over A (XLA:CPU vectorises the contiguous
    elementwise steps, not the broadcast-indexed ones), the same values."""
    f32 = jnp.float32
    box0 = jnp.asarray(scenes.agent_boxes, f32)[:, :, 0]                                  # [B, A, 5]
    vel0 = jnp.asarray(scenes.agent_velocity, f32)[:, :, 0]                               # [B, A, 2]
    aval = jnp.asarray(scenes.agent_valid, bool)[:, :, 0]
    static = jnp.asarray(scenes.agent_type) == 3
    moving = aval & ~static & (jnp.linalg.norm(vel0, axis=-1) > 0.05)
    t = (jnp.asarray(poses, f32) + 1.0) * 0.5                                              # [P] seconds
    c, s_ = jnp.cos(h), jnp.sin(h)
    cx, cy = ctr[..., 0], ctr[..., 1]
    agents = dict(x=box0[..., 0], y=box0[..., 1], vx=vel0[..., 0], vy=vel0[..., 1], hl=0.5 * box0[..., 3],
                  hw=0.5 * box0[..., 4], ca=jnp.cos(box0[..., 2]), sa=jnp.sin(box0[..., 2]),
                  any=aval, moving=moving, static=aval & static)
    agents = jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0)[:, :, None, None], agents)      # [A, B, 1, 1]

    def step(mins, a):
        rx, ry = a["x"] + a["vx"] * t - cx, a["y"] + a["vy"] * t - cy                    # [B, N, P]
        dx, dy = rx * c + ry * s_, -rx * s_ + ry * c
        # cos / sin of (agent heading - pose heading) by the difference identities: no per-pair trigonometry.
        cdh, sdh = jnp.abs(a["ca"] * c + a["sa"] * s_), jnp.abs(a["sa"] * c - a["ca"] * s_)
        ex, ey = a["hl"] * cdh + a["hw"] * sdh, a["hl"] * sdh + a["hw"] * cdh
        gap = jnp.maximum(jnp.abs(dx) - 0.5 * EGO_LENGTH - ex, jnp.abs(dy) - 0.5 * EGO_WIDTH - ey)
        ahead = (dx > 0) & (jnp.abs(dy) < _TAN_30 * dx)                # bearing within 30 deg of the heading
        masks = (a["any"], a["moving"], a["any"] & ahead, a["static"])
        return tuple(jnp.where(m, jnp.minimum(g, gap), g) for g, m in zip(mins, masks)), None

    big = 15.0                                                          # metres: no agent (before / 5 m, clip)
    mins, _ = jax.lax.scan(step, tuple(jnp.full(h.shape, big, f32) for _ in range(4)), agents, unroll=4)
    return tuple(jnp.clip(g / 5.0, -1.0, 3.0) for g in mins)


def scene_summary(sf):
    """[B, N, P, 10] scene features -> [B, N, 10] per-plan extremes (the sub-scores are min/any over time)."""
    return jnp.stack([jnp.max(sf[..., 0], -1), jnp.min(sf[..., 1], -1), jnp.max(jnp.abs(sf[..., 2]), -1),
                      jnp.mean((jnp.abs(sf[..., 2]) > 0.25).astype(sf.dtype), -1), jnp.max(sf[..., 3], -1),
                      jnp.max(sf[..., 4], -1), jnp.min(sf[..., 5], -1), jnp.min(sf[..., 7], -1),
                      sf[..., -1, 8], jnp.min(sf[..., 9], -1)], -1)
