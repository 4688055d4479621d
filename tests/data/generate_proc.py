"""``generate_dataset`` in a process of its own (run by test_generate.py, not collected by pytest).

argv: data_dir workers generator ('module:function'; 'slow' = :func:`sleepy_generate_scene` below)

Also the scene generator of the killed-generate test: the stand-in, slowed enough that a 2-worker
generate is still mid-run seconds after its first records (sleeping, so it costs no CPU).
"""
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SLOW = "tests.data.generate_proc:sleepy_generate_scene"


def sleepy_generate_scene(spec, seed, index, split, family=None):
    from tests.data.standin import generate_scene
    marks = os.environ.get("IRLVLA_TEST_MARKS")
    if marks:  # tell the test which processes are generating
        open(os.path.join(marks, str(os.getpid())), "w").close()
    time.sleep(0.25)
    return generate_scene(spec, seed, index, split, family)


def main():
    data_dir, workers, generator = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    from irlvla_jax.data.tfds_builder import generate_dataset
    from tests.data.conftest import tiny_config
    generate_dataset(tiny_config(), data_dir, generator=SLOW if generator == "slow" else generator,
                     workers=workers, progress=False)


if __name__ == "__main__":  # spawned workers import this module (the generator) without running main
    main()
