"""JAX scorer vs the independent numpy reference on >= 500 generated scenes x 16 plans, both modes.

    python benchmarks/agreement.py [--scenes 500] [--modes tracked,direct] [--split test] [--seed 0]

Prints progress, the worst disagreements, and one JSON line per run with the agreement per sub-score, the
mean |delta EPDMS| and the speed ratio (reference seconds per plan / JAX seconds per plan, compile
included, measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from irlvla_jax.scene import SceneSpec  # noqa: E402
from tests.reference import agreement as A  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--modes", default="tracked,direct")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--config", default="configs/tiny.py")
    a = ap.parse_args()
    from irlvla_jax.config import load_config
    spec = SceneSpec.from_config(load_config(a.config).scene)
    for mode in a.modes.split(","):
        res = A.run_agreement(spec, a.scenes, mode=mode, split=a.split, seed=a.seed, chunk=a.chunk,
                              progress=True)
        bad = res.pop("disagreements")
        for b in bad[:30]:
            print("disagreement", json.dumps(b), file=sys.stderr)
        n = res["cases"]
        sec = res["seconds"]
        res["num_disagreements"] = len(bad)
        res["speed_ratio_jax_vs_reference"] = round(sec["reference"] / max(sec["jax_incl_compile"], 1e-9), 2)
        res["passed"] = bool(all(v >= 0.99 for v in res["agreement"].values())
                             and res["mean_abs_delta_epdms"] < 0.005)
        res["reference_seconds_per_plan"] = round(sec["reference"] / n, 4)
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
