"""ScenarioNet adapter (irlvla_jax.data.scenarionet): synthetic scenario dicts (always), malformed files,
and the real nuScenes / Waymo scenarios in ../shared/real_data (skipped when that folder is absent)."""
import os
import pickle

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import real
from irlvla_jax.data import scenarionet as SN
from irlvla_jax.data import scenarionet_map as SNM
from irlvla_jax.geometry import EGO_CENTER

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REAL = os.path.join(ROOT, "..", "shared", "real_data", "scenarionet")
T = 30


def _track(kind, x0, vx, heading=0.0, size=(4.6, 1.9, 1.6), col=False, valid=None):
    t = np.arange(T) * 0.1
    pos = np.stack([x0 + vx * t * np.cos(heading), vx * t * np.sin(heading), np.zeros(T)], -1)
    def sz(v):
        return np.full((T, 1) if col else (T,), v)
    return {"type": kind, "state": {
        "position": pos, "heading": np.full(T, heading), "velocity": np.zeros((T, 2)),
        "length": sz(size[0]), "width": sz(size[1]), "height": sz(size[2]),
        "valid": np.ones(T, bool) if valid is None else valid}}


def scenario(dataset="waymo"):
    """A straight road along +x: one lane (centre y = 0, 1.5 m to its left line, 2.0 m to its right edge),
    an ego at 10 m/s, a vehicle, a pedestrian, a cone, a light on the lane (red at steps >= 10)."""
    xs = np.linspace(-50.0, 250.0, 61)
    line = lambda y: np.stack([xs, np.full_like(xs, y), np.zeros_like(xs)], -1)   # noqa: E731
    width = np.tile([1.5, 2.0], (len(xs), 1)).astype(np.float32)
    width[:5] = 0.0                                     # no boundary there: default half width
    width[10, 0] = 40.0                                 # a converter outlier: the other side's width
    return {
        "id": "synthetic", "length": T,
        "metadata": {"sdc_id": "ego", "ts": np.arange(T) * 0.1, "current_time_index": 0, "dataset": dataset},
        "tracks": {"ego": _track("VEHICLE", 0.0, 10.0),
                   "car": _track("VEHICLE", 30.0, 8.0),
                   "ped": _track("PEDESTRIAN", 40.0, 1.0, heading=np.pi / 2, size=(0.6, 0.6, 1.8), col=True),
                   "bike": _track("CYCLIST", 50.0, 4.0),
                   "cone": _track("TRAFFIC_CONE", 60.0, 0.0, size=(0.4, 0.4, 0.8)),
                   "odd": _track("SOMETHING_NEW", 70.0, 0.0)},
        "map_features": {
            "1": {"type": "LANE_SURFACE_STREET", "polyline": line(0.0), "width": width,
                  "speed_limit_kmh": 36.0, "interpolating": False, "entry_lanes": [], "exit_lanes": [2, 99]},
            "2": {"type": "LANE_SURFACE_STREET", "polyline": line(0.0) + [300.0, 0, 0], "interpolating": True,
                  "speed_limit_kmh": 0.0, "entry_lanes": [1], "exit_lanes": []},
            "3": {"type": "LANE_BIKE_LANE", "polyline": line(-3.0)},
            "10": {"type": "ROAD_LINE_BROKEN_SINGLE_WHITE", "polyline": line(1.5)},
            "11": {"type": "ROAD_LINE_SOLID_DOUBLE_YELLOW", "polyline": line(5.0)},
            "12": {"type": "ROAD_EDGE_BOUNDARY", "polyline": line(-2.0)},
            "20": {"type": "CROSSWALK", "polygon": np.array([[100, -3, 0], [104, -3, 0], [104, 3, 0], [100, 3, 0]])},
            "21": {"type": "CROSSWALK", "polygon": [[120, -3], [124, -3], [125, 0], [124, 3], [120, 3], [120, -3]]},
            "30": {"type": "DRIVEWAY", "polygon": np.zeros((4, 3))}},
        "dynamic_map_states": {
            "1": {"type": "TRAFFIC_LIGHT", "lane": 1, "stop_point": np.array([-50.0, 0, 0]),
                  "state": {"object_state": ["LANE_STATE_GO"] * 5 + ["LANE_STATE_CAUTION"] * 5
                            + ["LANE_STATE_STOP"] * 10 + ["LANE_STATE_ARROW_STOP"] * 5 + [None] * 5}}},
    }


def write(tmp_path, d, name="s.pkl"):
    p = tmp_path / name
    with open(p, "wb") as f:
        pickle.dump(d, f)
    return str(p)


def test_synthetic_frame_types_map_lights(tmp_path):
    log = SN.load_log(write(tmp_path, scenario()))
    assert (log.source, log.name, len(log.t)) == ("waymo", "synthetic", T)
    np.testing.assert_allclose(log.t, np.arange(T) * 0.1)
    # Ego: box centre -> rear axle, EGO_CENTER behind along the heading.
    np.testing.assert_allclose(log.ego[:, 0], np.arange(T) * 1.0 - EGO_CENTER, atol=1e-9)
    np.testing.assert_allclose(log.ego[:, 1:], 0.0, atol=1e-9)
    # Tracks: the SDC excluded; types; sizes ([T, 1] too); centres and headings unchanged.
    by = {t.id: t for t in log.tracks}
    assert set(by) == {"car", "ped", "bike", "cone", "odd"}
    assert [by[k].type for k in ("car", "ped", "bike", "cone", "odd")] == [
        S.AGENT_VEHICLE, S.AGENT_PEDESTRIAN, S.AGENT_BICYCLE, S.AGENT_STATIC, S.AGENT_STATIC]
    assert (by["ped"].length, by["ped"].width, by["ped"].height) == pytest.approx((0.6, 0.6, 1.8))
    np.testing.assert_allclose(by["ped"].xyh[:, 2], np.pi / 2)
    np.testing.assert_allclose(by["car"].xyh[:, 0], 30.0 + 0.8 * np.arange(T))
    assert by["car"].valid.all() and by["car"].xyh.shape == (T, 3)
    # Lanes: bike lane skipped; polygon from the widths (left 1.5, right 2.0; defaults where 0; the outlier
    # takes the other side's); speed limit m/s; connector from `interpolating`; unknown successors dropped.
    lanes = {ln.id: ln for ln in log.lanes}
    assert set(lanes) == {"1", "2"}
    ln = lanes["1"]
    k = len(ln.centerline)
    left, right = ln.polygon[:k], ln.polygon[k:][::-1]
    np.testing.assert_allclose(left[5:, 1], np.r_[1.5, 1.5, 1.5, 1.5, 1.5, 2.0, np.full(k - 11, 1.5)], atol=1e-6)
    np.testing.assert_allclose(right[5:, 1], -2.0, atol=1e-6)
    np.testing.assert_allclose(left[:5, 1], SNM.DEFAULT_LANE_WIDTH / 2, atol=1e-6)
    assert ln.speed_limit == pytest.approx(10.0) and lanes["2"].speed_limit is None
    assert ln.successors == ("2",) and ln.roadblock_id == ""
    assert lanes["2"].is_connector and not ln.is_connector
    # Crosswalks: 4 corners (a 5-vertex one fitted with its minimum rectangle); markings' styles.
    assert len(log.crosswalks) == 2 and all(c.shape == (4, 2) for c in log.crosswalks)
    xs = sorted(np.round(log.crosswalks[1][:, 0], 6))
    assert xs[0] == pytest.approx(120.0) and xs[-1] == pytest.approx(125.0)
    assert sorted(m.style for m in log.markings) == [0, 1, 2]
    assert log.drivable == [] and log.intersections == []
    # Lights: GO / CAUTION / None -> not red, STOP / ARROW_STOP -> red.
    assert [d["1"] for d in log.lights] == [False] * 10 + [True] * 15 + [False] * 5


def test_nuscenes_style_lanes_and_drivable_outline(tmp_path):
    pytest.importorskip("shapely")
    d = scenario("nuscenes")
    sq = lambda x0, x1, y0, y1: np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], float)  # noqa: E731
    d["map_features"] = {
        "lane": {"type": "LANE_SURFACE_STREET", "polyline": [(x, 0.0, 0.0) for x in range(-10, 60)],
                 "polygon": sq(-10, 60, -2, 2)},
        "conn": {"type": "LANE_SURFACE_STREET", "polyline": [(x, 0.0, 0.0) for x in range(59, 80)],
                 "speed_limit_kmh": 100},
        "boundary_0": {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": sq(-20, 100, -10, 10)},
        "boundary_1": {"type": "ROAD_LINE_SOLID_SINGLE_WHITE", "polyline": sq(20, 30, 4, 8)},   # a hole
    }
    d["dynamic_map_states"] = {}
    log = SN.load_log(write(tmp_path, d))
    lanes = {ln.id: ln for ln in log.lanes}
    assert not lanes["lane"].is_connector and lanes["conn"].is_connector
    assert lanes["lane"].polygon.shape == (4, 2)                   # the closing vertex dropped
    assert lanes["conn"].speed_limit is None and lanes["lane"].speed_limit is None
    np.testing.assert_allclose(np.ptp(lanes["conn"].polygon[:, 1]), SNM.DEFAULT_LANE_WIDTH)
    assert log.lights is None
    from shapely.geometry import Polygon
    from shapely.ops import unary_union
    pieces = [Polygon(a.polygon) for a in log.drivable]
    assert len(pieces) >= 2 and all(p.is_valid and not p.interiors for p in pieces)
    assert unary_union(pieces).area == pytest.approx(120 * 20 - 10 * 4)


def test_irregular_clock_is_resampled_and_sdc_gaps_filled(tmp_path):
    d = scenario()
    d["metadata"]["ts"] = np.arange(T) * 0.2                     # 5 Hz
    d["tracks"]["ego"]["state"]["valid"][[0, 1, 14]] = False     # trimmed start, one interior gap
    d["tracks"]["car"]["state"]["valid"][20:] = False
    log = SN.load_log(write(tmp_path, d))
    n = len(log.t)
    np.testing.assert_allclose(np.diff(log.t), 0.1)
    assert log.t[0] == pytest.approx(0.4) and log.t[-1] == pytest.approx(0.2 * (T - 1))
    # The ego moves 1 m per source step (0.2 s): 5 m/s on the 10 Hz clock, rear axle behind the centre.
    np.testing.assert_allclose(log.ego[:, 0], 2.0 + 0.5 * np.arange(n) - EGO_CENTER, atol=1e-9)
    car = {t.id: t for t in log.tracks}["car"]
    assert car.valid.sum() == 2 * (20 - 2) - 1 and not car.valid[-1]
    assert len(log.lights) == n and log.lights[0]["1"] is False


def test_nuscenes_stale_tail_is_trimmed(tmp_path):
    d = scenario()
    d["tracks"]["ego"]["state"]["position"][T - 2, 0] -= 1.5    # jumps back 0.2 s before the end
    log = SN.load_log(write(tmp_path, d))
    assert len(log.t) == T - 2 and all(len(t.valid) == T - 2 for t in log.tracks)
    d["tracks"]["ego"]["state"]["position"][T - 2, 0] += 1.5
    d["tracks"]["ego"]["state"]["position"][10, 0] -= 1.5        # in the middle: an error
    with pytest.raises(real.LogError, match="backwards"):
        SN.load_log(write(tmp_path, d))


def _break(d, what):
    if what == "tracks":
        del d["tracks"]
    elif what == "sdc_nan":
        d["tracks"]["ego"]["state"]["position"][7, 0] = np.nan
    elif what == "no_lanes":
        d["map_features"] = {k: v for k, v in d["map_features"].items() if not v["type"].startswith("LANE")}
    elif what == "sdc_id":
        del d["metadata"]["sdc_id"]
    elif what == "sdc_unknown":
        d["metadata"]["sdc_id"] = "nobody"
    elif what == "ts_short":
        d["metadata"]["ts"] = d["metadata"]["ts"][:-3]
    elif what == "position_shape":
        d["tracks"]["car"]["state"]["position"] = np.zeros((T, 1))
    return d


@pytest.mark.parametrize("what, field", [
    ("tracks", "tracks"), ("sdc_nan", "tracks.ego.state.position"), ("no_lanes", "map_features"),
    ("sdc_id", "metadata.sdc_id"), ("sdc_unknown", "metadata.sdc_id"), ("ts_short", "length"),
    ("position_shape", "tracks.car.state.position")])
def test_bad_files_give_one_line_log_error(tmp_path, what, field):
    path = write(tmp_path, _break(scenario(), what), f"{what}.pkl")
    with pytest.raises(real.LogError) as e:
        SN.load_log(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(path) and f"field '{field}'" in msg


def test_unreadable_and_unsafe_pickles(tmp_path):
    p = tmp_path / "junk.pkl"
    p.write_bytes(b"not a pickle")
    with pytest.raises(real.LogError, match="<file>"):
        SN.load_log(str(p))
    q = write(tmp_path, {"x": os.getcwd}, "unsafe.pkl")          # a global outside numpy / builtins
    with pytest.raises(real.LogError, match="refuses"):
        SN.load_log(q)
    with pytest.raises(real.LogError, match="expected a ScenarioNet scenario dict"):
        SN.load_log(write(tmp_path, [1, 2], "list.pkl"))


def test_scenario_files(tmp_path):
    d = scenario()
    write(tmp_path, d, "b.pkl")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", d, "a.pkl")
    write(tmp_path, {}, "dataset_summary.pkl")
    (tmp_path / "sub" / "deeper").mkdir()
    write(tmp_path / "sub" / "deeper", d, "c.pkl")
    files = SN.scenario_files(str(tmp_path))
    assert [os.path.relpath(f, tmp_path) for f in files] == ["b.pkl", os.path.join("sub", "a.pkl")]
    with pytest.raises(FileNotFoundError):
        list(SN.iter_windows(str(tmp_path / "empty_missing"), None))


# ----------------------------------------------------------------------------------------------------
# The real scenarios

def _real_files():
    if not os.path.isdir(REAL):
        pytest.skip(f"real ScenarioNet data not found at {os.path.normpath(REAL)} (see shared/real_data/README.md)")
    files = SN.scenario_files(REAL)
    if not files:
        pytest.skip(f"no ScenarioNet scenarios under {os.path.normpath(REAL)}")
    return files


def test_real_scenarios_load():
    for f in _real_files():
        log = SN.load_log(f)
        assert log.source in ("nuscenes", "waymo"), f
        n = len(log.t)
        assert n >= 50 and log.ego.shape == (n, 3) and np.all(np.isfinite(log.ego)), f
        np.testing.assert_allclose(np.diff(log.t), 0.1, atol=1e-9)
        step = np.diff(log.ego[:, :2], axis=0)
        assert np.linalg.norm(step, axis=-1).max() / 0.1 < 40.0, f
        lon = step[:, 0] * np.cos(log.ego[:-1, 2]) + step[:, 1] * np.sin(log.ego[:-1, 2])
        assert lon.min() > -0.05, f                                  # no backward jumps left
        assert log.lanes and all(ln.polygon.ndim == 2 and len(ln.polygon) >= 3 for ln in log.lanes), f
        assert log.tracks and all(len(t.valid) == n and t.valid.any() and t.length > 0 for t in log.tracks), f
        assert all(c.shape == (4, 2) for c in log.crosswalks), f
        if log.source == "waymo":
            assert log.lights is not None and len(log.lights) == n, f
            assert all(set(d) <= {ln.id for ln in log.lanes} for d in log.lights), f
            assert any(ln.speed_limit for ln in log.lanes), f
        else:
            assert log.lights is None and log.drivable, f


def test_real_waymo_lights_start_at_their_stop_point():
    """The lane a Waymo signal controls begins at its stop point: the lane beyond the stop line."""
    files = [f for f in _real_files() if "waymo" in os.path.basename(f)]
    if not files:
        pytest.skip("no Waymo scenarios in the real data")
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            d = SN._Unpickler(fh).load()
        for s in d["dynamic_map_states"].values():
            lane = d["map_features"][str(s["lane"])]
            cl = np.asarray(lane["polyline"])[:, :2]
            assert np.linalg.norm(cl[0] - np.asarray(s["stop_point"])[:2]) < 0.5
            n += 1
    assert n > 0


def test_real_windows_convert_or_say_why():
    if not hasattr(real, "log_windows"):
        pytest.skip("irlvla_jax.data.real.log_windows not written yet")
    files = _real_files()
    spec = S.SceneSpec()
    picked = [files[0]] + [f for f in files if "waymo" in os.path.basename(f)][:1]
    for f in picked:
        log = SN.load_log(f)
        wins = list(real.log_windows(log, spec, stride=40))
        assert wins, f
        for w in wins:
            assert isinstance(w, real.Window) and w.log == log.name
            assert (w.scene is not None) or (w.reason and "\n" not in w.reason), (f, w.token)
        assert any(w.scene is not None for w in wins), (f, [w.reason for w in wins])


def test_iter_windows_yields_failed_log_and_goes_on(tmp_path):
    if not hasattr(real, "log_windows"):
        pytest.skip("irlvla_jax.data.real.log_windows not written yet")
    write(tmp_path, _break(scenario(), "tracks"), "a_bad.pkl")
    d = scenario()
    d["metadata"]["ts"] = np.arange(T) * 0.2                     # 5.8 s: one window
    write(tmp_path, d, "b_good.pkl")
    wins = list(SN.iter_windows(str(tmp_path), S.SceneSpec(), stride=5, render=False))
    assert wins[0].t0 == -1 and wins[0].scene is None and "field 'tracks'" in wins[0].reason
    assert len(wins) >= 2 and all(w.log == "synthetic" for w in wins[1:])
