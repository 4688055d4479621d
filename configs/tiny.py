"""tiny: CPU-sized everything (tests, demos, the README's main job). Minutes on 2 cores.

The variant ``tiny`` of configs/default.py, where every setting is documented (same as
``--config configs/default.py:tiny``)."""
import os

from irlvla_jax.config import load_config


def get_config():
    return load_config(os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py"), "tiny")
