"""The XLA flags every test process compiles with (tests/conftest.py, tests/train/multihost_worker.py): no
LLVM optimisation passes, and XLA:CPU's LLVM-IR fusion emitter instead of the MLIR one. Both make compiling,
most of the suite's time on 2 cores, cheaper; what the tests check does not depend on either (measurements:
tests/conftest.py)."""

FAST_COMPILE_FLAGS = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"

# For the tests that compare two different programs bit for bit (the reference planner's sparse and dense paths,
# an exported policy and the trainer's): with the LLVM-IR emitter the same operation can round differently in two
# programs (the sparse and dense proposals differed in 1,300 of 27,675 values, an RL export from the trainer's
# policy by 1.5e-5), with XLA's default emitter, the one users run, they agree to the bit. Those tests jit with
# ``compiler_options=DEFAULT_EMITTER``.
DEFAULT_EMITTER = {"xla_cpu_use_fusion_emitters": True}
