"""Tests of irlvla_jax.data.navsim.submission: writing / reading NAVSIM's submission pickle with and
without (stand-in) devkit classes."""
import os
import pickle
import sys
import types

import numpy as np
import pytest

from irlvla_jax.data import navsim as N


def _fake_devkit(monkeypatch):
    """Stand-in navsim / nuplan modules with Trajectory and TrajectorySampling, as a devkit unpickle sees."""
    import dataclasses

    @dataclasses.dataclass
    class TrajectorySampling:
        num_poses: int = None
        time_horizon: float = None
        interval_length: float = None

    @dataclasses.dataclass
    class Trajectory:
        poses: np.ndarray
        trajectory_sampling: TrajectorySampling = None

    mods = {}
    for name in ("navsim", "navsim.common", "navsim.common.dataclasses", "nuplan", "nuplan.planning",
                 "nuplan.planning.simulation", "nuplan.planning.simulation.trajectory",
                 "nuplan.planning.simulation.trajectory.trajectory_sampling"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])
    Trajectory.__module__, Trajectory.__qualname__ = "navsim.common.dataclasses", "Trajectory"
    TrajectorySampling.__qualname__ = "TrajectorySampling"
    TrajectorySampling.__module__ = "nuplan.planning.simulation.trajectory.trajectory_sampling"
    mods["navsim.common.dataclasses"].Trajectory = Trajectory
    mods["nuplan.planning.simulation.trajectory.trajectory_sampling"].TrajectorySampling = TrajectorySampling
    return Trajectory, TrajectorySampling


def test_submission_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    preds = {f"tok{i}": rng.normal(size=(8, 3)).astype(np.float32) for i in range(3)}
    stage2 = {"synth01": rng.normal(size=(8, 3))}
    path = str(tmp_path / "out" / "submission.pkl")
    kw = dict(team_name="irlvla", authors=["A. Author", "B. Author"], email="a@b.c", institution="Lab",
              country="Germany")
    N.write_submission(path, preds, second_stage=stage2, **kw)
    assert os.listdir(tmp_path / "out") == ["submission.pkl"]            # no temp file left behind
    sub = N.read_submission(path)
    assert sub["team_name"] == "irlvla" and sub["country / region"] == "Germany"
    assert sub["authors"] == ["A. Author", "B. Author"]
    assert len(sub["first_stage_predictions"]) == 1 and set(sub["first_stage_predictions"][0]) == set(preds)
    for t, p in preds.items():
        np.testing.assert_array_equal(sub["first_stage_predictions"][0][t], p)
    np.testing.assert_allclose(sub["second_stage_predictions"][0]["synth01"], stage2["synth01"], rtol=1e-6)
    # NAVSIM v1 layout.
    N.write_submission(path, preds, version="v1", **kw)
    sub1 = N.read_submission(path)
    assert "first_stage_predictions" not in sub1 and set(sub1["predictions"][0]) == set(preds)
    # What the devkit's plain pickle.load sees: real Trajectory objects with 8 poses at 0.5 s.
    Traj, TS = _fake_devkit(monkeypatch)
    with open(path, "rb") as fh:
        raw = pickle.load(fh)
    tr = raw["predictions"][0]["tok1"]
    assert isinstance(tr, Traj) and isinstance(tr.trajectory_sampling, TS)
    assert tr.poses.dtype == np.float32 and tr.poses.shape == (8, 3)
    np.testing.assert_array_equal(tr.poses, preds["tok1"])
    assert (tr.trajectory_sampling.num_poses, tr.trajectory_sampling.time_horizon,
            tr.trajectory_sampling.interval_length) == (8, 4.0, 0.5)
    # A pickle written by the devkit itself (real classes) reads back without it.
    devkit_sub = {"team_name": "x", "predictions": [{"tokA": Traj(preds["tok0"], TS(8, 4.0, 0.5))}]}
    p2 = str(tmp_path / "devkit.pkl")
    with open(p2, "wb") as fh:
        pickle.dump(devkit_sub, fh)
    monkeypatch.undo()
    np.testing.assert_array_equal(N.read_submission(p2)["predictions"][0]["tokA"], preds["tok0"])


def test_submission_rejects_bad_input(tmp_path):
    kw = dict(team_name="t", authors=["a"], email="e", institution="i", country="c")
    path = str(tmp_path / "s.pkl")
    with pytest.raises(ValueError, match=r"tokX.*shape \(8, 3\)"):
        N.write_submission(path, {"tokX": np.zeros((6, 3))}, **kw)
    with pytest.raises(ValueError, match="finite"):
        N.write_submission(path, {"tokX": np.full((8, 3), np.nan)}, **kw)
    with pytest.raises(ValueError, match="team_name"):
        N.write_submission(path, {"tokX": np.zeros((8, 3))}, **dict(kw, team_name=""))
    with pytest.raises(ValueError, match="version"):
        N.write_submission(path, {"tokX": np.zeros((8, 3))}, version="v3", **kw)
    assert not os.path.exists(path)
    with open(path, "wb") as fh:                               # a pickle naming some other class
        pickle.dump({"predictions": [{"t": os.stat_result((0,) * 10)}]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="stat_result"):
        N.read_submission(path)


def test_predictions_from_batch():
    traj = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    d = N.predictions_from_batch(["a", "b"], traj)
    np.testing.assert_array_equal(d["b"], traj[1])
    with pytest.raises(ValueError, match=r"\(3, 8, 3\)"):
        N.predictions_from_batch(["a", "b", "c"], traj)
    with pytest.raises(ValueError, match="'a' more than once"):
        N.predictions_from_batch(["a", "a"], traj)
