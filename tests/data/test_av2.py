"""The Argoverse 2 adapter on a synthetic log written here (always) and on the shared real logs (skipped
when ../shared/real_data is absent)."""
import collections

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import av2, real
from tests.data.real_fixtures import real_dir, write_av2_log

SPEC = S.SceneSpec()


def test_synthetic_log_follows_the_navsim_conventions(tmp_path):
    d = write_av2_log(str(tmp_path), speed=10.0, yaw0=0.3)
    log = av2.load_log(d)
    assert len(log.t) == 81 and np.allclose(np.diff(log.t), 0.1)
    assert {tr.id: tr.type for tr in log.tracks} == {"lead": S.AGENT_VEHICLE, "cone": S.AGENT_STATIC}
    ws = list(real.log_windows(log, SPEC, stride=5))
    assert [w.t0 for w in ws] == list(range(15, 81 - 41 + 1, 5)) and all(w.scene is not None for w in ws), \
        [w.reason for w in ws]
    sc = ws[0].scene
    np.testing.assert_allclose(sc.ego_state[3:5], [10.0, 0.0], atol=1e-3)       # body-frame velocity
    np.testing.assert_allclose(sc.expert_future[:, 0], 5.0 * np.arange(1, 9), atol=1e-3)
    np.testing.assert_allclose(sc.expert_future[:, 1:], 0.0, atol=1e-4)
    np.testing.assert_allclose(sc.ego_past[0, :2], [-15.0, 0.0], atol=1e-3)   # t = -1.5 s
    lead = int(np.nonzero(sc.agent_type == S.AGENT_VEHICLE)[0][0])
    np.testing.assert_allclose(sc.agent_boxes[lead, 0], [20.0, 0.0, 0.0, 4.5, 1.9], atol=1e-3)
    np.testing.assert_allclose(sc.agent_velocity[lead, 20], [10.0, 0.0], atol=0.02)   # absolute, in the t0 frame
    # (sweep-time jitter of 0.2 ms moves a 10 m/s object by 2 mm: 0.01 m/s in the differences)
    cone = int(np.nonzero(sc.agent_type == S.AGENT_STATIC)[0][0])
    np.testing.assert_allclose(sc.agent_velocity[cone], 0.0)
    assert S.COMMANDS[int(np.argmax(sc.command))] == "straight"
    assert S.SPLITS[int(sc.split)] == "real" and sc.lane_on_route[sc.lane_valid].any()
    route = sc.route[sc.route_valid]
    assert np.abs(route[:, 1]).max() < 1e-3 and route[0, 0] < 0 < route[-1, 0]      # the ego's lane
    assert sc.drivable_valid.any() and sc.camera.std() > 0 and (sc.bev_semantic > 0).any()
    assert ws[0].report["agents"] == 2 and ws[0].report["agents_dropped"] == 0


def test_roadblocks_group_side_by_side_lanes_and_route_follows_the_ego(tmp_path):
    log = av2.load_log(write_av2_log(str(tmp_path)))
    p = real.prepare(log)
    rb = {ln.id: ln.roadblock_id for ln in p.lanes}
    assert rb["100"] == rb["200"] and rb["101"] == rb["201"] and rb["100"] != rb["101"]
    assert "100#1" in rb and "101#1" in rb             # 50 m segments are cut into 25 m pieces
    # the ego starts 30 m along (piece 100#1) and drives 80 m in its lane
    assert p.route_ids == [rb["100#1"], rb["101"], rb["101#1"], rb["102"]] and all(p.lane_per_step)
    assert set(p.lane_per_step) == {"100#1", "101", "101#1", "102"}


@pytest.mark.parametrize("kw, field", [({"drop_column": "tx_m"}, "tx_m"), ({"nan_pose": True}, "tx_m"),
                                       ({"no_lanes": True}, "lane_segments")])
def test_bad_files_give_one_line_errors_naming_file_and_field(tmp_path, kw, field):
    d = write_av2_log(str(tmp_path), **kw)
    with pytest.raises(real.LogError) as e:
        av2.load_log(d)
    msg = str(e.value)
    assert "\n" not in msg and f"'{field}'" in msg and str(tmp_path) in msg, msg
    ws = list(av2.iter_windows(str(tmp_path), SPEC))        # the converter's view: one failed-log window
    assert len(ws) == 1 and ws[0].t0 == -1 and ws[0].reason.startswith("log failed:") and field in ws[0].reason


def test_real_logs_convert_or_are_rejected_with_a_reason():
    src = real_dir("av2")
    counts = collections.Counter()
    for w in av2.iter_windows(src, SPEC, stride=10, render=False):
        assert (w.scene is None) == bool(w.reason) and w.t0 >= 0, w.reason
        counts["written" if w.scene is not None else w.reason] += 1
        if w.scene is not None:
            assert 0 <= np.hypot(*w.scene.ego_state[3:5]) < 40 and w.scene.lane_valid.any()
            assert w.report["agents_dropped"] == w.report["agents"] - int(w.scene.agent_valid.any(1).sum())
    assert counts["written"] >= 20, counts
