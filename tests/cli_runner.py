"""Runs ``irlvla`` command lines for tests/test_cli.py in one interpreter (not a test): the CLI module is
imported once with every command's module and each command line runs in a forked child (absl flags are
process-global: a fresh child per command, as a fresh ``python -m irlvla_jax.cli`` would be; no JAX backend is
started before the fork), instead of an interpreter start and import per command line (3-9 s each on 2 cores).

    python tests/cli_runner.py < commands.json > results.json

stdin: a JSON list of argument lists (what follows ``irlvla``); stdout: a JSON list of [exit code, stderr].
"""
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import importlib  # noqa: E402

import irlvla_jax.cli as cli  # noqa: E402
from absl import flags  # noqa: E402,F401
from ml_collections import config_flags  # noqa: E402,F401

for _target, _ in cli.COMMANDS.values():     # what the commands import, imported once before the forks
    importlib.import_module(_target.split(":")[0])


def run(args):
    """One command line in a forked child -> (exit code, its stderr)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:                                   # the child: stderr to the file, the CLI, exit
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
        err.seek(0)
        return os.waitstatus_to_exitcode(status), err.read().decode(errors="replace")


if __name__ == "__main__":
    commands = json.load(sys.stdin)
    results = []
    for args in commands:
        with open(os.devnull, "w") as null:            # the children's stdout stays out of the JSON
            saved = os.dup(1)
            os.dup2(null.fileno(), 1)
            try:
                results.append(run(args))
            finally:
                os.dup2(saved, 1)
                os.close(saved)
    json.dump(results, sys.stdout)
