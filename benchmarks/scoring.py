"""Scoring throughput: the batched JAX EPDMS scorer vs the independent numpy+shapely reference scorer
(tests/reference, one trajectory at a time) on the same inputs: the official test-vector scenes and their
18 proposals per scene (previous plans included for EC). Compilation is excluded (timed separately).

    python benchmarks/scoring.py [--mode tracked|direct] [--scenes 30] [--ref-scenes 2] [--chunk 15]

Prints one JSON line: trajectories/s of both, their ratio, and the compile time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="tracked", choices=["tracked", "direct"])
    ap.add_argument("--scenes", type=int, default=30, help="scenes scored by the JAX scorer (timed)")
    ap.add_argument("--ref-scenes", type=int, default=2, help="scenes scored by the reference (timed)")
    ap.add_argument("--chunk", type=int, default=15, help="scenes per jitted call")
    a = ap.parse_args()

    import jax
    from tqdm import tqdm
    from irlvla_jax import scene as S
    from irlvla_jax.data import vectors as V
    from irlvla_jax.scoring import epdms
    from tests.scoring.vector_data import vectors_dir
    names, scenes, props, prevs, has = V.load_vectors(vectors_dir())
    n_traj = props.shape[1]

    fn = epdms.make_scorer(a.mode, True)
    idx0 = np.arange(a.chunk) % len(names)
    args0 = (S.index(scenes, idx0), props[idx0], prevs[idx0], has[idx0])
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args0))
    compile_s = time.perf_counter() - t0
    n_calls = max(1, a.scenes // a.chunk)
    batches = []
    for c in range(n_calls):
        idx = (np.arange(a.chunk) + c * a.chunk) % len(names)
        batches.append((S.index(scenes, idx), props[idx], prevs[idx], has[idx]))
    t0 = time.perf_counter()
    for b in tqdm(batches, desc=f"jax ({a.mode})"):
        out = fn(*b)
    jax.block_until_ready(out)
    jax_s = time.perf_counter() - t0
    jax_rate = n_calls * a.chunk * n_traj / jax_s

    from tests.reference import epdms_ref as R
    t0 = time.perf_counter()
    n_ref = 0
    for i in tqdm(range(a.ref_scenes), desc=f"reference ({a.mode})"):
        sc = R.SceneScorer(S.index(scenes, i), a.mode)
        for j in range(n_traj):
            sc.score(props[i, j], prevs[i, j] if has[i] else None, human_filter=True)
            n_ref += 1
    ref_s = time.perf_counter() - t0
    ref_rate = n_ref / ref_s
    print(json.dumps({"benchmark": "scoring", "mode": a.mode, "device": jax.devices()[0].platform,
                      "jax_traj_per_s": round(jax_rate, 2), "reference_traj_per_s": round(ref_rate, 3),
                      "ratio": round(jax_rate / ref_rate, 1), "jax_trajectories": n_calls * a.chunk * n_traj,
                      "reference_trajectories": n_ref, "compile_s": round(compile_s, 1),
                      "official_devkit_traj_per_s_reported": 8.0,
                      "ratio_vs_official_reported": round(jax_rate / 8.0, 1)}))


if __name__ == "__main__":
    main()
