"""Fixtures of the data tests: the tiny config with small split sizes and a stand-in generated dataset."""
import importlib.util
import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STANDIN = "tests.data.standin:generate_scene"
SIZES = dict(num_train=48, num_val=16, num_test=16, num_hard=16)


def tiny_config(**data):
    spec = importlib.util.spec_from_file_location("tiny_cfg", os.path.join(ROOT, "configs", "tiny.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    c = mod.get_config()
    for k, v in {**SIZES, "num_anchors": 4, "workers": 0, **data}.items():
        c.data[k] = v
    return c


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """(config with data_dir set, metadata) of a small dataset made by the stand-in generator."""
    from irlvla_jax.data.tfds_builder import generate_dataset
    d = str(tmp_path_factory.mktemp("data"))
    c = tiny_config(data_dir=d)
    meta = generate_dataset(c, d, generator=STANDIN, workers=0, progress=False)
    return c, meta
