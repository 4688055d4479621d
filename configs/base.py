"""base: one-GPU, NAVSIM-scale world (~100k train, ~12k test scenes) and model."""
import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = "base"
    c.scene = ml_collections.ConfigDict(dict(
        num_agents=32, num_lanes=48, lane_vertices=48, lane_points=24, num_drivable=16,
        drivable_vertices=48, route_points=96, num_lights=24, light_vertices=48, instruction_tokens=32,
        camera_hw=(256, 1024), lidar_hw=(128, 128), lidar_channels=8, bev_hw=(128, 128),
        bev_range=(-32.0, 64.0, -48.0, 48.0)))
    c.data = ml_collections.ConfigDict(dict(
        name="irlvla_world_base", num_train=100000, num_val=4000, num_test=12000, num_hard=4000,
        num_anchors=20, batch_size=64, shuffle_seed=0, workers=16, data_dir="",
        render_split="val", render_count=8))
    c.scoring = ml_collections.ConfigDict(dict(mode="tracked", human_filter=True))
    return c
