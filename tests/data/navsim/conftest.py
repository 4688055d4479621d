"""Fixtures of the NAVSIM adapter tests: the synthetic log on disk and its first scene, converted."""
import pytest

from irlvla_jax.data import navsim as N
from tests.data.navsim.synthetic import SPEC, build_log, map_dict


@pytest.fixture()
def log_path(tmp_path):
    """Path of the synthetic log (15 frames), written under tmp_path/navsim_logs/test/."""
    path = str(tmp_path / "navsim_logs" / "test" / "2021.06.03.12.02.06_veh-35_01100_01227.pkl")
    build_log(path)
    return path


@pytest.fixture()
def scene0(log_path):
    """Scene 0 of the synthetic log (t0 = frame 3), converted with the dict map layers."""
    frames = N.load_log(log_path)
    return N.convert_scene(frames[:14], SPEC, N.DictMapLayers(map_dict()), split="test")
