"""Progress for long work: a bar on an interactive terminal, a log line per step elsewhere.

The bar is rich's (Flower already depends on rich) and is drawn on stderr, so stdout keeps
only results (tables, JSON). In CI, in a pipe or with ``MEDGAN_PROGRESS=0`` there is no
bar: each step is one INFO log line, which a log file can keep.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["track"]

T = TypeVar("T")

logger = logging.getLogger(__name__)


def _interactive() -> bool:
    if os.environ.get("MEDGAN_PROGRESS", "1") == "0" or os.environ.get("CI"):
        return False
    return sys.stderr.isatty()


def track(items: Iterable[T], *, description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items``, showing how many of ``total`` (default ``len(items)``) are done."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if _interactive():
        from rich.console import Console
        from rich.progress import track as rich_track

        yield from rich_track(items, description=description, total=total, console=Console(stderr=True),
                              transient=True)
        return
    for done, item in enumerate(items, 1):
        yield item
        logger.info("%s: %d/%s done", description, done, total if total is not None else "?")
