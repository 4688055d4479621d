"""Loader: exact resume from iterator state, epochs, 2-process sharding (real jax.distributed),
to_global, validation on read through the grain pipeline."""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from irlvla_jax.data import loader
from irlvla_jax.scene import Scene, SceneError
from tests.data.conftest import ROOT, SIZES


def _ids(it, n):
    return [next(it).scene_id.copy() for _ in range(n)]


def test_batches_and_exact_resume(dataset):
    cfg, _ = dataset
    it = loader.make_loader(cfg, "train", 8, seed=3)
    first = next(it)
    assert first.camera.shape == (8, 48, 96, 3) and first.camera.dtype == np.uint8
    assert first.expert_future.shape == (8, 8, 3)
    _ids(it, 2)
    state = it.get_state()
    after = _ids(it, 7)  # crosses the epoch boundary (48 / 8 = 6 batches per epoch)
    it2 = loader.make_loader(cfg, "train", 8, seed=3)
    it2.set_state(state)
    np.testing.assert_array_equal(np.stack(after), np.stack(_ids(it2, 7)))


def test_epochs_cover_split_and_reshuffle(dataset):
    cfg, _ = dataset
    n = SIZES["num_train"]
    ep = [np.concatenate(_ids(loader.make_loader(cfg, "train", 8, seed=s, num_epochs=1), n // 8))
          for s in (0, 0, 1)]
    assert sorted(ep[0].tolist()) == list(range(n))
    np.testing.assert_array_equal(ep[0], ep[1])      # same seed, same order
    assert not np.array_equal(ep[0], ep[2])          # another seed, another order
    it = loader.make_loader(cfg, "train", 8, seed=0, num_epochs=2)
    both = np.concatenate([b.scene_id for b in it])
    assert len(both) == 2 * n and sorted(both[:n].tolist()) == sorted(both[n:].tolist()) == list(range(n))
    assert not np.array_equal(both[:n], both[n:])   # each epoch reshuffled
    plain = np.concatenate([b.scene_id for b in loader.make_loader(cfg, "val", 4, shuffle=False, num_epochs=1)])
    assert sorted(plain.tolist()) == sorted(loader.load_split(cfg, "val").scene_id.tolist())


def test_simulated_process_shards_are_disjoint_and_complete(dataset):
    cfg, _ = dataset
    got = [np.concatenate([b.scene_id for b in loader.make_loader(
        cfg, "train", 4, seed=9, num_epochs=1, process_index=i, process_count=3)]) for i in range(3)]
    assert all(len(g) == SIZES["num_train"] // 3 for g in got)
    allids = np.concatenate(got)
    assert len(set(allids.tolist())) == len(allids) == SIZES["num_train"]


def test_two_real_processes_shard_disjointly_and_to_global(dataset, tmp_path):
    cfg, _ = dataset
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = os.path.join(ROOT, "tests", "data", "shard_worker.py")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
    outs = [str(tmp_path / f"p{i}.json") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, worker, f"127.0.0.1:{port}", str(i), cfg.data.data_dir, outs[i]],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(2)]
    logs = [p.communicate(timeout=120)[0].decode() for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    r = [json.load(open(o)) for o in outs]
    assert r[0]["process_count"] == 2
    a, b = set(r[0]["ids"]), set(r[1]["ids"])
    assert len(r[0]["ids"]) == len(r[1]["ids"]) == SIZES["num_train"] // 2
    assert not a & b and a | b == set(range(SIZES["num_train"]))
    # global batch = both processes' local batches; this process's shards hold its own rows
    for q in r:
        assert q["global_shape"] == [8, 48, 96, 3]
        rows = [v for _, sh in q["shards"] for v in sh]
        assert rows == q["local_ids"]


def test_to_global_single_process(dataset):
    cfg, _ = dataset
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    b = next(loader.make_loader(cfg, "train", 16, seed=0))
    g = loader.to_global(b, mesh)
    assert g.agent_boxes.shape == (16, 16, 41, 5) and len(g.agent_boxes.addressable_shards) == 8
    np.testing.assert_array_equal(np.asarray(g.scene_id), b.scene_id)
    bad = next(loader.make_loader(cfg, "train", 12, seed=0))
    with pytest.raises(ValueError, match="divisible by this process's 8 device"):
        loader.to_global(bad, mesh)


def test_corrupt_record_raises_scene_error_through_the_pipeline(dataset, monkeypatch):
    cfg, _ = dataset
    real = loader._RawSource.__getitem__

    def corrupt(self, i):
        j, ex = real(self, i)
        if j == 3:
            ex = dict(ex, record=ex["record"][:-100])
        return j, ex
    monkeypatch.setattr(loader._RawSource, "__getitem__", corrupt)
    it = loader.make_loader(cfg, "val", 16, shuffle=False, num_threads=0)
    with pytest.raises(SceneError) as e:
        next(it)
    msg = str(e.value)
    assert "val record 3 (scene_id" in msg and "truncated" in msg and "\n" not in msg


def test_a_bad_value_deep_in_a_batch_names_its_record(dataset, monkeypatch):
    """Batches are validated whole (``loader._checked``): a NaN in record 5 of a 16-scene batch is still a
    one-line SceneError naming that record, its scene id and the field, in the grain pipeline and in
    ``iter_split``; ``decode_records`` of the clean records gives the pipeline's batch."""
    from irlvla_jax.data import records
    from irlvla_jax.scene import SceneSpec
    cfg, _ = dataset
    spec = SceneSpec.from_config(cfg.scene)
    real = loader._RawSource.__getitem__

    def poisoned(self, i):
        j, ex = real(self, i)
        if j == 5:
            d = records.decode_scene(ex["record"], spec).to_dict()
            d["expert_future"] = d["expert_future"].copy()
            d["expert_future"][2, 0] = np.nan
            ex = dict(ex, record=records.encode_scene(Scene(**d)))
        return j, ex
    good = next(loader.make_loader(cfg, "val", 16, shuffle=False, num_threads=0))
    monkeypatch.setattr(loader._RawSource, "__getitem__", poisoned)
    want = f"val record 5 (scene_id {int(good.scene_id[5])})"
    for call in (lambda: next(loader.make_loader(cfg, "val", 16, shuffle=False, num_threads=0)),
                 lambda: next(loader.iter_split(cfg, "val", 16))):
        with pytest.raises(SceneError) as e:
            call()
        msg = str(e.value)
        assert want in msg and "'expert_future'" in msg and "finite" in msg and "\n" not in msg, msg
    rows = loader.decode_records(spec, "val", [real(loader._RawSource(loader._data_source(
        loader.open_dataset(cfg), "val"), "val"), i) for i in range(16)])
    for k in ("expert_future", "agent_boxes", "camera", "scene_id"):
        np.testing.assert_array_equal(getattr(rows, k), getattr(good, k))


def test_batch_larger_than_shard_and_missing_data_dir(dataset):
    cfg, _ = dataset
    with pytest.raises(ValueError, match="fewer than batch_size 64"):
        loader.make_loader(cfg, "val", 64)
    c = cfg.copy_and_resolve_references()
    c.data.data_dir = ""
    with pytest.raises(ValueError, match="config.data.data_dir is empty"):
        loader.load_anchors(c)
    assert loader.data_dir(c, "/w") == "/w/data"


def test_iterator_state_saves_and_restores_through_orbax(dataset, tmp_path):
    import grain
    import orbax.checkpoint as ocp
    cfg, _ = dataset
    it = loader.make_loader(cfg, "train", 8, seed=4)
    _ids(it, 3)
    mngr = ocp.CheckpointManager(str(tmp_path / "ckpt"))
    mngr.save(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
    want = _ids(it, 4)
    it2 = loader.make_loader(cfg, "train", 8, seed=4)
    mngr.restore(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(it2)))
    np.testing.assert_array_equal(np.stack(want), np.stack(_ids(it2, 4)))
