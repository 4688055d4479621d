"""CLI commands of the data stage: ``generate``, ``inspect``, ``render``.

    irlvla generate --config configs/tiny.py --workdir runs/tiny [force]
    irlvla inspect  --config configs/tiny.py --workdir runs/tiny
    irlvla render   --config configs/tiny.py --workdir runs/tiny [SPLIT] [N]

Datasets live in ``<workdir>/data`` unless ``config.data.data_dir``. ``generate`` keeps an existing
complete dataset with the same identity (seed, scene spec, split sizes, anchors) unless ``force`` is
given. ``render`` writes ``<workdir>/render/<split>/<family>_<scene_id>.png`` for the first N scenes
(by scene id) of SPLIT (defaults: ``config.data.render_split``, ``config.data.render_count``).
Tiny runs: override sizes with dotted flags, e.g. ``--config.data.num_train=64``.
"""
from __future__ import annotations

import json
import os

import numpy as np

from irlvla_jax.errors import UserError
from irlvla_jax.data import loader
from irlvla_jax.data.tfds_builder import META_FILE, dataset_path, generate_dataset
from irlvla_jax.scene import COMMANDS, FAMILIES, SPLITS, SceneSpec


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
    print(f"dataset {path}: " + ", ".join(f"{s} {meta['sizes'][s]}" for s in SPLITS)
          + f"; {_mb(meta['bytes_on_disk'])} on disk ({meta['bytes_on_disk'] / total / 1024:.1f} KiB/scene); "
          f"generated in {meta['generate_seconds']:.1f} s = {meta['scenes_per_second']:.1f} scenes/s "
          f"with {meta['workers']} worker(s); anchors {tuple(meta['anchors_shape'])}")
    _family_table(meta["families"])
    summary = {k: meta[k] for k in ("name", "seed", "sizes", "bytes_on_disk", "generate_seconds",
                                    "scenes_per_second", "workers", "families")}
    summary["path"], summary["skipped"] = path, bool(meta.get("skipped"))
    print(json.dumps(summary))
    return summary


def _family_table(fams):
    w = max(len(f) for f in FAMILIES)
    print(f"{'family':{w}s} " + " ".join(f"{s:>6s}" for s in SPLITS))
    for f in FAMILIES:
        print(f"{f:{w}s} " + " ".join(f"{fams[s].get(f, 0):6d}" for s in SPLITS))


def _range(v):
    v = np.asarray(v, np.float64)
    return {"min": round(float(v.min()), 3), "mean": round(float(v.mean()), 3), "max": round(float(v.max()), 3)}


def inspect(config, workdir, args):
    """Read every record (decoded and validated): counts per split and family, key value ranges.

    Refuses (one-line DatasetError) a dataset with a missing / bad file that training would trip on:
    see :func:`irlvla_jax.data.loader.open_dataset` (metadata, anchors.npy, TFDS files, shards)."""
    d = loader.resolve_data_dir(config, workdir)
    meta = loader.open_dataset(config, d)
    anchors = loader.load_anchors(config, data_dir=d)
    from tqdm import tqdm
    out = {"path": meta["path"], "seed": meta["seed"], "anchors_shape": list(anchors.shape), "splits": {}}
    for split in SPLITS:
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
    ok = all(out["splits"][s]["count"] == meta["sizes"][s] for s in SPLITS)
    out["counts_match_metadata"] = ok
    print(f"dataset {meta['path']} (seed {meta['seed']}, {_mb(meta['bytes_on_disk'])})")
    print(f"{'split':6s} {'count':>6s} {'ego v m/s (min/mean/max)':>26s} {'agents@t0':>16s} {'expert progress m':>20s}")
    for s in SPLITS:
        r = out["splits"][s]
        fmt = lambda x: f"{x['min']:.1f}/{x['mean']:.1f}/{x['max']:.1f}"  # noqa: E731
        print(f"{s:6s} {r['count']:6d} {fmt(r['ego_speed_mps']):>26s} {fmt(r['agents_at_t0']):>16s} "
              f"{fmt(r['expert_progress_m']):>20s}")
    _family_table({s: out["splits"][s]["families"] for s in SPLITS})
    if not ok:
        raise UserError(f"dataset {meta['path']}: split counts {[out['splits'][s]['count'] for s in SPLITS]} "
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
