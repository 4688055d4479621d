"""Converted datasets: windows of real driving logs -> a TFDS dataset with one split, ``real``.

    write_converted(spec, data_dir, name, source=..., logs=[path, ...], iter_log=fn, ...) -> metadata

``iter_log(path)`` yields the :class:`irlvla_jax.data.real.Window` s of one log (its Scene, or ``None``
with a one-line ``reason``, and a ``report`` of what was cut). A bad log -- ``iter_log`` raises
:class:`irlvla_jax.data.real.LogError`, or yields the adapters' :func:`irlvla_jax.data.real.failed_log`
window (``t0 = -1``, reason "log failed: ...") -- is counted failed with its message (its windows are
dropped: a log is in whole or not at all) and the conversion goes on with the next one. Sources
(:func:`source_logs`):

* ``navsim``: a folder of NAVSIM ``navsim_logs`` pickles (:func:`navsim_windows`, through
  :func:`irlvla_jax.data.navsim.convert_scene`; a window that does not convert is a rejection with the
  converter's one-line message), map layers from ``--maps`` (:func:`navsim_maps`) or none (empty map);
* ``av2`` / ``scenarionet``: ``irlvla_jax.data.<source>.iter_windows(path, spec, stride=, progress=)``
  called once per log, the logs listed by the module's ``log_dirs(src)`` (av2: log folders) /
  ``scenario_files(src)`` (scenarionet: scenario pickles).

The dataset is the generator's layout (:mod:`irlvla_jax.data.tfds_builder`, the same TFDS builder,
written the same atomic way: a ``.<name>.incomplete-*`` temp folder, the metadata JSON last, then a
rename; an exception or Ctrl-C leaves nothing), read by the same loader (``loader.load_split(config,
"real")`` with ``config.data.name = <name>``). Every written scene is validated against the spec and gets
``split = SPLITS.index("real")``. There is no anchors file: anchors come from the world dataset (a trained
policy carries its own in its checkpoint). Metadata (``irlvla_dataset.json``): ``kind="converted"``,
``source``, ``src``, the SceneSpec, ``sizes={"real": n}``, ``families`` / ``stats``, ``logs`` (per log:
windows, written, rejected by reason with an example message, the summed report of what was cut, the
error of a failed log), ``totals`` and ``tokens`` ({scene_id: window token}: NAVSIM tokens for
``irlvla submit``). Scene ids must be unique over the dataset: duplicates fail the conversion with an
error naming them.
"""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import sys
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data import records
from irlvla_jax.data.real import LogError, Window
from irlvla_jax.data.tfds_builder import (FORMAT_VERSION, WritePlan, split_stats, check_name, dataset_path, publish,
                                          start_write, tfds_dir, write_tfds)
from irlvla_jax.errors import UserError

KIND = "converted"
REAL = "real"
SOURCES = ("navsim", "av2", "scenarionet")
NAVSIM_FRAME_STEPS = 5          # a NAVSIM frame is 0.5 s = 5 steps of 0.1 s


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, KeyError) and e.args:
        text = str(e.args[0])
    return text.splitlines()[0] if text else type(e).__name__


def reason_key(reason: str, token: str = "", log: str = "") -> str:
    """A rejection reason grouped with its kind: the window token / log name and numbers taken out."""
    r = str(reason or "no reason given").strip().splitlines()[0]
    for s, tag in ((token, "<window>"), (log, "<log>")):
        if s:
            r = re.sub(rf"(?<![\w.@-]){re.escape(s)}(?![\w.@-])", tag, r)
    return re.sub(r"(?<![A-Za-z_\d.])-?\d+(\.\d+)?(e-?\d+)?", "#", r)


def merge_report(agg: Dict[str, Any], report: Dict[str, Any]) -> Dict[str, Any]:
    """Add one window's ``report`` into ``agg``: numbers summed (``max_*`` keys: maximum; ``min_*`` and
    ``nearest*`` keys: minimum), booleans counted; anything else is not aggregated."""
    for k, v in (report or {}).items():
        if isinstance(v, (bool, np.bool_)):
            agg[k] = agg.get(k, 0) + int(v)
        elif isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            v = v.item() if isinstance(v, np.generic) else v
            if k.startswith("max_"):
                agg[k] = max(agg.get(k, v), v)
            elif k.startswith("min_") or k.startswith("nearest"):
                agg[k] = min(agg.get(k, v), v)
            else:
                agg[k] = agg.get(k, 0) + v
    return agg


def log_line(s: Dict[str, Any]) -> str:
    """One line per log: name, windows written of read, rejections by reason (or the error of a failed log)."""
    if s["error"]:
        return f"{s['log']}: FAILED ({s['error']})"
    rej = sum(s["rejected"].values())
    line = f"{s['log']}: {s['written']}/{s['windows']} windows written"
    if s.get("duplicates"):
        line += f", {s['duplicates']} with a scene id already taken (an error)"
    if rej:
        line += f", {rej} rejected: " + "; ".join(f"{n} x {k}" for k, n in
                                                  sorted(s["rejected"].items(), key=lambda kv: -kv[1]))
    cut = {k: v for k, v in s["report"].items() if v}
    if cut:
        line += " | cut: " + ", ".join(f"{k} {round(v, 3) if isinstance(v, float) else v}" for k, v in cut.items())
    return line


FAILED_PREFIX = "log failed:"     # the reason of irlvla_jax.data.real.failed_log windows


class _Failed(Exception):
    """A failed-log window of an adapter (the LogError it caught, as text)."""


class _Converter:
    """The state of one conversion: reads logs in order, buffers a log's records, commits it whole."""

    def __init__(self, spec: S.SceneSpec, source: str, logs: Sequence[str], iter_log, on_log, bar):
        self.spec, self.source, self.logs, self.iter_log = spec, source, list(logs), iter_log
        self.on_log, self.bar = on_log, bar
        self.stdout = sys.stdout        # TFDS's writer runs with stdout captured: on_log prints here
        self.tokens: Dict[int, str] = {}
        self.duplicates: List[Tuple[int, str, str]] = []
        self.summaries: List[Dict[str, Any]] = []
        self.written = 0

    def _log(self, path: str):
        stem = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
        s = {"log": stem, "path": path, "windows": 0, "written": 0, "rejected": {}, "examples": {}, "report": {},
             "duplicates": 0, "error": ""}
        buf, local, dups = [], {}, []

        def reject(w: Window, reason: str):
            k = reason_key(reason, w.token, w.log)
            s["rejected"][k] = s["rejected"].get(k, 0) + 1
            s["examples"].setdefault(k, str(reason).strip().splitlines()[0] if reason else k)

        try:
            for w in self.iter_log(path):
                s["log"] = str(w.log or stem)
                if w.scene is None and int(w.t0) == -1 and str(w.reason).startswith(FAILED_PREFIX):
                    raise _Failed(str(w.reason)[len(FAILED_PREFIX):].strip())
                s["windows"] += 1
                if w.scene is None:
                    reject(w, w.reason)
                    continue
                where = f"{self.source} window {w.token}"
                try:
                    sc = S.Scene(**{n: np.asarray(getattr(w.scene, n)) for n in S.FIELDS})
                    sc = sc.replace(split=np.asarray(S.SPLITS.index(REAL), np.int32))
                    S.validate(sc, self.spec, where)
                except (S.SceneError, ValueError) as e:
                    reject(w, _one_line(e))
                    continue
                sid = int(sc.scene_id)
                if sid in self.tokens or sid in local:
                    dups.append((sid, self.tokens.get(sid, local.get(sid)), str(w.token)))
                    s["duplicates"] += 1
                    continue
                local[sid] = str(w.token)
                summ = records.summarize(sc)
                summ.pop("expert_future")
                buf.append((records.encode_scene(sc), summ, w.report))
        except (LogError, _Failed) as e:
            s["error"] = _one_line(e)
            s["written"] = 0
            return s, []
        for _, _, rep in buf:
            merge_report(s["report"], rep)
        s["written"] = len(buf)
        self.tokens.update(local)
        self.duplicates += dups
        return s, [(rec, summ) for rec, summ, _ in buf]

    def examples(self, split: str) -> Iterator[Tuple[bytes, Dict[str, Any]]]:
        for path in self.logs:
            s, recs = self._log(path)
            self.summaries.append(s)
            self.written += len(recs)
            yield from recs
            if self.bar is not None:
                self.bar.update(1)
                self.bar.set_postfix(written=self.written, refresh=False)
            if self.on_log is not None:
                with contextlib.redirect_stdout(self.stdout):
                    self.on_log(s)

    def totals(self) -> Dict[str, Any]:
        rej: Dict[str, int] = {}
        for s in self.summaries:
            for k, n in s["rejected"].items():
                rej[k] = rej.get(k, 0) + n
        return {"source": self.source, "logs": len(self.summaries),
                "logs_failed": sum(bool(s["error"]) for s in self.summaries),
                "windows": sum(s["windows"] for s in self.summaries), "written": self.written,
                "rejected": sum(rej.values()), "rejected_by_reason": rej}


def write_converted(spec: S.SceneSpec, data_dir: str, name: str, *, source: str, logs: Sequence[str],
                    iter_log: Callable[[str], Iterable[Window]], src: str = "", info: Optional[Dict[str, Any]] = None,
                    progress: bool = True, on_log: Optional[Callable[[Dict[str, Any]], None]] = None
                    ) -> Dict[str, Any]:
    """Convert every log of ``logs`` (``iter_log(path)`` yields its windows) into ``<data_dir>/<name>``
    (atomic; replaces an older dataset of that name) and return the metadata (+ ``path``). ``on_log(summary)``
    is called after each log; ``info`` is stored in the metadata (e.g. maps, stride). Raises UserError when
    no window was written, SceneError when scene ids repeat (both leave nothing behind)."""
    name = check_name(name)
    data_dir = os.path.abspath(data_dir)
    final = dataset_path(data_dir, name)
    t0 = time.time()
    tmp = start_write(data_dir, name)
    bar = None
    try:
        from tqdm import tqdm
        bar = tqdm(total=len(logs), desc=f"convert {source}", unit="log", disable=not progress)
        conv = _Converter(spec, source, logs, iter_log, on_log, bar)
        plan = WritePlan(sizes={REAL: 0}, pool=None, workers=1, progress=None, examples=conv.examples)
        try:
            write_tfds(tmp, plan)
        except Exception:
            if conv.written == 0 and len(conv.summaries) == len(conv.logs):
                _nothing(conv)      # TFDS refuses an empty split: say why there is nothing instead
            raise
        bar.close()
        if conv.duplicates:
            d = conv.duplicates
            raise S.SceneError("scene_id", "one window per scene id (unique over the dataset)",
                               f"{len(d)} duplicate(s): " + ", ".join(f"{i} for {a!r} and {b!r}" for i, a, b in d[:5])
                               + (" ..." if len(d) > 5 else ""), f"convert {source}")
        if conv.written == 0:
            _nothing(conv)
        summ = plan.summaries.get(REAL, [])
        totals = conv.totals()
        totals.update(seconds=round(time.time() - t0, 2), path=final)
        meta = {"format": FORMAT_VERSION, "kind": KIND, "name": name, "source": source,
                "src": os.path.abspath(src) if src else "", "complete": True,
                "spec": json.loads(json.dumps(_asdict(spec))), "sizes": {REAL: len(summ)},
                "tfds_dir": os.path.relpath(tfds_dir(tmp), tmp), "info": dict(info or {}),
                "families": {REAL: {f: int(sum(s["family"] == i for s in summ)) for i, f in enumerate(S.FAMILIES)}},
                "stats": {REAL: split_stats(summ)}, "totals": totals, "logs": conv.summaries,
                "tokens": {str(k): v for k, v in sorted(conv.tokens.items())},
                "convert_seconds": totals["seconds"]}
        publish(tmp, final, meta)
        meta["path"] = final
        return meta
    except BaseException:
        if bar is not None:
            bar.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _asdict(spec: S.SceneSpec) -> Dict[str, Any]:
    import dataclasses
    return dataclasses.asdict(spec)


def _nothing(conv: _Converter):
    t = conv.totals()
    why = "; ".join(f"{n} x {k}" for k, n in sorted(t["rejected_by_reason"].items(), key=lambda kv: -kv[1])[:3])
    failed = [s for s in conv.summaries if s["error"]]
    if failed:
        why = (why + "; " if why else "") + f"first failed log: {failed[0]['error']}"
    raise UserError(f"convert {conv.source}: no window converted from {t['logs']} log(s) ({t['logs_failed']} failed, "
                    f"{t['windows']} window(s) read, {t['rejected']} rejected{': ' + why if why else ''}); "
                    "nothing written")


# ----------------------------------------------------------------------------------------------------
# Sources.

def source_logs(source: str, src: str) -> List[str]:
    """The logs of ``src`` (a folder, or one log) for ``source``, sorted; none is a UserError."""
    if source not in SOURCES:
        raise UserError(f"convert: unknown source {source!r}; choose one of {list(SOURCES)}")
    if not os.path.exists(src):
        raise UserError(f"convert {source}: SRC {src!r} does not exist; give a folder of logs / scenario files")
    if source == "navsim":
        logs = [src] if os.path.isfile(src) else sorted(os.path.join(src, f) for f in os.listdir(src)
                                                         if f.endswith(".pkl"))
        what = "NAVSIM *.pkl logs (navsim_logs/<split>/)"
    else:
        lister = getattr(adapter(source), {"av2": "log_dirs", "scenarionet": "scenario_files"}[source])
        try:
            logs = list(lister(src))
        except FileNotFoundError as e:
            raise UserError(f"convert {source}: {_one_line(e)}") from e
        what = {"av2": "Argoverse 2 log folders", "scenarionet": "ScenarioNet *.pkl scenarios"}[source]
    if not logs:
        raise UserError(f"convert {source}: no {what} in {src!r}")
    return logs


def adapter(source: str):
    """The module ``irlvla_jax.data.<source>`` (av2 / scenarionet); a missing module or dependency is a
    UserError naming it."""
    import importlib
    try:
        return importlib.import_module(f"irlvla_jax.data.{source}")
    except ImportError as e:
        raise UserError(f"convert {source}: the {source} adapter cannot be imported ({_one_line(e)})") from e


def adapter_windows(source: str, spec: S.SceneSpec, stride: int) -> Callable[[str], Iterable[Window]]:
    mod = adapter(source)
    return lambda path: mod.iter_windows(path, spec, stride=int(stride), progress=False)


def navsim_maps(path: Optional[str]):
    """``--maps`` -> (MapLayers or None, description). A file: a DictMapLayers JSON; a folder with *.json
    files (no nuplan-maps-*.json): their DictMapLayers merged (a map name in two files is an error); any
    other folder: a nuPlan maps root (DevkitMapLayers; needs the NAVSIM devkit)."""
    from irlvla_jax.data import navsim as N
    if not path:
        return None, "none (empty map: no lanes, drivable area or lights; DAC, DDC, TLC and LK are not meaningful)"
    if not os.path.exists(path):
        raise UserError(f"--maps {path!r} does not exist; give a nuPlan maps root, a map JSON file or a folder of them")

    def load(f):
        try:
            with open(f) as fh:
                d = json.load(fh)
        except (OSError, ValueError) as e:
            raise UserError(f"--maps: {f} is not a readable JSON map file ({_one_line(e)})") from e
        if not isinstance(d, dict):
            raise UserError(f"--maps: {f} holds a JSON {type(d).__name__}, expected {{map name: layers}}")
        return d

    def layers(d, what):
        try:
            return N.DictMapLayers(d)
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"--maps: {what}: {_one_line(e)}") from e

    if os.path.isfile(path):
        d = load(path)
        return layers(d, path), f"{path} (map JSON: {', '.join(sorted(d))})"
    names = sorted(os.listdir(path))
    nuplan = [f for f in names if re.fullmatch(r"nuplan-maps-.*\.json", f)]
    jsons = [f for f in names if f.endswith(".json")]
    if jsons and not nuplan:
        merged, origin = {}, {}
        for f in jsons:
            for k, v in load(os.path.join(path, f)).items():
                if k in merged:
                    raise UserError(f"--maps: map {k!r} is in both {origin[k]} and {f} in {path}; keep one")
                merged[k], origin[k] = v, f
        return layers(merged, path), f"{path} ({len(jsons)} map JSON file(s): {', '.join(sorted(merged))})"
    version = nuplan[0][:-len(".json")] if nuplan else "nuplan-maps-v1.0"
    try:
        maps = N.DevkitMapLayers(path, version)
    except ImportError as e:
        raise UserError(f"--maps {path}: a nuPlan maps root needs the NAVSIM devkit: {_one_line(e)}") from e
    return maps, f"{path} (nuPlan maps {version}, NAVSIM devkit)"


def navsim_interval(stride: int) -> int:
    """``--stride`` (steps of 0.1 s) -> NAVSIM's frame_interval (frames of 0.5 s); not a multiple of 5: UserError."""
    if int(stride) < NAVSIM_FRAME_STEPS or int(stride) % NAVSIM_FRAME_STEPS:
        raise UserError(f"--stride {stride}: NAVSIM frames are 0.5 s apart; give a multiple of "
                        f"{NAVSIM_FRAME_STEPS} steps (0.1 s each), e.g. --stride 5")
    return int(stride) // NAVSIM_FRAME_STEPS


def navsim_windows(spec: S.SceneSpec, maps, stride: int = NAVSIM_FRAME_STEPS) -> Callable[[str], Iterator[Window]]:
    """``iter_log(path)`` for NAVSIM log pickles: windows every ``stride`` steps of 0.1 s (a multiple of 5:
    NAVSIM frames are 2 Hz), each converted by ``navsim.convert_scene`` (split "real"); a window the
    converter refuses (SceneError / ValueError / a map it lacks) is a rejection with its message; a log
    that does not load is a LogError."""
    from irlvla_jax.data import navsim as N
    interval = navsim_interval(stride)

    def iter_log(path: str) -> Iterator[Window]:
        log = os.path.splitext(os.path.basename(path))[0]
        try:
            frames = N.load_log(path)
            windows = N.split_log(frames, N.NUM_HISTORY, N.NUM_FUTURE, interval)
        except (ValueError, KeyError, TypeError, EOFError, OSError, pickle.UnpicklingError, AttributeError) as e:
            raise LogError(path, "frames", _one_line(e)) from e
        index = {str(f.get("token")): i for i, f in enumerate(frames)}
        for tok, win in windows.items():
            try:
                sc = N.convert_scene(win, spec, maps, split=REAL)
            except (ValueError, KeyError) as e:
                yield Window(log, tok, index.get(tok, -1), None, _one_line(e))
            else:
                yield Window(log, tok, index.get(tok, -1), sc)
    return iter_log


__all__ = ["KIND", "REAL", "SOURCES", "write_converted", "source_logs", "adapter_windows", "navsim_maps",
           "navsim_windows", "log_line", "reason_key", "merge_report"]
