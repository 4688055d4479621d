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

Explicit inputs besides the tokens (``rwm.kinematic_features`` / ``ego_features`` / ``scene_features``):
plan kinematics, the ego's recent dynamics and plan-vs-scene geometry at t0, all in
:mod:`irlvla_jax.models.reward_features`.

Architecture (``rwm.arch = "transformer"``; ``"light"`` is :class:`LightRewardWorldModel`): a trajectory encoder turns the 8 poses into 8 tokens (+ a learned summary token) with
learned time embeddings; ``num_layers`` blocks each do self-attention within one candidate's tokens, then
cross-attention to the scene's meta (+cmd), BEV, map and object tokens in that order, then an FFN
(pre-LayerNorm residual blocks). Cross-attention flattens the N candidates' tokens into one query axis
per scene, so the scene tokens are never copied N times. Heads read the summary token:
NC and DDC 3-way over {0, 1/2, 1}; DAC, TLC, TTC, LK, HC, EC binary; EP regression in [0, 1] (sigmoid).

Reward = E[NC] E[DAC] E[DDC] E[TLC] (5 E[EP] + 5 E[TTC] + 2 E[LK] + 2 E[HC] (+ 2 E[EC])) / 16 (or / 14
without EC, the case when no previous-frame plan exists, NAVSIM v2.2). Using expectations keeps the
reward smooth in the logits; it is not the expectation of EPDMS (the sub-scores are not independent).

Design decision: the scene tokens are projected to the RWM's own width (``rwm.d_model``) so the
RWM can be narrower than the VLA; in stages 2 and 3 the tokens come from the IL checkpoint's
encoder under ``stop_gradient``.
"""
from __future__ import annotations

from typing import Any, Dict

import jax
import jax.numpy as jnp
import optax
from flax import nnx, struct

from irlvla_jax.scoring.epdms import epdms_formula
from irlvla_jax.models import reward_features as F

ARCHS = ("transformer", "light")
TERNARY = ("NC", "DDC")
BINARY = ("DAC", "TLC", "TTC", "LK", "HC", "EC")
TERNARY_VALUES = (0.0, 0.5, 1.0)
# Output layout of the head: NC(3) DDC(3) DAC TLC TTC LK HC EC EP
_HEAD_DIM = 3 + 3 + len(BINARY) + 1


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


def _check_trajectories(traj) -> None:
    if traj.ndim != 4 or traj.shape[-2:] != (8, 3):
        raise ValueError(f"RWM trajectories: expected [B, N, 8, 3] (x, y, heading), found {traj.shape}")


def _head_output(out) -> RWMOutput:
    """The head's [B, N, 13] (NC(3) DDC(3) DAC TLC TTC LK HC EC EP) -> RWMOutput."""
    tern = {"NC": out[..., 0:3], "DDC": out[..., 3:6]}
    binl = {k: out[..., 6 + i] for i, k in enumerate(BINARY)}
    return RWMOutput(ternary_logits=tern, binary_logits=binl, ep=jax.nn.sigmoid(out[..., -1]))


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
    and ``scene_features`` (bool: :func:`scene_features`, plan-vs-map/agents geometry at t0, computed at every
    ``scene_pose_stride``-th pose). With either
    of the last two the model needs ``scenes``, the [B] Scene batch the tokens were encoded from.
    token_dim: width Dt of the VLA's scene tokens.
    """

    def __init__(self, cfg, token_dim: int, *, rngs: nnx.Rngs):
        d = int(cfg.d_model)
        self.d = d
        self.use_kin = bool(cfg.kinematic_features)
        self.use_ego = bool(cfg.ego_features)
        self.use_scene = bool(cfg.scene_features)
        self.scene_stride = int(cfg.scene_pose_stride)
        self.tok_proj = nnx.List([nnx.Linear(token_dim, d, rngs=rngs) for _ in range(4)])
        n_in = 5 + (len(F.KINEMATIC_NAMES) if self.use_kin else 0) + (len(F.SCENE_FEATURE_NAMES) if self.use_scene else 0)
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
        _check_trajectories(traj)
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
                ego = F.ego_inputs(scenes)
        feats = F.pose_features(traj)
        if self.use_kin:
            per, summ = F.kinematic_inputs(traj, ego)
            feats = jnp.concatenate([feats, per], axis=-1)
        if self.use_scene:
            sf = F.scene_features(scenes, traj, self.scene_stride)
            # a computed pose's geometry also stands for the stride - 1 poses before it
            feats = jnp.concatenate([feats, jnp.repeat(sf, self.scene_stride, axis=2)], axis=-1)
            if self.use_kin:
                summ = jnp.concatenate([summ, F.scene_summary(sf)], axis=-1)
        e = self.pose_hidden(jax.nn.gelu(self.pose_in(feats))) + self.time_emb[...]
        s = jnp.broadcast_to(self.summary[...], (B, N, 1, self.d))
        if self.use_kin:
            s = s + self.kin_hidden(jax.nn.gelu(self.kin_in(summ)))[:, :, None]
        h = jnp.concatenate([s, e], axis=2)  # [B, N, 9, d]
        if self.use_ego:
            h = h + self.ego_hidden(jax.nn.gelu(self.ego_in(F.ego_summary(ego))))[:, None, None]
        for blk in self.blocks:
            h = blk(h, groups)
        out = self.head(jax.nn.gelu(self.head_hidden(self.ln_out(h[:, :, 0]))))  # [B, N, 13]
        return _head_output(out)


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
        self.use_kin = bool(cfg.kinematic_features)
        self.use_ego = bool(cfg.ego_features)
        self.use_scene = bool(cfg.scene_features)
        self.scene_stride = int(cfg.scene_pose_stride)
        n_scene = len(F.scene_poses(self.scene_stride)) * len(F.SCENE_FEATURE_NAMES) if self.use_scene else 0
        n_in = (8 * (5 + (len(F.KINEMATIC_NAMES) if self.use_kin else 0)) + n_scene + (10 if self.use_kin else 0)
                + (10 if self.use_kin and self.use_scene else 0))
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
        _check_trajectories(traj)
        ctx = self.tok_proj(jnp.concatenate(token_groups(tokens), axis=1))           # [B, n, d] (once)
        B, N = traj.shape[:2]
        if ctx.shape[0] != B:
            raise ValueError(f"RWM: tokens have batch {ctx.shape[0]} but trajectories {B}")
        if (self.use_ego or self.use_scene) and scenes is None:
            raise ValueError("RWM was built with rwm.ego_features / rwm.scene_features: call it as "
                             "model(tokens, traj, scenes=<the Scene batch the tokens come from>)")
        if scenes is not None and (self.use_ego or self.use_scene) and int(jnp.shape(scenes.ego_state)[0]) != B:
            raise ValueError(f"RWM scenes: batch {jnp.shape(scenes.ego_state)[0]} but trajectories {B}")
        ego = F.ego_inputs(scenes) if self.use_ego else None
        feats, summ = F.pose_features(traj), []
        if self.use_kin:
            per, ks = F.kinematic_inputs(traj, ego)
            feats = jnp.concatenate([feats, per], axis=-1)
            summ.append(ks)
        parts = [feats[:, :, i] for i in range(8)]                                     # pose-major, as stride 1
        if self.use_scene:
            sf = F.scene_features(scenes, traj, self.scene_stride)                       # [B, N, P, 10]
            for j, i in enumerate(F.scene_poses(self.scene_stride)):
                parts[i] = jnp.concatenate([parts[i], sf[:, :, j]], axis=-1)
            if self.use_kin:
                summ.append(F.scene_summary(sf))
        x = jnp.concatenate(parts + summ, axis=-1)
        h = self.traj_hidden(jax.nn.gelu(self.traj_in(x)))                           # [B, N, d]
        if self.use_ego:
            h = h + self.ego_in(F.ego_summary(ego))[:, None]
        H, dh = self.heads, self.d // self.heads
        heads_major = lambda x: x.reshape(B, x.shape[1], H, dh).transpose(0, 2, 1, 3)  # noqa: E731 [B, H, n, dh]
        for i in range(len(self.q)):
            # Heads-major [B, H, n, dh] operands: plain batched matmuls on XLA:CPU (2x faster than
            # einsums over a [B, n, H, dh] layout for 20,480 base trajectories on 2 cores).
            k, v = (heads_major(x) for x in jnp.split(self.kv[i](ctx), 2, -1))      # per scene
            q = heads_major(self.q[i](self.ln_q[i](h)))
            a = jax.nn.softmax(jnp.einsum("bhnc,bhmc->bhnm", q, k) / jnp.sqrt(float(dh)), -1)
            h = h + self.o[i](jnp.einsum("bhnm,bhmc->bhnc", a, v).transpose(0, 2, 1, 3).reshape(B, N, self.d))
            h = h + self.ff2[i](jax.nn.gelu(self.ff1[i](self.ln_ff[i](h))))
        out = self.head(jax.nn.gelu(self.head_hidden(self.ln_out(h))))               # [B, N, 13]
        return _head_output(out)


def build(cfg, token_dim: int, *, rngs: nnx.Rngs):
    """The RWM named by ``cfg.arch``: "transformer" (:class:`RewardWorldModel`) or "light"
    (:class:`LightRewardWorldModel`)."""
    arch = str(cfg.arch)
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


def predicted_reward(out: RWMOutput, use_ec: bool):
    """[B, N] reward: the EPDMS formula on the predicted expectations."""
    return epdms_formula(expectations(out), bool(use_ec))


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
