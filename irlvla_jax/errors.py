"""Errors meant for the user: importable by every module of the library without importing the CLI.

The ``irlvla`` command line prints each as one line and exits with code 2 (tracebacks only with
``IRLVLA_TRACEBACK=1``):

* :class:`UserError`        bad input the user can fix (a config, a file, a flag, a busy workdir);
* :class:`NonFiniteError`   training produced a NaN / inf (loss, gradients, parameters, reward); nothing of
                            that step was saved;
* :class:`CheckpointCorrupt` a checkpoint step whose arrays do not match the digest written when it was
                            saved, are not finite, or cannot be read.
"""


class UserError(Exception):
    """An error caused by the user's input; printed by the CLI as one line, exit code 2."""


class NonFiniteError(FloatingPointError):
    """A training step produced a non-finite quantity; raised before any checkpoint of that step."""


class CheckpointCorrupt(ValueError):
    """A checkpoint step failed its integrity check (digest, finiteness, or unreadable)."""
