"""A stand-in scene generator with the contract-1 signature (random but valid scenes), for data tests.

Deterministic in (seed, split, index); used until / besides irlvla_jax.world.generate.
"""
import numpy as np

from irlvla_jax.scene import FAMILIES, N_POSES, SPLITS, T_FUT, empty_scene, pad_polygon, pad_polyline


def generate_scene(spec, seed, index, split, family=None):
    code = SPLITS.index(split)
    rng = np.random.default_rng([int(seed), code, int(index)])
    d = {k: v.copy() for k, v in empty_scene(spec).to_dict().items()}
    fam = int(rng.integers(len(FAMILIES))) if family is None else FAMILIES.index(family)
    speed = float(rng.uniform(0.0, 15.0))
    d["ego_state"][3] = speed
    t = 0.5 * np.arange(1, N_POSES + 1)
    acc, curv = rng.uniform(-1, 1), rng.uniform(-0.02, 0.02)
    s = np.maximum(speed * t + 0.5 * acc * t ** 2, 0.0)
    d["expert_future"][:] = np.stack([s, 0.5 * curv * s ** 2, curv * s], -1)
    n_ag = int(rng.integers(0, spec.num_agents + 1))
    tt = 0.1 * np.arange(T_FUT)
    for a in range(n_ag):
        x0, y0, v = rng.uniform(-10, 40), rng.uniform(-8, 8), rng.uniform(0, 10)
        d["agent_boxes"][a, :, 0] = x0 + v * tt
        d["agent_boxes"][a, :, 1] = y0
        d["agent_boxes"][a, :, 3:5] = (4.5, 2.0)
        d["agent_velocity"][a, :, 0] = v
        d["agent_valid"][a] = True
        d["agent_type"][a] = rng.integers(4)
    d["lane_polygons"][0], d["lane_vertex_valid"][0] = pad_polygon(
        [[-10, -2], [60, -2], [60, 2], [-10, 2]], spec.lane_vertices)
    d["lane_centerlines"][0], d["lane_point_valid"][0] = pad_polyline([[-10, 0], [60, 0]], spec.lane_points)
    d["lane_valid"][0] = d["lane_on_route"][0] = True
    d["lane_speed_limit"][0] = 13.9
    d["drivable_polygons"][0], d["drivable_vertex_valid"][0] = pad_polygon(
        [[-15, -6], [70, -6], [70, 6], [-15, 6]], spec.drivable_vertices)
    d["drivable_valid"][0] = True
    d["light_polygons"][0], d["light_vertex_valid"][0] = pad_polygon(
        [[30, -2], [32, -2], [32, 2], [30, 2]], spec.light_vertices)
    d["light_valid"][0] = d["light_on_route"][0] = True
    d["light_red"][0] = rng.random() < 0.5
    d["speed_limit"][()] = 13.9
    d["camera"][:] = rng.integers(0, 256, d["camera"].shape, dtype=np.uint8)
    d["lidar"][:] = rng.random(d["lidar"].shape, dtype=np.float32)
    d["bev_semantic"][:] = rng.integers(0, 6, d["bev_semantic"].shape, dtype=np.uint8)
    d["instruction"][:8] = rng.integers(1, 50, 8)
    d["instruction_valid"][:8] = True
    d["meta_speed"][()] = rng.integers(4)
    d["meta_path"][()] = rng.integers(5)
    d["scene_id"][()] = code * 1_000_000 + int(index)
    d["split"][()] = code
    d["family"][()] = fam
    d["seed"][()] = int(seed)
    return type(empty_scene(spec))(**d)


def slow_generate_scene(spec, seed, index, split, family=None):
    """The stand-in, slowed down (for the interrupted-generate test)."""
    import time
    time.sleep(0.05)
    return generate_scene(spec, seed, index, split, family)


def failing_generate_scene(spec, seed, index, split, family=None):
    """Fails on val[3] (an exception mid-generation)."""
    if split == "val" and index == 3:
        raise RuntimeError("boom: stand-in failure")
    return generate_scene(spec, seed, index, split, family)


def nan_generate_scene(spec, seed, index, split, family=None):
    """Produces a NaN in expert_future on train[5] (validation on write must catch it)."""
    s = generate_scene(spec, seed, index, split, family)
    if split == "train" and index == 5:
        s.expert_future[2, 1] = np.nan
    return s
