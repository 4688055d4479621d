"""Shared fixtures for the world tests: the tiny SceneSpec and one batch of generated scenes."""
import importlib.util
import os

import pytest

from irlvla_jax.scene import FAMILIES, SceneSpec

_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def load_config(name):
    sp = importlib.util.spec_from_file_location(f"cfg_{name}", os.path.join(_ROOT, "configs", f"{name}.py"))
    mod = importlib.util.module_from_spec(sp)
    sp.loader.exec_module(mod)
    return mod.get_config()


@pytest.fixture(scope="session")
def tiny_spec():
    return SceneSpec.from_config(load_config("tiny").scene)


@pytest.fixture(scope="session")
def family_scenes(tiny_spec):
    """24 scenes of every family (216 in all), test split, seed 11."""
    from irlvla_jax.world.generate import generate_scene
    return {f: [generate_scene(tiny_spec, 11, i, "test", f) for i in range(24)] for f in FAMILIES}
