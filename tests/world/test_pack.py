"""Packing into the Scene: the ego's state and past in its t0 frame, and budgets never overflowing."""
import dataclasses

import numpy as np

from irlvla_jax.scene import FAMILIES, SceneSpec, validate
from irlvla_jax.world.generate import generate_scene


def test_ego_state_and_past_consistent(family_scenes):
    for scenes in family_scenes.values():
        for sc in scenes:
            v0 = sc.ego_state[3]
            assert v0 >= 0 and np.all(sc.ego_past[:, 3] >= -1e-5)
            # past positions are behind, spaced by the past speeds (10 Hz)
            p = np.concatenate([sc.ego_past[:, :2], np.zeros((1, 2))])
            step = np.hypot(*np.diff(p, axis=0).T)
            vmid = 0.5 * (np.concatenate([sc.ego_past[:, 3], [v0]])[1:] + np.concatenate([sc.ego_past[:, 3], [v0]])[:-1])
            np.testing.assert_allclose(step, vmid * 0.1, atol=0.05)
            assert np.all(sc.ego_past[:, 0] <= 1e-4)


def test_small_budgets_never_overflow():
    spec = dataclasses.replace(SceneSpec(), num_agents=3, num_lanes=6, lane_vertices=12, lane_points=5,
                               num_drivable=3, drivable_vertices=12, route_points=20, num_lights=2,
                               light_vertices=10, instruction_tokens=8, camera_hw=(12, 24),
                               lidar_hw=(10, 12), lidar_channels=2, bev_hw=(8, 10))
    for i, fam in enumerate(FAMILIES):
        sc = generate_scene(spec, 0, i, "train", fam)
        validate(sc, spec)
        assert sc.agent_valid[:, 0].sum() <= 3 and sc.lane_valid.sum() <= 6
