"""Random but valid Scene batches (numpy) for tests and benchmarks, without a generated dataset.

Built from :func:`irlvla_jax.scene.empty_scene` with random sensors, labels, agents at t0, an expert
future that follows the command (so it is learnable) and random instruction ids < ``vocab``. Passes
:func:`irlvla_jax.scene.validate`.
"""
from __future__ import annotations

import numpy as np

from irlvla_jax.scene import (AGENT_TYPES, BEV_CLASSES, META_PATH, META_SPEED, N_POSES, Scene, SceneSpec,
                              empty_scene, pad_polygon, pad_polyline, stack)


def random_scenes(spec: SceneSpec, batch: int, seed: int = 0, vocab: int = 64) -> Scene:
    """``batch`` random valid scenes stacked (numpy, leading axis B)."""
    rng = np.random.default_rng(seed)
    out = []
    x0, x1, y0, y1 = spec.bev_range
    for _ in range(batch):
        s = empty_scene(spec).to_dict()
        s["camera"] = rng.integers(0, 256, s["camera"].shape, dtype=np.uint8)
        s["lidar"] = rng.random(s["lidar"].shape, dtype=np.float32)
        s["bev_semantic"] = rng.integers(0, len(BEV_CLASSES), s["bev_semantic"].shape).astype(np.uint8)
        cmd = int(rng.integers(0, 3))
        s["command"][:] = 0
        s["command"][cmd] = 1
        v = float(rng.uniform(3, 12))
        s["ego_state"][3] = v
        s["ego_past"][:, 0] = -v * np.arange(15, 0, -1) * 0.1
        s["ego_past"][:, 3] = v
        s["speed_limit"] = np.float32(rng.uniform(8, 20))
        t = np.arange(1, N_POSES + 1) * 0.5
        curv = (cmd - 1) * -0.04
        h = curv * v * t
        s["expert_future"][:, 0] = v * t
        s["expert_future"][:, 1] = 0.5 * curv * (v * t) ** 2
        s["expert_future"][:, 2] = h
        n = int(rng.integers(1, spec.num_agents + 1))
        s["agent_valid"][:n] = True
        s["agent_type"][:n] = rng.integers(0, len(AGENT_TYPES), n)
        s["agent_boxes"][:n, :, 0] = rng.uniform(x0, x1, (n, 1))
        s["agent_boxes"][:n, :, 1] = rng.uniform(y0, y1, (n, 1))
        s["agent_boxes"][:n, :, 2] = rng.uniform(-np.pi, np.pi, (n, 1))
        s["agent_boxes"][:n, :, 3] = rng.uniform(1, 5, (n, 1))
        s["agent_boxes"][:n, :, 4] = rng.uniform(0.5, 2.2, (n, 1))
        nl = int(rng.integers(1, spec.num_lanes + 1))
        s["lane_valid"][:nl] = True
        for i in range(nl):
            yy = rng.uniform(y0, y1)
            pts = np.stack([np.linspace(x0, x1, spec.lane_points), np.full(spec.lane_points, yy)], -1)
            s["lane_centerlines"][i], s["lane_point_valid"][i] = pad_polyline(pts, spec.lane_points)
            poly = [[x0, yy - 1.75], [x1, yy - 1.75], [x1, yy + 1.75], [x0, yy + 1.75]]
            s["lane_polygons"][i], s["lane_vertex_valid"][i] = pad_polygon(poly, spec.lane_vertices)
        k = int(rng.integers(1, spec.instruction_tokens + 1))
        s["instruction"][:k] = rng.integers(1, vocab, k)
        s["instruction_valid"][:k] = True
        s["meta_speed"] = np.int32(rng.integers(0, len(META_SPEED)))
        s["meta_path"] = np.int32(cmd if cmd < 3 else 0)
        s["meta_path"] = np.int32(min(int(s["meta_path"]), len(META_PATH) - 1))
        out.append(Scene(**s))
    return stack(out)


def random_anchors(num: int, seed: int = 0) -> np.ndarray:
    """[num, 8, 3] plausible anchor trajectories (constant speed and curvature), metres/radians."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N_POSES + 1) * 0.5
    v = rng.uniform(0, 14, (num, 1))
    c = rng.uniform(-0.05, 0.05, (num, 1))
    return np.stack([v * t, 0.5 * c * (v * t) ** 2, c * v * t], -1).astype(np.float32)


class SyntheticIterator:
    """Infinite iterator over batches of :func:`random_scenes` (batch i uses seed ``seed + i``), or over
    a fixed batch when ``fixed=True``; ``get_state()/set_state()`` like the grain loader (resumable)."""

    def __init__(self, spec: SceneSpec, batch: int, seed: int = 0, vocab: int = 64, fixed: bool = False):
        self.spec, self.batch, self.seed, self.vocab, self.fixed = spec, batch, seed, vocab, fixed
        self.i = 0
        self._fixed = random_scenes(spec, batch, seed, vocab) if fixed else None

    def __iter__(self):
        return self

    def __next__(self) -> Scene:
        b = self._fixed if self.fixed else random_scenes(self.spec, self.batch, self.seed + self.i, self.vocab)
        self.i += 1
        return b

    def get_state(self):
        return {"i": self.i}

    def set_state(self, state):
        self.i = int(state["i"])


def micro_config():
    """The tiny config shrunk further (scene sizes and model widths) for fast tests and CPU benchmarks."""
    import os
    from irlvla_jax.config import load_config
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    c = load_config(os.path.join(here, "configs", "default.py"), "tiny")
    c.scene.update(dict(num_agents=4, num_lanes=4, lane_vertices=8, lane_points=4, num_drivable=2,
                        drivable_vertices=8, route_points=8, num_lights=2, light_vertices=8, instruction_tokens=6,
                        camera_hw=(16, 32), lidar_hw=(16, 16), lidar_channels=2, bev_hw=(16, 16)))
    c.data.num_anchors = 4
    m = c.model
    m.dim, m.heads = 16, 2
    m.perception.update(dict(camera_channels=(8,), lidar_channels=(8,), bev_stride=4, bev_tokens_side=2,
                             num_objects=4, num_map_queries=2))
    m.semantic.update(dict(width=16, layers=1, heads=2, num_meta=2, vocab_size=128))
    m.planner.update(dict(layers=1, heads=2))
    # Trajectory + mode losses only: the random sensor/label content of synthetic scenes is not learnable,
    # so the auxiliary heads would only add noise to the overfitting check.
    c.il.update(dict(steps=200, batch_size=8, lr=3e-3, warmup_steps=20, end_lr_ratio=0.1, val_every=0,
                     checkpoint_every=50, w_det_heat=0.0, w_det_box=0.0, w_bev_seg=0.0, w_map_line=0.0,
                     w_map_exist=0.0, w_meta=0.0))
    c.train.update(dict(num_devices=1, log_every=1, async_checkpoint=True))
    return c
