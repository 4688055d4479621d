"""Reading scenes: CPU milliseconds per batch of the dataset readers, validating every record on its own (what the
readers did before 2026-12-07's dece746) against validating whole batches (``loader.decode_records``, the grain
loader's ``map(decode).batch().map(validate)``), on the same records, in one run.

    python benchmarks/loader.py --workdir runs/tiny [--config configs/tiny.py] [--split train] [--batch 32]
                                [--batches 40]

Needs a generated dataset (``irlvla generate``; the README main job makes one in ``runs/tiny/data``). Prints
one JSON line: CPU ms per batch of per-record validation, of batch validation, their ratio, and the grain
loader end to end (``make_loader``, one thread, no prefetch: all its work on this thread's CPU clock).
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
    ap.add_argument("--workdir", required=True, help="a workdir whose data/ holds the dataset (or --data-dir)")
    ap.add_argument("--data-dir", default="")
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "tiny.py"))
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--batches", type=int, default=40)
    a = ap.parse_args()
    from irlvla_jax.config import load_config
    from irlvla_jax.data import loader, records
    from irlvla_jax.scene import FIELDS, Scene, SceneSpec
    c = load_config(a.config)
    c.data.data_dir = a.data_dir or loader.data_dir(c, a.workdir)
    spec = SceneSpec.from_config(c.scene)
    import tensorflow_datasets as tfds
    meta = loader.open_dataset(c)          # the raw records, as the readers open them
    source = tfds.builder_from_directory(os.path.join(meta["path"], meta["tfds_dir"])).as_data_source(split=a.split)
    n = a.batch * a.batches
    if len(source) < n:
        raise SystemExit(f"split {a.split} has {len(source)} scenes, fewer than --batch x --batches = {n}")
    examples = [source[i] for i in range(n)]

    def per_record(rows):
        scenes = [records.decode_scene(ex["record"], spec, where=f"record {i}", check=True) for i, ex in rows]
        return Scene(**{f: np.stack([getattr(s, f) for s in scenes]) for f in FIELDS})

    def per_batch(rows):
        return loader.decode_records(spec, a.split, rows)

    out = {"split": a.split, "batch": a.batch, "batches": a.batches}
    for name, fn in (("per_record_ms", per_record), ("per_batch_ms", per_batch)):
        fn([(i, examples[i]) for i in range(a.batch)])              # warm: the header layout, imports
        t = time.process_time()
        for b in range(a.batches):
            got = fn([(i, examples[i]) for i in range(b * a.batch, (b + 1) * a.batch)])
        out[name] = round((time.process_time() - t) / a.batches * 1000, 2)
        out.setdefault("_last", got)
    ref, last = out.pop("_last"), got
    assert all(np.array_equal(getattr(ref, f), getattr(last, f)) for f in FIELDS), "the two readers disagree"
    out["ratio"] = round(out["per_record_ms"] / out["per_batch_ms"], 2)
    it = loader.make_loader(c, a.split, a.batch, shuffle=False, num_threads=0, prefetch=0)
    next(it)
    t = time.process_time()
    for _ in range(a.batches - 1):
        next(it)
    out["grain_loader_ms"] = round((time.process_time() - t) / (a.batches - 1) * 1000, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
