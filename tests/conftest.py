"""Test setup: 8 simulated CPU devices (sharding paths), tiny shapes, a shared compilation cache, XLA's
backend optimisations off."""
import os

# --xla_backend_optimization_level=0 (LLVM without optimisation passes), as tests/train/multihost_worker.py
# compiles: compiling is most of this suite's time on 2 cores (about 18 % less CPU time for the train,
# export, evaluate and model tests, 12 % for the scoring tests) and what the tests check does not depend on
# how the kernels are optimised. Inherited by the tests' subprocesses; an XLA_FLAGS set outside replaces it.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_cache = os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
jax.config.update("jax_compilation_cache_dir", os.path.abspath(_cache))
# Every program is cached, also the sub-second ones that other tests and the other xdist worker compile again
# (threshold 0 vs 1 s: 221 vs 234 s wall for the model, IL, PPO-core and export tests, fresh cache, 2 cores).
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

SHARED = os.environ.get("IRLVLA_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def world_dataset(tmp_path_factory):
    """A tiny generated world dataset (val: 12 scenes) and a workdir: (config, workdir)."""
    from irlvla_jax.data.tfds_builder import generate_dataset
    from tests.data.conftest import tiny_config
    d = str(tmp_path_factory.mktemp("evaldata"))
    c = tiny_config(data_dir=d, num_train=4, num_val=12, num_test=4, num_hard=4, num_anchors=2)
    generate_dataset(c, d, generator="irlvla_jax.world.generate:generate_scene", workers=0, progress=False)
    return c, str(tmp_path_factory.mktemp("evalwork"))


def pytest_collection_modifyitems(config, items):
    """The multi-host test (3 subprocesses, ~3 min) first: with ``-n 2`` its worker starts it at once and
    the other tests fill the second worker around it, instead of it running alone at the end."""
    items.sort(key=lambda item: 0 if "tests/train/test_multihost.py" in item.nodeid else 1)
