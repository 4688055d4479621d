"""What the multi-host test and its worker share (no side effects on import): the micro config of the run,
this process's rows of the global synthetic batches, the flattened parameters of every stage, and the IL
validation of a checkpoint."""

import os

import jax
import numpy as np

from irlvla_jax.scene import index
from irlvla_jax.train import imitation, ppo, reward
from irlvla_jax.train import mesh as mesh_lib
from irlvla_jax.train.synthetic import micro_config, random_scenes

B = 8
# Opt-in (IRLVLA_TEST_MULTIHOST_REFRESH=1): PPO refreshes its RWM before update 2 (one RWM training step: on 2
# processes in the job) and the refreshed RWMs are compared too. Off in the suite: it costs the 2-process job one
# more compiled program, +78 s of the test's wall time and +135 CPU-s on 2 cores (2026-12-07, 399 vs 321 s).
REFRESH = os.environ.get("IRLVLA_TEST_MULTIHOST_REFRESH") == "1"


class Rows:
    """This process's rows of the global synthetic batches (resumable like the grain loader)."""

    def __init__(self, spec, seed):
        self.spec, self.seed, self.i = spec, seed, 0
        n, p = jax.process_count(), jax.process_index()
        self.rows = slice(p * B // n, (p + 1) * B // n)

    def __iter__(self):
        return self

    def __next__(self):
        b = index(random_scenes(self.spec, B, self.seed + self.i), self.rows)
        self.i += 1
        return b

    def get_state(self):
        return {"i": self.i}

    def set_state(self, s):
        self.i = int(s["i"])


def config():
    c = micro_config()
    c.train.num_devices, c.train.async_checkpoint = 0, False
    c.scoring.mode = "direct"
    c.il.update(dict(steps=3, batch_size=B, checkpoint_every=2, warmup_steps=1))
    c.rwm.update(dict(steps=2, batch_size=B, checkpoint_every=2, eval_scenes=B, warmup_steps=1, d_model=16,
                      num_layers=1, num_heads=2, noisy_chains=4, expert_perturbations=4, ppo_samples=1))
    c.ppo.update(dict(updates=2, batch_size=B, samples_per_scene=2, checkpoint_every=1, log_true_score=False))
    if REFRESH:
        c.ppo.update(dict(rwm_refresh_every=1, rwm_refresh_steps=1))
    return c


def flat(tree):
    return {"/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(
        leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def save_standin(c, wd, run, state, run_keys=()):
    """Save ``state`` as step 1 of ``run`` in ``wd``, as the stage's trainer saves it."""
    from irlvla_jax.train import loop
    from irlvla_jax.train.checkpoint import Checkpointer
    ck = Checkpointer(loop.checkpoint_dir(wd, run), config=c, async_save=False, run_keys=run_keys)
    ck.save(1, state, force=True)
    ck.close()


def standin_rwm(c, wd):
    """A stand-in RWM stage: the freshly initialised RWM saved as the RWM stage saves it (what PPO restores and
    rewards with; training it would compile the RWM step and the scorer it labels with)."""
    from irlvla_jax.train.state import TrainState
    save_standin(c, wd, reward.RUN, TrainState.create(reward.build_rwm(c, int(c.seed))[1], {},
                                                      reward.make_optimizer(c.rwm), 0), reward.RWM_MODEL_KEYS)


def params_of(c, wd):
    out = {}
    out.update({"il/" + k: v for k, v in flat(imitation.restore(c, wd, mesh_lib.make_mesh(0))[1]).items()})
    out.update({"rwm/" + k: v for k, v in flat(reward.restore(c, wd)[1]).items()})
    out.update({"ppo/" + k: v for k, v in flat(ppo.restore(c, wd)[1]).items()})
    if REFRESH:
        out.update({"rwm_refreshed/" + k: v for k, v in flat(ppo.reward_model(c, wd)[1]).items()})
    return out


def il_validation(c, wd, spec, mesh):
    """IL validation (``imitation.validate_model``: loss terms, ADE, FDE; no EPDMS) of ``wd``'s IL checkpoint on
    2 B synthetic scenes over ``mesh`` (each process feeds its rows; the results are gathered) -> dict."""
    from types import SimpleNamespace
    gd, params, consts = imitation.restore(c, wd, mesh)
    return imitation.validate_model(imitation.make_eval_fn(gd, c.il, mesh), SimpleNamespace(params=params, consts=consts),
                                    random_scenes(spec, 2 * B, 41), B, mesh)
