"""Benchmark: trajectories per second through the PPO rollout with the RWM reward vs the true scorer.

    python benchmarks/ppo.py [--configs tiny,base] [--batch 8] [--iters 3] [--mode tracked]

For each config: build the VLA (random init, synthetic valid scenes: the cost does not depend on the
weights) and the RWM, then time one jitted function = encode -> sample the denoising chains of
``ppo.samples_per_scene`` samples per scene (all K anchor chains, PPO exploration noise, chain choice)
-> reward of the B*M executed trajectories (B*M*K, every anchor chain, with ``ppo.choice_objective =
"expected"``), with reward = RWM (``ppo.reward=rwm``) and reward = the JAX
EPDMS scorer (``scorer``), both measured in the same run on the same machine. Prints one JSON line:
{"benchmark": "ppo_rollout", "results": {cfg: {"rwm_traj_per_s", "scorer_traj_per_s", "ratio",
"compile_s_rwm", "compile_s_scorer"}}, "ratio": <ratio of the first config>} where ratio =
rwm_traj_per_s / scorer_traj_per_s (how much faster the learned reward makes the rollout).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from irlvla_jax.models import vla as vla_lib  # noqa: E402
from irlvla_jax.scene import SceneSpec  # noqa: E402
from irlvla_jax.train import ppo, ppo_core as core, reward as RW, synthetic  # noqa: E402


def _config(name):
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, here)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m.get_config()


def bench(name: str, batch: int, iters: int, mode: str | None):
    c = _config(name)
    with c.unlocked():
        c.ppo.batch_size = batch
        if mode:
            c.scoring.mode = mode
    spec = SceneSpec.from_config(c.scene)
    K = int(c.data.num_anchors)
    if "num_anchors" not in c.model.planner:
        with c.unlocked():
            c.model.planner.num_anchors = K
    gd, params, consts = vla_lib.build(c.model, spec, synthetic.random_anchors(K), seed=0)
    rgd, rparams = RW.build_rwm(c)
    scenes = synthetic.random_scenes(spec, batch, seed=1, vocab=int(c.model.semantic.vocab_size))
    hp = core.PPOHyper.from_config(c.ppo)
    expected = hp.choice_objective == "expected"
    out = {}
    for src in ("rwm", "scorer"):
        adapter, vgd, tx, state, static, _, sig = ppo.build(c, gd, params, consts, rgd, rparams, src)
        with c.unlocked():
            c.ppo.log_true_score = False
        reward_fn = ppo.make_reward_fn(c, adapter, rgd, src)

        @jax.jit
        def rollout_reward(state, static, scenes, rng):
            pp = (state.params["policy"], static["frozen"])
            tokens = adapter.encode(pp, scenes)
            chain = core.rollout(adapter, pp, (static["ref"], static["frozen"]), tokens, scenes, rng, hp, sig,
                                 state.params["log_std"])
            if expected:   # every chain of every sample is rewarded (ppo.choice_objective='expected')
                B, M = chain.choice.shape
                traj = adapter.to_traj(chain.x0.reshape((B, M * K, 1) + chain.x0.shape[3:]),
                                       jax.numpy.zeros((B, M * K), jax.numpy.int32), scenes)
            else:
                traj = adapter.to_traj(chain.x0, chain.choice, scenes)
            r, _ = reward_fn(static, scenes, tokens, traj)
            return r

        t0 = time.time()
        jax.block_until_ready(rollout_reward(state, static, scenes, jax.random.PRNGKey(0)))
        comp = time.time() - t0
        t0 = time.time()
        for i in range(iters):
            jax.block_until_ready(rollout_reward(state, static, scenes, jax.random.PRNGKey(i + 1)))
        dt = (time.time() - t0) / iters
        out[f"{src}_traj_per_s"] = batch * hp.samples_per_scene * (K if expected else 1) / dt
        out[f"compile_s_{src}"] = comp
    out["ratio"] = out["rwm_traj_per_s"] / out["scorer_traj_per_s"]
    out.update(batch=batch, samples_per_scene=hp.samples_per_scene, chains_per_sample=K,
               rewarded_per_sample=K if expected else 1, choice_objective=hp.choice_objective,
               scoring_mode=c.scoring.mode, device=jax.devices()[0].platform)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--mode", default=None, help="scoring mode override: tracked | direct")
    a = ap.parse_args()
    names = [n for n in a.configs.split(",") if n]
    res = {n: bench(n, a.batch, a.iters, a.mode) for n in names}
    print(json.dumps({"benchmark": "ppo_rollout", "results": res, "ratio": res[names[0]]["ratio"]}))


if __name__ == "__main__":
    main()
