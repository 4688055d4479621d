"""IL train-step benchmark: step time, samples/s, XLA FLOPs per step and fraction of an assumed peak.

    python benchmarks/train_step.py [--configs tiny,base] [--base_batch 2] [--steps 10] [--peak_tflops X]

For each config: the jitted functional step of irlvla_jax.train.imitation (split once, nnx.merge inside
jit, donated state) on one device, batch = config.il.batch_size (tiny) / --base_batch (base), synthetic
scenes of the config's SceneSpec. FLOPs come from the compiled executable's ``cost_analysis()``.
Baseline measured in the same run (tiny only): the same loss and optimiser written the object-oriented
NNX way (``nnx.jit`` over the module + ``nnx.Optimizer``, which walks the object graph in Python every
call); ``ratio`` = baseline step time / functional step time. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_PEAK_TFLOPS = {"cpu": 0.05, "gpu": 60.0, "tpu": 197.0}  # fp32-ish assumptions; override with --peak_tflops


def load_config(name):
    from irlvla_jax import config as config_lib
    return config_lib.load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs",
                                               "default.py"), name)


def _time(fn, n):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def bench(name, batch, steps, peak, baseline):
    from flax import nnx
    from irlvla_jax.models.layers import count_params
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import imitation, mesh as mesh_lib
    from irlvla_jax.train.synthetic import random_anchors, random_scenes
    cfg = load_config(name)
    spec = SceneSpec.from_config(cfg.scene)
    mesh = mesh_lib.make_mesh(1)
    anchors = random_anchors(int(cfg.data.num_anchors))
    graphdef, tx, sched, state = imitation.init_state(cfg, spec, anchors)
    state = mesh_lib.replicate(state, mesh)
    step = imitation.make_train_step(graphdef, tx, cfg.il, mesh, sched)
    scenes = random_scenes(spec, batch, seed=0, vocab=int(cfg.model.semantic.vocab_size))
    b = mesh_lib.shard_batch(scenes, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, b).compile()
    compile_s = time.perf_counter() - t0
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    flops = float(ca.get("flops", float("nan"))) if ca else float("nan")
    n_params = count_params(state.params)
    holder = {"s": state}   # the step donates its input state: always use the latest one

    def one():
        holder["s"], m = compiled(holder["s"], b)
        jax.block_until_ready(m["loss"])

    one()
    step_s = _time(one, steps)
    out = dict(params=n_params, batch=batch, compile_s=round(compile_s, 2),
               step_s=step_s, samples_per_s=batch / step_s, flops_per_step=flops,
               achieved_tflops=flops / step_s / 1e12, peak_fraction=flops / step_s / 1e12 / peak)
    if baseline:
        model = nnx.merge(graphdef, jax.device_get(holder["s"].params), jax.device_get(holder["s"].consts))
        opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
        @nnx.jit
        def oo_step(model, opt, scene, rng):
            def lf(model):
                return imitation.loss(model, scene, rng, cfg.il)[0]
            loss, grads = nnx.value_and_grad(lf)(model)
            opt.update(model, grads)
            return loss

        rng = jax.random.key(0)
        jax.block_until_ready(oo_step(model, opt, b, rng))
        base_s = _time(lambda: jax.block_until_ready(oo_step(model, opt, b, rng)), steps)
        out["baseline_nnx_jit_step_s"] = base_s
        out["ratio_baseline_over_functional"] = base_s / step_s
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny,base")
    ap.add_argument("--base_batch", type=int, default=2)
    ap.add_argument("--tiny_batch", type=int, default=0, help="0 = config.il.batch_size")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--peak_tflops", type=float, default=0.0)
    a = ap.parse_args()
    backend = jax.default_backend()
    peak = a.peak_tflops or DEFAULT_PEAK_TFLOPS.get(backend, 1.0)
    res = {"benchmark": "il_train_step", "backend": backend, "device": str(jax.devices()[0].device_kind),
           "assumed_peak_tflops": peak}
    for name in a.configs.split(","):
        if name == "base":
            batch = a.base_batch
        else:
            batch = a.tiny_batch or int(load_config(name).il.batch_size)
        res[name] = bench(name, batch, a.steps, peak, baseline=(name == "tiny"))
    if "tiny" in res:
        res["ratio"] = res["tiny"].get("ratio_baseline_over_functional")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
