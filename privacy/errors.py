"""Errors of the privacy ledger. Each message names the file, what is wrong and the fix.

``ValueError`` subclasses mean "this ledger or budget cannot be trusted": the site must
not train until a person fixes it. ``RuntimeError`` subclasses mean "not now": the ledger
is fine, but this request cannot proceed (the budget is spent, another round holds it).
"""

from __future__ import annotations

__all__ = ["LedgerBusy", "LedgerError", "LedgerMissing", "LedgerTampered", "PrivacyBudgetExceeded"]


class PrivacyBudgetExceeded(RuntimeError):
    """Training would take a site past its (epsilon, delta) budget."""


class LedgerBusy(RuntimeError):
    """Another process held the ledger's lock for longer than the caller would wait."""


class LedgerError(ValueError):
    """A ledger file that is unreadable or invalid, or a budget that cannot be enforced."""


class LedgerTampered(LedgerError):
    """The hash chain does not match: entries were dropped, reordered or edited."""


class LedgerMissing(LedgerError):
    """The ledger file is absent where a ledger is required, or where site state shows one existed.

    ``site_state`` names the files that show a ledger existed (empty: simply no ledger yet).
    """

    def __init__(self, message: str, *, site_state: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.site_state = tuple(site_state)
