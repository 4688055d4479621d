"""``irlvla score-vocab`` (irlvla_jax/scoring/vocab.py): the vocabulary (k-means of the train split's
expert futures, written once, reused), its scores per (scene, trajectory) equal to direct scorer calls,
resuming after a kill, the reader, and one-line errors. A small stand-in dataset (test split: 10 scenes),
K = 20 trajectories, 3 scenes x 8 trajectories per call (both padded), shards of 4 scenes: one
compilation of the real scorer for the whole module."""
from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import loader
from irlvla_jax.errors import UserError
from irlvla_jax.scoring import epdms
from irlvla_jax.scoring import vocab as V
from tests.data.conftest import ROOT, STANDIN, tiny_config

K, B_CALL, N_CALL, SHARD = 20, 3, 8, 4
SIZES = dict(num_train=40, num_val=4, num_test=10, num_hard=4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(config, data dir) of a stand-in world dataset."""
    from irlvla_jax.data.tfds_builder import generate_dataset
    d = str(tmp_path_factory.mktemp("vocabdata"))
    c = tiny_config(data_dir=d, **SIZES)
    generate_dataset(c, d, generator=STANDIN, workers=0, progress=False)
    return c, d


class Counting:
    """The real jitted scorer, counting its calls and the scene ids it saw."""

    def __init__(self):
        self.fn, self.calls, self.ids = epdms.make_scorer("tracked", True), 0, set()

    def __call__(self, scenes, traj):
        self.calls += 1
        self.ids.update(int(i) for i in np.asarray(scenes.scene_id))
        return self.fn(scenes, traj)


def run(c, d, split="test", scorer=None, **kw):
    kw = dict(dict(scenes_per_call=B_CALL, traj_per_call=N_CALL, shard_scenes=SHARD, progress=False,
                   log=lambda *a: None), **kw)
    return V.score_split(c, d, split, K, scorer=scorer or Counting(), **kw)


@pytest.fixture(scope="module")
def scored(data):
    c, d = data
    s = run(c, d)
    return c, d, s


def test_scores_equal_direct_scorer_calls(scored):
    c, d, summary = scored
    out = V.read_vocab_scores(summary["path"])
    scenes = loader.load_split(c, "test", data_dir=d)
    vocab = np.load(summary["vocab"])
    assert vocab.shape == (K, 8, 3) and vocab.dtype == np.float32
    assert out["scene_id"].tolist() == sorted(np.asarray(scenes.scene_id).tolist())
    assert summary["scenes"] == summary["scenes_scored"] == 10 and summary["trajectories_scored"] == 10 * K
    for f in V.FIELDS:
        assert out[f].shape == (10, K) and out[f].dtype == V.DTYPES[f]
    # Direct calls on other groupings: random scenes x random vocabulary rows (same static shape).
    fn = epdms.make_scorer("tracked", True)
    rng = np.random.default_rng(0)
    for _ in range(4):
        rows = rng.choice(10, B_CALL, replace=False)
        cols = rng.choice(K, N_CALL, replace=False)
        r = fn(S.index(scenes, rows), np.broadcast_to(vocab[cols], (B_CALL, N_CALL, 8, 3)))
        for f in V.FIELDS:
            want = np.asarray(getattr(r, f)).astype(V.DTYPES[f])
            np.testing.assert_allclose(out[f][rows][:, cols], want, atol=1e-6, rtol=0, err_msg=f)
    assert np.all(out["EC"] == 1)               # no previous plans


def test_vocab_is_kmeans_of_train_futures_and_reused(scored):
    c, d, summary = scored
    from irlvla_jax.data.anchors import kmeans
    futures = np.concatenate([b.expert_future for b in loader.iter_split(c, "train", 64, data_dir=d)])
    np.testing.assert_allclose(np.load(summary["vocab"]), kmeans(futures, K, seed=V.VOCAB_SEED,
                                                                 iters=V.KMEANS_ITERS), atol=1e-5)
    assert os.path.dirname(summary["vocab"]) == os.path.dirname(summary["path"])   # beside the dataset
    meta = V.read_meta(summary["path"])
    assert meta["complete"] and meta["scenes_done"] == 10 and meta["K"] == K and meta["split"] == "test"
    assert meta["vocab_sha256"] == V._sha256(summary["vocab"])
    # A wrong vocabulary file is refused, not silently used.
    bad = os.path.join(os.path.dirname(summary["vocab"]), V.VOCAB_FILE.format(k=7))
    np.save(bad, np.zeros((5, 8, 3), np.float32))
    with pytest.raises(UserError, match="vocab_7.npy has shape"):
        V.score_split(c, d, "test", 7, scorer=Counting(), progress=False, log=lambda *a: None)
    os.remove(bad)


def test_resume_scores_only_missing_shards(scored):
    c, d, summary = scored
    path = summary["path"]
    before = V.read_vocab_scores(path)
    shards = sorted(f for f in os.listdir(path) if f.endswith(".array_record"))
    assert shards == [V.shard_name(i) for i in range(3)]          # 4 + 4 + 2 scenes
    mtimes = {f: os.stat(os.path.join(path, f)).st_mtime_ns for f in shards}
    os.remove(os.path.join(path, shards[-1]))                      # a kill before the last shard's rename
    stray = os.path.join(path, f".{shards[-1]}.tmp-99999")
    with open(stray, "wb") as fh:
        fh.write(b"half a shard")
    with pytest.raises(UserError, match="shard_00002.array_record is missing"):
        list(V.iter_vocab_scores(path))
    sc = Counting()
    s = run(c, d, scorer=sc)
    assert s["scenes_scored"] == 2 and s["trajectories_scored"] == 2 * K
    assert sc.calls == 3 and sc.ids == set(before["scene_id"][8:].tolist())   # 1 scene chunk x 3 vocab chunks
    assert not os.path.exists(stray) and os.path.isfile(os.path.join(path, V.ORDER_FILE))
    for f in shards[:-1]:
        assert os.stat(os.path.join(path, f)).st_mtime_ns == mtimes[f]
    after = V.read_vocab_scores(path)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])
    # A damaged shard (wrong record count) is rescored; a complete folder scores nothing.
    with open(os.path.join(path, shards[0]), "r+b") as fh:
        fh.truncate(100)
    sc = Counting()
    assert run(c, d, scorer=sc)["scenes_scored"] == 4 and sc.ids == set(before["scene_id"][:4].tolist())
    sc = Counting()
    s = run(c, d, scorer=sc)
    assert sc.calls == 0 and s["scenes_scored"] == 0 and s["trajectories_per_s"] is None
    for k in before:
        np.testing.assert_array_equal(V.read_vocab_scores(path)[k], before[k])


def test_crash_mid_run_then_resume(data):
    """A run that dies mid-split (here: the scorer raises on its 4th call, in the second shard) leaves the
    finished shard and metadata saying so; the rerun scores only the rest."""
    c, d = data

    class Dies(Counting):
        def __call__(self, scenes, traj):
            if self.calls == 3:
                raise KeyboardInterrupt("killed")
            return super().__call__(scenes, traj)
    with pytest.raises(KeyboardInterrupt):
        run(c, d, split="hard", scorer=Dies(), shard_scenes=2)       # 4 scenes: shards of 2, 3 calls each
    path = os.path.join(d, c.data.name, V.SCORES_DIR.format(split="hard", k=K))
    meta = V.read_meta(path)
    assert (meta["scenes_done"], meta["shards_done"], meta["complete"]) == (2, 1, False)
    with pytest.raises(UserError, match="only 2 of 4 scenes"):
        V.read_vocab_scores(path)
    assert V.read_vocab_scores(path, allow_partial=True)["EPDMS"].shape == (2, K)
    sc = Counting()
    s = run(c, d, split="hard", scorer=sc, shard_scenes=2)
    assert sc.calls == 3 and s["scenes_scored"] == 2 and V.read_meta(path)["complete"]
    assert V.read_vocab_scores(path)["EPDMS"].shape == (4, K)


def test_reader_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    sc = {f: rng.random(K).astype(np.float32) for f in V.FIELDS}
    sid, back = V.decode_record(V.encode_record(123456789, sc))
    assert sid == 123456789
    for f in V.FIELDS:
        assert back[f].dtype == V.DTYPES[f]
        np.testing.assert_array_equal(back[f], sc[f].astype(V.DTYPES[f]))
    with pytest.raises(UserError, match="no vocabulary scores"):
        V.read_vocab_scores(str(tmp_path))


def test_changed_settings_are_refused(scored):
    c, d, _ = scored
    with pytest.raises(UserError, match="mode='tracked'"):
        run(c, d, mode="direct")


def test_fewer_futures_than_k_are_augmented_or_refused():
    rng = np.random.default_rng(0)
    t = 0.5 * np.arange(1, 9)
    futures = np.stack([np.stack([v * t, 0.02 * v * t ** 2, 0.04 * v * t], -1) for v in rng.uniform(1, 15, 6)])
    msgs = []
    v = V.build_vocab(futures.astype(np.float32), 16, log=msgs.append)
    assert v.shape == (16, 8, 3) and np.all(np.isfinite(v)) and len(np.unique(v, axis=0)) == 16
    assert "fewer than K=16" in msgs[0]
    assert np.any(v[:, -1, 1] < 0)                 # mirrored variants are in the pool
    with pytest.raises(UserError, match="only 1 distinct"):
        V.build_vocab(np.zeros((50, 8, 3), np.float32), 4, log=msgs.append)


def test_converted_dataset_uses_world_vocab_or_its_own(scored, tmp_path):
    from irlvla_jax.data import converted as C
    from irlvla_jax.data.real import Window
    from irlvla_jax.train.synthetic import random_scenes
    c, d, summary = scored
    spec = S.SceneSpec.from_config(c.scene)
    pool = random_scenes(spec, 4, seed=3)

    def iter_log(path):
        for j in range(4):
            yield Window(path, f"{path}@{j}", j, S.index(pool, j).replace(scene_id=np.asarray(1000 + j, np.int32)),
                         "", {})
    for dd in (d, str(tmp_path)):
        C.write_converted(spec, dd, "real_fake", source="fake", logs=["log"], iter_log=iter_log, progress=False)
    cc = tiny_config(data_dir=d, **SIZES)
    world = cc.data.name
    cc.data.name = "real_fake"
    s = run(cc, d, split="real", world_name=world)           # the world's vocab_20.npy of the same data dir
    assert s["vocab"] == summary["vocab"] and s["scenes"] == 4 and "real_fake" in s["path"]
    assert V.read_vocab_scores(s["path"])["EPDMS"].shape == (4, K)
    c2 = tiny_config(data_dir=str(tmp_path), **SIZES)
    c2.data.name = "real_fake"
    s = run(c2, str(tmp_path), split="real", world_name=world)   # no world dataset: its own futures
    assert s["vocab"] == os.path.join(str(tmp_path), "real_fake", "vocab_20.npy")
    with pytest.raises(UserError, match="has no split 'train'"):
        run(c2, str(tmp_path), split="train", world_name=world)


def test_bad_arguments_are_one_line_user_errors(scored, tmp_path):
    c, d, _ = scored
    for split, k, msg in (("bogus", K, "unknown split 'bogus'"), ("test", 0, "--vocab must be a positive"),
                          ("real", K, "has no split 'real'")):
        with pytest.raises(UserError, match=msg) as e:
            V.score_split(c, d, split, k, scorer=Counting(), progress=False)
        assert "\n" not in str(e.value)
    args = types.SimpleNamespace(rest=[], vocab=None, mode=None, name=None, split=None)
    with pytest.raises(UserError, match="--vocab K is required"):
        V.score_vocab(c, str(tmp_path), args)
    r = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "score-vocab", "--config",
                        os.path.join(ROOT, "configs", "tiny.py"), "--workdir", str(tmp_path / "wd"), "--vocab", "-3"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--vocab must be a positive" in err[0], r.stderr
