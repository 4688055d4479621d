"""tiny: CPU-sized everything (tests, demos, the README's main job). Minutes on 2 cores."""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = "tiny"

    # Static scene sizes (irlvla_jax.scene.SceneSpec).
    c.scene = ml_collections.ConfigDict(dict(
        num_agents=16, num_lanes=32, lane_vertices=32, lane_points=16, num_drivable=16,
        drivable_vertices=32, route_points=64, num_lights=16, light_vertices=32, instruction_tokens=24,
        camera_hw=(48, 96), lidar_hw=(48, 48), lidar_channels=4, bev_hw=(48, 48),
        bev_range=(-16.0, 48.0, -32.0, 32.0)))

    # Datasets (irlvla generate; data/).
    c.data = ml_collections.ConfigDict(dict(
        name="irlvla_world_tiny", num_train=4000, num_val=250, num_test=500, num_hard=250,
        num_anchors=16, batch_size=32, shuffle_seed=0, workers=2, data_dir=""))  # "" -> <workdir>/data

    # EPDMS scorer (scoring/).
    c.scoring = ml_collections.ConfigDict(dict(mode="tracked", human_filter=True))
    return c
