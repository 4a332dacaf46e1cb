"""Exceptions raised by the core, each naming the bad value and how to fix it."""

from __future__ import annotations

__all__ = ["InvalidRecordError", "ConfigError", "DataFolderError"]


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

    def __reduce__(self) -> tuple:  # picklable across worker processes
        return type(self), (self.path, self.reason, self.fix)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key and the fix."""


class DataFolderError(ConfigError, FileNotFoundError):
    """A site's data directory is missing, empty, or not laid out as its reader expects.

    A :class:`ConfigError` (the command line prints it as one line) and, for callers that
    catch a missing directory, a :class:`FileNotFoundError`.
    """

    def __init__(self, path: str, reason: str, fix: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.fix = fix
        super().__init__(f"{self.path}: {reason}. Fix: {fix}")

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.reason, self.fix)
