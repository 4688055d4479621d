"""Stage 1 (irlvla_jax/train/imitation.py): the loss, overfitting, compile-once, 1 vs 8 devices, kill/resume,
the policy from a checkpoint, config mismatch errors."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from irlvla_jax.scene import SceneSpec
from irlvla_jax.train import imitation, mesh as mesh_lib
from irlvla_jax.train.checkpoint import CheckpointMismatch
from irlvla_jax.train.synthetic import SyntheticIterator, micro_config, random_anchors, random_scenes

BS = 8
RESUME_END = 70      # the kill-and-resume runs stop here (a third of the schedule: CI time)


@pytest.fixture(scope="module")
def one_device():
    """A compiled 1-device train step for the micro model (reused by several tests)."""
    cfg = micro_config()   # 200 steps, trajectory + mode losses (the synthetic aux labels are random)
    spec = SceneSpec.from_config(cfg.scene)
    mesh = mesh_lib.make_mesh(1)
    anchors = random_anchors(cfg.data.num_anchors)
    graphdef, tx, sched, state = imitation.init_state(cfg, spec, anchors)
    state = mesh_lib.replicate(state, mesh)            # as train/loop.prepare places it
    step = imitation.make_train_step(graphdef, tx, cfg.il, mesh, sched)
    batch = random_scenes(spec, BS, seed=3)
    return dict(cfg=cfg, spec=spec, anchors=anchors, graphdef=graphdef, tx=tx, sched=sched, state=state,
                step=step, batch=batch)


def test_overfit_small_batch_and_compile_once(one_device):
    d = one_device
    state = jax.tree.map(lambda x: x.copy(), d["state"])  # the step donates its input
    batch = mesh_lib.shard_batch(d["batch"], mesh_lib.make_mesh(1))
    losses = []
    for _ in range(d["cfg"].il.steps):
        state, m = d["step"](state, batch)
        losses.append(float(m["loss"]))
    first, last = np.mean(losses[:5]), np.mean(losses[-10:])
    assert np.isfinite(losses).all()
    assert last <= first / 10, (first, last)
    assert int(state.step) == d["cfg"].il.steps
    assert d["step"]._cache_size() == 1   # one compilation for all the steps


def test_eight_devices_match_one(one_device):
    d = one_device
    assert len(jax.devices()) == 8
    m1, m8 = mesh_lib.make_mesh(1), mesh_lib.make_mesh(8)
    step8 = imitation.make_train_step(d["graphdef"], d["tx"], d["cfg"].il, m8, d["sched"])
    s1 = mesh_lib.replicate(jax.device_get(d["state"]), m1)
    s8 = mesh_lib.replicate(jax.device_get(d["state"]), m8)
    b1, b8 = mesh_lib.shard_batch(d["batch"], m1), mesh_lib.shard_batch(d["batch"], m8)
    assert len(b8.camera.sharding.device_set) == 8
    n1, out1 = d["step"](s1, b1)
    n8, out8 = step8(s8, b8)
    assert float(out1["loss"]) == pytest.approx(float(out8["loss"]), rel=1e-4)
    for k in imitation.LOSS_TERMS:
        assert float(out1[k]) == pytest.approx(float(out8[k]), rel=1e-4, abs=1e-6), k
    diff = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), n1.params, n8.params)
    assert max(jax.tree.leaves(diff)) < 1e-4


def _run(cfg, workdir, anchors, spec, **kw):
    return imitation.train(cfg, str(workdir), train_iter=SyntheticIterator(spec, BS, seed=11),
                           anchors=anchors, progress=False, **kw)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    cfg = micro_config()   # the 200-step schedule of `one_device` (same program: compile cache hit)
    cfg.il.checkpoint_every = 20        # not part of the program
    spec = SceneSpec.from_config(cfg.scene)
    anchors = random_anchors(cfg.data.num_anchors)
    a, b = tmp_path_factory.mktemp("full"), tmp_path_factory.mktemp("killed")
    full = _run(cfg, a, anchors, spec, stop_at=RESUME_END)        # the uninterrupted run, read at step 70
    killed = _run(cfg, b, anchors, spec, stop_at=50)       # crash after step 50; last checkpoint = step 40
    assert killed["steps"] == 50
    resumed = _run(cfg, b, anchors, spec, stop_at=RESUME_END)
    init = imitation.init_state(cfg, spec, anchors)[3].params
    return dict(cfg=cfg, spec=spec, full=full, resumed=resumed, dir=b, init=init)


def test_kill_and_resume_gives_same_parameters(resumed):
    assert resumed["resumed"]["start"] == 40 and resumed["resumed"]["steps"] == RESUME_END
    p_full = jax.device_get(resumed["full"]["state"].params)
    p_res = jax.device_get(resumed["resumed"]["state"].params)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p_full, p_res))
    assert max(diffs) == 0.0
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p_full,
                                         jax.device_get(resumed["init"])))
    assert max(moved) > 1e-3   # training did change the parameters
    assert int(resumed["resumed"]["state"].step) == RESUME_END


def test_policy_from_checkpoint(resumed):
    policy = imitation.policy(resumed["cfg"], str(resumed["dir"]), chunk=4)
    scenes = random_scenes(resumed["spec"], 5, seed=5)
    traj = policy(scenes)
    assert traj.shape == (5, 1, 8, 3) and traj.dtype == np.float32 and np.isfinite(traj).all()
    np.testing.assert_array_equal(policy(scenes), traj)   # deterministic


def test_config_mismatch_names_the_key(resumed):
    cfg = micro_config()
    cfg.model.dim = 32
    with pytest.raises(CheckpointMismatch, match=r"config\.model\.dim is 16 in the checkpoint but 32"):
        imitation.policy(cfg, str(resumed["dir"]))


def test_loss_gathers_every_weighted_term(one_device):
    """imitation.loss: the total is the config-weighted sum of LOSS_TERMS; a zero weight drops its term.
    (Both losses in one jitted call: dispatched op by op, the model compiles hundreds of small kernels.)"""
    d = one_device
    il = ml_collections.ConfigDict(d["cfg"].il.to_dict())
    il.w_traj = 0.0
    full, no_traj = imitation.make_loss_fn(d["graphdef"], d["cfg"].il), imitation.make_loss_fn(d["graphdef"], il)

    @jax.jit
    def losses(params, consts, scene, rng):
        return full(params, consts, scene, rng), no_traj(params, consts, scene, rng)[0]
    (total, terms), total0 = losses(d["state"].params, d["state"].consts, jax.tree.map(jnp.asarray, d["batch"]),
                                    jax.random.key(0))
    w = imitation.loss_weights(d["cfg"].il)
    assert set(imitation.LOSS_TERMS) <= set(terms) and {"mode_acc", "meta_acc"} <= set(terms)
    np.testing.assert_allclose(float(total), sum(float(w[k]) * float(terms[k]) for k in imitation.LOSS_TERMS),
                               rtol=1e-6)
    np.testing.assert_allclose(float(total) - float(total0), float(w["traj_l1"]) * float(terms["traj_l1"]), rtol=1e-4)


class _ExplodingIterator(SyntheticIterator):
    """The synthetic batches, with a NaN expert future from the third batch on (the loss explodes at step 3)."""

    def __next__(self):
        b = super().__next__()
        return b.replace(expert_future=np.full_like(b.expert_future, np.nan)) if self.i >= 3 else b


def test_exploding_loss_stops_before_a_nan_checkpoint(tmp_path):
    """The loss turns non-finite at step 3 (a NaN batch; the micro config's train step, compiled for the tests
    above, not an exploding learning rate, which would compile another one): training stops with
    NonFiniteError naming the step and quantity; every checkpoint written before it (steps 1 and 2) is intact
    and finite (NaN is never saved)."""
    from irlvla_jax.errors import NonFiniteError
    from irlvla_jax.train.checkpoint import verify_directory
    cfg = micro_config()
    cfg.il.checkpoint_every = 1
    spec = SceneSpec.from_config(cfg.scene)
    with pytest.raises(NonFiniteError, match=r"il: step 3: non-finite (loss|grads|params)"):
        imitation.train(cfg, str(tmp_path), train_iter=_ExplodingIterator(spec, BS, seed=11),
                        anchors=random_anchors(cfg.data.num_anchors), progress=False)
    rows = verify_directory(str(tmp_path / "checkpoints" / "il"))
    assert [r["step"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows), rows
