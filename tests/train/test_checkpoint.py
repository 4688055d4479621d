"""Checkpoints (irlvla_jax/train/checkpoint.py): a state that does not match names the entry."""
import jax
import numpy as np
import pytest

from irlvla_jax.train.checkpoint import Checkpointer, CheckpointMismatch


def test_state_mismatch_names_the_entry(tmp_path):
    ck = Checkpointer(str(tmp_path), async_save=False)
    ck.save(1, {"params": {"planner": {"kernel": np.zeros((4, 3), np.float32)}}, "step": np.int32(1)})
    ck.wait()
    bad_shape = {"params": {"planner": {"kernel": jax.ShapeDtypeStruct((5, 3), np.float32)}},
                 "step": jax.ShapeDtypeStruct((), np.int32)}
    with pytest.raises(CheckpointMismatch, match=r"params/planner/kernel has shape \(4, 3\) in the checkpoint "
                                                 r"but \(5, 3\) in the model"):
        ck.restore(bad_shape)
    missing = {"params": {"planner": {"kernel": jax.ShapeDtypeStruct((4, 3), np.float32),
                                      "bias": jax.ShapeDtypeStruct((3,), np.float32)}},
               "step": jax.ShapeDtypeStruct((), np.int32)}
    with pytest.raises(CheckpointMismatch, match="params/planner/bias is missing"):
        ck.restore(missing)
    good = {"params": {"planner": {"kernel": jax.ShapeDtypeStruct((4, 3), np.float32)}},
            "step": jax.ShapeDtypeStruct((), np.int32)}
    state, step = ck.restore(good)
    assert step == 1 and state["params"]["planner"]["kernel"].shape == (4, 3)
