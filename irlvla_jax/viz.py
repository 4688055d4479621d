"""Scene pictures (matplotlib, Agg backend): BEV map with agents and trajectories, plus the sensors.

``render_scene(scene, path, trajectories=None, labels=None, colors=None, title=None, scores=None)``
writes one PNG of a single (unbatched) numpy Scene:

* left, the bird's-eye view in the ego frame at t0, drawn with +x (forward) up and +y (left) to the
  left, over ``SceneSpec.bev_range`` (metres): drivable areas (roadblocks grey, intersections darker,
  car parks beige), lane outlines and centerlines (on-route ones blue), the route (wide blue band),
  traffic-light / stop polygons filled red or green by their state at t0 (on-route ones outlined),
  agents at t0 coloured by type with their future centre paths faded, the ego box, the expert plan
  (green, 0.5 ... 4 s) and optional extra trajectories;
* right, the front camera image, the LiDAR height histogram (channel sum) and the BEV semantic raster
  (both in the BEV orientation: row 0 = x_max, columns along -y, the same as the left panel).

Extra ``trajectories`` [N, 8, 3] (ego frame, metres / radians, 0.5 ... 4 s) are drawn with ``colors``
(one per trajectory), or coloured by ``scores`` [N] (0 red ... 1 green, with a colour bar) when
``colors`` is None; ``labels`` [N] go into the legend (and scores, if given, are appended to them).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from irlvla_jax.geometry import EGO_FRONT, EGO_REAR, EGO_WIDTH  # noqa: E402
from irlvla_jax.scene import (AGENT_TYPES, BEV_CLASSES, COMMANDS, DRIVABLE_CARPARK, DRIVABLE_INTERSECTION,  # noqa: E402
                              FAMILIES, SPLITS, SceneError)

AGENT_COLORS = {"vehicle": "#e67e22", "pedestrian": "#c0392b", "bicycle": "#8e44ad", "static": "#6d4c41"}
BEV_COLORS = ListedColormap(["#ffffff", "#d9d9d9", "#f1c40f", "#e67e22", "#c0392b", "#6d4c41"])


def _p(xy):
    """Ego-frame (x, y) [..., 2] -> plot coordinates (-y, x): forward is up, left is left."""
    xy = np.asarray(xy)
    return np.stack([-xy[..., 1], xy[..., 0]], -1)


def _polys(poly, vmask, pmask):
    return [_p(poly[i][vmask[i]]) for i in range(len(poly)) if pmask[i] and vmask[i].sum() >= 3]


def _box(x, y, h, length, width):
    c, s = np.cos(h), np.sin(h)
    dx = np.array([0.5, 0.5, -0.5, -0.5]) * length
    dy = np.array([0.5, -0.5, -0.5, 0.5]) * width
    return np.stack([x + c * dx - s * dy, y + s * dx + c * dy], -1)


def _instruction(scene) -> str:
    try:
        from irlvla_jax.world import language
        return language.decode(np.asarray(scene.instruction), np.asarray(scene.instruction_valid))
    except Exception:  # noqa: BLE001 - text is decoration only
        return ""


def render_scene(scene, path: str, trajectories=None, labels: Optional[Sequence[str]] = None,
                 colors: Optional[Sequence] = None, title: Optional[str] = None, scores=None,
                 bev_range=None, dpi: int = 72, sensors: bool = True) -> str:
    """Write a PNG of one scene (see the module docstring); return ``path``.

    scene: unbatched numpy (or jax) Scene. trajectories: [N, 8, 3] or [8, 3], ego frame, metres/radians.
    labels / colors / scores: length N. bev_range: (x_min, x_max, y_min, y_max) metres, default
    (-16, 48, -32, 32) (pass ``SceneSpec.bev_range`` to match the LiDAR / BEV rasters).
    """
    s = scene
    ef = np.asarray(s.expert_future)
    if ef.ndim != 2:
        raise SceneError("expert_future", "an unbatched scene ([8, 3]); index a batch with scene.index(b, i)",
                         f"shape {ef.shape}", "render_scene")
    trajs = None
    if trajectories is not None:
        trajs = np.asarray(trajectories, np.float32)
        if trajs.ndim == 2:
            trajs = trajs[None]
        if trajs.ndim != 3 or trajs.shape[-1] < 2:
            raise ValueError(f"render_scene: trajectories must be [N, T, 3] (ego frame), got {trajs.shape}")
        n = len(trajs)
        for name, v in (("labels", labels), ("colors", colors), ("scores", scores)):
            if v is not None and len(v) != n:
                raise ValueError(f"render_scene: {name} has {len(v)} entries for {n} trajectories")
    x0, x1, y0, y1 = bev_range if bev_range is not None else (-16.0, 48.0, -32.0, 32.0)

    fig = plt.figure(figsize=(12.0, 6.2) if sensors else (6.0, 6.0), dpi=dpi)
    if sensors:
        gs = fig.add_gridspec(2, 3, width_ratios=[2.0, 1, 1], height_ratios=[1, 1.25], wspace=0.06, hspace=0.15)
        ax = fig.add_subplot(gs[:, 0])
    else:
        ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor("#f7f7f2")

    # Map.
    dk = np.asarray(s.drivable_kind)
    dpolys, dvm, dv = np.asarray(s.drivable_polygons), np.asarray(s.drivable_vertex_valid), np.asarray(s.drivable_valid)
    for kind, col in ((0, "#cfcfcf"), (DRIVABLE_CARPARK, "#e8dcc0"), (DRIVABLE_INTERSECTION, "#b8b8b8")):
        pol = _polys(dpolys, dvm, dv & (dk == kind))
        if pol:
            ax.add_collection(PolyCollection(pol, facecolors=col, edgecolors="#9a9a9a", linewidths=0.6, zorder=1))
    lv = np.asarray(s.lane_valid)
    lpol = _polys(np.asarray(s.lane_polygons), np.asarray(s.lane_vertex_valid), lv)
    if lpol:
        ax.add_collection(PolyCollection(lpol, facecolors="none", edgecolors="#ffffff", linewidths=0.8, zorder=2))
    cl, cm = np.asarray(s.lane_centerlines), np.asarray(s.lane_point_valid)
    onr, conn = np.asarray(s.lane_on_route), np.asarray(s.lane_is_connector)
    for i in np.nonzero(lv)[0]:
        c = _p(cl[i][cm[i]])
        ax.plot(c[:, 0], c[:, 1], ls=":" if conn[i] else "--", lw=0.9 if onr[i] else 0.5,
                color="#2e86de" if onr[i] else "#8a8a8a", zorder=3)
    r = _p(np.asarray(s.route)[np.asarray(s.route_valid)])
    ax.plot(r[:, 0], r[:, 1], color="#74b9ff", lw=7, alpha=0.35, solid_capstyle="round", zorder=2.5, label="route")
    red = np.asarray(s.light_red)
    lval, lonr = np.asarray(s.light_valid), np.asarray(s.light_on_route)
    lp, lvm = np.asarray(s.light_polygons), np.asarray(s.light_vertex_valid)
    for i in np.nonzero(lval)[0]:
        pol = _p(lp[i][lvm[i]])
        ax.fill(pol[:, 0], pol[:, 1], color="#e74c3c" if red[i, 0] else "#2ecc71", alpha=0.55,
                ec="k" if lonr[i] else "none", lw=1.0, zorder=4)

    # Agents: box at t0 (first valid step) and faded future centres.
    boxes, av, at = np.asarray(s.agent_boxes), np.asarray(s.agent_valid), np.asarray(s.agent_type)
    seen = set()
    for a in np.nonzero(av.any(-1))[0]:
        tname = AGENT_TYPES[int(at[a])]
        col = AGENT_COLORS[tname]
        k = int(np.argmax(av[a]))
        bx = boxes[a, k]
        corners = _p(_box(*bx))
        ax.fill(corners[:, 0], corners[:, 1], color=col, alpha=0.9 if k == 0 else 0.4, zorder=6,
                label=tname if tname not in seen else None)
        seen.add(tname)
        fut = _p(boxes[a][av[a]][:, :2])
        if len(fut) > 1:
            ax.plot(fut[:, 0], fut[:, 1], color=col, alpha=0.35, lw=1.2, zorder=5)
            ax.scatter(fut[::10, 0], fut[::10, 1], color=col, alpha=0.3, s=6, zorder=5)
    ego = _p(_box(0.5 * (EGO_FRONT - EGO_REAR), 0.0, 0.0, EGO_FRONT + EGO_REAR, EGO_WIDTH))
    ax.fill(ego[:, 0], ego[:, 1], color="#0a3d62", zorder=7, label="ego")

    # Trajectories.
    e = _p(np.concatenate([np.zeros((1, 2)), ef[:, :2]]))
    ax.plot(e[:, 0], e[:, 1], "-o", color="#27ae60", lw=2.2, ms=3.5, zorder=9, label="expert")
    if trajs is not None:
        cmap = plt.get_cmap("RdYlGn")
        sc = None if scores is None else np.asarray(scores, np.float64)
        for i, t in enumerate(trajs):
            col = colors[i] if colors is not None else (cmap(float(np.clip(sc[i], 0, 1))) if sc is not None
                                                         else plt.get_cmap("tab10")(i % 10))
            lab = labels[i] if labels is not None else None
            if sc is not None and lab is not None:
                lab = f"{lab} ({sc[i]:.2f})"
            pt = _p(np.concatenate([np.zeros((1, 2)), t[:, :2]]))
            ax.plot(pt[:, 0], pt[:, 1], "-", color=col, lw=1.4, alpha=0.9, zorder=8, label=lab)
            ax.scatter(pt[-1:, 0], pt[-1:, 1], color=[col], s=10, zorder=8)
        if sc is not None and colors is None:
            sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
            fig.colorbar(sm, ax=ax, fraction=0.035, pad=0.01, label="score")

    ax.set_xlim(-y1, -y0)
    ax.set_ylim(x0, x1)
    ax.set_aspect("equal")
    ax.set_xlabel("-y (m)")
    ax.set_ylabel("x (m)")
    ax.tick_params(labelsize=7)
    ax.legend(loc="lower left", fontsize=6, ncol=2, framealpha=0.8)
    fam = FAMILIES[int(s.family)] if 0 <= int(s.family) < len(FAMILIES) else "?"
    split = SPLITS[int(s.split)] if 0 <= int(s.split) < len(SPLITS) else "?"
    cmd = COMMANDS[int(np.argmax(np.asarray(s.command)))]
    speed = float(np.hypot(*np.asarray(s.ego_state)[3:5]))
    head = title or f"{fam}  |  {split} scene {int(s.scene_id)}"
    ax.set_title(f"{head}\ncommand {cmd}, v = {speed:.1f} m/s, limit {float(s.speed_limit):.1f} m/s", fontsize=8)

    if sensors:
        axc = fig.add_subplot(gs[0, 1:])
        axc.imshow(np.asarray(s.camera), interpolation="nearest")
        text = _instruction(s)
        axc.set_title(f"camera  |  \"{text}\"" if text else "camera", fontsize=8)
        axl = fig.add_subplot(gs[1, 1])
        lid = np.asarray(s.lidar, np.float32).sum(-1)
        axl.imshow(lid, cmap="magma", interpolation="nearest")
        axl.set_title("LiDAR (height histogram, sum)", fontsize=8)
        axb = fig.add_subplot(gs[1, 2])
        axb.imshow(np.asarray(s.bev_semantic), cmap=BEV_COLORS, vmin=0, vmax=len(BEV_CLASSES) - 1,
                   interpolation="nearest")
        axb.set_title("BEV semantic labels", fontsize=8)
        for a_ in (axc, axl, axb):
            a_.set_xticks([])
            a_.set_yticks([])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
