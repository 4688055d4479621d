"""Trajectory anchors for the diffusion planner: k-means of the train split's expert futures.

``kmeans(x [N, 8, 3], k, seed) -> anchors [K, 8, 3]`` (metres, metres, radians; ego frame at t0).
Plain numpy Lloyd iterations after k-means++ seeding with ``np.random.default_rng(seed)``: the result
is a deterministic function of (x, k, seed). Distances are Euclidean over the flattened 24 numbers
(x, y in metres dominate; heading in radians matters little, which is what we want for anchors).
Empty clusters are re-seeded with the point farthest from its centre. Anchors are sorted by their
final x (longitudinal progress), then y, so that their order is canonical.
"""
from __future__ import annotations

import numpy as np


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 100, tol: float = 1e-6) -> np.ndarray:
    """x [N, ...] float -> centres [k, ...] float32 (k-means++ init, then Lloyd until stable)."""
    x = np.asarray(x, np.float64)
    if x.ndim < 2:
        raise ValueError(f"kmeans: expected x of shape [N, ...], got {x.shape}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: need 1 <= k <= N, got k={k}, N={n} (lower config.data.num_anchors)")
    if not np.all(np.isfinite(x)):
        raise ValueError("kmeans: input has non-finite values")
    flat = x.reshape(n, -1)
    rng = np.random.default_rng(seed)
    sq = np.einsum("nd,nd->n", flat, flat)

    def d2(c):  # [N, k] squared distances
        return np.maximum(sq[:, None] - 2 * flat @ c.T + np.einsum("kd,kd->k", c, c)[None], 0.0)

    centres = np.empty((k, flat.shape[1]))
    centres[0] = flat[rng.integers(n)]
    closest = d2(centres[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: take any (duplicates are allowed then)
            idx = int(rng.integers(n))
        else:
            idx = int(np.searchsorted(np.cumsum(closest), rng.random() * total, side="right"))
            idx = min(idx, n - 1)
        centres[j] = flat[idx]
        closest = np.minimum(closest, d2(centres[j:j + 1])[:, 0])
    for _ in range(iters):
        dist = d2(centres)
        assign = dist.argmin(1)
        new = np.zeros_like(centres)
        counts = np.bincount(assign, minlength=k)
        np.add.at(new, assign, flat)
        far = np.argsort(-dist[np.arange(n), assign], kind="stable")
        used = 0
        for j in range(k):
            if counts[j] > 0:
                new[j] /= counts[j]
            else:  # re-seed an empty cluster deterministically
                new[j] = flat[far[used]]
                used += 1
        shift = np.abs(new - centres).max()
        centres = new
        if shift <= tol:
            break
    out = centres.reshape((k,) + x.shape[1:])
    if out.ndim == 3:
        order = np.lexsort((out[:, -1, 1], out[:, -1, 0]))
        out = out[order]
    return out.astype(np.float32)


def compute_anchors(expert_futures: np.ndarray, num_anchors: int, seed: int = 0) -> np.ndarray:
    """expert_futures [N, 8, 3] -> anchors [K, 8, 3] float32 (K = num_anchors)."""
    ef = np.asarray(expert_futures)
    if ef.ndim != 3 or ef.shape[1:] != (8, 3):
        raise ValueError(f"anchors: expected expert futures [N, 8, 3], got {ef.shape}")
    return kmeans(ef, int(num_anchors), seed=seed)
