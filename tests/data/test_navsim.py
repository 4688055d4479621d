"""NAVSIM adapter tests on a synthetic log written in NAVSIM's own on-disk format (built here, at runtime).

The synthetic world is described in the frame F0 = the ego rear-axle frame at the t0 of scene 0, so
expected Scene values are simple numbers; the builder maps everything to a rotated, shifted map frame
and, per frame, into that frame's ego frame, as NAVSIM's logs store it.
"""
import importlib.abc
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import navsim as N

P0 = np.array([1200.0, -300.0, 0.6])      # F0 in the map frame
MAP = "us-ma-boston"
N_FRAMES = 15                              # 4 history + 10 future + 1 -> two scenes with frame_interval 1


def tiny_spec():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.py")
    spec = importlib.util.spec_from_file_location("tiny_cfg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return S.SceneSpec.from_config(mod.get_config().scene)


SPEC = tiny_spec()


# ------------------------------------------------------------------------------------------------
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
    frames = [make_frame(i, **kw) for i in range(n)]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(frames, fh)
    return frames


def _g(points):
    """F0 points [k, 2] -> map frame lists."""
    return [compose(P0, [x, y, 0.0])[:2].tolist() for x, y in points]


def _box(x0, x1, y0, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def map_dict():
    """Map layers in the map frame: a 2+1-lane road, an intersection with two connectors, an exit road."""
    line = lambda x0, x1, y, n=30: [[x, y] for x in np.linspace(x0, x1, n)]  # noqa: E731
    circle = [[75 + 18 * math.cos(a), 18 * math.sin(a)] for a in np.linspace(0, 2 * math.pi, 60, endpoint=False)]
    arc = [[60 + 15 * math.sin(a), 3.6 + 15 * (1 - math.cos(a))] for a in np.linspace(0, math.pi / 2, 12)]
    lanes = [
        dict(id="L1", polygon=_g(_box(-80, 60, -1.8, 1.8)), centerline=_g(line(-80, 60, 0.0)), roadblock_id="RB1",
             is_connector=False, speed_limit=13.4, successors=["C1"]),
        dict(id="L2", polygon=_g(_box(-80, 60, 1.8, 5.4)), centerline=_g(line(-80, 60, 3.6)), roadblock_id="RB1",
             is_connector=False, speed_limit=13.4, successors=["C2"]),
        dict(id="L0", polygon=_g(_box(-80, 60, -5.4, -1.8)), centerline=_g(line(60, -80, -3.6)),
             roadblock_id="RB0", is_connector=False, speed_limit=13.4, successors=[]),
        dict(id="C1", polygon=_g(_box(60, 90, -1.8, 1.8)), centerline=_g(line(60, 90, 0.0, 5)), roadblock_id="RBC1",
             is_connector=True, speed_limit=None, successors=["L3"]),
        dict(id="C2", polygon=_g([[x - 1.8, y] for x, y in arc] + [[x + 1.8, y] for x, y in arc[::-1]]),
             centerline=_g(arc), roadblock_id="RBC2", is_connector=True, speed_limit=None, successors=[]),
        dict(id="L3", polygon=_g(_box(90, 250, -1.8, 1.8)), centerline=_g(line(90, 250, 0.0)), roadblock_id="RB3",
             is_connector=False, speed_limit=15.0, successors=[]),
    ]
    return {MAP: {
        "lanes": lanes,
        "roadblocks": [dict(id="RB1", polygon=_g(_box(-80, 60, -1.8, 5.4))),
                       dict(id="RB0", polygon=_g(_box(-80, 60, -5.4, -1.8))),
                       dict(id="RB3", polygon=_g(_box(90, 250, -1.8, 1.8)))],
        "intersections": [dict(id="I1", polygon=_g(circle))],
        "carparks": [dict(id="CP1", polygon=_g(_box(500, 540, 0, 30)))],
    }}


@pytest.fixture()
def log_path(tmp_path):
    path = str(tmp_path / "navsim_logs" / "test" / "2021.06.03.12.02.06_veh-35_01100_01227.pkl")
    build_log(path)
    return path


@pytest.fixture()
def scene0(log_path):
    frames = N.load_log(log_path)
    return N.convert_scene(frames[:14], SPEC, N.DictMapLayers(map_dict()), split="test")


# ------------------------------------------------------------------------------------------------

def test_log_converts_to_two_valid_scenes(log_path):
    tokens, batch = N.convert_log(log_path, SPEC, N.DictMapLayers(map_dict()), split="test")
    assert tokens == ["tok03abcdef", "tok04abcdef"]          # t0 = frame num_history - 1 of each window
    S.validate(batch, SPEC, batch_dims=1)
    assert batch.ego_state.shape == (2, 7)
    assert list(batch.scene_id) == [N.scene_id_of(t) for t in tokens]
    assert len(set(batch.scene_id.tolist())) == 2
    # The second scene's t0 is 0.5 s later: its expert future is the first one's, re-based.
    p05, _ = ego_f0(0.5)
    expect = np.stack([inverse_apply(p05, ego_f0(0.5 + 0.5 * k)[0]) for k in range(1, 9)])
    np.testing.assert_allclose(batch.expert_future[1], expect, atol=2e-4)


def test_split_log_filters_like_navsim():
    frames = [make_frame(i) for i in range(N_FRAMES)]
    frames[4]["roadblock_ids"] = []                           # the second window's t0 has no route
    scenes = N.split_log(frames)
    assert list(scenes) == ["tok03abcdef"]
    assert len(scenes["tok03abcdef"]) == 14
    assert list(N.split_log(frames, has_route=False)) == ["tok03abcdef", "tok04abcdef"]
    assert N.split_log(frames[:13]) == {}                     # too short


def test_ego_history_and_expert_future(scene0):
    expect = np.stack([ego_f0(0.5 * k)[0] for k in range(1, 9)])
    np.testing.assert_allclose(scene0.expert_future, expect, atol=2e-4)
    np.testing.assert_allclose(scene0.ego_state, [0, 0, 0, 8.0, 0.0, 0.5, 0.0], atol=1e-6)
    # ego_past: the 2 Hz states hit exactly at -1.5, -1.0, -0.5; linear in between.
    for row, tau in ((0, -1.5), (5, -1.0), (10, -0.5)):
        pose, dyn = ego_f0(tau)
        np.testing.assert_allclose(scene0.ego_past[row], np.concatenate([pose, dyn]), atol=2e-4)
    a, b = ego_f0(-0.5)[0], ego_f0(0.0)[0]
    np.testing.assert_allclose(scene0.ego_past[13, :3], a + (b - a) * 0.6, atol=2e-4)   # t = -0.2 s
    np.testing.assert_allclose(scene0.command, [0, 1, 0, 0])
    np.testing.assert_allclose(scene0.ego_history[:, 0], [ego_f0(t)[0][0] for t in (-1.5, -1.0, -0.5, 0.0)],
                               atol=2e-4)
    assert S.META_SPEED[int(scene0.meta_speed)] == "accelerate"          # 8 -> 10 m/s


def test_agents_hand_checked(scene0):
    types = scene0.agent_type
    valid = scene0.agent_valid
    # Order: present at t0 first, by distance: lead (12 m), ped (~20.9 m), cone (30 m), bike (40 m), late.
    lead, ped, cone, bike, late = range(5)
    assert [S.AGENT_TYPES[t] for t in types[:5]] == ["vehicle", "pedestrian", "static", "bicycle", "vehicle"]
    assert not valid[5:].any()                                            # the 'ego' box is not an agent
    # Lead: hand-checked at t = 0 and (interpolated) t = 0.3 s.
    np.testing.assert_allclose(scene0.agent_boxes[lead, 0], [12.0, 0.0, 0.0, 4.5, 2.0], atol=2e-4)
    np.testing.assert_allclose(scene0.agent_boxes[lead, 3], [15.0, 0.0, 0.0, 4.5, 2.0], atol=2e-4)
    np.testing.assert_allclose(scene0.agent_boxes[lead, 40], [52.0, 0.0, 0.0, 4.5, 2.0], atol=2e-4)
    np.testing.assert_allclose(scene0.agent_velocity[lead, 17], [10.0, 0.0], atol=2e-4)
    assert valid[lead].all()
    # Pedestrian: seen from 0 to 2.0 s -> valid at steps 0..20 only, heading -pi/2, walking -y.
    assert valid[ped, :21].all() and not valid[ped, 21:].any()
    np.testing.assert_allclose(scene0.agent_boxes[ped, 10, :3], [20.0, 4.8, -math.pi / 2], atol=2e-4)
    np.testing.assert_allclose(scene0.agent_velocity[ped, 10], [0.0, -1.2], atol=2e-4)
    # Cone: static, NaN velocity in the log is ignored, zero velocity.
    np.testing.assert_allclose(scene0.agent_boxes[cone, 22], [30.0, -2.0, 0.3, 0.5, 0.5], atol=2e-4)
    assert np.all(scene0.agent_velocity[cone] == 0)
    # Bicycle seen once (t = 1.5 s): NAVSIM keeps it, unmoved, at every step.
    assert valid[bike].all()
    np.testing.assert_allclose(scene0.agent_boxes[bike, 0, :3], [40.0, 3.0, 0.0], atol=2e-4)
    np.testing.assert_allclose(scene0.agent_boxes[bike, 40, :3], [40.0, 3.0, 0.0], atol=2e-4)
    # Late vehicle: appears at 1.0 s.
    assert not valid[late, :10].any() and valid[late, 10:].all()
    np.testing.assert_allclose(scene0.agent_boxes[late, 25, :2], [0.0, 3.6], atol=2e-4)


def test_agents_cropped_to_spec(log_path):
    import dataclasses
    small = dataclasses.replace(SPEC, num_agents=3)
    sc = N.convert_scene(N.load_log(log_path)[:14], small, N.DictMapLayers(map_dict()))
    S.validate(sc, small)
    np.testing.assert_allclose(sc.agent_boxes[:, 0, 0], [12.0, 20.0, 30.0], atol=2e-4)   # lead, ped, cone


def test_map_layers(scene0):
    lanes = {}
    for i in np.flatnonzero(scene0.lane_valid):
        poly = scene0.lane_polygons[i][scene0.lane_vertex_valid[i]]
        lanes[i] = poly
    on = scene0.lane_on_route[scene0.lane_valid]
    conn = scene0.lane_is_connector[scene0.lane_valid]
    assert scene0.lane_valid.sum() == 6 and on.sum() == 4 and conn.sum() == 2
    # On-route lanes come first; the ego lane L1 polygon is back in F0 coordinates.
    assert scene0.lane_on_route[:4].all() and not scene0.lane_on_route[4:6].any()
    l1 = [p for p in lanes.values() if len(p) == 4
          and np.allclose(np.sort(p[:, 1]), [-1.8, -1.8, 1.8, 1.8], atol=1e-3)
          and p[:, 0].min() < -79]
    assert len(l1) == 1
    np.testing.assert_allclose(np.sort(l1[0][:, 0]), [-80, -80, 60, 60], atol=1e-3)
    # Centerlines of 30 points are resampled to the spec's 16 and keep their end points.
    row = int(np.flatnonzero(scene0.lane_valid & ~scene0.lane_is_connector & scene0.lane_on_route)[0])
    assert scene0.lane_point_valid[row].sum() == SPEC.lane_points
    # Drivable: 3 roadblocks, then the intersection (60 vertices reduced to 32, area kept); car park too far.
    kinds = scene0.drivable_kind[scene0.drivable_valid].tolist()
    assert kinds == [S.DRIVABLE_ROADBLOCK] * 3 + [S.DRIVABLE_INTERSECTION]
    inter = scene0.drivable_polygons[3][scene0.drivable_vertex_valid[3]]
    assert len(inter) == SPEC.drivable_vertices
    x, y = inter[:, 0], inter[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert 0.97 * math.pi * 18 ** 2 < area <= math.pi * 18 ** 2
    # Lights: C1 (on route) red from 1.0 s, C2 (off route) green.
    assert scene0.light_valid.sum() == 2
    assert scene0.light_on_route.tolist()[:2] == [True, False]
    assert scene0.light_red[0].tolist() == [False, False, True, True, True, True, True, True, True]
    assert not scene0.light_red[1].any()
    np.testing.assert_allclose(np.sort(scene0.light_polygons[0][scene0.light_vertex_valid[0]][:, 0]),
                               [60, 60, 90, 90], atol=1e-3)
    # Route: L1 -> C1 -> L3 along y = 0, cropped to 60 m behind and 140 m ahead.
    r = scene0.route[scene0.route_valid]
    np.testing.assert_allclose(r[:, 1], 0.0, atol=1e-3)
    np.testing.assert_allclose([r[0, 0], r[-1, 0]], [-60.0, 140.0], atol=1e-3)
    assert S.FAMILIES[int(scene0.family)] == "intersection"
    assert float(scene0.speed_limit) == pytest.approx(13.4)


def test_json_map_provider_matches_dict(tmp_path, log_path, scene0):
    import json
    p = tmp_path / "maps.json"
    p.write_text(json.dumps(map_dict()))
    sc = N.convert_scene(N.load_log(log_path)[:14], SPEC, N.DictMapLayers.from_json(str(p)))
    for name in S.FIELDS:
        np.testing.assert_array_equal(getattr(sc, name), getattr(scene0, name), err_msg=name)
    with pytest.raises(KeyError, match="us-nv-pittsburgh"):
        N.DictMapLayers(map_dict()).query("us-nv-pittsburgh", 0, 0, 10)


def test_without_maps_route_follows_ego(log_path):
    sc = N.convert_scene(N.load_log(log_path)[:14], SPEC, None)
    S.validate(sc, SPEC)
    assert not sc.lane_valid.any() and not sc.drivable_valid.any()
    r = sc.route[sc.route_valid]
    assert r[0, 0] < -10 and r[-1, 0] > 30                    # past -> future of the ego


def _err(frames, **kw):
    with pytest.raises(S.SceneError) as e:
        N.convert_scene(frames, SPEC, N.DictMapLayers(map_dict()), **kw)
    return str(e.value)


def test_bad_records_name_token_and_field():
    base = [make_frame(i) for i in range(14)]
    f = [dict(x) for x in base]
    del f[5]["ego_dynamic_state"]
    msg = _err(f)
    assert "tok03abcdef" in msg and "frames[5].ego_dynamic_state" in msg and "missing" in msg
    f = [dict(x) for x in base]
    f[6]["anns"] = dict(f[6]["anns"], gt_boxes=f[6]["anns"]["gt_boxes"].copy())
    f[6]["anns"]["gt_boxes"][1, 0] = np.nan
    msg = _err(f)
    assert "tok03abcdef" in msg and "frames[6].anns.gt_boxes" in msg and "finite" in msg
    f = [dict(x) for x in base]
    f[3]["ego2global_translation"] = [1.0, float("inf"), 0.0]
    assert "frames[3].ego2global_translation" in _err(f)
    f = [dict(x) for x in base]
    names = f[4]["anns"]["gt_names"].copy().astype(object)
    names[0] = "spaceship"
    f[4]["anns"] = dict(f[4]["anns"], gt_names=names)
    assert "frames[4].anns.gt_names" in _err(f) and "spaceship" in _err(f)
    f = [dict(x) for x in base]
    vel = f[4]["anns"]["gt_velocity_3d"].copy()
    vel[list(f[4]["anns"]["track_tokens"]).index("lead"), 0] = np.nan   # a vehicle needs a velocity
    f[4]["anns"] = dict(f[4]["anns"], gt_velocity_3d=vel)
    assert "frames[4].anns.gt_velocity_3d" in _err(f)
    f = [dict(x) for x in base]
    f[7]["anns"] = dict(f[7]["anns"], gt_boxes=f[7]["anns"]["gt_boxes"][:, :6])
    msg = _err(f)
    assert "frames[7].anns.gt_boxes" in msg and "shape (N, 7)" in msg
    f = [dict(x) for x in base]
    f[2]["ego_dynamic_state"] = [1.0, 0.0, 0.0]
    assert "frames[2].ego_dynamic_state" in _err(f) and "shape (4,)" in _err(f)
    f = [dict(x) for x in base]
    f[3]["driving_command"] = [1, 1, 0, 0]
    assert "frames[3].driving_command" in _err(f)
    assert "frames" in _err(base[:10]) and "tok03abcdef" in _err(base[:10])   # too few frames
    f = [dict(x) for x in base]
    f[3]["roadblock_ids"] = ["RB_elsewhere"]
    msg = _err(f)
    assert "route" in msg and "tok03abcdef" in msg


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("navsim", "nuplan", "pyquaternion"):
            self.attempts.append(name)
            raise ImportError(f"blocked import of {name}")
        return None


def test_devkit_free_path_never_imports_navsim(log_path, tmp_path):
    blocker = _Blocker()
    before = set(sys.modules)
    sys.meta_path.insert(0, blocker)
    try:
        tokens, batch = N.convert_log(log_path, SPEC, N.DictMapLayers(map_dict()))
        out = N.write_submission(str(tmp_path / "sub.pkl"), dict(zip(tokens, batch.expert_future)),
                                 team_name="t", authors=["a"], email="a@b.c", institution="i", country="c")
        N.read_submission(out)
    finally:
        sys.meta_path.remove(blocker)
    assert blocker.attempts == []
    assert not [m for m in set(sys.modules) - before if m.split(".")[0] in ("navsim", "nuplan")]


def test_devkit_import_error_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "nuplan", None)          # makes `import nuplan.*` fail
    with pytest.raises(ImportError) as e:
        N.DevkitMapLayers(map_root="/nonexistent")
    msg = str(e.value)
    assert 'pip install -e ".[navsim]"' in msg
    assert "git clone https://github.com/autonomousvision/navsim" in msg and "nuplan-devkit" in msg


def _fake_devkit(monkeypatch):
    """Stand-in navsim / nuplan modules with Trajectory and TrajectorySampling, as a devkit unpickle sees."""
    import dataclasses

    @dataclasses.dataclass
    class TrajectorySampling:
        num_poses: int = None
        time_horizon: float = None
        interval_length: float = None

    @dataclasses.dataclass
    class Trajectory:
        poses: np.ndarray
        trajectory_sampling: TrajectorySampling = None

    mods = {}
    for name in ("navsim", "navsim.common", "navsim.common.dataclasses", "nuplan", "nuplan.planning",
                 "nuplan.planning.simulation", "nuplan.planning.simulation.trajectory",
                 "nuplan.planning.simulation.trajectory.trajectory_sampling"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])
    Trajectory.__module__, Trajectory.__qualname__ = "navsim.common.dataclasses", "Trajectory"
    TrajectorySampling.__qualname__ = "TrajectorySampling"
    TrajectorySampling.__module__ = "nuplan.planning.simulation.trajectory.trajectory_sampling"
    mods["navsim.common.dataclasses"].Trajectory = Trajectory
    mods["nuplan.planning.simulation.trajectory.trajectory_sampling"].TrajectorySampling = TrajectorySampling
    return Trajectory, TrajectorySampling


def test_submission_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    preds = {f"tok{i}": rng.normal(size=(8, 3)).astype(np.float32) for i in range(3)}
    stage2 = {"synth01": rng.normal(size=(8, 3))}
    path = str(tmp_path / "out" / "submission.pkl")
    kw = dict(team_name="irlvla", authors=["A. Author", "B. Author"], email="a@b.c", institution="Lab",
              country="Germany")
    N.write_submission(path, preds, second_stage=stage2, **kw)
    assert os.listdir(tmp_path / "out") == ["submission.pkl"]            # no temp file left behind
    sub = N.read_submission(path)
    assert sub["team_name"] == "irlvla" and sub["country / region"] == "Germany"
    assert sub["authors"] == ["A. Author", "B. Author"]
    assert len(sub["first_stage_predictions"]) == 1 and set(sub["first_stage_predictions"][0]) == set(preds)
    for t, p in preds.items():
        np.testing.assert_array_equal(sub["first_stage_predictions"][0][t], p)
    np.testing.assert_allclose(sub["second_stage_predictions"][0]["synth01"], stage2["synth01"], rtol=1e-6)
    # NAVSIM v1 layout.
    N.write_submission(path, preds, version="v1", **kw)
    sub1 = N.read_submission(path)
    assert "first_stage_predictions" not in sub1 and set(sub1["predictions"][0]) == set(preds)
    # What the devkit's plain pickle.load sees: real Trajectory objects with 8 poses at 0.5 s.
    Traj, TS = _fake_devkit(monkeypatch)
    with open(path, "rb") as fh:
        raw = pickle.load(fh)
    tr = raw["predictions"][0]["tok1"]
    assert isinstance(tr, Traj) and isinstance(tr.trajectory_sampling, TS)
    assert tr.poses.dtype == np.float32 and tr.poses.shape == (8, 3)
    np.testing.assert_array_equal(tr.poses, preds["tok1"])
    assert (tr.trajectory_sampling.num_poses, tr.trajectory_sampling.time_horizon,
            tr.trajectory_sampling.interval_length) == (8, 4.0, 0.5)
    # A pickle written by the devkit itself (real classes) reads back without it.
    devkit_sub = {"team_name": "x", "predictions": [{"tokA": Traj(preds["tok0"], TS(8, 4.0, 0.5))}]}
    p2 = str(tmp_path / "devkit.pkl")
    with open(p2, "wb") as fh:
        pickle.dump(devkit_sub, fh)
    monkeypatch.undo()
    np.testing.assert_array_equal(N.read_submission(p2)["predictions"][0]["tokA"], preds["tok0"])


def test_submission_rejects_bad_input(tmp_path):
    kw = dict(team_name="t", authors=["a"], email="e", institution="i", country="c")
    path = str(tmp_path / "s.pkl")
    with pytest.raises(ValueError, match=r"tokX.*shape \(8, 3\)"):
        N.write_submission(path, {"tokX": np.zeros((6, 3))}, **kw)
    with pytest.raises(ValueError, match="finite"):
        N.write_submission(path, {"tokX": np.full((8, 3), np.nan)}, **kw)
    with pytest.raises(ValueError, match="team_name"):
        N.write_submission(path, {"tokX": np.zeros((8, 3))}, **dict(kw, team_name=""))
    with pytest.raises(ValueError, match="version"):
        N.write_submission(path, {"tokX": np.zeros((8, 3))}, version="v3", **kw)
    assert not os.path.exists(path)
    with open(path, "wb") as fh:                               # a pickle naming some other class
        pickle.dump({"predictions": [{"t": os.stat_result((0,) * 10)}]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="stat_result"):
        N.read_submission(path)


def test_geometry_helpers():
    q = [math.cos(0.35), 0.0, 0.0, math.sin(0.35)]
    assert N.quaternion_yaw(q) == pytest.approx(0.7)
    assert N.quaternion_yaw([2 * v for v in q]) == pytest.approx(0.7)       # not normalised
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    dense = np.concatenate([np.linspace(sq[i], sq[(i + 1) % 4], 10, endpoint=False) for i in range(4)])
    np.testing.assert_allclose(np.sort(N.fit_polygon(dense, 4), axis=0), np.sort(sq, axis=0), atol=1e-9)
    line = N.fit_polyline(np.stack([np.linspace(0, 10, 50), np.zeros(50)], -1), 6)
    np.testing.assert_allclose(line[:, 0], [0, 2, 4, 6, 8, 10])


def test_quaternion_yaw_follows_pyquaternion_convention():
    """NAVSIM takes yaw = pyquaternion's yaw_pitch_roll[0], i.e. q = q_x(roll) q_y(pitch) q_z(yaw)."""
    def mul(a, b):
        w1, x1, y1, z1 = a
        w2, x2, y2, z2 = b
        return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                         w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])

    def axis(a, i):
        q = np.zeros(4)
        q[0], q[1 + i] = math.cos(a / 2), math.sin(a / 2)
        return q

    for yaw in (-2.9, -0.4, 0.7, 3.0):
        q = mul(mul(axis(0.05, 0), axis(-0.03, 1)), axis(yaw, 2))
        assert N.quaternion_yaw(q) == pytest.approx(yaw, abs=1e-9)


def test_iter_scenes_over_a_log_folder(log_path):
    folder = os.path.dirname(log_path)
    got = list(N.iter_scenes(folder, SPEC, N.DictMapLayers(map_dict()), tokens=["tok04abcdef"], progress=False))
    assert [t for t, _ in got] == ["tok04abcdef"]
    S.validate(got[0][1], SPEC)
    with pytest.raises(FileNotFoundError, match="navsim_logs"):
        list(N.iter_scenes(os.path.dirname(folder), SPEC, None, progress=False))


def test_light_first_seen_after_t0_is_kept(log_path):
    frames = [dict(f) for f in N.load_log(log_path)[:14]]
    for i in (3, 4):                                          # C1 has no state at t = 0 and 0.5 s
        frames[i]["traffic_lights"] = [lt for lt in frames[i]["traffic_lights"] if lt[0] != "C1"]
    sc = N.convert_scene(frames, SPEC, N.DictMapLayers(map_dict()))
    assert sc.light_valid.sum() == 2 and sc.light_on_route[0]
    assert sc.light_red[0].tolist() == [False, False, True, True, True, True, True, True, True]


def test_route_search_takes_shortest_path_then_deepest():
    box = lambda x0, x1, y0, y1: np.array(_box(x0, x1, y0, y1), float)  # noqa: E731
    lanes = [
        N.MapLane("A", box(0, 10, -2, 2), np.array([[0, 0], [10, 0]], float), "R1", successors=("B1", "B2")),
        N.MapLane("B1", box(10, 110, -2, 32), np.array([[10, 0], [60, 30], [110, 0]], float), "R2",
                  successors=("C1",)),
        N.MapLane("B2", box(10, 110, -2, 2), np.array([[10, 0], [110, 0]], float), "R2", successors=("C2",)),
        N.MapLane("C1", box(110, 150, -2, 2), np.array([[110, 0], [150, 0]], float), "R3"),
        N.MapLane("C2", box(110, 150, -2, 2), np.array([[110, 0], [150, 0]], float), "R3"),
        N.MapLane("X", box(0, 10, 2, 6), np.array([[0, 4], [10, 4]], float), "R0"),   # not on the route
    ]
    for route in (["R1", "R2", "R3"], ["R1", "R2", "R3", "R9"]):       # target reached / not in the lanes
        on = [ln.roadblock_id in route for ln in lanes]
        r = N._route_from_lanes(lanes, on, route, np.array([2.0, 0.0, 0.0]))
        assert np.abs(r[:, 1]).max() < 1e-9                            # B2 (100 m), not B1 (~117 m)
        np.testing.assert_allclose([r[0, 0], r[-1, 0]], [0.0, 150.0])
    # Target roadblock = the start's: the route is the start lane alone.
    r = N._route_from_lanes(lanes, [True] * 5 + [False], ["R1"], np.array([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(r, [[0, 0], [10, 0]])


def test_far_route_lanes_feed_the_route_but_not_scene_lanes(log_path):
    m = map_dict()
    far = dict(id="L4", polygon=_g(_box(250, 400, -1.8, 1.8)), centerline=_g([[250, 0], [400, 0]]),
               roadblock_id="RB4", is_connector=False, speed_limit=15.0, successors=[])
    m[MAP]["lanes"][5]["successors"] = ["L4"]
    m[MAP]["lanes"].append(far)
    frames = [dict(f, roadblock_ids=["RB1", "RBC1", "RB3", "RB4"]) for f in N.load_log(log_path)[:14]]
    maps = N.DictMapLayers(m)
    assert "L4" in [ln.id for ln in maps.query(MAP, *P0[:2], 100.0, ["RB4"]).lanes]
    assert "L4" not in [ln.id for ln in maps.query(MAP, *P0[:2], 100.0, []).lanes]
    sc = N.convert_scene(frames, SPEC, maps, route_ahead=400.0)
    assert sc.lane_valid.sum() == 6                                     # L4 is 250 m away: not a Scene lane
    assert sc.route[sc.route_valid][-1, 0] == pytest.approx(400.0, abs=1e-3)   # but the route reaches it


def test_predictions_from_batch():
    traj = np.arange(2 * 8 * 3, dtype=np.float32).reshape(2, 8, 3)
    d = N.predictions_from_batch(["a", "b"], traj)
    np.testing.assert_array_equal(d["b"], traj[1])
    with pytest.raises(ValueError, match=r"\(3, 8, 3\)"):
        N.predictions_from_batch(["a", "b", "c"], traj)
    with pytest.raises(ValueError, match="'a' more than once"):
        N.predictions_from_batch(["a", "a"], traj)


def test_devkit_map_layers_with_a_stand_in_map_api(monkeypatch, log_path):
    """DevkitMapLayers against a duck-typed nuPlan map API (the attributes NAVSIM itself uses)."""
    import enum
    Layer = enum.Enum("SemanticMapLayer", "ROADBLOCK ROADBLOCK_CONNECTOR INTERSECTION CARPARK_AREA LANE")

    class Geom:
        def __init__(self, pts):
            self.exterior = types.SimpleNamespace(coords=[tuple(p) for p in pts] + [tuple(pts[0])])

    class Obj:
        def __init__(self, d):
            self.id, self.polygon = d["id"], Geom(d["polygon"])

    class Edge(Obj):
        def __init__(self, d):
            super().__init__(d)
            self.baseline_path = types.SimpleNamespace(
                discrete_path=[types.SimpleNamespace(x=x, y=y) for x, y in d["centerline"]])
            self.speed_limit_mps = d["speed_limit"]
            self._succ = d["successors"]

    m = map_dict()[MAP]
    edges = {d["id"]: Edge(d) for d in m["lanes"]}
    for e in edges.values():
        e.outgoing_edges = [edges[i] for i in e._succ]
    blocks = {}
    for d in m["lanes"]:
        rb = d["roadblock_id"]
        layer = Layer.ROADBLOCK_CONNECTOR if d["is_connector"] else Layer.ROADBLOCK
        b = blocks.setdefault(rb, types.SimpleNamespace(id=rb, interior_edges=[], layer=layer,
                                                        polygon=Geom(d["polygon"])))
        b.interior_edges.append(edges[d["id"]])
    for d in m["roadblocks"]:
        blocks[d["id"]].polygon = Geom(d["polygon"])
    calls = []

    class Api:
        def get_proximal_map_objects(self, point, radius, layers):
            calls.append((point.x, point.y, radius))
            out = {layer: [] for layer in layers}
            for b in blocks.values():
                if b.id != "RB3":                       # pretend RB3 is beyond the radius
                    out[b.layer].append(b)
            out[Layer.INTERSECTION] = [Obj(d) for d in m["intersections"]]
            return out

        def get_map_object(self, oid, layer):
            b = blocks.get(oid)
            return b if b is not None and b.layer == layer else None

    names = []
    fake = {
        "nuplan": types.ModuleType("nuplan"),
        "nuplan.common.actor_state.state_representation": types.SimpleNamespace(
            Point2D=lambda x, y: types.SimpleNamespace(x=x, y=y)),
        "nuplan.common.maps.maps_datatypes": types.SimpleNamespace(SemanticMapLayer=Layer),
        "nuplan.common.maps.nuplan_map.map_factory": types.SimpleNamespace(
            get_maps_api=lambda root, version, name: names.append((root, version, name)) or Api()),
    }
    for name in ("nuplan.common", "nuplan.common.actor_state", "nuplan.common.maps",
                 "nuplan.common.maps.nuplan_map"):
        fake[name] = types.ModuleType(name)
    for k, v in fake.items():
        monkeypatch.setitem(sys.modules, k, v)
    maps = N.DevkitMapLayers(map_root="/maps")
    q = maps.query("las_vegas", 1.0, 2.0, 100.0, ["RB1", "RBC1", "RB3"])
    assert names == [("/maps", "nuplan-maps-v1.0", "us-nv-las-vegas-strip")] and calls == [(1.0, 2.0, 100.0)]
    by_id = {ln.id: ln for ln in q.lanes}
    assert set(by_id) == {"L0", "L1", "L2", "C1", "C2", "L3"}          # L3 only as a route lane (RB3)
    assert by_id["C1"].is_connector and not by_id["L1"].is_connector and by_id["C1"].roadblock_id == "RBC1"
    assert by_id["L1"].successors == ("C1",) and by_id["L1"].speed_limit == 13.4
    assert len(by_id["L1"].polygon) == 5                                # closed ring, as shapely gives it
    assert [a.id for a in q.roadblocks] == ["RB1", "RB0"] and [a.id for a in q.intersections] == ["I1"]
    frames = [dict(f, map_location="las_vegas") for f in N.load_log(log_path)[:14]]
    sc = N.convert_scene(frames, SPEC, maps)
    r = sc.route[sc.route_valid]
    np.testing.assert_allclose([r[0, 0], r[-1, 0]], [-60.0, 140.0], atol=1e-3)     # L1 -> C1 -> L3
