"""CLI commands of the data stage: ``generate``, ``inspect``, ``render``, ``convert``, ``submit``.

    irlvla generate --config configs/tiny.py --workdir runs/tiny [force]
    irlvla inspect  --config configs/tiny.py --workdir runs/tiny [--name NAME]
    irlvla render   --config configs/tiny.py --workdir runs/tiny [SPLIT] [N]
    irlvla convert  navsim|av2|scenarionet SRC --config configs/tiny.py --workdir runs/tiny [--name NAME]
                    [--stride N] [--maps PATH]
    irlvla submit   --config configs/tiny.py --workdir runs/tiny --name NAME --policy RUN [--out FILE]
                    [team_name=... authors=a,b email=... institution=... country=... version=v2|v1]

Datasets live in ``<workdir>/data`` unless ``config.data.data_dir``. ``generate`` keeps an existing
complete dataset with the same identity (seed, scene spec, split sizes, anchors) unless ``force`` is
given. ``render`` writes ``<workdir>/render/<split>/<family>_<scene_id>.png`` for the first N scenes
(by scene id) of SPLIT (defaults: ``config.data.render_split``, ``config.data.render_count``).
Tiny runs: override sizes with dotted flags, e.g. ``--config.data.num_train=64``.

``convert`` writes ``<data_dir>/<NAME>`` (default ``real_<source>``) from a folder of logs
(:mod:`irlvla_jax.data.converted`): a line per log (windows written, rejected by reason, what was cut,
or why the log failed) and a final JSON line of the totals. ``--stride``: steps of 0.1 s between window
starts (default 5; NAVSIM frames are 0.5 s apart, so a multiple of 5 there). ``--maps`` (navsim only): a
nuPlan maps root (needs the NAVSIM devkit), a DictMapLayers JSON file, or a folder of them (merged);
without it the scenes have an empty map. ``submit`` writes NAVSIM's submission pickle
(:func:`irlvla_jax.data.navsim.write_submission`) of one policy on a converted NAVSIM dataset, its tokens
from the dataset's metadata; the policy is a trained run of the workdir (``irlvla_jax.evaluate.STAGE_LOADERS``:
il, rwm, ppo_rwm, ppo_scorer, ppo_rwm_choice) or a baseline (``cv`` = constant_velocity, ``expert``). The
team fields default to placeholders: set them for a leaderboard submission.
"""
from __future__ import annotations

import json
import os

import numpy as np

from irlvla_jax.errors import UserError
from irlvla_jax.data import loader
from irlvla_jax.data.tfds_builder import META_FILE, dataset_path, generate_dataset
from irlvla_jax.scene import COMMANDS, FAMILIES, SPLITS, WORLD_SPLITS, SceneSpec


def _mb(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def generate(config, workdir, args):
    """Generate train / val / test / hard (parallel, atomic), anchors and metadata; print a summary."""
    rest = list(getattr(args, "rest", []) or [])
    bad = [a for a in rest if a != "force"]
    if bad:
        raise UserError(f"generate: unexpected argument(s) {bad}; the only positional argument is 'force'")
    d = loader.resolve_data_dir(config, workdir)
    old = dataset_path(d, config.data.name)
    if os.path.isfile(os.path.join(old, META_FILE)):
        loader.read_meta(old)  # a corrupt metadata file: one line naming it, not a JSON traceback
    meta = generate_dataset(config, d, force="force" in rest)
    path = os.path.join(d, meta["name"])
    if meta.get("skipped"):
        try:
            loader.open_dataset(config, d)
        except loader.DatasetError as e:  # same identity but damaged (a deleted / truncated file): rebuild it
            print(f"{str(e).split('; ')[0]}; regenerating it")
            meta = generate_dataset(config, d, force=True)
    if meta.get("skipped"):
        print(f"dataset {path} is up to date (same seed, spec and sizes); pass 'force' to regenerate")
    total = sum(meta["sizes"].values())
    print(f"dataset {path}: " + ", ".join(f"{s} {meta['sizes'][s]}" for s in WORLD_SPLITS)
          + f"; {_mb(meta['bytes_on_disk'])} on disk ({meta['bytes_on_disk'] / total / 1024:.1f} KiB/scene); "
          f"generated in {meta['generate_seconds']:.1f} s = {meta['scenes_per_second']:.1f} scenes/s "
          f"with {meta['workers']} worker(s); anchors {tuple(meta['anchors_shape'])}")
    _family_table(meta["families"])
    summary = {k: meta[k] for k in ("name", "seed", "sizes", "bytes_on_disk", "generate_seconds",
                                    "scenes_per_second", "workers", "families")}
    summary["path"], summary["skipped"] = path, bool(meta.get("skipped"))
    print(json.dumps(summary))
    return summary


def _family_table(fams, splits=WORLD_SPLITS):
    w = max(len(f) for f in FAMILIES)
    print(f"{'family':{w}s} " + " ".join(f"{s:>6s}" for s in splits))
    for f in FAMILIES:
        print(f"{f:{w}s} " + " ".join(f"{fams[s].get(f, 0):6d}" for s in splits))


def _range(v):
    v = np.asarray(v, np.float64)
    return {"min": round(float(v.min()), 3), "mean": round(float(v.mean()), 3), "max": round(float(v.max()), 3)}


def inspect(config, workdir, args):
    """Read every record (decoded and validated): counts per split and family, key value ranges.

    Refuses (one-line DatasetError) a dataset with a missing / bad file that training would trip on:
    see :func:`irlvla_jax.data.loader.open_dataset` (metadata, anchors.npy, TFDS files, shards)."""
    d = loader.resolve_data_dir(config, workdir)
    if getattr(args, "name", None):
        config.data.name = dataset_name(args.name)
    meta = loader.open_dataset(config, d)
    splits = loader.dataset_splits(meta)
    conv = loader.is_converted(meta)
    anchors = None if conv else loader.load_anchors(config, data_dir=d)
    from tqdm import tqdm
    out = {"path": meta["path"], "seed": meta.get("seed"), "anchors_shape": None if conv else list(anchors.shape),
           "splits": {}}
    if conv:
        out["source"] = meta.get("source")
    for split in splits:
        sc = loader.load_split(config, split, data_dir=d)
        ego_v = np.hypot(sc.ego_state[:, 3], sc.ego_state[:, 4])
        n_ag = sc.agent_valid[:, :, 0].sum(-1)
        ef = sc.expert_future[:, :, :2]
        steps = np.diff(np.concatenate([np.zeros_like(ef[:, :1]), ef], 1), axis=1)
        prog = np.hypot(steps[..., 0], steps[..., 1]).sum(-1)
        agent_speed = np.hypot(sc.agent_velocity[..., 0], sc.agent_velocity[..., 1])[sc.agent_valid]
        out["splits"][split] = {
            "count": int(len(sc.scene_id)),
            "families": {f: int((sc.family == i).sum()) for i, f in enumerate(FAMILIES)},
            "commands": {c: int((sc.command.argmax(-1) == i).sum()) for i, c in enumerate(COMMANDS)},
            "ego_speed_mps": _range(ego_v),
            "agent_speed_mps": _range(agent_speed) if agent_speed.size else {},
            "agents_at_t0": _range(n_ag),
            "expert_progress_m": _range(prog),
            "red_light_on_route_t0": int((sc.light_red[:, :, 0] & sc.light_on_route & sc.light_valid).any(-1).sum()),
            "scene_id": [int(sc.scene_id.min()), int(sc.scene_id.max())],
        }
        tqdm.write(f"read {split}: {len(sc.scene_id)} scenes, all valid")
    ok = all(out["splits"][s]["count"] == meta["sizes"][s] for s in splits)
    out["counts_match_metadata"] = ok
    origin = f"converted from {meta.get('source')}" if conv else f"seed {meta['seed']}"
    print(f"dataset {meta['path']} ({origin}, {_mb(meta['bytes_on_disk'])})")
    print(f"{'split':6s} {'count':>6s} {'ego v m/s (min/mean/max)':>26s} {'agents@t0':>16s} {'expert progress m':>20s}")
    for s in splits:
        r = out["splits"][s]
        fmt = lambda x: f"{x['min']:.1f}/{x['mean']:.1f}/{x['max']:.1f}"  # noqa: E731
        print(f"{s:6s} {r['count']:6d} {fmt(r['ego_speed_mps']):>26s} {fmt(r['agents_at_t0']):>16s} "
              f"{fmt(r['expert_progress_m']):>20s}")
    _family_table({s: out["splits"][s]["families"] for s in splits}, splits)
    if not ok:
        raise UserError(f"dataset {meta['path']}: split counts {[out['splits'][s]['count'] for s in splits]} "
                        f"differ from its metadata {meta['sizes']}; regenerate it")
    print(json.dumps(out))
    return out


def render(config, workdir, args):
    """PNG per scene for the first N scenes (by id) of a split: <workdir>/render/<split>/<family>_<id>.png."""
    from irlvla_jax import viz
    rest = list(getattr(args, "rest", []) or [])
    split = str(config.data.render_split)
    count = int(config.data.render_count)
    for a in rest:
        if a in SPLITS:
            split = a
        elif a.isdigit() and int(a) > 0:
            count = int(a)
        else:
            raise UserError(f"render: argument {a!r} is neither a split {SPLITS} nor a positive count")
    d = loader.resolve_data_dir(config, workdir)
    if getattr(args, "name", None):
        config.data.name = dataset_name(args.name)
    spec = SceneSpec.from_config(config.scene)
    scenes = loader.load_split(config, split, data_dir=d, limit=count)
    out_dir = os.path.join(workdir, "render", split)
    from tqdm import tqdm
    from irlvla_jax.scene import index
    paths = []
    for i in tqdm(range(len(scenes.scene_id)), desc=f"render {split}", unit="scene"):
        s = index(scenes, i)
        p = os.path.join(out_dir, f"{FAMILIES[int(s.family)]}_{int(s.scene_id)}.png")
        paths.append(viz.render_scene(s, p, bev_range=spec.bev_range))
    print(f"wrote {len(paths)} PNG(s) to {out_dir}")
    print(json.dumps({"split": split, "count": len(paths), "dir": out_dir}))
    return paths


# ----------------------------------------------------------------------------------------------------
# Real logs: convert, submit.

def dataset_name(name: str, flag: str = "--name") -> str:
    import re
    if not re.fullmatch(r"[a-z][a-z0-9_]*", str(name)):
        raise UserError(f"{flag} {name!r}: a dataset name must match [a-z][a-z0-9_]* (a directory name), "
                        "e.g. real_navsim")
    return str(name)


def convert_name(args) -> str:
    """The dataset ``convert`` writes: ``--name``, else real_<source>."""
    rest = list(getattr(args, "rest", []) or [])
    return dataset_name(getattr(args, "name", None) or f"real_{rest[0] if rest else 'logs'}")


def convert(config, workdir, args):
    """``irlvla convert SOURCE SRC``: real logs -> <data_dir>/<name> (one split, real); see the module doc."""
    from irlvla_jax.data import converted as C
    rest = list(getattr(args, "rest", []) or [])
    if len(rest) != 2 or rest[0] not in C.SOURCES:
        raise UserError(f"convert: expected `irlvla convert {'|'.join(C.SOURCES)} SRC --config ... --workdir DIR`, "
                        f"got arguments {rest}")
    source, src = rest
    name = convert_name(args)
    stride = C.NAVSIM_FRAME_STEPS if getattr(args, "stride", None) is None else int(args.stride)
    if stride < 1:
        raise UserError(f"--stride {stride}: must be >= 1 (steps of 0.1 s between window starts)")
    if getattr(args, "maps", None) and source != "navsim":
        raise UserError(f"--maps: only `convert navsim` reads a map source; {source} logs carry their own map")
    if source == "navsim":
        C.navsim_interval(stride)
    d = loader.resolve_data_dir(config, workdir)
    spec = SceneSpec.from_config(config.scene)
    logs = C.source_logs(source, src)
    info = {"stride": stride}
    if source == "navsim":
        maps, desc = C.navsim_maps(getattr(args, "maps", None))
        iter_log = C.navsim_windows(spec, maps, stride)
        info["maps"] = desc
        print(f"convert navsim: maps: {desc}")
    else:
        iter_log = C.adapter_windows(source, spec, stride)
    print(f"convert {source}: {len(logs)} log(s) from {os.path.abspath(src)} -> {dataset_path(d, name)}")
    from tqdm import tqdm
    meta = C.write_converted(spec, d, name, source=source, logs=logs, iter_log=iter_log, src=src, info=info,
                             on_log=lambda s: tqdm.write(C.log_line(s)))
    t = meta["totals"]
    if t["rejected_by_reason"]:
        print("rejected: " + "; ".join(f"{n} x {k}" for k, n in sorted(t["rejected_by_reason"].items(),
                                                                      key=lambda kv: -kv[1])))
    summary = {k: t[k] for k in ("source", "logs", "logs_failed", "windows", "written", "rejected", "seconds",
                                 "path")}
    summary["name"] = name
    print(json.dumps(summary))
    return meta


POLICY_ALIASES = {"cv": "constant_velocity"}
SUBMIT_FIELDS = {"team_name": "irlvla-jax", "authors": "irlvla-jax", "email": "irlvla-jax@example.com",
                 "institution": "irlvla-jax", "country": "unknown", "version": "v2"}


def submit(config, workdir, args):
    """``irlvla submit``: a policy's plans for every scene of a converted NAVSIM dataset -> NAVSIM's
    submission pickle (tokens from the dataset's metadata); prints a JSON line and returns its path."""
    from irlvla_jax import evaluate as E
    from irlvla_jax.data import navsim as N
    if not getattr(args, "name", None):
        raise UserError("submit: --name NAME is required: the converted NAVSIM dataset "
                        "(`irlvla convert navsim SRC ... --name NAME`, default name real_navsim)")
    known = sorted(set(E.STAGE_LOADERS) | set(E.policies()) | set(POLICY_ALIASES))
    if not getattr(args, "policy", None):
        raise UserError(f"submit: --policy is required, one of {known}")
    pol = POLICY_ALIASES.get(args.policy, args.policy)
    if pol not in E.STAGE_LOADERS and pol not in E.policies():
        raise UserError(f"--policy {args.policy!r}: unknown policy; choose one of {known}")
    fields = dict(SUBMIT_FIELDS)
    for a in list(getattr(args, "rest", []) or []):
        k, eq, v = a.partition("=")
        if not eq or k not in SUBMIT_FIELDS:
            raise UserError(f"submit: unexpected argument {a!r}; give KEY=VALUE with KEY one of {list(SUBMIT_FIELDS)}")
        fields[k] = v
    if fields["version"] not in ("v1", "v2"):
        raise UserError(f"submit: version={fields['version']!r}: must be v1 or v2 (NAVSIM's submission format)")
    d = loader.resolve_data_dir(config, workdir)
    dcfg = config.copy_and_resolve_references()
    dcfg.data.name = dataset_name(args.name)
    meta = loader.open_dataset(dcfg, d)
    if not loader.is_converted(meta) or meta.get("source") != "navsim":
        what = f"converted from {meta.get('source')}" if loader.is_converted(meta) else "a generated world dataset"
        raise UserError(f"--name {args.name}: dataset {meta['path']} is {what}; a NAVSIM submission names NAVSIM "
                        "tokens: convert NAVSIM logs with `irlvla convert navsim SRC` and pass that --name")
    tokens = meta.get("tokens") or {}
    if pol in E.STAGE_LOADERS:
        E.load_stage_policies(config, workdir, pol)
    fn = E.policies()[pol]
    chunk = max(1, int(config.evaluate.chunk))
    n = int(meta["sizes"]["real"])
    from tqdm import tqdm
    preds = {}
    for batch in tqdm(loader.iter_split(dcfg, "real", chunk, data_dir=d), total=-(-n // chunk),
                      desc=f"submit {pol}", unit="batch"):
        ids = [str(int(i)) for i in np.asarray(batch.scene_id)]
        lost = [i for i in ids if i not in tokens]
        if lost:
            raise loader.DatasetError(f"dataset {meta['path']}: scene id {lost[0]} has no token in {META_FILE}; "
                                      "convert it again")
        traj = E._check_trajectories(pol, fn(batch), len(ids))
        preds.update(N.predictions_from_batch([tokens[i] for i in ids], traj[:, 0]))
    out = getattr(args, "out", None) or os.path.join(workdir, "submissions", f"{dcfg.data.name}_{pol}.pkl")
    authors = [a.strip() for a in fields["authors"].split(",") if a.strip()]
    N.write_submission(out, preds, team_name=fields["team_name"], authors=authors, email=fields["email"],
                       institution=fields["institution"], country=fields["country"], version=fields["version"])
    placeholders = [k for k in ("team_name", "authors", "email", "institution", "country")
                    if fields[k] == SUBMIT_FIELDS[k]]
    if placeholders:
        print(f"submit: placeholder {', '.join(placeholders)} (set them, e.g. team_name=..., for a leaderboard)")
    summary = {"path": os.path.abspath(out), "policy": pol, "name": dcfg.data.name, "tokens": len(preds),
               "version": fields["version"]}
    print(json.dumps(summary))
    return summary
