"""Damaged datasets: every missing / corrupt file is refused when the dataset is opened, as ONE line
(a UserError) naming the file and the fix, before TFDS or grain touch it. Each case copies the small
stand-in dataset into tmp_path and damages one thing."""
import json
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from irlvla_jax.data import commands, loader
from irlvla_jax.errors import UserError
from tests.data.conftest import ROOT, SIZES

TF = os.path.join("tfds", "irlvla_world", "1.0.0")
INFO = os.path.join(TF, "dataset_info.json")
VAL = os.path.join(TF, "irlvla_world-val.array_record-00000-of-00001")


def _copy(dataset, tmp_path):
    cfg, meta = dataset
    d = tmp_path / "data"
    shutil.copytree(cfg.data.data_dir, d)
    return cfg, str(d), str(d / meta["name"])


def _write_records(f, n):
    from array_record.python import array_record_module as ar
    w = ar.ArrayRecordWriter(f, "group_size:1")
    for i in range(n):
        w.write(b"x%d" % i)
    w.close()


def _edit_info(path, fn):
    f = os.path.join(path, INFO)
    info = json.load(open(f))
    fn({s["name"]: s for s in info["splits"]})
    json.dump(info, open(f, "w"))


def _truncate(f, keep):
    data = open(f, "rb").read()
    open(f, "wb").write(data[:keep(len(data))])


DAMAGE = {  # case -> (damage(path), the file named, what the message says)
    "meta_not_json": (lambda p: open(os.path.join(p, "irlvla_dataset.json"), "w").write('{"complete": tru'),
                      "irlvla_dataset.json", "is not valid JSON (line 1"),
    "meta_binary": (lambda p: open(os.path.join(p, "irlvla_dataset.json"), "wb").write(b"\xff\xfe\x00garbage"),
                    "irlvla_dataset.json", "cannot be read"),
    "meta_not_object": (lambda p: open(os.path.join(p, "irlvla_dataset.json"), "w").write("[1, 2]"),
                        "irlvla_dataset.json", "not an object"),
    "meta_no_sizes": (lambda p: json.dump({k: v for k, v in json.load(open(os.path.join(p, "irlvla_dataset.json")))
                                           .items() if k != "sizes"}, open(os.path.join(p, "irlvla_dataset.json"),
                                                                           "w")),
                      "irlvla_dataset.json", "'sizes'"),
    "info_deleted": (lambda p: os.remove(os.path.join(p, INFO)), INFO, "is missing"),
    "info_not_json": (lambda p: _truncate(os.path.join(p, INFO), lambda n: n // 2), INFO, "is not valid JSON"),
    "features_deleted": (lambda p: os.remove(os.path.join(p, TF, "features.json")),
                         os.path.join(TF, "features.json"), "is missing"),
    "tfds_folder_deleted": (lambda p: shutil.rmtree(os.path.join(p, "tfds")), TF, "TFDS folder"),
    "anchors_deleted": (lambda p: os.remove(os.path.join(p, "anchors.npy")), "anchors.npy", "is missing"),
    "anchors_garbage": (lambda p: open(os.path.join(p, "anchors.npy"), "wb").write(b"not an npy file"),
                        "anchors.npy", "is not a .npy file"),
    "anchors_truncated": (lambda p: _truncate(os.path.join(p, "anchors.npy"), lambda n: n - 40), "anchors.npy",
                          "cannot be read"),
    "anchors_shape": (lambda p: np.save(os.path.join(p, "anchors.npy"), np.zeros((3, 8, 3), np.float32)),
                      "anchors.npy", "expected (4, 8, 3) float32"),
    "anchors_dtype": (lambda p: np.save(os.path.join(p, "anchors.npy"), np.zeros((4, 8, 3), np.float64)),
                      "anchors.npy", "dtype float64"),
    "anchors_nan": (lambda p: np.save(os.path.join(p, "anchors.npy"), np.full((4, 8, 3), np.nan, np.float32)),
                    "anchors.npy", "96 non-finite"),
    "shard_deleted": (lambda p: os.remove(os.path.join(p, VAL)), VAL, "of split 'val' is missing"),
    "shard_truncated": (lambda p: _truncate(os.path.join(p, VAL), lambda n: n - 100), VAL, "truncated or corrupt"),
    "shard_tiny": (lambda p: _truncate(os.path.join(p, VAL), lambda n: 100), VAL, "truncated or corrupt"),
    "shard_short": (lambda p: _write_records(os.path.join(p, VAL), 2), VAL, "holds 2 records but"),
    "split_empty_file": (lambda p: _write_records(os.path.join(p, VAL), 0), VAL, "split 'val' is empty"),
    "split_empty_info": (lambda p: _edit_info(p, lambda s: s["val"].update(shardLengths=[])), INFO,
                         "split 'val' is empty"),
    "split_missing_info": (lambda p: _edit_info(p, lambda s: s.pop("hard").update(name="gone")), INFO,
                           "lists no split 'hard'"),
}


def _args():
    return types.SimpleNamespace(rest=[])


def _assert_one_line(e, path, fname):
    msg = str(e)
    assert isinstance(e, UserError) and "\n" not in msg, msg
    assert msg.startswith(f"dataset {path}") and fname in msg and "irlvla generate" in msg, msg


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_dataset_is_one_line_naming_the_file(dataset, tmp_path, case):
    cfg, d, path = _copy(dataset, tmp_path)
    damage, fname, says = DAMAGE[case]
    damage(path)
    with pytest.raises(loader.DatasetError) as e:
        loader.make_loader(cfg, "train", 8, data_dir=d)
    _assert_one_line(e.value, path, fname)
    assert says in str(e.value), str(e.value)
    for fn in (lambda: loader.load_split(cfg, "train", data_dir=d), lambda: loader.load_anchors(cfg, data_dir=d)):
        with pytest.raises(loader.DatasetError, match=re.escape(says)):
            fn()


@pytest.mark.parametrize("case", ["anchors_deleted", "anchors_nan", "shard_truncated"])
def test_inspect_refuses_damaged_dataset(dataset, tmp_path, case, capsys):
    cfg, d, path = _copy(dataset, tmp_path)
    damage, fname, _ = DAMAGE[case]
    damage(path)
    c = cfg.copy_and_resolve_references()
    c.data.data_dir = d
    with pytest.raises(loader.DatasetError) as e:
        commands.inspect(c, str(tmp_path), _args())
    _assert_one_line(e.value, path, fname)
    assert "read " not in capsys.readouterr().err  # refused before reading any split


def test_generate_names_a_corrupt_metadata_file(dataset, tmp_path):
    cfg, d, path = _copy(dataset, tmp_path)
    DAMAGE["meta_not_json"][0](path)
    c = cfg.copy_and_resolve_references()
    c.data.data_dir = d
    with pytest.raises(UserError) as e:
        commands.generate(c, str(tmp_path), _args())
    _assert_one_line(e.value, path, "irlvla_dataset.json")


def test_cli_inspect_without_anchors_is_one_line(dataset, tmp_path):
    cfg, d, path = _copy(dataset, tmp_path)
    os.remove(os.path.join(path, "anchors.npy"))
    flags = [f"--config.data.{k}={v}" for k, v in {**SIZES, "num_anchors": 4, "data_dir": d}.items()]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("IRLVLA_TRACEBACK", None)
    r = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "inspect", "--config", "configs/tiny.py",
                        "--workdir", str(tmp_path), *flags], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=120)
    err = [l for l in r.stderr.strip().splitlines() if l.strip()]
    assert r.returncode == 2 and len(err) == 1, r.stderr[-3000:]
    assert f"dataset {path}: anchors.npy is missing" in err[0] and "irlvla generate" in err[0]
