"""Sensors of the embedded world, vectorised numpy (no per-pixel Python loops), ego frame at t0.

* :func:`render_camera` — a front pinhole camera (1.5 m ahead of the rear axle, 1.6 m high, 90° horizontal
  field of view, square pixels, horizon at mid-height) -> uint8 [Hc, Wc, 3]: sky gradient; ground from a
  top-down texture (asphalt on drivable polygons, grass elsewhere, zebra crosswalks) looked up through the
  fixed pixel -> ground-point map (cached per image size); lane markings splatted from dense 3D points
  (white solid / white dashed / yellow centre line); agent boxes as shaded cuboids drawn far-to-near
  (painter's algorithm, visible faces only); traffic-light heads of the ego's approach in their t0 colour.
* :func:`render_lidar` — a LiDAR-like BEV height histogram [Hl, Wl, C] over ``SceneSpec.bev_range``:
  channel c holds the visible fraction of the height slice c of [0, 2.5] m in that cell (ground returns
  in channel 0, fading with range); occlusion: a cell's returns below the line from the sensor (1.9 m
  high) over the top edge of any nearer box covering its azimuth are removed; 5% dropout.
* :func:`render_bev` — the BEV semantic raster [Hb, Wb] uint8 of ``scene.BEV_CLASSES`` (drivable, lane
  line, vehicle (incl. bicycles), pedestrian, static), later classes overwriting earlier ones.

Grid convention (Scene docstring): row 0 = x_max, rows run along -x; column 0 = y_max, columns along -y.
Polygons are rasterised with a scanline non-zero winding rule (all polygons counter-clockwise).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import List, Sequence, Tuple

import numpy as np

from irlvla_jax.scene import AGENT_BICYCLE, AGENT_PEDESTRIAN, AGENT_STATIC, AGENT_VEHICLE
from irlvla_jax.world.paths import ccw
from irlvla_jax.world.traffic import box_corners

CAM_X, CAM_Z = 1.5, 1.6           # camera position (ego frame) and height, metres
LIDAR_X, LIDAR_Z = 1.2, 1.9
TEX_RANGE = (0.0, 90.0, -45.0, 45.0)


VEHICLE_COLORS = np.array([[200, 40, 40], [40, 70, 180], [230, 230, 230], [40, 40, 40], [150, 150, 160],
                           [30, 120, 60], [220, 180, 40], [120, 60, 30]], float)
TYPE_COLORS = {AGENT_PEDESTRIAN: (230, 120, 40.0), AGENT_BICYCLE: (150, 60, 170.0), AGENT_STATIC: (240, 100, 20.0)}


def agent_colors(types: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Base colours [n, 3] of agents by type: a vehicle draws one of ``VEHICLE_COLORS`` from ``rng`` (in
    order, one draw per vehicle), the other types have fixed colours."""
    out = np.zeros((len(types), 3))
    for i, t in enumerate(types):
        out[i] = VEHICLE_COLORS[rng.integers(0, len(VEHICLE_COLORS))] if t == AGENT_VEHICLE else TYPE_COLORS[int(t)]
    return out


@dataclasses.dataclass
class SensorInput:
    """Ego-frame geometry at t0 for the sensors."""
    drivable: List[np.ndarray]                 # CCW polygons [k, 2]
    markings: List[Tuple[np.ndarray, int]]     # (dense polyline [k, 2], style 0 solid / 1 dashed / 2 yellow)
    crosswalks: List[np.ndarray]               # polygons [4, 2]: (near-left, far-left, far-right, near-right)
    boxes: np.ndarray                          # [n, 5] agent boxes at t0
    types: np.ndarray                          # [n]
    heights: np.ndarray                        # [n]
    colors: np.ndarray                         # [n, 3] uint8-ish base colours
    lights: List[Tuple[np.ndarray, float, bool]]  # (stop-line point, heading, red at t0)


# ----------------------------------------------------------------------------------------------------
# Rasterisation.

def raster_union(polys: Sequence[np.ndarray], x_max: float, y_max: float, dx: float, dy: float,
                 H: int, W: int) -> np.ndarray:
    """Union of counter-clockwise polygons -> bool [H, W] (row 0 = x_max, column 0 = y_max)."""
    if len(polys) == 0:
        return np.zeros((H, W), bool)
    a = np.concatenate([np.asarray(p, np.float64) for p in polys])
    b = np.concatenate([np.roll(np.asarray(p, np.float64), -1, axis=0) for p in polys])
    ua, wa = (y_max - a[:, 1]) / dy, (x_max - a[:, 0]) / dx
    ub, wb = (y_max - b[:, 1]) / dy, (x_max - b[:, 0]) / dx
    lo = np.clip(np.ceil(np.minimum(wa, wb) - 0.5), 0, H).astype(np.int64)
    hi = np.clip(np.ceil(np.maximum(wa, wb) - 0.5), 0, H).astype(np.int64)
    cnt = np.maximum(hi - lo, 0)
    tot = int(cnt.sum())
    acc = np.zeros(H * (W + 1))
    if tot:
        e = np.repeat(np.arange(len(a)), cnt)
        start = np.cumsum(cnt) - cnt
        row = lo[e] + (np.arange(tot) - start[e])
        den = wb[e] - wa[e]
        t = (row + 0.5 - wa[e]) / den
        u = ua[e] + t * (ub[e] - ua[e])
        col = np.clip(np.ceil(u - 0.5), 0, W).astype(np.int64)
        sign = np.where(den > 0, 1.0, -1.0)
        acc = np.bincount(row * (W + 1) + col, weights=sign, minlength=H * (W + 1))
    wind = np.cumsum(acc.reshape(H, W + 1), axis=1)[:, :W]
    return np.abs(wind) > 0.5


def _grid(spec_range, hw):
    x0, x1, y0, y1 = spec_range
    H, W = hw
    return x1, y1, (x1 - x0) / H, (y1 - y0) / W, H, W


def _splat(img: np.ndarray, pts: np.ndarray, grid, value) -> None:
    x_max, y_max, dx, dy, H, W = grid
    if len(pts) == 0:
        return
    r = np.floor((x_max - pts[:, 0]) / dx).astype(np.int64)
    c = np.floor((y_max - pts[:, 1]) / dy).astype(np.int64)
    ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
    img[r[ok], c[ok]] = value


def _marking_points(markings, step: float) -> Tuple[np.ndarray, np.ndarray]:
    """Dense points along markings (dashes removed: 3 m on, 6 m off) and their style."""
    pts, sty = [], []
    for line, style in markings:
        line = np.asarray(line, np.float64)
        if len(line) < 2:
            continue
        seg = np.hypot(*np.diff(line, axis=0).T)
        s = np.concatenate([[0.0], np.cumsum(seg)])
        if s[-1] <= 0:
            continue
        q = np.arange(0.0, s[-1], step)
        if style == 1:
            q = q[(q % 9.0) < 3.0]
        p = np.stack([np.interp(q, s, line[:, 0]), np.interp(q, s, line[:, 1])], -1)
        pts.append(p)
        sty.append(np.full(len(p), style))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(sty)


def boxes_mask(boxes: np.ndarray, grid) -> np.ndarray:
    """Which cell centres of ``grid`` lie inside each box [n, 5] -> bool [n, H, W] (vectorised);
    a box smaller than a cell still marks the cell holding its centre."""
    x_max, y_max, dx, dy, H, W = grid
    n = len(boxes)
    xs = x_max - (np.arange(H) + 0.5) * dx
    ys = y_max - (np.arange(W) + 0.5) * dy
    bx, by, bh = boxes[:, 0, None, None], boxes[:, 1, None, None], boxes[:, 2, None, None]
    ddx = xs[None, :, None] - bx
    ddy = ys[None, None, :] - by
    c, s = np.cos(bh), np.sin(bh)
    lx = c * ddx + s * ddy
    ly = -s * ddx + c * ddy
    m = (np.abs(lx) <= 0.5 * boxes[:, 3, None, None]) & (np.abs(ly) <= 0.5 * boxes[:, 4, None, None])
    r = np.floor((x_max - boxes[:, 0]) / dx).astype(np.int64)
    cc = np.floor((y_max - boxes[:, 1]) / dy).astype(np.int64)
    ok = (r >= 0) & (r < H) & (cc >= 0) & (cc < W)
    m[np.arange(n)[ok], r[ok], cc[ok]] = True
    return m


# ----------------------------------------------------------------------------------------------------
# BEV semantic raster.

def render_bev(spec, inp: SensorInput) -> np.ndarray:
    grid = _grid(spec.bev_range, spec.bev_hw)
    out = np.zeros(spec.bev_hw, np.uint8)
    out[raster_union(inp.drivable, *grid)] = 1
    pts, _ = _marking_points(inp.markings, min(grid[2], grid[3]) * 0.5)
    _splat(out, pts, grid, 2)
    if len(inp.boxes):
        masks = boxes_mask(inp.boxes, grid)
        for cls, kinds in ((3, (AGENT_VEHICLE, AGENT_BICYCLE)), (4, (AGENT_PEDESTRIAN,)), (5, (AGENT_STATIC,))):
            sel = np.isin(inp.types, kinds)
            if sel.any():
                out[masks[sel].any(0)] = cls
    return out


# ----------------------------------------------------------------------------------------------------
# LiDAR.

@functools.lru_cache(maxsize=8)
def _lidar_geometry(bev_range, hw):
    x_max, y_max, dx, dy, H, W = _grid(bev_range, hw)
    xs = x_max - (np.arange(H) + 0.5) * dx
    ys = y_max - (np.arange(W) + 0.5) * dy
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    r = np.maximum(np.hypot(X - LIDAR_X, Y), 0.5).ravel()
    az = np.arctan2(Y, X - LIDAR_X).ravel()
    return r, az


def render_lidar(spec, inp: SensorInput, rng: np.random.Generator) -> np.ndarray:
    """LiDAR-like BEV height histogram [Hl, Wl, C] (see the module docstring).

    Occlusion: every box shadows the cells beyond its nearest corner within its azimuth interval (seen
    from the sensor): returns there are visible only above the line from the sensor over the box's top
    edge (the near edge for boxes taller than the sensor, the far edge otherwise)."""
    H, W = spec.lidar_hw
    C = spec.lidar_channels
    grid = _grid(spec.bev_range, spec.lidar_hw)
    r, az = _lidar_geometry(tuple(spec.bev_range), (H, W))
    height = np.zeros(H * W)
    thr = np.full(H * W, -np.inf)
    n = len(inp.boxes)
    if n:
        hts = np.asarray(inp.heights, np.float64)
        masks = boxes_mask(inp.boxes, grid).reshape(n, -1)
        height = np.max(np.where(masks, hts[:, None], 0.0), axis=0)
        cn = box_corners(np.asarray(inp.boxes, np.float64))                     # [n, 4, 2]
        rel = cn - np.array([LIDAR_X, 0.0])
        rc = np.hypot(rel[..., 0], rel[..., 1])                              # [n, 4]
        azc = np.arctan2(inp.boxes[:, 1], inp.boxes[:, 0] - LIDAR_X)         # [n]
        dac = np.angle(np.exp(1j * (np.arctan2(rel[..., 1], rel[..., 0]) - azc[:, None])))
        lo_a, hi_a = dac.min(1), dac.max(1)
        r_near, r_far = rc.min(1), rc.max(1)
        slope = np.where(hts >= LIDAR_Z, (hts - LIDAR_Z) / np.maximum(r_near, 0.5),
                         (hts - LIDAR_Z) / np.maximum(r_far, 0.5))
        da = np.angle(np.exp(1j * (az[None, :] - azc[:, None])))            # [n, HW]
        cover = (da >= lo_a[:, None]) & (da <= hi_a[:, None]) & (r[None, :] > r_near[:, None]) & ~masks
        thr = np.max(np.where(cover, LIDAR_Z + slope[:, None] * r[None, :], -np.inf), axis=0)
    top = 2.5
    edges = np.linspace(0.0, top, C + 1)
    lo = np.maximum(thr, 0.0)
    hi = np.where(height > 0, np.minimum(height, top), 0.0)
    occ = np.clip(np.minimum(hi[:, None], edges[None, 1:]) - np.maximum(lo[:, None], edges[None, :-1]), 0.0, None)
    occ = occ / (edges[1] - edges[0])
    ground_vis = (thr <= 0.05) & (height <= 0)
    dens = np.clip(12.0 / r, 0.15, 1.0)
    occ[:, 0] = np.maximum(occ[:, 0], np.where(ground_vis, dens, 0.0))
    drop = rng.random(occ.shape[0]) < 0.05
    occ[drop] = 0.0
    return occ.reshape(H, W, C).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Camera.

@functools.lru_cache(maxsize=8)
def _camera_geometry(H: int, W: int):
    f = W / 2.0                               # 90° horizontal FOV
    cx, cy = W / 2.0, H / 2.0
    v = np.arange(H) + 0.5
    u = np.arange(W) + 0.5
    rows = np.nonzero(v > cy + 0.5)[0]
    V, U = np.meshgrid(v[rows], u, indexing="ij")
    X = f * CAM_Z / (V - cy)
    Y = -(U - cx) * X / f
    return f, cx, cy, rows, X + CAM_X, Y


_SKY_TOP = np.array([110, 160, 225.0])
_SKY_BOT = np.array([200, 220, 240.0])
_GRASS = np.array([86, 120, 70.0])
_ASPHALT = np.array([88, 88, 94.0])
_ZEBRA = np.array([225, 225, 225.0])
_HAZE = np.array([175, 190, 200.0])


def _project(f, cx, cy, X, Y, Z):
    d = X - CAM_X
    return cx - f * Y / d, cy - f * (Z - CAM_Z) / d, d


def _fill_convex(img, quad_uv, color) -> None:
    """Fill a convex polygon (image coordinates [k, 2]) with ``color``; vectorised over its bounding box."""
    H, W, _ = img.shape
    u, v = quad_uv[:, 0], quad_uv[:, 1]
    c0, c1 = int(max(np.floor(u.min()), 0)), int(min(np.ceil(u.max()), W))
    r0, r1 = int(max(np.floor(v.min()), 0)), int(min(np.ceil(v.max()), H))
    if c1 <= c0 or r1 <= r0:
        return
    pu = np.arange(c0, c1) + 0.5
    pv = np.arange(r0, r1) + 0.5
    area = np.sum(u * np.roll(v, -1) - np.roll(u, -1) * v)
    sgn = 1.0 if area >= 0 else -1.0
    inside = np.ones((r1 - r0, c1 - c0), bool)
    for i in range(len(u)):
        j = (i + 1) % len(u)
        cr = (u[j] - u[i]) * (pv[:, None] - v[i]) - (v[j] - v[i]) * (pu[None, :] - u[i])
        inside &= sgn * cr >= 0
    img[r0:r1, c0:c1][inside] = color


def render_camera(spec, inp: SensorInput) -> np.ndarray:
    H, W = spec.camera_hw
    f, cx, cy, rows, GX, GY = _camera_geometry(H, W)
    img = np.zeros((H, W, 3))
    # Sky.
    tt = np.clip((np.arange(H) + 0.5) / max(cy, 1.0), 0, 1)[:, None]
    img[:] = (_SKY_TOP * (1 - tt) + _SKY_BOT * tt)[:, None, :]
    # Ground texture (0.25 m cells; asphalt / grass / zebra).
    x0, x1, y0, y1 = TEX_RANGE
    res = 0.5 if W < 200 else 0.2
    TH, TW = int((x1 - x0) / res), int((y1 - y0) / res)
    tgrid = (x1, y1, res, res, TH, TW)
    tex = raster_union(inp.drivable, *tgrid).astype(np.int8)
    if inp.crosswalks:
        stripes = []
        for cw in inp.crosswalks:
            cw = np.asarray(cw)
            a, bb = cw[0], cw[3]           # near edge from left to right
            a2 = cw[1]
            across = bb - a
            length = np.linalg.norm(across)
            nst = int(length // 1.0)
            for k in range(nst):
                t0, t1 = k / max(length, 1e-6), (k + 0.5) / max(length, 1e-6)
                p0, p1 = a + across * t0, a + across * t1
                along = a2 - a
                stripes.append(np.array([p0, p1, p1 + along, p0 + along]))
        tex[raster_union([ccw(s) for s in stripes], *tgrid)] = 2
    ri = np.floor((x1 - GX) / res).astype(np.int64)
    ci = np.floor((y1 - GY) / res).astype(np.int64)
    ok = (ri >= 0) & (ri < TH) & (ci >= 0) & (ci < TW)
    cls = np.where(ok, tex[np.clip(ri, 0, TH - 1), np.clip(ci, 0, TW - 1)], 0)
    palette = np.stack([_GRASS, _ASPHALT, _ZEBRA])
    ground = palette[cls]
    haze = np.clip((GX - 20.0) / 120.0, 0.0, 0.8)[..., None]
    ground = ground * (1 - haze) + _HAZE * haze
    img[rows] = ground
    # Lane markings (0.15 m wide paint; thicker than a pixel near the camera).
    pts, sty = _marking_points(inp.markings, 0.25 if W < 512 else 0.1)
    if len(pts):
        d = pts[:, 0] - CAM_X
        keep = (d > 1.0) & (d < 80.0)
        pts, sty, d = pts[keep], sty[keep], d[keep]
        u = cx - f * pts[:, 1] / d
        v = cy + f * CAM_Z / d
        wpx = np.clip(np.round(f * 0.15 / d).astype(np.int64), 1, 9)
        col = np.where((sty == 2)[:, None], np.array([230, 200, 40.0]), np.array([235, 235, 235.0]))
        vi = np.floor(v).astype(np.int64)
        for k in range(int(wpx.max()) if len(wpx) else 0):
            sel = wpx > k
            ui = np.floor(u[sel] - 0.5 * wpx[sel] + k + 0.5).astype(np.int64)
            ok = (ui >= 0) & (ui < W) & (vi[sel] >= 0) & (vi[sel] < H)
            img[vi[sel][ok], ui[ok]] = col[sel][ok]
    # Boxes, far to near.
    if len(inp.boxes):
        corners = box_corners(inp.boxes)                  # [n, 4, 2] CCW
        depth = inp.boxes[:, 0] - CAM_X
        light_dir = np.array([0.5, 0.8])
        light_dir /= np.linalg.norm(light_dir)
        for i in np.argsort(-depth):
            cn = corners[i]
            if np.any(cn[:, 0] - CAM_X < 0.3) or depth[i] > 120.0:
                continue
            h = inp.heights[i]
            base = np.asarray(inp.colors[i], np.float64)
            ub, vb, _ = _project(f, cx, cy, cn[:, 0], cn[:, 1], np.zeros(4))
            ut, vt, _ = _project(f, cx, cy, cn[:, 0], cn[:, 1], np.full(4, h))
            if max(ub.max(), ut.max()) < 0 or min(ub.min(), ut.min()) > W:
                continue
            for k in range(4):
                j = (k + 1) % 4
                e = cn[j] - cn[k]
                nrm = np.array([e[1], -e[0]])
                nrm /= max(np.linalg.norm(nrm), 1e-9)
                mid = 0.5 * (cn[j] + cn[k])
                if np.dot(nrm, np.array([CAM_X, 0.0]) - mid) <= 0:
                    continue
                shade = 0.55 + 0.4 * max(0.0, float(np.dot(nrm, light_dir)))
                quad = np.array([[ub[k], vb[k]], [ub[j], vb[j]], [ut[j], vt[j]], [ut[k], vt[k]]])
                _fill_convex(img, quad, base * shade)
            if h < CAM_Z:
                _fill_convex(img, np.stack([ut, vt], -1), np.minimum(base * 1.1, 255))
    # Traffic-light heads facing the ego.
    for p, hd, red in inp.lights:
        d = p[0] - CAM_X
        if d < 2.0 or abs(np.angle(np.exp(1j * hd))) > 0.6:
            continue
        u = cx - f * p[1] / d
        v = cy - f * (4.5 - CAM_Z) / d
        half = max(0.6, f * 0.35 / d)
        housing = np.array([[u - half, v - 2.2 * half], [u + half, v - 2.2 * half], [u + half, v + 2.2 * half],
                            [u - half, v + 2.2 * half]])
        _fill_convex(img, housing, np.array([25, 25, 25.0]))
        lamp_v = v - 1.1 * half if red else v + 1.1 * half
        lamp = np.array([[u - half, lamp_v - half], [u + half, lamp_v - half], [u + half, lamp_v + half],
                         [u - half, lamp_v + half]])
        _fill_convex(img, lamp, np.array([235, 40, 30.0]) if red else np.array([40, 230, 80.0]))
    return np.clip(img, 0, 255).astype(np.uint8)
