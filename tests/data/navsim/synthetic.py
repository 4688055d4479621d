"""The synthetic NAVSIM log the navsim tests share, written in NAVSIM's own on-disk format at runtime.

The synthetic world is described in the frame F0 = the ego rear-axle frame at the t0 of scene 0, so
expected Scene values are simple numbers; the builder maps everything to a rotated, shifted map frame
and, per frame, into that frame's ego frame, as NAVSIM's logs store it.
"""
import math
import os
import pickle

import numpy as np

from irlvla_jax import scene as S

P0 = np.array([1200.0, -300.0, 0.6])      # F0 in the map frame
MAP = "us-ma-boston"
N_FRAMES = 15                              # 4 history + 10 future + 1 -> two scenes with frame_interval 1


def tiny_spec():
    """The SceneSpec of configs/tiny.py."""
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "..", "configs", "tiny.py")
    spec = importlib.util.spec_from_file_location("tiny_cfg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return S.SceneSpec.from_config(mod.get_config().scene)


SPEC = tiny_spec()


# The synthetic world, in F0 coordinates, as functions of time tau (s; tau = 0 is scene 0's t0).

def ego_f0(tau):
    """Ego rear-axle pose (x, y, heading) in F0 and body-frame dynamics (vx, vy, ax, ay)."""
    return np.array([8.0 * tau + 0.25 * tau ** 2, 0.05 * tau ** 2, 0.02 * tau]), \
        np.array([8.0 + 0.5 * tau, 0.0, 0.5, 0.0])


def agents_f0(tau):
    """{track: (name, (x, y, heading), (vx, vy), (length, width))} present at tau, in F0."""
    out = {"lead": ("vehicle", (12.0 + 10.0 * tau, 0.0, 0.0), (10.0, 0.0), (4.5, 2.0)),
           "cone": ("traffic_cone", (30.0, -2.0, 0.3), (float("nan"), float("nan")), (0.5, 0.5)),
           "ego_box": ("ego", (0.0, 0.0, 0.0), (0.0, 0.0), (5.2, 2.3))}
    if -1e-9 <= tau <= 2.0 + 1e-9:
        out["ped"] = ("pedestrian", (20.0, 6.0 - 1.2 * tau, -math.pi / 2), (0.0, -1.2), (0.8, 0.8))
    if abs(tau - 1.5) < 1e-9:
        out["bike"] = ("bicycle", (40.0, 3.0, 0.0), (4.0, 0.0), (1.8, 0.7))
    if tau >= 1.0 - 1e-9:
        out["late"] = ("vehicle", (-15.0 + 10.0 * (tau - 1.0), 3.6, 0.0), (10.0, 0.0), (4.8, 2.0))
    return out


def lights_f0(tau):
    """Traffic lights (lane_connector_id, is_red) at tau: C1 red from 1.0 s, C2 green."""
    return [("C1", tau >= 1.0 - 1e-9), ("C2", False)]


def compose(a, b):
    """Pose b given in the frame of pose a -> the frame a lives in."""
    c, s = np.cos(a[2]), np.sin(a[2])
    return np.array([a[0] + c * b[0] - s * b[1], a[1] + s * b[0] + c * b[1], b[2] + a[2]])


def inverse_apply(a, b):
    """Pose b (in a's parent frame) -> the frame of pose a."""
    c, s = np.cos(a[2]), np.sin(a[2])
    d = np.asarray(b[:2]) - a[:2]
    return np.array([c * d[0] + s * d[1], -s * d[0] + c * d[1], math.atan2(math.sin(b[2] - a[2]),
                                                                           math.cos(b[2] - a[2]))])


def rot(v, h):
    """Vector v [2] rotated by h (rad)."""
    c, s = np.cos(h), np.sin(h)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def make_frame(i, log="2021.06.03.12.02.06_veh-35_01100_01227", route=("RB1", "RBC1", "RB3")):
    """Frame i of the synthetic log, as a NAVSIM navsim_logs frame dict."""
    tau = 0.5 * (i - 3)
    pose_f0, dyn = ego_f0(tau)
    g = compose(P0, pose_f0)                                     # ego pose in the map frame
    q = [math.cos(g[2] / 2), 0.0, 0.0, math.sin(g[2] / 2)]       # (w, x, y, z), yaw only
    boxes, names, vels, tracks, inst = [], [], [], [], []
    for tid, (name, pose, vel, (length, width)) in sorted(agents_f0(tau).items()):
        local = inverse_apply(pose_f0, np.asarray(pose))          # F0 -> this frame's ego frame
        vloc = rot(np.asarray(vel), -pose_f0[2])
        boxes.append([local[0], local[1], 0.8, length, width, 1.6, local[2]])
        names.append(name)
        vels.append([vloc[0], vloc[1], 0.0])
        tracks.append(tid)
        inst.append(f"inst_{tid}_{i}")
    m = np.eye(4)
    m[:2, :2] = [[math.cos(g[2]), -math.sin(g[2])], [math.sin(g[2]), math.cos(g[2])]]
    m[:2, 3] = g[:2]
    return {
        "token": f"tok{i:02d}abcdef", "timestamp": 1622722926000000 + 500000 * i, "log_name": log,
        "scene_token": f"scn{i:02d}", "map_location": MAP, "roadblock_ids": list(route),
        "vehicle_name": "veh-35", "can_bus": np.zeros(18), "lidar_path": f"{log}/MergedPointCloud/{i}.pcd",
        "lidar2ego_translation": [1.5, 0.0, 1.8], "lidar2ego_rotation": [1.0, 0.0, 0.0, 0.0],
        "ego2global_translation": np.array([g[0], g[1], 0.0]), "ego2global_rotation": np.array(q),
        "ego2global": m, "ego_dynamic_state": list(dyn), "traffic_lights": lights_f0(tau),
        "driving_command": np.array([0, 1, 0, 0]), "cams": {"CAM_F0": {"data_path": f"{log}/CAM_F0/{i}.jpg"}},
        "sample_prev": None if i == 0 else f"tok{i - 1:02d}abcdef",
        "sample_next": None if i == N_FRAMES - 1 else f"tok{i + 1:02d}abcdef",
        "anns": {"gt_boxes": np.asarray(boxes, np.float32), "gt_names": np.asarray(names),
                 "gt_velocity_3d": np.asarray(vels, np.float32), "instance_tokens": inst,
                 "track_tokens": tracks},
    }


def build_log(path, n=N_FRAMES, **kw):
    """Write the synthetic log (n frames) as a navsim_logs pickle at path; return its frames."""
    frames = [make_frame(i, **kw) for i in range(n)]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(frames, fh)
    return frames


def to_map(points):
    """F0 points [k, 2] -> map frame lists."""
    return [compose(P0, [x, y, 0.0])[:2].tolist() for x, y in points]


def box(x0, x1, y0, y1):
    """An axis-aligned rectangle ring [[x, y] * 4] (counter-clockwise)."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def map_dict():
    """Map layers in the map frame: a 2+1-lane road, an intersection with two connectors, an exit road."""
    line = lambda x0, x1, y, n=30: [[x, y] for x in np.linspace(x0, x1, n)]  # noqa: E731
    circle = [[75 + 18 * math.cos(a), 18 * math.sin(a)] for a in np.linspace(0, 2 * math.pi, 60, endpoint=False)]
    arc = [[60 + 15 * math.sin(a), 3.6 + 15 * (1 - math.cos(a))] for a in np.linspace(0, math.pi / 2, 12)]
    lanes = [
        dict(id="L1", polygon=to_map(box(-80, 60, -1.8, 1.8)), centerline=to_map(line(-80, 60, 0.0)),
             roadblock_id="RB1", is_connector=False, speed_limit=13.4, successors=["C1"]),
        dict(id="L2", polygon=to_map(box(-80, 60, 1.8, 5.4)), centerline=to_map(line(-80, 60, 3.6)),
             roadblock_id="RB1", is_connector=False, speed_limit=13.4, successors=["C2"]),
        dict(id="L0", polygon=to_map(box(-80, 60, -5.4, -1.8)), centerline=to_map(line(60, -80, -3.6)),
             roadblock_id="RB0", is_connector=False, speed_limit=13.4, successors=[]),
        dict(id="C1", polygon=to_map(box(60, 90, -1.8, 1.8)), centerline=to_map(line(60, 90, 0.0, 5)),
             roadblock_id="RBC1", is_connector=True, speed_limit=None, successors=["L3"]),
        dict(id="C2", polygon=to_map([[x - 1.8, y] for x, y in arc] + [[x + 1.8, y] for x, y in arc[::-1]]),
             centerline=to_map(arc), roadblock_id="RBC2", is_connector=True, speed_limit=None, successors=[]),
        dict(id="L3", polygon=to_map(box(90, 250, -1.8, 1.8)), centerline=to_map(line(90, 250, 0.0)),
             roadblock_id="RB3", is_connector=False, speed_limit=15.0, successors=[]),
    ]
    return {MAP: {
        "lanes": lanes,
        "roadblocks": [dict(id="RB1", polygon=to_map(box(-80, 60, -1.8, 5.4))),
                       dict(id="RB0", polygon=to_map(box(-80, 60, -5.4, -1.8))),
                       dict(id="RB3", polygon=to_map(box(90, 250, -1.8, 1.8)))],
        "intersections": [dict(id="I1", polygon=to_map(circle))],
        "carparks": [dict(id="CP1", polygon=to_map(box(500, 540, 0, 30)))],
    }}
