"""Runs ``irlvla`` command lines for the CLI tests in one interpreter: the CLI is imported once with every
command's module and each command line runs in a forked child (absl flags are process-global: a fresh child
per command, as a fresh ``python -m irlvla_jax.cli`` would be; no JAX backend is started before the fork),
instead of an interpreter start and import per command line (3-9 s each on 2 cores).

    from tests.cli_runner import run_commands
    results = run_commands([["train", "--stage", "il", ...], ...])     # [(exit code, stdout, stderr)]

(``python tests/cli_runner.py < commands.json``: the worker it starts.)
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_commands(commands, timeout=300):
    """Each argument list (what follows ``irlvla``) run as its own command -> [(exit code, stdout, stderr)]."""
    p = subprocess.run([sys.executable, os.path.abspath(__file__)], input=json.dumps([list(c) for c in commands]),
                       capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env=dict(os.environ, IRLVLA_TRACEBACK=""))
    assert p.returncode == 0, p.stderr[-3000:]
    return [tuple(r) for r in json.loads(p.stdout)]


def _run_forked(cli, args):
    """One command line in a forked child -> (exit code, its stdout, its stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:                                   # the child: output to the files, the CLI, exit
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            code = 0
            try:
                sys.argv = [cli.__file__, *args]
                cli.main()
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:                      # as the interpreter would: traceback, exit 1
                import traceback
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return (os.waitstatus_to_exitcode(status), out.read().decode(errors="replace"),
                err.read().decode(errors="replace"))


def _main():
    import importlib
    sys.path.insert(0, ROOT)
    import irlvla_jax.cli as cli
    from absl import flags  # noqa: F401
    from ml_collections import config_flags  # noqa: F401
    for target, _ in cli.COMMANDS.values():     # what the commands import, imported once before the forks
        importlib.import_module(target.split(":")[0])
    commands = json.load(sys.stdin)
    results = [_run_forked(cli, args) for args in commands]
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    _main()
