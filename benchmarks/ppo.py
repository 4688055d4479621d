"""Benchmark: trajectories per second through the PPO rollout with the RWM reward vs the true scorer.

    python benchmarks/ppo.py [--configs tiny,base] [--batch 0] [--iters 3] [--mode tracked] [--scenes world]

For each config: build the VLA (random init: the cost does not depend on the weights) and the RWM, on
embedded-world test scenes (``--scenes world``, the default: real map sizes matter, both the scorer and the
RWM's plan-vs-scene geometry skip padding) or random synthetic scenes (``--scenes synthetic``: no map).
One rollout = encode -> ``ppo.samples_per_scene`` samples per scene of all K
anchor chains with the PPO exploration noise -> reward of every chain (B x M x K trajectories, what one
PPO update rewards). Timed, both in one run on the same machine and on the same trajectories:
  * reward only: the RWM's reward vs the true JAX EPDMS scorer's, of the rollout's trajectories;
  * the whole rollout (policy sampling included) with each reward;
  * for scale, the transformer RWM (``rwm.arch = "transformer"``) on the same trajectories;
  * with ``rwm.scene_pose_stride`` != 1, the light RWM at stride 1 too (``rwm_stride1_reward_traj_per_s``).
Prints one JSON line {"benchmark": "ppo_rollout", "results": {cfg: {...}}, "ratio": <reward-only ratio of
the first config>} with ratio = RWM trajectories/s / scorer trajectories/s.
"""
from __future__ import annotations

import argparse
import copy
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
    from irlvla_jax.config import load_config
    return load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "default.py"), name)


def _timed(fn, args, iters):
    t0 = time.time()
    jax.block_until_ready(fn(*args))
    comp = time.time() - t0
    t0 = time.time()
    for _ in range(iters):
        jax.block_until_ready(fn(*args))
    return (time.time() - t0) / iters, comp


def _scenes(spec, B: int, source: str, vocab: int):
    if source == "synthetic":
        return synthetic.random_scenes(spec, B, seed=1, vocab=vocab)
    from irlvla_jax.scene import stack
    from irlvla_jax.world.generate import generate_scene
    return stack([generate_scene(spec, 0, i, "test") for i in range(B)])


def bench(name: str, batch: int, iters: int, mode: str | None, source: str = "world"):
    c = _config(name)
    with c.unlocked():
        if batch:
            c.ppo.batch_size = batch
        if mode:
            c.scoring.mode = mode
    spec = SceneSpec.from_config(c.scene)
    K, B, M = int(c.data.num_anchors), int(c.ppo.batch_size), int(c.ppo.samples_per_scene)
    gd, params, consts = vla_lib.build(c.model, spec, synthetic.random_anchors(K), seed=0)
    rgd, rparams = RW.build_rwm(c)
    scenes = _scenes(spec, B, source, int(c.model.semantic.vocab_size))
    hp = core.PPOHyper.from_config(c.ppo)
    adapter, _, state, static, _ = ppo.build(c, gd, params, consts, rgd, rparams)
    factor = core.noise_factor(hp.noise)

    @jax.jit
    def sample(p, static, scenes, rng):
        pp = (p, static["frozen"])
        tokens = adapter.encode(pp, scenes)
        roll = core.rollout(adapter, pp, tokens, scenes, rng, M, hp.sigma, factor)
        return tokens, core.trajectories(adapter, roll, scenes)

    tokens, traj = sample(state.params, static, scenes, jax.random.PRNGKey(0))
    n = B * M * K
    out = dict(trajectories=n, batch=B, samples_per_scene=M, chains_per_sample=K, scoring_mode=c.scoring.mode,
               device=jax.devices()[0].platform, scenes=source, rwm_scene_pose_stride=int(c.rwm.scene_pose_stride))
    for src in ("rwm", "scorer"):
        reward_fn = ppo.make_reward_fn(c, rgd, src)
        only = jax.jit(lambda static, scenes, tokens, traj: reward_fn(static, scenes, tokens, traj))
        dt, comp = _timed(only, (static, scenes, tokens, traj), iters)
        out[f"{src}_reward_traj_per_s"], out[f"compile_s_{src}"] = n / dt, comp

        @jax.jit
        def whole(p, static, scenes, rng):
            pp = (p, static["frozen"])
            tok = adapter.encode(pp, scenes)
            roll = core.rollout(adapter, pp, tok, scenes, rng, M, hp.sigma, factor)
            return reward_fn(static, scenes, tok, core.trajectories(adapter, roll, scenes))
        dt, _ = _timed(whole, (state.params, static, scenes, jax.random.PRNGKey(1)), iters)
        out[f"{src}_rollout_traj_per_s"] = n / dt
    def other_rwm(**rwm):
        """RWM-only trajectories/s of the config's RWM with ``rwm`` settings changed (random weights)."""
        oc = copy.deepcopy(c)
        oc.rwm.update(rwm)
        ogd, oparams = RW.build_rwm(oc)
        ofn = ppo.make_reward_fn(oc, ogd, "rwm")
        dt, _ = _timed(jax.jit(lambda st, scenes, tokens, traj: ofn(st, scenes, tokens, traj)),
                       (dict(static, rwm=oparams), scenes, tokens, traj), iters)
        return n / dt

    if int(c.rwm.scene_pose_stride) != 1:                      # the same RWM with geometry at every pose
        out["rwm_stride1_reward_traj_per_s"] = other_rwm(scene_pose_stride=1)
    # The transformer RWM (rwm.arch = "transformer") on the same trajectories, for scale.
    out["transformer_rwm_reward_traj_per_s"] = other_rwm(arch="transformer")
    out["ratio"] = out["rwm_reward_traj_per_s"] / out["scorer_reward_traj_per_s"]
    out["transformer_ratio"] = out["transformer_rwm_reward_traj_per_s"] / out["scorer_reward_traj_per_s"]
    out["rollout_ratio"] = out["rwm_rollout_traj_per_s"] / out["scorer_rollout_traj_per_s"]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", default="tiny")
    ap.add_argument("--batch", type=int, default=0, help="scenes per rollout (0 = ppo.batch_size)")
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--mode", default=None, help="scoring mode override: tracked | direct")
    ap.add_argument("--scenes", default="world", choices=["world", "synthetic"])
    a = ap.parse_args()
    names = [n for n in a.configs.split(",") if n]
    res = {n: bench(n, a.batch, a.iters, a.mode, a.scenes) for n in names}
    print(json.dumps({"benchmark": "ppo_rollout", "results": res, "ratio": res[names[0]]["ratio"]}))


if __name__ == "__main__":
    main()
