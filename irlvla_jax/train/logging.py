"""Training logs: TensorBoard scalars (tensorboardX) per stage, tqdm progress, a JSON-lines history.

Event files go to ``<workdir>/tb/<stage>``; ``<workdir>/<stage>_metrics.jsonl`` keeps every logged
scalar dict (step, wall time) for scripts and reports. Only process 0 writes.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict

import jax
import numpy as np


_SHOWN = ("loss", "traj_l1", "mode_acc", "ADE", "FDE", "EPDMS")


def quiet_libraries() -> None:
    """Orbax logs every save at INFO through absl; keep the console for progress bars and results."""
    try:
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    except ImportError:  # pragma: no cover
        pass


class Logger:
    def __init__(self, workdir: str, stage: str, total_steps: int = 0, initial: int = 0, enable_tqdm: bool = True):
        self.main = jax.process_index() == 0
        self.writer = None
        self.bar = None
        self.t0 = time.time()
        self.path = os.path.join(workdir, f"{stage}_metrics.jsonl")
        if self.main:
            from tensorboardX import SummaryWriter
            self.writer = SummaryWriter(os.path.join(workdir, "tb", stage))
            if enable_tqdm:
                from tqdm import tqdm
                self.bar = tqdm(total=total_steps, initial=initial, desc=stage, dynamic_ncols=True)

    def scalars(self, step: int, values: Dict[str, float], prefix: str = "") -> Dict[str, float]:
        """Log a dict of scalars (jax/numpy scalars are converted) at ``step``; returns the float dict."""
        vals = {f"{prefix}{k}": float(np.asarray(v)) for k, v in values.items()}
        if self.main:
            for k, v in vals.items():
                self.writer.add_scalar(k, v, step)
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": int(step), "time": time.time() - self.t0, **vals}) + "\n")
            if self.bar is not None:
                pri = [k for k in vals if k.split("/")[-1] in _SHOWN] or list(vals)[:4]
                shown = {k.split("/")[-1]: f"{vals[k]:.3g}" for k in pri}
                self.bar.set_postfix(shown, refresh=False)
        return vals

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()


def read_metrics(workdir: str, stage: str):
    """All logged rows of a stage (list of dicts), or [] if none."""
    path = os.path.join(workdir, f"{stage}_metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
