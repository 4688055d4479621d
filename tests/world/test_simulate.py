"""Simulation and sanity pass: the ego box, agent selection, and how rarely the sanity pass has to step in
for the expert."""
import numpy as np

from irlvla_jax.geometry import EGO_CENTER, EGO_LENGTH, EGO_WIDTH
from irlvla_jax.scene import FAMILIES, SPLITS
from irlvla_jax.world.generate import family_for, generate_world
from irlvla_jax.world.simulate import Built, Simulation, build, ego_boxes


def test_ego_boxes_from_rear_axle_poses():
    pose = np.array([[0.0, 0.0, 0.0], [10.0, -2.0, np.pi / 2]])
    b = ego_boxes(pose)
    np.testing.assert_allclose(b[0], [EGO_CENTER, 0.0, 0.0, EGO_LENGTH, EGO_WIDTH])
    np.testing.assert_allclose(b[1], [10.0, -2.0 + EGO_CENTER, np.pi / 2, EGO_LENGTH, EGO_WIDTH], atol=1e-12)


def test_build_is_the_generators_world_and_agents_stay_aligned(tiny_spec):
    for i, fam in enumerate(FAMILIES):
        rng = np.random.default_rng([3, SPLITS.index("val"), i])
        got = build(tiny_spec, fam, rng)
        assert isinstance(got, Built) and isinstance(got.sim, Simulation)
        n = len(got.sim.boxes)
        assert got.sim.vel.shape[0] == got.sim.types.shape[0] == got.sim.valid.shape[0] == n
        assert got.sim.heights.shape == got.sim.priority.shape == (n,)
        assert n == len(got.world.vehicles) + len(got.world.fixed)     # the sanity pass removed them in step
    same = generate_world(tiny_spec, 3, 5, "val", family_for("val", 3, 5))
    again = generate_world(tiny_spec, 3, 5, "val")
    np.testing.assert_array_equal(same.sim.boxes, again.sim.boxes)
    keep = np.arange(len(same.sim.boxes)) % 2 == 0
    sel = same.sim.select(keep)
    np.testing.assert_array_equal(sel.boxes, same.sim.boxes[keep])
    assert sel.expert is same.sim.expert


def test_sanity_pass_rarely_needed(tiny_spec):
    """The generator removes agents that conflict with the expert; a competent expert needs that
    rarely (a blind one would need it in most scenes)."""
    worlds = [generate_world(tiny_spec, 4, i, "hard").world for i in range(60)]
    assert np.mean([w.dropped > 0 for w in worlds]) < 0.1
    assert np.mean([w.attempts > 1 for w in worlds]) < 0.1
