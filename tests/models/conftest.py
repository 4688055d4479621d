"""Helpers shared by the model tests (``from tests.models.conftest import ...``): a constant-acceleration
plan and a batch of micro-config scenes with a given ego state."""
import numpy as np


def const_accel_plan(v0=5.0, a=1.0):
    """[1, 1, 8, 3] straight plan x = v0 t + a t^2 / 2 at t = 0.5 .. 4 s, and those times."""
    t = np.arange(1, 9, dtype=np.float64) * 0.5
    x = v0 * t + 0.5 * a * t ** 2
    return np.stack([x, np.zeros(8), np.zeros(8)], -1)[None, None].astype(np.float32), t


def micro_scenes(b=1, vx=0.0, ax=0.0):
    """``b`` copies of the micro config's empty scene (few map slots: small programs to compile), the ego
    (now and past) at speed vx, acceleration ax."""
    from irlvla_jax.scene import SceneSpec, empty_scene, stack
    from irlvla_jax.train.synthetic import micro_config
    sc = empty_scene(SceneSpec.from_config(micro_config().scene))
    sc = sc.replace(ego_state=np.array([0, 0, 0, vx, 0, ax, 0], np.float32),
                    ego_past=np.tile(np.array([0, 0, 0, vx, 0, ax, 0], np.float32), (15, 1)))
    return stack([sc] * b)
