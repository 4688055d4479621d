"""CLI commands of the scorer: ``irlvla vectors DIR [--mode tracked|direct]`` and
``irlvla score --predictions FILE``.

* ``vectors``: reads a folder in the official test-vector layout (``scenes/`` + ``official_<mode>.json``),
  scores every proposal with the JAX scorer (one batched jitted call per chunk of scenes), prints a
  per-sub-score agreement table and the worst disagreements, and ends with one JSON line
  ``{"mode", "proposals", "agreement": {...}, "mean_abs_delta_epdms"}``.
* ``score``: a predictions file maps scene ids to 8 poses ``[[x, y, heading] x 8]`` (JSON object, or
  ``.npz`` with arrays ``scene_id [K]`` and ``trajectories [K, 8, 3]``); the scenes come from the
  dataset's split (``--split`` names it, default ``test``). Unknown ids, non-finite values and
  wrong shapes are refused with a message naming the scene and the field; nothing is silently scored.
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

def read_predictions(path: str) -> Dict[int, np.ndarray]:
    """Predictions file -> {scene_id: [8, 3] float32}; raises ValueError naming the scene and field."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"predictions file {path!r} does not exist")
    if path.endswith(".npz"):
        z = np.load(path)
        for k in ("scene_id", "trajectories"):
            if k not in z:
                raise ValueError(f"predictions {path}: missing array '{k}' (need scene_id [K], trajectories [K, 8, 3])")
        items = [(i, t) for i, t in zip(z["scene_id"].tolist(), z["trajectories"])]
    else:
        with open(path) as fh:
            try:
                d = json.load(fh)
            except json.JSONDecodeError as e:
                raise ValueError(f"predictions {path}: not valid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ValueError(f"predictions {path}: expected a JSON object {{scene_id: [[x, y, heading] x 8]}}")
        items = list(d.items())
    out: Dict[int, np.ndarray] = {}
    for key, traj in items:
        try:
            sid = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"predictions {path}: scene id {key!r} is not an integer") from None
        try:
            arr = np.asarray(traj, np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"predictions {path}: scene {sid}: field 'trajectory' is not a numeric array") from None
        if arr.shape != (8, 3):
            raise ValueError(f"predictions {path}: scene {sid}: field 'trajectory' must have shape (8, 3) "
                             f"(8 poses x [x, y, heading]), got {arr.shape}")
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"predictions {path}: scene {sid}: field 'trajectory' has a non-finite value "
                             f"({arr[r, c]}) at pose {r}, {('x', 'y', 'heading')[c]}")
        if sid in out:
            raise ValueError(f"predictions {path}: scene {sid} appears twice")
        out[sid] = arr.astype(np.float32)
    if not out:
        raise ValueError(f"predictions {path}: no predictions")
    return out


def score_predictions(scenes, preds: Dict[int, np.ndarray], mode: str, human_filter: bool = True,
                      chunk: int = 16, scorer=None):
    """Score predictions against a stacked Scene batch; every prediction must name a scene of the batch.
    ``scorer``: a jitted scorer (default ``make_scorer(mode, human_filter)``); ``chunk`` scenes per call."""
    from irlvla_jax import scene as S
    from irlvla_jax.scoring import epdms

    ids = np.asarray(scenes.scene_id).tolist()
    index = {int(s): i for i, s in enumerate(ids)}
    unknown = [s for s in preds if s not in index]
    if unknown:
        raise ValueError(f"predictions: scene {unknown[0]} is not in the split ({len(unknown)} unknown id(s); "
                         f"known ids run {min(ids)}..{max(ids)})")
    sel = sorted(preds, key=lambda s: index[s])
    rows = np.asarray([index[s] for s in sel])
    traj = np.stack([preds[s] for s in sel])[:, None]                     # [K, 1, 8, 3]
    fn = epdms.make_scorer(mode, human_filter) if scorer is None else scorer
    res = epdms.score_in_chunks(fn, S.index(scenes, rows), traj, chunk)
    return sel, {k: res[k][:, 0] for k in SUB_SCORES + ("EPDMS",)}


def score(config, workdir, args):
    """``irlvla score --predictions FILE [--split SPLIT] [--mode tracked|direct]``."""
    from irlvla_jax.data import loader
    if not args.predictions:
        raise ValueError("--predictions FILE is required (JSON {scene_id: 8 x [x, y, heading]} or .npz)")
    mode = _mode(config, args)
    split = args.split or "test"
    preds = read_predictions(args.predictions)
    data_dir = loader.resolve_data_dir(config, workdir)
    scenes = loader.load_split(config, split, data_dir=data_dir)
    hf = bool(config.scoring.human_filter)
    from irlvla_jax.scoring import epdms
    fn, n_dev = epdms.scorer_from_config(config, mode)
    ids, res = score_predictions(scenes, preds, mode, human_filter=hf, chunk=epdms.round_chunk(16, n_dev),
                                 scorer=fn)
    summary = {"mode": mode, "split": split, "scenes": len(ids), "human_filter": hf,
               **{k: float(np.mean(v)) for k, v in res.items()}}
    out = os.path.join(workdir, f"scores_{split}_{mode}.json")
    with open(out, "w") as fh:
        json.dump({"summary": summary, "per_scene": {str(i): {k: float(res[k][j]) for k in res}
                                                     for j, i in enumerate(ids)}}, fh)
    print(json.dumps(summary))
    return summary
