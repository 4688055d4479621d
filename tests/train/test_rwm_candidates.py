"""Tests of irlvla_jax/train/rwm_candidates.py (the RWM's training candidates): the expert perturbations,
the PPO-distributed samples and the candidate layout, the time warp."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from irlvla_jax.train import rwm_candidates as C


def test_expert_perturbations_are_valid_and_varied():
    t = np.arange(1, 9, dtype=np.float32) * 0.5
    expert = np.stack([8.0 * t, np.zeros(8), np.zeros(8)], -1)[None].astype(np.float32)  # 8 m/s straight
    p = np.asarray(C.perturb_expert(jnp.asarray(expert), jax.random.PRNGKey(0), 64))
    assert p.shape == (1, 64, 8, 3) and np.all(np.isfinite(p))
    end = p[0, :, -1]
    assert end[:, 0].std() > 1.0 and end[:, 1].std() > 0.5       # speed and lateral variation
    assert np.any(np.all(np.abs(p[0] - expert[0]) < 1e-5, axis=(-2, -1)))  # some copies untouched
    # At 0.5 s: lateral ramp <= 3.5 m / 8 plus rotation <= 0.25 rad of x <= 1.5 x 4 m -> |y| < 1.93 m.
    assert np.all(np.abs(p[0, :, 0, 1]) < 0.4375 + 6.0 * np.sin(0.25) + 1e-4)
    assert np.all(np.abs(p[0, :, :, 2]) < 0.25 + 3.5 * 0.25 / 8.0 + 1e-4)      # heading change bounded


def test_ppo_candidates_follow_the_ppo_rollout_distribution():
    """rwm.ppo_samples: samples of all K chains drawn as the PPO rollout draws them; their source id (5)
    and count match layout(), and the exploration noise moves them by about sigma."""
    from irlvla_jax.models import planner as planner_lib, vla
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train.ppo_core import noise_factor
    from irlvla_jax.train.synthetic import micro_config, random_anchors, random_scenes
    cfg = micro_config()
    spec = SceneSpec.from_config(cfg.scene)
    K = int(cfg.data.num_anchors)
    gd, params, consts = vla.build(cfg.model, spec, random_anchors(K))
    model = nnx.merge(gd, params, consts)
    scenes = random_scenes(spec, 2, seed=1)
    tok = jax.jit(lambda s: model.encode(s))(scenes)          # jitted: one compile, not op-by-op dispatch
    sched = planner_lib.make_schedule(cfg.model.planner)
    L = noise_factor("smooth")
    key = jax.random.PRNGKey(3)
    draw = jax.jit(lambda t, k, sigma: C.ppo_samples(model.planner, t, k, 2, sigma, L, sched))
    x0, x1 = draw(tok, key, 0.0), draw(tok, key, 0.05)
    assert x0.shape == (2, 2 * K, 8, 3)
    rms = float(jnp.sqrt(jnp.mean((planner_lib.normalise(x1, sched) - planner_lib.normalise(x0, sched)) ** 2)))
    assert 0.025 < rms < 0.15, rms
    with cfg.unlocked():
        cfg.rwm.ppo_samples = 2
        cfg.rwm.warped_chains = 3
    cands, src = jax.jit(lambda t, s, k: C.make_candidates(model, t, s, k, cfg.rwm, sched, (0.05, L)))(
        tok, scenes, key)
    np.testing.assert_array_equal(src, C.candidate_sources(cfg))
    assert cands.shape[1] == len(src) and int(np.sum(src == 5)) == 2 * K and int(np.sum(src == 6)) == 3
    # Warped chains: policy chains replayed at another pace, so each ends on the path of one policy chain.
    pol, warped = np.asarray(cands[:, src == 0]), np.asarray(cands[:, src == 6])
    assert not np.allclose(warped[:, :, -1, :2], 0.0)
    for b in range(2):
        for w in warped[b]:
            path = np.concatenate([np.zeros((pol.shape[1], 1, 2)), pol[b, :, :, :2]], 1)   # [K, 9, 2]
            seg = path[:, 1:] - path[:, :-1]                                           # distance to each segment
            t = np.clip(np.sum((w[2, :2] - path[:, :-1]) * seg, -1) / np.maximum(np.sum(seg * seg, -1), 1e-9), 0, 1)
            d = np.linalg.norm(path[:, :-1] + t[..., None] * seg - w[2, :2], axis=-1)
            assert d.min() < 1e-3, d.min()


def test_time_warp_replays_a_plan_at_another_pace():
    t = np.arange(1, 9, dtype=np.float32) * 0.5
    plan = np.stack([8.0 * t + t ** 2, 0.5 * t ** 2, 0.1 * t], -1)[None].astype(np.float32)   # [1, 8, 3]
    w = np.asarray(C.time_warp(jnp.asarray(plan), jnp.asarray([[1.0, 0.5, 1.25]])))
    assert w.shape == (1, 3, 8, 3)
    np.testing.assert_allclose(w[0, 0], plan[0], atol=1e-6)                  # pace 1: the plan itself
    np.testing.assert_allclose(w[0, 1, 1], plan[0, 0], atol=1e-6)            # half pace: 1 s -> the 0.5 s pose
    np.testing.assert_allclose(w[0, 1, 0], 0.5 * plan[0, 0], atol=1e-6)      # halfway from the origin
    np.testing.assert_allclose(w[0, 2, 3], plan[0, 4], atol=1e-6)            # 1.25 x 2 s = 2.5 s
    assert w[0, 2, -1, 0] > plan[0, -1, 0]                                   # extrapolated past 4 s
