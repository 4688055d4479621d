"""A small, independent reader of the official EPDMS test vectors (shared/epdms_vectors/scenes/*.json).

Builds a numpy ``irlvla_jax.scene.Scene`` (only the data contract is shared with the package, not
``irlvla_jax.scoring.vectors``), sized to fit the scene: a ``SceneSpec`` is chosen per scene.
Lane connectors' polygons are the light polygons; a light is on route when its connector is.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Optional, Tuple

import numpy as np

from irlvla_jax import scene as S


def find_vectors_dir() -> Tuple[Optional[str], str]:
    """(directory, reason). Looks at $IRLVLA_SHARED/epdms_vectors, ../shared/epdms_vectors, tests/data tarball."""
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(here))
    cands = []
    if os.environ.get("IRLVLA_SHARED"):
        cands.append(os.path.join(os.environ["IRLVLA_SHARED"], "epdms_vectors"))
    cands.append(os.path.join(os.path.dirname(repo), "shared", "epdms_vectors"))
    for c in cands:
        if os.path.isdir(os.path.join(c, "scenes")):
            return c, ""
    tar = os.path.join(repo, "tests", "data", "epdms_vectors.tar.gz")
    if os.path.exists(tar):
        import tarfile
        import tempfile
        out = os.path.join(tempfile.gettempdir(), "irlvla_ref_epdms_vectors")
        if not os.path.isdir(out):
            with tarfile.open(tar) as tf:
                tf.extractall(out)
        for root, dirs, _ in os.walk(out):
            if "scenes" in dirs:
                return root, ""
    return None, f"no EPDMS vectors found (tried {cands} and {tar})"


def _pad(items, n, field):
    return S.pad_polygon(items, n, field)


def read_scene(path: str):
    """JSON scene -> (Scene, previous_proposals [18, 8, 3] or None, proposals [18, 8, 3], meta)."""
    with open(path) as f:
        d = json.load(f)
    lanes = d["lanes"]
    drv = ([(r["polygon"], S.DRIVABLE_ROADBLOCK) for r in d["roadblocks"]]
           + [(r["polygon"], S.DRIVABLE_INTERSECTION) for r in d["intersections"]]
           + [(r["polygon"], S.DRIVABLE_CARPARK) for r in d["carparks"]])
    lane_by_id = {l["id"]: l for l in lanes}
    lights = d["traffic_lights"]
    agents = d["agents"]
    spec = S.SceneSpec(
        num_agents=max(1, len(agents)), num_lanes=max(1, len(lanes)),
        lane_vertices=max([len(l["polygon"]) for l in lanes] + [3]),
        lane_points=max([len(l["centerline"]) for l in lanes] + [2]),
        num_drivable=max(1, len(drv)), drivable_vertices=max([len(p) for p, _ in drv] + [3]),
        route_points=len(d["route_centerline"]), num_lights=max(1, len(lights)),
        light_vertices=max([len(lane_by_id[l["lane_connector_id"]]["polygon"]) for l in lights] + [3]))
    sc = S.empty_scene(spec).to_dict()
    e = d["ego"]
    sc["ego_state"][:] = [e["x"], e["y"], e["heading"], e["vx"], e["vy"], e["ax"], e["ay"]]
    past = np.asarray(d["past_ego"], np.float32)
    sc["ego_past"][:] = past[:, 1:8]
    sc["speed_limit"][()] = d["meta"].get("speed_limit_mps") or 0.0
    sc["expert_future"][:] = np.asarray(d["human"], np.float32)
    for i, l in enumerate(lanes):
        sc["lane_polygons"][i], sc["lane_vertex_valid"][i] = _pad(l["polygon"], spec.lane_vertices, "lane")
        sc["lane_centerlines"][i], sc["lane_point_valid"][i] = S.pad_polyline(l["centerline"], spec.lane_points)
        sc["lane_valid"][i] = True
        sc["lane_on_route"][i] = bool(l["on_route"])
        sc["lane_is_connector"][i] = bool(l["is_connector"])
        sc["lane_speed_limit"][i] = l["speed_limit"] or 0.0
    for i, (p, k) in enumerate(drv):
        sc["drivable_polygons"][i], sc["drivable_vertex_valid"][i] = _pad(p, spec.drivable_vertices, "drivable")
        sc["drivable_valid"][i] = True
        sc["drivable_kind"][i] = k
    sc["route"][:], sc["route_valid"][:] = S.pad_polyline(d["route_centerline"], spec.route_points)
    for i, l in enumerate(lights):
        lane = lane_by_id[l["lane_connector_id"]]
        sc["light_polygons"][i], sc["light_vertex_valid"][i] = _pad(lane["polygon"], spec.light_vertices, "light")
        sc["light_valid"][i] = True
        sc["light_on_route"][i] = bool(lane["on_route"])
        red = np.asarray(l["red"], bool)
        sc["light_red"][i] = red[0::5]
    tmap = {n: k for k, n in enumerate(S.AGENT_TYPES)}
    for j, a in enumerate(agents):
        sc["agent_type"][j] = tmap[a["type"]]
        vels = a.get("velocities")
        for t, b in enumerate(a["boxes"]):
            if b is None:
                continue
            sc["agent_boxes"][j, t] = b
            sc["agent_valid"][j, t] = True
            if vels is not None and vels[t] is not None:
                sc["agent_velocity"][j, t] = vels[t]
    sc["family"][()] = 0
    sc["seed"][()] = int(d["meta"].get("seed", 0))
    scene = S.Scene(**sc)
    S.validate(scene, spec, where=os.path.basename(path))
    prev = d.get("previous_proposals")
    prev = None if prev is None else np.asarray(prev, np.float64)
    return scene, prev, np.asarray(d["proposals"], np.float64), d["meta"]


def load_official(vdir: str, mode: str):
    with open(os.path.join(vdir, f"official_{mode}.json")) as f:
        return {s["scene"]: s for s in json.load(f)["scenes"]}


def scene_files(vdir: str):
    return sorted(glob.glob(os.path.join(vdir, "scenes", "scene_*.json")))
