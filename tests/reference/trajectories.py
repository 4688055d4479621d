"""The 16 candidate trajectories per scene used to compare the JAX scorer with the reference.

Per scene (numpy, ego frame, 8 poses at 0.5 ... 4.0 s): 0 expert; 1-7 perturbed expert (lateral offsets
+-0.5 / +-1.5 m reached over 2 s, speed x0.6 and x1.3, 0.15 m pose noise); 8-13 random smooth plans
(integrated random accelerations and yaw rates); 14 constant velocity (ego vx); 15 stand still.
Previous-frame plans (for EC): the same plan seen 0.5 s earlier, in the ego frame at -0.5 s, plus noise.
"""
from __future__ import annotations

import numpy as np

T8 = np.arange(1, 9) * 0.5
N_TRAJ = 16


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def _headings_from_xy(xy, h0=0.0):
    d = np.diff(np.concatenate([np.zeros((1, 2)), xy], 0), axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    moving = np.linalg.norm(d, axis=-1) > 0.05
    out = np.empty(len(xy))
    last = h0
    for i in range(len(xy)):
        last = h[i] if moving[i] else last
        out[i] = last
    return out


def _lateral(expert, off):
    ramp = np.clip(T8 / 2.0, 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)
    h = expert[:, 2]
    out = expert.copy()
    out[:, 0] -= np.sin(h) * off * ramp
    out[:, 1] += np.cos(h) * off * ramp
    out[:, 2] = _headings_from_xy(out[:, :2])
    return out


def _speed(expert, k):
    # resample the expert path at k x its arc length per time
    xy = np.concatenate([np.zeros((1, 2)), expert[:, :2]], 0)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=-1))])
    if s[-1] < 1e-3:
        return expert.copy()
    ext = xy[-1] + (xy[-1] - xy[-2]) / max(np.linalg.norm(xy[-1] - xy[-2]), 1e-6) * np.linspace(0, s[-1], 9)[1:, None]
    xy2 = np.concatenate([xy, ext], 0)
    s2 = np.concatenate([s, s[-1] + np.linspace(0, s[-1], 9)[1:]])
    q = np.clip(s[1:] * k, 0, s2[-1])
    out = np.stack([np.interp(q, s2, xy2[:, 0]), np.interp(q, s2, xy2[:, 1]), np.zeros(8)], -1)
    out[:, 2] = _headings_from_xy(out[:, :2])
    return out


def _random_smooth(rng, v0):
    dt = 0.1
    a = np.cumsum(rng.normal(0, 0.6, 40)) * 0.3 + rng.normal(0, 1.0)
    w = np.cumsum(rng.normal(0, 0.03, 40)) + rng.normal(0, 0.08)
    v, h, x, y = v0, 0.0, 0.0, 0.0
    poses = []
    for k in range(40):
        v = max(0.0, v + a[k] * dt)
        h += w[k] * dt
        x += v * np.cos(h) * dt
        y += v * np.sin(h) * dt
        if (k + 1) % 5 == 0:
            poses.append((x, y, h))
    return np.array(poses)


def trajectory_set(scene, rng: np.random.Generator) -> np.ndarray:
    """[16, 8, 3] float32 candidate plans for one numpy Scene."""
    expert = np.asarray(scene.expert_future, np.float64)
    v0 = float(np.asarray(scene.ego_state)[3])
    out = [expert, _lateral(expert, 0.5), _lateral(expert, -0.5), _lateral(expert, 1.5), _lateral(expert, -1.5),
           _speed(expert, 0.6), _speed(expert, 1.3)]
    noisy = expert.copy()
    noisy[:, :2] += rng.normal(0, 0.15, (8, 2))
    noisy[:, 2] += rng.normal(0, 0.02, 8)
    out.append(noisy)
    for _ in range(6):
        out.append(_random_smooth(rng, v0))
    out.append(np.stack([v0 * T8, np.zeros(8), np.zeros(8)], -1))
    out.append(np.zeros((8, 3)))
    return np.stack(out).astype(np.float32)


def previous_plans(scene, trajs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 8, 3] previous-frame plans in the ego frame at -0.5 s: the current plan 0.5 s earlier, plus noise."""
    past = np.asarray(scene.ego_past, np.float64)
    ox, oy, oh = past[10, :3]
    c, s = np.cos(-oh), np.sin(-oh)
    prev = []
    for tr in np.asarray(trajs, np.float64):
        seq = np.concatenate([np.zeros((1, 3)), tr[:-1]], 0)  # poses at 0.0 ... 3.5 s (t0 frame)
        seq = seq + np.concatenate([rng.normal(0, 0.1, (8, 2)), np.zeros((8, 1))], 1)
        dx, dy = seq[:, 0] - ox, seq[:, 1] - oy
        prev.append(np.stack([c * dx - s * dy, s * dx + c * dy, _wrap(seq[:, 2] - oh)], -1))
    return np.stack(prev).astype(np.float32)
