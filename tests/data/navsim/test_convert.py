"""Tests of irlvla_jax.data.navsim.convert on the synthetic log: whole logs, ego, agents, no-map
conversion, log folders."""
import math
import os

import numpy as np
import pytest

from irlvla_jax import scene as S
from irlvla_jax.data import navsim as N
from tests.data.navsim.synthetic import SPEC, ego_f0, inverse_apply, map_dict


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


def test_without_maps_route_follows_ego(log_path):
    sc = N.convert_scene(N.load_log(log_path)[:14], SPEC, None)
    S.validate(sc, SPEC)
    assert not sc.lane_valid.any() and not sc.drivable_valid.any()
    r = sc.route[sc.route_valid]
    assert r[0, 0] < -10 and r[-1, 0] > 30                    # past -> future of the ego


def test_iter_scenes_over_a_log_folder(log_path):
    folder = os.path.dirname(log_path)
    got = list(N.iter_scenes(folder, SPEC, N.DictMapLayers(map_dict()), tokens=["tok04abcdef"], progress=False))
    assert [t for t, _ in got] == ["tok04abcdef"]
    S.validate(got[0][1], SPEC)
    with pytest.raises(FileNotFoundError, match="navsim_logs"):
        list(N.iter_scenes(os.path.dirname(folder), SPEC, None, progress=False))
