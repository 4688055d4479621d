"""Zero-shot evaluation on real logs: convert the shared Argoverse 2, nuScenes and Waymo logs
(``../shared/real_data``), score the constant-velocity baseline, the logged human and the IL / RL
policies of a run trained on the embedded world, check the human's NC / DAC / DDC, and render scenes.

    python benchmarks/real_data.py --run RUN_WORKDIR [--workdir DIR] [--stride 5] [--renders 3]
                                   [--policies il,ppo_rwm] [--out docs/real_data.md]

``RUN_WORKDIR`` holds the trained run's ``checkpoints/`` (tiny); ``DIR`` (default ``/tmp/irlvla_real``)
receives the converted datasets (``irlvla convert``), the evaluation JSON and the renders. The config is
``configs/default.py:tiny_real`` (tiny's model and sensors; room for 64 agents / 64 lanes). Writes the
markdown table to ``--out``. Renders stay in ``DIR/render_real/``: they are images of the logs (non-
commercial data) and are never committed; the table holds only aggregate scores.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
REAL = os.path.join(os.path.dirname(ROOT), "shared", "real_data")
SOURCES = (("av2", "av2", "av2"), ("nuscenes", "scenarionet", "scenarionet/nuscenes"),
           ("waymo", "scenarionet", "scenarionet/waymo"))
CONFIG = "configs/default.py:tiny_real"
SANITY = ("NC", "DAC", "DDC")


def convert(workdir: str, name: str, adapter: str, src: str, stride: int) -> dict:
    cmd = [sys.executable, "-m", "irlvla_jax.cli", "convert", adapter, src, "--config", CONFIG, "--workdir", workdir,
           "--name", name, "--stride", str(stride)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"convert {name} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    per_log = [ln for ln in lines if "windows written" in ln or "FAILED" in ln]
    return {"totals": json.loads(lines[-1]), "logs": per_log}


def fmt(r: dict) -> str:
    return f"{r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, help="workdir of a tiny run with checkpoints/ (il, ppo_rwm)")
    ap.add_argument("--workdir", default="/tmp/irlvla_real")
    ap.add_argument("--stride", type=int, default=5, help="window stride in 0.1 s steps")
    ap.add_argument("--renders", type=int, default=3, help="renders per source (beside every exception)")
    ap.add_argument("--policies", default="il,ppo_rwm")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "real_data.md"))
    ap.add_argument("--run-description", default="", help="how the run was trained (printed in the report)")
    a = ap.parse_args()
    if not os.path.isdir(REAL):
        raise SystemExit(f"no real logs at {REAL}")
    os.makedirs(a.workdir, exist_ok=True)
    ck = os.path.join(a.workdir, "checkpoints")
    if not os.path.exists(ck):
        os.symlink(os.path.abspath(os.path.join(a.run, "checkpoints")), ck)

    from irlvla_jax import evaluate as E
    from irlvla_jax import scene as S
    from irlvla_jax import viz
    from irlvla_jax.config import load_config
    from irlvla_jax.data import loader as L
    config = load_config(os.path.join(ROOT, CONFIG))
    config.evaluate.max_scenes = 0
    t_start = time.time()
    loaded = E.load_stage_policies(config, a.workdir, a.policies)
    names = ["constant_velocity", "expert"] + [n for n in loaded if n not in ("constant_velocity", "expert")]
    rows, sanity, conv, exceptions = [], [], {}, []
    render_dir = os.path.join(a.workdir, "render_real")
    for source, adapter, sub in SOURCES:
        name = f"real_{source}"
        conv[source] = convert(a.workdir, name, adapter, os.path.join(REAL, sub), a.stride)
        cfg = config.copy_and_resolve_references()
        cfg.data.name = name
        meta = L.open_dataset(cfg, L.data_dir(cfg, a.workdir))
        scenes = L.load_split(cfg, "real", data_dir=L.data_dir(cfg, a.workdir))
        res = E.evaluate_splits(cfg, a.workdir, names, scenes_by_split={"real": scenes}, keep_per_scene=True)
        r = res["splits"]["real"]
        allg = r["groups"]["all"]
        for p in names:
            rows.append((source, p, allg[p]))
        per = r["per_scene"]
        ok = {m: np.asarray(per["expert"][m]) >= 1.0 for m in SANITY}
        both = ok["NC"] & ok["DAC"] & ok["DDC"]
        sanity.append((source, len(both), {m: float(ok[m].mean()) for m in SANITY}, float(both.mean())))
        tokens = meta.get("tokens", {})
        ids = np.asarray(scenes.scene_id)
        pols = {p: E.policies()[p] for p in names}
        os.makedirs(render_dir, exist_ok=True)
        E.render_examples(scenes, pols, per, source, os.path.join(render_dir, source), a.renders)
        for i in np.nonzero(~both)[0]:
            bad = [f"{m} {float(per['expert'][m][i]):.2f}" for m in SANITY if not ok[m][i]]
            tok = tokens.get(str(int(ids[i])), str(int(ids[i])))
            path = os.path.join(render_dir, "exceptions", f"{source}_{int(ids[i])}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            sc = S.index(scenes, int(i))
            viz.render_scene(sc, path, trajectories=np.asarray(sc.expert_future)[None], labels=["logged human"],
                             title=f"{source} {tok}: human {', '.join(bad)}")
            exceptions.append((source, tok, ", ".join(bad), path))
    seconds = time.time() - t_start

    cols = ("NC", "DAC", "DDC", "TLC", "EP", "TTC", "LK", "HC", "EC")
    lines = ["# Zero-shot evaluation on real logs", "",
             "Policies trained only on the embedded world (tiny), run unchanged on real logs converted by",
             "`irlvla convert` (Argoverse 2 sensor logs; nuScenes-mini and Waymo Open Motion scenarios in",
             "ScenarioNet's format). **The sensors are simulated**: the world's camera / LiDAR / BEV renderers",
             "fed with each window's real map and boxes, not the logs' cameras. Scored by the JAX EPDMS scorer",
             "(tracked mode, NAVSIM v2.2 rules) against each log's own map and agents. 95% bootstrap intervals.",
             "", f"Reproduce: `python benchmarks/real_data.py --run {a.run} --stride {a.stride}` "
             f"(config `{CONFIG}`; {seconds / 60:.1f} min on a 2-core CPU machine). Renders are written to "
             "`<workdir>/render_real/` and not committed: they are images of non-commercial data.", "",
             f"Policies: the run `{a.run}`" + (f" ({a.run_description})" if a.run_description else "") + ".", "",
             "Reading the table: windows start every 0.5 s and overlap (a log of 16 s gives ~20 windows), so",
             "windows of one log are not independent and the intervals (resampling windows) are optimistic; the",
             "logs are few (3 AV2, 8 nuScenes, 3 Waymo). Real streets differ from the world in ways the tiny",
             "policies never saw (speed limits unknown on AV2 and assumed 40 km/h, pedestrians everywhere,",
             "dense parked cars), and their camera / LiDAR are renders of boxes and polygons, not real images.",
             "", "## Conversion", "", "| source | logs | failed | windows | written | rejected |", "|---|---|---|---|---|---|"]
    for source, c in conv.items():
        t = c["totals"]
        lines.append(f"| {source} | {t['logs']} | {t['logs_failed']} | {t['windows']} | {t['written']} "
                     f"| {t['rejected']} |")
    lines += ["", "Per log (what was cut is counted over the log's windows):", "", "```"]
    for source, c in conv.items():
        lines += [f"{source}: {ln}" for ln in c["logs"]]
    lines += ["```", "", "## The logged human's NC, DAC and DDC", "",
              "| source | windows | NC = 1 | DAC = 1 | DDC = 1 | all three = 1 |", "|---|---|---|---|---|---|"]
    for source, n, frac, allf in sanity:
        lines.append(f"| {source} | {n} | {frac['NC']:.1%} | {frac['DAC']:.1%} | {frac['DDC']:.1%} "
                     f"| {allf:.1%} |")
    tot = sum(n for _, n, _, _ in sanity)
    good = sum(round(allf * n) for _, n, _, allf in sanity)
    lines += ["", f"Over all sources: {good} of {tot} windows ({good / max(tot, 1):.1%}) have NC = DAC = DDC = 1.", ""]
    if exceptions:
        lines += ["Exceptions (rendered to `render_real/exceptions/`):", "", "| source | window | human scores |",
                  "|---|---|---|"] + [f"| {s} | {t} | {b} |" for s, t, b, _ in exceptions] + [""]
    lines += ["## EPDMS per source", "", "| source | policy | EPDMS | " + " | ".join(cols) + " |",
              "|---|---|---|" + "---|" * len(cols)]
    for source, p, g in rows:
        lines.append(f"| {source} | {p} | {fmt(g['EPDMS'])} | "
                     + " | ".join(f"{g[c]['mean']:.3f}" for c in cols) + " |")
    with open(a.out, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({"out": a.out, "renders": render_dir, "seconds": round(seconds, 1),
                      "exceptions": len(exceptions), "windows": tot}))


if __name__ == "__main__":
    main()
