"""Durable, all-or-nothing file writes: nothing written is left half-done.

The implementation is :mod:`privacy.atomic_io` (the privacy ledger, which must not
depend on ``medgan_core``, needs it too); this module is where the rest of the project
imports it from.
"""

from __future__ import annotations

from privacy.atomic_io import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text"]
