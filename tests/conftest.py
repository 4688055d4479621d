"""Test setup: 8 simulated CPU devices (sharding paths), tiny shapes, a shared compilation cache."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_cache = os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
jax.config.update("jax_compilation_cache_dir", os.path.abspath(_cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

SHARED = os.environ.get("IRLVLA_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
