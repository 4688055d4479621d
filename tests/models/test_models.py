"""VLA model: shapes/dtypes of the contract, perception targets, planner schedule and per-step API, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from irlvla_jax import config as config_lib
from irlvla_jax.models import perception as P
from irlvla_jax.models import planner as PL
from irlvla_jax.models import vla
from irlvla_jax.models.semantic import check_vocab
from irlvla_jax.train import imitation
from irlvla_jax.scene import SceneSpec, validate
from irlvla_jax.train.synthetic import micro_config, random_anchors, random_scenes

B, K, M = 3, 4, 2


@pytest.fixture(scope="module")
def setup():
    cfg = micro_config()
    spec = SceneSpec.from_config(cfg.scene)
    scenes = random_scenes(spec, B, seed=1)
    validate(scenes, spec, batch_dims=1)
    anchors = random_anchors(K)
    g, params, consts = vla.build(cfg.model, spec, anchors)
    sched_noisy = PL.make_schedule(cfg.model.planner, eta=1.0, min_std=0.05)

    @jax.jit
    def forward(params, consts, scenes, rng):
        model = nnx.merge(g, params, consts)
        tokens = model.encode(scenes)
        traj = model.sample(tokens, rng, M)
        x_init = model.planner.init_chains(rng, B, 1)
        chain0 = model.planner.sample_chain(tokens, rng, x_init)
        chain1 = model.planner.sample_chain(tokens, jax.random.key(7), x_init, sched_noisy)
        x0, logits = model.denoise(tokens, x_init, jnp.full((B, K), 3, jnp.int32))
        perm = jnp.array([2, 0, 3, 1])
        x0p, logitsp = model.denoise(tokens, x_init[:, perm], jnp.full((B, K), 3, jnp.int32))
        return tokens, traj, chain0, chain1, (x0, logits, x0p, logitsp, perm), imitation.loss(model, scenes, rng, cfg.il)[1]

    out = forward(params, consts, scenes, jax.random.key(0))
    return dict(cfg=cfg, spec=spec, scenes=scenes, anchors=anchors, out=out, sched_noisy=sched_noisy)


def test_token_shapes_and_dtypes(setup):
    cfg = setup["cfg"]
    tokens = setup["out"][0]
    D = cfg.model.dim
    p = cfg.model.perception
    assert tokens.meta.shape == (B, cfg.model.semantic.num_meta, D)
    assert tokens.bev.shape == (B, p.bev_tokens_side ** 2, D)
    assert tokens.map.shape == (B, p.num_map_queries, D)
    assert tokens.obj.shape == (B, p.num_objects, D)
    assert tokens.cmd.shape == (B, 1, D)
    for t in jax.tree.leaves(tokens):
        assert t.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(t)))


def test_sample_and_denoise_shapes(setup):
    _, traj, chain0, _, (x0, logits, _, _, _), losses = setup["out"]
    assert traj.shape == (B, M, 8, 3) and traj.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(traj)))
    assert x0.shape == (B, K, 8, 3) and logits.shape == (B, K)
    n = len(PL.make_schedule(setup["cfg"].model.planner).timesteps)
    assert chain0.xs.shape == (n + 1, B, K, 8, 3) and chain0.log_probs.shape == (n, B, K)
    for k, v in losses.items():
        assert v.shape == () and bool(jnp.isfinite(v)), k


def test_denoiser_is_permutation_equivariant_over_chains(setup):
    x0, logits, x0p, logitsp, perm = setup["out"][4]
    np.testing.assert_allclose(np.asarray(x0p), np.asarray(x0)[:, np.asarray(perm)], atol=1e-5)
    np.testing.assert_allclose(np.asarray(logitsp), np.asarray(logits)[:, np.asarray(perm)], atol=1e-5)


def test_deterministic_chain_and_logprobs(setup):
    _, _, chain0, chain1, _, _ = setup["out"]
    # eta = 0, min_std = 0: each x_{k+1} is exactly the step mean, and the last x equals the last x0.
    np.testing.assert_allclose(np.asarray(chain0.xs[1:]), np.asarray(chain0.means), atol=1e-6)
    np.testing.assert_allclose(np.asarray(chain0.xs[-1]), np.asarray(chain0.x0[-1]), atol=1e-6)
    # noisy chain: stored log-probs are the Gaussian densities of the taken step with the schedule's std
    stds = PL.step_stds(setup["sched_noisy"])
    assert stds[-1] == pytest.approx(0.05) and stds[0] > 0.05
    from scipy.stats import norm
    for k in range(len(stds)):
        ref = norm.logpdf(np.asarray(chain1.xs[k + 1]), np.asarray(chain1.means[k]), stds[k]).sum((-1, -2))
        np.testing.assert_allclose(np.asarray(chain1.log_probs[k]), ref, rtol=1e-4, atol=1e-3)


def test_schedule_and_normalisation():
    pc = micro_config().model.planner
    s = PL.make_schedule(pc)
    assert list(s.timesteps) == [49, 24] and list(s.prev) == [24, -1]
    assert np.all(PL.step_stds(s) == 0)
    s3 = PL.make_schedule(pc, ddim_steps=3)
    assert list(s3.timesteps) == [49, 32, 16] and list(s3.prev) == [32, 16, -1]
    # DDIM with eta=1 equals the DDPM posterior std for consecutive steps
    s1 = PL.make_schedule(pc, ddim_steps=pc.trunc_steps, eta=1.0)
    a = s1.abar
    t = 10
    beta_tilde = (1 - a[t - 1]) / (1 - a[t]) * (1 - a[t] / a[t - 1])
    k = list(s1.timesteps).index(t)
    assert PL.ddim_sigmas(s1)[k] == pytest.approx(np.sqrt(beta_tilde), rel=1e-3)
    traj = random_anchors(5, seed=3)
    np.testing.assert_allclose(np.asarray(PL.denormalise(PL.normalise(traj, s), s)), traj, atol=1e-5)
    with pytest.raises(ValueError, match="ddim_steps"):
        PL.make_schedule(pc, ddim_steps=60)


def test_heatmap_targets_peak_at_agent_cells():
    spec = SceneSpec.from_config(micro_config().scene)  # bev 16x16 over x in [-16, 48], y in [-32, 32]
    g = 4                                                # 16 m cells
    boxes = jnp.array([[[20.0, 0.0, 0.3, 4.0, 2.0], [100.0, 0.0, 0.0, 4.0, 2.0], [-8.0, 20.0, 0.0, 1.0, 1.0]]])
    valid = jnp.array([[True, True, False]])
    typ = jnp.array([[0, 1, 1]])
    heat, reg, cell, inside = P.heatmap_targets(boxes, valid, typ, spec, g, sigma=1.0)
    assert heat.shape == (1, g, g, 4)
    # x=20 -> row (48-20)/64*4 = 1.75 -> 1; y=0 -> col 2.0 -> 2
    assert float(heat[0, 1, 2, 0]) == 1.0 and int(cell[0, 0]) == 1 * g + 2
    assert bool(inside[0, 0]) and not bool(inside[0, 1]) and not bool(inside[0, 2])
    assert float(heat[..., 1].max()) == 0.0        # the pedestrian is out of range / invalid
    np.testing.assert_allclose(np.asarray(reg[0, 0, :2]), [0.75, 0.0], atol=1e-5)
    rc = P.world_to_grid(boxes[..., :2], spec, g)
    np.testing.assert_allclose(np.asarray(P.grid_to_world(rc, spec, g)), np.asarray(boxes[..., :2]), atol=1e-4)


def test_focal_loss_prefers_correct_heatmap():
    target = jnp.zeros((1, 4, 4, 1)).at[0, 1, 2, 0].set(1.0)
    good = jnp.where(target > 0, 5.0, -5.0)
    assert float(P.focal_loss(good, target)) < 0.01 < float(P.focal_loss(-good, target))


def test_bad_inputs_raise_clear_errors():
    cfg = micro_config()
    spec = SceneSpec.from_config(cfg.scene)
    with pytest.raises(ValueError, match=r"\[K, 8, 3\]"):
        vla.VLA(cfg.model, spec, np.zeros((4, 6, 3), np.float32), nnx.Rngs(0))
    with pytest.raises(ValueError, match="instruction"):
        check_vocab(np.array([[3, 500]]), 128)
    cfg.model.perception.bev_tokens_side = 3
    with pytest.raises(ValueError, match="config.model.perception.bev_tokens_side"):
        config_lib.check(cfg)
    cfg = micro_config()
    cfg.model.semantic.unknown_key = 1
    with pytest.raises(ValueError, match="config.model.semantic.unknown_key"):
        config_lib.check(cfg)


def test_base_config_size():
    """base: tens of millions of parameters at 256x1024 camera input (shape-only, no allocation)."""
    import importlib.util, os
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "base.py")
    sp = importlib.util.spec_from_file_location("base_cfg", path)
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    cfg = mod.get_config()
    config_lib.check(cfg)
    from irlvla_jax.models.layers import count_params
    spec = SceneSpec.from_config(cfg.scene)
    assert spec.camera_hw == (256, 1024)
    _, params, _ = vla.abstract(cfg.model, spec, np.zeros((cfg.data.num_anchors, 8, 3), np.float32))
    assert 10e6 < count_params(params) < 100e6


def test_ablation_planners_are_real_changes():
    """model.planner.contexts drops the cross-attention to the missing token families (the no-semantic / no-3D
    ablations); kind="regression" regresses from the clean anchors in one pass (no noise, rng-independent)."""
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train.synthetic import micro_config, random_anchors, random_scenes
    cfg = micro_config()
    spec = SceneSpec.from_config(cfg.scene)
    scenes = random_scenes(spec, 2, seed=1)
    cfg.model.planner.contexts = ("meta",)
    g, params, consts = vla.build(cfg.model, spec, random_anchors(4), seed=0)
    blk = params["planner"]["blocks"][0]
    assert "ca_meta" in blk and not any(k in blk for k in ("ca_bev", "ca_map", "ca_obj"))
    cfg.model.planner.contexts = ("meta", "bev", "map", "obj")
    cfg.model.planner.kind = "regression"
    g, params, consts = vla.build(cfg.model, spec, random_anchors(4), seed=0)

    @jax.jit
    def run(params, rng):
        model = nnx.merge(g, params, consts)
        return model.sample(model.encode(scenes), rng, 1), imitation.loss(model, scenes, rng, cfg.il)[0]
    (a, la), (b, lb) = run(params, jax.random.key(0)), run(params, jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))          # no noise anywhere
    assert a.shape == (2, 1, 8, 3) and float(la) == float(lb) and np.isfinite(float(la))
    with pytest.raises(ValueError, match="ppo.objective"):
        cfg.ppo.objective = "denoise"
        config_lib.check(cfg)


def test_build_traces_each_structure_once(monkeypatch):
    """vla.build / vla.abstract construct the NNX model once per (model config, scene sizes, number of
    anchors); later builds pass their seed and anchors to the compiled initialiser and equal a fresh one."""
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train.synthetic import micro_config, random_anchors
    cfg = micro_config()                  # the module's other tests compile its initialiser too
    spec = SceneSpec.from_config(cfg.scene)
    made = []
    real = vla.VLA
    monkeypatch.setattr(vla, "VLA", lambda *a, **k: made.append(1) or real(*a, **k))
    a0, a1 = random_anchors(4), random_anchors(4) * 2.0 + 1.0
    g, p0, c0 = vla.build(cfg.model, spec, a0, seed=0)
    first = len(made)                     # 0 if an earlier test of this process built this structure
    g1, p1, c1 = vla.build(cfg.model, spec, a1, seed=1)
    g2, p0b, _ = vla.build(cfg.model, spec, a0, seed=0)
    ga, pa, _ = vla.abstract(cfg.model, spec, a1)
    assert len(made) == first and g1 == g == g2 == ga          # no model constructed again
    np.testing.assert_array_equal(np.asarray(c0["planner"]["anchors"]), a0)
    np.testing.assert_array_equal(np.asarray(c1["planner"]["anchors"]), a1)
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), p0, p0b)
    assert not np.array_equal(np.asarray(p0["planner"]["pose_pos"]), np.asarray(p1["planner"]["pose_pos"]))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), pa) == jax.tree.map(lambda x: (x.shape, x.dtype), p0)
    cfg.model.dim = 24                    # another structure: constructed anew (abstract: traced, not compiled)
    assert vla.abstract(cfg.model, spec, a0)[1]["planner"]["pose_pos"].shape == (24,) and len(made) == first + 1
