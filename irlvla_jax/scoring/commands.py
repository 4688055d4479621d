"""CLI commands of the scorer: ``irlvla vectors DIR [--mode tracked|direct]`` and
``irlvla score --predictions FILE``.

* ``vectors``: reads a folder in the official test-vector layout (``scenes/`` + ``official_<mode>.json``),
  scores every proposal with the JAX scorer (one batched jitted call per chunk of scenes), prints a
  per-sub-score agreement table and the worst disagreements, and ends with one JSON line
  ``{"mode", "proposals", "agreement": {...}, "mean_abs_delta_epdms"}``.
* ``score``: a predictions file maps scene ids to 8 poses ``[[x, y, heading] x 8]`` (JSON object, or
  ``.npz`` with arrays ``scene_id [K]`` and ``trajectories [K, 8, 3]``); the scenes come from the
  dataset's split (``--split`` names it, default ``test``), and every scene of it needs exactly one
  prediction (``--subset`` allows fewer; the table then says "n of N scenes"). Unreadable files, ids that
  are not integers, unknown or repeated ids, non-numeric, non-finite (as float32) or implausible values
  (:data:`MAX_ABS_XY`, :data:`MAX_ABS_HEADING`) and wrong shapes are refused with one line naming the
  file, the scene and the field; nothing is silently scored.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Tuple

import numpy as np

from irlvla_jax.scoring.epdms import SUB_SCORES

EP_TOL = 1e-3       # EP is continuous: "equal" means within 1e-3 (official values have 6 decimals)
EXACT_TOL = 1e-6


def _mode(config, args) -> str:
    mode = getattr(args, "mode", None) or config.scoring.mode
    if mode not in ("tracked", "direct"):
        raise ValueError(f"--mode must be 'tracked' or 'direct', got {mode!r}")
    return mode


def score_vectors(folder: str, modes=("tracked",), chunk: int = 6):
    """Score every proposal of a vector folder. Returns (names, {mode: Scores as numpy dict}, has_prev)."""
    from irlvla_jax import scene as S
    from irlvla_jax.scoring import vectors
    from irlvla_jax.scoring import epdms

    names, scenes, props, prevs, has = vectors.load_vectors(folder)
    modes = tuple(modes)
    fn = epdms.make_scorer(modes, True)            # all modes in one pass, one compilation
    parts: Dict[str, Dict[str, List[np.ndarray]]] = {md: {} for md in modes}
    b = len(names)
    for s0 in range(0, b, chunk):
        idx = np.asarray([min(i, b - 1) for i in range(s0, s0 + chunk)])  # fixed shape: one compile
        res = fn(S.index(scenes, idx), props[idx], prevs[idx], has[idx])
        n = min(chunk, b - s0)
        for md in modes:
            for k in SUB_SCORES + ("EPDMS", "progress"):
                parts[md].setdefault(k, []).append(np.asarray(getattr(res[md], k))[:n])
    out = {md: {k: np.concatenate(v, 0) for k, v in parts[md].items()} for md in modes}
    return names, out, has


def compare(official: Dict, names, scores: Dict[str, np.ndarray]) -> Tuple[Dict, List[Tuple]]:
    """Agreement of ``scores`` (numpy dict [K, N]) with an official results dict keyed by scene name.

    Returns (report {"proposals", "agreement": {sub: fraction}, "mean_abs_delta_epdms"}, disagreements
    [(|delta EPDMS|, scene, proposal index, name, sub-score, official, ours)], worst first).
    """
    agree = {k: [0, 0] for k in SUB_SCORES}
    dis: List[Tuple] = []
    deltas = []
    for i, name in enumerate(names):
        if name not in official:
            raise KeyError(f"official results have no scene {name!r}")
        for j, p in enumerate(official[name]["proposals"]):
            d_epdms = abs(float(scores["EPDMS"][i, j]) - p["EPDMS"])
            deltas.append(d_epdms)
            for k in SUB_SCORES:
                if p.get(k) is None:
                    continue
                ours = float(scores[k][i, j])
                ok = abs(ours - p[k]) <= (EP_TOL if k == "EP" else EXACT_TOL)
                agree[k][0] += ok
                agree[k][1] += 1
                if not ok:
                    dis.append((d_epdms, name, j, p["name"], k, p[k], round(ours, 6)))
    dis.sort(key=lambda x: -x[0])
    report = {"proposals": len(deltas),
              "agreement": {k: (a / n if n else 1.0) for k, (a, n) in agree.items()},
              "mean_abs_delta_epdms": float(np.mean(deltas)) if deltas else 0.0}
    return report, dis


def vectors(config, workdir, args):
    """``irlvla vectors DIR [--mode tracked|direct]``: check the scorer against official vectors."""
    from irlvla_jax.scoring.vectors import load_official
    if not args.rest:
        raise ValueError("usage: irlvla vectors DIR [--mode tracked|direct] (DIR holds scenes/ and official_*.json)")
    folder = args.rest[0]
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"vector folder {folder!r} does not exist")
    mode = _mode(config, args)
    official = load_official(folder, mode)
    names, out, _ = score_vectors(folder, (mode,))
    report, dis = compare(official, names, out[mode])
    print(f"EPDMS test vectors: {folder} ({len(names)} scenes, {report['proposals']} proposals), mode {mode}")
    print(f"{'sub-score':>10s} {'agreement':>10s}")
    for k, v in report["agreement"].items():
        print(f"{k:>10s} {100 * v:9.2f}%")
    print(f"mean |delta EPDMS| = {report['mean_abs_delta_epdms']:.6f}")
    if dis:
        print("worst disagreements (|dEPDMS|, scene, #, proposal, sub-score, official, ours):")
        for d in dis[:10]:
            print("  ", d)
    line = {"mode": mode, **report}
    print(json.dumps(line))
    return line


# ----------------------------------------------------------------------------------------------------
# irlvla score --predictions FILE

# Plausibility bounds of a predicted pose (ego rear-axle frame at t0; metres, radians). The plan spans
# 4 s and no ego drives faster than ~50 m/s (180 km/h), so |x| and |y| cannot exceed 4 * 50 = 200 m:
# a pose outside that box is a unit or frame error (centimetres, a global / UTM frame), not a plan.
MAX_ABS_XY = 200.0
# Headings are radians. 2*pi admits both the [-pi, pi] and the [0, 2*pi) conventions (and an unwrapped
# U-turn); anything larger is degrees or garbage.
MAX_ABS_HEADING = 2 * np.pi
POSE_FIELDS = ("x", "y", "heading")
FORMATS = ("expected a JSON object {\"scene_id\": [[x, y, heading] x 8]} or an .npz with arrays "
           "scene_id [K] (integers) and trajectories [K, 8, 3] (floats)")
_SHOW = 40   # characters of a bad value shown in a message


def _short(v) -> str:
    r = repr(dict(v) if isinstance(v, _Pairs) else v)
    return r if len(r) <= _SHOW else r[:_SHOW - 3] + "..."


def _kind(v) -> str:
    return {bool: "a boolean", str: "a string", type(None): "null/None", list: "a list",
            _Pairs: "an object", dict: "an object"}.get(type(v), type(v).__name__)


class _Pairs(list):
    """A JSON object as its (key, value) pairs in file order (json.load keeps only the last duplicate)."""


def _unreadable(path: str, why: str) -> ValueError:
    return ValueError(f"predictions {path}: cannot read the file ({why}); {FORMATS}")


def _where(path: str, sid) -> str:
    return f"predictions {path}: scene {sid}: field 'trajectory'"


def _json_pose_values(path: str, sid, traj):
    """Walk the nested lists of one JSON trajectory: every leaf an int/float (not bool) -> nested floats."""
    def walk(v, at):
        if type(v) is list:                        # not _Pairs: a JSON object is no pose
            return [walk(x, at + (i,)) for i, x in enumerate(v)]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            loc = (f"pose {at[0]}, {POSE_FIELDS[at[1]]}" if len(at) == 2 and at[1] < 3
                   else "element " + "".join(f"[{i}]" for i in at) if at else "value")
            raise ValueError(f"{_where(path, sid)}: {loc} is {_kind(v)} ({_short(v)}), expected a number "
                             f"(x, y in metres, heading in radians)")
        try:
            return float(v)
        except OverflowError:                      # an integer too large for a float
            return float("inf")
    return walk(traj, ())


def _check_trajectory(path: str, sid, arr: np.ndarray) -> np.ndarray:
    """[8, 3] numeric -> float32, refusing wrong shapes, non-finite (after the cast) and implausible poses."""
    if arr.shape != (8, 3):
        raise ValueError(f"{_where(path, sid)} must have shape (8, 3) (8 poses x [x, y, heading]), got "
                         f"{arr.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        a32 = arr.astype(np.float32)
    bad = ~np.isfinite(a32)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(f"{_where(path, sid)} has a non-finite value ({float(arr[r, c]):g} -> {float(a32[r, c])} as float32) "
                         f"at pose {r}, {POSE_FIELDS[c]}; every value must be a finite float32")
    lim = np.asarray([MAX_ABS_XY, MAX_ABS_XY, MAX_ABS_HEADING], np.float32)
    bad = np.abs(a32) > lim
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        what = (f"|{POSE_FIELDS[c]}| <= {MAX_ABS_XY:g} m (4 s of driving in the ego frame at t0; are the "
                f"poses in metres, in the ego frame?)" if c < 2 else
                "|heading| <= 2*pi (radians, not degrees)")
        raise ValueError(f"{_where(path, sid)} pose {r}, {POSE_FIELDS[c]} = {float(arr[r, c]):g} is implausible: "
                         f"expected {what}")
    return a32


def _read_json(path: str, raw: bytes):
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _unreadable(path, "not UTF-8 text: a pickle or other binary file?") from None
    try:
        d = json.loads(text, object_pairs_hook=_Pairs)
    except json.JSONDecodeError as e:
        raise _unreadable(path, f"not valid JSON: {e}") from None
    except RecursionError:
        raise _unreadable(path, "JSON nested too deeply") from None
    if not isinstance(d, _Pairs):
        raise _unreadable(path, f"the JSON top level is {_kind(d)}, not an object")
    items, first = [], {}
    for n, (key, traj) in enumerate(d):
        if not (key.isascii() and key.isdigit()):
            raise ValueError(f"predictions {path}: scene id {_short(key)} (JSON key #{n}) is not an integer; "
                             f"keys must be integer scene ids such as \"12\"")
        sid = int(key)
        if sid in first:
            raise ValueError(f"predictions {path}: scene {sid}: field 'scene id' appears twice (JSON keys "
                             f"{_short(first[sid])} and {_short(key)}); give one trajectory per scene")
        first[sid] = key
        try:
            arr = np.asarray(_json_pose_values(path, sid, traj), np.float64)
        except ValueError as e:
            if str(e).startswith(f"predictions {path}:"):
                raise
            raise ValueError(f"{_where(path, sid)} must have shape (8, 3) (8 poses x [x, y, heading]), got "
                             f"ragged nested lists") from None
        items.append((sid, arr))
    return items


def _read_npz(path: str):
    import zipfile
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _unreadable(path, f"not a valid .npz: {why}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _unreadable(path, "a single .npy array, not an .npz archive")
    with z:
        arrays = {}
        for k in ("scene_id", "trajectories"):
            if k not in z.files:
                raise ValueError(f"predictions {path}: missing array '{k}' (have {sorted(z.files)}); {FORMATS}")
            try:
                arrays[k] = z[k]
            except ValueError as e:        # object arrays need pickle: refused
                raise ValueError(f"predictions {path}: field '{k}' is an object array (pickled; "
                                 f"{str(e).splitlines()[0]}); save it as a numeric array") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise _unreadable(path, f"array '{k}' is corrupt: {e}") from None
    ids, traj = arrays["scene_id"], arrays["trajectories"]
    if ids.ndim != 1:
        raise ValueError(f"predictions {path}: field 'scene_id' must have shape [K], got {ids.shape}")
    if ids.dtype.kind not in "iu":
        vals = ids.tolist()
        bad = next((v for v in vals if isinstance(v, float) and not v.is_integer()), vals[0] if vals else None)
        at = f" (e.g. {_short(bad)})" if vals else ""
        raise ValueError(f"predictions {path}: field 'scene_id' has dtype {ids.dtype}{at}, expected integers; "
                         f"save it as np.asarray(ids, np.int64)")
    if traj.dtype.kind not in "iuf":
        raise ValueError(f"predictions {path}: field 'trajectories' has dtype {traj.dtype}, expected a numeric "
                         f"(float) array [K, 8, 3] of x, y in metres and heading in radians")
    if traj.ndim < 1 or traj.shape[0] != ids.shape[0]:
        raise ValueError(f"predictions {path}: fields 'scene_id' and 'trajectories' differ in length "
                         f"({ids.shape[0]} ids, trajectories of shape {traj.shape}); give one [8, 3] "
                         f"trajectory per id")
    return [(int(s), traj[i]) for i, s in enumerate(ids.tolist())]


def read_predictions(path: str) -> Dict[int, np.ndarray]:
    """Predictions file -> {scene_id: [8, 3] float32}. Every problem is a one-line ValueError naming the
    file, the scene and the field: an unreadable file (pickle, empty, corrupt .npz, not JSON), ids that are
    not integers or appear twice, scene_id / trajectories of different lengths, non-numeric values
    (booleans, strings, null), wrong shapes, values that are not finite as float32, and poses outside
    |x|, |y| <= MAX_ABS_XY m, |heading| <= MAX_ABS_HEADING rad."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"predictions file {path!r} does not exist")
    if not os.path.isfile(path):
        raise _unreadable(path, "not a regular file")
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as e:
        raise _unreadable(path, str(e)) from None
    if not raw:
        raise _unreadable(path, "the file is empty")
    if path.endswith(".npz") or raw[:4] == b"PK\x03\x04":
        items = _read_npz(path)
    else:
        items = _read_json(path, raw)
    out: Dict[int, np.ndarray] = {}
    for sid, traj in items:
        if sid in out:
            raise ValueError(f"predictions {path}: scene {sid}: field 'scene_id' appears twice; give one "
                             f"trajectory per scene")
        out[sid] = _check_trajectory(path, sid, np.asarray(traj))
    if not out:
        raise ValueError(f"predictions {path}: no predictions; {FORMATS}")
    return out


def score_predictions(scenes, preds: Dict[int, np.ndarray], mode: str, human_filter: bool = True,
                      chunk: int = 16, scorer=None, subset: bool = False, source: str = "",
                      split: str = ""):
    """Score predictions against a stacked Scene batch (the split). Every prediction must name a scene of
    the batch, and every scene must have one unless ``subset``. ``scorer``: a jitted scorer (default
    ``make_scorer(mode, human_filter)``); ``chunk`` scenes per call; ``source`` / ``split`` name the file
    and the split in messages. -> (scene ids scored, in split order; {EPDMS and sub-scores: [K]})."""
    from irlvla_jax import scene as S
    from irlvla_jax.scoring import epdms

    where = f"predictions {source}" if source else "predictions"
    in_split = f"the split {split!r}" if split else "the split"
    ids = [int(s) for s in np.asarray(scenes.scene_id).tolist()]
    index = {s: i for i, s in enumerate(ids)}
    unknown = [s for s in preds if s not in index]
    if unknown:
        raise ValueError(f"{where}: scene {unknown[0]} is not in {in_split} ({len(unknown)} unknown id(s); "
                         f"known ids run {min(ids)}..{max(ids)}); predict only the split's scenes")
    missing = [s for s in ids if s not in preds]
    if missing and not subset:
        first = ", ".join(str(s) for s in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise ValueError(f"{where}: {len(missing)} of the {len(ids)} scenes of {in_split} have no prediction "
                         f"(scene ids {first}); predict every scene, or pass --subset to score only the "
                         f"{len(preds)} given")
    sel = sorted(preds, key=lambda s: index[s])
    rows = np.asarray([index[s] for s in sel])
    traj = np.stack([preds[s] for s in sel])[:, None]                     # [K, 1, 8, 3]
    fn = epdms.make_scorer(mode, human_filter) if scorer is None else scorer
    res = epdms.score_in_chunks(fn, S.index(scenes, rows), traj, chunk)
    return sel, {k: res[k][:, 0] for k in SUB_SCORES + ("EPDMS",)}


def score(config, workdir, args):
    """``irlvla score --predictions FILE [--split SPLIT] [--mode tracked|direct] [--subset]``."""
    from irlvla_jax.data import loader
    if not args.predictions:
        raise ValueError("--predictions FILE is required (JSON {scene_id: 8 x [x, y, heading]} or .npz)")
    mode = _mode(config, args)
    split = args.split or "test"
    subset = bool(getattr(args, "subset", False))
    preds = read_predictions(args.predictions)
    data_dir = loader.resolve_data_dir(config, workdir)
    scenes = loader.load_split(config, split, data_dir=data_dir)
    n_split = int(np.asarray(scenes.scene_id).shape[0])
    hf = bool(config.scoring.human_filter)
    from irlvla_jax.scoring import epdms
    fn, n_dev = epdms.scorer_from_config(config, mode)
    ids, res = score_predictions(scenes, preds, mode, human_filter=hf, chunk=epdms.round_chunk(16, n_dev),
                                 scorer=fn, subset=subset, source=args.predictions, split=split)
    summary = {"mode": mode, "split": split, "scenes": len(ids), "split_scenes": n_split, "human_filter": hf,
               **{k: float(np.mean(v)) for k, v in res.items()}}
    out = os.path.join(workdir, f"scores_{split}_{mode}.json")
    with open(out, "w") as fh:
        json.dump({"summary": summary, "per_scene": {str(i): {k: float(res[k][j]) for k in res}
                                                     for j, i in enumerate(ids)}}, fh)
    part = " (--subset)" if len(ids) < n_split else ""
    print(f"EPDMS of {args.predictions}: split {split}, {len(ids)} of {n_split} scenes{part}, mode {mode}")
    print(f"{'score':>10s} {'mean':>8s}")
    for k in ("EPDMS",) + SUB_SCORES:
        print(f"{k:>10s} {summary[k]:8.4f}")
    print(json.dumps(summary))
    return summary
