"""The XLA flags every test process compiles with (tests/conftest.py, tests/train/multihost_worker.py): no
LLVM optimisation passes, and XLA:CPU's LLVM-IR fusion emitter instead of the MLIR one. Both make compiling,
most of the suite's time on 2 cores, cheaper; what the tests check does not depend on either (measurements:
tests/conftest.py)."""

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
