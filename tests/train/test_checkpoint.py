"""Checkpoints (irlvla_jax/train/checkpoint.py): a state that does not match names the entry."""
import jax
import numpy as np
import pytest

from irlvla_jax.train.checkpoint import Checkpointer, CheckpointMismatch


@pytest.mark.parametrize("digest_entries", [True, False])
def test_state_mismatch_names_the_entry(tmp_path, monkeypatch, digest_entries):
    """Validated from the shapes the digest holds (no array's metadata opened), and from Orbax's metadata
    for a step written before digests held them."""
    from irlvla_jax.train import checkpoint as C
    if not digest_entries:
        full = C.digest
        monkeypatch.setattr(C, "digest", lambda tree: {k: v for k, v in full(tree).items() if k != "entries"})
    ck = Checkpointer(str(tmp_path), async_save=False)
    ck.save(1, {"params": {"planner": {"kernel": np.zeros((4, 3), np.float32)}}, "step": np.int32(1)})
    ck.wait()
    if digest_entries:
        def no_metadata(*a, **k):
            raise AssertionError("validated from Orbax's metadata, not the digest")
        monkeypatch.setattr(ck.mngr, "item_metadata", no_metadata)
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


# --------------------------------------------------------------------------------------------------
# Integrity: a digest written at save time, checked on restore; resume falls back to the newest intact step.

def _two_steps(tmp_path, n=4000):
    import jax.numpy as jnp
    ck = Checkpointer(str(tmp_path / "ck"), async_save=False)
    for step in (1, 2):
        ck.save(step, {"params": {"w": jnp.arange(n, dtype=jnp.float32) * step}, "step": jnp.int32(step)})
    ck.wait()
    return ck, {"params": {"w": jnp.zeros(n, jnp.float32)}, "step": jnp.int32(0)}


def _largest_data_file(step_dir):
    import os
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs
             if os.sep + "d" + os.sep in os.path.join(dp, f) + os.sep]
    return max(files, key=os.path.getsize)


def _damage_xor(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _damage_low_bit(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))


def _damage_truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])


def _damage_delete(path):
    import os
    os.remove(path)


# A failed read of the damaged step abandons Orbax's other pending shard reads; depending on timing, Python
# reports them as unraisable exceptions (a GeneratorExit in _read_array_index_and_device_put, or "Event loop
# is closed" from their callbacks): expected here, and only here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("damage", [_damage_xor, _damage_low_bit, _damage_truncate, _damage_delete])
def test_damaged_array_file_falls_back_to_the_intact_step(tmp_path, capsys, damage):
    import os
    ck, state = _two_steps(tmp_path)
    damage(_largest_data_file(ck.where(2)))
    restored, step = ck.resume(state, name="il")
    out = capsys.readouterr().out
    assert step == 1 and int(restored["step"]) == 1
    np.testing.assert_array_equal(np.asarray(restored["params"]["w"]), np.arange(4000, dtype=np.float32))
    line = [ln for ln in out.splitlines() if "set aside" in ln][0]
    assert ck.where(2) in line and "falling back" in line and len(out.splitlines()) == 2   # + "resumed from"
    assert os.path.isdir(ck.where(2) + ".corrupt") and ck.all_steps() == [1]


@pytest.mark.parametrize("what", ["config", "state"])
def test_damaged_metadata_or_missing_state_falls_back(tmp_path, capsys, what):
    import os
    import shutil
    ck, state = _two_steps(tmp_path)
    if what == "config":
        open(os.path.join(ck.where(2), "config", "metadata"), "w").write("{not json")
    else:
        shutil.rmtree(os.path.join(ck.where(2), "state"))
    _, step = ck.resume(state, name="rwm")
    assert step == 1 and f"checkpoint {ck.where(2)}" in capsys.readouterr().out


def test_nan_is_never_saved_and_digest_lists_steps(tmp_path):
    import jax.numpy as jnp
    from irlvla_jax.errors import NonFiniteError
    from irlvla_jax.train.checkpoint import verify_directory
    ck, _ = _two_steps(tmp_path)
    with pytest.raises(NonFiniteError, match=r"refusing to save step 3 .*params/w holds NaN"):
        ck.save(3, {"params": {"w": jnp.full(4, jnp.nan)}, "step": jnp.int32(3)})
    assert ck.all_steps() == [1, 2]
    _damage_xor(_largest_data_file(ck.where(2)))
    rows = {r["step"]: r["status"] for r in verify_directory(ck.directory)}
    assert rows[1] == "ok" and rows[2].startswith("corrupt:")


def test_padding_sizes_may_differ_but_model_sizes_may_not():
    """A checkpoint serves scenes of another padding (more agents / lanes: real logs), never another model."""
    from irlvla_jax.train.checkpoint import PADDING_KEYS, compare_configs
    saved = {"scene": {"num_agents": 16, "num_lanes": 32, "camera_hw": [48, 96]}, "model": {"dim": 64}}
    compare_configs(saved, {"scene": {"num_agents": 64, "num_lanes": 64, "camera_hw": [48, 96]},
                            "model": {"dim": 64}}, "ck")
    assert "scene.num_agents" in PADDING_KEYS and "scene.camera_hw" not in PADDING_KEYS
    with pytest.raises(CheckpointMismatch, match="config.scene.camera_hw is"):
        compare_configs(saved, {"scene": {"num_agents": 16, "num_lanes": 32, "camera_hw": [96, 96]},
                                "model": {"dim": 64}}, "ck")
    with pytest.raises(CheckpointMismatch, match="config.model.dim is"):
        compare_configs(saved, {"scene": saved["scene"], "model": {"dim": 32}}, "ck")


def test_run_keys_name_the_rwm_setting_that_differs():
    """An RWM checkpoint trained with another model-defining rwm.* key is refused naming it; training keys may
    change on resume; a checkpoint from before a key existed is left to the state-tree check."""
    from irlvla_jax.train.checkpoint import compare_configs
    from irlvla_jax.train.reward import RWM_MODEL_KEYS
    saved = {"scene": {}, "model": {}, "rwm": {"scene_pose_stride": 1, "num_layers": 2, "steps": 900}}
    now = {"scene": {}, "model": {}, "rwm": {"scene_pose_stride": 2, "num_layers": 2, "steps": 1800}}
    with pytest.raises(CheckpointMismatch, match=r"config.rwm.scene_pose_stride is 1 in the checkpoint but 2 now"):
        compare_configs(saved, now, "ck", RWM_MODEL_KEYS)
    compare_configs(saved, now, "ck")                                       # not a run key: not compared
    compare_configs(dict(saved, rwm={"num_layers": 2, "steps": 900}), now, "ck", RWM_MODEL_KEYS)   # key absent then
    compare_configs(dict(saved, rwm=dict(now["rwm"], steps=10)), now, "ck", RWM_MODEL_KEYS)        # steps may change


def test_array_handler_falls_back_to_orbax_default_without_its_private_store(monkeypatch):
    """The tuned jax.Array handler needs Orbax's metadata store, which is not public: with the pinned Orbax it
    is registered; where the store cannot be imported the registration is skipped and Orbax's handler stays."""
    import sys
    import jax
    import orbax.checkpoint as ocp
    from orbax.checkpoint._src import metadata as orbax_metadata
    from irlvla_jax.train import checkpoint as ck
    assert ck.ARRAY_HANDLER_TUNED
    before = ocp.type_handlers.get_type_handler(jax.Array)
    monkeypatch.delattr(orbax_metadata, "array_metadata_store")
    monkeypatch.setitem(sys.modules, "orbax.checkpoint._src.metadata.array_metadata_store", None)
    assert ck.register_array_handler() is False
    assert ocp.type_handlers.get_type_handler(jax.Array) is before
