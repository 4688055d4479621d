"""JAX scorer vs the independent reference on generated world scenes (shared by the test and the benchmark).

``run_agreement`` generates ``n_scenes`` scenes (``irlvla_jax.world.generate.generate_scene``), builds 16
plans per scene (tests/reference/trajectories.py), gives every other scene a previous-frame plan (EC), and
scores everything with both scorers in one mode. "Equal": identical discrete sub-scores (|delta| < 1e-4,
the JAX scorer is float32) and |delta EP| <= 0.01.
"""
from __future__ import annotations

import time
from typing import Dict, List

import numpy as np

from irlvla_jax import scene as S
from tests.reference import epdms_ref as R
from tests.reference import trajectories as TR

KEYS = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC")
EP_TOL, EXACT_TOL = 0.01, 1e-4


def make_inputs(spec, n_scenes: int, split: str = "test", seed: int = 0, start: int = 0):
    from irlvla_jax.world.generate import generate_scene
    scenes, trajs, prevs, has_prev = [], [], [], []
    for i in range(start, start + n_scenes):
        sc = generate_scene(spec, seed, i, split)
        rng = np.random.default_rng([seed, 7, i])
        tr = TR.trajectory_set(sc, rng)
        scenes.append(sc)
        trajs.append(tr)
        prevs.append(TR.previous_plans(sc, tr, rng))
        has_prev.append(i % 2 == 1)
    return scenes, np.stack(trajs), np.stack(prevs), np.array(has_prev)


def jax_scores(scenes, trajs, prevs, has_prev, mode: str, chunk: int = 8, human_filter: bool = True):
    """[B, 16] dicts of numpy arrays from the JAX scorer, scored in fixed-size chunks (one compile)."""
    import jax
    from irlvla_jax.scoring import epdms
    fn = jax.jit(lambda sc, tr, pv, hp: epdms.score(sc, tr, pv, mode=mode, human_filter=human_filter,
                                                     has_prev=hp))
    out: Dict[str, List[np.ndarray]] = {k: [] for k in KEYS + ("EPDMS",)}
    b = len(scenes)
    for s0 in range(0, b, chunk):
        idx = [min(i, b - 1) for i in range(s0, s0 + chunk)]
        batch = S.stack([scenes[i] for i in idx])
        r = fn(batch, trajs[idx], prevs[idx], has_prev[idx])
        n = min(chunk, b - s0)
        for k in out:
            out[k].append(np.asarray(getattr(r, k))[:n])
    return {k: np.concatenate(v, 0) for k, v in out.items()}


def ref_scores(scenes, trajs, prevs, has_prev, mode: str, human_filter: bool = True, progress: bool = False):
    out = {k: np.zeros(trajs.shape[:2]) for k in KEYS + ("EPDMS",)}
    it = range(len(scenes))
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"reference ({mode})")
    for i in it:
        sc = R.SceneScorer(scenes[i], mode)
        for j in range(trajs.shape[1]):
            r = sc.score(trajs[i, j], prevs[i, j] if has_prev[i] else None, human_filter=human_filter)
            for k in out:
                out[k][i, j] = r[k]
    return out


def compare(jx, rf, scene_ids=None) -> dict:
    agree, bad = {}, []
    for k in KEYS:
        tol = EP_TOL if k == "EP" else EXACT_TOL
        eq = np.abs(jx[k] - rf[k]) <= tol
        agree[k] = float(eq.mean())
        for i, j in zip(*np.nonzero(~eq)):
            bad.append({"scene": int(i if scene_ids is None else scene_ids[i]), "traj": int(j), "sub": k,
                        "jax": float(jx[k][i, j]), "reference": float(rf[k][i, j])})
    d = np.abs(jx["EPDMS"] - rf["EPDMS"])
    return {"agreement": agree, "mean_abs_delta_epdms": float(d.mean()), "max_abs_delta_epdms": float(d.max()),
            "disagreements": bad, "cases": int(d.size)}


def run_agreement(spec, n_scenes: int, mode: str = "tracked", split: str = "test", seed: int = 0,
                  chunk: int = 8, progress: bool = False) -> dict:
    t0 = time.time()
    scenes, trajs, prevs, has_prev = make_inputs(spec, n_scenes, split, seed)
    t1 = time.time()
    jx = jax_scores(scenes, trajs, prevs, has_prev, mode, chunk)
    t2 = time.time()
    rf = ref_scores(scenes, trajs, prevs, has_prev, mode, progress=progress)
    t3 = time.time()
    res = compare(jx, rf, [int(np.asarray(s.scene_id)) for s in scenes])
    res.update({"mode": mode, "scenes": n_scenes, "trajectories_per_scene": int(trajs.shape[1]),
                "seconds": {"generate": round(t1 - t0, 2), "jax_incl_compile": round(t2 - t1, 2),
                            "reference": round(t3 - t2, 2)}})
    return res
