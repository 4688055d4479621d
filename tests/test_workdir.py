"""One process per workdir and stage (irlvla_jax/workdir.py): a live holder refuses in one line, a lock
left by a killed process is taken over with a message, each process of a multi-process job has its own."""
import os
import signal
import subprocess
import sys
import time

import pytest

from irlvla_jax import workdir as W
from irlvla_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLDER = ("import sys, time; from irlvla_jax import workdir as W\n"
          "with W.hold(sys.argv[1], sys.argv[2]):\n    print('held', flush=True); time.sleep(60)\n")


def _holder(directory, name):
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), name], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_live_holder_refuses_and_killed_holder_is_taken_over(tmp_path, capsys):
    p = _holder(tmp_path, "il")
    try:
        with pytest.raises(UserError, match=rf"'il' is running as pid {p.pid} on host .* wait for it"):
            with W.hold(str(tmp_path), "il"):
                pass
        with W.hold(str(tmp_path), "rwm"):          # another stage of the same workdir is free
            pass
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    with W.hold(str(tmp_path), "il"):
        pass
    assert f"left by pid {p.pid}" in capsys.readouterr().err
    with W.hold(str(tmp_path), "il"):               # released cleanly last time: no message
        pass
    assert capsys.readouterr().err == ""


def test_processes_of_one_job_lock_separately(tmp_path, monkeypatch):
    with W.hold(str(tmp_path), "il"):
        monkeypatch.setenv("IRLVLA_PROCESS_ID", "1")
        with W.hold(str(tmp_path), "il") as path:
            assert path.endswith("il.p1.lock")


def test_cli_refuses_a_second_training_of_the_same_run(tmp_path):
    p = _holder(tmp_path, "il")
    try:
        t0 = time.time()
        r = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "train", "--stage", "il", "--config",
                            os.path.join(ROOT, "configs", "tiny.py"), "--workdir", str(tmp_path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "is in use: 'il' is running" in lines[0], r.stderr[-1500:]
    assert time.time() - t0 < 60
