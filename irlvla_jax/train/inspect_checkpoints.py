"""``irlvla checkpoints --workdir DIR``: every run's checkpoint steps with their integrity status.

For each run folder under ``<workdir>/checkpoints`` (``il``, ``rwm``, ``ppo_rwm``, ...), every step is
restored as saved and checked against the digest written at save time and for finiteness
(:func:`irlvla_jax.train.checkpoint.verify_directory`); set-aside damaged steps are listed too. Prints one
line per step and a final JSON line of the counts; exit code 0 even when a step is damaged (training
falls back to the newest intact step by itself).
"""
from __future__ import annotations

import json
import os

from irlvla_jax.errors import UserError


def main(config, workdir: str, args):
    from irlvla_jax.train.checkpoint import verify_directory
    root = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(root):
        raise UserError(f"no checkpoints folder in {workdir}; train a stage first (irlvla train --stage il ...)")
    counts = {}
    for run in sorted(os.listdir(root)):
        folder = os.path.join(root, run)
        if not os.path.isdir(folder):
            continue
        for row in verify_directory(folder):
            status = row["status"]
            print(f"{run:16s} {str(row['step']):>8s}  {status}")
            key = status.split(":")[0].split(" (")[0]
            counts[key] = counts.get(key, 0) + 1
    print(json.dumps({"checkpoints": counts}))
    return counts
