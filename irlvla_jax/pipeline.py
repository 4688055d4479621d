"""``irlvla pipeline``: generate -> IL -> RWM -> PPO (RWM reward) -> PPO (true-scorer reward) -> evaluate.

    irlvla pipeline --config configs/tiny.py --workdir DIR [--seeds 0,1,2] [--config.key=value ...]

Resumable stage by stage: each finished stage writes ``<run>/stages/<stage>.json`` (its summary) and is
skipped when that marker exists; the training stages also resume from their own latest checkpoint when
killed mid-way. With ``--seeds``, the dataset is generated once in ``DIR`` (seed ``config.seed``) and each
training seed runs in ``DIR/seed_<s>`` (``config.seed = s``; data read from ``DIR/data``).

The evaluation (test split, ``config.pipeline.eval_split``, first ``eval_scenes`` scenes, scorer mode of
``config.scoring``) ends with one table per seed: constant velocity, expert, IL, RL (RWM reward),
RL (true-scorer reward, ablation), best-of-N by the true scorer (all K anchor chains of
``pipeline.best_of_samples`` IL samples, the best one picked with the true score: an upper bound);
EPDMS and the 9 sub-scores each; then RL - IL (EPDMS, per-scene paired) with a bootstrap 95% interval
(``irlvla_jax.evaluate.paired_difference`` when available). With several seeds, a final table of the mean
and std over seeds. Outputs: ``<run>/results.json``, ``<run>/results.md``, ``<run>/pipeline.png``
(training curves + example scenes with candidates coloured by true and by RWM-predicted reward).
"""
from __future__ import annotations

import copy
import json
import os
import time
import types
from typing import Any, Callable, Dict, List

import jax
import numpy as np

from irlvla_jax.scene import index, padded_chunks

SUBS = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC")
POLICIES = ("constant_velocity", "expert", "il", "rwm_pick", "rl_choice", "rl_rwm", "rl_scorer", "best_of_n")
NAMES = {"constant_velocity": "constant velocity", "expert": "expert", "il": "IL",
         "rwm_pick": "IL chains picked by the RWM", "rl_choice": "RL, choice only (RWM reward)",
         "rl_rwm": "RL (RWM reward)", "rl_scorer": "RL (true-scorer reward)"}
STAGES = ("generate", "il", "rwm", "ppo_rwm", "ppo_scorer", "ppo_rwm_choice", "evaluate")


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

def constant_velocity(scenes) -> np.ndarray:
    """[B, 1, 8, 3]: keep the current body-frame velocity (vx, vy) and heading 0."""
    v = np.asarray(scenes.ego_state, np.float32)[:, 3:5]
    t = np.arange(1, 9, dtype=np.float32) * 0.5
    out = np.zeros((v.shape[0], 1, 8, 3), np.float32)
    out[:, 0, :, 0] = v[:, :1] * t
    out[:, 0, :, 1] = v[:, 1:2] * t
    return out


def pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` padded to ``n`` rows by repeating its last row (the per-scene arrays beside padded_chunks)."""
    return np.concatenate([a, np.repeat(a[-1:], n - a.shape[0], 0)])


def _score_all(config, scenes, traj: np.ndarray, chunk: int) -> Dict[str, np.ndarray]:
    """Score trajectories [B, N, 8, 3] in fixed-size chunks (one compile) -> dict of [B, N] arrays."""
    from irlvla_jax.scoring.epdms import make_scorer
    scorer = make_scorer(config.scoring.mode, bool(config.scoring.human_filter))
    outs = []
    for i, b, m in padded_chunks(scenes, chunk):
        s = jax.device_get(scorer(b, pad_rows(traj[i:i + m], chunk)))
        outs.append({k: np.asarray(getattr(s, k))[:m] for k in SUBS + ("EPDMS",)})
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def il_chains(config, workdir, scenes, chunk: int, samples: int, seed: int = 0) -> np.ndarray:
    """All K anchor chains of ``samples`` IL samples per scene (deterministic DDIM, the noise of
    ``jax.random.key(seed + chunk index)``) -> [B, samples * K, 8, 3] metres / radians."""
    from flax import nnx
    from irlvla_jax.train import mesh as mesh_lib
    from irlvla_jax.train.ppo import _restore_il
    gd, params, consts = _restore_il(config, workdir, mesh_lib.make_mesh(1))

    @jax.jit
    def run(scene, rng):
        model = nnx.merge(gd, params, consts)
        _, allx, _ = model.sample(model.encode(scene), rng, samples, return_scores=True)
        return allx.reshape(allx.shape[0], -1, 8, 3)

    return np.concatenate([np.asarray(run(b, jax.random.key(seed + i)))[:m]
                           for i, b, m in padded_chunks(scenes, chunk)]).astype(np.float32)


def pick(cands: np.ndarray, score: np.ndarray) -> np.ndarray:
    """cands [B, N, 8, 3], score [B, N] -> [B, 1, 8, 3] the top-scored candidate of each scene."""
    return np.take_along_axis(cands, np.argmax(score, -1)[:, None, None, None], 1)


def best_of_n(config, workdir, scenes, chunk: int, samples: int, seed: int = 0):
    """Best-of-N by the true scorer over all K chains of ``samples`` IL samples -> (traj [B,1,8,3], N)."""
    cands = il_chains(config, workdir, scenes, chunk, samples, seed)
    return pick(cands, _score_all(config, scenes, cands, chunk)["EPDMS"]), cands.shape[1]


def rwm_pick(config, workdir, scenes, chunk: int, seed: int = 0) -> np.ndarray:
    """The IL planner's K anchor chains (one sample), the one with the highest RWM reward executed:
    what the RWM knows without RL -> [B, 1, 8, 3]."""
    from flax import nnx
    from irlvla_jax.models import reward_model as R
    from irlvla_jax.train import mesh as mesh_lib
    from irlvla_jax.train.ppo import _restore_il
    from irlvla_jax.train.reward import load_rwm
    cands = il_chains(config, workdir, scenes, chunk, 1, seed)
    gd, params, consts = _restore_il(config, workdir, mesh_lib.make_mesh(1))
    rgd, rparams = load_rwm(config, workdir)
    use_ec = bool(config.rwm.use_ec)

    @jax.jit
    def reward(scene, traj):
        tok = nnx.merge(gd, params, consts).encode(scene)
        return R.predicted_reward(nnx.merge(rgd, rparams)(tok, traj, scenes=scene), use_ec)

    r = np.concatenate([np.asarray(reward(b, pad_rows(cands[i:i + m], chunk)))[:m]
                        for i, b, m in padded_chunks(scenes, chunk)])
    return pick(cands, r)


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0):
    """Paired mean difference a - b with a bootstrap 95% interval: (mean, lo, hi)."""
    from irlvla_jax.evaluate import paired_difference
    r = paired_difference(a, b, n_boot=n_boot, seed=seed)
    return r["mean"], r["lo"], r["hi"]


def format_table(rows: Dict[str, Dict[str, float]], title: str) -> str:
    cols = ("EPDMS",) + SUBS
    lines = [f"### {title}", "", "| policy | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[c]:.3f}" if c in r else "-" for c in cols) + " |")
    return "\n".join(lines)


def evaluate_run(config, workdir: str, seed: int) -> Dict[str, Any]:
    """The table of ``pipeline.eval_split`` (first ``eval_scenes`` scenes), plus the same table for each
    of ``pipeline.extra_splits`` (all their scenes, up to ``eval_scenes``) under ``"other_splits"``."""
    pc = config.pipeline
    res = evaluate_split(config, workdir, seed, str(pc.eval_split))
    extra = [str(x) for x in pc.get("extra_splits", ()) if str(x) != str(pc.eval_split)]
    res["other_splits"] = [evaluate_split(config, workdir, seed, x) for x in extra]
    return res


def evaluate_split(config, workdir: str, seed: int, split: str) -> Dict[str, Any]:
    from irlvla_jax.data import loader as L
    from irlvla_jax.train import imitation, ppo
    pc = config.pipeline
    scenes = L.load_split(config, split, data_dir=L.data_dir(config, workdir), limit=int(pc.eval_scenes))
    chunk = int(pc.eval_chunk)
    trajs = {"constant_velocity": constant_velocity(scenes),
             "expert": np.asarray(scenes.expert_future, np.float32)[:, None],
             "il": imitation.load_policy(config, workdir, seed=seed, chunk=chunk)(scenes)}
    trajs["rwm_pick"] = rwm_pick(config, workdir, scenes, chunk, seed)
    trajs["rl_choice"] = ppo.load_policy(choice_config(config), workdir, "rwm", seed=seed, chunk=chunk)(scenes)
    for r in ("rwm", "scorer"):
        trajs[f"rl_{r}"] = ppo.load_policy(config, workdir, r, seed=seed, chunk=chunk)(scenes)
    trajs["best_of_n"], n_cand = best_of_n(config, workdir, scenes, chunk, int(pc.best_of_samples), seed)
    per_scene = {k: _score_all(config, scenes, v, chunk) for k, v in trajs.items()}
    rows = {k: {c: float(np.mean(v[c][:, 0])) for c in ("EPDMS",) + SUBS} for k, v in per_scene.items()}
    il = per_scene["il"]["EPDMS"][:, 0]
    diffs = {}
    for k in ("rwm_pick", "rl_choice", "rl_rwm", "rl_scorer", "best_of_n"):
        m, lo, hi = bootstrap_diff(per_scene[k]["EPDMS"][:, 0], il)
        diffs[f"{k} - il"] = dict(mean=m, lo=lo, hi=hi)
    m, lo, hi = bootstrap_diff(per_scene["rl_rwm"]["EPDMS"][:, 0], per_scene["rl_choice"]["EPDMS"][:, 0])
    diffs["rl_rwm - rl_choice"] = dict(mean=m, lo=lo, hi=hi)
    m, lo, hi = bootstrap_diff(il, per_scene["constant_velocity"]["EPDMS"][:, 0])
    diffs["il - constant_velocity"] = dict(mean=m, lo=lo, hi=hi)
    from irlvla_jax.train.ppo import rwm_report_on_policy
    rwm_rep = rwm_report_on_policy(config, workdir, index(scenes, slice(0, min(int(pc.rwm_report_scenes),
                                                                               int(il.shape[0])))), seed=seed)
    return dict(seed=seed, split=split, scenes=int(il.shape[0]), scoring_mode=str(config.scoring.mode),
                best_of_n_candidates=int(n_cand), table=rows, differences=diffs, rwm_on_policy=rwm_rep,
                per_scene_epdms={k: v["EPDMS"][:, 0].tolist() for k, v in per_scene.items()})


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


def make_figure(config, workdir: str, path: str, n_scenes: int = 2) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from flax import nnx
    from irlvla_jax.data import loader as L
    from irlvla_jax.models import reward_model as R
    from irlvla_jax.train import mesh as mesh_lib
    from irlvla_jax.train.ppo import _restore_il
    from irlvla_jax.train.reward import load_rwm, make_candidates, ppo_noise_of
    from irlvla_jax.models import planner as planner_lib
    from irlvla_jax.viz import render_scene

    fig = plt.figure(figsize=(16, 4 + 4.2 * n_scenes))
    gs = fig.add_gridspec(1 + n_scenes, 4, height_ratios=[1] + [1.4] * n_scenes)
    axes = [fig.add_subplot(gs[0, i]) for i in range(4)]
    plot_curves(workdir, axes)
    # Example scenes: candidates coloured by true EPDMS (left) and by the RWM reward (right).
    scenes = L.load_split(config, str(config.pipeline.eval_split), data_dir=L.data_dir(config, workdir),
                          limit=max(n_scenes, 1) * 4)
    sel = index(scenes, slice(0, n_scenes))
    gd, params, consts = _restore_il(config, workdir, mesh_lib.make_mesh(1))
    rgd, rparams = load_rwm(config, workdir)
    from irlvla_jax.scoring.epdms import score
    sched = planner_lib.make_schedule(config.model.planner)

    @jax.jit
    def run(scene, rng):
        model = nnx.merge(gd, params, consts)
        tok = model.encode(scene)
        c, _ = make_candidates(model, tok, scene, rng, config.rwm, sched, ppo_noise_of(config))
        s = score(scene, c, mode=config.scoring.mode, human_filter=bool(config.scoring.human_filter))
        pred = R.predicted_reward(nnx.merge(rgd, rparams)(tok, c, scenes=scene), bool(config.rwm.use_ec))
        return c, s.EPDMS, pred

    cands, true, pred = jax.device_get(run(sel, jax.random.PRNGKey(0)))
    tmpdir = os.path.join(os.path.dirname(path), "figure_parts")
    os.makedirs(tmpdir, exist_ok=True)
    for i in range(n_scenes):
        one = index(sel, i)
        sub = np.linspace(0, cands.shape[1] - 1, min(24, cands.shape[1])).astype(int)
        for j, (vals, name) in enumerate(((true, "true EPDMS"), (pred, "RWM reward"))):
            p = render_scene(one, os.path.join(tmpdir, f"scene{i}_{j}.png"), trajectories=cands[i, sub],
                             scores=np.clip(vals[i, sub], 0, 1), title=f"scene {int(one.scene_id)}: {name}",
                             bev_range=tuple(config.scene.bev_range), sensors=False, dpi=90)
            ax = fig.add_subplot(gs[1 + i, 2 * j:2 * j + 2])
            ax.imshow(plt.imread(p))
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------

def choice_config(config):
    """The re-ranking ablation's config: ``ppo.objective = "choice"`` with the ``pipeline.choice_only_*``
    settings (the mode head alone takes a far larger learning rate and more, cheaper updates)."""
    config = copy.deepcopy(config)
    pc = config.pipeline
    with config.unlocked():
        config.ppo.objective = "choice"
        config.ppo.lr = float(pc.choice_only_lr)
        config.ppo.updates = int(pc.choice_only_updates)
        config.ppo.samples_per_scene = int(pc.choice_only_samples)
        config.ppo.log_true_score = False
    return config


def run_one(config, workdir: str, seed: int, data_dir: str) -> Dict[str, Any]:
    """IL -> RWM -> PPO (RWM) -> PPO (scorer) -> evaluate for one training seed (data already there)."""
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
    _stage(workdir, "ppo_rwm", lambda: ppo.train(config, workdir, reward="rwm"))
    n_scorer = int((config.get("pipeline") or {}).get("scorer_updates", 0)) or None   # None: ppo.updates
    _stage(workdir, "ppo_scorer", lambda: ppo.train(config, workdir, reward="scorer", num_updates=n_scorer))
    _stage(workdir, "ppo_rwm_choice", lambda: ppo.train(choice_config(config), workdir, reward="rwm"))

    def ev():
        res = evaluate_run(config, workdir, seed)
        try:
            res["figure"] = make_figure(config, workdir, os.path.join(workdir, "pipeline.png"))
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
            v = np.array([r["table"][k]["EPDMS"] for r in results])
            lines.append(f"| {k} | {v.mean():.3f} +- {v.std():.3f} |")
        d = np.array([r["differences"]["rl_rwm - il"]["mean"] for r in results])
        lines.append(f"\nRL (RWM) - IL EPDMS over seeds: {d.mean():+.4f} +- {d.std():.4f}")
        for r0 in results:
            for r in [r0] + list(r0.get("other_splits", ())):
                d = r["differences"]["rl_rwm - il"]
                lines.append(f"- seed {r['seed']}, {r['split']}: RL (RWM) - IL {d['mean']:+.4f} "
                             f"[{d['lo']:+.4f}, {d['hi']:+.4f}]" + ("  (excludes 0)" if d["lo"] > 0 or d["hi"] < 0 else ""))
                d = r["differences"].get("rl_rwm - rl_choice")
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
    _stage(workdir, "generate", lambda: data_commands.generate(config, workdir, types.SimpleNamespace(rest=[])))
    if len(seeds) == 1 and not seeds_arg:
        return [run_one(config, workdir, seeds[0], data_dir)]
    results = [run_one(config, os.path.join(workdir, f"seed_{s}"), s, data_dir) for s in seeds]
    reward_vs_true_figure({f"seed {s}": os.path.join(workdir, f"seed_{s}") for s in seeds},
                          os.path.join(workdir, "reward_vs_true.png"))
    _write_results(workdir, results)
    return results
