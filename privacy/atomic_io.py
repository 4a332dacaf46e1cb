"""Durable, all-or-nothing file writes: nothing written is left half-done.

The one implementation in the project. It lives in ``privacy`` because the ledger needs
it and ``privacy`` depends on nothing but the standard library and Opacus (a
data-protection officer can review and test the ledger without the rest of the project);
``medgan_core.io_utils`` re-exports it for everything else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "temporary_name_prefix"]


def temporary_name_prefix(path: Path) -> str:
    """Prefix of the temporary files :func:`atomic_write_text` leaves if it is killed."""
    return f".{Path(path).name}."


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file.

    The bytes go to a temporary file in the same directory, are fsync'ed, then renamed
    over ``path``; the directory is fsync'ed so that the rename itself survives power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))
