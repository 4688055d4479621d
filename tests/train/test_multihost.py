"""Multi-host in CI: 2 local JAX processes (jax.distributed over 127.0.0.1) x 4 simulated CPU devices run a
few IL and PPO steps (tests/train/multihost_worker.py) and must end with the parameters of a 1-process x
8-device run of IL and PPO, whose RWM checkpoint the 2-process PPO restores and rewards with (a stand-in: the
freshly initialised RWM saved as its stage saves it; training it would compile the RWM step and its scorer,
~80 s of this test's critical path on 2 cores, and no process compares it; with
IRLVLA_TEST_MULTIHOST_REFRESH=1 PPO also refreshes its RWM once, one RWM training step on 2 processes in the
job, and the refreshed RWMs must match too: multihost_common.REFRESH, off in the suite for its cost);
checkpoints written by 2 processes restore on 1 process (8 and 4 devices) and a 1-process run's
checkpoints restore on 2; IL validation on 2 processes equals 1 process's; the loader shards scenes by
process disjointly and completely; a process of the same job killed with kill -9 (after the stages, mid IL
round) ends the job with a non-zero exit within the heartbeat bound.

Tolerance: the 2 x 4 and 1 x 8 programs reduce gradients over the same 8 shards in a different order
(an all-reduce across processes, then devices), so float32 sums differ in the last bits. For almost every
parameter that is invisible (median |diff| ~1e-9). Parameters whose true gradient is zero -- attention key
biases and the mode head's bias (a softmax is shift-invariant) -- get pure rounding-noise gradients, which
Adam normalises into steps of up to the learning rate, so those entries differ by up to ~1e-4 after three
steps (measured 8.5e-5). Hence atol 2e-4 / rtol 1e-4 for all, and a median |diff| below 1e-6.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "multihost_worker.py")


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


CACHE = {}
HEARTBEAT_S = 10      # the job's failure-detection bound (IRLVLA_HEARTBEAT_TIMEOUT): short, for the kill test


def _env(**kw):
    """The workers' environment: no inherited XLA flags or coordinator; one persistent compilation cache
    for the workers of this module."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "IRLVLA_COORDINATOR")}
    if "dir" not in CACHE:
        import tempfile
        CACHE["dir"] = tempfile.mkdtemp(prefix="irlvla_multihost_jax_cache_")
    env.update(JAX_COMPILATION_CACHE_DIR=CACHE["dir"], JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    env.update(kw)
    return env


def _log(d, i):
    with open(d / f"p{i}.log") as f:
        return f.read()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 1-process run and the 2-process job side by side; once both processes of the job are DONE and
    process 0's progress bar shows an IL round past step 2, process 1 is killed with kill -9.
    -> (dir, single params, multi params, (process 0's exit code, seconds from the kill to its exit, its log))."""
    d = tmp_path_factory.mktemp("multihost")
    t0 = time.time()
    single = subprocess.Popen([sys.executable, WORKER, "single", "8", str(d / "single"), str(d / "single.npz")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    port = _port()
    env = _env(IRLVLA_WAIT_FOR=str(d / "single.npz"), IRLVLA_HEARTBEAT_TIMEOUT=str(HEARTBEAT_S))
    logs = [open(d / f"p{i}.log", "w") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, WORKER, "multi", str(i), port, str(d / "multi"), str(d / "multi.npz"),
                               str(d / "single")], stdout=logs[i], stderr=subprocess.STDOUT, env=env) for i in range(2)]
    try:
        out_single = single.communicate(timeout=600)[0]
        assert single.returncode == 0, out_single[-3000:]
        deadline = time.time() + 600
        while time.time() < deadline:
            done = [_log(d, i).partition("DONE 2 8\n") for i in range(2)]
            if all(sep for _, sep, _ in done) and "il:" in done[0][2] and " 2/" in done[0][2]:
                break
            for i, p in enumerate(procs):
                assert p.poll() is None, _log(d, i)[-3000:]
            time.sleep(1)
        else:
            pytest.fail("the 2-process job did not finish its stages and step an IL round: " + _log(d, 0)[-2000:])
        print(f"multi-host runs: {time.time() - t0:.0f} s")
        os.kill(procs[1].pid, signal.SIGKILL)
        t1 = time.time()
        rc = procs[0].wait(timeout=120)
        killed = (rc, time.time() - t1, _log(d, 0))
    finally:
        for p in procs + [single]:
            if p.poll() is None:
                p.kill()
        for f in logs:
            f.close()
    return d, dict(np.load(d / "single.npz")), dict(np.load(d / "multi.npz")), killed


def test_two_processes_match_one_process(runs):
    _, single, multi, _ = runs
    keys = [k for k in single]
    from tests.train.multihost_common import REFRESH
    assert {k.split("/")[0] for k in keys} == {"il", "rwm", "ppo"} | ({"rwm_refreshed"} if REFRESH else set())
    assert set(keys) <= set(multi)
    for k in keys:
        if k.startswith("rwm/"):            # the 1-process run's RWM, restored on 2 processes
            np.testing.assert_array_equal(multi[k], single[k], err_msg=k)
    if REFRESH:   # PPO's refresh trained the RWM on 2 processes (compared below with the 1-process refresh)
        assert max(float(np.max(np.abs(multi["rwm_refreshed/" + k[4:]] - multi[k]))) for k in keys
                   if k.startswith("rwm/")) > 1e-4
    worst = max(float(np.max(np.abs(multi[k] - single[k]))) for k in keys)
    for k in keys:
        np.testing.assert_allclose(multi[k], single[k], rtol=1e-4, atol=2e-4, err_msg=k)
    median = float(np.median([float(np.max(np.abs(multi[k] - single[k]))) for k in keys]))
    assert any(float(np.max(np.abs(single[k]))) > 0 for k in keys) and worst < 2e-4 and median < 1e-6, (worst, median)


def test_checkpoints_move_between_layouts(runs):
    """The 2-process job's checkpoints restore here (1 process, 8 and 4 devices); the 1-process run's
    restored in the 2-process job (``ref/``) equal its own parameters."""
    import jax
    from irlvla_jax.train import imitation, mesh as mesh_lib, ppo
    from tests.train.multihost_common import config, flat
    d, single, multi, _ = runs
    c = config()
    for n in (8, 4):
        il = flat(imitation.restore(c, str(d / "multi"), mesh_lib.make_mesh(n))[1])
        for k, v in il.items():
            np.testing.assert_array_equal(v, multi["il/" + k])
    full = flat(ppo.restore(c, str(d / "multi"))[1])
    for k, v in full.items():
        np.testing.assert_array_equal(v, multi["ppo/" + k])
    for k, v in single.items():
        np.testing.assert_array_equal(multi["ref/" + k], v)
    assert jax.device_count() == 8


def test_il_validation_on_two_processes_equals_one_process(runs):
    """IL validation on the 2-process mesh (each process validates its rows, the trajectories are gathered)
    gives, for the 2-process job's own checkpoint, what 1 process x 8 devices gives here."""
    from irlvla_jax.scene import SceneSpec
    from irlvla_jax.train import mesh as mesh_lib
    from tests.train.multihost_common import config, il_validation
    d, _, multi, _ = runs
    c = config()
    here = il_validation(c, str(d / "multi"), SceneSpec.from_config(c.scene), mesh_lib.make_mesh(8))
    there = {k[len("ilval/"):]: float(v) for k, v in multi.items() if k.startswith("ilval/")}
    assert set(here) == set(there) and {"ADE", "FDE", "loss"} <= set(here), (sorted(here), sorted(there))
    for k in here:
        assert here[k] == pytest.approx(there[k], rel=1e-5, abs=1e-6), (k, here[k], there[k])


def test_loader_shards_by_process_disjointly_and_completely(world_dataset):
    from irlvla_jax.data import loader as L
    c, _ = world_dataset
    ids = []
    for p in range(2):
        it = L.make_loader(c, "val", 3, shuffle=False, num_epochs=1, process_index=p, process_count=2)
        ids.append([int(i) for b in it for i in np.asarray(b.scene_id)])
    assert not set(ids[0]) & set(ids[1])
    allids = set(int(i) for i in np.asarray(L.load_split(c, "val").scene_id))
    assert set(ids[0]) | set(ids[1]) == allids and len(ids[0]) + len(ids[1]) == len(allids)


def test_killed_process_ends_the_job_within_the_bound(runs):
    """kill -9 of process 1 mid-training (an IL round of the 2-process job, after its stages): process 0 exits
    non-zero within the heartbeat bound (:data:`HEARTBEAT_S` here, IRLVLA_HEARTBEAT_TIMEOUT; 30 s by default)
    plus the time to notice, never hangs, and names the dead process."""
    rc, took, log0 = runs[3]
    assert rc != 0 and took < 60, (rc, took, log0[-2000:])
    assert "unhealthy (stopped sending heartbeats):\n1\n" in log0      # names the dead process (task 1)
    print(f"process 0 exited {rc} {took:.0f} s after kill -9 of process 1")
