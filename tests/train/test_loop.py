"""Tests of irlvla_jax/train/loop.py (the host loop every stage shares): the checkpoint, logging and
validation cadences, ``stop_at`` (a simulated crash) and ``check`` running before a step's checkpoint.

A toy jitted step (``w += batch``) on a tiny pytree and a real :class:`Checkpointer` (synchronous, no
data iterator) keep it fast."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irlvla_jax.train import loop
from irlvla_jax.train.checkpoint import Checkpointer


@jax.jit
def _step(state, batch):
    w = state["w"] + batch
    return {"w": w}, {"loss": jnp.sum(w), "vec": w}     # the non-scalar "vec" is not logged


def _batch(step):
    return jnp.full((3,), float(step + 1))             # step k (0-based) adds k + 1


def _run(tmp_path, total, **kw):
    ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=100, async_save=False)
    prep = loop.Prepared(mesh=None, state={"w": jnp.zeros(3)}, start=0, ckpt=ckpt, train_iter=None)
    res = loop.run(workdir=str(tmp_path), name="toy", prep=prep, total=total, step_fn=_step, prefix="toy/",
                   next_batch=_batch, progress=False, **kw)
    return res, ckpt


def test_cadences_of_checkpoints_logs_and_validation(tmp_path):
    calls = []

    def validate(step, state):
        calls.append(step)
        return {"w0": state["w"][0]}

    res, ckpt = _run(tmp_path, 7, log_every=3, checkpoint_every=2, validate=validate, validate_every=4)
    assert res.step == 7
    np.testing.assert_allclose(res.state["w"], np.full(3, 28.0))              # 1 + 2 + ... + 7
    assert list(ckpt.mngr.all_steps()) == [2, 4, 6, 7] and ckpt.latest_step() == 7
    assert [h["step"] for h in res.history] == [3, 6, 7]
    assert res.history[0] == {"step": 3, "loss": pytest.approx(3 * 6.0)} and "vec" not in res.history[-1]
    assert calls == [4, 7] and res.last_validation == {"val/w0": pytest.approx(28.0)}
    restored, step = ckpt.restore(jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                                         res.state), step=4)
    assert step == 4
    np.testing.assert_allclose(restored["w"], np.full(3, 10.0))
    assert (tmp_path / "toy_metrics.jsonl").read_text().count("\n") == 3 + 2  # 3 train rows, 2 validation rows


def test_stop_at_skips_the_final_checkpoint(tmp_path):
    res, ckpt = _run(tmp_path, 10, log_every=1, checkpoint_every=2, stop_at=5)
    assert res.step == 5 and [h["step"] for h in res.history] == [1, 2, 3, 4, 5]
    assert list(ckpt.mngr.all_steps()) == [2, 4]


def test_check_raising_prevents_that_steps_checkpoint(tmp_path):
    seen = []

    def check(metrics, step):
        seen.append(step)
        if step == 2:
            raise FloatingPointError("bad reward")

    with pytest.raises(FloatingPointError, match="bad reward"):
        _run(tmp_path, 6, log_every=5, checkpoint_every=1, check=check)
    ckpt = Checkpointer(str(tmp_path / "ckpt"), async_save=False)
    assert seen == [1, 2] and list(ckpt.mngr.all_steps()) == [1] and 2 not in ckpt.mngr.all_steps()


def test_non_finite_step_stops_before_its_checkpoint(tmp_path):
    """The finiteness flags a step returns are read at log / checkpoint steps without a per-step host sync;
    the first bad step and quantity are named and no checkpoint of it (or after it) exists."""
    from irlvla_jax.errors import NonFiniteError
    from irlvla_jax.train.state import finite_flags

    @jax.jit
    def nan_at_3(state, batch):
        w = state["w"] + jnp.where(batch[0] == 3.0, jnp.nan, batch)       # step 3 (1-based) goes NaN
        loss = jnp.sum(w)
        return {"w": w}, {"loss": loss, **finite_flags(loss, batch, w)}

    ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=100, async_save=False)
    prep = loop.Prepared(mesh=None, state={"w": jnp.zeros(3)}, start=0, ckpt=ckpt, train_iter=None)
    with pytest.raises(NonFiniteError, match=r"toy: step 3: non-finite loss and params; stopped before saving "
                                             r"it \(last checkpoint: step 2\)"):
        loop.run(workdir=str(tmp_path), name="toy", prep=prep, total=10, step_fn=nan_at_3, prefix="toy/",
                 next_batch=_batch, progress=False, log_every=5, checkpoint_every=2)
    assert list(ckpt.mngr.all_steps()) == [2]


def test_a_batch_of_other_rows_is_a_one_line_error_before_its_step(tmp_path):
    """The default data path checks each host batch's rows against the prepared batch size: a batch of another
    size would compile the step again and train on batches other than configured (``reward.train`` fed 8-scene
    batches with rwm.batch_size 4 did); the error names the config key, and no step runs on that batch."""
    from irlvla_jax.train import mesh as mesh_lib
    mesh = mesh_lib.make_mesh(1)
    steps = []

    @jax.jit
    def step(state, batch):
        return {"w": state["w"] + jnp.sum(batch)}, {"loss": jnp.sum(batch)}

    def counted(state, batch):
        steps.append(batch.shape[0])
        return step(state, batch)

    class Batches:                      # resumable, as the loader: the checkpoints record its position
        i = 0

        def __next__(self):
            self.i += 1
            return np.ones((8 if self.i == 3 else 4, 2), np.float32)

        def get_state(self):
            return {"i": self.i}

    ckpt = Checkpointer(str(tmp_path / "ckpt"), max_to_keep=10, async_save=False)
    batches = Batches()
    prep = loop.Prepared(mesh=mesh, state={"w": jnp.zeros(())}, start=0, ckpt=ckpt, train_iter=batches,
                         batch_size=4, batch_key="rwm.batch_size")
    with pytest.raises(ValueError, match=r"^rwm.batch_size: the training iterator gave a batch of 8 rows, "
                                         r"expected 4 .*set rwm.batch_size to the iterator's$"):
        loop.run(workdir=str(tmp_path), name="toy", prep=prep, total=5, step_fn=counted, prefix="toy/",
                 progress=False, log_every=1, checkpoint_every=1)
    assert steps == [4, 4] and list(ckpt.mngr.all_steps()) == [1, 2]
