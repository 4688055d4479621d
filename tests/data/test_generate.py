"""Generation: determinism over worker counts, validation on write, atomicity (no complete-looking
dataset after a failure or a kill), metadata, anchors stored with the dataset."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from irlvla_jax.data import loader
from irlvla_jax.data.anchors import compute_anchors
from irlvla_jax.data.tfds_builder import META_FILE, generate_dataset
from irlvla_jax.scene import FAMILIES, SPLITS, SceneError
from tests.data.conftest import ROOT, SIZES, STANDIN, tiny_config


def _record_files(path):
    return sorted(glob.glob(os.path.join(path, "tfds", "*", "*", "*.array_record*")))


def test_same_seed_gives_identical_records_for_any_worker_count(tmp_path, dataset):
    cfg0, meta0 = dataset
    c = tiny_config()
    m2 = generate_dataset(c, str(tmp_path / "w2"), generator=STANDIN, workers=2, progress=False)
    f0 = _record_files(os.path.join(cfg0.data.data_dir, meta0["name"]))
    f2 = _record_files(os.path.join(str(tmp_path / "w2"), m2["name"]))
    assert len(f0) == len(f2) == 4
    for a, b in zip(f0, f2):
        assert os.path.basename(a) == os.path.basename(b)
        assert open(a, "rb").read() == open(b, "rb").read(), a
    assert m2["families"] == meta0["families"] and m2["workers"] == 2
    # a different seed gives different records
    c.seed = 1
    m3 = generate_dataset(c, str(tmp_path / "s1"), generator=STANDIN, workers=0, progress=False)
    f3 = _record_files(os.path.join(str(tmp_path / "s1"), m3["name"]))
    assert open(f3[0], "rb").read() != open(f0[0], "rb").read()


def test_metadata_counts_families_and_anchors(dataset):
    cfg, meta = dataset
    assert meta["complete"] and meta["seed"] == 0
    for s in SPLITS:
        assert meta["sizes"][s] == SIZES[f"num_{s}"]
        assert sum(meta["families"][s].values()) == SIZES[f"num_{s}"]
        assert set(meta["families"][s]) == set(FAMILIES)
    train = loader.load_split(cfg, "train")
    np.testing.assert_array_equal(train.scene_id, np.arange(SIZES["num_train"]))  # sorted by id
    anchors = loader.load_anchors(cfg)
    np.testing.assert_array_equal(anchors, compute_anchors(train.expert_future, 4, seed=0))
    fam = {f: int((train.family == i).sum()) for i, f in enumerate(FAMILIES)}
    assert fam == meta["families"]["train"]


def test_generate_skips_identical_and_refuses_mismatched_spec(tmp_path, dataset):
    cfg, meta = dataset
    again = generate_dataset(cfg, cfg.data.data_dir, generator=STANDIN, workers=0, progress=False)
    assert again["skipped"]
    c = tiny_config(data_dir=cfg.data.data_dir)
    c.scene.num_agents = 8
    with pytest.raises(loader.DatasetError, match="scene.num_agents=16 but the config has config.scene.num_agents=8"):
        loader.make_loader(c, "train", 4)
    c = tiny_config(data_dir=cfg.data.data_dir, num_val=250)
    with pytest.raises(loader.DatasetError, match="data.num_val=16 but the config has config.data.num_val=250"):
        loader.load_split(c, "val")


def test_invalid_scene_fails_generate_and_leaves_nothing(tmp_path):
    c = tiny_config()
    d = str(tmp_path)
    with pytest.raises(SceneError) as e:
        generate_dataset(c, d, generator="tests.data.standin:nan_generate_scene", workers=0, progress=False)
    assert "'expert_future'" in str(e.value) and "train[5]" in str(e.value)
    with pytest.raises(RuntimeError, match="boom"):
        generate_dataset(c, d, generator="tests.data.standin:failing_generate_scene", workers=0, progress=False)
    assert os.listdir(d) == []
    with pytest.raises(loader.DatasetError, match="no dataset 'irlvla_world_tiny'"):
        loader.load_split(c, "val", data_dir=d)


def test_killed_generate_leaves_no_readable_dataset(tmp_path):
    d = str(tmp_path)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.data.conftest import tiny_config\n"
            "from irlvla_jax.data.tfds_builder import generate_dataset\n"
            "generate_dataset(tiny_config(), %r, generator='tests.data.standin:slow_generate_scene', workers=0,"
            " progress=False)\n") % (ROOT, d)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    try:
        while time.time() < deadline:  # wait until records are being written
            if glob.glob(os.path.join(d, ".irlvla_world_tiny.incomplete-*", "tfds", "**", "*"), recursive=True):
                time.sleep(0.5)
                break
            assert p.poll() is None, p.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("generate never started writing")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not os.path.exists(os.path.join(d, "irlvla_world_tiny"))
    with pytest.raises(loader.DatasetError, match="incomplete"):
        loader.load_split(tiny_config(), "val", data_dir=d)


def test_dataset_without_marker_is_refused(tmp_path, dataset):
    import shutil
    cfg, meta = dataset
    copy = tmp_path / "copy"
    shutil.copytree(cfg.data.data_dir, copy)
    os.remove(copy / meta["name"] / META_FILE)
    with pytest.raises(loader.DatasetError, match=r"incomplete \(no irlvla_dataset.json"):
        loader.make_loader(cfg, "train", 4, data_dir=str(copy))
