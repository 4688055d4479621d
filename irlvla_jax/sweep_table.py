"""The table of an ``irlvla sweep`` (``DIR/sweep.md``, ``sweep.json``, ``sweep.png``): per cell, EPDMS and the
nine sub-scores of one policy row, mean over seeds with a 95% t-interval over the seeds, and the paired
per-scene difference to a baseline cell (percentile bootstrap over (scene, seed) pairs, with the t-interval
over the per-seed mean differences beside it). See :mod:`irlvla_jax.sweep` for how the runs are made.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Tuple

import numpy as np

from irlvla_jax.errors import UserError

Cell = Tuple[str, Dict[str, str]]       # (name, {config key: value})


def run_dir(workdir: str, name: str, seed: int) -> str:
    return os.path.join(workdir, name, f"seed_{seed}")


def finished(run: str) -> bool:
    """The run's pipeline finished: its results.json and evaluate marker exist."""
    return (os.path.isfile(os.path.join(run, "results.json"))
            and os.path.isfile(os.path.join(run, "stages", "evaluate.json")))

# --------------------------------------------------------------------------------------------------
# The table.


def load_run(run: str, policy: str) -> Dict[str, Any]:
    """A finished run's scores of ``policy``: {"table": {column: value}, "per_scene": [EPDMS per scene],
    "split", "scenes"} (per-scene EPDMS from results.json, else from the stages/evaluate.json marker)."""
    with open(os.path.join(run, "results.json")) as f:
        res = json.load(f)
    res = res[0] if isinstance(res, list) else res
    per_scene = res.get("per_scene_epdms")
    if not per_scene:
        with open(os.path.join(run, "stages", "evaluate.json")) as f:
            per_scene = json.load(f).get("per_scene_epdms")
    if policy not in res.get("table", {}):
        raise UserError(f"--policies {policy!r}: not a row of {run}/results.json; rows: {sorted(res.get('table', {}))}")
    if not per_scene or policy not in per_scene:
        raise UserError(f"{run}: no per-scene EPDMS of {policy!r} in results.json or stages/evaluate.json; "
                        "delete stages/evaluate.json and re-run to re-evaluate")
    return dict(table=res["table"][policy], per_scene=np.asarray(per_scene[policy], np.float64),
                split=res.get("split"), scenes=res.get("scenes"))


def t_interval(x) -> Tuple[float, float, float]:
    """Mean of ``x`` (one value per seed) and its 95% t-interval (NaN bounds with fewer than 2 values)."""
    from scipy import stats
    x = np.asarray(x, np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size))
    return m, m - h, m + h


def summarize(workdir: str, all_cells: List[Cell], seeds: List[int], baseline: str, policy: str,
              n_boot: int = 2000, boot_seed: int = 0) -> Dict[str, Any]:
    """The sweep's table (see the module docstring) from the finished runs."""
    from irlvla_jax.evaluate import COLUMNS, paired_difference
    runs = {name: {s: load_run(run_dir(workdir, name, s), policy) for s in seeds
                   if finished(run_dir(workdir, name, s))} for name, _ in all_cells}
    rows, base = [], runs[baseline]
    for name, ov in all_cells:
        done = runs[name]
        scores = {}
        for c in COLUMNS:
            per_seed = [float(done[s]["table"][c]) for s in done]
            m, lo, hi = t_interval(per_seed)
            scores[c] = dict(mean=m, lo=lo, hi=hi, per_seed=per_seed)
        diff = None
        common = [s for s in seeds if s in done and s in base]
        if name != baseline and common:
            for s in common:
                if done[s]["per_scene"].shape != base[s]["per_scene"].shape:
                    raise UserError(f"cell {name} and baseline {baseline}, seed {s}: evaluated on "
                                    f"{done[s]['per_scene'].size} and {base[s]['per_scene'].size} scenes; "
                                    "the paired difference needs the same scenes")
            a = np.concatenate([done[s]["per_scene"] for s in common])
            b = np.concatenate([base[s]["per_scene"] for s in common])
            diff = paired_difference(a, b, n_boot=n_boot, seed=boot_seed)
            _, t_lo, t_hi = t_interval([done[s]["per_scene"].mean() - base[s]["per_scene"].mean() for s in common])
            diff.update(t_lo=t_lo, t_hi=t_hi, seeds=common)
        rows.append(dict(name=name, overrides=ov, seeds=sorted(done), missing_seeds=[s for s in seeds if s not in done],
                         scores=scores, difference=diff))
    splits = {r["split"] for d in runs.values() for r in d.values()}
    return dict(policy=policy, split=",".join(sorted(str(s) for s in splits)), seeds=seeds, baseline=baseline,
                intervals=("cells: 95% t-interval over seeds; difference: paired bootstrap 95% over (scene, seed) "
                           "pairs (lo, hi) and 95% t-interval over the per-seed mean differences (t_lo, t_hi)"),
                cells=rows)


def _fmt(d: Dict[str, float], signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    if not np.isfinite(d["mean"]):
        return "-"
    if not (np.isfinite(d["lo"]) and np.isfinite(d["hi"])):
        return f.format(d["mean"])
    return f"{f.format(d['mean'])} [{f.format(d['lo'])}, {f.format(d['hi'])}]"


def format_table(summary: Dict[str, Any]) -> str:
    from irlvla_jax.evaluate import COLUMNS
    s = summary
    lines = [f"### sweep: {s['policy']} on the {s['split']} split, seeds {','.join(map(str, s['seeds']))}", "",
             f"Mean over seeds [95% t-interval over seeds]; Δ EPDMS: cell − baseline ({s['baseline']}) paired per "
             "scene and seed [95% paired bootstrap over (scene, seed)] (t: 95% t-interval over seeds).", "",
             "| cell | seeds | " + " | ".join(COLUMNS) + " | Δ EPDMS vs baseline |",
             "|---" * (len(COLUMNS) + 3) + "|"]
    for r in s["cells"]:
        d = r["difference"]
        dtxt = "baseline" if r["name"] == s["baseline"] else "-"
        if d:
            dtxt = _fmt(d, signed=True)
            if np.isfinite(d["t_lo"]):
                dtxt += f" (t: [{d['t_lo']:+.3f}, {d['t_hi']:+.3f}])"
        seeds = ",".join(map(str, r["seeds"])) or "none"
        if r["missing_seeds"]:
            seeds += f" (missing {','.join(map(str, r['missing_seeds']))})"
        lines.append(f"| {r['name']} | {seeds} | " + " | ".join(_fmt(r["scores"][c]) for c in COLUMNS)
                     + f" | {dtxt} |")
    return "\n".join(lines)


def plot(summary: Dict[str, Any], path: str) -> str:
    """Bar chart: EPDMS per cell (mean over seeds, 95% t-interval error bars, one dot per seed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = summary["cells"]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * n + 2), 4.5))
    x = np.arange(n)
    ep = [{k: (np.nan if v is None else v) for k, v in r["scores"]["EPDMS"].items()} for r in rows]  # or sweep.json
    mean = np.array([e["mean"] for e in ep])
    err = np.array([[e["mean"] - e["lo"], e["hi"] - e["mean"]] for e in ep]).T
    err = np.where(np.isfinite(err), err, 0.0)
    colors = ["C1" if r["name"] == summary["baseline"] else "C0" for r in rows]
    ax.bar(x, np.nan_to_num(mean), yerr=err, color=colors, capsize=4, alpha=0.8)
    for i, e in enumerate(ep):
        ax.plot(np.full(len(e["per_seed"]), x[i]), e["per_seed"], "k.", ms=4)
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"].replace(",", ",\n") for r in rows], fontsize=7)
    finite = [v for e in ep for v in [e["lo"], e["hi"], *e["per_seed"]] if np.isfinite(v)]
    if finite:                                   # zoomed on the values (at least 0.05 of EPDMS)
        lo, hi = min(finite), max(finite)
        pad = max(0.25 * (hi - lo), 0.025)
        ax.set_ylim(max(0.0, lo - pad), min(1.0, hi + pad) if hi + pad > lo - pad else 1.0)
    ax.set_ylabel(f"EPDMS ({summary['policy']}, {summary['split']})")
    ax.set_title(f"mean over seeds {','.join(map(str, summary['seeds']))} (dots), 95% t-interval\n"
                 f"baseline (orange): {summary['baseline']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _finite(x):
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    return int(x) if isinstance(x, np.integer) else x


def write_table(summary: Dict[str, Any], workdir: str) -> str:
    text = format_table(summary)
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write(text + "\n")
    tmp = os.path.join(workdir, "sweep.json.tmp")
    with open(tmp, "w") as f:
        json.dump(_finite(summary), f, indent=1)                # no interval (one seed): null
    os.replace(tmp, os.path.join(workdir, "sweep.json"))
    plot(summary, os.path.join(workdir, "sweep.png"))
    return text
