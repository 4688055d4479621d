"""Benchmark: the cost of the checkpoint integrity record against a save, on the tiny and base IL states.

    python benchmarks/checkpoint.py [--configs tiny,base] [--iters 3]

For each config: the IL TrainState (model + AdamW state, random init) is saved synchronously ``iters``
times with the integrity record (train/checkpoint.py: CRC-32 + finiteness of every array), and the record
alone (``digest``) and its check on restore (``check_digest``) are timed on the same state. Prints one JSON
line with per-config seconds and the ratios digest / save and check / restore (the must-hold: <= 5%).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from irlvla_jax.config import load_config  # noqa: E402
from irlvla_jax.scene import SceneSpec  # noqa: E402
from irlvla_jax.train import imitation  # noqa: E402
from irlvla_jax.train.checkpoint import Checkpointer, check_digest, digest  # noqa: E402
from irlvla_jax.train.state import abstract_like  # noqa: E402
from irlvla_jax.train.synthetic import random_anchors  # noqa: E402


def bench(name: str, iters: int):
    c = load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py"), name)
    _, _, _, state = imitation.init_state(c, SceneSpec.from_config(c.scene), random_anchors(int(c.data.num_anchors)))
    jax.block_until_ready(state)
    nbytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))
    with tempfile.TemporaryDirectory() as d:
        ck = Checkpointer(d, async_save=False, max_to_keep=2)
        t0 = time.perf_counter()
        for s in range(1, iters + 1):
            ck.save(s, state)
        ck.wait()
        save_s = (time.perf_counter() - t0) / iters
        t0 = time.perf_counter()
        for _ in range(iters):
            restored, _ = ck.restore(abstract_like(state))
        restore_s = (time.perf_counter() - t0) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        dg = digest(state)
    digest_s = (time.perf_counter() - t0) / iters
    t0 = time.perf_counter()
    for _ in range(iters):
        check_digest(dg, restored, "bench")
    check_s = (time.perf_counter() - t0) / iters
    return dict(state_mb=round(nbytes / 2 ** 20, 1), save_s=save_s, digest_s=digest_s, restore_s=restore_s,
                check_s=check_s, digest_over_save=digest_s / save_s, check_over_restore=check_s / restore_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny,base")
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    res = {n: bench(n, a.iters) for n in a.configs.split(",") if n}
    print(json.dumps({"benchmark": "checkpoint_integrity", "results": res,
                      "ratio": max(r["digest_over_save"] for r in res.values())}))


if __name__ == "__main__":
    main()
