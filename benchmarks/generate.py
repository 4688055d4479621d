"""Benchmark of dataset generation: scenes/s for the tiny and base scene sizes, one process vs a pool.

    python benchmarks/generate.py [--tiny N] [--base N] [--workers W]

Prints one JSON line. Per size: scenes/s of the full ``generate_dataset`` path (world generation,
validation, encoding, TFDS array_record writing, anchors) in one process and with W spawned workers,
their ratio (the baseline is the single process, measured in the same run), record size, and a CPU
breakdown per scene measured in this process (world generation vs validation vs encoding), so the
writer's overhead can be told apart from the world's cost even on a loaded machine.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))


def _config(name, n, workers):
    from irlvla_jax.config import load_config
    c = load_config(os.path.join(os.path.dirname(__file__), "..", "configs", f"{name}.py"))
    split = {"num_train": n, "num_val": max(1, n // 8), "num_test": max(1, n // 8), "num_hard": max(1, n // 8)}
    for k, v in split.items():
        c.data[k] = v
    c.data.num_anchors = min(int(c.data.num_anchors), n)
    c.data.workers = workers
    return c


def _breakdown(cfg, n):
    from irlvla_jax.data.records import encode_scene
    from irlvla_jax.scene import SceneSpec, validate
    from irlvla_jax.world.generate import generate_scene
    spec = SceneSpec.from_config(cfg.scene)
    gen = val = enc = 0.0
    size = 0
    generate_scene(spec, 123, 0, "val")  # warm-up (imports, caches)
    for i in range(n):
        t = time.process_time()
        s = generate_scene(spec, 0, i, "train")
        t1 = time.process_time()
        validate(s, spec)
        t2 = time.process_time()
        r = encode_scene(s)
        t3 = time.process_time()
        gen, val, enc, size = gen + t1 - t, val + t2 - t1, enc + t3 - t2, size + len(r)
    return {"world_cpu_ms": round(1e3 * gen / n, 2), "validate_cpu_ms": round(1e3 * val / n, 2),
            "encode_cpu_ms": round(1e3 * enc / n, 2), "kib_per_record": round(size / n / 1024, 1)}


def _run(cfg, workers):
    from irlvla_jax.data.tfds_builder import generate_dataset
    d = tempfile.mkdtemp(prefix="irlvla_bench_")
    try:
        t = time.time()
        c0 = time.process_time()
        meta = generate_dataset(cfg, d, workers=workers, progress=False, force=True)
        wall = time.time() - t
        parent_cpu = time.process_time() - c0
        total = sum(meta["sizes"].values())
        return {"scenes": total, "wall_s": round(wall, 2), "scenes_per_s": round(total / wall, 2),
                "parent_cpu_ms_per_scene": round(1e3 * parent_cpu / total, 2),
                "kib_per_scene_on_disk": round(meta["bytes_on_disk"] / total / 1024, 1)}
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", type=int, default=96, help="train scenes of the tiny spec (+1/8 per other split)")
    ap.add_argument("--base", type=int, default=8, help="train scenes of the base spec (0 = skip)")
    ap.add_argument("--workers", type=int, default=2)
    a = ap.parse_args()
    out = {"benchmark": "generate", "cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2)}
    for name, n in (("tiny", a.tiny), ("base", a.base)):
        if n <= 0:
            continue
        cfg = _config(name, n, a.workers)
        r = {"breakdown": _breakdown(cfg, min(n, 16))}
        r["one_process"] = _run(cfg, 0)
        r[f"{a.workers}_workers"] = _run(cfg, a.workers)
        r["ratio_vs_one_process"] = round(r[f"{a.workers}_workers"]["scenes_per_s"]
                                          / r["one_process"]["scenes_per_s"], 2)
        out[name] = r
    print(json.dumps(out))


if __name__ == "__main__":
    main()
