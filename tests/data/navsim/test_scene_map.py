"""Tests of irlvla_jax.data.navsim.scene_map: lanes, drivable area, lights and the route written into a
Scene from the map layers, and the route search."""
import math

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import navsim as N
from irlvla_jax.data.navsim.scene_map import route_from_lanes
from tests.data.navsim.synthetic import MAP, P0, SPEC, box, map_dict, to_map


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


def test_light_first_seen_after_t0_is_kept(log_path):
    frames = [dict(f) for f in N.load_log(log_path)[:14]]
    for i in (3, 4):                                          # C1 has no state at t = 0 and 0.5 s
        frames[i]["traffic_lights"] = [lt for lt in frames[i]["traffic_lights"] if lt[0] != "C1"]
    sc = N.convert_scene(frames, SPEC, N.DictMapLayers(map_dict()))
    assert sc.light_valid.sum() == 2 and sc.light_on_route[0]
    assert sc.light_red[0].tolist() == [False, False, True, True, True, True, True, True, True]


def test_route_search_takes_shortest_path_then_deepest():
    ring = lambda x0, x1, y0, y1: np.array(box(x0, x1, y0, y1), float)  # noqa: E731
    lanes = [
        N.MapLane("A", ring(0, 10, -2, 2), np.array([[0, 0], [10, 0]], float), "R1", successors=("B1", "B2")),
        N.MapLane("B1", ring(10, 110, -2, 32), np.array([[10, 0], [60, 30], [110, 0]], float), "R2",
                  successors=("C1",)),
        N.MapLane("B2", ring(10, 110, -2, 2), np.array([[10, 0], [110, 0]], float), "R2", successors=("C2",)),
        N.MapLane("C1", ring(110, 150, -2, 2), np.array([[110, 0], [150, 0]], float), "R3"),
        N.MapLane("C2", ring(110, 150, -2, 2), np.array([[110, 0], [150, 0]], float), "R3"),
        N.MapLane("X", ring(0, 10, 2, 6), np.array([[0, 4], [10, 4]], float), "R0"),   # not on the route
    ]
    for route in (["R1", "R2", "R3"], ["R1", "R2", "R3", "R9"]):       # target reached / not in the lanes
        on = [ln.roadblock_id in route for ln in lanes]
        r = route_from_lanes(lanes, on, route, np.array([2.0, 0.0, 0.0]))
        assert np.abs(r[:, 1]).max() < 1e-9                            # B2 (100 m), not B1 (~117 m)
        np.testing.assert_allclose([r[0, 0], r[-1, 0]], [0.0, 150.0])
    # Target roadblock = the start's: the route is the start lane alone.
    r = route_from_lanes(lanes, [True] * 5 + [False], ["R1"], np.array([2.0, 0.0, 0.0]))
    np.testing.assert_allclose(r, [[0, 0], [10, 0]])


def test_far_route_lanes_feed_the_route_but_not_scene_lanes(log_path):
    m = map_dict()
    far = dict(id="L4", polygon=to_map(box(250, 400, -1.8, 1.8)), centerline=to_map([[250, 0], [400, 0]]),
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
