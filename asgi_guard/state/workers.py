"""Is this process one of several workers of one server? The embedded backend keeps its state per
process, so with N workers every limit, balance and idempotency record is held N times over.

Two sources, either suffices:
- the server's own settings, as the process sees them: uvicorn (`--workers N`, `WEB_CONCURRENCY`),
  gunicorn (`-w N`, `--workers N`, `GUNICORN_CMD_ARGS`, `WEB_CONCURRENCY`) and hypercorn
  (`-w N`, `--workers N`); worker processes inherit their parent's `sys.argv` and environment;
- a lock file, for servers started some other way (`uvicorn.run(..., workers=2)`): each process of one
  server (same parent, working directory and command line) takes an exclusive `flock` on one file in
  the temporary directory; a process that finds it taken has a sibling using the embedded backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence

_SERVERS = ("uvicorn", "gunicorn", "hypercorn")


def _server(argv: Sequence[str]) -> str | None:
    """Which known server runs this process, from its command line."""
    for arg in argv[:3]:
        parts = arg.replace("\\", "/").split("/")
        for name in _SERVERS:
            if name in parts or parts[-1] == name:
                return name
    return None


def _flag_value(args: Sequence[str], short: str | None) -> int | None:
    value: str | None = None
    for i, arg in enumerate(args):
        if arg == "--workers" or (short is not None and arg == short):
            value = args[i + 1] if i + 1 < len(args) else None
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif short is not None and arg.startswith(short) and arg[len(short) :].isdigit():
            value = arg[len(short) :]
    if value is not None and value.strip().isdigit():
        return int(value)
    return None


def server_worker_count(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> int | None:
    """The worker-process count the known server was told to run, or None when it cannot be told."""
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    server = _server(argv)
    if server is None:
        return None
    short = None if server == "uvicorn" else "-w"
    count = _flag_value(argv, short)
    if count is None and server == "gunicorn" and env.get("GUNICORN_CMD_ARGS"):
        with contextlib.suppress(ValueError):
            count = _flag_value(shlex.split(env["GUNICORN_CMD_ARGS"]), short)
    if count is None and server in ("uvicorn", "gunicorn"):
        concurrency = env.get("WEB_CONCURRENCY", "").strip()
        if concurrency.isdigit():
            count = int(concurrency)
    return count


class SiblingLock:
    """The exclusive lock of one server's embedded-backend processes (held while the backend lives)."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when this is the only process of its server holding the lock (or locks are unknown)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: rely on the server's settings alone
            return True
        identity = f"{os.getppid()}|{os.getcwd()}|{' '.join(sys.argv)}"
        name = (
            "asgi-guard-embedded-"
            + hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        )
        path = os.path.join(tempfile.gettempdir(), name + ".lock")
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True


_PROCESS_LOCK: SiblingLock | None = None
_ALONE = True


def alone_in_server() -> bool:
    """Whether no sibling process of this server holds the embedded-backend lock (asked once per
    process; the lock is then kept for the process's life, however many backends it builds)."""
    global _PROCESS_LOCK, _ALONE
    if _PROCESS_LOCK is None:
        _PROCESS_LOCK = SiblingLock()
        _ALONE = _PROCESS_LOCK.acquire()
    return _ALONE


def _forget_after_fork() -> None:
    """A forked child is a new process: it asks (and locks) for itself."""
    global _PROCESS_LOCK, _ALONE
    _PROCESS_LOCK, _ALONE = None, True


os.register_at_fork(after_in_child=_forget_after_fork)
