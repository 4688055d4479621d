"""One process per workdir and stage: advisory lock files ``<dir>/.locks/<name>.lock``.

``with hold(directory, name): ...`` takes an exclusive ``flock`` on the file and writes the owner (pid,
host, process index, start time, command) into it. The kernel releases the lock when the owner exits,
however it exits (kill -9 included), so a lock left by a dead process is simply taken over -- with a
message naming the previous owner; a lock held by a live process refuses at once with a one-line
:class:`~irlvla_jax.errors.UserError` naming it. Each process of a multi-process job locks its own name
(``IRLVLA_PROCESS_ID`` / ``SLURM_PROCID`` appended), so the processes of one job never refuse each other.
Locks are advisory and work wherever ``flock`` does (local disks, NFSv4).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

from irlvla_jax.errors import UserError

LOCK_DIR = ".locks"


def process_index() -> int:
    """This process's index in a multi-process launch (0 when launched alone), from the environment."""
    for var in ("IRLVLA_PROCESS_ID", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def _read(fd) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 1 << 16).decode(errors="replace").strip()
    try:
        return json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}


@contextlib.contextmanager
def hold(directory: str, name: str):
    """Hold the lock ``name`` of ``directory`` for the body (see the module docstring)."""
    os.makedirs(os.path.join(directory, LOCK_DIR), exist_ok=True)
    pidx = process_index()
    path = os.path.join(directory, LOCK_DIR, f"{name}{'' if pidx == 0 else f'.p{pidx}'}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            o = _read(fd)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(o["started"])) if "started" in o else "?"
            raise UserError(f"{directory} is in use: '{name}' is running as pid {o.get('pid', '?')} on host "
                            f"{o.get('host', '?')} since {since}; wait for it to finish or use another --workdir "
                            f"(lock {path})") from None
        prev = _read(fd)
        if prev.get("pid") and not prev.get("released"):
            print(f"irlvla: taking over the lock of '{name}' in {directory} left by pid {prev['pid']} on host "
                  f"{prev.get('host', '?')} (no longer running)", file=sys.stderr, flush=True)
        me = dict(pid=os.getpid(), host=socket.gethostname(), process_index=pidx, started=time.time(),
                  command=" ".join(sys.argv[:6]))
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(dict(me, released=time.time())).encode())
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
