"""Numpy plane geometry for the NAVSIM adapter: SE(2) frame changes, point / polygon tests, polygon and
polyline fitting to a Scene's vertex budget, arc-length cropping and projection, state interpolation.

Everything is float64 numpy in metres and radians; nothing here knows about NAVSIM's formats.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np


def wrap_angle(a):
    """Angle(s) wrapped to (-pi, pi]."""
    return np.arctan2(np.sin(a), np.cos(a))


def quaternion_yaw(q) -> float:
    """Yaw (rad) of a (w, x, y, z) quaternion, pyquaternion's ``yaw_pitch_roll[0]`` (NAVSIM's ego heading)."""
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return float(np.arctan2(2.0 * (w * z - x * y), 1.0 - 2.0 * (y * y + z * z)))


def to_frame(xy: np.ndarray, pose) -> np.ndarray:
    """Points [..., 2] in the map frame -> the frame of ``pose`` = (x, y, heading)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    d = np.asarray(xy, np.float64) - np.asarray(pose[:2], np.float64)
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], -1)


def relative_pose(pose, origin) -> np.ndarray:
    """SE(2) pose(s) [..., 3] in the map frame -> the frame of ``origin`` (x, y, heading)."""
    pose = np.asarray(pose, np.float64)
    xy = to_frame(pose[..., :2], origin)
    return np.concatenate([xy, wrap_angle(pose[..., 2:3] - origin[2])], -1)


def point_polygon_distance(p: np.ndarray, poly: np.ndarray) -> float:
    """Distance (m) from point p [2] to polygon poly [k, 2] (0 inside)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    d = np.min(np.linalg.norm(a + t[:, None] * ab - p, axis=-1))
    return 0.0 if point_in_polygon(p, poly) else float(d)


def point_in_polygon(p: np.ndarray, poly: np.ndarray) -> bool:
    """Whether point p [2] lies inside polygon poly [k, 2] (even-odd ray casting)."""
    x, y = p
    xi, yi = poly[:, 0], poly[:, 1]
    xj, yj = np.roll(xi, 1), np.roll(yi, 1)
    cross = ((yi > y) != (yj > y)) & (x < (xj - xi) * (y - yi) / np.where(yj == yi, 1e-12, yj - yi) + xi)
    return bool(np.count_nonzero(cross) % 2)


def clean_ring(points: np.ndarray) -> np.ndarray:
    """Drop the closing vertex and consecutive duplicates of a polygon ring [k, 2]."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) > 1 and np.allclose(p[0], p[-1]):
        p = p[:-1]
    if len(p) > 1:
        keep = np.ones(len(p), bool)
        keep[1:] = np.any(np.abs(np.diff(p, axis=0)) > 1e-9, -1)
        p = p[keep]
    return p


def fit_polygon(points, n: int) -> np.ndarray:
    """A polygon ring [k, 2] reduced to at most n vertices (Visvalingam-Whyatt: repeatedly drop the vertex
    whose triangle with its neighbours has the smallest area). Keeps k <= n rings as they are."""
    p = clean_ring(points)
    idx = list(range(len(p)))
    while len(idx) > n:
        q = p[idx]
        prv, nxt = np.roll(q, 1, axis=0), np.roll(q, -1, axis=0)
        area = 0.5 * np.abs((q[:, 0] - prv[:, 0]) * (nxt[:, 1] - prv[:, 1])
                            - (nxt[:, 0] - prv[:, 0]) * (q[:, 1] - prv[:, 1]))
        del idx[int(np.argmin(area))]
    return p[idx]


def fit_polyline(points, n: int) -> np.ndarray:
    """A polyline [k, 2] with at most n points: unchanged if k <= n, else resampled to n points evenly
    spaced in arc length (end points kept)."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) > 1:
        keep = np.ones(len(p), bool)
        keep[1:] = np.linalg.norm(np.diff(p, axis=0), axis=-1) > 1e-9
        p = p[keep]
    if len(p) <= n:
        return p
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=-1))])
    si = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(si, s, p[:, 0]), np.interp(si, s, p[:, 1])], -1)


def arclength(p: np.ndarray) -> np.ndarray:
    """Cumulative arc length [k] (m) at each point of polyline p [k, 2], starting at 0."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=-1))])


def crop_polyline(p: np.ndarray, s_lo: float, s_hi: float) -> np.ndarray:
    """The part of polyline p [k, 2] with arc length in [s_lo, s_hi] (interpolated end points)."""
    s = arclength(p)
    s_lo, s_hi = max(s_lo, 0.0), min(s_hi, s[-1])
    inner = p[(s > s_lo) & (s < s_hi)]
    a = np.array([np.interp(s_lo, s, p[:, 0]), np.interp(s_lo, s, p[:, 1])])
    b = np.array([np.interp(s_hi, s, p[:, 0]), np.interp(s_hi, s, p[:, 1])])
    return np.concatenate([a[None], inner, b[None]], 0)


def project_on_polyline(p: np.ndarray, q: np.ndarray) -> Tuple[float, float]:
    """(arc length of the closest point of polyline p [k, 2] to point q [2], distance)."""
    a, b = p[:-1], p[1:]
    ab = b - a
    t = np.clip(np.sum((q - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    d = np.linalg.norm(a + t[:, None] * ab - q, axis=-1)
    i = int(np.argmin(d))
    s = arclength(p)
    return float(s[i] + t[i] * np.linalg.norm(ab[i])), float(d[i])


def interp_states(t_obs: np.ndarray, st: np.ndarray, t_new: np.ndarray) -> np.ndarray:
    """Linear interpolation of states [k, D] (column 2 = heading, unwrapped then wrapped) at t_new."""
    st = st.copy()
    st[:, 2] = np.unwrap(st[:, 2])
    out = np.stack([np.interp(t_new, t_obs, st[:, j]) for j in range(st.shape[1])], -1)
    out[:, 2] = wrap_angle(out[:, 2])
    return out
