"""base: one GPU, a NAVSIM-scale world (~100k train, ~12k test scenes) and model.

The variant ``base`` of configs/default.py, where every setting is documented (same as
``--config configs/default.py:base``)."""
import os

from irlvla_jax.config import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py"), "base")
