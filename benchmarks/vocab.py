"""Vocabulary scoring benchmark (``irlvla score-vocab``): K = 8,192 trajectories on every scene of the tiny
test split, through the real CLI (subprocesses), with a kill -9 / resume check on the way.

    python benchmarks/vocab.py [--workdir DIR] [--scenes 500] [--vocab 8192] [--kill-after 2]

1. ``irlvla generate --config configs/tiny.py --config.data.num_test=SCENES`` in the workdir (skipped when
   the dataset is up to date; ~2 min on 2 cores otherwise). Default workdir:
   ``<tmp>/irlvla_bench_vocab_s<SCENES>`` (kept, so a rerun reuses the dataset and the vocabulary).
2. ``irlvla score-vocab --vocab K --split test`` is started (its scores folder deleted first; the
   vocabulary file is kept unless ``--rebuild-vocab``: building it -- k-means of the train split's 4,000
   expert futures, augmented to 16,384, into 8,192 clusters -- takes minutes and GBs once), and killed
   with SIGKILL as soon as ``--kill-after`` shards are written.
3. The same command is rerun to the end. Checked: the shards written before the kill keep their mtimes
   (not rescored), the rerun scored exactly the other scenes, no temp file is left, every scene reads back.
   The rerun's final JSON line gives the throughput (excluding its first, compiling call), compile time
   (from the workdir's persistent cache) and peak RSS (the rerun loads the vocabulary: scoring only).

Prints one JSON line: scenes, scenes timed, K, trajectories/s, peak RSS, the projected time for navtrain
(~103k scenes x K) on this machine, and the resume check. Only one full pass over the split is scored
(the run killed after a few shards plus the resumed rest).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
NAVTRAIN_SCENES = 103_000


def _cli(workdir, scenes, *args):
    return [sys.executable, "-m", "irlvla_jax.cli", *args, "--config", os.path.join(ROOT, "configs", "tiny.py"),
            "--workdir", workdir, f"--config.data.num_test={scenes}"]


def _last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON line in the output:\n{text[-2000:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--scenes", type=int, default=500, help="scenes of the test split (config.data.num_test)")
    ap.add_argument("--vocab", type=int, default=8192, help="K")
    ap.add_argument("--kill-after", type=int, default=2, help="shards written before the kill -9")
    ap.add_argument("--rebuild-vocab", action="store_true", help="delete vocab_<K>.npy first")
    a = ap.parse_args()
    wd = os.path.abspath(a.workdir or os.path.join(tempfile.gettempdir(), f"irlvla_bench_vocab_s{a.scenes}"))
    os.makedirs(wd, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    t0 = time.perf_counter()
    r = subprocess.run(_cli(wd, a.scenes, "generate"), capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode:
        raise SystemExit(f"generate failed:\n{r.stderr[-3000:]}")
    gen = _last_json(r.stdout)
    print(f"dataset {gen['path']}: {'up to date' if gen['skipped'] else 'generated'} "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    from irlvla_jax.scoring import vocab as V
    out = os.path.join(gen["path"], V.SCORES_DIR.format(split="test", k=a.vocab))
    vfile = os.path.join(gen["path"], V.VOCAB_FILE.format(k=a.vocab))
    shutil.rmtree(out, ignore_errors=True)
    if a.rebuild_vocab and os.path.exists(vfile):
        os.remove(vfile)
    vocab_existed = os.path.exists(vfile)

    # Run 1: killed with SIGKILL once --kill-after shards exist.
    cmd = _cli(wd, a.scenes, "score-vocab", "--vocab", str(a.vocab), "--split", "test")
    log1 = os.path.join(wd, "bench_vocab_run1.log")
    t0 = time.perf_counter()
    with open(log1, "w") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True)
    def shards():
        return sorted(f for f in os.listdir(out) if f.startswith("shard_")) if os.path.isdir(out) else []
    t_first = None
    while p.poll() is None and len(shards()) < a.kill_after:
        if t_first is None and shards():
            t_first = time.perf_counter() - t0
        time.sleep(0.2)
    killed = p.poll() is None
    if killed:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    run1_s = time.perf_counter() - t0
    before = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in shards()}
    meta1 = V.read_meta(out)
    done_scenes = sum(min(meta1["shard_scenes"], meta1["scenes"] - int(f[6:11]) * meta1["shard_scenes"])
                      for f in before)
    temps = [f for f in os.listdir(out) if ".tmp-" in f]
    print(f"run 1: {'killed (SIGKILL)' if killed else 'finished before the kill'} after {run1_s:.0f} s with "
          f"{len(before)} shard(s) = {done_scenes} scenes written, {len(temps)} temp file(s) left", flush=True)

    # Run 2: resume to the end.
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode:
        raise SystemExit(f"score-vocab (resume) failed:\n{r.stderr[-3000:]}")
    s = _last_json(r.stdout)
    run2_s = time.perf_counter() - t0
    kept = all(os.stat(os.path.join(out, f)).st_mtime_ns == m for f, m in before.items())
    scores = V.read_vocab_scores(out, fields=("EPDMS",))
    ok = {"shards_before_kill": len(before), "scenes_before_kill": done_scenes, "killed": killed,
          "finished_shards_untouched": kept, "rescored_scenes": s["scenes_scored"],
          "rescored_only_missing": s["scenes_scored"] == s["scenes"] - done_scenes,
          "temp_files_left": len([f for f in os.listdir(out) if ".tmp-" in f]),
          "all_scenes_read_back": scores["EPDMS"].shape == (s["scenes"], a.vocab)}
    rate = s["trajectories_per_s"]
    nav_s = NAVTRAIN_SCENES * a.vocab / rate if rate else None
    res = {"scenes": s["scenes"], "scenes_timed": s["scenes_scored"], "K": a.vocab,
           "trajectories_per_s": rate, "peak_rss_mb": s["peak_rss_mb"], "compile_s": s["compile_s"],
           "scenes_per_call": s["scenes_per_call"], "traj_per_call": s["traj_per_call"],
           "resume_run_s": round(run2_s, 1), "run1_s_until_kill": round(run1_s, 1),
           "run1_s_until_first_shard": None if t_first is None else round(t_first, 1),
           "vocab_built_in_run1": not vocab_existed,
           "navtrain_projection": {"scenes": NAVTRAIN_SCENES, "K": a.vocab,
                                   "hours": None if nav_s is None else round(nav_s / 3600, 1),
                                   "days": None if nav_s is None else round(nav_s / 86400, 2)},
           "resume_check": ok, "machine_cpus": os.cpu_count(), "workdir": wd}
    print(f"score-vocab K={a.vocab}: {rate} trajectories/s on {s['scenes_scored']} scenes "
          f"(of {s['scenes']}), peak RSS {s['peak_rss_mb']} MB; navtrain ({NAVTRAIN_SCENES} scenes x {a.vocab}) "
          f"on this machine: ~{res['navtrain_projection']['hours']} h")
    print(json.dumps(res))
    if not (kept and ok["rescored_only_missing"] and ok["all_scenes_read_back"] and not ok["temp_files_left"]):
        raise SystemExit("resume check failed: " + json.dumps(ok))


if __name__ == "__main__":
    main()
