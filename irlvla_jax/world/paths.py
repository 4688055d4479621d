"""Polylines of the embedded world (numpy, world frame; metres, radians): the :class:`Path` every road,
lane, route and agent trajectory is built on, the point generators that shape them (straight, circular arc,
cubic Bezier), adaptive arc-length sampling (denser where the heading turns) and polygon orientation.

:class:`Path` is a dense polyline with arc length ``s``, unwrapped heading and curvature; ``at(s)``
interpolates (and extrapolates linearly past both ends), ``project(points)`` gives (s, lateral offset,
positive to the left).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from scipy.spatial import cKDTree


class Path:
    """Dense polyline ``xy`` [N, 2] (metres) with arc length ``s`` [N], heading ``h`` [N] (unwrapped,
    radians) and curvature ``k`` [N] (1/m)."""

    __slots__ = ("xy", "s", "h", "k", "length", "_tree")

    def __init__(self, xy):
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        d = np.diff(xy, axis=0)
        seg = np.hypot(d[:, 0], d[:, 1])
        keep = np.concatenate([[True], seg > 1e-6])
        if not keep.all():
            xy = xy[keep]
            d = np.diff(xy, axis=0)
            seg = np.hypot(d[:, 0], d[:, 1])
        if len(xy) < 2:
            raise ValueError("Path needs at least 2 distinct points")
        self.xy = xy
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.s[-1])
        hs = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        h = np.empty(len(xy))
        h[0], h[-1] = hs[0], hs[-1]
        h[1:-1] = 0.5 * (hs[:-1] + hs[1:])
        self.h = h
        self.k = np.gradient(h, self.s) if len(xy) > 2 else np.zeros(len(xy))
        self._tree = None

    def at(self, s) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, heading) at arc length(s) ``s`` (any shape); linear extrapolation past the ends."""
        s = np.asarray(s, np.float64)
        sc = np.clip(s, 0.0, self.length)
        x = np.interp(sc, self.s, self.xy[:, 0])
        y = np.interp(sc, self.s, self.xy[:, 1])
        h = np.interp(sc, self.s, self.h)
        extra = s - sc
        return x + extra * np.cos(h), y + extra * np.sin(h), h

    def curvature(self, s) -> np.ndarray:
        return np.interp(s, self.s, self.k)

    def offset_points(self, s, d) -> np.ndarray:
        """[..., 2] points at arc length ``s`` shifted ``d`` metres to the left."""
        x, y, h = self.at(s)
        return np.stack([x - np.sin(h) * d, y + np.cos(h) * d], -1)

    def project(self, pts) -> Tuple[np.ndarray, np.ndarray]:
        """Project points [M, 2] -> (s [M], lateral [M], positive left). Extrapolates past the ends.

        Nearest vertex by a KD-tree, then the better of its two adjacent segments (exact for dense,
        smooth polylines such as these paths)."""
        p = np.asarray(pts, np.float64).reshape(-1, 2)
        if self._tree is None:
            self._tree = cKDTree(self.xy)
        _, iv = self._tree.query(p)
        nseg = len(self.xy) - 1
        best_s = best_lat = best_d = None
        for i in (np.clip(iv - 1, 0, nseg - 1), np.clip(iv, 0, nseg - 1)):
            a = self.xy[i]
            ab = self.xy[i + 1] - a
            l2 = np.maximum((ab * ab).sum(-1), 1e-12)
            ap = p - a
            t = (ap * ab).sum(-1) / l2
            tc = np.clip(t, 0.0, 1.0)
            te = np.where((i == 0) & (t < 0), t, np.where((i == nseg - 1) & (t > 1), t, tc))
            diff = ap - tc[:, None] * ab
            dist = (diff * diff).sum(-1)
            seglen = np.sqrt(l2)
            s = self.s[i] + te * seglen
            lat = (ab[:, 0] * ap[:, 1] - ab[:, 1] * ap[:, 0]) / seglen
            if best_d is None:
                best_s, best_lat, best_d = s, lat, dist
            else:
                better = dist < best_d
                best_s = np.where(better, s, best_s)
                best_lat = np.where(better, lat, best_lat)
        return best_s, best_lat

    def sub(self, s0: float, s1: float, ds: float = 1.0) -> "Path":
        n = max(2, int(np.ceil((s1 - s0) / ds)) + 1)
        s = np.linspace(s0, s1, n)
        x, y, _ = self.at(s)
        return Path(np.stack([x, y], -1))


def straight_pts(p0, heading, length, ds=1.0) -> np.ndarray:
    n = max(2, int(np.ceil(length / ds)) + 1)
    t = np.linspace(0.0, length, n)
    return np.stack([p0[0] + t * np.cos(heading), p0[1] + t * np.sin(heading)], -1)


def arc_pts(p0, heading, radius, angle, ds=1.0) -> np.ndarray:
    """Arc from p0 with initial heading; ``angle`` > 0 turns left (counter-clockwise)."""
    length = abs(angle) * radius
    n = max(2, int(np.ceil(length / ds)) + 1)
    sgn = np.sign(angle)
    cx = p0[0] - sgn * radius * np.sin(heading)
    cy = p0[1] + sgn * radius * np.cos(heading)
    phi = np.linspace(0.0, angle, n)
    a0 = heading - sgn * np.pi / 2
    return np.stack([cx + radius * np.cos(a0 + phi), cy + radius * np.sin(a0 + phi)], -1)


def bezier_pts(p0, h0, p3, h3, ds=0.5) -> np.ndarray:
    """Cubic Bezier from (p0, heading h0) to (p3, heading h3); handles sized from the tangent corner."""
    p0 = np.asarray(p0, float)
    p3 = np.asarray(p3, float)
    d0 = np.array([np.cos(h0), np.sin(h0)])
    d3 = np.array([np.cos(h3), np.sin(h3)])
    chord = np.linalg.norm(p3 - p0)
    den = d0[0] * d3[1] - d0[1] * d3[0]
    if abs(den) < 1e-6:
        k0 = k3 = chord / 3.0
    else:
        r = p3 - p0
        t0 = (r[0] * d3[1] - r[1] * d3[0]) / den      # distance along d0 to the tangent corner
        t3 = (r[0] * d0[1] - r[1] * d0[0]) / den      # signed distance from p3 back along d3
        k0 = 0.5523 * max(abs(t0), 0.2 * chord)
        k3 = 0.5523 * max(abs(t3), 0.2 * chord)
    p1 = p0 + k0 * d0
    p2 = p3 - k3 * d3
    n = max(4, int(np.ceil(1.3 * chord / ds)) + 1)
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3) * p0 + 3 * ((1 - t) ** 2) * t * p1 + 3 * (1 - t) * t * t * p2 + (t ** 3) * p3


def adaptive_params(path: Path, s0: float, s1: float, n: int, alpha: float = 40.0) -> np.ndarray:
    """``n`` arc-length samples in [s0, s1], denser where the heading turns (cost = s + alpha·|Δh|)."""
    m = np.searchsorted(path.s, [s0, s1])
    ss = np.concatenate([[s0], path.s[m[0]:m[1]], [s1]])
    hh = np.interp(ss, path.s, path.h)
    cost = np.concatenate([[0.0], np.cumsum(np.diff(ss) + alpha * np.abs(np.diff(hh)))])
    if cost[-1] <= 0:
        return np.linspace(s0, s1, n)
    return np.interp(np.linspace(0.0, cost[-1], n), cost, ss)


def ccw(poly: np.ndarray) -> np.ndarray:
    """Return the polygon [k, 2] in counter-clockwise order."""
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)
    return poly if area >= 0 else poly[::-1].copy()
