"""Scene generation of the embedded world, the public entry point: ``generate_scene(spec, seed, index, split,
family=None)`` and the family mix ``family_for(split, seed, index)``.

Deterministic in (seed, split, index): one ``np.random.default_rng([seed, split_id, index])`` drives
everything (the family, when not given, comes from :func:`family_for`, which uses its own stream), so
the same inputs give byte-identical arrays and different seeds give different scenes. Each scene is built
in a world frame (ego heading +x near the origin), then transformed into the ego rear-axle frame at t0.

Pipeline: family builder (``families`` / ``intersection_family`` on ``scaffold``: map via ``roads``,
agents via ``traffic``, route, lights, ego start) -> ``simulate``: log-replay simulation of the agents,
the expert plan (``expert``), followers in the ego lane re-simulated behind the expert, a sanity pass (no
agent overlapping the expert's future; key-agent conflicts re-draw the scene, others drop the agent) ->
``pack``: transform, budget (drop farthest agents / lanes / polygons by priority, resample to the
SceneSpec sizes), sensors, instruction text and meta-actions -> ``scene.validate``.

Split mixes: train / val / test draw the nine families uniformly (a fresh permutation of the nine for
every block of nine indices, so every family appears in every split of >= 9 scenes); hard draws from
blocks of 15 = the nine families + the six interactive families once more (``scene.INTERACTIVE_FAMILIES``
at 2x).

Known simplifications: the camera skips boxes that reach behind its near plane; the LiDAR is a BEV
histogram, not ray-cast points; curved lanes are split into segments (the scorer's "multiple lanes" test
fires where the ego straddles a join); agents do not react to each other across lanes (the crosswalk
and traffic lights excepted).

Speed check: ``python -m irlvla_jax.world.generate --config configs/tiny.py --n 180``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from irlvla_jax.scene import FAMILIES, INTERACTIVE_FAMILIES, SPLITS, WORLD_SPLITS, Scene, SceneSpec, validate
from irlvla_jax.world.pack import pack_scene
from irlvla_jax.world.simulate import Built, build

_HARD_BLOCK = tuple(FAMILIES) + tuple(INTERACTIVE_FAMILIES)


def family_for(split: str, seed: int, index: int) -> str:
    """The family of scene ``index`` of ``split``: a permutation per block (9 for train/val/test, 15 with
    the interactive families doubled for hard), so every family appears in every split of reasonable size."""
    sid = _split_id(split)
    block = list(FAMILIES) if split != "hard" else list(_HARD_BLOCK)
    n = len(block)
    perm = np.random.default_rng([int(seed), sid, int(index) // n, 7919]).permutation(n)
    return block[int(perm[int(index) % n])]


def _split_id(split: str) -> int:
    if split not in WORLD_SPLITS:
        raise ValueError(f"split must be one of the world's splits {WORLD_SPLITS}, got {split!r}")
    return SPLITS.index(split)


def generate_scene(spec: SceneSpec, seed: int, index: int, split: str, family: Optional[str] = None) -> Scene:
    """One validated numpy Scene, deterministic in (seed, split, index) (and ``family`` if given).

    ``family`` None -> :func:`family_for(split, seed, index)`. ``scene_id`` = split_id * 1e8 + index.
    Raises ValueError naming the argument on bad input."""
    if not isinstance(spec, SceneSpec):
        raise ValueError(f"generate_scene: spec must be a SceneSpec, got {type(spec).__name__}")
    split_id = _split_id(split)
    for name, val, hi in (("seed", seed, 2 ** 31 - 1), ("index", index, 10 ** 8 - 1)):
        if not isinstance(val, (int, np.integer)) or not 0 <= int(val) <= hi:
            raise ValueError(f"generate_scene: {name} must be an int in [0, {hi}], got {val!r}")
    fam = family if family is not None else family_for(split, seed, index)
    if fam not in FAMILIES:
        raise ValueError(f"generate_scene: family must be one of {FAMILIES} or None, got {fam!r}")
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    sc = pack_scene(spec, build(spec, fam, rng), rng, int(seed), int(index), split_id, fam)
    return validate(sc, spec, where=f"world scene {split}/{index} (seed {seed}, {fam})")


def generate_world(spec: SceneSpec, seed: int, index: int, split: str, family: Optional[str] = None) -> Built:
    """Debug helper: the world-frame World and its simulation (agents, expert) behind a scene."""
    split_id = _split_id(split)
    fam = family if family is not None else family_for(split, seed, index)
    rng = np.random.default_rng([int(seed), split_id, int(index)])
    return build(spec, fam, rng)


def _main(argv=None) -> None:
    """Speed check: ``python -m irlvla_jax.world.generate [--config configs/tiny.py] [--n 180]``.
    Prints one JSON line (wall and CPU ms per scene, scenes/s, family counts)."""
    import argparse
    import json
    import time
    ap = argparse.ArgumentParser(description=_main.__doc__)
    ap.add_argument("--config", default="configs/tiny.py")
    ap.add_argument("--n", type=int, default=180)
    ap.add_argument("--split", default="train")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from irlvla_jax.config import load_config
    spec = SceneSpec.from_config(load_config(a.config).scene)
    generate_scene(spec, a.seed, 0, a.split)                       # warm caches
    counts = {f: 0 for f in FAMILIES}
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(a.n):
        counts[FAMILIES[int(generate_scene(spec, a.seed, i, a.split).family)]] += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"config": a.config, "scenes": a.n, "wall_ms_per_scene": round(1e3 * wall / a.n, 2),
                      "cpu_ms_per_scene": round(1e3 * cpu / a.n, 2), "scenes_per_s": round(a.n / wall, 1),
                      "families": counts}))


if __name__ == "__main__":
    _main()
