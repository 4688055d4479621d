"""Generation: determinism over worker counts, validation on write, atomicity (no complete-looking
dataset after a failure or a kill), metadata, anchors stored with the dataset."""
import glob
import hashlib
import json
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
from irlvla_jax.scene import FAMILIES, WORLD_SPLITS, SceneError
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


# irlvla_dataset.json keys that legitimately differ between runs (timings, the worker count)
VOLATILE_META = {"generate_seconds", "cpu_seconds", "scenes_per_second", "workers"}
GENERATE_PROC = os.path.join(ROOT, "tests", "data", "generate_proc.py")


def _file_hashes(path):
    out = {}
    for r, _, fs in os.walk(path):
        for f in fs:
            with open(os.path.join(r, f), "rb") as fh:
                out[os.path.relpath(os.path.join(r, f), path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def test_generate_is_byte_identical_across_processes_and_worker_counts(tmp_path, dataset):
    """Files, not just decoded scenes: another process (its own protobuf map hash seed) with 2 workers
    writes the same bytes as this process with none; only irlvla_dataset.json's timings differ."""
    from array_record.python.array_record_module import ArrayRecordReader

    from irlvla_jax.data.tfds_builder import canonical_example
    cfg0, meta0 = dataset
    d = str(tmp_path)
    p = subprocess.run([sys.executable, GENERATE_PROC, d, "2", STANDIN], cwd=ROOT, capture_output=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    a, b = os.path.join(cfg0.data.data_dir, meta0["name"]), os.path.join(d, meta0["name"])
    ha, hb = _file_hashes(a), _file_hashes(b)
    assert sorted(ha) == sorted(hb)
    assert len([f for f in ha if ".array_record-" in f]) == 4
    differ = sorted(f for f in ha if ha[f] != hb[f])
    assert differ in ([], [META_FILE]), differ
    ma, mb = (json.load(open(os.path.join(x, META_FILE))) for x in (a, b))
    assert {k: v for k, v in ma.items() if k not in VOLATILE_META} == \
        {k: v for k, v in mb.items() if k not in VOLATILE_META}
    assert ma["workers"] == 0 and mb["workers"] == 2
    # every record is in canonical form (independent of whether two processes' map orders happen to agree)
    for f in _record_files(b):
        r = ArrayRecordReader(f)
        try:
            raw = r.read_all()
        finally:
            r.close()
        assert raw and all(canonical_example(x) == x for x in raw), f


def _processes():
    """{pid: (ppid, start time)} of the live (non-zombie) processes: psutil if installed, else /proc."""
    try:
        import psutil
    except ImportError:
        psutil = None
    out = {}
    if psutil is not None:
        for q in psutil.process_iter(["ppid", "create_time", "status"]):
            if q.info["status"] != psutil.STATUS_ZOMBIE and q.info["ppid"] is not None:
                out[q.pid] = (q.info["ppid"], q.info["create_time"])
        return out
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs psutil or /proc to list processes")
    for e in os.listdir("/proc"):
        try:
            with open(f"/proc/{e}/stat") as fh:
                f = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if f[0] not in "ZX":  # state; f[1] ppid; f[19] start time (fields 3, 4 and 22 of stat)
            out[int(e)] = (int(f[1]), f[19])
    return out


def _descendants(pid, procs):
    kids, todo = {}, [pid]
    while todo:
        p = todo.pop()
        for c, (pp, start) in procs.items():
            if pp == p and c not in kids:
                kids[c] = start
                todo.append(c)
    return kids


def test_killed_generate_takes_its_workers_with_it(tmp_path):
    """kill -9 of a 2-worker generate mid-run: its workers (and the multiprocessing resource tracker)
    end within seconds instead of living on as orphans."""
    d, marks = str(tmp_path / "data"), tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, IRLVLA_TEST_MARKS=str(marks))
    p = subprocess.Popen([sys.executable, GENERATE_PROC, d, "2", "slow"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kids = {}
    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # until both workers run the generator (their initializer done)
            kids.update(_descendants(p.pid, _processes()))
            if len(os.listdir(marks)) >= 2:
                break
            assert p.poll() is None, p.stderr.read().decode()[-3000:]
            time.sleep(0.2)
        else:
            pytest.fail("the workers never started generating")
        kids.update(_descendants(p.pid, _processes()))
        workers = {int(m) for m in os.listdir(marks)}
        assert workers <= set(kids) and len(kids) >= 2, (workers, kids)
    finally:
        p.kill()
        p.wait()
    deadline = time.time() + 10
    while True:
        procs = _processes()
        left = [c for c, start in kids.items() if c in procs and procs[c][1] == start]
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    for c in left:  # do not leave them behind for the next test
        try:
            os.kill(c, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"processes of the killed generate still alive 10 s later: {left} of {sorted(kids)}"
    assert p.returncode == -signal.SIGKILL


def test_metadata_counts_families_and_anchors(dataset):
    cfg, meta = dataset
    assert meta["complete"] and meta["seed"] == 0
    for s in WORLD_SPLITS:
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
