"""launch/sweep.py is a thin wrapper of `irlvla sweep` (tests/test_sweep.py tests the sweep itself)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_wrapper_forwards_to_irlvla_sweep(tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "launch", "sweep.py"), "--config",
                        os.path.join(ROOT, "configs", "tiny.py"), "--workdir", str(tmp_path),
                        "--grid", "ppo.reward=rwm,scorer", "--seeds", "0,1", "--launcher", "print",
                        "--config.pipeline.eval_scenes=8"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = p.stdout.strip().splitlines()
    assert sum(" pipeline " in ln for ln in lines) == 4 and " generate " in lines[0]
    assert all("--config.pipeline.eval_scenes=8" in ln for ln in lines)
