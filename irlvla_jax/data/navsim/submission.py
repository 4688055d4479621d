"""NAVSIM submission pickle: predictions -> NAVSIM's ``submission.pkl`` (written without the devkit), and a
devkit-free reader of such files.

:func:`write_submission` writes NAVSIM's ``submission.pkl`` (``run_create_submission_pickle.py``): a dict
with ``team_name``, ``authors``, ``email``, ``institution``, ``country / region`` and, for NAVSIM v2
(``version="v2"``), ``first_stage_predictions`` / ``second_stage_predictions`` = ``[{token: Trajectory}]``
or, for v1 (``version="v1"``), ``predictions`` = ``[{token: Trajectory}]``. Each value is pickled as a
``navsim.common.dataclasses.Trajectory`` (poses [8, 3] float32 at 0.5 s, ``trajectory_sampling`` a
nuPlan ``TrajectorySampling(num_poses=8, time_horizon=4.0, interval_length=0.5)``), so the devkit's
``pickle.load`` yields real objects, yet writing needs no devkit. :func:`read_submission` reads such a
file (ours or the devkit's) without the devkit.
"""
from __future__ import annotations

import copyreg
import io
import os
import pickle
import tempfile
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from irlvla_jax import scene as S

_TRAJ_GLOBAL = ("navsim.common.dataclasses", "Trajectory")
_SAMPLING_GLOBAL = ("nuplan.planning.simulation.trajectory.trajectory_sampling", "TrajectorySampling")


class _Trajectory:
    """Devkit-free stand-in for ``navsim.common.dataclasses.Trajectory`` (pickled under that name)."""


class _TrajectorySampling:
    """Devkit-free stand-in for nuPlan's ``TrajectorySampling`` (pickled under that name)."""


_STANDINS = {_Trajectory: _TRAJ_GLOBAL, _TrajectorySampling: _SAMPLING_GLOBAL}


class _NavsimPickler(pickle._Pickler):  # the Python pickler: lets us name the stand-in classes' globals
    def reducer_override(self, obj):
        if type(obj) in _STANDINS:
            return copyreg.__newobj__, (type(obj),), dict(obj.__dict__)
        return NotImplemented

    def save_global(self, obj, name=None):
        if obj in _STANDINS:
            module, qual = _STANDINS[obj]
            self.write(pickle.GLOBAL + f"{module}\n{qual}\n".encode("utf-8"))
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _trajectory(poses: np.ndarray) -> _Trajectory:
    ts = _TrajectorySampling()
    ts.__dict__.update(num_poses=S.N_POSES, time_horizon=4.0, interval_length=0.5)
    t = _Trajectory()
    t.__dict__.update(poses=np.ascontiguousarray(poses, np.float32), trajectory_sampling=ts)
    return t


def _check_predictions(preds: Mapping[str, Any], what: str) -> Dict[str, _Trajectory]:
    if not isinstance(preds, Mapping):
        raise ValueError(f"{what}: expected a mapping token -> poses [8, 3], found {type(preds).__name__}")
    out = {}
    for tok, p in preds.items():
        if not isinstance(tok, str) or not tok:
            raise ValueError(f"{what}: tokens must be non-empty str, found {tok!r}")
        a = np.asarray(p, np.float64)
        if a.shape != (S.N_POSES, 3):
            raise ValueError(f"{what}[{tok}]: expected poses of shape (8, 3) (x, y, heading at 0.5 ... 4.0 s, "
                             f"ego frame), found shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}[{tok}]: poses must be finite, found {a[~np.isfinite(a)][:1]}")
        out[tok] = _trajectory(a)
    return out


def predictions_from_batch(tokens: Sequence[str], trajectories) -> Dict[str, np.ndarray]:
    """(tokens [B], trajectories [B, 8, 3] (x, y, heading; ego frame at t0, m / rad)) -> {token: poses}."""
    traj = np.asarray(trajectories, np.float32)
    tokens = [str(t) for t in tokens]
    if traj.ndim != 3 or traj.shape[1:] != (S.N_POSES, 3) or len(traj) != len(tokens):
        raise ValueError(f"trajectories: expected shape ({len(tokens)}, 8, 3) for {len(tokens)} tokens, "
                         f"found {traj.shape}")
    if len(set(tokens)) != len(tokens):
        dup = next(t for t in tokens if tokens.count(t) > 1)
        raise ValueError(f"tokens: each token once, found {dup!r} more than once")
    return dict(zip(tokens, traj))


def write_submission(path: str, predictions: Mapping[str, Any], *, team_name: str, authors: Any, email: str,
                     institution: str, country: str, version: str = "v2",
                     second_stage: Optional[Mapping[str, Any]] = None) -> str:
    """Write NAVSIM's submission pickle atomically (temp file in the same folder, then os.replace).

    ``predictions``: {token: poses [8, 3]} (x, y, heading at 0.5 ... 4.0 s, metres / radians, ego rear-axle
    frame at t0). ``version="v2"`` (NAVSIM v2.x, two-stage: ``second_stage`` holds the stage-two tokens'
    poses, {} if None) or ``"v1"`` (one ``predictions`` list). Returns ``path``.
    """
    for k, v in (("team_name", team_name), ("email", email), ("institution", institution), ("country", country)):
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"submission field '{k}' must be a non-empty string (NAVSIM requires it), got {v!r}")
    if not authors:
        raise ValueError("submission field 'authors' must be non-empty (NAVSIM requires it)")
    first = _check_predictions(predictions, "predictions")
    if not first:
        raise ValueError("predictions is empty: nothing to submit")
    sub: Dict[str, Any] = {"team_name": team_name, "authors": authors, "email": email, "institution": institution,
                           "country / region": country}
    if version == "v2":
        sub["first_stage_predictions"] = [first]
        sub["second_stage_predictions"] = [_check_predictions(second_stage or {}, "second_stage")]
    elif version == "v1":
        if second_stage:
            raise ValueError("version='v1' submissions have no second stage; use version='v2'")
        sub["predictions"] = [first]
    else:
        raise ValueError(f"version must be 'v1' or 'v2', got {version!r}")
    buf = io.BytesIO()
    _NavsimPickler(buf, protocol=4).dump(sub)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".submission.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class _SubmissionUnpickler(pickle.Unpickler):
    """Reads NAVSIM submission pickles without the devkit: Trajectory / TrajectorySampling map to plain
    stand-ins; only numpy and builtins are otherwise allowed."""

    def find_class(self, module, name):
        if (module, name) == _TRAJ_GLOBAL:
            return _Trajectory
        if (module, name) == _SAMPLING_GLOBAL:
            return _TrajectorySampling
        if module.split(".")[0] in ("numpy", "builtins", "copyreg", "collections", "_codecs"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"submission pickle refers to {module}.{name}; only NAVSIM Trajectory, "
                                     "nuPlan TrajectorySampling and numpy objects are expected")


def read_submission(path: str) -> Dict[str, Any]:
    """Read a NAVSIM submission pickle (no devkit) -> the same dict with every Trajectory replaced by its
    poses (float32 [n, 3]); checks each has 8 poses at 0.5 s."""
    with open(path, "rb") as fh:
        sub = _SubmissionUnpickler(fh).load()
    if not isinstance(sub, dict):
        raise ValueError(f"{path}: expected a dict, found {type(sub).__name__}")
    out = dict(sub)
    keys = [k for k in ("predictions", "first_stage_predictions", "second_stage_predictions") if k in sub]
    if not keys:
        raise ValueError(f"{path}: no predictions / first_stage_predictions key (keys: {sorted(sub)})")
    for key in keys:
        lists = []
        for d in sub[key]:
            conv = {}
            for tok, tr in d.items():
                poses = np.asarray(getattr(tr, "poses", None), np.float32)
                ts = getattr(tr, "trajectory_sampling", None)
                ip = getattr(ts, "interval_length", None)
                if poses.shape != (S.N_POSES, 3) or ip is None or abs(float(ip) - 0.5) > 1e-9:
                    raise ValueError(f"{path}: {key}[{tok}] is not 8 poses at 0.5 s (poses {poses.shape}, "
                                     f"interval {ip})")
                conv[tok] = poses
            lists.append(conv)
        out[key] = lists
    return out
