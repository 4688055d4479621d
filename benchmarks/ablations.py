"""The paper's ablations on tiny, 3 seeds, one reduced training budget for every row -> docs/ablations.md.

    python benchmarks/ablations.py --workdir runs/ablations [--seeds 0,1,2] [--data_dir DIR]

Rows (each a config file a user can run: ``configs/default.py:<variant>`` plus the budget below):
  full         tiny         RL with the RWM reward (``ppo_rwm``)
  il_only      tiny         the IL policy of the full method's run (no RL)
  rl_scorer    rl_scorer    RL with the true scorer's reward (``ppo_scorer``; the full method's IL)
  no_semantic  no_semantic  no meta tokens to the planner, no meta-action loss; IL -> RWM -> RL (RWM)
  no_3d        no_3d        no BEV / object / map tokens to the planner; IL -> RWM -> RL (RWM)
  regression   regression   a regression head (one pass from the clean anchors) instead of diffusion; IL
Rows that share a stage with the full method reuse its checkpoints (il_only, rl_scorer). Every run trains
with ``BUDGET`` (the same for every row) on the dataset generated once (``irlvla generate``, tiny, seed 0)
and is evaluated on the first ``--scenes`` test scenes (tracked scoring). Each (variant, seed) trains in a
subprocess through the ``irlvla`` CLI (resumable: finished stages are skipped), then the rows' policies are
scored in-process and every row's per-scene EPDMS and sub-scores are kept (``<workdir>/scores.npz``).
The table: per row, the mean over seeds of the mean EPDMS with a 95% t-interval over the seed means, the
nine sub-scores, and the paired difference to the full method (per scene and seed, percentile bootstrap).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

ROWS = (("full", "tiny", "ppo_rwm"), ("il_only", "tiny", "il"), ("rl_scorer", "rl_scorer", "ppo_scorer"),
        ("no_semantic", "no_semantic", "ppo_rwm"), ("no_3d", "no_3d", "ppo_rwm"), ("regression", "regression", "il"))
BUDGET = {"il.steps": 500, "il.val_every": 500, "il.checkpoint_every": 250, "rwm.steps": 300,
          "rwm.checkpoint_every": 100, "ppo.updates": 100, "ppo.checkpoint_every": 50}
# variant -> the stages it trains (rl_scorer trains its PPO in the full method's workdir: same IL and data)
STAGES = {"tiny": ("il", "rwm", "ppo"), "no_semantic": ("il", "rwm", "ppo"), "no_3d": ("il", "rwm", "ppo"),
          "regression": ("il",)}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776}


def overrides(data_dir: str, seed: int):
    return [f"--config.{k}={v}" for k, v in BUDGET.items()] + [
        f"--config.data.data_dir={data_dir}", "--config.data.world_seed=0", f"--config.seed={seed}"]


def cli(args):
    print("+ irlvla " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "irlvla_jax.cli"] + args, check=True, cwd=ROOT)


def train(workdir: str, data_dir: str, seed: int) -> None:
    for variant, stages in STAGES.items():
        wd = os.path.join(workdir, variant, f"seed_{seed}")
        for st in stages:
            done = os.path.join(wd, f"done_{st}")
            if not os.path.exists(done):
                cli(["train", "--stage", st, "--config", f"configs/default.py:{variant}", "--workdir", wd]
                    + overrides(data_dir, seed))
                open(done, "w").close()
    wd = os.path.join(workdir, "tiny", f"seed_{seed}")                 # rl_scorer: the full method's IL
    if not os.path.exists(os.path.join(wd, "done_ppo_scorer")):
        cli(["train", "--stage", "ppo", "--config", "configs/default.py:rl_scorer", "--workdir", wd]
            + overrides(data_dir, seed))
        open(os.path.join(wd, "done_ppo_scorer"), "w").close()


def config_of(variant: str, data_dir: str, seed: int):
    from irlvla_jax.config import load_config
    c = load_config(os.path.join(ROOT, "configs", "default.py"), variant)
    for k, v in BUDGET.items():
        sec, key = k.split(".")
        c[sec][key] = type(c[sec][key])(v)
    c.data.data_dir, c.data.world_seed, c.seed = data_dir, 0, seed
    return c


def score(workdir: str, data_dir: str, seeds, n_scenes: int):
    from irlvla_jax import evaluate as E
    from irlvla_jax.data import loader as L
    from irlvla_jax.scoring.epdms import scorer_from_config
    from irlvla_jax.train import imitation, ppo
    out = {}
    for seed in seeds:
        cache = os.path.join(workdir, f"scores_seed{seed}_{n_scenes}.npz")      # a seed is scored once
        if os.path.exists(cache):
            out.update(dict(np.load(cache)))
            continue
        mine = {}
        scenes = None
        for row, variant, policy in ROWS:
            c = config_of(variant, data_dir, seed)
            wd = os.path.join(workdir, "tiny" if variant == "rl_scorer" else variant, f"seed_{seed}")
            if scenes is None:
                scenes = L.load_split(c, "test", data_dir=data_dir, limit=n_scenes)
            fn = imitation.policy(c, wd, seed=seed, chunk=32) if policy == "il" else ppo.policy(c, wd, seed=seed, chunk=32)
            scorer, _ = scorer_from_config(c)
            s = E.score_policy(scorer, scenes, fn(scenes), 32, desc=row)
            for k, v in s.items():
                mine[f"{row}/{seed}/{k}"] = v
            print(f"seed {seed} {row}: EPDMS {s['EPDMS'].mean():.4f}", flush=True)
        np.savez(cache, **mine)
        out.update(mine)
    return out


def table(scores, seeds, budget_note: str) -> str:
    from irlvla_jax.evaluate import COLUMNS, paired_difference
    lines = ["| row | config | policy | EPDMS (mean over seeds, 95% t-interval) | per seed | "
             + " | ".join(COLUMNS[1:]) + " | EPDMS - full (paired, 95% bootstrap) |",
             "|---|---|---|---|---|" + "---|" * (len(COLUMNS) - 1) + "---|"]
    res = {}
    for row, variant, policy in ROWS:
        per_seed = np.array([scores[f"{row}/{s}/EPDMS"].mean() for s in seeds])
        m, sd = per_seed.mean(), per_seed.std(ddof=1) if len(seeds) > 1 else 0.0
        h = T_975.get(len(seeds) - 1, 1.96) * sd / np.sqrt(len(seeds)) if len(seeds) > 1 else float("nan")
        subs = {c: float(np.mean([scores[f"{row}/{s}/{c}"].mean() for s in seeds])) for c in COLUMNS[1:]}
        a = np.concatenate([scores[f"{row}/{s}/EPDMS"] for s in seeds])
        b = np.concatenate([scores[f"full/{s}/EPDMS"] for s in seeds])
        d = paired_difference(a, b, n_boot=2000, seed=0) if row != "full" else None
        res[row] = dict(config=f"configs/default.py:{variant}", policy=policy, epdms=m, lo=m - h, hi=m + h,
                        per_seed=per_seed.tolist(), subs=subs, diff_to_full=d)
        dtxt = "-" if d is None else f"{d['mean']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]"
        lines.append(f"| {row} | `{variant}` | {policy} | {m:.3f} [{m - h:.3f}, {m + h:.3f}] | "
                     + ", ".join(f"{v:.3f}" for v in per_seed) + " | "
                     + " | ".join(f"{subs[c]:.3f}" for c in COLUMNS[1:]) + f" | {dtxt} |")
    head = [f"Seeds {','.join(map(str, seeds))}; budget for every row: {budget_note}.", ""]
    return "\n".join(head + lines) + "\n", res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="runs/ablations")
    ap.add_argument("--data_dir", default="")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--train_only", action="store_true", help="train the seeds' runs, no table")
    ap.add_argument("--score_only", action="store_true", help="score the finished runs and write the table")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    wd = os.path.abspath(a.workdir)
    data_dir = os.path.abspath(a.data_dir or os.path.join(wd, "data"))
    if not a.data_dir and not a.score_only:
        cli(["generate", "--config", "configs/default.py:tiny", "--workdir", wd, f"--config.data.data_dir={data_dir}"])
    if not a.score_only:
        for s in seeds:
            train(wd, data_dir, s)
    if a.train_only:
        return
    path = os.path.join(wd, "scores.npz")
    scores = score(wd, data_dir, seeds, a.scenes)
    np.savez(path, **scores)
    note = ", ".join(f"{k}={v}" for k, v in BUDGET.items()) + f"; test split, first {a.scenes} scenes, tracked"
    md, res = table(scores, seeds, note)
    with open(os.path.join(wd, "ablations.md"), "w") as f:
        f.write(md)
    with open(os.path.join(wd, "ablations.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    print(md)
    print(json.dumps({"benchmark": "ablations", "rows": {k: round(v["epdms"], 4) for k, v in res.items()}}))


if __name__ == "__main__":
    main()
