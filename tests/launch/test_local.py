"""launch/local.sh: N local processes with the explicit cluster variables; a failing process is named at
once and the survivors are killed after twice the heartbeat bound; success exits 0."""
import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = os.path.join(ROOT, "launch", "local.sh")


def _run(tmp_path, script, **env):
    t0 = time.time()
    p = subprocess.run(["bash", LOCAL, "2", "bash", "-c", script], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, IRLVLA_LOGDIR=str(tmp_path), **env))
    return p, time.time() - t0


def test_every_process_gets_its_rank(tmp_path):
    p, _ = _run(tmp_path, 'echo "$IRLVLA_PROCESS_ID/$IRLVLA_NUM_PROCESSES $IRLVLA_COORDINATOR"')
    assert p.returncode == 0, p.stderr
    lines = [(tmp_path / f"process_{i}.log").read_text().strip() for i in range(2)]
    assert [ln.split()[0] for ln in lines] == ["0/2", "1/2"] and lines[0].split()[1] == lines[1].split()[1]


def test_a_failed_process_is_named_and_the_rest_stopped(tmp_path):
    p, took = _run(tmp_path, 'if [ "$IRLVLA_PROCESS_ID" = 1 ]; then exit 3; else sleep 50; fi',
                   IRLVLA_HEARTBEAT_TIMEOUT="2")
    assert p.returncode == 1 and took < 20, (p.stderr, took)
    assert "process 1 failed with exit code 3" in p.stderr and "process 0 still running 4 s after a failure: killed" in p.stderr
