"""``irlvla train --stage il|rwm|ppo``: dispatch to the stage module's ``train(config, workdir)``.

``il`` -> :mod:`irlvla_jax.train.imitation`, ``rwm`` -> :mod:`irlvla_jax.train.reward`, ``ppo`` ->
:mod:`irlvla_jax.train.ppo` (imported lazily). Prints the stage's summary as one JSON line.
"""
from __future__ import annotations

import importlib
import json

from irlvla_jax.errors import UserError

STAGES = {"il": "irlvla_jax.train.imitation", "rwm": "irlvla_jax.train.reward", "ppo": "irlvla_jax.train.ppo"}


def train(config, workdir: str, args):
    stage = getattr(args, "stage", None)
    if stage not in STAGES:
        raise UserError(f"--stage {stage!r}: choose one of {sorted(STAGES)} (e.g. --stage il)")
    out = importlib.import_module(STAGES[stage]).train(config, workdir)
    summary = {k: v for k, v in out.items() if k not in ("state", "history")}
    print(json.dumps({"stage": stage, **summary}, default=float))
    return summary
