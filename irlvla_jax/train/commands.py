"""``irlvla train --stage il|rwm|ppo``: dispatch to the stage's ``train(config, workdir)``.

Stage modules are imported lazily: ``il`` -> :mod:`irlvla_jax.train.imitation`, ``rwm`` ->
``irlvla_jax.train.reward``, ``ppo`` -> ``irlvla_jax.train.ppo`` (RL helper).
"""
from __future__ import annotations

import importlib
import json

STAGES = {"il": "irlvla_jax.train.imitation", "rwm": "irlvla_jax.train.reward", "ppo": "irlvla_jax.train.ppo"}


def train(config, workdir: str, args):
    stage = getattr(args, "stage", None)
    if stage not in STAGES:
        from irlvla_jax.cli import UserError
        raise UserError(f"--stage {stage!r}: choose one of {sorted(STAGES)} (e.g. --stage il)")
    mod = importlib.import_module(STAGES[stage])
    if stage == "il":
        out = mod.train(config, workdir, args)
        summary = {k: v for k, v in out.items() if k != "state"}
        print(json.dumps({"stage": "il", **summary}, default=float))
        return summary
    return mod.train(config, workdir)
