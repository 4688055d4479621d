"""Argoverse 2 sensor-dataset logs -> :class:`irlvla_jax.data.real.RealLog` -> Scene windows.

Read with pyarrow (feather) and json; the AV2 devkit (``av2``) is not needed. One log is a folder::

    <log_id>/annotations.feather (or annotations_with_ego.feather)   3D cuboid tracks, ~10 Hz
    <log_id>/city_SE3_egovehicle.feather                             ego poses, ~100-200 Hz
    <log_id>/map/log_map_archive_*.json                              vector map (city frame)

Conventions (see :mod:`irlvla_jax.data.real` for the windows):

* **Clock**: the annotation (LiDAR sweep) timestamps, ~10 Hz with sub-millisecond jitter, are put on a
  uniform 10 Hz grid from the first one (each to its nearest step; two on one step, or a gap of a whole
  step inside the log, is an error naming the file). Objects go to the city frame with the ego pose at
  their own sweep time; the ego is sampled on the uniform grid (so finite differences give its speed).
* **Ego**: AV2's ego-vehicle frame has its origin at the rear axle (x forward, y left), as NAVSIM's;
  ``city_SE3_egovehicle`` is interpolated (position linearly, yaw unwrapped) at each sweep time. Only yaw
  is kept (the scene is planar); pitch / roll are dropped.
* **Tracks**: cuboid centres are in the ego frame *of their timestamp*; they go to the city frame with
  the ego pose at that timestamp; heading = ego yaw + cuboid yaw. Box size: the track's median. Types:
  vehicles (``REGULAR_VEHICLE``, ``LARGE_VEHICLE``, ``BUS``, trucks, trailers, ``RAILED_VEHICLE``) ->
  vehicle; ``BICYCLE``, ``BICYCLIST``, ``MOTORCYCLE``, ``MOTORCYCLIST``, ``WHEELED_DEVICE``,
  ``WHEELED_RIDER`` -> bicycle; ``PEDESTRIAN``, ``STROLLER``, ``WHEELCHAIR``, ``OFFICIAL_SIGNALER``,
  ``DOG``, ``ANIMAL`` -> pedestrian; everything else (bollards, cones, barrels, signs, ...) -> static;
  ``EGO_VEHICLE`` rows are the ego itself and skipped.
* **Map**: a lane segment's polygon is its left boundary followed by its reversed right boundary (AV2
  orders boundaries in the driving direction); its centerline is the mean of the two boundaries resampled
  to the same arc-length fractions; ``is_intersection`` -> connector; ``successors`` kept; ``BIKE`` lanes
  are not ego lanes (dropped); AV2 has no speed limits (``speed_limit`` None; the window then assumes
  ``real.DEFAULT_SPEED_LIMIT``) and no traffic-light states (``lights`` None). Drivable areas ->
  drivable polygons; pedestrian crossings (``edge1``, ``edge2``) -> crosswalk quads; painted lane
  boundaries (``*_lane_mark_type``: solid / dashed white, yellow) -> camera markings.
"""
from __future__ import annotations

import glob
import json
import os
from typing import Dict, Iterator, List

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data import real
from irlvla_jax.data.navsim.geometry import quaternion_yaw, wrap_angle
from irlvla_jax.data.navsim.maps import MapArea, MapLane

ANNOTATION_COLUMNS = ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m",
                      "qw", "qx", "qy", "qz", "tx_m", "ty_m")
POSE_COLUMNS = ("timestamp_ns", "qw", "qx", "qy", "qz", "tx_m", "ty_m")
VEHICLES = ("REGULAR_VEHICLE", "LARGE_VEHICLE", "BUS", "BOX_TRUCK", "TRUCK", "TRUCK_CAB", "VEHICULAR_TRAILER",
            "SCHOOL_BUS", "ARTICULATED_BUS", "RAILED_VEHICLE")
CYCLES = ("BICYCLE", "BICYCLIST", "MOTORCYCLE", "MOTORCYCLIST", "WHEELED_DEVICE", "WHEELED_RIDER")
PEDESTRIANS = ("PEDESTRIAN", "STROLLER", "WHEELCHAIR", "OFFICIAL_SIGNALER", "DOG", "ANIMAL")
EGO_CATEGORY = "EGO_VEHICLE"
MARK_STYLE = {"SOLID_WHITE": 0, "DASHED_WHITE": 1, "DOUBLE_SOLID_WHITE": 0, "DOUBLE_DASH_WHITE": 1,
              "SOLID_YELLOW": 2, "DASHED_YELLOW": 2, "DOUBLE_SOLID_YELLOW": 2, "DOUBLE_DASH_YELLOW": 2,
              "SOLID_DASH_YELLOW": 2, "DASH_SOLID_YELLOW": 2, "SOLID_DASH_WHITE": 0, "DASH_SOLID_WHITE": 1}


def agent_type(category: str) -> int:
    """AV2 category -> ``scene.AGENT_*``."""
    return (S.AGENT_VEHICLE if category in VEHICLES else S.AGENT_BICYCLE if category in CYCLES else
            S.AGENT_PEDESTRIAN if category in PEDESTRIANS else S.AGENT_STATIC)


def _read_feather(path: str, columns) -> Dict[str, np.ndarray]:
    import pyarrow.feather as feather
    try:
        table = feather.read_table(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's data problem
        raise real.LogError(path, "(file)", f"not a readable feather table ({type(e).__name__}: {e})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise real.LogError(path, missing[0], f"missing column (has {table.column_names})")
    out = {c: table[c].to_numpy(zero_copy_only=False) for c in columns}
    for c in columns:
        if out[c].dtype.kind == "f" and not np.all(np.isfinite(out[c])):
            raise real.LogError(path, c, f"{int(np.sum(~np.isfinite(out[c])))} non-finite value(s)")
    return out


def _xy(points, path: str, field: str) -> np.ndarray:
    try:
        a = np.array([[float(p["x"]), float(p["y"])] for p in points], np.float64)
    except (TypeError, KeyError, ValueError):
        raise real.LogError(path, field, "expected a list of {x, y, z} points") from None
    if a.ndim != 2 or len(a) < 2 or not np.all(np.isfinite(a)):
        raise real.LogError(path, field, f"expected >= 2 finite points, found {len(a)}")
    return a


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    from irlvla_jax.data.navsim.geometry import arclength
    s = arclength(line)
    u = np.linspace(0.0, 1.0, n) * s[-1]
    return np.stack([np.interp(u, s, line[:, 0]), np.interp(u, s, line[:, 1])], -1)


def load_map(path: str):
    """An AV2 ``log_map_archive_*.json`` -> (lanes, drivable areas, crosswalks, markings), city frame."""
    try:
        with open(path) as fh:
            m = json.load(fh)
    except (OSError, ValueError) as e:
        raise real.LogError(path, "(file)", f"not a readable JSON map ({e})") from None
    for key in ("lane_segments", "drivable_areas", "pedestrian_crossings"):
        if not isinstance(m.get(key), dict):
            raise real.LogError(path, key, "missing (expected a dict of id -> object)")
    lanes, markings, seen = [], [], set()
    for lid, ls in m["lane_segments"].items():
        where = f"lane_segments[{lid}]"
        if ls.get("lane_type") == "BIKE":
            continue
        left = _xy(ls.get("left_lane_boundary"), path, where + ".left_lane_boundary")
        right = _xy(ls.get("right_lane_boundary"), path, where + ".right_lane_boundary")
        n = max(len(left), len(right))
        centre = 0.5 * (_resample(left, n) + _resample(right, n))
        lanes.append(MapLane(str(lid), np.concatenate([left, right[::-1]]), centre, "",
                             bool(ls.get("is_intersection", False)), None,
                             tuple(str(s) for s in ls.get("successors") or ())))
        for side, line in (("left", left), ("right", right)):
            style = MARK_STYLE.get(str(ls.get(f"{side}_lane_mark_type", "NONE")))
            key = tuple(np.round(np.concatenate([line[0], line[-1]]), 1))
            if style is not None and key not in seen and key[2:] + key[:2] not in seen:
                seen.add(key)
                markings.append(real.Marking(line, style))
    if not lanes:
        raise real.LogError(path, "lane_segments", "no vehicle lanes (a map needs lanes for the route)")
    drivable = [MapArea(str(k), _xy(a.get("area_boundary"), path, f"drivable_areas[{k}].area_boundary"))
                for k, a in m["drivable_areas"].items()]
    crosswalks = []
    for k, c in m["pedestrian_crossings"].items():
        e1 = _xy(c.get("edge1"), path, f"pedestrian_crossings[{k}].edge1")
        e2 = _xy(c.get("edge2"), path, f"pedestrian_crossings[{k}].edge2")
        crosswalks.append(np.stack([e1[0], e1[-1], e2[-1], e2[0]]))
    return lanes, drivable, crosswalks, markings


def _pose_interp(poses: Dict[str, np.ndarray], ts: np.ndarray, path: str) -> np.ndarray:
    """Ego (x, y, yaw) [n, 3] at times ``ts`` (ns) from the city_SE3_egovehicle table."""
    order = np.argsort(poses["timestamp_ns"], kind="stable")
    t = poses["timestamp_ns"][order].astype(np.float64)
    if ts.min() < t[0] - 5e7 or ts.max() > t[-1] + 5e7:
        raise real.LogError(path, "timestamp_ns", "the ego poses do not cover the annotated sweeps (> 50 ms)")
    yaw = np.unwrap([quaternion_yaw(q) for q in np.stack([poses[c][order] for c in ("qw", "qx", "qy", "qz")], -1)])
    x, y = poses["tx_m"][order], poses["ty_m"][order]
    tq = ts.astype(np.float64)
    return np.stack([np.interp(tq, t, x), np.interp(tq, t, y), wrap_angle(np.interp(tq, t, yaw))], -1)


def load_log(log_dir: str) -> real.RealLog:
    """One AV2 log folder -> RealLog (city frame, 10 Hz). Bad files raise ``real.LogError``."""
    log_dir = os.path.abspath(log_dir)
    name = os.path.basename(log_dir.rstrip("/"))
    ann_path = next((p for p in (os.path.join(log_dir, "annotations.feather"),
                                 os.path.join(log_dir, "annotations_with_ego.feather")) if os.path.exists(p)), None)
    if ann_path is None:
        raise real.LogError(log_dir, "annotations.feather", "missing (or annotations_with_ego.feather)")
    pose_path = os.path.join(log_dir, "city_SE3_egovehicle.feather")
    if not os.path.exists(pose_path):
        raise real.LogError(log_dir, "city_SE3_egovehicle.feather", "missing")
    maps = sorted(glob.glob(os.path.join(log_dir, "map", "log_map_archive_*.json")))
    if not maps:
        raise real.LogError(log_dir, "map/log_map_archive_*.json", "missing")
    ann = _read_feather(ann_path, ANNOTATION_COLUMNS)
    poses = _read_feather(pose_path, POSE_COLUMNS)
    stamps = np.unique(ann["timestamp_ns"])
    if len(stamps) < 2:
        raise real.LogError(ann_path, "timestamp_ns", f"{len(stamps)} distinct sweep time(s); need a track log")
    step = np.rint((stamps - stamps[0]) / 1e8).astype(np.int64)
    if np.any(np.diff(step) != 1):
        bad = int(np.nonzero(np.diff(step) != 1)[0][0])
        raise real.LogError(ann_path, "timestamp_ns", f"sweeps not on a 10 Hz clock near sweep {bad} "
                            f"(dt {np.diff(stamps)[bad] / 1e9:.3f} s)")
    n = len(stamps)
    ego_at_sweep = _pose_interp(poses, stamps, pose_path)
    k_of = {int(t): i for i, t in enumerate(stamps)}
    tracks: Dict[str, dict] = {}
    cats = ann["category"].astype(str)
    yaw = [quaternion_yaw(q) for q in np.stack([ann[c] for c in ("qw", "qx", "qy", "qz")], -1)]
    for r in range(len(cats)):
        if cats[r] == EGO_CATEGORY:
            continue
        k = k_of[int(ann["timestamp_ns"][r])]
        ex, ey, eh = ego_at_sweep[k]
        c, s = np.cos(eh), np.sin(eh)
        lx, ly = ann["tx_m"][r], ann["ty_m"][r]
        tr = tracks.setdefault(str(ann["track_uuid"][r]), {"cat": cats[r], "xyh": np.zeros((n, 3)),
                                                           "valid": np.zeros(n, bool), "size": []})
        tr["xyh"][k] = (ex + c * lx - s * ly, ey + s * lx + c * ly, wrap_angle(eh + yaw[r]))
        tr["valid"][k] = True
        tr["size"].append((ann["length_m"][r], ann["width_m"][r], ann["height_m"][r]))
    out_tracks: List[real.Track] = []
    for tid, tr in sorted(tracks.items()):
        L, W, H = np.median(np.asarray(tr["size"]), 0)
        if not (L > 0 and W > 0):
            raise real.LogError(ann_path, "length_m", f"track {tid}: non-positive box size ({L}, {W})")
        out_tracks.append(real.Track(tid, agent_type(tr["cat"]), float(L), float(W), float(H), tr["xyh"], tr["valid"]))
    lanes, drivable, crosswalks, markings = load_map(maps[0])
    ego = _pose_interp(poses, stamps[0] + np.arange(n) * 100_000_000, pose_path)     # on the uniform clock
    return real.RealLog(source="av2", name=name, path=log_dir, t=np.arange(n) * S.DT, ego=ego,
                        tracks=out_tracks, lanes=lanes, drivable=drivable, intersections=[],
                        crosswalks=crosswalks, markings=markings, lights=None)


def log_dirs(src: str) -> List[str]:
    """The AV2 log folders under ``src`` (``src`` itself if it is one), sorted."""
    def is_log(d):
        return os.path.isdir(os.path.join(d, "map")) and os.path.exists(os.path.join(d, "city_SE3_egovehicle.feather"))
    if is_log(src):
        return [src]
    if not os.path.isdir(src):
        raise FileNotFoundError(f"AV2 source {src!r} is not a folder")
    out = sorted(os.path.join(src, d) for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    if not out:
        raise FileNotFoundError(f"no AV2 log folders (<log_id>/map, city_SE3_egovehicle.feather) in {src!r}")
    return out


def iter_windows(src: str, spec: S.SceneSpec, *, stride: int = 5, progress: bool = False,
                 render: bool = True) -> Iterator[real.Window]:
    """Windows of every AV2 log under ``src`` (see :func:`real.log_windows`); a log that cannot be read yields
    one :func:`real.failed_log` window (``t0 = -1``) with the one-line LogError, and the others go on."""
    dirs = log_dirs(src)
    if progress:
        from tqdm import tqdm
        dirs = tqdm(dirs, desc="AV2 logs", unit="log")
    for d in dirs:
        try:
            log = load_log(d)
        except real.LogError as e:
            yield real.failed_log(os.path.basename(d.rstrip("/")), e)
            continue
        yield from real.log_windows(log, spec, stride=stride, render=render)

