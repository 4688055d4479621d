"""The source-independent half of the real-log adapters (irlvla_jax/data/real.py): drivable pieces within
the budget, and the same window reaching the project through its own adapter or through a NAVSIM-format
log written from it (frames at 2 Hz + a DictMapLayers map) and the NAVSIM adapter.

Tolerances of that comparison, and why: the NAVSIM log holds the ego and the agents at 2 Hz, and the NAVSIM
adapter interpolates them linearly to 10 Hz, while the real adapter uses the logged 10 Hz states. So
fields sampled at the 2 Hz frames (expert future, ego state at t0, agents at t = 0, 0.5, ... 4 s, map,
route, lights, command, meta labels) agree to float32 rounding, and the 10 Hz ego past differs by the
interpolation error (measured on the AV2 logs: <= 0.07 m, 0.004 rad, 0.15 m/s, 0.9 m/s^2 in
acceleration), so 0.1 m / 0.01 rad / 0.3 m/s / 1.5 m/s^2. Where a real log misses an object at one sweep,
the real adapter interpolates over 0.1 s and the NAVSIM one over 0.5 s: such samples differ (< 0.3 m), all
others agree to 2 mm (>= 95% of samples), and velocities next to such gaps differ (>= 90% within
0.3 m/s). Lane polygons are fitted to the vertex budget
by Visvalingam-Whyatt in the t0 frame; the two paths reach that frame through a quaternion or not, and
near-equal triangle areas can then drop a different vertex: compared by Hausdorff distance (<= 1 m).
The speed limit is left out: where a source has none the real adapter assumes one, NAVSIM leaves 0.
"""
import os

import numpy as np

from irlvla_jax import scene as S
from irlvla_jax.data import av2, real, real_map
from irlvla_jax.data import navsim as N
from tests.data.real_fixtures import real_dir, write_av2_log

SPEC = S.SceneSpec()
EXACT = ("expert_future", "command", "meta_speed", "meta_path", "lane_valid", "lane_on_route",
         "lane_is_connector", "lane_centerlines", "lane_point_valid", "lane_vertex_valid", "drivable_polygons",
         "drivable_vertex_valid", "drivable_valid", "drivable_kind", "route", "route_valid", "light_polygons",
         "light_valid", "light_on_route", "light_red", "split", "family", "scene_id")


def _hausdorff(a, b):
    d = np.linalg.norm(a[:, None] - b[None], axis=-1)
    return max(d.min(0).max(), d.min(1).max())


def compare_through_navsim(p, i0, spec=SPEC):
    a, _ = real.window_scene(p, i0, spec, render=False)
    frames, maps = real.navsim_window(p, i0, spec, a.command)
    b = N.convert_scene(frames, spec, N.DictMapLayers(maps), split="real", map_radius=real.MAP_RADIUS)
    for k in EXACT:
        np.testing.assert_allclose(np.asarray(getattr(a, k), np.float64), np.asarray(getattr(b, k), np.float64),
                                   atol=1e-3, err_msg=k)
    np.testing.assert_allclose(a.ego_state, b.ego_state, atol=1e-4)
    for lo, hi, tol in ((0, 2, 0.1), (2, 3, 0.01), (3, 5, 0.3), (5, 7, 1.5)):
        np.testing.assert_allclose(a.ego_past[:, lo:hi], b.ego_past[:, lo:hi], atol=tol, err_msg=f"ego_past[{lo}:{hi}]")
    for r in np.nonzero(a.lane_valid)[0]:
        assert _hausdorff(a.lane_polygons[r][a.lane_vertex_valid[r]], b.lane_polygons[r][b.lane_vertex_valid[r]]) < 1.0
    # Agents (with room for all of them, so neither path drops any): every object present at t0 in the real
    # adapter is there in the NAVSIM path with the same 2 Hz samples. The NAVSIM path may have more at t0:
    # NAVSIM keeps a track seen in only one 2 Hz frame, unmoved, at all 41 steps (its adapter's quirk).
    at0_a, at0_b = np.nonzero(a.agent_valid[:, 0])[0], np.nonzero(b.agent_valid[:, 0])[0]
    if a.agent_valid.any(1).sum() < spec.num_agents:
        assert len(at0_a) <= len(at0_b)
        steps = np.arange(0, S.T_FUT, 5)
        exact, total, v_ok, v_total, matched = 0, 0, 0, 0, set()
        for i in at0_a:
            d = np.linalg.norm(b.agent_boxes[at0_b, 0, :2] - a.agent_boxes[i, 0, :2], axis=-1)
            j = at0_b[np.argmin(d)]
            matched.add(j)
            assert d.min() < 1e-3 and a.agent_type[i] == b.agent_type[j]
            both = steps[a.agent_valid[i, steps] & b.agent_valid[j, steps]]
            # a sample missing from the log (object unseen at that sweep) is interpolated over 0.1 s by the
            # real adapter and over 0.5 s by NAVSIM's: close, not equal; every other sample is the same
            err = np.abs(a.agent_boxes[i, both] - b.agent_boxes[j, both]).max(-1)
            assert err.max() < 0.3, err
            exact, total = exact + int((err < 2e-3).sum()), total + len(err)
            same = both[1:-1][err[1:-1] < 2e-3]      # velocities where the samples (and so the log) agree
            verr = np.abs(a.agent_velocity[i, same] - b.agent_velocity[j, same]).max(-1)
            v_ok, v_total = v_ok + int((verr < 0.3).sum()), v_total + len(verr)
        assert exact >= 0.95 * total, (exact, total)
        # next to a gap in an object's sightings the two paths difference different neighbours
        assert v_ok >= 0.9 * v_total, (v_ok, v_total)
        for j in set(at0_b) - matched:
            assert b.agent_valid[j].all() and np.ptp(b.agent_boxes[j, :, :2], axis=0).max() < 1e-4   # the quirk
    return a, b


def test_synthetic_window_is_the_same_through_a_navsim_log(tmp_path):
    p = real.prepare(av2.load_log(write_av2_log(str(tmp_path), yaw0=-2.0)))
    for i0 in real.window_steps(p.log, 20):
        a, b = compare_through_navsim(p, i0)
        assert a.agent_valid[:, 0].sum() == 2


def test_real_window_is_the_same_through_a_navsim_log():
    src = real_dir("av2")
    for d in av2.log_dirs(src)[:2]:
        p = real.prepare(av2.load_log(d))
        for i0 in real.window_steps(p.log, 45):
            compare_through_navsim(p, i0, S.SceneSpec(num_agents=256))


def test_drivable_pieces_fit_the_budget_and_report_the_cost():
    from shapely.geometry import Point, Polygon
    ring = Polygon([(0, 0), (100, 0), (100, 40), (0, 40)]).difference(Point(50, 20).buffer(5, 32))
    rings, cost = real_map.drivable_pieces(ring, 8, 16)
    assert 2 <= len(rings) <= 8 and all(3 <= len(r) <= 16 for r in rings)
    area = sum(Polygon(r).area for r in rings)
    assert abs(area - ring.area) < 0.02 * ring.area and cost["holes_filled_m2"] == 0.0
    rings, cost = real_map.drivable_pieces(ring, 1, 64)      # no budget to open the hole: it is filled, and said
    assert len(rings) == 1 and cost["holes_filled_m2"] > 70
    circle = Point(0, 0).buffer(30, 64)
    rings, cost = real_map.drivable_pieces(circle, 1, 8)
    assert len(rings[0]) <= 8 and 0.5 < cost["max_simplify_m"] < 5


def test_real_waymo_window_with_lights_is_the_same_through_a_navsim_log():
    """Waymo scenarios carry lane-level light states: the lights path of both adapters agrees too."""
    from irlvla_jax.data import scenarionet
    src = real_dir("scenarionet")
    files = [f for f in scenarionet.scenario_files(os.path.join(src, "waymo"))]
    lit = 0
    for f in files[:2]:
        p = real.prepare(scenarionet.load_log(f))
        for i0 in real.window_steps(p.log, 20):
            a, _ = compare_through_navsim(p, i0, S.SceneSpec(num_agents=256))
            lit += int(a.light_valid.sum())
    assert lit > 0
