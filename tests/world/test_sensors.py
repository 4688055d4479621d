"""Sensors: rasteriser correctness, LiDAR occlusion, camera content, BEV labels."""
import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.scene import SceneSpec
from irlvla_jax.world import sensors
from irlvla_jax.world.paths import ccw


def test_raster_union_matches_point_in_polygon():
    path = pytest.importorskip("matplotlib.path")
    rng = np.random.default_rng(0)
    H, W = 37, 41
    grid = (20.0, 15.0, 40.0 / H, 30.0 / W, H, W)
    xs = 20.0 - (np.arange(H) + 0.5) * grid[2]
    ys = 15.0 - (np.arange(W) + 0.5) * grid[3]
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    pts = np.stack([X.ravel(), Y.ravel()], -1)
    for _ in range(5):
        polys = []
        want = np.zeros(H * W, bool)
        for _ in range(3):
            ang = np.sort(rng.uniform(0, 2 * np.pi, 7))
            rad = rng.uniform(3, 12, 7)
            c = rng.uniform([-15, -12], [15, 12])
            p = ccw(np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], -1))
            polys.append(p)
            want |= path.Path(p).contains_points(pts)
        got = sensors.raster_union(polys, *grid).ravel()
        assert np.mean(got != want) < 0.005


def _inp(boxes, heights, types=None):
    n = len(boxes)
    road = ccw(np.array([[-30.0, -8], [80, -8], [80, 8], [-30, 8]]))
    return sensors.SensorInput(drivable=[road], markings=[(np.array([[0.0, -1.75], [60, -1.75]]), 1)],
                               crosswalks=[], boxes=np.array(boxes, float).reshape(n, 5),
                               types=np.array(types if types is not None else [S.AGENT_VEHICLE] * n),
                               heights=np.array(heights, float), colors=np.full((n, 3), 200.0),
                               lights=[(np.array([30.0, -1.7]), 0.0, True)])


def test_lidar_occlusion_and_heights():
    spec = SceneSpec(lidar_hw=(64, 64), lidar_channels=5, bev_range=(-16.0, 48.0, -32.0, 32.0))
    rng = np.random.default_rng(0)
    free = sensors.render_lidar(spec, _inp(np.zeros((0, 5)), []), rng)
    truck = sensors.render_lidar(spec, _inp([[12.0, 0.0, 0.0, 8.0, 2.5]], [3.2]), np.random.default_rng(0))
    # cell rows: x = 48 - (r + 0.5) * 1.0 ; columns: y = 32 - (c + 0.5) * 1.0 -> y = 0 between cols 31/32
    behind = truck[48 - 30 - 1, 31]          # x ~ 29.5, y ~ 0.5: in the truck's shadow
    assert free[48 - 30 - 1, 31, 0] > 0 and behind.sum() == 0
    on_truck = truck[48 - 12 - 1, 31]
    assert on_truck[1:].sum() > 1.0           # returns above the ground slice
    side = truck[48 - 30 - 1, 5]              # far to the side: not shadowed
    assert side[0] > 0


def test_camera_and_bev_content():
    spec = SceneSpec(camera_hw=(48, 96), bev_hw=(48, 48))
    inp = _inp([[15.0, 0.0, 0.0, 4.5, 1.9], [10.0, 5.0, 0.0, 0.6, 0.6]], [1.6, 1.75],
               [S.AGENT_VEHICLE, S.AGENT_PEDESTRIAN])
    cam = sensors.render_camera(spec, inp)
    assert cam.dtype == np.uint8 and cam.shape == (48, 96, 3)
    # the car straight ahead covers the centre columns just below the horizon
    col = cam[25:28, 47:49].reshape(-1, 3).astype(float)
    assert np.all(np.abs(col - np.array([88, 88, 94])).sum(-1) > 30)
    # red lamp visible somewhere above the horizon
    assert np.any((cam[..., 0] > 200) & (cam[..., 1] < 80))
    empty = sensors.render_camera(spec, _inp(np.zeros((0, 5)), []))
    assert not np.array_equal(cam, empty)
    bev = sensors.render_bev(spec, inp)
    # x = 15 -> row (48 - 15) / (64 / 48); y = 0 -> column 24
    assert bev[int((48 - 15) / (64 / 48)), 24] == 3
    assert bev[int((48 - 10) / (64 / 48)), int((32 - 5) / (64 / 48))] == 4
    assert bev[5, 2] == 0 and bev[5, 26] in (1, 2)
