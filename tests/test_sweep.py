"""`irlvla sweep` (irlvla_jax/sweep.py): grid expansion, workdirs, resume, the table's numbers, the launchers,
one-line errors. The pipeline is a fake runner writing results files with known per-scene EPDMS."""
import json
import os
import shlex

import numpy as np
import pytest

from irlvla_jax import sweep
from irlvla_jax.errors import UserError
from irlvla_jax.evaluate import COLUMNS, paired_difference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.py")
T975_2 = 4.302652729911275          # t_{0.975} with 2 degrees of freedom (3 seeds)
SCENES = np.linspace(0.5, 0.9, 7)   # the fake pipeline's per-scene EPDMS of the first cell, seed 0
BUMP = {"rwm": 0.0, "scorer": 0.1}


def fake_scores(reward, seed):
    noise = 0.02 * np.sin(np.arange(SCENES.size) + 3 * seed) if reward == "scorer" else 0.0
    return SCENES + BUMP[reward] + 0.01 * seed + noise


def fake_runner(calls, fail=()):
    """An `irlvla pipeline` that writes results.json (no per-scene values, as the pipeline) and the
    stages/evaluate.json marker (with them) from its --config overrides."""
    def run(argv, log):
        calls.append(list(argv))
        if "generate" in argv:
            return 0
        wd = argv[argv.index("--workdir") + 1]
        ov = dict(a[len("--config."):].split("=", 1) for a in argv if a.startswith("--config."))
        seed = int(ov["seed"])
        if (ov["ppo.reward"], seed) in fail:
            return 1
        per_scene = fake_scores(ov["ppo.reward"], seed)
        row = {c: float(per_scene.mean()) if c == "EPDMS" else 0.9 - 0.01 * seed for c in COLUMNS}
        res = dict(seed=seed, split="test", scenes=SCENES.size, table={"ppo_rwm": row, "il": row})
        os.makedirs(os.path.join(wd, "stages"), exist_ok=True)
        with open(os.path.join(wd, "results.json"), "w") as f:
            json.dump([res], f)
        with open(os.path.join(wd, "stages", "evaluate.json"), "w") as f:
            json.dump(dict(res, per_scene_epdms={"ppo_rwm": per_scene.tolist(), "il": per_scene.tolist()}), f)
        return 0
    return run


@pytest.fixture(scope="module")
def config():
    return sweep.parse_config(TINY, [])


def run_sweep(config, wd, calls, **kw):
    kw.setdefault("grid", sweep.parse_grid(["ppo.reward=rwm,scorer"]))
    kw.setdefault("seeds", [0, 1, 2])
    return sweep.sweep(config, str(wd), config_path=TINY, runner=kw.pop("runner", fake_runner(calls)),
                       out=lambda s: None, **kw)


def test_grid_is_cartesian_product_with_distinct_workdirs():
    grid = sweep.parse_grid(["ppo.reward=rwm,scorer", "--config.ppo.bc_weight=0.0,0.1,0.5"])
    assert grid == [("ppo.reward", ["rwm", "scorer"]), ("ppo.bc_weight", ["0.0", "0.1", "0.5"])]
    cells = sweep.cells(grid)
    assert len(cells) == 6
    assert cells[0] == ("ppo.reward=rwm,ppo.bc_weight=0.0", {"ppo.reward": "rwm", "ppo.bc_weight": "0.0"})
    assert cells[-1][0] == "ppo.reward=scorer,ppo.bc_weight=0.5"
    dirs = {sweep.run_dir("/w", n, s) for n, _ in cells for s in (0, 1)}
    assert len(dirs) == 12 and "/w/ppo.reward=rwm,ppo.bc_weight=0.0/seed_1" in dirs
    assert sweep.cells([]) == [("default", {})]


@pytest.mark.parametrize("item,message", [
    ("ppo.bc_weight", "expected KEY=V1,V2"), ("ppo.bc_weight=", "non-empty values"),
    ("ppo.bc_weight=0.1,,0.2", "non-empty values"), ("=1,2", "expected KEY"), ("ppo.x=a/b", "workdir name"),
    ("seed=0,1", "use --seeds"), ("data.num_train=10,20", "share one dataset"), ("ppo.lr=1,1", "repeated")])
def test_bad_grid_item_is_a_clear_error(item, message):
    with pytest.raises(UserError, match=message):
        sweep.parse_grid([item])
    with pytest.raises(UserError, match="twice"):
        sweep.parse_grid(["ppo.lr=1", "ppo.lr=2"])


def test_baseline_cell():
    grid = sweep.parse_grid(["ppo.reward=rwm,scorer", "ppo.objective=denoise,choice"])
    cells = sweep.cells(grid)
    assert sweep.baseline_cell(None, grid, cells) == "ppo.reward=rwm,ppo.objective=denoise"
    assert sweep.baseline_cell("ppo.objective=choice,ppo.reward=scorer", grid, cells) == \
        "ppo.reward=scorer,ppo.objective=choice"
    with pytest.raises(UserError, match="names 2 cells"):
        sweep.baseline_cell("ppo.reward=rwm", grid, cells)
    with pytest.raises(UserError, match="names no cell"):
        sweep.baseline_cell("ppo.reward=nope,ppo.objective=choice", grid, cells)
    with pytest.raises(UserError, match="not a --grid key"):
        sweep.baseline_cell("ppo.lr=1", grid, cells)


def test_local_sweep_table_numbers_png_and_resume(config, tmp_path):
    calls = []
    summary = run_sweep(config, tmp_path, calls)
    # generate once, then a pipeline per cell x seed in its own workdir on the shared dataset
    assert "generate" in calls[0] and len(calls) == 7
    for argv in calls:
        assert f"--config.data.data_dir={tmp_path}/data" in argv
        assert f"--config.data.world_seed={config.seed}" in argv
    runs = [(c[c.index("--workdir") + 1], [a for a in c if a.startswith(("--config.seed", "--config.ppo"))])
            for c in calls[1:]]
    assert runs[0] == (f"{tmp_path}/ppo.reward=rwm/seed_0", ["--config.ppo.reward=rwm", "--config.seed=0"])
    assert runs[5] == (f"{tmp_path}/ppo.reward=scorer/seed_2", ["--config.ppo.reward=scorer", "--config.seed=2"])
    # the table: mean over seeds, t-interval over seeds, paired difference per scene and seed
    on_disk = json.load(open(tmp_path / "sweep.json"))
    assert on_disk["baseline"] == "ppo.reward=rwm" and on_disk["policy"] == "ppo_rwm"
    rwm, scorer = on_disk["cells"]
    ep = rwm["scores"]["EPDMS"]
    assert ep["mean"] == pytest.approx(SCENES.mean() + 0.01)
    half = T975_2 * 0.01 / np.sqrt(3)
    assert (ep["lo"], ep["hi"]) == pytest.approx((SCENES.mean() + 0.01 - half, SCENES.mean() + 0.01 + half))
    assert rwm["scores"]["EC"]["mean"] == pytest.approx(0.89) and rwm["seeds"] == [0, 1, 2]
    assert rwm["difference"] is None
    a = np.concatenate([fake_scores("scorer", s) for s in range(3)])
    b = np.concatenate([fake_scores("rwm", s) for s in range(3)])
    d = scorer["difference"]
    ref = paired_difference(a, b, n_boot=int(config.evaluate.bootstrap), seed=int(config.evaluate.seed))
    assert d["mean"] == pytest.approx((a - b).mean()) and d["n"] == 21
    assert (d["lo"], d["hi"]) == pytest.approx((ref["lo"], ref["hi"])) and d["lo"] < d["mean"] < d["hi"]
    per_seed = [(fake_scores("scorer", s) - fake_scores("rwm", s)).mean() for s in range(3)]
    h = T975_2 * np.std(per_seed, ddof=1) / np.sqrt(3)
    assert (d["t_lo"], d["t_hi"]) == pytest.approx((np.mean(per_seed) - h, np.mean(per_seed) + h))
    assert summary["cells"][1]["difference"]["mean"] == pytest.approx(d["mean"])
    md = (tmp_path / "sweep.md").read_text()
    assert "| ppo.reward=scorer | 0,1,2 |" in md and f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" in md
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    # resume: finished runs are skipped; an unfinished one (no results.json) runs again, alone
    calls.clear()
    run_sweep(config, tmp_path, calls)
    assert calls == []
    os.remove(tmp_path / "ppo.reward=scorer" / "seed_1" / "results.json")
    run_sweep(config, tmp_path, calls)
    assert len(calls) == 2 and calls[1][calls[1].index("--workdir") + 1].endswith("ppo.reward=scorer/seed_1")
    # another baseline and another row
    s2 = run_sweep(config, tmp_path, [], baseline="ppo.reward=scorer", policy="il")
    assert s2["baseline"] == "ppo.reward=scorer"
    assert s2["cells"][0]["difference"]["mean"] == pytest.approx(-d["mean"])


def test_failed_run_is_reported_and_left_out_of_the_table(config, tmp_path):
    calls = []
    with pytest.raises(UserError, match="1 of 6 runs failed"):
        run_sweep(config, tmp_path, calls, runner=fake_runner(calls, fail={("scorer", 2)}))
    cells = json.load(open(tmp_path / "sweep.json"))["cells"]
    assert cells[1]["seeds"] == [0, 1] and cells[1]["missing_seeds"] == [2]
    assert cells[1]["difference"]["n"] == 14


def test_bad_cell_value_is_refused_before_anything_runs(config, tmp_path):
    calls = []
    with pytest.raises(UserError, match="--config.il.steps: bad value"):
        run_sweep(config, tmp_path, calls, grid=sweep.parse_grid(["il.steps=10,abc"]))
    assert calls == []


def test_slurm_writes_a_script_per_run_after_generate(config, tmp_path):
    jobs = []

    def submit(argv):
        jobs.append(argv)
        return str(100 + len(jobs))
    run_sweep(config, tmp_path, [], seeds=[0, 1], launcher="slurm", submit=submit)
    assert len(jobs) == 5 and jobs[0][-1].endswith("slurm/generate.sbatch")
    assert all("--dependency=afterok:101" in j for j in jobs[1:])
    script = (tmp_path / "ppo.reward=scorer" / "seed_1" / "pipeline.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in script and "srun " in script
    assert "irlvla pipeline --config" in script and "--config.ppo.reward=scorer --config.seed=1" in script


ERROR_CASES = [
    (["--grid", "ppo.reward"], r"--grid 'ppo.reward': expected KEY=V1,V2"),
    (["--grid", "ppo.reward=rwm,scorer", "--baseline", "ppo.reward=nope"], r"--baseline 'ppo.reward=nope' names no cell"),
    (["--grid", "ppo.nope=1,2"], r"--config.ppo.nope: the config has no such key"),
    (["--launcher", "cloud"], r"launcher"),
]


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """``irlvla sweep --launcher print`` of a 2 x 2 grid x 3 seeds, then each error case (command lines forked by
    tests/cli_runner.py) -> (workdir, [(exit code, stdout, stderr)])."""
    from tests.cli_runner import run_commands
    d = tmp_path_factory.mktemp("sweep_print")
    sweep = ["sweep", "--config", TINY, "--workdir", str(d), "--launcher", "print"]
    grid = ["--grid", "ppo.reward=rwm,scorer", "--grid", "ppo.objective=denoise,choice", "--seeds", "0,1,2",
            "--config.pipeline.eval_scenes=8"]
    return d, run_commands([sweep + grid] + [sweep + args for args, _ in ERROR_CASES])


def test_print_lists_one_command_per_cell_and_seed(printed):
    tmp_path, (p, *_) = printed
    code, stdout, stderr = p
    assert code == 0, stderr[-2000:]
    lines = [shlex.split(ln) for ln in stdout.strip().splitlines()]
    assert lines[0][:2] == ["irlvla", "generate"]
    runs = [ln for ln in lines if ln[:2] == ["irlvla", "pipeline"]]
    assert len(runs) == len(lines) - 1 == 12
    wds = [ln[ln.index("--workdir") + 1] for ln in runs]
    assert len(set(wds)) == 12 and wds[0] == f"{tmp_path}/ppo.reward=rwm,ppo.objective=denoise/seed_0"
    assert all("--config.pipeline.eval_scenes=8" in ln for ln in lines)
    assert not os.path.exists(tmp_path / "ppo.reward=rwm,ppo.objective=denoise")


@pytest.mark.parametrize("i", range(len(ERROR_CASES)), ids=[m for _, m in ERROR_CASES])
def test_cli_errors_are_one_line(printed, i):
    import re
    code, _, stderr = printed[1][1 + i]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("irlvla: error: ") and re.search(ERROR_CASES[i][1], lines[0]), lines


def test_one_seed_has_no_seed_interval(config, tmp_path):
    run_sweep(config, tmp_path, [], seeds=[0])
    cells = json.load(open(tmp_path / "sweep.json"))["cells"]
    assert cells[0]["scores"]["EPDMS"]["lo"] is None and cells[1]["difference"]["t_lo"] is None
    assert cells[1]["difference"]["lo"] < cells[1]["difference"]["hi"]      # the scene bootstrap still is
    assert f"| ppo.reward=rwm | 0 | {SCENES.mean():.3f} |" in (tmp_path / "sweep.md").read_text()
