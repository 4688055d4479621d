"""``irlvla evaluate``: policies -> trajectories -> EPDMS tables with bootstrap 95 % intervals.

    irlvla evaluate --config configs/tiny.py --workdir DIR [--policies il,ppo_rwm] [--config.evaluate.max_scenes=N]
                    [--name DATASET]

``--name DATASET`` evaluates another dataset of the data dir (``config.data.name``): a converted one
(``irlvla convert``; its only split is ``real``, scored instead of ``config.evaluate.splits``) or another
world dataset. Trained policies come from the workdir's checkpoints, which hold their own anchors, so a
converted dataset (which has none) needs nothing from the world dataset. Its tables are written to
``<workdir>/eval/evaluate_<DATASET>_<mode>.{json,md}``.

For every split in ``config.evaluate.splits`` (loaded whole with ``data.loader.load_split``), every policy
proposes one plan per scene (``[B, 1, 8, 3]``: 8 poses (x, y, heading) at 0.5 ... 4.0 s, metres /
radians, ego rear-axle frame at t0), the JAX scorer (``scoring.epdms.scorer_from_config``: mode, human
filter and devices of ``config.scoring``) scores them in chunks (``score_in_chunks``), and a table of EPDMS and
its 9 sub-scores per policy is printed and written to ``<workdir>/eval/evaluate_<mode>.{json,md}``: the
mean over scenes with a seeded percentile-bootstrap 95 % interval, for the whole split and per scenario
family. TensorBoard scalars go to ``<workdir>/tb/eval``.

Policies are a registry ``name -> fn(scenes: Scene [B]) -> trajectories [B, 1, 8, 3]``:
* built in: ``constant_velocity`` (the ego's body-frame velocity held for 4 s, heading kept) and
  ``expert`` (the logged plan; an upper reference, not a learned policy);
* :func:`register_policy` adds any other (e.g. best-of-N by the true scorer);
* trained runs, by run name (the checkpoint folder): ``--policies il,rwm,ppo_rwm`` loads their latest
  checkpoints through ``STAGE_LOADERS`` (``loader(config, workdir) -> policy fn``; each stage module's
  ``policy``); ``--policies all`` loads every run that has a checkpoint. Runs: ``il`` (imitation), ``rwm``
  (the IL chains picked by the RWM), ``ppo_rwm`` (RL, RWM reward), ``ppo_scorer`` (RL, true-scorer reward:
  ablation), ``ppo_rwm_choice`` (RL re-ranking only: ablation); and ``ppo_rwm_pick`` (the ``ppo_rwm`` run's
  chains picked by its RWM: ``ppo.rwm_pick_policy``).
Paired EPDMS differences (per scene, same scenes) with bootstrap intervals (:func:`paired_difference`):
each RL run - IL and every learned policy - constant velocity (:func:`default_differences`), or the pairs
a caller passes (``irlvla pipeline`` uses this same function for its table).

The main tables use no previous-frame plan (a learned policy would need the sensors of the frame at
-0.5 s, which dataset scenes do not hold), so there EC = 1 and EPDMS uses the /14 denominator
(NAVSIM v2.2); the tables say so. Policies that can plan from the ego state at -0.5 s have a
previous-plan function (:data:`PREVIOUS_PLANS`: constant velocity from the -0.5 s velocity, and the
expert's logged poses at 0.0 ... 3.5 s); for them a "two-frame" table per split scores the plan with
its previous plan: EC from the two plans and EPDMS over /16.
"""
from __future__ import annotations

import importlib
import json
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.scoring.epdms import SUB_SCORES

COLUMNS = ("EPDMS",) + SUB_SCORES
PolicyFn = Callable[[S.Scene], np.ndarray]

# ----------------------------------------------------------------------------------------------------
# Policy registry.


def _hold_velocity(v: np.ndarray) -> np.ndarray:
    """[B, 1, 8, 3]: body-frame velocities ``v [B, 2]`` held for 4 s from the origin, heading 0."""
    t = (np.arange(1, S.N_POSES + 1, dtype=np.float32) * 0.5)
    xy = v[:, None, :] * t[None, :, None]
    return np.concatenate([xy, np.zeros_like(xy[..., :1])], -1)[:, None]


def constant_velocity(scenes: S.Scene) -> np.ndarray:
    """[B, 1, 8, 3]: the ego's body-frame velocity (vx, vy) at t0 held for 4 s, heading 0."""
    return _hold_velocity(np.asarray(scenes.ego_state, np.float32)[:, 3:5])


def expert(scenes: S.Scene) -> np.ndarray:
    """[B, 1, 8, 3]: the logged expert plan."""
    return np.asarray(scenes.expert_future, np.float32)[:, None]


_POLICIES: Dict[str, PolicyFn] = {"constant_velocity": constant_velocity, "expert": expert}


def _past_frame(scenes: S.Scene) -> np.ndarray:
    """[B, 7] ego state at -0.5 s (pose in the t0 frame, velocity / acceleration in its body frame)."""
    return np.asarray(scenes.ego_past, np.float32)[:, 10]


def constant_velocity_previous(scenes: S.Scene) -> np.ndarray:
    """[B, 1, 8, 3]: the constant-velocity plan made at -0.5 s, in the ego frame at -0.5 s."""
    return _hold_velocity(_past_frame(scenes)[:, 3:5])


def expert_previous(scenes: S.Scene) -> np.ndarray:
    """[B, 1, 8, 3]: the logged poses at 0.0 ... 3.5 s (the expert's plan made at -0.5 s), in the ego frame
    at -0.5 s."""
    from irlvla_jax import geometry as G
    fut = np.asarray(scenes.expert_future, np.float32)
    poses = np.concatenate([np.zeros_like(fut[:, :1]), fut[:, :-1]], axis=1)           # [B, 8, 3], t0 frame
    origin = _past_frame(scenes)[:, None, :3]
    return np.asarray(G.se2_to_local(origin, poses), np.float32)[:, None]


# policy name -> fn(scenes) -> its plan made at -0.5 s [B, 1, 8, 3] (ego frame at -0.5 s), for EC.
PREVIOUS_PLANS: Dict[str, PolicyFn] = {"constant_velocity": constant_velocity_previous, "expert": expert_previous}


# The pipeline's RL runs (train/ppo.py's run_config makes their configs); their paired EPDMS differences
# against IL are reported when both are evaluated (and every learned policy's against constant velocity).
RL_RUNS = ("ppo_rwm", "ppo_scorer", "ppo_rwm_choice")
# Pick rows: name -> the RL run whose K deterministic chains its (refreshed) RWM picks from
# (``ppo.rwm_pick_policy``); paired with IL and with the IL chains picked by the RWM stage (``rwm``).
PICK_RUNS = {"ppo_rwm_pick": "ppo_rwm"}

# Trained policies by run name (the checkpoint folder under <workdir>/checkpoints): run -> loader(config,
# workdir) -> PolicyFn. ``--policies`` names them.
def _ppo_loader(run: str):
    def load(config, workdir):
        from irlvla_jax.train import ppo as ppo_stage
        return ppo_stage.policy(ppo_stage.run_config(config, run), workdir)
    return load


def _ppo_pick_loader(run: str):
    def load(config, workdir):
        from irlvla_jax.train import ppo as ppo_stage
        return ppo_stage.rwm_pick_policy(ppo_stage.run_config(config, run), workdir)
    return load


def _stage_loader(module: str):
    def load(config, workdir):
        return importlib.import_module(module).policy(config, workdir)
    return load


STAGE_LOADERS: Dict[str, Callable] = {
    "il": _stage_loader("irlvla_jax.train.imitation"),        # imitation
    "rwm": _stage_loader("irlvla_jax.train.reward"),          # the IL chains picked by the RWM
    # RL with the RWM reward, and the ablations (the true scorer's reward; re-ranking only): ppo.run_config.
    **{run: _ppo_loader(run) for run in RL_RUNS},
    **{name: _ppo_pick_loader(run) for name, run in PICK_RUNS.items()},   # an RL run's chains picked by its RWM
}


def register_policy(name: str, fn: PolicyFn, overwrite: bool = False) -> None:
    """Add a policy ``fn(scenes [B]) -> [B, 1, 8, 3]`` under ``name`` (evaluated by :func:`main`)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_policy: name must be a non-empty string, got {name!r}")
    if not callable(fn):
        raise ValueError(f"register_policy: fn for {name!r} must be callable, got {type(fn).__name__}")
    if name in _POLICIES and not overwrite:
        raise ValueError(f"register_policy: a policy named {name!r} exists; pass overwrite=True to replace it")
    _POLICIES[name] = fn


def unregister_policy(name: str) -> None:
    _POLICIES.pop(name, None)


def policies() -> Dict[str, PolicyFn]:
    return dict(_POLICIES)


def register_stage_loader(run: str, loader: Callable) -> None:
    """``loader(config, workdir) -> PolicyFn`` for the trained run ``run`` (``--policies run``)."""
    STAGE_LOADERS[run] = loader


def load_stage_policies(config, workdir: str, names_arg: Optional[str]) -> List[str]:
    """Register the trained policies named by ``--policies`` (comma list of run names, or ``all``: every
    run with a checkpoint); return their names."""
    if not names_arg:
        return []
    names = list(STAGE_LOADERS) if names_arg == "all" else [s.strip() for s in names_arg.split(",") if s.strip()]
    loaded = []
    for name in names:
        if name in _POLICIES and name not in STAGE_LOADERS:
            loaded.append(name)         # a built-in baseline
            continue
        if name not in STAGE_LOADERS:
            raise ValueError(f"--policies {name!r}: unknown policy; known: {sorted(set(STAGE_LOADERS) | set(_POLICIES))}")
        try:
            fn = STAGE_LOADERS[name](config, workdir)
        except FileNotFoundError as e:
            if names_arg == "all":
                print(f"evaluate: skipping {name!r} ({str(e).splitlines()[0]})")
                continue
            raise
        register_policy(name, fn, overwrite=True)
        loaded.append(name)
    return loaded


def default_differences(names: List[str]):
    """The paired differences reported for ``names``: each RL run - IL, each pick row - IL and - the IL chains
    picked by the RWM (what the RL run's moved chains add), every learned policy - constant velocity."""
    pairs = [(r, "il") for r in RL_RUNS] + [(p, b) for p in PICK_RUNS for b in ("il", "rwm")]
    pairs += [(p, "constant_velocity") for p in names if p not in ("constant_velocity", "expert")]
    return [(a, b) for a, b in pairs if a in names and b in names]


# ----------------------------------------------------------------------------------------------------
# Statistics.


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Mean over axis 0 of ``values`` [n, ...] and its percentile-bootstrap (1 - alpha) interval.

    Vectorised: one [n_boot, n] index draw, reused for every trailing column (so the intervals of
    different columns come from the same resamples). Returns (mean, lo, hi), each of shape values.shape[1:].
    """
    x = np.asarray(values, np.float64)
    n = x.shape[0]
    if n == 0:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan, nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n), dtype=np.int32)
    flat = x.reshape(n, -1)
    means = np.empty((n_boot, flat.shape[1]))
    step = max(1, int(2e7 // max(n * flat.shape[1], 1)))
    for s0 in range(0, n_boot, step):  # bounded memory for big splits
        means[s0:s0 + step] = flat[idx[s0:s0 + step]].mean(axis=1)
    lo = np.percentile(means, 100 * alpha / 2, axis=0).reshape(x.shape[1:])
    hi = np.percentile(means, 100 * (1 - alpha / 2), axis=0).reshape(x.shape[1:])
    return flat.mean(0).reshape(x.shape[1:]), lo, hi


def paired_difference(a, b, n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> Dict[str, float]:
    """Paired mean difference ``a - b`` over the same scenes with a bootstrap (1 - alpha) interval.

    ``a``, ``b``: [n] per-scene scores (e.g. EPDMS of RL and of IL). Returns
    ``{"mean", "lo", "hi", "n"}``; the interval excluding 0 means a significant difference.
    """
    a = np.asarray(a, np.float64).reshape(-1)
    b = np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: a and b must have the same length (paired scenes), "
                         f"got {a.shape[0]} and {b.shape[0]}")
    if a.size == 0:
        raise ValueError("paired_difference: no scenes")
    m, lo, hi = bootstrap_ci(a - b, n_boot=n_boot, seed=seed, alpha=alpha)
    return {"mean": float(m), "lo": float(lo), "hi": float(hi), "n": int(a.size)}


# ----------------------------------------------------------------------------------------------------
# Scoring.


def _check_trajectories(name: str, traj, b: int) -> np.ndarray:
    t = np.asarray(traj, np.float32)
    if t.ndim == 3:
        t = t[:, None]
    if t.shape != (b, 1, S.N_POSES, 3):
        raise ValueError(f"policy {name!r} returned trajectories of shape {t.shape}; expected "
                         f"({b}, 1, {S.N_POSES}, 3) (scenes, 1 plan, 8 poses, x/y/heading)")
    if not np.isfinite(t).all():
        raise ValueError(f"policy {name!r} returned non-finite poses; fix the policy (metres/radians, ego frame)")
    return t


def score_policy(scorer, scenes: S.Scene, traj: np.ndarray, chunk: int, desc: str = "",
                 prev: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Per-scene scores {name: [B]} of one plan per scene (``scoring.epdms.score_in_chunks``); with ``prev``
    [B, 1, 8, 3] (the plans made at -0.5 s) EC is scored and EPDMS uses /16."""
    from irlvla_jax.scoring.epdms import score_in_chunks
    return {k: v[:, 0] for k, v in score_in_chunks(scorer, scenes, traj, chunk, prev=prev, desc=desc).items()}


def summarize(per_scene: Dict[str, np.ndarray], mask: np.ndarray, n_boot: int, seed: int) -> Dict[str, dict]:
    vals = np.stack([per_scene[k][mask] for k in COLUMNS], -1)
    m, lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
    return {k: {"mean": float(m[i]), "lo": float(lo[i]), "hi": float(hi[i])} for i, k in enumerate(COLUMNS)} | {
        "n": int(mask.sum())}


def _table(title: str, pols: Dict[str, dict]) -> List[str]:
    """Markdown lines of one table: a row per policy, EPDMS with its interval, then the sub-scores."""
    n = next(iter(pols.values()))["n"] if pols else 0
    lines = [f"## {title.format(n=n)}", "", "| policy | " + " | ".join(COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    for pol, r in pols.items():
        cells = [f"{r[c]['mean']:.3f} [{r[c]['lo']:.3f}, {r[c]['hi']:.3f}]" if c == "EPDMS"
                 else f"{r[c]['mean']:.3f}" for c in COLUMNS]
        lines.append(f"| {pol} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(results: dict) -> str:
    on = f" of dataset {results['dataset']}" if results.get("dataset") else ""
    lines = [f"# EPDMS evaluation{on} ({results['mode']} mode, human filter {results['human_filter']})", "",
             "Mean over scenes, [bootstrap 95% interval]. No previous-frame plans: EC = 1, EPDMS uses /14.", ""]
    for split, sres in results["splits"].items():
        for group, pols in sres["groups"].items():
            lines += _table(f"{split} / {group} (n = {{n}})", pols)
        if sres.get("two_frame"):
            lines += _table(f"{split} / all, two-frame (n = {{n}}): EC from the plan made at -0.5 s, EPDMS over /16",
                            sres["two_frame"])
        for name, d in sres.get("differences", {}).items():
            lines.append(f"**{split}: {name}** EPDMS difference {d['mean']:+.4f} "
                         f"[{d['lo']:+.4f}, {d['hi']:+.4f}] (n = {d['n']})")
            lines.append("")
    return "\n".join(lines)


def evaluate_splits(config, workdir: str, policy_names: Optional[List[str]] = None,
                    scenes_by_split: Optional[Dict[str, S.Scene]] = None, scorer=None,
                    differences=None, keep_per_scene: bool = False, two_frame: bool = True) -> dict:
    """Score every registered policy named in ``policy_names`` on every split (``config.evaluate.splits``,
    or the given ``scenes_by_split``) with the scorer of ``config.scoring`` (``num_devices`` honoured);
    return the results dict (also the JSON written by :func:`main`). ``differences``: (a, b) pairs of the
    paired EPDMS differences a - b (default :func:`default_differences`); ``keep_per_scene`` also keeps
    every policy's per-scene scores ({policy: {column: [B]}}) and plans under each split's ``per_scene`` /
    ``trajectories``; ``two_frame`` also scores the two-frame (EC) rows of the policies with a previous-plan
    function (:data:`PREVIOUS_PLANS`; their own scorer program, with the previous plans)."""
    ec = config.evaluate
    mode, hf = str(config.scoring.mode), bool(config.scoring.human_filter)
    pols = policies()
    names = list(pols) if policy_names is None else list(policy_names)
    missing = [n for n in names if n not in pols]
    if missing:
        raise ValueError(f"unknown policy {missing[0]!r}; registered: {sorted(pols)}")
    chunk = int(ec.chunk)
    if scorer is None:
        from irlvla_jax.scoring import epdms
        scorer, n_dev = epdms.scorer_from_config(config)
        chunk = epdms.round_chunk(chunk, n_dev)
    writer = None
    try:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(os.path.join(workdir, "tb", "eval"))
    except Exception:  # noqa: BLE001 - TensorBoard is optional for evaluation
        writer = None
    results = {"mode": mode, "human_filter": hf, "bootstrap": int(ec.bootstrap), "seed": int(ec.seed),
               "policies": names, "splits": {}}
    splits = list(ec.splits) if scenes_by_split is None else list(scenes_by_split)
    for split in splits:
        if scenes_by_split is not None:
            scenes = scenes_by_split[split]
        else:
            from irlvla_jax.data import loader as L
            limit = int(ec.max_scenes) if int(ec.max_scenes) > 0 else None
            scenes = L.load_split(config, split, data_dir=L.data_dir(config, workdir), limit=limit)
        b = int(np.asarray(scenes.scene_id).shape[0])
        fam = np.asarray(scenes.family).reshape(-1)
        per_policy, trajs = {}, {}
        t0 = time.time()
        for name in names:
            trajs[name] = _check_trajectories(name, pols[name](scenes), b)
            per_policy[name] = score_policy(scorer, scenes, trajs[name], chunk, desc=f"{split}/{name}")
        groups = {"all": np.ones(b, bool)}
        for fi in sorted(set(fam.tolist())):
            groups[S.FAMILIES[fi]] = fam == fi
        sres = {"num_scenes": b, "seconds": None, "groups": {}, "differences": {}, "two_frame": {}}
        for g, mask in groups.items():
            sres["groups"][g] = {p: summarize(per_policy[p], mask, int(ec.bootstrap), int(ec.seed)) for p in names}
        for name in [n for n in names if n in PREVIOUS_PLANS] if two_frame else []:
            prev = _check_trajectories(f"{name} (previous plan)", PREVIOUS_PLANS[name](scenes), b)
            two = score_policy(scorer, scenes, trajs[name], chunk, desc=f"{split}/{name}/two-frame", prev=prev)
            sres["two_frame"][name] = summarize(two, groups["all"], int(ec.bootstrap), int(ec.seed))
        for a, b_ in (default_differences(names) if differences is None else differences):
            sres["differences"][f"{a} - {b_}"] = paired_difference(
                per_policy[a]["EPDMS"], per_policy[b_]["EPDMS"], n_boot=int(ec.bootstrap), seed=int(ec.seed))
        if keep_per_scene:
            sres["per_scene"], sres["trajectories"] = per_policy, trajs
        sres["seconds"] = round(time.time() - t0, 2)
        results["splits"][split] = sres
        n_render = int(ec.renders)
        if n_render > 0:
            sres["renders"] = render_examples(scenes, {p: pols[p] for p in names}, per_policy, split,
                                              os.path.join(workdir, "eval", "renders"), n_render)
        if writer is not None:
            for p in names:
                for c in COLUMNS:
                    writer.add_scalar(f"{split}/{p}/{c}", sres["groups"]["all"][p][c]["mean"], 0)
    if writer is not None:
        writer.close()
    return results


def render_examples(scenes: S.Scene, pols: Dict[str, PolicyFn], per_policy: Dict[str, Dict[str, np.ndarray]],
                    split: str, out_dir: str, n: int) -> List[str]:
    """PNG renders of the first ``n`` scenes of a split with every policy's trajectory and its EPDMS."""
    from irlvla_jax import viz
    os.makedirs(out_dir, exist_ok=True)
    b = int(np.asarray(scenes.scene_id).shape[0])
    idx = np.arange(min(n, b))
    sub = S.index(scenes, idx)
    trajs = {p: np.asarray(fn(sub), np.float32)[:, 0] for p, fn in pols.items()}
    paths = []
    for j, i in enumerate(idx):
        names = list(trajs)
        scores = [float(per_policy[p]["EPDMS"][i]) for p in names]
        labels = [f"{p} (EPDMS {sc:.2f})" for p, sc in zip(names, scores)]
        sid = int(np.asarray(scenes.scene_id)[i])
        path = os.path.join(out_dir, f"{split}_{sid}.png")
        viz.render_scene(S.index(scenes, i), path, trajectories=np.stack([trajs[p][j] for p in names]),
                         labels=labels, scores=scores, title=f"{split} scene {sid}: policies by true EPDMS")
        paths.append(path)
    return paths


def _select_dataset(config, workdir: str, name: str):
    """``--name``: a copy of ``config`` reading dataset ``name``; a converted dataset's split ``real``."""
    import re
    from irlvla_jax.data import loader as L
    from irlvla_jax.errors import UserError
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise UserError(f"--name {name!r}: a dataset name must match [a-z][a-z0-9_]*, e.g. real_navsim")
    cfg = config.copy_and_resolve_references()
    cfg.data.name = str(name)
    meta = L.open_dataset(cfg, L.data_dir(cfg, workdir))
    if L.is_converted(meta):
        cfg.evaluate.splits = tuple(L.dataset_splits(meta))
    return cfg


def main(config, workdir, args):
    """CLI entry: evaluate the baselines and the ``--policies`` runs, print and save the tables."""
    name = getattr(args, "name", None)
    loaded = load_stage_policies(config, workdir, getattr(args, "policies", None))
    names = ["constant_velocity", "expert"] + [n for n in loaded if n not in ("constant_velocity", "expert")]
    if name:
        config = _select_dataset(config, workdir, name)
    results = evaluate_splits(config, workdir, names)
    if name:
        results["dataset"] = str(name)
    out = os.path.join(workdir, "eval")
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, f"evaluate_{name + '_' if name else ''}{results['mode']}")
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1)
    md = markdown(results)
    with open(base + ".md", "w") as f:
        f.write(md + "\n")
    print(md)
    summary = {s: {p: round(r["groups"]["all"][p]["EPDMS"]["mean"], 4) for p in results["policies"]}
               for s, r in results["splits"].items()}
    print(json.dumps({"mode": results["mode"], "epdms": summary, "json": base + ".json", "markdown": base + ".md"}))
    return results
