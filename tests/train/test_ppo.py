"""irlvla_jax/train/ppo.py, the RWM refresh (``ppo.rwm_refresh_every``): on the micro VLA and synthetic scenes
(1 device), the refreshed RWM lives in the PPO checkpoint, has moved off the RWM stage's, rewards the
updates after the refresh, and a run resumed from a checkpoint ends bit-exactly where the uninterrupted run
does (policy, RWM, optimizers, data position). The PPO math itself is tested in test_ppo_core.py."""
import shutil

import numpy as np
import pytest

from irlvla_jax.scene import SceneSpec, index
from irlvla_jax.train import imitation, loop, ppo, reward
from irlvla_jax.train.checkpoint import Checkpointer
from irlvla_jax.train.synthetic import random_anchors
from tests.train.multihost_common import Rows, config, flat, save_standin


class FirstRows(Rows):
    """Rows cut to the first ``n`` scenes of each batch (the RWM stage's ``rwm.batch_size``: the batches the
    refresh's calls of the same jitted step see, so it compiles once)."""

    def __init__(self, spec, seed, n):
        super().__init__(spec, seed)
        self.n = n

    def __next__(self):
        return index(super().__next__(), slice(0, self.n))


class Picked:
    """Rows yielding only the batches of ``indices`` (resumable), so a run can see the batches another
    run's updates saw."""

    def __init__(self, spec, seed, indices):
        self.rows, self.indices, self.i = Rows(spec, seed), list(indices), 0

    def __iter__(self):
        return self

    def __next__(self):
        self.rows.i = self.indices[self.i]
        self.i += 1
        return next(self.rows)

    def get_state(self):
        return {"i": self.i}

    def set_state(self, s):
        self.i = int(s["i"])


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A stand-in IL checkpoint of the micro VLA (freshly initialised, saved as its stage saves it: training
    it would compile another program), the RWM stage (``reward.train``, 2 steps: the suite's one run of it; the
    refresh reuses its compiled step), then a 2-update PPO run (1 device, one epoch, one minibatch) refreshing
    its RWM before update 2: 3 RWM steps on batches of 4 scenes, so 2 PPO batches of 8 are drawn.
    -> (config, spec, workdir, the run's summary)."""
    c = config()
    c.train.num_devices = 1
    c.rwm.batch_size = 4
    c.ppo.update(dict(updates=2, epochs=1, num_minibatches=1, rwm_refresh_every=1, rwm_refresh_steps=3))
    spec = SceneSpec.from_config(c.scene)
    wd = str(tmp_path_factory.mktemp("ppo_refresh") / "a")
    save_standin(c, wd, imitation.RUN, imitation.init_state(c, spec, random_anchors(4))[3])
    rwm = reward.train(c, wd, train_iter=FirstRows(spec, 21, c.rwm.batch_size), progress=False, report=False)
    assert rwm["steps"] == c.rwm.steps and reward.restore_state(c, wd)[1].step == c.rwm.steps
    out = ppo.train(c, wd, train_iter=Rows(spec, 31), progress=False)
    return c, spec, wd, out


def _copy_stages(src, dst):
    for run in ("il", "rwm"):
        shutil.copytree(loop.checkpoint_dir(src, run), loop.checkpoint_dir(dst, run))


def test_refresh_moves_the_rwm_and_is_checkpointed_with_the_policy(stages):
    c, _, wd, out = stages
    assert [r["step"] for r in out["rwm_refreshes"]] == [2]
    assert all(np.isfinite(r[k]) and r[k] > 0 for r in out["rwm_refreshes"] for k in ppo.REFRESH_METRICS)
    state = ppo.open_state(c, wd)
    assert set(state) == {"ppo", "rwm"} and int(state["ppo"].step) == 2
    base = reward.restore_state(c, wd)[1]
    # 3 RWM steps past the stage's checkpoint; the parameters have moved.
    assert int(state["rwm"].step) == int(base.step) + 3
    stage, refreshed = flat(base.params), flat(ppo.reward_model(c, wd)[1])
    assert stage.keys() == refreshed.keys()
    assert max(float(np.max(np.abs(stage[k] - refreshed[k]))) for k in stage) > 1e-4
    # A config without the refresh cannot open the checkpoint: a one-line error naming the key.
    with pytest.raises(Exception, match=r"config\.ppo\.rwm_refresh_every is 1 in the checkpoint but 0 now"):
        ppo.restore(ppo.variant(c, rwm_refresh_every=0), wd)


def test_the_refreshed_rwm_rewards_the_next_update(stages, tmp_path):
    """The same policy, batch and noise at update 2 without the refresh: update 1 is identical, update 2's
    reward differs (the refresh drew batches 1 and 2; this run sees batches 0 and 3, as the updates did)."""
    c, spec, wd, out = stages
    _copy_stages(wd, str(tmp_path))
    plain = ppo.variant(c, rwm_refresh_every=0)
    ref = ppo.train(plain, str(tmp_path), train_iter=Picked(spec, 31, [0, 3]), progress=False)
    a, b = out["history"], ref["history"]
    assert a[0]["reward_mean"] == b[0]["reward_mean"] and a[0]["loss"] == b[0]["loss"]
    assert a[1]["reward_mean"] != b[1]["reward_mean"]


def test_resumed_refresh_run_is_exact(stages, tmp_path):
    """Killed after update 1 (its step-2 checkpoint lost): the resumed run refreshes on the same scenes and
    ends bit-exactly at the uninterrupted run's state."""
    c, spec, wd, _ = stages
    dst = str(tmp_path)
    _copy_stages(wd, dst)
    name = ppo.run_name(c)
    shutil.copytree(loop.checkpoint_dir(wd, name), loop.checkpoint_dir(dst, name))
    ck = Checkpointer(loop.checkpoint_dir(dst, name), config=c, async_save=False)
    assert ck.all_steps() == [1, 2]
    shutil.rmtree(ck.where(2))
    ck.close()
    out = ppo.train(c, dst, train_iter=Rows(spec, 31), progress=False)
    assert out["start"] == 1 and [r["step"] for r in out["rwm_refreshes"]] == [2]
    want, got = flat(ppo.open_state(c, wd)), flat(ppo.open_state(c, dst))
    assert want.keys() == got.keys() and any(k.startswith("rwm/") for k in want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_rl_chains_picked_by_the_rwm(stages):
    """The table's row "RL chains picked by the RWM" (``ppo.rwm_pick_policy``): of the run's K deterministic
    anchor chains, the one its refreshed RWM rewards highest (recomputed here); the planner is the PPO run's
    (its parameters moved off the IL's by the 2 updates), the RWM the refreshed one."""
    import jax
    from flax import nnx
    from irlvla_jax.models import reward_model as R
    from irlvla_jax.train.synthetic import random_scenes
    c, spec, wd, _ = stages
    scenes = random_scenes(spec, 4, 77)
    got = ppo.rwm_pick_policy(c, wd, seed=3, chunk=4)(scenes)
    gd, params, consts = vla = ppo.restore(c, wd)
    moved = flat(params)
    il = flat(imitation.restore(c, wd)[1])
    assert max(float(np.max(np.abs(moved[k] - il[k]))) for k in il) > 1e-4
    chains = imitation.model_chains(vla, scenes, seed=3, chunk=4)                  # [4, K, 8, 3]
    rgd, rparams = ppo.reward_model(c, wd)
    refreshed, stage = flat(rparams), flat(reward.restore(c, wd)[1])
    assert refreshed.keys() == stage.keys() and max(float(np.max(np.abs(refreshed[k] - stage[k]))) for k in stage) > 1e-4

    @jax.jit
    def rewards(scene, traj):
        tokens = nnx.merge(gd, params, consts).encode(scene)
        return R.predicted_reward(nnx.merge(rgd, rparams)(tokens, traj, scenes=scene), bool(c.rwm.use_ec))

    r = np.asarray(rewards(scenes, chains))                                           # [4, K]
    assert got.shape == (4, 1, 8, 3) and r.shape == (4, c.data.num_anchors)
    np.testing.assert_array_equal(got[:, 0], chains[np.arange(4), np.argmax(r, 1)])


def test_the_refresh_runs_the_rwm_stages_compiled_step(stages):
    """One jitted RWM training step per process for a config, models and mesh: the RWM stage's and the refresh's
    are the same object (so the pipeline compiles it once), and another config gets its own."""
    import copy
    from irlvla_jax.train import mesh as mesh_lib
    c, _, wd, _ = stages
    gd = imitation.restore(c, wd)[0]
    rgd = reward.build_rwm(c)[0]
    mesh = mesh_lib.make_mesh(1)
    step = reward.jitted_train_step(c, gd, rgd, mesh)
    assert reward.jitted_train_step(copy.deepcopy(c), gd, rgd, mesh_lib.make_mesh(1)) is step
    other = copy.deepcopy(c)
    other.rwm.rank_weight = 0.5
    assert reward.jitted_train_step(other, gd, rgd, mesh) is not step


def test_run_configs_and_the_keys_their_checkpoints_check(stages, tmp_path):
    """``ppo.run_config`` makes the pipeline's three runs (what the pipeline trains and ``irlvla evaluate``
    loads); only RWM-reward runs check the refresh setting: a true-scorer run's checkpoint holds no RWM and
    opens under any refresh setting."""
    from irlvla_jax.train import mesh as mesh_lib
    c, _, wd, _ = stages
    for run in ("ppo_rwm", "ppo_scorer", "ppo_rwm_choice"):
        assert ppo.run_name(ppo.run_config(c, run)) == run
    assert ppo.refresh_every(ppo.run_config(c, "ppo_rwm")) == 1
    assert ppo.refresh_every(ppo.run_config(c, "ppo_rwm_choice")) == 0
    with pytest.raises(ValueError, match="unknown PPO run 'ppo_x'"):
        ppo.run_config(c, "ppo_x")
    _copy_stages(wd, str(tmp_path))
    sc = ppo.run_config(c, "ppo_scorer")
    assert ppo.run_keys(sc) == () and ppo.run_keys(c) == ppo.RUN_KEYS
    gd, params, consts = imitation.restore(sc, str(tmp_path), mesh_lib.restore_mesh())
    save_standin(sc, str(tmp_path), ppo.run_name(sc), ppo.build(sc, gd, params, consts)[2])
    assert int(ppo.open_state(ppo.variant(sc, rwm_refresh_every=7), str(tmp_path)).step) == 0
