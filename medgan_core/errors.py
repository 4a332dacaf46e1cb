"""Exceptions raised by the core, each naming the bad value and how to fix it."""

from __future__ import annotations

__all__ = ["InvalidRecordError", "ConfigError"]


class InvalidRecordError(ValueError):
    """One input record (ECG record, image file) cannot be used.

    Readers raise it per record; loaders catch it, count the record as skipped in the
    :class:`~medgan_core.data.report.DataReport` and carry on with the others.
    """

    def __init__(self, path: str, reason: str, fix: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path}: {reason}. Fix: {fix}")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""
