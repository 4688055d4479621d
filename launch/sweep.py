"""Ablation sweep launcher: the Cartesian product of config overrides, one run (workdir) per point.

    python launch/sweep.py --config configs/tiny.py --workdir runs/sweep --stage ppo \
        --grid ppo.reward=rwm,scorer --grid ppo.objective=denoise,choice [--launcher local|slurm|print]

Each run's workdir is <workdir>/<key>=<value>,... so results never collide and a re-run resumes.
``print`` (default) only lists the commands; ``local`` runs them one after another; ``slurm`` submits
each with launch/slurm.sbatch.
"""
from __future__ import annotations

import argparse
import itertools
import os
import shlex
import subprocess
import sys


def parse_grid(items):
    grid = []
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--grid {item!r}: expected KEY=V1,V2,... (e.g. ppo.bc_weight=0.0,0.1)")
        key, vals = item.split("=", 1)
        values = [v for v in vals.split(",") if v != ""]
        if not values:
            raise SystemExit(f"--grid {item!r}: no values after '='")
        grid.append((key.strip(), values))
    return grid


def commands(config, workdir, stage, grid, command="train"):
    keys = [k for k, _ in grid]
    for point in itertools.product(*[v for _, v in grid]):
        name = ",".join(f"{k}={v}" for k, v in zip(keys, point)) or "default"
        argv = ["irlvla", command, "--config", config, "--workdir", os.path.join(workdir, name)]
        if stage:
            argv += ["--stage", stage]
        argv += [f"--config.{k}={v}" for k, v in zip(keys, point)]
        yield name, argv


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--stage", default=None)
    ap.add_argument("--command", default="train")
    ap.add_argument("--grid", action="append", default=[])
    ap.add_argument("--launcher", choices=("print", "local", "slurm"), default="print")
    a = ap.parse_args(argv)
    runs = list(commands(a.config, a.workdir, a.stage, parse_grid(a.grid), a.command))
    failed = 0
    for name, cmd in runs:
        line = " ".join(shlex.quote(c) for c in cmd)
        if a.launcher == "print":
            print(line)
        elif a.launcher == "local":
            print(f"[sweep] {name}: {line}", flush=True)
            failed += subprocess.call(cmd) != 0
        else:
            here = os.path.dirname(os.path.abspath(__file__))
            subprocess.check_call(["sbatch", os.path.join(here, "slurm.sbatch")] + cmd[1:])
    if failed:
        print(f"[sweep] {failed} of {len(runs)} runs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
