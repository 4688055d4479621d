"""The ``irlvla`` command line (irlvla_jax/cli.py): every config error is one line naming the file or the
key, exit code 2 (a subprocess per case: absl flags are process-global)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "configs", "tiny.py")

FILES = {
    "syntax.py": "def get_config(:\n",
    "nameerror.py": "def get_config():\n    return undefined_name\n",
    "returns_dict.py": "def get_config():\n    return {'a': 1}\n",
    "no_rwm.py": ("from irlvla_jax.config import load_config\n"
                  f"def get_config():\n    c = load_config({TINY!r})\n    del c['rwm']\n    return c\n"),
}
CASES = [
    (["--config", "/nonexistent/cfg.py"], r"config file '/nonexistent/cfg.py' not found"),
    (["--config", "{d}/syntax.py"], r"syntax.py' does not load: SyntaxError"),
    (["--config", "{d}/nameerror.py"], r"nameerror.py': get_config\(\) failed: NameError"),
    (["--config", "{d}/returns_dict.py"], r"returns_dict.py': get_config\(\) returned a dict"),
    (["--config", "{d}/no_rwm.py"], r"config.rwm: missing"),
    (["--config", TINY, "--config.il.steps=abc"], r"--config.il.steps: bad value"),
    (["--config", TINY, "--config.il.nope=3"], r"--config.il.nope: the config has no such key"),
    (["--config", TINY, "--config.il.lr=-1"], r"config.il.lr: must be > 0"),
    ([], r"--config is required"),
]


@pytest.mark.parametrize("args,message", CASES)
def test_config_errors_are_one_line(tmp_path, args, message):
    import re
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    argv = [a.format(d=tmp_path) for a in args]
    p = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", "train", "--stage", "il", "--workdir",
                        str(tmp_path / "wd"), *argv], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env=dict(os.environ, IRLVLA_TRACEBACK=""))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("irlvla: error: "), p.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]


CONVERT_CASES = [
    (["convert", "waymo", "{d}"], r"convert: expected `irlvla convert navsim\|av2\|scenarionet SRC"),
    (["convert", "navsim", "{d}/missing"], r"convert navsim: SRC '.*/missing' does not exist"),
    (["convert", "navsim", "{d}", "--stride", "3"], r"--stride 3: NAVSIM frames are 0.5 s apart; give a multiple of 5"),
    (["convert", "av2", "{d}", "--maps", "{d}"], r"--maps: only `convert navsim` reads a map source"),
    (["convert", "navsim", "{d}"], r"convert navsim: no NAVSIM \*.pkl logs .* in '.*'"),
    (["submit", "--policy", "cv"], r"submit: --name NAME is required"),
]


@pytest.mark.parametrize("args,message", CONVERT_CASES)
def test_convert_and_submit_errors_are_one_line(tmp_path, args, message):
    import re
    argv = [a.format(d=tmp_path) for a in args]
    p = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", *argv, "--config", TINY, "--workdir",
                        str(tmp_path / "wd")], capture_output=True, text=True, cwd=ROOT, timeout=120,
                       env=dict(os.environ, IRLVLA_TRACEBACK=""))
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, p.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("irlvla: error: "), p.stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]
