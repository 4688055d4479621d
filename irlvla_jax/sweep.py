"""``irlvla sweep``: a grid of config overrides x training seeds, one ``irlvla pipeline`` per cell and seed,
and one table of the results.

    irlvla sweep --config configs/tiny.py --workdir DIR --grid ppo.reward=rwm,scorer \
        --grid ppo.bc_weight=0.0,0.1 --seeds 0,1,2 [--baseline ppo.reward=rwm,ppo.bc_weight=0.0] \
        [--policies ppo_rwm] [--launcher local|slurm|print] [--config.key=value ...]

Cells are the Cartesian product of the ``--grid KEY=V1,V2,...`` values (in the order given); each cell x
seed is one ``irlvla pipeline`` subprocess in its own workdir ``DIR/<key>=<value>,.../seed_<s>``
(``DIR/default/seed_<s>`` without ``--grid``), with ``--config.KEY=VALUE`` for the cell's values (kept as the
strings given and parsed by the CLI exactly as ``--config`` overrides are; every cell's config is parsed and
checked before anything runs), ``--config.seed=<s>``, and the sweep's own ``--config.*`` overrides. Every
run reads one dataset, ``DIR/data`` (or ``config.data.data_dir``), generated once first with the
dataset seed pinned (``config.data.world_seed``), so cells and seeds differ only in what they set; grid
keys that would change the dataset (``seed``, ``scene.*``, ``data.name``, ``data.num_*``,
``data.data_dir``, ``data.world_seed``) are refused. A run whose pipeline finished (``results.json`` and
``stages/evaluate.json`` exist) is not re-run; an unfinished one resumes stage by stage.

``--launcher``: ``local`` (default) runs the runs one after another (output in ``<run>/pipeline.log``),
then writes the table; ``slurm`` writes ``DIR/slurm/generate.sbatch`` and ``<run>/pipeline.sbatch``
(launch/slurm.sbatch conventions: one JAX process per node; ``SBATCH_*`` environment variables override
its ``#SBATCH`` lines) and submits them with ``sbatch``, every run depending on the generate job; re-run
the same command with ``--launcher local`` once they finished to write the table (nothing is re-run);
``print`` lists the commands (the generate command, then one ``irlvla pipeline`` per cell x seed).

The table (``DIR/sweep.md``, ``DIR/sweep.json``, ``DIR/sweep.png``) holds, for each cell, EPDMS and the
nine sub-scores of one row of the pipeline's table (``--policies``, default ``ppo_rwm``: RL with the RWM
reward) on ``pipeline.eval_split``, and the paired EPDMS difference to the baseline cell (``--baseline``,
default the first cell). Intervals (95%):

* a cell's scores: the mean over seeds of each seed's score, with a **t-interval over the seeds**
  (mean +- t_{0.975, n-1} * sd / sqrt(n), n seeds; none with one seed). It measures seed-to-seed
  (training) variation, which dominates; a bootstrap over 3 seeds would be far too narrow.
* the difference to the baseline: per scene and seed, cell EPDMS minus baseline EPDMS on the same
  scene with the same training seed (seeds finished in both cells), pooled; its interval is the **paired
  percentile bootstrap over those (scene, seed) pairs** (``evaluate.paired_difference``,
  ``evaluate.bootstrap`` resamples, seed ``evaluate.seed``), which measures scene sampling only. The
  t-interval over the per-seed mean differences, which also covers seed-to-seed variation, is given beside
  it (``t_lo`` / ``t_hi``).

The per-scene EPDMS comes from each run's ``results.json`` or, as the pipeline keeps it out of that file,
from its ``stages/evaluate.json`` marker.
"""
from __future__ import annotations

import itertools
import json
import os
import shlex
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax.errors import UserError

DEFAULT_POLICY = "ppo_rwm"
LAUNCHERS = ("local", "slurm", "print")
PROGRAM = ("irlvla",)                                    # printed / SLURM commands
LOCAL_PROGRAM = (sys.executable, "-m", "irlvla_jax.cli")  # local subprocesses (no PATH lookup)
# Keys a cell may not set: they change the shared dataset or are set by the sweep itself.
RESERVED = ("seed", "data.name", "data.data_dir", "data.world_seed")
RESERVED_PREFIXES = ("scene.", "data.num_")
# launch/slurm.sbatch's resources (one JAX process per node, all its GPUs).
SBATCH_HEADER = ("#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --cpus-per-task=32")

Grid = List[Tuple[str, List[str]]]
Cell = Tuple[str, Dict[str, str]]
Runner = Callable[[List[str], str], int]


# --------------------------------------------------------------------------------------------------
# The grid.

def parse_grid(items: Optional[Sequence[str]]) -> Grid:
    """``["ppo.reward=rwm,scorer", ...]`` -> ``[("ppo.reward", ["rwm", "scorer"]), ...]``; a malformed
    item, a duplicate or reserved key, or a value that cannot be a directory name is a one-line error."""
    grid: Grid = []
    for item in items or ():
        key, sep, vals = str(item).partition("=")
        key = key.strip()
        for prefix in ("--config.", "config."):
            key = key[len(prefix):] if key.startswith(prefix) else key
        if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
            raise UserError(f"--grid {item!r}: expected KEY=V1,V2,... with KEY a dotted config key "
                            "(e.g. --grid ppo.reward=rwm,scorer)")
        values = [v.strip() for v in vals.split(",")]
        if not vals.strip() or any(v == "" for v in values):
            raise UserError(f"--grid {item!r}: expected comma-separated non-empty values after '='")
        if len(set(values)) != len(values):
            raise UserError(f"--grid {item!r}: a value is repeated")
        bad = [v for v in values if "/" in v or any(c.isspace() for c in v) or v in (".", "..")]
        if bad:
            raise UserError(f"--grid {item!r}: value {bad[0]!r} cannot be part of a workdir name "
                            "(no '/' or whitespace)")
        if key in RESERVED or key.startswith(RESERVED_PREFIXES):
            why = "use --seeds" if key == "seed" else "the cells share one dataset; sweep it with separate sweeps"
            raise UserError(f"--grid {item!r}: {key} cannot be swept ({why})")
        if key in [k for k, _ in grid]:
            raise UserError(f"--grid {item!r}: {key} is given twice; list all its values in one --grid")
        grid.append((key, values))
    return grid


def cell_name(overrides: Dict[str, str]) -> str:
    """The cell's folder name: ``key=value,key=value`` in grid order (``default`` without a grid)."""
    return ",".join(f"{k}={v}" for k, v in overrides.items()) or "default"


def cells(grid: Grid) -> List[Cell]:
    """The Cartesian product of the grid values: [(name, {key: value})], the first key varying slowest."""
    keys = [k for k, _ in grid]
    out = []
    for point in itertools.product(*[v for _, v in grid]):
        ov = dict(zip(keys, point))
        out.append((cell_name(ov), ov))
    return out


def parse_seeds(text, default: int) -> List[int]:
    if text is None or str(text).strip() == "":
        return [int(default)]
    try:
        seeds = [int(s) for s in str(text).split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must name distinct integers, e.g. 0,1,2; got {text!r}")
    return seeds


def baseline_cell(text: Optional[str], grid: Grid, all_cells: List[Cell]) -> str:
    """The cell named by ``--baseline KEY=V,KEY=V`` (the keys it names must match; keys it leaves out may
    be left out only if that still names one cell); default: the first cell."""
    if not text:
        return all_cells[0][0]
    want: Dict[str, str] = {}
    for part in str(text).split(","):
        key, sep, val = part.partition("=")
        key = key.strip()
        if not sep or not key or not val.strip():
            raise UserError(f"--baseline {text!r}: expected KEY=VALUE,... naming a grid cell, e.g. "
                            f"{all_cells[0][0]}")
        want[key] = val.strip()
    keys = [k for k, _ in grid]
    unknown = [k for k in want if k not in keys]
    if unknown:
        raise UserError(f"--baseline {text!r}: {unknown[0]} is not a --grid key; grid keys: {keys}")
    match = [name for name, ov in all_cells if all(ov[k] == v for k, v in want.items())]
    if len(match) != 1:
        what = "no cell" if not match else f"{len(match)} cells"
        raise UserError(f"--baseline {text!r} names {what}; cells: " + "; ".join(n for n, _ in all_cells))
    return match[0]


# --------------------------------------------------------------------------------------------------
# Configs and commands.

def argv_overrides(argv: Sequence[str]) -> List[str]:
    """The ``--config.KEY=VALUE`` overrides of a command line (``--config.KEY VALUE`` too), as given."""
    out, argv = [], list(argv)
    for i, a in enumerate(argv):
        if a.startswith("--config."):
            if "=" in a:
                out.append(a)
            elif i + 1 < len(argv):
                out.append(f"{a}={argv[i + 1]}")
    return out


def _key(override: str) -> str:
    return override.split("=", 1)[0][len("--config."):]


def parse_config(config_path: str, overrides: Sequence[str]):
    """The config ``irlvla <command> --config config_path *overrides`` would get (same parser, same checks);
    a bad key or value is the CLI's one-line error."""
    from absl import flags
    from ml_collections import config_flags
    from irlvla_jax import cli
    from irlvla_jax import config as config_lib
    argv = ["irlvla", "--config", config_path, *overrides]
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=fv, lock_config=True, sys_argv=argv)
    try:
        fv(argv)
    except flags.Error as e:
        raise cli._override_error(argv, e) from e
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise cli._override_error(argv, e) from e
    config_lib.check(fv.config)
    return fv.config


def cell_overrides(cell_ov: Dict[str, str]) -> List[str]:
    return [f"--config.{k}={v}" for k, v in cell_ov.items()]


def run_dir(workdir: str, name: str, seed: int) -> str:
    return os.path.join(workdir, name, f"seed_{seed}")


def finished(run: str) -> bool:
    """The run's pipeline finished: its results.json and evaluate marker exist."""
    return (os.path.isfile(os.path.join(run, "results.json"))
            and os.path.isfile(os.path.join(run, "stages", "evaluate.json")))


class Plan:
    """Every command of a sweep: ``generate`` once, then ``pipeline`` per (cell, seed)."""

    def __init__(self, config_path: str, workdir: str, base: Sequence[str], grid: Grid, seeds: List[int],
                 data_dir: str, world_seed: int):
        self.config_path, self.workdir, self.grid, self.seeds = config_path, workdir, grid, seeds
        gk = {k for k, _ in grid} | set(RESERVED)
        self.base = [o for o in base if _key(o) not in gk]   # the cell's value / the sweep's own win
        self.data = [f"--config.data.data_dir={data_dir}", f"--config.data.world_seed={int(world_seed)}"]
        self.cells = cells(grid)

    def generate(self, program=PROGRAM) -> List[str]:
        return [*program, "generate", "--config", self.config_path, "--workdir", self.workdir, *self.base,
                *self.data]

    def pipeline(self, cell_ov: Dict[str, str], seed: int, run: str, program=PROGRAM) -> List[str]:
        return [*program, "pipeline", "--config", self.config_path, "--workdir", run, *self.base,
                *cell_overrides(cell_ov), f"--config.seed={int(seed)}", *self.data]

    def runs(self):
        """[(cell name, overrides, seed, run dir)] in cell-major order."""
        return [(name, ov, s, run_dir(self.workdir, name, s)) for name, ov in self.cells for s in self.seeds]


def _subprocess_runner(argv: List[str], log: str) -> int:
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "ab") as f:
        return subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)


def _tail(path: str, n: int = 5) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def sbatch_script(argv: List[str], out: str, job_name: str) -> str:
    """A batch script running ``argv`` as launch/slurm.sbatch runs its command (one process per node)."""
    return "\n".join([
        "#!/usr/bin/env bash", f"# written by irlvla sweep: {job_name}", f"#SBATCH --job-name={job_name}",
        *SBATCH_HEADER, f"#SBATCH --output={out}", "set -euo pipefail",
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        "export IRLVLA_PORT=${IRLVLA_PORT:-12355}",
        "# jax.distributed reads these through irlvla_jax/train/mesh.py.",
        'srun env IRLVLA_COORDINATOR="$head:$IRLVLA_PORT" bash -c \'IRLVLA_NUM_PROCESSES=$SLURM_NTASKS '
        'IRLVLA_PROCESS_ID=$SLURM_PROCID exec "$@"\' _ ' + shlex.join(argv), ""])


def _sbatch(argv: List[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError("sbatch not found: --launcher slurm runs on a SLURM login node") from None
    if p.returncode != 0:
        raise UserError(f"{shlex.join(argv)} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return p.stdout.strip().split(";")[0]


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


# --------------------------------------------------------------------------------------------------

def sweep(config, workdir: str, *, config_path: str, grid: Grid, seeds: List[int], overrides: Sequence[str] = (),
          baseline: Optional[str] = None, launcher: str = "local", policy: str = DEFAULT_POLICY,
          runner: Optional[Runner] = None, submit: Optional[Callable[[List[str]], str]] = None,
          out: Callable[[str], None] = print) -> Optional[Dict[str, Any]]:
    """Run (or submit, or print) every cell x seed, then (local) write the table; returns its summary.
    ``runner(argv, log_path) -> exit code`` and ``submit(sbatch argv) -> job id`` replace the subprocesses."""
    from irlvla_jax.data import loader
    from irlvla_jax.data.tfds_builder import world_seed
    if launcher not in LAUNCHERS:
        raise UserError(f"--launcher {launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    if not policy or "," in policy:
        raise UserError(f"--policies {policy!r}: name one row of the pipeline's table, e.g. {DEFAULT_POLICY}")
    from irlvla_jax.pipeline import POLICIES
    if policy not in POLICIES:
        raise UserError(f"--policies {policy!r}: not a row of the pipeline's table; rows: {', '.join(POLICIES)}")
    workdir = os.path.abspath(workdir)
    all_cells = cells(grid)
    base_name = baseline_cell(baseline, grid, all_cells)
    data_dir = loader.data_dir(config, workdir)
    plan = Plan(config_path, workdir, overrides, grid, seeds, data_dir, world_seed(config))
    for _, ov in all_cells:                       # every cell's config parses and checks, before anything runs
        parse_config(config_path, [*plan.base, *cell_overrides(ov), f"--config.seed={seeds[0]}"])
    runs = plan.runs()
    if launcher == "print":
        out(shlex.join(plan.generate()))
        for _, ov, s, run in runs:
            out(shlex.join(plan.pipeline(ov, s, run)))
        return None
    todo = [r for r in runs if not finished(r[3])]
    for name, _, s, run in runs:
        if not finished(run):
            continue
        out(f"[sweep] {name} seed {s}: finished ({run}); skipped")
    if launcher == "slurm":
        submit = submit or _sbatch
        if not todo:
            out("[sweep] every run finished; write the table with --launcher local")
            return None
        sdir = os.path.join(workdir, "slurm")
        os.makedirs(sdir, exist_ok=True)
        script = os.path.join(sdir, "generate.sbatch")
        with open(script, "w") as f:
            f.write(sbatch_script(plan.generate(), os.path.join(sdir, "generate-%j.out"), "irlvla-sweep-generate"))
        gen = submit(["sbatch", "--parsable", script])
        out(f"[sweep] generate: job {gen}")
        for name, ov, s, run in todo:
            os.makedirs(run, exist_ok=True)
            script = os.path.join(run, "pipeline.sbatch")
            with open(script, "w") as f:
                f.write(sbatch_script(plan.pipeline(ov, s, run), os.path.join(run, "slurm-%j.out"),
                                      f"irlvla-sweep-{name}-seed{s}"))
            job = submit(["sbatch", "--parsable", f"--dependency=afterok:{gen}", script])
            out(f"[sweep] {name} seed {s}: job {job} ({run})")
        out(f"[sweep] submitted {len(todo)} runs; when they finished, re-run this command with --launcher local "
            "to write the table")
        return None
    # local
    from irlvla_jax import workdir as workdir_lib
    runner = runner or _subprocess_runner
    failed = []
    with workdir_lib.hold(workdir, "sweep"):
        if todo:
            log = os.path.join(workdir, "generate.log")
            out(f"[sweep] generate {data_dir} (log: {log})")
            if runner(plan.generate(LOCAL_PROGRAM), log) != 0:
                raise UserError(f"sweep: generate failed; see {log}: {_tail(log, 1).strip()}")
        for i, (name, ov, s, run) in enumerate(todo):
            log = os.path.join(run, "pipeline.log")
            out(f"[sweep] {i + 1}/{len(todo)} {name} seed {s}: running (log: {log})")
            rc = runner(plan.pipeline(ov, s, run, LOCAL_PROGRAM), log)
            if rc != 0 or not finished(run):
                failed.append((name, s, log))
                out(f"[sweep] {name} seed {s}: failed (exit code {rc}); last lines of {log}:\n{_tail(log)}")
        ev = config.evaluate
        summary = summarize(workdir, all_cells, seeds, base_name, policy, n_boot=int(ev.bootstrap),
                            boot_seed=int(ev.seed))
        out(write_table(summary, workdir))
        out(f"[sweep] wrote {os.path.join(workdir, 'sweep.md')}, sweep.json, sweep.png")
    if failed:
        raise UserError(f"sweep: {len(failed)} of {len(runs)} runs failed (first: {failed[0][0]} seed "
                        f"{failed[0][1]}, log {failed[0][2]}); re-run the same command to resume")
    return summary


def main(config, workdir: str, args) -> Optional[Dict[str, Any]]:
    """``irlvla sweep`` (see the module docstring). ``args``: the CLI's flags (grid, seeds, baseline,
    launcher, policies); optional ``config_path`` / ``overrides`` replace the command line's."""
    config_path = getattr(args, "config_path", None)
    overrides = getattr(args, "overrides", None)
    if config_path is None:
        from absl import flags
        from ml_collections import config_flags
        config_path = config_flags.get_config_filename(flags.FLAGS["config"])
    if overrides is None:
        overrides = argv_overrides(sys.argv)     # what ml_collections itself reads the overrides from
    path, sep, variant = str(config_path).partition(":")
    config_path = os.path.abspath(path) + sep + variant
    grid = parse_grid(getattr(args, "grid", None))
    seeds = parse_seeds(getattr(args, "seeds", None), int(config.seed))
    return sweep(config, workdir, config_path=config_path, grid=grid, seeds=seeds, overrides=overrides,
                 baseline=getattr(args, "baseline", None), launcher=getattr(args, "launcher", None) or "local",
                 policy=getattr(args, "policies", None) or DEFAULT_POLICY, runner=getattr(args, "runner", None),
                 submit=getattr(args, "submit", None))
