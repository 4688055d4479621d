"""Perception: camera + LiDAR -> fused BEV grid -> BEV, object and map tokens, with auxiliary heads.

Inputs (one batch of :class:`irlvla_jax.scene.Scene`, jnp arrays):
    camera [B, Hc, Wc, 3] uint8, lidar [B, Hl, Wl, C] float32 (height histogram, ego frame BEV,
    row 0 = x_max, columns along -y, the same raster convention as ``bev_semantic``).

Pipeline
    camera CNN stem (3x3 stride-2 convs)          -> [B, hc, wc, Cc]
    view transform (VPN-style learned linear map from the hc*wc image cells to the G*G BEV cells,
    shared over channels; the camera has no depth, so the network learns where each image cell lands)
                                                   -> [B, G, G, Cc]
    LiDAR BEV CNN (3x3 stride-2 convs, bilinear resize to G if the strides do not land exactly on G)
                                                   -> [B, G, G, Cl]
    fuse: concat + 3x3 conv + 3x3 conv             -> BEV grid F [B, G, G, D], G = bev_hw / bev_stride
    BEV tokens: average-pool F to [P, P] + learned positions -> [B, P*P, D]
    detection head (CenterNet-style, on F): class heatmap logits [B, G, G, 4] (AGENT_TYPES) and box
    regression [B, G, G, 6] = (dx, dy cell offset in [0, 1], sin h, cos h, log length, log width);
    the top-K cells of the max-class heatmap (``jax.lax.top_k``, no NMS, no matching) give object tokens
    [B, K, D] = feature at the cell + MLP(decoded box, score, class probabilities).
    map head: BEV segmentation logits [B, Hb, Wb, 6] (BEV_CLASSES; bilinear upsampling from G) and
    Nq learned map queries cross-attending to the G*G grid cells -> map tokens [B, Nq, D]; each query
    also predicts a lane centerline [P_lane, 2] (normalised BEV coordinates) and an existence logit.

Auxiliary losses (``perception_losses``), from scene labels:
    * heatmap: CenterNet focal loss (alpha 2, beta 4) against Gaussian splats (sigma in cells) of the
      agent centres at t0 (``agent_boxes[:, 0]``, ``agent_valid[:, 0]``, class = ``agent_type``);
    * box: L1 on the regression at each valid agent's centre cell;
    * bev: cross-entropy of the segmentation against ``bev_semantic``;
    * map: set loss without matching: for every valid lane, the L1 distance to its nearest query
      polyline (min over queries), plus binary cross-entropy pushing the existence logit of each lane's
      nearest query to 1 and the others to 0.

Design decision: a learned linear view transform (no depth estimation, no ViT) keeps the camera
branch cheap and shape-static; a pretrained image backbone can replace ``cam_stem`` without changing
anything downstream.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from irlvla_jax.models.layers import MLP, Attention, conv_stack, dtype_of, run_convs
from irlvla_jax.scene import AGENT_TYPES, BEV_CLASSES, SceneSpec

N_BOX = 6  # dx, dy, sin, cos, log l, log w


@struct.dataclass
class PerceptionOut:
    """Outputs of :class:`Perception` (B = batch, G = BEV grid side, D = token width).

    grid [B, G, G, D]; bev_tokens [B, P*P, D]; obj_tokens [B, K, D]; map_tokens [B, Nq, D];
    heatmap [B, G, G, 4] logits; boxes [B, G, G, 6]; obj_boxes [B, K, 5] decoded (x, y, heading,
    length, width) metres/radians ego frame; obj_scores [B, K] in [0, 1]; bev_logits [B, Hb, Wb, 6];
    map_lines [B, Nq, P, 2] normalised BEV coordinates; map_logits [B, Nq].
    """
    grid: Any
    bev_tokens: Any
    obj_tokens: Any
    map_tokens: Any
    heatmap: Any
    boxes: Any
    obj_boxes: Any
    obj_scores: Any
    bev_logits: Any
    map_lines: Any
    map_logits: Any


def grid_size(spec: SceneSpec, stride: int) -> int:
    """BEV grid side G. Raises ValueError if bev_hw is not square or not divisible by the stride."""
    hb, wb = spec.bev_hw
    if hb != wb or hb % stride:
        raise ValueError(f"config.scene.bev_hw {spec.bev_hw} must be square and divisible by "
                         f"config.model.perception.bev_stride={stride}")
    return hb // stride


def world_to_grid(xy, spec: SceneSpec, g: int):
    """Ego-frame metres ``[..., 2]`` -> continuous (row, col) grid coordinates ``[..., 2]`` on a G x G grid.

    Row 0 is x_max (rows run along -x); column 0 is y_max (columns run along -y); cell (i, j) covers
    rows [i, i+1).
    """
    x0, x1, y0, y1 = spec.bev_range
    row = (x1 - xy[..., 0]) / (x1 - x0) * g
    col = (y1 - xy[..., 1]) / (y1 - y0) * g
    return jnp.stack([row, col], -1)


def grid_to_world(rc, spec: SceneSpec, g: int):
    """Inverse of :func:`world_to_grid`: (row, col) ``[..., 2]`` -> ego-frame (x, y) metres."""
    x0, x1, y0, y1 = spec.bev_range
    x = x1 - rc[..., 0] / g * (x1 - x0)
    y = y1 - rc[..., 1] / g * (y1 - y0)
    return jnp.stack([x, y], -1)


def normalise_xy(xy, spec: SceneSpec):
    """Ego-frame metres -> [-1, 1] over the BEV range (x along the first axis)."""
    x0, x1, y0, y1 = spec.bev_range
    c = jnp.array([(x0 + x1) / 2, (y0 + y1) / 2], jnp.float32)
    s = jnp.array([(x1 - x0) / 2, (y1 - y0) / 2], jnp.float32)
    return (xy - c) / s


class Perception(nnx.Module):
    """Camera + LiDAR BEV perception. ``__call__(camera, lidar) -> PerceptionOut`` (see module doc)."""

    def __init__(self, cfg, spec: SceneSpec, dim: int, *, rngs: nnx.Rngs):
        dt = dtype_of(cfg.dtype)
        p = cfg.perception
        self.spec, self.dim = spec, dim
        self.stride = int(p.bev_stride)
        self.g = grid_size(spec, self.stride)
        self.pool = int(p.bev_tokens_side)
        if self.g % self.pool:
            raise ValueError(f"config.model.perception.bev_tokens_side={self.pool} must divide the BEV grid "
                             f"side {self.g} (= bev_hw / bev_stride)")
        self.k = int(p.num_objects)
        self.nq = int(p.num_map_queries)
        self.sigma = float(p.heatmap_sigma)
        self.lane_points = spec.lane_points
        cam_ch, lid_ch = tuple(p.camera_channels), tuple(p.lidar_channels)
        self.cam_stem = conv_stack(3, cam_ch, rngs=rngs, dtype=dt)
        hc, wc = spec.camera_hw
        for _ in cam_ch:
            hc, wc = -(-hc // 2), -(-wc // 2)
        self.cam_cells = hc * wc
        g2 = self.g * self.g
        self.view = nnx.Param(jax.random.normal(rngs.params(), (self.cam_cells, g2)) / np.sqrt(self.cam_cells))
        self.lidar_stem = conv_stack(spec.lidar_channels, lid_ch, rngs=rngs, dtype=dt)
        self.fuse1 = nnx.Conv(cam_ch[-1] + lid_ch[-1], dim, kernel_size=(3, 3), rngs=rngs, dtype=dt)
        self.fuse2 = nnx.Conv(dim, dim, kernel_size=(3, 3), rngs=rngs, dtype=dt)
        self.grid_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (g2, dim)))
        self.tok_pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (self.pool ** 2, dim)))
        # detection
        self.det_trunk = nnx.Conv(dim, dim, kernel_size=(3, 3), rngs=rngs, dtype=dt)
        self.heat = nnx.Conv(dim, len(AGENT_TYPES), kernel_size=(1, 1), rngs=rngs, dtype=dt,
                             bias_init=nnx.initializers.constant(-2.19))  # prior 0.1, CenterNet
        self.box = nnx.Conv(dim, N_BOX, kernel_size=(1, 1), rngs=rngs, dtype=dt)
        self.obj_mlp = MLP(2 + 2 + 2 + 1 + len(AGENT_TYPES), dim, dim, rngs=rngs, dtype=dt)
        self.obj_feat = nnx.Linear(dim, dim, rngs=rngs, dtype=dt)
        # map
        self.seg = nnx.Conv(dim, len(BEV_CLASSES), kernel_size=(1, 1), rngs=rngs, dtype=dt)
        self.map_queries = nnx.Param(0.02 * jax.random.normal(rngs.params(), (self.nq, dim)))
        self.map_ln = nnx.LayerNorm(dim, rngs=rngs, dtype=dt)
        self.map_attn = Attention(dim, int(cfg.heads), rngs=rngs, dtype=dt)
        self.map_mlp = MLP(dim, 2 * dim, dim, rngs=rngs, dtype=dt)
        self.map_line = nnx.Linear(dim, self.lane_points * 2 + 1, rngs=rngs, dtype=dt)

    def __call__(self, camera, lidar) -> PerceptionOut:
        B = camera.shape[0]
        g, D = self.g, self.dim
        cam = camera.astype(jnp.float32) / 127.5 - 1.0
        cf = run_convs(self.cam_stem, cam)                                    # [B, hc, wc, Cc]
        cf = cf.reshape(B, -1, cf.shape[-1])                                  # [B, hc*wc, Cc]
        cam_bev = jnp.einsum("bnc,ng->bgc", cf, self.view[...].astype(cf.dtype)).reshape(B, g, g, -1)
        lf = run_convs(self.lidar_stem, lidar.astype(jnp.float32))
        if lf.shape[1:3] != (g, g):
            lf = jax.image.resize(lf, (B, g, g, lf.shape[-1]), "bilinear")
        x = jnp.concatenate([cam_bev, lf.astype(cam_bev.dtype)], -1)
        x = jax.nn.gelu(self.fuse1(x))
        grid = self.fuse2(x) + self.grid_pos[...].reshape(g, g, D).astype(x.dtype)   # [B, G, G, D]
        # BEV tokens
        p = self.pool
        f = g // p
        bev_tokens = grid.reshape(B, p, f, p, f, D).mean((2, 4)).reshape(B, p * p, D) + self.tok_pos[...]
        # detection
        d = jax.nn.gelu(self.det_trunk(grid))
        heat = self.heat(d).astype(jnp.float32)                              # [B, G, G, 4]
        boxes = self.box(d).astype(jnp.float32)                              # [B, G, G, 6]
        prob = jax.nn.sigmoid(heat).reshape(B, g * g, -1)
        score = prob.max(-1)                                                 # [B, G*G]
        top, idx = jax.lax.top_k(score, self.k)                              # [B, K]
        take = lambda a: jnp.take_along_axis(a, idx[..., None], axis=1)
        box_k = take(boxes.reshape(B, g * g, N_BOX))
        rc = jnp.stack([idx // g, idx % g], -1).astype(jnp.float32) + jax.nn.sigmoid(box_k[..., :2])
        xy = grid_to_world(rc, self.spec, g)
        heading = jnp.arctan2(box_k[..., 2], box_k[..., 3])
        lw = jnp.exp(jnp.clip(box_k[..., 4:6], -3.0, 4.0))
        obj_boxes = jnp.concatenate([xy, heading[..., None], lw], -1)          # [B, K, 5]
        enc = jnp.concatenate([normalise_xy(xy, self.spec), box_k[..., 2:4], jnp.log(lw), top[..., None],
                               take(prob)], -1)
        feat_k = take(grid.reshape(B, g * g, D))
        obj_tokens = self.obj_feat(feat_k) + self.obj_mlp(enc.astype(feat_k.dtype))
        # map head
        hb, wb = self.spec.bev_hw
        seg = self.seg(grid).astype(jnp.float32)
        bev_logits = jax.image.resize(seg, (B, hb, wb, seg.shape[-1]), "bilinear")
        cells = grid.reshape(B, g * g, D)
        q = jnp.broadcast_to(self.map_queries[...].astype(cells.dtype), (B, self.nq, D))
        q = q + self.map_attn(self.map_ln(q), cells)
        map_tokens = q + self.map_mlp(q)
        out = self.map_line(map_tokens).astype(jnp.float32)
        map_lines = out[..., :-1].reshape(B, self.nq, self.lane_points, 2)
        return PerceptionOut(grid=grid, bev_tokens=bev_tokens, obj_tokens=obj_tokens, map_tokens=map_tokens,
                             heatmap=heat, boxes=boxes, obj_boxes=obj_boxes, obj_scores=top,
                             bev_logits=bev_logits, map_lines=map_lines, map_logits=out[..., -1])


def heatmap_targets(boxes0, valid0, agent_type, spec: SceneSpec, g: int, sigma: float):
    """CenterNet targets on the G x G grid.

    boxes0 [B, A, 5] (x, y, heading, length, width at t0, metres/radians), valid0 [B, A] bool,
    agent_type [B, A] int. Returns (heat [B, G, G, 4] in [0, 1] with exactly 1 at each visible agent's
    centre cell, reg [B, A, 6] regression targets, cell [B, A] flat cell index, inside [B, A] bool =
    valid and centre within the BEV range).
    """
    rc = world_to_grid(boxes0[..., :2], spec, g)                              # [B, A, 2]
    inside = valid0 & jnp.all((rc >= 0) & (rc < g), -1)
    ci = jnp.clip(jnp.floor(rc), 0, g - 1)
    ii = jnp.arange(g, dtype=jnp.float32)
    dr = ii[None, None, :, None] - ci[..., 0][..., None, None]
    dc = ii[None, None, None, :] - ci[..., 1][..., None, None]
    gauss = jnp.exp(-(dr ** 2 + dc ** 2) / (2.0 * sigma ** 2))                   # [B, A, G, G]
    onehot = jax.nn.one_hot(agent_type, len(AGENT_TYPES)) * inside[..., None]   # [B, A, 4]
    heat = jnp.max(gauss[..., None] * onehot[:, :, None, None, :], axis=1)      # [B, G, G, 4]
    off = rc - ci
    reg = jnp.concatenate([off, jnp.sin(boxes0[..., 2:3]), jnp.cos(boxes0[..., 2:3]),
                           jnp.log(jnp.maximum(boxes0[..., 3:5], 1e-2))], -1)
    cell = (ci[..., 0] * g + ci[..., 1]).astype(jnp.int32)
    return heat, reg, cell, inside


def focal_loss(logits, target, alpha: float = 2.0, beta: float = 4.0):
    """CenterNet penalty-reduced focal loss, summed and divided by max(#peaks, 1). logits/target same shape."""
    p = jax.nn.sigmoid(logits)
    logp, log1mp = jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)
    pos = (target >= 1.0 - 1e-4).astype(jnp.float32)
    pos_loss = -pos * (1 - p) ** alpha * logp
    neg_loss = -(1 - pos) * (1 - target) ** beta * p ** alpha * log1mp
    return (pos_loss.sum() + neg_loss.sum()) / jnp.maximum(pos.sum(), 1.0)


def perception_losses(out: PerceptionOut, scene, spec: SceneSpec, sigma: float):
    """Auxiliary perception losses -> dict of scalars: det_heat, det_box, bev_seg, map_line, map_exist."""
    B, g = out.heatmap.shape[0], out.heatmap.shape[1]
    heat_t, reg_t, cell, inside = heatmap_targets(scene.agent_boxes[:, :, 0], scene.agent_valid[:, :, 0],
                                                  scene.agent_type, spec, g, sigma)
    det_heat = focal_loss(out.heatmap, heat_t)
    pred = jnp.take_along_axis(out.boxes.reshape(B, g * g, N_BOX), cell[..., None], axis=1)
    pred = jnp.concatenate([jax.nn.sigmoid(pred[..., :2]), pred[..., 2:]], -1)
    w = inside.astype(jnp.float32)[..., None]
    det_box = (jnp.abs(pred - reg_t) * w).sum() / jnp.maximum(w.sum() * N_BOX, 1.0)
    labels = scene.bev_semantic.astype(jnp.int32)
    logp = jax.nn.log_softmax(out.bev_logits, -1)
    bev_seg = -jnp.take_along_axis(logp, labels[..., None], -1).mean()
    # map queries: min-over-queries set loss (no matching)
    gt = normalise_xy(scene.lane_centerlines.astype(jnp.float32), spec)           # [B, L, P, 2]
    dist = jnp.abs(out.map_lines[:, :, None] - gt[:, None]).mean((-1, -2))         # [B, Nq, L]
    lane_w = scene.lane_valid.astype(jnp.float32)                                   # [B, L]
    map_line = (dist.min(1) * lane_w).sum() / jnp.maximum(lane_w.sum(), 1.0)
    nearest = jax.nn.one_hot(jnp.argmin(dist, 1), dist.shape[1]) * lane_w[..., None]   # [B, L, Nq]
    exist_t = jnp.clip(nearest.sum(1), 0.0, 1.0)                                    # [B, Nq]
    lg = out.map_logits
    map_exist = -(exist_t * jax.nn.log_sigmoid(lg) + (1 - exist_t) * jax.nn.log_sigmoid(-lg)).mean()
    return dict(det_heat=det_heat, det_box=det_box, bev_seg=bev_seg, map_line=map_line, map_exist=map_exist)
