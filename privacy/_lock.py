"""An exclusive inter-process lock on a sibling file (``fcntl.flock``).

The kernel drops a flock when its holder exits, however it exits (SIGKILL included), so
a crashed site never leaves a stale lock behind and nobody ever needs to delete one.
flock is advisory and per host: every writer of a ledger goes through this lock, and a
ledger on a network file system shared by several hosts is not supported.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import time
from pathlib import Path

__all__ = ["FileLock"]

_POLL_SECONDS = 0.02


class FileLock:
    """Exclusive lock on ``path`` (created if absent). Use as a context manager or acquire/release.

    The lock file may carry a marker (:meth:`mark`): the ledger writes one once a ledger
    exists, which is how a deleted ledger is told apart from a directory never used.
    """

    def __init__(self, path: Path, *, timeout: float) -> None:
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"lock timeout={timeout!r} must be a finite number of seconds >= 0")
        self.path = Path(path)
        self.timeout = float(timeout)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Block until the lock is held, at most ``timeout`` seconds.

        Raises:
            TimeoutError: another process held it for the whole timeout.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise TimeoutError(f"{self.path} is held by another process") from None
                time.sleep(_POLL_SECONDS)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def marked(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def mark(self, text: str) -> None:
        """Write ``text`` into the lock file once (durably), if it is still empty."""
        if self._fd is None:
            raise RuntimeError("mark() needs the lock held")
        if os.fstat(self._fd).st_size == 0:
            os.pwrite(self._fd, text.encode("utf-8"), 0)
            os.fsync(self._fd)

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
