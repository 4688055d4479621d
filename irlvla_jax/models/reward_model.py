"""Reward World Model (RWM): scene tokens + candidate trajectories -> the 9 EPDMS sub-scores -> reward.

IRL-VLA's "inverse environment learning": instead of querying the rule-based EPDMS scorer during RL, a
learned model predicts each sub-score from the VLA's scene tokens and a candidate plan, and the reward is
the EPDMS formula applied to the predicted *expectations*.

Shapes (B scenes, N candidates per scene, D model width, Dt the VLA token width):
  tokens     any object with ``meta [B,Nm,Dt]``, ``bev [B,Nb,Dt]``, ``map [B,Nmap,Dt]``, ``obj [B,No,Dt]``
             and optionally ``cmd [B,1,Dt]`` (the VLA's ``SceneTokens``; a dict with these keys works too).
  traj       [B, N, 8, 3] poses (x, y, heading) at 0.5 ... 4.0 s, metres / radians, ego frame at t0.
  scenes     the [B] Scene batch the tokens were encoded from (needed with ``rwm.ego_features`` or
             ``rwm.scene_features``: ``model(tokens, traj, scenes=batch)``).
  outputs    :class:`RWMOutput`, every field [B, N, ...].

Explicit inputs besides the tokens (decision: the attention over scene tokens does not learn these
exact, cheap functions within the tiny training budget): :func:`kinematic_features` of each plan
(finite differences: speed, acceleration, jerk, yaw rate / acceleration, lateral acceleration, against
the ego's current dynamics) for the comfort scores; the ego's last 1.5 s of dynamics; and
:func:`scene_features`, plan-vs-scene geometry from what is observable at t0 (drivable area, route,
on-route lanes, red lights, agents' current boxes at constant velocity; never the logged futures that the
scorer uses, so the RWM stays a learned, imperfect model of the environment).

Architecture: a trajectory encoder turns the 8 poses into 8 tokens (+ a learned summary token) with
learned time embeddings; ``num_layers`` blocks each do self-attention within one candidate's tokens, then
cross-attention to the scene's meta (+cmd), BEV, map and object tokens in that order, then an FFN
(pre-LayerNorm residual blocks). Cross-attention flattens the N candidates' tokens into one query axis
per scene, so the scene tokens are never copied N times. Heads read the summary token:
NC and DDC 3-way over {0, 1/2, 1}; DAC, TLC, TTC, LK, HC, EC binary; EP regression in [0, 1] (sigmoid).

Reward = E[NC] E[DAC] E[DDC] E[TLC] (5 E[EP] + 5 E[TTC] + 2 E[LK] + 2 E[HC] (+ 2 E[EC])) / 16 (or / 14
without EC, the case when no previous-frame plan exists; shared/EPDMS.md). Using expectations keeps the
reward smooth in the logits; it is not the expectation of EPDMS (the sub-scores are not independent).

Decision vs DESIGN.md §5: the scene tokens are projected to the RWM's own width (``rwm.d_model``) so the
RWM can be narrower than the VLA; in stages 2 and 3 the tokens come from the IL checkpoint's
encoder under ``stop_gradient``.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

ARCHS = ("transformer", "light")
SUB_SCORES = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC")
TERNARY = ("NC", "DDC")
BINARY = ("DAC", "TLC", "TTC", "LK", "HC", "EC")
TERNARY_VALUES = (0.0, 0.5, 1.0)
# Output layout of the head: NC(3) DDC(3) DAC TLC TTC LK HC EC EP
_HEAD_DIM = 3 + 3 + len(BINARY) + 1

# Pose normalisation for the trajectory encoder (metres): 4 s at up to ~20 m/s forward.
_POS_SCALE = (40.0, 10.0)  # metres; a tuple, not a device array: nothing may touch a device at import (multi-host)


@struct.dataclass
class RWMOutput:
    """Raw predictions for [B, N] candidates.

    ternary_logits  {"NC": [B,N,3], "DDC": [B,N,3]} over values (0, 1/2, 1).
    binary_logits   {"DAC","TLC","TTC","LK","HC","EC": [B,N]} logit of the sub-score being 1.
    ep              [B, N] predicted ego progress in [0, 1].
    """
    ternary_logits: Dict[str, Any]
    binary_logits: Dict[str, Any]
    ep: Any


def token_groups(tokens) -> tuple:
    """(meta(+cmd), bev, map, obj) arrays [B, n, Dt] from a SceneTokens-like object or dict."""
    get = (lambda k: tokens.get(k)) if isinstance(tokens, dict) else (lambda k: getattr(tokens, k, None))
    groups = []
    for k in ("meta", "bev", "map", "obj"):
        v = get(k)
        if v is None:
            raise ValueError(f"scene tokens lack field '{k}' (need meta, bev, map, obj [B, n, D])")
        if v.ndim != 3:
            raise ValueError(f"scene tokens field '{k}': expected [B, n, D], found shape {v.shape}")
        groups.append(v)
    cmd = get("cmd")
    if cmd is not None:
        groups[0] = jnp.concatenate([groups[0], cmd], axis=1)
    return tuple(groups)


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


def _kin_inputs(traj, ego):
    """-> (per-pose features [..., N, 8, 7], per-plan summary [..., N, 10]), scaled to O(1)."""
    k = kinematic_features(traj, ego)
    per = jnp.clip(jnp.stack([k[n] / sc for n, sc in zip(KINEMATIC_NAMES, _KIN_SCALE)], axis=-1), -10.0, 10.0)
    a = k["acc_lon"]
    summ = [jnp.max(a, -1) / 2.4, jnp.min(a, -1) / 4.05, jnp.max(jnp.abs(a), -1) / 4.0,
            jnp.max(jnp.abs(k["jerk_lon"]), -1) / 8.37, jnp.max(jnp.abs(k["yaw_rate"]), -1) / 0.95,
            jnp.max(jnp.abs(k["yaw_acc"]), -1) / 1.93, jnp.max(jnp.abs(k["acc_lat"]), -1) / 4.89,
            jnp.max(jnp.abs(k["v_lat"]), -1) / 2.0, jnp.max(k["v_lon"], -1) / 10.0, jnp.min(k["v_lon"], -1) / 10.0]
    return per, jnp.clip(jnp.stack(summ, -1), -10.0, 10.0)


def _ego_summary(ego):
    """[B, 16, 7] -> [B, 35]: (heading, vx, vy, ax, ay) at -1.5, -1.0, -0.5, -0.3, -0.2, -0.1, 0 s, scaled."""
    sel = ego[..., (0, 5, 10, 12, 13, 14, 15), 2:7] / jnp.asarray((0.5, 10.0, 2.0, 3.0, 3.0), ego.dtype)
    return sel.reshape(sel.shape[:-2] + (35,))


# Ego box (shared/EPDMS.md): length, width, centre ahead of the rear axle (metres).
_EGO_LEN, _EGO_WID, _EGO_CENTRE = 5.176, 2.297, 1.461
SCENE_FEATURE_NAMES = ("corners_off_road", "boundary_dist", "route_lateral", "off_route_lane", "in_red_light",
                       "gap_any", "gap_moving", "gap_ahead", "route_progress", "gap_static")


def scene_features(scenes, traj):
    """Per-pose plan-vs-scene geometry from what is observable at t0 (map, route, lights, agents' current
    boxes and velocities extrapolated at constant velocity; never the agents' logged futures).

    scenes: Scene batch [B]; traj [B, N, 8, 3] (metres / radians, ego frame at t0). Returns [B, N, 8, 10]
    (order of ``SCENE_FEATURE_NAMES``), each O(1):
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
    B, N = traj.shape[:2]
    f32 = jnp.float32
    h = traj[..., 2]
    ctr = traj[..., :2] + _EGO_CENTRE * jnp.stack([jnp.cos(h), jnp.sin(h)], -1)           # [B, N, 8, 2]
    corners = G.box_corners(ctr, h, jnp.full_like(h, _EGO_LEN), jnp.full_like(h, _EGO_WID))  # [B,N,8,4,2]
    # Drivable area.
    dpoly = jnp.asarray(scenes.drivable_polygons, f32)                                   # [B, G, V, 2]
    dval = jnp.asarray(scenes.drivable_valid, bool)
    cin = G.points_in_polygon(corners.reshape(B, 1, -1, 2), dpoly) & dval[..., None]      # [B, G, N*8*4]
    off = 1.0 - jnp.any(cin, 1).reshape(B, N, 8, 4).astype(f32).mean(-1)
    pc = ctr.reshape(B, 1, -1, 2)
    inside = jnp.any(G.points_in_polygon(pc, dpoly) & dval[..., None], 1)                 # [B, N*8]
    dist = jnp.min(jnp.where(dval[..., None], G.points_to_edges_distance(pc, dpoly), 1e3), 1)
    bdist = jnp.clip(jnp.where(inside, dist, -dist) / 5.0, -1.0, 1.0).reshape(B, N, 8)
    # Route centerline.
    route = jnp.asarray(scenes.route, f32)
    arc, lat, _ = G.project_to_polyline(ctr.reshape(B, -1, 2), route)
    lat = jnp.clip(lat / 2.0, -3.0, 3.0).reshape(B, N, 8)
    arc0, _, _ = G.project_to_polyline(jnp.broadcast_to(jnp.asarray([[_EGO_CENTRE, 0.0]], f32), (B, 1, 2)), route)
    prog = jnp.clip((arc - arc0) / 40.0, -1.0, 3.0).reshape(B, N, 8)
    # On-route lanes.
    lval = jnp.asarray(scenes.lane_valid, bool) & jnp.asarray(scenes.lane_on_route, bool)
    inl = G.points_in_polygon(pc, jnp.asarray(scenes.lane_polygons, f32)) & lval[..., None]
    off_lane = 1.0 - jnp.any(inl, 1).astype(f32).reshape(B, N, 8)
    # Red lights on the route: pose i (t = 0.5 (i + 1) s) uses 2 Hz sample i + 1.
    sval = jnp.asarray(scenes.light_valid, bool) & jnp.asarray(scenes.light_on_route, bool)
    ins = G.points_in_polygon(pc, jnp.asarray(scenes.light_polygons, f32)).reshape(B, -1, N, 8)  # [B, S, N, 8]
    red = jnp.asarray(scenes.light_red, bool)[:, :, 1:9] & sval[..., None]               # [B, S, 8]
    in_red = jnp.any(ins & red[:, :, None, :], 1).astype(f32)
    # Agents at t0, constant velocity.
    box0 = jnp.asarray(scenes.agent_boxes, f32)[:, :, 0]                                  # [B, A, 5]
    vel0 = jnp.asarray(scenes.agent_velocity, f32)[:, :, 0]                               # [B, A, 2]
    aval = jnp.asarray(scenes.agent_valid, bool)[:, :, 0]
    static = jnp.asarray(scenes.agent_type) == 3
    moving = aval & ~static & (jnp.linalg.norm(vel0, axis=-1) > 0.05)
    t = jnp.arange(1, 9, dtype=f32) * 0.5
    apos = box0[:, None, :, :2] + vel0[:, None] * t[None, :, None, None]                   # [B, 8, A, 2]
    rel = apos[:, None] - ctr[:, :, :, None]                                               # [B, N, 8, A, 2]
    c, s_ = jnp.cos(h)[..., None], jnp.sin(h)[..., None]
    dx = rel[..., 0] * c + rel[..., 1] * s_
    dy = -rel[..., 0] * s_ + rel[..., 1] * c
    dh = box0[:, None, None, :, 2] - h[..., None]
    hl, hw = 0.5 * box0[:, None, None, :, 3], 0.5 * box0[:, None, None, :, 4]
    ex = jnp.abs(hl * jnp.cos(dh)) + jnp.abs(hw * jnp.sin(dh))
    ey = jnp.abs(hl * jnp.sin(dh)) + jnp.abs(hw * jnp.cos(dh))
    gap = jnp.maximum(jnp.abs(dx) - 0.5 * _EGO_LEN - ex, jnp.abs(dy) - 0.5 * _EGO_WID - ey)  # [B, N, 8, A]
    ahead = (dx > 0) & (jnp.abs(jnp.arctan2(dy, jnp.maximum(dx, 1e-6))) < jnp.deg2rad(30.0))
    big = 15.0
    mg = lambda m: jnp.clip(jnp.min(jnp.where(m, gap, big), -1) / 5.0, -1.0, 3.0)  # noqa: E731
    av = aval[:, None, None, :]
    return jnp.stack([off, bdist, lat, off_lane, in_red, mg(av), mg(av & moving[:, None, None, :]),
                      mg(av & ahead), prog, mg(av & static[:, None, None, :])], -1)


def _scene_summary(sf):
    """[B, N, 8, 10] scene features -> [B, N, 10] per-plan extremes (the sub-scores are min/any over time)."""
    return jnp.stack([jnp.max(sf[..., 0], -1), jnp.min(sf[..., 1], -1), jnp.max(jnp.abs(sf[..., 2]), -1),
                      jnp.mean((jnp.abs(sf[..., 2]) > 0.25).astype(sf.dtype), -1), jnp.max(sf[..., 3], -1),
                      jnp.max(sf[..., 4], -1), jnp.min(sf[..., 5], -1), jnp.min(sf[..., 7], -1),
                      sf[..., -1, 8], jnp.min(sf[..., 9], -1)], -1)


class _Block(nnx.Module):
    """Self-attention per candidate, cross-attention to 4 token groups in order, FFN (pre-LN)."""

    def __init__(self, d: int, heads: int, ff: int, rngs: nnx.Rngs):
        self.ln_self = nnx.LayerNorm(d, rngs=rngs)
        self.self_attn = nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs)
        self.ln_q = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(4)])
        self.ln_kv = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(4)])
        self.cross = nnx.List([nnx.MultiHeadAttention(heads, d, decode=False, rngs=rngs) for _ in range(4)])
        self.ln_ff = nnx.LayerNorm(d, rngs=rngs)
        self.ff1 = nnx.Linear(d, ff, rngs=rngs)
        self.ff2 = nnx.Linear(ff, d, rngs=rngs)

    def __call__(self, h, groups):
        """h [B, N, S, d] candidate tokens; groups: 4 arrays [B, n_i, d]."""
        B, N, S, d = h.shape
        x = self.ln_self(h).reshape(B * N, S, d)
        h = h + self.self_attn(x, x, x).reshape(B, N, S, d)
        for i, kv in enumerate(groups):
            q = self.ln_q[i](h).reshape(B, N * S, d)
            kvn = self.ln_kv[i](kv)
            h = h + self.cross[i](q, kvn, kvn).reshape(B, N, S, d)
        return h + self.ff2(jax.nn.gelu(self.ff1(self.ln_ff(h))))


class RewardWorldModel(nnx.Module):
    """RWM(cfg, token_dim, rngs); ``model(tokens, traj, scenes=None) -> RWMOutput``.

    cfg: ``d_model``, ``num_layers``, ``num_heads``, ``ff_mult`` (config section ``rwm``), and optionally
    ``kinematic_features`` (bool: feed :func:`kinematic_features` of each plan to the trajectory encoder),
    ``ego_features`` (bool: the ego's recent past and current dynamics, which history comfort depends on)
    and ``scene_features`` (bool: :func:`scene_features`, plan-vs-map/agents geometry at t0). With either
    of the last two the model needs ``scenes``, the [B] Scene batch the tokens were encoded from.
    token_dim: width Dt of the VLA's scene tokens.
    """

    def __init__(self, cfg, token_dim: int, *, rngs: nnx.Rngs):
        d = int(cfg.d_model)
        self.d = d
        self.use_kin = bool(cfg.get("kinematic_features", False))
        self.use_ego = bool(cfg.get("ego_features", False))
        self.use_scene = bool(cfg.get("scene_features", False))
        self.tok_proj = nnx.List([nnx.Linear(token_dim, d, rngs=rngs) for _ in range(4)])
        n_in = 5 + (len(KINEMATIC_NAMES) if self.use_kin else 0) + (len(SCENE_FEATURE_NAMES) if self.use_scene else 0)
        self.pose_in = nnx.Linear(n_in, d, rngs=rngs)
        self.pose_hidden = nnx.Linear(d, d, rngs=rngs)
        if self.use_kin:
            self.kin_in = nnx.Linear(10 + (10 if self.use_scene else 0), d, rngs=rngs)
            self.kin_hidden = nnx.Linear(d, d, rngs=rngs)
        if self.use_ego:
            self.ego_in = nnx.Linear(35, d, rngs=rngs)
            self.ego_hidden = nnx.Linear(d, d, rngs=rngs)
        self.time_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (8, d)))
        self.summary = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, d)))
        self.blocks = nnx.List([_Block(d, int(cfg.num_heads), int(cfg.ff_mult) * d, rngs)
                                for _ in range(int(cfg.num_layers))])
        self.ln_out = nnx.LayerNorm(d, rngs=rngs)
        self.head_hidden = nnx.Linear(d, d, rngs=rngs)
        self.head = nnx.Linear(d, _HEAD_DIM, rngs=rngs)

    def __call__(self, tokens, traj, scenes=None) -> RWMOutput:
        if traj.ndim != 4 or traj.shape[-2:] != (8, 3):
            raise ValueError(f"RWM trajectories: expected [B, N, 8, 3] (x, y, heading), found {traj.shape}")
        groups = [p(g) for p, g in zip(self.tok_proj, token_groups(tokens))]
        if groups[0].shape[0] != traj.shape[0]:
            raise ValueError(f"RWM: tokens have batch {groups[0].shape[0]} but trajectories {traj.shape[0]}")
        B, N = traj.shape[:2]
        ego = None
        if self.use_ego or self.use_scene:
            if scenes is None:
                raise ValueError("RWM was built with rwm.ego_features / rwm.scene_features: call it as "
                                 "model(tokens, traj, scenes=<the Scene batch the tokens come from>)")
            if int(jnp.shape(scenes.ego_state)[0]) != B:
                raise ValueError(f"RWM scenes: batch {jnp.shape(scenes.ego_state)[0]} but trajectories {B}")
            if self.use_ego:
                ego = ego_inputs(scenes)
        feats = pose_features(traj)
        if self.use_kin:
            per, summ = _kin_inputs(traj, ego)
            feats = jnp.concatenate([feats, per], axis=-1)
        if self.use_scene:
            sf = scene_features(scenes, traj)
            feats = jnp.concatenate([feats, sf], axis=-1)
            if self.use_kin:
                summ = jnp.concatenate([summ, _scene_summary(sf)], axis=-1)
        e = self.pose_hidden(jax.nn.gelu(self.pose_in(feats))) + self.time_emb[...]
        s = jnp.broadcast_to(self.summary[...], (B, N, 1, self.d))
        if self.use_kin:
            s = s + self.kin_hidden(jax.nn.gelu(self.kin_in(summ)))[:, :, None]
        h = jnp.concatenate([s, e], axis=2)  # [B, N, 9, d]
        if self.use_ego:
            h = h + self.ego_hidden(jax.nn.gelu(self.ego_in(_ego_summary(ego))))[:, None, None]
        for blk in self.blocks:
            h = blk(h, groups)
        out = self.head(jax.nn.gelu(self.head_hidden(self.ln_out(h[:, :, 0]))))  # [B, N, 13]
        tern = {"NC": out[..., 0:3], "DDC": out[..., 3:6]}
        binl = {k: out[..., 6 + i] for i, k in enumerate(BINARY)}
        return RWMOutput(ternary_logits=tern, binary_logits=binl, ep=jax.nn.sigmoid(out[..., -1]))


class LightRewardWorldModel(nnx.Module):
    """The lightweight RWM (``rwm.arch = "light"``): the scene is encoded once per scene, each trajectory
    goes through a small head. Same inputs, outputs and call as :class:`RewardWorldModel`.

    Scene (once per scene): the meta(+cmd), BEV, map and object tokens are projected to ``d_model``
    and turned into attention keys / values [B, n, d]. Trajectory (per candidate, one token): the
    flattened per-pose features (pose, kinematics, plan-vs-scene geometry of :func:`scene_features`)
    and their per-plan summaries -> MLP -> token [B, N, d]; ``num_layers`` x (one multi-head
    cross-attention of that token to the scene keys / values, an FFN); the 13-way head. Per
    trajectory that is about 10x fewer multiply-adds than the transformer RWM (which self-attends over
    9 tokens per candidate and cross-attends 4 token groups per layer); the plan-vs-scene geometry is
    the same."""

    def __init__(self, cfg, token_dim: int, *, rngs: nnx.Rngs):
        d = int(cfg.d_model)
        self.d, self.heads = d, int(cfg.num_heads)
        self.use_kin = bool(cfg.get("kinematic_features", False))
        self.use_ego = bool(cfg.get("ego_features", False))
        self.use_scene = bool(cfg.get("scene_features", False))
        n_pose = 5 + (len(KINEMATIC_NAMES) if self.use_kin else 0) + (len(SCENE_FEATURE_NAMES) if self.use_scene else 0)
        n_in = 8 * n_pose + (10 if self.use_kin else 0) + (10 if self.use_kin and self.use_scene else 0)
        self.tok_proj = nnx.Linear(token_dim, d, rngs=rngs)
        self.kv = nnx.List([nnx.Linear(d, 2 * d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.traj_in = nnx.Linear(n_in, 2 * d, rngs=rngs)
        self.traj_hidden = nnx.Linear(2 * d, d, rngs=rngs)
        if self.use_ego:
            self.ego_in = nnx.Linear(35, d, rngs=rngs)
        self.ln_q = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.q = nnx.List([nnx.Linear(d, d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.o = nnx.List([nnx.Linear(d, d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.ln_ff = nnx.List([nnx.LayerNorm(d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.ff1 = nnx.List([nnx.Linear(d, int(cfg.ff_mult) * d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.ff2 = nnx.List([nnx.Linear(int(cfg.ff_mult) * d, d, rngs=rngs) for _ in range(int(cfg.num_layers))])
        self.ln_out = nnx.LayerNorm(d, rngs=rngs)
        self.head_hidden = nnx.Linear(d, d, rngs=rngs)
        self.head = nnx.Linear(d, _HEAD_DIM, rngs=rngs)

    def __call__(self, tokens, traj, scenes=None) -> RWMOutput:
        if traj.ndim != 4 or traj.shape[-2:] != (8, 3):
            raise ValueError(f"RWM trajectories: expected [B, N, 8, 3] (x, y, heading), found {traj.shape}")
        ctx = self.tok_proj(jnp.concatenate(token_groups(tokens), axis=1))           # [B, n, d] (once)
        B, N = traj.shape[:2]
        if ctx.shape[0] != B:
            raise ValueError(f"RWM: tokens have batch {ctx.shape[0]} but trajectories {B}")
        if (self.use_ego or self.use_scene) and scenes is None:
            raise ValueError("RWM was built with rwm.ego_features / rwm.scene_features: call it as "
                             "model(tokens, traj, scenes=<the Scene batch the tokens come from>)")
        if scenes is not None and (self.use_ego or self.use_scene) and int(jnp.shape(scenes.ego_state)[0]) != B:
            raise ValueError(f"RWM scenes: batch {jnp.shape(scenes.ego_state)[0]} but trajectories {B}")
        ego = ego_inputs(scenes) if self.use_ego else None
        feats, summ = pose_features(traj), []
        if self.use_kin:
            per, ks = _kin_inputs(traj, ego)
            feats = jnp.concatenate([feats, per], axis=-1)
            summ.append(ks)
        if self.use_scene:
            sf = scene_features(scenes, traj)
            feats = jnp.concatenate([feats, sf], axis=-1)
            if self.use_kin:
                summ.append(_scene_summary(sf))
        x = jnp.concatenate([feats.reshape(B, N, -1)] + summ, axis=-1)
        h = self.traj_hidden(jax.nn.gelu(self.traj_in(x)))                           # [B, N, d]
        if self.use_ego:
            h = h + self.ego_in(_ego_summary(ego))[:, None]
        H, dh = self.heads, self.d // self.heads
        for i in range(len(self.q)):
            k, v = jnp.split(self.kv[i](ctx), 2, -1)                                 # per scene
            k, v = k.reshape(B, -1, H, dh), v.reshape(B, -1, H, dh)
            q = self.q[i](self.ln_q[i](h)).reshape(B, N, H, dh)
            a = jax.nn.softmax(jnp.einsum("bnhc,bmhc->bnhm", q, k) / jnp.sqrt(float(dh)), -1)
            h = h + self.o[i](jnp.einsum("bnhm,bmhc->bnhc", a, v).reshape(B, N, self.d))
            h = h + self.ff2[i](jax.nn.gelu(self.ff1[i](self.ln_ff[i](h))))
        out = self.head(jax.nn.gelu(self.head_hidden(self.ln_out(h))))               # [B, N, 13]
        tern = {"NC": out[..., 0:3], "DDC": out[..., 3:6]}
        binl = {k: out[..., 6 + i] for i, k in enumerate(BINARY)}
        return RWMOutput(ternary_logits=tern, binary_logits=binl, ep=jax.nn.sigmoid(out[..., -1]))


def build(cfg, token_dim: int, *, rngs: nnx.Rngs):
    """The RWM named by ``cfg.arch``: "transformer" (:class:`RewardWorldModel`) or "light"
    (:class:`LightRewardWorldModel`)."""
    arch = str(cfg.get("arch", "transformer"))
    if arch not in ARCHS:
        raise ValueError(f"config.rwm.arch must be one of {ARCHS}, got {arch!r}")
    return (LightRewardWorldModel if arch == "light" else RewardWorldModel)(cfg, token_dim, rngs=rngs)


def expectations(out: RWMOutput) -> Dict[str, Any]:
    """Predicted expected value of every sub-score, each [B, N] in [0, 1]."""
    vals = jnp.asarray(TERNARY_VALUES)
    e = {k: jnp.sum(jax.nn.softmax(out.ternary_logits[k], -1) * vals, -1) for k in TERNARY}
    e.update({k: jax.nn.sigmoid(out.binary_logits[k]) for k in BINARY})
    e["EP"] = out.ep
    return e


def epdms_formula(s: Dict[str, Any], use_ec: bool):
    """EPDMS from (expected or true) sub-scores: NC·DAC·DDC·TLC·(5EP+5TTC+2LK+2HC(+2EC))/16 (or /14)."""
    weighted = 5.0 * s["EP"] + 5.0 * s["TTC"] + 2.0 * s["LK"] + 2.0 * s["HC"]
    if use_ec:
        weighted = (weighted + 2.0 * s["EC"]) / 16.0
    else:
        weighted = weighted / 14.0
    return s["NC"] * s["DAC"] * s["DDC"] * s["TLC"] * weighted


def predicted_reward(out: RWMOutput, use_ec: bool):
    """[B, N] reward: the EPDMS formula on the predicted expectations."""
    return epdms_formula(expectations(out), use_ec)


def ternary_index(v):
    """{0, 1/2, 1} sub-score values -> class ids {0, 1, 2} (nearest)."""
    return jnp.clip(jnp.round(v * 2.0), 0, 2).astype(jnp.int32)


def pairwise_rank_loss(pred, true, *, scale: float = 10.0, min_gap: float = 0.02, pair_weight=None):
    """Within-scene pairwise logistic ranking loss on the predicted reward.

    pred, true [B, N]; over every ordered pair (i, j) of one scene's candidates with true_i > true_j + min_gap,
    softplus(-scale (pred_i - pred_j)) weighted by (true_i - true_j) (x ``pair_weight`` [N, N] if given);
    returns the weighted mean (0 when no pair qualifies).
    """
    dt = true[:, :, None] - true[:, None, :]
    w = jnp.where(dt > min_gap, dt, 0.0)
    if pair_weight is not None:
        w = w * pair_weight
    l = jax.nn.softplus(-scale * (pred[:, :, None] - pred[:, None, :]))
    return jnp.sum(w * l) / jnp.maximum(jnp.sum(w), 1e-6)


def rwm_losses(out: RWMOutput, labels: Dict[str, Any], true_epdms, *, use_ec: bool,
               epdms_weight: float = 1.0, weight=None, rank_weight: float = 0.0, rank_scale: float = 10.0,
               pair_weight=None) -> Dict[str, Any]:
    """Per-head losses against scorer labels (each label [B, N]); returns a dict with 'total'.

    CE for NC/DDC, BCE for the binary heads (EC only when ``use_ec``), BCE with a soft target for EP
    (a proper regression loss on [0, 1]), plus ``epdms_weight`` x squared error of the predicted reward
    vs the true EPDMS (it aligns the ranking of candidates with the score actually used), plus
    ``rank_weight`` x :func:`pairwise_rank_loss` of the predicted reward within each scene (``pair_weight``
    [N, N] weights candidate pairs). ``weight`` [B, N] optionally masks candidates (not the ranking term).
    """
    w = jnp.ones_like(true_epdms) if weight is None else weight
    wsum = jnp.maximum(w.sum(), 1.0)
    mean = lambda x: jnp.sum(x * w) / wsum  # noqa: E731
    losses = {}
    for k in TERNARY:
        losses[k] = mean(optax.softmax_cross_entropy_with_integer_labels(out.ternary_logits[k],
                                                                         ternary_index(labels[k])))
    for k in BINARY:
        if k == "EC" and not use_ec:
            continue
        losses[k] = mean(optax.sigmoid_binary_cross_entropy(out.binary_logits[k], labels[k]))
    ep = jnp.clip(out.ep, 1e-6, 1 - 1e-6)
    t = jnp.clip(labels["EP"], 0.0, 1.0)
    losses["EP"] = mean(-(t * jnp.log(ep) + (1 - t) * jnp.log(1 - ep)) +
                        (t * jnp.log(jnp.maximum(t, 1e-6)) + (1 - t) * jnp.log(jnp.maximum(1 - t, 1e-6))))
    pred = predicted_reward(out, use_ec)
    losses["EPDMS"] = mean((pred - true_epdms) ** 2)
    total = sum(v for k, v in losses.items() if k != "EPDMS") + epdms_weight * losses["EPDMS"]
    if rank_weight > 0:
        losses["rank"] = pairwise_rank_loss(pred, true_epdms, scale=rank_scale, pair_weight=pair_weight)
        total = total + rank_weight * losses["rank"]
    losses["total"] = total
    return losses
