"""Durable, all-or-nothing file writes for the privacy package.

A copy of the helper in ``medgan_core.io_utils``, kept here so that ``privacy`` depends
on nothing but the standard library and Opacus: a data-protection officer can review
and test the ledger without the rest of the project.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "temporary_name_prefix"]


def temporary_name_prefix(path: Path) -> str:
    """Prefix of the temporary files :func:`atomic_write_text` leaves if it is killed."""
    return f".{Path(path).name}."


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves either the old or the new file.

    The bytes go to a temporary file in the same directory, are fsync'ed, then renamed
    over ``path``; the directory is fsync'ed so that the rename itself survives power loss.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_name_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
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
