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
import os
import shlex
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple


from irlvla_jax.errors import UserError
from irlvla_jax.sweep_table import Cell, finished, run_dir, summarize, write_table

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
