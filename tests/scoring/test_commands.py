"""``irlvla score``: reading a predictions file (JSON / .npz) and scoring it against a split.

Every bad file is refused with one line naming the file, the scene and the field; nothing is silently
scored. No dataset needed: files are written to tmp_path, the split is a small stack of empty scenes and
the scorer a stand-in (these tests check bookkeeping, not EPDMS)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.scoring import commands as C
from irlvla_jax.scoring.epdms import SUB_SCORES

N = 40
IDS = [200000000 + 7 * i for i in range(N)]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def split():
    """A stacked batch of N empty scenes with distinct scene ids (the 'test split')."""
    scenes = []
    for sid in IDS:
        s = S.empty_scene(S.SceneSpec())
        scenes.append(s.replace(scene_id=np.asarray(sid, np.int32)))
    return S.stack(scenes)


def fake_scorer(scenes, traj):
    """Stand-in for the jitted scorer: EPDMS = final x of the plan / 100, sub-scores 1."""
    b, n = traj.shape[:2]
    out = {k: np.ones((b, n)) for k in SUB_SCORES + ("progress",)}
    out["EPDMS"] = np.asarray(traj)[:, :, -1, 0] / 100.0
    return types.SimpleNamespace(**out)


def plan(x_end=10.0):
    t = np.zeros((8, 3))
    t[:, 0] = np.linspace(x_end / 8, x_end, 8)
    return t


def write_json(tmp_path, obj, name="p.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def write_npz(tmp_path, name="p.npz", **arrays):
    p = tmp_path / name
    with open(p, "wb") as fh:
        np.savez(fh, **arrays)
    return str(p)


def refused(path, *parts, exc=ValueError):
    """read_predictions(path) raises one line naming the file and every one of ``parts``."""
    with pytest.raises(exc) as e:
        C.read_predictions(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for p in (path,) + parts:
        assert p in msg, (p, msg)
    return msg


# ---------------------------------------------------------------------------------------------------
# accepted files

def test_valid_json_is_read(tmp_path):
    ints = [[1, 0, 0]] * 8                                   # integer coordinates are numbers too
    p = write_json(tmp_path, {"12": plan(5.0).tolist(), "0013": ints, str(IDS[0]): plan(-3.0).tolist()})
    got = C.read_predictions(p)
    assert set(got) == {12, 13, IDS[0]}
    assert all(v.dtype == np.float32 and v.shape == (8, 3) for v in got.values())
    np.testing.assert_allclose(got[12], plan(5.0))
    # bounds are inclusive: 200 m and 2*pi rad are plausible
    edge = plan(200.0)
    edge[:, 1], edge[:, 2] = -200.0, 2 * np.pi
    assert C.read_predictions(write_json(tmp_path, {"1": edge.tolist()}))[1].shape == (8, 3)


@pytest.mark.parametrize("id_dtype", [np.int64, np.int32, np.uint32])
def test_valid_npz_is_read(tmp_path, id_dtype):
    traj = np.stack([plan(i) for i in range(3)]).astype(np.float32)
    p = write_npz(tmp_path, scene_id=np.asarray([5, 6, 7], id_dtype), trajectories=traj)
    got = C.read_predictions(p)
    assert sorted(got) == [5, 6, 7] and all(type(k) is int for k in got)
    np.testing.assert_array_equal(got[7], traj[2])
    # a .npz under another name is recognised by its zip header
    os.rename(p, tmp_path / "p.bin")
    assert sorted(C.read_predictions(str(tmp_path / "p.bin"))) == [5, 6, 7]


# ---------------------------------------------------------------------------------------------------
# coverage of the split (score_predictions)

def test_missing_scenes_are_refused_unless_subset(split):
    preds = {sid: plan(1.0).astype(np.float32) for sid in IDS[1:]}           # 39 of 40 scenes
    with pytest.raises(ValueError) as e:
        C.score_predictions(split, preds, "direct", scorer=fake_scorer, source="p.json", split="test")
    msg = str(e.value)
    assert "\n" not in msg
    for part in ("predictions p.json", "1 of the 40 scenes", "'test'", str(IDS[0]), "--subset"):
        assert part in msg, (part, msg)
    ids, res = C.score_predictions(split, preds, "direct", scorer=fake_scorer, subset=True, chunk=16)
    assert ids == IDS[1:] and res["EPDMS"].shape == (39,)


def test_full_split_scored_in_split_order(split):
    preds = {sid: plan(float(i)).astype(np.float32) for i, sid in reversed(list(enumerate(IDS)))}
    ids, res = C.score_predictions(split, preds, "direct", scorer=fake_scorer, chunk=16)
    assert ids == IDS
    np.testing.assert_allclose(res["EPDMS"], np.arange(N) / 100.0, rtol=1e-6)


def test_unknown_id_is_refused(split):
    preds = {sid: plan().astype(np.float32) for sid in IDS}
    preds[123456] = plan().astype(np.float32)
    with pytest.raises(ValueError, match=r"predictions p\.json: scene 123456 is not in the split 'test'"):
        C.score_predictions(split, preds, "direct", scorer=fake_scorer, source="p.json", split="test")


def test_score_command_says_n_of_n_scenes(tmp_path, split, monkeypatch, capsys):
    from irlvla_jax.data import loader
    from irlvla_jax.scoring import epdms
    monkeypatch.setattr(loader, "resolve_data_dir", lambda config, workdir: str(tmp_path))
    monkeypatch.setattr(loader, "load_split", lambda config, name, data_dir=None: split)
    monkeypatch.setattr(epdms, "scorer_from_config", lambda config, mode: (fake_scorer, 1))
    config = types.SimpleNamespace(scoring=types.SimpleNamespace(mode="direct", human_filter=True))
    p = write_json(tmp_path, {str(s): plan().tolist() for s in IDS[:39]})
    args = types.SimpleNamespace(predictions=p, split=None, mode=None, subset=False, rest=[])
    with pytest.raises(ValueError, match=r"1 of the 40 scenes .* have no prediction .*--subset"):
        C.score(config, str(tmp_path), args)
    args.subset = True
    summary = C.score(config, str(tmp_path), args)
    assert summary["scenes"] == 39 and summary["split_scenes"] == 40
    assert "39 of 40 scenes" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "scores_test_direct.json")


# ---------------------------------------------------------------------------------------------------
# refused files (read_predictions)

def test_duplicate_json_key_is_refused(tmp_path):
    row = json.dumps(plan().tolist())
    p = write_json(tmp_path, f'{{"7": {row}, "8": {row}, "7": {row}}}')
    refused(p, "scene 7", "'scene id'", "twice")
    p = write_json(tmp_path, f'{{"7": {row}, "007": {row}}}')             # the same integer id
    refused(p, "scene 7", "twice")


def test_duplicate_npz_id_is_refused(tmp_path):
    p = write_npz(tmp_path, scene_id=np.asarray([3, 4, 3]), trajectories=np.zeros((3, 8, 3), np.float32))
    refused(p, "scene 3", "'scene_id'", "twice")


@pytest.mark.parametrize("key", ["200000000.5", "12a", "true", "-3", " 12", "1e3", ""])
def test_non_integer_json_id_is_refused(tmp_path, key):
    p = write_json(tmp_path, {key: plan().tolist()})
    refused(p, f"scene id {key!r}", "not an integer")


@pytest.mark.parametrize("ids", [np.asarray([200000000.5, 3.0]), np.asarray([True, False]),
                                 np.asarray(["12", "13"])])
def test_non_integer_npz_id_is_refused(tmp_path, ids):
    p = write_npz(tmp_path, scene_id=ids, trajectories=np.zeros((2, 8, 3), np.float32))
    msg = refused(p, "'scene_id'", str(ids.dtype), "np.int64")
    if ids.dtype.kind == "f":
        assert "200000000.5" in msg


def test_npz_length_mismatch_is_refused(tmp_path):
    p = write_npz(tmp_path, scene_id=np.arange(40), trajectories=np.zeros((39, 8, 3), np.float32))
    refused(p, "'scene_id'", "'trajectories'", "40 ids", "(39, 8, 3)")


@pytest.mark.parametrize("value,kind", [("1.5", "a string"), (True, "a boolean"), (None, "null/None"),
                                        ({"x": 1.0}, "an object")])
def test_non_numeric_json_value_is_refused(tmp_path, value, kind):
    t = plan().tolist()
    t[4][2] = value
    p = write_json(tmp_path, {"9": t})
    refused(p, "scene 9", "'trajectory'", "pose 4, heading", kind)


def test_non_numeric_json_trajectory_is_refused(tmp_path):
    refused(write_json(tmp_path, {"9": "[[0, 0, 0]]"}), "scene 9", "'trajectory'", "a string")
    refused(write_json(tmp_path, {"9": [[[0, "a", 0]]] * 8}), "scene 9", "'trajectory'", "element [0][0][1]")
    refused(write_json(tmp_path, {"9": [[[0, 0, 0]]] * 8}), "scene 9", "'trajectory'", "got (8, 1, 3)")


@pytest.mark.parametrize("traj", [np.zeros((2, 8, 3), bool), np.full((2, 8, 3), "0.0"),
                                  np.zeros((2, 8, 3), complex)])
def test_non_numeric_npz_dtype_is_refused(tmp_path, traj):
    p = write_npz(tmp_path, scene_id=np.asarray([1, 2]), trajectories=traj)
    refused(p, "'trajectories'", str(traj.dtype), "numeric")


def test_object_npz_is_refused(tmp_path):
    obj = np.empty((2, 8, 3), object)
    obj[...] = 0.0
    p = write_npz(tmp_path, scene_id=np.asarray([1, 2]), trajectories=obj)
    refused(p, "'trajectories'", "object array")


@pytest.mark.parametrize("text,shown", [("NaN", "nan"), ("Infinity", "inf"), ("1e400", "inf"),
                                        ("1e39", "1e+39 -> inf as float32")])
def test_non_finite_value_is_refused(tmp_path, text, shown):
    row = json.dumps(plan().tolist())
    row = row.replace("[10.0, 0.0, 0.0]", f"[10.0, {text}, 0.0]")           # the last pose
    p = write_json(tmp_path, f'{{"5": {row}}}')
    refused(p, "scene 5", "'trajectory'", "non-finite", shown, "pose 7, y")


def test_non_finite_npz_value_is_refused(tmp_path):
    traj = np.zeros((1, 8, 3))
    traj[0, 2, 0] = 1e39                                     # finite as float64, inf as float32
    p = write_npz(tmp_path, scene_id=np.asarray([4]), trajectories=traj)
    refused(p, "scene 4", "'trajectory'", "non-finite", "pose 2, x")


@pytest.mark.parametrize("traj,shape", [(np.zeros((7, 3)).tolist(), "(7, 3)"), (np.zeros((8, 2)).tolist(), "(8, 2)"),
                                        ([[0, 0, 0]] * 7 + [[0, 0]], "ragged"), (0.5, "()")])
def test_wrong_json_shape_is_refused(tmp_path, traj, shape):
    p = write_json(tmp_path, {"1": traj})
    refused(p, "scene 1", "'trajectory'", r"must have shape (8, 3)", shape)


def test_wrong_npz_shape_is_refused(tmp_path):
    p = write_npz(tmp_path, scene_id=np.asarray([1, 2]), trajectories=np.zeros((2, 8, 2), np.float32))
    refused(p, "scene 1", "'trajectory'", "must have shape (8, 3)", "(8, 2)")
    p = write_npz(tmp_path, scene_id=np.asarray([[1, 2]]), trajectories=np.zeros((2, 8, 3), np.float32))
    refused(p, "'scene_id'", "shape [K]")


@pytest.mark.parametrize("pose,col,value,field", [(0, 0, 1e6, "x"), (3, 1, -250.0, "y"), (5, 2, 90.0, "heading"),
                                                  (5, 2, -6.3, "heading")])
def test_implausible_pose_is_refused(tmp_path, pose, col, value, field):
    t = plan()
    t[pose, col] = value
    p = write_json(tmp_path, {"2": t.tolist()})
    msg = refused(p, "scene 2", "'trajectory'", f"pose {pose}, {field} = {value:g}", "implausible")
    assert ("200 m" in msg) if field != "heading" else ("radians" in msg)
    assert C.MAX_ABS_XY == 200.0 and C.MAX_ABS_HEADING == pytest.approx(2 * np.pi)


def test_unreadable_files_are_refused(tmp_path):
    preds = {1: np.zeros((8, 3))}
    for name in ("p.pkl", "p.npz", "p.json"):
        with open(tmp_path / name, "wb") as fh:
            pickle.dump(preds, fh)
        refused(str(tmp_path / name), "cannot read", ".npz", "JSON")
    with open(tmp_path / "p0.pkl", "wb") as fh:                              # protocol 0 is ASCII
        pickle.dump(preds, fh, protocol=0)
    refused(str(tmp_path / "p0.pkl"), "cannot read", "not valid JSON", ".npz")
    for name in ("empty.npz", "empty.json"):
        (tmp_path / name).write_bytes(b"")
        refused(str(tmp_path / name), "cannot read", "empty", ".npz", "JSON")
    good = write_npz(tmp_path, name="good.npz", scene_id=np.asarray([1]), trajectories=np.zeros((1, 8, 3)))
    (tmp_path / "corrupt.npz").write_bytes(open(good, "rb").read()[:-40])
    refused(str(tmp_path / "corrupt.npz"), "cannot read", ".npz", "JSON")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    refused(str(tmp_path / "garbage.npz"), "cannot read", ".npz")
    np.save(tmp_path / "single.npy", np.zeros((1, 8, 3)))
    os.rename(tmp_path / "single.npy", tmp_path / "single.npz")
    refused(str(tmp_path / "single.npz"), "cannot read", ".npz")
    refused(write_json(tmp_path, "{'1': []}", "bad.json"), "cannot read", "not valid JSON")
    refused(write_json(tmp_path, [plan().tolist()], "list.json"), "cannot read", "not an object")
    refused(write_npz(tmp_path, name="keys.npz", ids=np.asarray([1])), "missing array 'scene_id'")
    refused(write_json(tmp_path, {}, "none.json"), "no predictions")
    refused(str(tmp_path / "absent.json"), exc=FileNotFoundError)
    refused(str(tmp_path), "cannot read", "not a regular file")


def test_cli_prints_one_line_exit_2(tmp_path):
    """The CLI parses --subset and reports a refused file as one line, exit code 2 (before any data load)."""
    p = write_json(tmp_path, {"1": plan(1e6).tolist()})
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("IRLVLA_TRACEBACK", None)
    r = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "score", "--config", os.path.join(ROOT, "configs", "tiny.py"),
                        "--workdir", str(tmp_path / "wd"), "--predictions", p, "--subset"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("irlvla: error:")]
    assert len(err) == 1 and p in err[0] and "scene 1" in err[0] and "implausible" in err[0], r.stderr[-2000:]
