"""The ``irlvla`` command line (irlvla_jax/cli.py): every config error is one line naming the file or the
key, exit code 2. Every case runs in a fresh process (absl flags are process-global): one ``python -m
irlvla_jax.cli`` subprocess, the others forked from one interpreter that imported the CLI once
(tests/cli_runner.py)."""
import os
import subprocess
import sys

import pytest

from tests.cli_runner import run_commands

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


def _check(code, stderr, message):
    import re
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert code == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("irlvla: error: "), stderr[-2000:]
    assert re.search(message, lines[0]), lines[0]


def _train_argv(d, i, args):
    return ["train", "--stage", "il", "--workdir", str(d / f"wd{i}"), *[a.format(d=d) for a in args]]


def _convert_argv(d, i, args):
    return [*[a.format(d=d) for a in args], "--config", TINY, "--workdir", str(d / f"wd{i}")]


@pytest.fixture(scope="module")
def forked(tmp_path_factory):
    """Every case's command line, forked by tests/cli_runner.py -> {(kind, case index): (exit code, stderr)}."""
    d = tmp_path_factory.mktemp("cli")
    for name, text in FILES.items():
        (d / name).write_text(text)
    keys = [("config", i) for i in range(len(CASES))] + [("convert", i) for i in range(len(CONVERT_CASES))]
    argvs = [_train_argv(d, i, CASES[i][0]) if k == "config" else _convert_argv(d, i, CONVERT_CASES[i][0])
             for k, i in keys]
    return {k: (code, err) for k, (code, _, err) in zip(keys, run_commands(argvs))}


def test_a_config_error_from_the_installed_module_is_one_line(tmp_path):
    """What the forked cases stand for: ``python -m irlvla_jax.cli`` itself, exit code 2, one line."""
    (tmp_path / "nameerror.py").write_text(FILES["nameerror.py"])
    p = subprocess.run([sys.executable, "-m", "irlvla_jax.cli", *_train_argv(tmp_path, 0, CASES[2][0])],
                       capture_output=True, text=True, cwd=ROOT, timeout=120, env=dict(os.environ, IRLVLA_TRACEBACK=""))
    _check(p.returncode, p.stderr, CASES[2][1])


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[1] for c in CASES])
def test_config_errors_are_one_line(forked, i):
    _check(*forked[("config", i)], CASES[i][1])


CONVERT_CASES = [
    (["convert", "waymo", "{d}"], r"convert: expected `irlvla convert navsim\|av2\|scenarionet SRC"),
    (["convert", "navsim", "{d}/missing"], r"convert navsim: SRC '.*/missing' does not exist"),
    (["convert", "navsim", "{d}", "--stride", "3"], r"--stride 3: NAVSIM frames are 0.5 s apart; give a multiple of 5"),
    (["convert", "av2", "{d}", "--maps", "{d}"], r"--maps: only `convert navsim` reads a map source"),
    (["convert", "navsim", "{d}"], r"convert navsim: no NAVSIM \*.pkl logs .* in '.*'"),
    (["submit", "--policy", "cv"], r"submit: --name NAME is required"),
]


@pytest.mark.parametrize("i", range(len(CONVERT_CASES)), ids=[c[1] for c in CONVERT_CASES])
def test_convert_and_submit_errors_are_one_line(forked, i):
    _check(*forked[("convert", i)], CONVERT_CASES[i][1])
