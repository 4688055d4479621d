"""Worker of tests/train/test_multihost.py (not a test): a few IL and PPO steps of the micro VLA on synthetic
scenes alone (1 process; the RWM stage a stand-in checkpoint of the freshly initialised RWM), or as one process
of a 2-process job whose PPO rewards with the 1-process run's RWM (its checkpoints, copied in: restored on 2
processes).

    python multihost_worker.py single DEVICES WORKDIR OUT.npz
    python multihost_worker.py multi  PROCESS_ID PORT WORKDIR OUT.npz REF_WORKDIR

Every process feeds its own rows of the same global batch (batch i = random_scenes(seed + i), process p
takes rows [p B/P, (p+1) B/P)), so a 2 x 4-device job and a 1 x 8-device run see identical global batches.
Process 0 writes every stage's final parameters (flattened) to OUT.npz; the multi job also restores the
checkpoints of the 1-process run in REF_WORKDIR and writes their parameters (checkpoints written by 1
process restore on 2). After printing DONE, the multi job goes on with rounds of the same IL job (its
programs are compiled: no new compilation) until a process is killed: the test kills process 1 mid-round.
"""
import os
import shutil
import sys
import time

mode = sys.argv[1]
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
# Every run of the test compiles as the suite does (tests/compile_flags.py): compiling is most of this test's time
# on 2 cores (143 s -> 86 s for the 1-process run without LLVM's optimisation passes) and what it checks -- that
# 2 processes compute what 1 does -- does not depend on how the kernels are optimised or emitted.
from tests.compile_flags import FAST_COMPILE_FLAGS  # noqa: E402

if mode == "single":
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={int(sys.argv[2])} " + FAST_COMPILE_FLAGS
else:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4 " + FAST_COMPILE_FLAGS
    os.environ.update(IRLVLA_COORDINATOR="127.0.0.1:" + sys.argv[3], IRLVLA_NUM_PROCESSES="2",
                      IRLVLA_PROCESS_ID=sys.argv[2])
os.environ["JAX_PLATFORMS"] = "cpu"

from irlvla_jax.data.records import die_with_parent  # noqa: E402
from irlvla_jax.train import mesh as mesh_lib  # noqa: E402

die_with_parent(os.getppid())        # a killed pytest takes its workers with it (no orphans left computing)
mesh_lib.maybe_initialize_distributed()

from tests.train.multihost_common import B, Rows, config, il_validation, params_of, standin_rwm  # noqa: E402,F401
from irlvla_jax.scene import SceneSpec  # noqa: E402
from irlvla_jax.train import imitation, loop, ppo  # noqa: E402
from irlvla_jax.train.synthetic import random_anchors  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
    c = config()
    spec = SceneSpec.from_config(c.scene)
    wd, out = (sys.argv[3], sys.argv[4]) if mode == "single" else (sys.argv[4], sys.argv[5])
    t0 = time.time()
    imitation.train(c, wd, train_iter=Rows(spec, 11), anchors=random_anchors(4), progress=False)
    t1 = time.time()
    if mode == "single":        # the RWM stage stands in (freshly initialised): no process compares its training
        standin_rwm(c, wd)
    else:   # the 2-process PPO rewards with the 1-process run's RWM: once that run is done (it runs alongside),
        while not os.path.exists(os.environ["IRLVLA_WAIT_FOR"]):      # process 0 copies its checkpoints
            time.sleep(0.5)
        copied = os.path.join(wd, "rwm_copied")
        if jax.process_index() == 0:
            shutil.copytree(loop.checkpoint_dir(sys.argv[6], "rwm"), loop.checkpoint_dir(wd, "rwm"))
            open(copied, "w").close()
        while not os.path.exists(copied):
            time.sleep(0.5)
    t2 = time.time()
    ppo.train(c, wd, train_iter=Rows(spec, 31), progress=False)
    t3 = time.time()
    arrays = params_of(c, wd)
    print(f"TIMES il {t1 - t0:.1f} rwm {t2 - t1:.1f} ppo {t3 - t2:.1f} restore {time.time() - t3:.1f} s", flush=True)
    if mode == "multi":
        arrays.update({"ref/" + k: v for k, v in params_of(c, sys.argv[6]).items()})
        arrays.update({"ilval/" + k: np.float64(v) for k, v in il_validation(c, wd, spec, mesh_lib.make_mesh(0)).items()})
    if jax.process_index() == 0:
        np.savez(out, **arrays)
    print("DONE", jax.process_count(), len(jax.devices()), flush=True)
    if mode == "multi":     # rounds of the same IL job until a process is killed (progress bar: process 0 only)
        c.train.log_every = 1
        for i in range(10 ** 6):
            imitation.train(c, os.path.join(wd, f"round{i}"), train_iter=Rows(spec, 11), anchors=random_anchors(4),
                            progress=True)


if __name__ == "__main__":
    main()
