"""Errors meant for the user: importable by every module of the library without importing the CLI.

``UserError`` is raised for bad input the user can fix (a config, a file, a flag); the ``irlvla`` command
line prints it as one line and exits with code 2.
"""


class UserError(Exception):
    """An error caused by the user's input; printed by the CLI as one line, exit code 2."""
