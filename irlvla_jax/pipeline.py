"""``irlvla pipeline``: generate -> il -> rwm -> ppo_rwm -> ppo_scorer -> ppo_rwm_choice -> evaluate.

    irlvla pipeline --config configs/tiny.py --workdir DIR [--seeds 0,1,2] [--config.key=value ...]

Resumable stage by stage: each finished stage writes ``<run>/stages/<stage>.json`` (its summary) and is
skipped when that marker exists; the training stages also resume from their own latest checkpoint when
killed mid-way. Stage names are run names: the checkpoint folders, TensorBoard runs and table rows carry
the same names (``ppo_rwm``: RL with the RWM reward; ``ppo_scorer``: with the true scorer, ablation;
``ppo_rwm_choice``: re-ranking only, ablation; ``irlvla_jax.train.ppo.run_config`` makes their configs). With
``--seeds``, the dataset is generated once in ``DIR`` (seed ``config.seed``) and each training seed runs
in ``DIR/seed_<s>`` (``config.seed = s``; data read from ``DIR/data``), except the seed of a single-seed run
already finished in ``DIR`` itself, which is that seed's run (and joins the summary when not listed).

The evaluation is ``irlvla_jax.evaluate.evaluate_splits`` (what ``irlvla evaluate`` runs): the table's
policies (:data:`POLICIES`: constant velocity, expert, IL, the IL chains picked by the RWM, the three RL
runs, the RL (RWM) run's chains picked by its RWM, and best-of-N by the true scorer over all K anchor chains of
``pipeline.best_of_samples`` IL samples, an upper reference) are registered with it (:func:`register_policies`) and scored on the first
``pipeline.eval_scenes`` scenes of ``pipeline.eval_split`` (and of ``pipeline.extra_splits``); EPDMS and
the 9 sub-scores each, the paired differences of :data:`DIFFERENCES` with bootstrap 95% intervals, and the
RWM's ranking quality on the RL policy's own samples. With several seeds, a final table of the mean and std
over seeds. Outputs: ``<run>/results.json``, ``<run>/results.md``, ``<run>/pipeline.png`` (training curves
+ example scenes with the RL policy's samples coloured by true EPDMS and by RWM reward), ``<run>/reward_vs_true.png``.
"""
from __future__ import annotations

import copy
import json
import os
import time
import types
from typing import Any, Callable, Dict, List

import numpy as np

from irlvla_jax.scene import index

from irlvla_jax.evaluate import COLUMNS

# The table's rows: built-in baselines, then every trained run by its run name (the checkpoint folder).
POLICIES = ("constant_velocity", "expert", "il", "rwm", "ppo_rwm_choice", "ppo_rwm", "ppo_rwm_pick", "ppo_scorer",
            "best_of_n")
NAMES = {"constant_velocity": "constant velocity", "expert": "expert", "il": "IL",
         "rwm": "IL chains picked by the RWM", "ppo_rwm_choice": "RL, choice only (RWM reward)",
         "ppo_rwm": "RL (RWM reward)", "ppo_rwm_pick": "RL chains picked by the RWM",
         "ppo_scorer": "RL (true-scorer reward)"}
# ppo_rwm_pick - rwm: what RL's moved chains add when both are re-ranked by an RWM.
DIFFERENCES = (("rwm", "il"), ("ppo_rwm_choice", "il"), ("ppo_rwm", "il"), ("ppo_scorer", "il"),
               ("best_of_n", "il"), ("ppo_rwm", "ppo_rwm_choice"), ("ppo_rwm_pick", "il"), ("ppo_rwm_pick", "rwm"),
               ("il", "constant_velocity"))
STAGES = ("generate", "il", "rwm", "ppo_rwm", "ppo_scorer", "ppo_rwm_choice", "evaluate")
# The figure's example scenes: the first FIGURE_SCENES of the RWM report, kept by evaluate_split under
# FIGURE_EXAMPLES (not JSON: removed before the stage's results are written).
FIGURE_SCENES = 2
FIGURE_EXAMPLES = "figure_examples"


def _marker(run: str, stage: str) -> str:
    return os.path.join(run, "stages", f"{stage}.json")


def _stage(run: str, stage: str, fn: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    path = _marker(run, stage)
    if os.path.exists(path):
        with open(path) as f:
            out = json.load(f)
        print(f"pipeline: stage {stage} already done ({path}); skipped")
        return out
    print(f"pipeline: stage {stage} ...", flush=True)
    t0 = time.time()
    from irlvla_jax import workdir as workdir_lib
    if stage in ("generate", "evaluate"):
        out = fn() or {}
    else:
        with workdir_lib.hold(run, stage):       # the same lock `irlvla train` takes for this run
            out = fn() or {}
    out = {k: v for k, v in out.items() if k not in ("state", "history")}
    out["wall_s"] = time.time() - t0
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1, default=_jsonable)
    os.replace(tmp, path)
    print(f"pipeline: stage {stage} done in {out['wall_s']:.0f} s", flush=True)
    return out


def _jsonable(x):
    try:
        return float(x)
    except Exception:  # noqa: BLE001
        return str(x)


# --------------------------------------------------------------------------------------------------
# Policies and scoring.

def best_of_n(config, workdir: str, *, samples: int, seed: int = 0, chunk: int = 32):
    """Best-of-N by the true scorer: all K chains of ``samples`` IL samples per scene, the one with the
    highest true EPDMS executed (an upper reference, not a policy one could deploy) -> PolicyFn."""
    from irlvla_jax.scoring.epdms import make_scorer, score_in_chunks
    from irlvla_jax.train import imitation
    scorer = make_scorer(str(config.scoring.mode), bool(config.scoring.human_filter))

    def fn(scenes) -> np.ndarray:
        cands = imitation.chains(config, workdir, scenes, samples=samples, seed=seed, chunk=chunk)
        score = score_in_chunks(scorer, scenes, cands, chunk)["EPDMS"]
        return np.take_along_axis(cands, np.argmax(score, -1)[:, None, None, None], 1)

    return fn


def register_policies(config, workdir: str, seed: int) -> List[str]:
    """Register the table's policies with ``irlvla_jax.evaluate`` (the run's checkpoints, chunk
    ``pipeline.eval_chunk``, noise seed ``seed``) -> their names in table order."""
    from irlvla_jax import evaluate
    from irlvla_jax.train import imitation, ppo, reward
    pc = config.pipeline
    chunk = int(pc.eval_chunk)
    fns = {"il": imitation.policy(config, workdir, seed=seed, chunk=chunk),
           "rwm": reward.policy(config, workdir, seed=seed, chunk=chunk),
           **{run: ppo.policy(ppo.run_config(config, run), workdir, seed=seed, chunk=chunk)
              for run in evaluate.RL_RUNS},
           **{name: ppo.rwm_pick_policy(ppo.run_config(config, run), workdir, seed=seed, chunk=chunk)
              for name, run in evaluate.PICK_RUNS.items()},
           "best_of_n": best_of_n(config, workdir, samples=int(pc.best_of_samples), seed=seed, chunk=chunk)}
    for name, fn in fns.items():
        evaluate.register_policy(name, fn, overwrite=True)
    return list(POLICIES)


def format_table(rows: Dict[str, Dict[str, float]], title: str) -> str:
    """Markdown table: a row per policy (display names), EPDMS and the nine sub-scores."""
    cols = COLUMNS
    lines = [f"### {title}", "", "| policy | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if c in r else "-" for c in cols) + " |")
    return "\n".join(lines)


def evaluate_run(config, workdir: str, seed: int) -> Dict[str, Any]:
    """The table of ``pipeline.eval_split`` (first ``eval_scenes`` scenes), plus the same table for each
    of ``pipeline.extra_splits`` (all their scenes, up to ``eval_scenes``) under ``"other_splits"``."""
    pc = config.pipeline
    res = evaluate_split(config, workdir, seed, str(pc.eval_split))
    extra = [str(x) for x in pc.extra_splits if str(x) != str(pc.eval_split)]
    res["other_splits"] = [evaluate_split(config, workdir, seed, x) for x in extra]
    for r in res["other_splits"]:
        r.pop(FIGURE_EXAMPLES, None)
    return res


def evaluate_split(config, workdir: str, seed: int, split: str, policies: Dict[str, Callable] | None = None,
                   rwm_report: bool = True) -> Dict[str, Any]:
    """The table of one split: the first ``pipeline.eval_scenes`` scenes, every policy of :data:`POLICIES`
    scored by ``irlvla_jax.evaluate.evaluate_splits`` (the function ``irlvla evaluate`` uses), the paired
    differences of :data:`DIFFERENCES`, and (``rwm_report``) the RWM report on the RL policy's own samples.
    ``policies`` (name -> PolicyFn for every name of :data:`POLICIES`) replaces the run's trained policies
    (:func:`register_policies`)."""
    from irlvla_jax import evaluate
    from irlvla_jax.data import loader as L
    from irlvla_jax.train import ppo
    pc = config.pipeline
    scenes = L.load_split(config, split, data_dir=L.data_dir(config, workdir), limit=int(pc.eval_scenes))
    if policies is None:
        names = register_policies(config, workdir, seed)
    else:
        for name, fn in policies.items():
            evaluate.register_policy(name, fn, overwrite=True)
        names = list(POLICIES)
    res = evaluate.evaluate_splits(config, workdir, names, scenes_by_split={split: scenes}, differences=DIFFERENCES,
                                   keep_per_scene=True, two_frame=False)["splits"][split]   # (not in the table)
    rows = {k: {c: res["groups"]["all"][k][c]["mean"] for c in COLUMNS} for k in names}
    diffs = {k: {q: d[q] for q in ("mean", "lo", "hi")} for k, d in res["differences"].items()}
    n = int(res["num_scenes"])
    out = dict(seed=seed, split=split, scenes=n, scoring_mode=str(config.scoring.mode),
               best_of_n_candidates=int(pc.best_of_samples) * int(config.data.num_anchors), table=rows,
               differences=diffs, rwm_on_policy=None,
               per_scene_epdms={k: v["EPDMS"].tolist() for k, v in res["per_scene"].items()})
    if rwm_report:
        report_scenes = index(scenes, slice(0, min(int(pc.rwm_report_scenes), n)))
        traj, pred, true = ppo.policy_samples(ppo.variant(config, reward="rwm"), workdir, report_scenes, seed=seed)
        out["rwm_on_policy"] = ppo.rwm_report(pred, true)
        k = min(FIGURE_SCENES, len(traj))
        out[FIGURE_EXAMPLES] = (index(report_scenes, slice(0, k)), traj[:k], pred[:k], true[:k])
    return out


# --------------------------------------------------------------------------------------------------
# Figure.

CURVES = ((0, "il", "train/loss", "IL loss"), (1, "rwm", "rwm/loss_total", "RWM loss"),
          (2, "ppo_rwm", "ppo/reward_mean", "RWM reward of the rollouts (PPO, RWM)"),
          (2, "ppo_scorer", "ppo/reward_mean", "true EPDMS of the rollouts (PPO, true scorer)"),
          (3, "ppo_rwm", "ppo/exec_reward", "RWM reward"),
          (3, "ppo_rwm", "ppo/exec_true_epdms", "true EPDMS"))
TITLES = ("IL loss", "RWM loss", "PPO: reward of the sampled (noisy) chains",
          "PPO (RWM reward): executed plans, RWM vs true EPDMS")


def plot_curves(workdir: str, axes) -> None:
    """Training curves (TensorBoard scalars of the run) on 4 axes; the last one is the reward-hacking
    check: the RWM reward and the true EPDMS of the RL policy's executed plans over the PPO updates."""
    from irlvla_jax.train.logging import read_metrics
    for i, stage, key, label in CURVES:
        ax = axes[i]
        rows = [r for r in read_metrics(workdir, stage) if key in r]
        if rows:
            x, y = np.array([r["step"] for r in rows]), np.array([r[key] for r in rows], float)
            if len(y) > 100:   # per-update PPO values are noisy: faint raw curve + a 25-update running mean
                line = ax.plot(x, y, alpha=0.25, lw=0.6)[0]
                k = 25
                ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), color=line.get_color(),
                        label=label + " (mean of 25)")
            else:
                ax.plot(x, y, label=label)
        ax.set_title(TITLES[i], fontsize=9)
        ax.set_xlabel("update" if i >= 2 else "step")
        if i >= 2 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)


def reward_vs_true_figure(workdirs: Dict[str, str], path: str) -> str:
    """One plot of the reward-hacking check for every run: the RWM reward and the true EPDMS of the RL
    (RWM reward) policy's executed plans over the PPO updates (25-update running means)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from irlvla_jax.train.logging import read_metrics
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, wd) in enumerate(workdirs.items()):
        rows = read_metrics(wd, "ppo_rwm")
        for key, style, label in (("ppo/exec_reward", "--", "RWM reward"), ("ppo/exec_true_epdms", "-", "true EPDMS")):
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if len(pts) < 25:
                continue
            x, y = np.array(pts, float).T
            ax.plot(x[24:], np.convolve(y, np.ones(25) / 25, mode="valid"), style, color=f"C{i}",
                    label=f"{name}: {label}")
    ax.set_xlabel("PPO update")
    ax.set_ylabel("executed plans (train scenes, mean of 25 updates)")
    ax.set_title("RL (RWM reward): the reward it optimises vs the true EPDMS", fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def make_figure(config, workdir: str, path: str, examples=None) -> str:
    """The run's figure: training curves (:data:`CURVES`) and, from ``examples`` (scenes, trajectories
    [n, N, 8, 3], RWM reward [n, N], true EPDMS [n, N]: :func:`evaluate_split`'s ``FIGURE_EXAMPLES``, the
    RL policy's own samples of the RWM report), each example scene with its samples coloured by the true
    EPDMS (left) and by the RWM reward (right). Nothing is computed here: no program is compiled for it."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from irlvla_jax.viz import render_scene

    n_scenes = 0 if examples is None else len(examples[1])
    fig = plt.figure(figsize=(16, 4 + 4.2 * n_scenes))
    gs = fig.add_gridspec(1 + n_scenes, 4, height_ratios=[1] + [1.4] * n_scenes)
    axes = [fig.add_subplot(gs[0, i]) for i in range(4)]
    plot_curves(workdir, axes)
    tmpdir = os.path.join(os.path.dirname(path), "figure_parts")
    os.makedirs(tmpdir, exist_ok=True)
    scenes, cands, pred, true = examples if n_scenes else (None,) * 4
    for i in range(n_scenes):
        one = index(scenes, i)
        sub = np.linspace(0, cands.shape[1] - 1, min(24, cands.shape[1])).astype(int)
        for j, (vals, name) in enumerate(((true, "true EPDMS"), (pred, "RWM reward"))):
            p = render_scene(one, os.path.join(tmpdir, f"scene{i}_{j}.png"), trajectories=cands[i, sub],
                             scores=np.clip(vals[i, sub], 0, 1),
                             title=f"scene {int(one.scene_id)}: RL policy's samples, {name}",
                             bev_range=tuple(config.scene.bev_range), sensors=False, dpi=90)
            ax = fig.add_subplot(gs[1 + i, 2 * j:2 * j + 2])
            ax.imshow(plt.imread(p))
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------

def run_one(config, workdir: str, seed: int, data_dir: str) -> Dict[str, Any]:
    """IL -> RWM -> PPO (RWM) -> PPO (scorer) -> evaluate for one training seed (data already there)."""
    from irlvla_jax.evaluate import RL_RUNS
    from irlvla_jax.train import imitation, ppo, reward
    config = copy.deepcopy(config)
    from irlvla_jax.data.tfds_builder import world_seed
    with config.unlocked():
        config.data.world_seed = world_seed(config)   # the shared dataset's seed; the training seed varies
        config.seed = int(seed)
        config.data.data_dir = data_dir
    os.makedirs(workdir, exist_ok=True)

    def il():
        out = imitation.train(config, workdir)
        return {k: v for k, v in out.items() if k != "state"}
    _stage(workdir, "il", il)
    _stage(workdir, "rwm", lambda: reward.train(config, workdir))
    for run in RL_RUNS:
        _stage(workdir, run, lambda run=run: ppo.train(ppo.run_config(config, run), workdir))

    def ev():
        res = evaluate_run(config, workdir, seed)
        examples = res.pop(FIGURE_EXAMPLES, None)
        try:
            res["figure"] = make_figure(config, workdir, os.path.join(workdir, "pipeline.png"), examples)
        except Exception as e:  # noqa: BLE001 - the figure is a by-product; the table is the result
            res["figure_error"] = f"{type(e).__name__}: {e}"
        return res
    res = _stage(workdir, "evaluate", ev)
    reward_vs_true_figure({f"seed {seed}": workdir}, os.path.join(workdir, "reward_vs_true.png"))
    _write_results(workdir, [res])
    return res


def _write_results(run: str, results: List[Dict[str, Any]]) -> str:
    parts = []
    for r0 in results:
        for r in [r0] + list(r0.get("other_splits", ())):
            names = dict(NAMES, best_of_n=f"best-of-{r.get('best_of_n_candidates', 'N')} (true scorer)")
            rows = {names[k]: v for k, v in r["table"].items()}
            parts.append(format_table(rows, f"seed {r['seed']}: {r['split']} split, {r['scenes']} scenes, "
                                            f"{r['scoring_mode']} scoring"))
            for k, d in r["differences"].items():
                parts.append(f"- EPDMS {k}: {d['mean']:+.4f}  [95% bootstrap {d['lo']:+.4f}, {d['hi']:+.4f}]")
            q = r.get("rwm_on_policy")
            if q:
                parts.append(f"- RWM on the RL (RWM) policy's own samples ({q['scenes']} scenes x "
                             f"{q['trajectories_per_scene']}): within-scene Spearman {q['spearman_within_scene']:.3f}, "
                             f"regret {q['regret']:.3f}, mean RWM reward {q['rwm_reward_mean']:.3f} vs true EPDMS "
                             f"{q['true_epdms_mean']:.3f}")
    if len(results) > 1:
        lines = ["### mean +- std over seeds " + ",".join(str(r["seed"]) for r in results), "",
                 "| policy | EPDMS |", "|---|---|"]
        for k in POLICIES:
            if not all(k in r["table"] for r in results):      # a row added after some seed was evaluated
                continue
            v = np.array([r["table"][k]["EPDMS"] for r in results])
            lines.append(f"| {k} | {v.mean():.3f} +- {v.std():.3f} |")
        d = np.array([r["differences"]["ppo_rwm - il"]["mean"] for r in results])
        lines.append(f"\nRL (RWM) - IL EPDMS over seeds: {d.mean():+.4f} +- {d.std():.4f}")
        for r0 in results:
            for r in [r0] + list(r0.get("other_splits", ())):
                d = r["differences"]["ppo_rwm - il"]
                lines.append(f"- seed {r['seed']}, {r['split']}: RL (RWM) - IL {d['mean']:+.4f} "
                             f"[{d['lo']:+.4f}, {d['hi']:+.4f}]" + ("  (excludes 0)" if d["lo"] > 0 or d["hi"] < 0 else ""))
                d = r["differences"].get("ppo_rwm - ppo_rwm_choice")
                if d:
                    lines.append(f"- seed {r['seed']}, {r['split']}: RL (RWM) - RL choice only {d['mean']:+.4f} "
                                 f"[{d['lo']:+.4f}, {d['hi']:+.4f}]" + ("  (excludes 0)" if d["lo"] > 0 or d["hi"] < 0 else ""))
        parts.append("\n".join(lines))
    text = "\n\n".join(parts)
    with open(os.path.join(run, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(run, "results.json"), "w") as f:
        json.dump([{k: v for k, v in r.items() if k != "per_scene_epdms"} for r in results], f, indent=1)
    print(text)
    return text


def main(config, workdir: str, args) -> List[Dict[str, Any]]:
    from irlvla_jax.data import loader as L
    seeds_arg = getattr(args, "seeds", None)
    try:
        seeds = [int(s) for s in str(seeds_arg).split(",") if s.strip()] if seeds_arg else [int(config.seed)]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers, e.g. 0,1,2; got {seeds_arg!r}") from None
    from irlvla_jax.data import commands as data_commands
    os.makedirs(workdir, exist_ok=True)
    data_dir = L.resolve_data_dir(config, workdir)
    # The dataset is generated once (seed config.seed) and shared by every training seed.
    def generate():
        from irlvla_jax import workdir as workdir_lib
        with workdir_lib.hold(data_dir, f"generate-{config.data.name}"):     # as `irlvla generate` does
            return data_commands.generate(config, workdir, types.SimpleNamespace(rest=[]))
    _stage(workdir, "generate", generate)
    if len(seeds) == 1 and not seeds_arg:
        return [run_one(config, workdir, seeds[0], data_dir)]
    # A single-seed run finished in the workdir itself (`pipeline` without --seeds, e.g. the README's main
    # job) is that seed's run: `--seeds 0,1,2` after it trains seeds 1 and 2 only, and `--seeds 1,2` adds
    # it to the summary under its seed (the files rewritten below keep its table).
    own, own_seed = _marker(workdir, "evaluate"), None
    if os.path.exists(own):
        with open(own) as f:
            own_seed = int(json.load(f)["seed"])
    runs = {s: workdir if s == own_seed else os.path.join(workdir, f"seed_{s}") for s in seeds}
    if own_seed is not None and own_seed not in runs:
        runs = {own_seed: workdir, **runs}
    results = [run_one(config, d, s, data_dir) for s, d in runs.items()]
    reward_vs_true_figure({f"seed {s}": d for s, d in runs.items()}, os.path.join(workdir, "reward_vs_true.png"))
    _write_results(workdir, results)
    return results
