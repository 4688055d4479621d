"""Test setup: 8 simulated CPU devices (sharding paths), tiny shapes, a shared compilation cache, XLA
flags that make compiling cheaper (tests/compile_flags.py)."""
import os

from tests.compile_flags import FAST_COMPILE_FLAGS

# --xla_backend_optimization_level=0 (LLVM without optimisation passes) and --xla_cpu_use_fusion_emitters=false
# (XLA:CPU's older LLVM-IR fusion emitter instead of the MLIR one), as tests/train/multihost_worker.py compiles:
# compiling is most of this suite's time on 2 cores. The first flag: about 18 % less CPU time for the train,
# export, evaluate and model tests, 12 % for the scoring tests. The second, on top (2026-12-07, `AMD EPYC` 2 cores,
# fresh cache, module alone, A then B): test_ppo_core 133 -> 65 CPU-s, test_rules 89 -> 68, test_imitation
# 144 -> 115, test_models 75 -> 63; the scorer's program compiles in 6.9 s instead of 12.8 s. What the tests
# check does not depend on how the kernels are emitted. Inherited by the tests' subprocesses; an XLA_FLAGS set
# outside replaces it.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 " + FAST_COMPILE_FLAGS)
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


# Test modules that share compiled programs or fixtures run on one xdist worker (``--dist loadgroup`` in
# setup.cfg): the official-vector scorer at B = 15 (test_vectors, test_epdms) and the micro IL step
# (test_imitation, test_export). Every other module is its own group, so its module fixtures are built
# once, not on both workers.
SHARED_GROUPS = {"tests/scoring/test_vectors.py": "scorer_vectors", "tests/scoring/test_epdms.py": "scorer_vectors",
                 "tests/train/test_imitation.py": "il_micro", "tests/test_export.py": "il_micro"}
# Groups by CPU time in a fresh-clone suite run, longest first (the multi-host job first: 3 subprocesses, about
# 3 min), so that the two workers end together; unlisted modules follow in collection order.
LONGEST_FIRST = ("tests/train/test_multihost.py", "scorer_vectors", "il_micro",
                 "tests/scoring/test_reference_planner_fast.py", "tests/models/test_models.py",
                 "tests/scoring/test_sparse_flags.py", "tests/train/test_ppo.py", "tests/test_evaluate.py",
                 "tests/train/test_ppo_core.py", "tests/scoring/test_rules.py", "tests/models/test_reward_model.py",
                 "tests/scoring/test_vocab.py", "tests/data/test_generate.py")


def _group(item):
    path = item.nodeid.split("::")[0]
    return SHARED_GROUPS.get(path, path)


@pytest.hookimpl(tryfirst=True)       # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """Each test in its module's group (:data:`SHARED_GROUPS`), the groups in :data:`LONGEST_FIRST` order."""
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))
