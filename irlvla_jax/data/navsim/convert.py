"""NAVSIM log conversion: one scene's frame dicts (+ map layers) -> a validated :class:`irlvla_jax.scene.Scene`
(ego state, past and expert future, agents at 10 Hz, meta-action labels, map via :mod:`.scene_map`), and the
loops over a log file or a folder of logs.

Conversion (as NAVSIM's metric cache builds its inputs)
------------------------------------------------------
* Frame: the ego rear-axle frame at t0 (x forward, y left), metres, seconds, radians.
* ``ego_state`` = (0, 0, 0, vx, vy, ax, ay) at t0. ``ego_past`` [15]: the 2 Hz ego states at
  -1.5, -1.0, -0.5, 0 s interpolated linearly (heading unwrapped) to -1.5 ... -0.1 s, as NAVSIM's
  ``past_human_trajectory`` (an interpolated trajectory of those four states) is read at 10 Hz.
* ``expert_future`` [8, 3]: the ego poses of the 8 frames after t0 (0.5 ... 4.0 s) in the t0 frame.
* Agents: boxes of frames t0 ... t0 + 4 s (9 frames, 2 Hz) in the t0 frame, grouped by ``track_tokens``,
  interpolated linearly (heading unwrapped) to the 41 steps at 10 Hz between each track's first and last
  appearance; length / width from the first appearance; velocity rotated into the t0 frame, zero for
  static objects. NAVSIM quirk reproduced: a track seen in only **one** of the 9 frames is kept, unmoved,
  at **all** 41 steps. Types: vehicle, pedestrian, bicycle; traffic_cone, barrier, czone_sign and
  generic_object -> static. More tracks than ``spec.num_agents``: those present at t0 first, then by
  distance to the ego; the rest are dropped.
* Map (from a :class:`~irlvla_jax.data.navsim.maps.MapLayers` provider, queried within ``map_radius`` of
  the ego): lanes, drivable polygons, lights and the route centerline as :mod:`.scene_map` builds them;
  the route is then cropped to ``route_behind`` m behind and ``route_ahead`` m ahead of the ego. Without
  a provider the map stays empty and the route is the ego's own past + expert path.
* Not filled (zeros): camera, lidar, bev_semantic, instruction. ``family`` is a heuristic
  (intersection if an on-route connector is in the crop, curve if the route turns > 0.5 rad ahead, else
  cruise_lead); ``meta_speed`` / ``meta_path`` come from the expert's speed and path through the world's
  labellers (:func:`irlvla_jax.scene.meta_path_label` with a 2.5 m lane-change threshold on the final
  lateral offset); ``scene_id`` = crc32 of the token (31 bits) unless given.
"""
from __future__ import annotations

import os
import zlib
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data.navsim.geometry import (crop_polyline, fit_polyline, interp_states, project_on_polyline,
                                             relative_pose, wrap_angle)
from irlvla_jax.data.navsim.logs import (AGENT_TYPE_OF_NAME, FRAME_DT, NUM_FUTURE, NUM_HISTORY, SKIPPED_NAMES,
                                         frame_annotations, frame_command, frame_ego_pose, frame_field,
                                         frame_lights, frame_numbers, load_log, split_log)
from irlvla_jax.data.navsim.maps import MapLayers
from irlvla_jax.data.navsim.scene_map import fill_map

MAP_RADIUS = 100.0      # metres, NAVSIM's metric-cache map radius


def _agents(frames, token, t0_idx, poses_rel, spec: S.SceneSpec):
    """Tracks over the 9 frames t0 ... t0+4 s -> (boxes [A,41,5], vel [A,41,2], type [A], valid [A,41])."""
    tracks: Dict[str, Dict[str, Any]] = {}
    n_key = S.N_POSES + 1
    for k in range(n_key):
        idx = t0_idx + k
        boxes, names, vel, tids = frame_annotations(frames[idx], token, idx)
        rel = poses_rel[k]                       # ego pose of frame idx in the t0 frame
        c, s = np.cos(rel[2]), np.sin(rel[2])
        for b, name, v, tid in zip(boxes, names, vel, tids):
            if name in SKIPPED_NAMES:
                continue
            typ = AGENT_TYPE_OF_NAME[name]
            x, y = rel[0] + c * b[0] - s * b[1], rel[1] + s * b[0] + c * b[1]
            h = wrap_angle(rel[2] + b[6])
            vx, vy = (c * v[0] - s * v[1], s * v[0] + c * v[1]) if typ != S.AGENT_STATIC else (0.0, 0.0)
            tr = tracks.setdefault(tid, {"type": typ, "size": (b[3], b[4]), "t": [], "st": []})
            tr["t"].append(k * FRAME_DT)
            tr["st"].append([x, y, h, vx, vy])
    t_fine = np.arange(S.T_FUT) * S.DT
    rows = []
    for tid, tr in tracks.items():
        t_obs, st = np.asarray(tr["t"]), np.asarray(tr["st"], np.float64)
        out = np.zeros((S.T_FUT, 5))
        valid = np.zeros(S.T_FUT, bool)
        if len(t_obs) == 1:       # NAVSIM quirk: a single sighting is kept, unmoved, at every step
            out[:] = st[0]
            valid[:] = True
        else:
            valid = (t_fine >= t_obs[0] - 1e-9) & (t_fine <= t_obs[-1] + 1e-9)
            out[valid] = interp_states(t_obs, st, t_fine[valid])
        first = int(np.argmax(valid))
        rows.append((not valid[0], float(np.hypot(*out[first, :2])), tid, tr, out, valid))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    A = spec.num_agents
    boxes = np.zeros((A, S.T_FUT, 5), np.float32)
    boxes[..., 3:5] = 1.0
    vel = np.zeros((A, S.T_FUT, 2), np.float32)
    typ = np.zeros(A, np.int32)
    valid = np.zeros((A, S.T_FUT), bool)
    for i, (_, _, tid, tr, out, vmask) in enumerate(rows[:A]):
        L, W = tr["size"]
        if not (L > 0 and W > 0):
            raise S.SceneError("anns.gt_boxes", "length, width > 0", f"({L}, {W}) for track {tid}",
                               f"NAVSIM scene {token}")
        boxes[i, :, :3] = np.where(vmask[:, None], out[:, :3], 0.0)
        boxes[i, :, 3:5] = (L, W)
        vel[i] = np.where(vmask[:, None], out[:, 3:5], 0.0)
        typ[i] = tr["type"]
        valid[i] = vmask
    return boxes, vel, typ, valid


def _meta_labels(ego_xyh_future: np.ndarray, v0: float, v4: float, vmin: float) -> Tuple[int, int]:
    """(meta_speed, meta_path) indices of the expert: speeds at t0 / 4 s / minimum, final pose in the t0 frame."""
    return (S.meta_speed_label(v0, v4, vmin),
            S.meta_path_label(float(wrap_angle(ego_xyh_future[-1, 2])), float(ego_xyh_future[-1, 1]), 2.5))


def scene_id_of(token: str) -> int:
    """A deterministic 31-bit integer id for a NAVSIM token (crc32)."""
    return zlib.crc32(str(token).encode()) & 0x7FFFFFFF


def convert_scene(frames: Sequence[Mapping[str, Any]], spec: S.SceneSpec, maps: Optional[MapLayers], *,
                  num_history: int = NUM_HISTORY, split: str = "test", scene_id: Optional[int] = None,
                  family: Optional[str] = None, map_radius: float = MAP_RADIUS, route_behind: float = 60.0,
                  route_ahead: float = 140.0) -> S.Scene:
    """One NAVSIM scene (its window of frame dicts, t0 = ``frames[num_history - 1]``) -> a validated Scene.

    Needs ``num_history >= 4`` (the 1.5 s past) and at least 8 frames after t0 (the 4 s future). ``maps``
    gives the map layers; ``None`` leaves the map empty and uses the ego's own past + expert path as the
    route (enough for imitation on ego / agents, not for DAC / DDC / TLC / LK scoring). Bad input raises a
    SceneError naming the token and the field (``frames[i].key``).
    """
    if num_history < 4:
        raise ValueError(f"num_history must be >= 4 (the 1.5 s ego past at 2 Hz), got {num_history}")
    if split not in S.SPLITS:
        raise ValueError(f"split must be one of {S.SPLITS}, got {split!r}")
    t0 = num_history - 1
    token = str(frames[t0]["token"]) if len(frames) > t0 and "token" in frames[t0] else "?"
    where = f"NAVSIM scene {token}"
    if len(frames) < t0 + 1 + S.N_POSES:
        raise S.SceneError("frames", f">= {t0 + 1 + S.N_POSES} frames ({num_history} history + 8 future)",
                           f"{len(frames)}", where)
    f = {k: v.copy() for k, v in S.empty_scene(spec).to_dict().items()}

    # Ego: poses of the 4 past/current frames and the 8 future ones, in the t0 frame.
    idxs = list(range(t0 - 3, t0 + 1 + S.N_POSES))
    poses = np.stack([frame_ego_pose(frames[i], token, i) for i in idxs])
    origin = poses[3]
    rel = relative_pose(poses, origin)
    dyn = np.stack([frame_numbers(frames[i], "ego_dynamic_state", token, i, (4,)) for i in idxs])
    f["ego_state"][:] = [0.0, 0.0, 0.0, *dyn[3]]
    past = np.concatenate([rel[:4], dyn[:4]], -1)                        # t = -1.5, -1, -0.5, 0
    f["ego_past"][:] = interp_states(np.arange(-3, 1) * FRAME_DT, past, np.arange(-15, 0) * S.DT)
    f["expert_future"][:] = rel[4:]
    f["command"][:] = frame_command(frames[t0], token, t0)
    speed = np.hypot(dyn[:, 0], dyn[:, 1])
    f["meta_speed"][...], f["meta_path"][...] = _meta_labels(rel[4:], speed[3], speed[-1], speed[3:].min())

    # Agents at 10 Hz.
    f["agent_boxes"][:], f["agent_velocity"][:], f["agent_type"][:], f["agent_valid"][:] = _agents(
        frames, token, t0, rel[3:], spec)

    # Map.
    route_ids = [str(r) for r in (frame_field(frames[t0], "roadblock_ids", token, t0) or [])]
    fam = "cruise_lead"
    if maps is None:
        route = np.concatenate([rel[:4, :2], rel[4:, :2]], 0)
        d = np.linalg.norm(route[-1] - route[0])
        if d < 1.0:   # a standing ego: a short straight route along its heading
            route = np.array([[-route_behind, 0.0], [route_ahead, 0.0]])
    else:
        map_name = str(frame_field(frames[t0], "map_location", token, t0))
        q = maps.query(map_name, float(origin[0]), float(origin[1]), float(map_radius), route_ids)
        lights_t = [frame_lights(frames[t0 + k], token, t0 + k) for k in range(S.N_LIGHT)]
        route, fam = fill_map(f, spec, q, route_ids, origin, lights_t, where, map_radius)
        s_ego, _ = project_on_polyline(route, np.zeros(2)) if len(route) >= 2 else (0.0, 0.0)
        route = crop_polyline(route, s_ego - route_behind, s_ego + route_ahead)
    f["route"][:], f["route_valid"][:] = S.pad_polyline(fit_polyline(route, spec.route_points),
                                                        spec.route_points, "route")
    f["split"][...] = S.SPLITS.index(split)
    f["family"][...] = S.FAMILIES.index(family or fam)
    f["scene_id"][...] = scene_id_of(token) if scene_id is None else int(scene_id)
    return S.validate(S.Scene.from_dict(f, where), spec, where)


def convert_log(path: str, spec: S.SceneSpec, maps: Optional[MapLayers], *, num_history: int = NUM_HISTORY,
                num_future: int = NUM_FUTURE, frame_interval: int = 1, tokens: Optional[Sequence[str]] = None,
                **kw) -> Tuple[List[str], S.Scene]:
    """Every scene of one log pickle -> (tokens, stacked Scene batch). ``tokens`` keeps only those."""
    scenes = split_log(load_log(path), num_history, num_future, frame_interval)
    wanted = None if tokens is None else set(tokens)
    keep = [t for t in scenes if wanted is None or t in wanted]
    if not keep:
        raise ValueError(f"{path}: no scene (of {len(scenes)}) left after the token filter")
    out = [convert_scene(scenes[t], spec, maps, num_history=num_history, **kw) for t in keep]
    return keep, S.stack(out)


def iter_scenes(log_dir: str, spec: S.SceneSpec, maps: Optional[MapLayers], *, num_history: int = NUM_HISTORY,
                num_future: int = NUM_FUTURE, frame_interval: int = 1, tokens: Optional[Sequence[str]] = None,
                progress: bool = True, **kw) -> Iterator[Tuple[str, S.Scene]]:
    """Yield (token, Scene) for every scene of every ``*.pkl`` log in ``log_dir`` (sorted), with tqdm."""
    files = sorted(fn for fn in os.listdir(log_dir) if fn.endswith(".pkl"))
    if not files:
        raise FileNotFoundError(f"no *.pkl logs in {log_dir!r} (expected navsim_logs/<split>/)")
    wanted = None if tokens is None else set(tokens)
    it = files
    if progress:
        from tqdm import tqdm
        it = tqdm(files, desc="NAVSIM logs", unit="log")
    for fn in it:
        for tok, win in split_log(load_log(os.path.join(log_dir, fn)), num_history, num_future,
                                  frame_interval).items():
            if wanted is None or tok in wanted:
                yield tok, convert_scene(win, spec, maps, num_history=num_history, **kw)
