"""Shared fixtures for the world tests: the tiny SceneSpec and one batch of generated scenes."""
import os

import pytest

from irlvla_jax import config
from irlvla_jax.scene import FAMILIES, SceneSpec

_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_config(name):
    """The ConfigDict of ``configs/<name>.py``."""
    return config.load_config(os.path.join(_ROOT, "configs", f"{name}.py"))


@pytest.fixture(scope="session")
def tiny_spec():
    return SceneSpec.from_config(load_config("tiny").scene)


@pytest.fixture(scope="session")
def family_scenes(tiny_spec):
    """24 scenes of every family (216 in all), test split, seed 11."""
    from irlvla_jax.world.generate import generate_scene
    return {f: [generate_scene(tiny_spec, 11, i, "test", f) for i in range(24)] for f in FAMILIES}
