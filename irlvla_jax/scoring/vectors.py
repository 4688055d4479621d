"""Official EPDMS test vectors (``shared/epdms_vectors`` layout) -> Scene pytrees, without loss.

A vector folder holds ``scenes/scene_XXXX.json`` and ``official_<mode>.json`` (see its README). Each
scene converts to one :class:`irlvla_jax.scene.Scene` under :data:`VECTOR_SPEC`, a SceneSpec sized to hold
every polygon, centerline and agent of the official scenes; the 18 proposals and the previous-frame plans
come back as arrays next to it. Lights are the polygons of the connectors that carry a light, with their
on-route flag; their 41 states at 10 Hz change only at 0.5 s multiples (asserted), so the 2 Hz
``light_red`` is lossless. Sensors, instruction and meta-action fields are zero (the scorer reads none).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from irlvla_jax import scene as S

VECTOR_SPEC = S.SceneSpec(num_agents=20, num_lanes=40, lane_vertices=224, lane_points=112, num_drivable=12,
                          drivable_vertices=160, route_points=136, num_lights=20, light_vertices=224,
                          instruction_tokens=4, camera_hw=(1, 1), lidar_hw=(1, 1), lidar_channels=1,
                          bev_hw=(1, 1))

_FAMILY = {"straight": "cruise_lead", "curved": "curve", "intersection": "intersection"}
_COMMAND = {"left": 0, "straight": 1, "right": 2}


def _poly(points, where, field):
    p = np.asarray(points, np.float64).reshape(-1, 2)
    if len(p) > 1 and np.allclose(p[0], p[-1]):
        p = p[:-1]  # the closing vertex is implicit in the Scene
    if len(p) < 3:
        raise S.SceneError(field, ">= 3 polygon vertices", f"{len(p)}", where)
    return p


def convert_scene(d: Dict, spec: S.SceneSpec = VECTOR_SPEC, where: str = "") -> Tuple[S.Scene, np.ndarray,
                                                                                        Optional[np.ndarray]]:
    """One parsed scene JSON -> (Scene (numpy, validated), proposals [N, 8, 3], previous [N, 8, 3] or None)."""
    sc = S.empty_scene(spec)
    f = sc.to_dict()
    e = d["ego"]
    if abs(e["x"]) > 1e-6 or abs(e["y"]) > 1e-6 or abs(e["heading"]) > 1e-6:
        raise S.SceneError("ego", "the ego at x = y = heading = 0", f"{e}", where)
    f["ego_state"][:] = [0.0, 0.0, 0.0, e["vx"], e["vy"], e["ax"], e["ay"]]
    past = np.asarray(d["past_ego"], np.float64)
    if past.shape != (S.T_PAST, 8) or not np.allclose(past[:, 0], np.arange(-15, 0) * 0.1, atol=1e-6):
        raise S.SceneError("past_ego", "15 rows [t, x, y, heading, vx, vy, ax, ay] at t=-1.5..-0.1", f"{past.shape}",
                           where)
    f["ego_past"][:] = past[:, 1:]
    meta = d.get("meta", {})
    f["speed_limit"][...] = float(meta.get("speed_limit_mps") or 0.0)
    f["expert_future"][:] = np.asarray(d["human"], np.float64).reshape(S.N_POSES, 3)
    fam = _FAMILY.get(meta.get("family", ""), "cruise_lead")
    f["family"][...] = S.FAMILIES.index(fam)
    f["seed"][...] = int(meta.get("seed", 0))
    f["scene_id"][...] = int(meta.get("seed", 0))

    # Agents.
    agents = d["agents"]
    if len(agents) > spec.num_agents:
        raise S.SceneError("agents", f"at most {spec.num_agents} agents", f"{len(agents)}", where)
    for i, a in enumerate(agents):
        f["agent_type"][i] = S.AGENT_TYPES.index(a["type"])
        vel = a.get("velocities")
        for t, box in enumerate(a["boxes"]):
            if box is None:
                continue
            f["agent_boxes"][i, t] = box
            f["agent_valid"][i, t] = True
            if vel is not None and vel[t] is not None:
                f["agent_velocity"][i, t] = vel[t]
        if not f["agent_valid"][i, 0]:
            raise S.SceneError("agents", "every agent present at t = 0", f"agent {a['id']} absent", where)

    # Lanes.
    lanes = d["lanes"]
    if len(lanes) > spec.num_lanes:
        raise S.SceneError("lanes", f"at most {spec.num_lanes}", f"{len(lanes)}", where)
    lane_index = {}
    for i, ln in enumerate(lanes):
        lane_index[ln["id"]] = i
        f["lane_polygons"][i], f["lane_vertex_valid"][i] = S.pad_polygon(_poly(ln["polygon"], where, "lanes"),
                                                                         spec.lane_vertices, "lane_polygons")
        f["lane_centerlines"][i], f["lane_point_valid"][i] = S.pad_polyline(ln["centerline"], spec.lane_points,
                                                                            "lane_centerlines")
        f["lane_valid"][i] = True
        f["lane_on_route"][i] = bool(ln["on_route"])
        f["lane_is_connector"][i] = bool(ln["is_connector"])
        f["lane_speed_limit"][i] = float(ln["speed_limit"] or 0.0)

    # Drivable area: roadblocks, intersections, car parks (in that order, as the official map layers).
    g = 0
    for kind, key in ((S.DRIVABLE_ROADBLOCK, "roadblocks"), (S.DRIVABLE_INTERSECTION, "intersections"),
                      (S.DRIVABLE_CARPARK, "carparks")):
        for item in d.get(key) or []:
            if g >= spec.num_drivable:
                raise S.SceneError("drivable_polygons", f"at most {spec.num_drivable}", "more", where)
            f["drivable_polygons"][g], f["drivable_vertex_valid"][g] = S.pad_polygon(
                _poly(item["polygon"], where, key), spec.drivable_vertices, "drivable_polygons")
            f["drivable_valid"][g] = True
            f["drivable_kind"][g] = kind
            g += 1

    f["route"][:], f["route_valid"][:] = S.pad_polyline(d["route_centerline"], spec.route_points, "route")

    # Lights: connector polygons; 10 Hz states must be constant over each 0.5 s block.
    lights = d.get("traffic_lights") or []
    if len(lights) > spec.num_lights:
        raise S.SceneError("traffic_lights", f"at most {spec.num_lights}", f"{len(lights)}", where)
    for i, tl in enumerate(lights):
        lid = tl["lane_connector_id"]
        if lid not in lane_index:
            raise S.SceneError("traffic_lights", "a lane_connector_id naming a lane", repr(lid), where)
        red = np.asarray(tl["red"], bool)
        if red.shape != (S.T_FUT,) or np.any(red != np.repeat(red[::5], 5)[: S.T_FUT]):
            raise S.SceneError("traffic_lights.red", "41 states changing only at 0.5 s multiples",
                               f"{red.astype(int).tolist()}", where)
        j = lane_index[lid]
        f["light_polygons"][i] = f["lane_polygons"][j]
        f["light_vertex_valid"][i] = f["lane_vertex_valid"][j]
        f["light_valid"][i] = True
        f["light_on_route"][i] = f["lane_on_route"][j]
        f["light_red"][i] = red[::5]

    from irlvla_jax.scoring.metrics import MAX_ROUTE_LIGHTS
    n_route = int(np.sum(f["light_valid"] & f["light_on_route"]))
    if n_route > MAX_ROUTE_LIGHTS:
        raise S.SceneError("traffic_lights", f"at most {MAX_ROUTE_LIGHTS} lights on route connectors", f"{n_route}",
                           where)
    scene = S.Scene.from_dict(f, where)
    S.validate(scene, spec, where)
    props = np.asarray(d["proposals"], np.float32)
    prev = d.get("previous_proposals")
    prev = None if prev is None else np.asarray(prev, np.float32)
    return scene, props, prev


def load_vectors(folder: str, spec: S.SceneSpec = VECTOR_SPEC):
    """Read a vector folder -> (names [K], Scene batch [K], proposals [K, N, 8, 3], previous [K, N, 8, 3],
    has_previous [K] bool). Scenes without previous plans get zeros there (has_previous False)."""
    files = sorted(glob.glob(os.path.join(folder, "scenes", "*.json")))
    if not files:
        raise FileNotFoundError(f"no scenes/*.json under {folder!r} (expected the epdms_vectors layout)")
    names: List[str] = []
    scenes, props, prevs, has = [], [], [], []
    for fn in files:
        with open(fn) as fh:
            d = json.load(fh)
        name = os.path.basename(fn)
        sc, p, pv = convert_scene(d, spec, where=name)
        names.append(name)
        scenes.append(sc)
        props.append(p)
        has.append(pv is not None)
        prevs.append(np.zeros_like(p) if pv is None else pv)
    shapes = {p.shape for p in props}
    if len(shapes) != 1:
        raise S.SceneError("proposals", "the same number of proposals in every scene", f"{shapes}", folder)
    return names, S.stack(scenes), np.stack(props), np.stack(prevs), np.asarray(has)


def load_official(folder: str, mode: str) -> Dict:
    """``official_<mode>.json`` as a dict keyed by scene file name."""
    fn = os.path.join(folder, f"official_{mode}.json")
    if not os.path.exists(fn):
        raise FileNotFoundError(f"{fn} not found (mode {mode!r}; expected official_tracked.json / official_direct.json)")
    with open(fn) as fh:
        d = json.load(fh)
    return {s["scene"]: s for s in d["scenes"]}
