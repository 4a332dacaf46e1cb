"""A site's privacy ledger: the DP-SGD history of everything it ever released, on disk.

The ledger is the source of truth for a site's epsilon. It is written atomically and
fsync'ed *before* a model update leaves the site, so a crash can only over-count spend,
never under-count it, and a restarted site continues from what it already spent.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medgan_core.io_utils import atomic_write_text
from privacy.accounting import HistoryEntry, epsilon_from_history

__all__ = ["LedgerEntry", "PrivacyBudgetExceeded", "PrivacyLedger"]

logger = logging.getLogger(__name__)

LEDGER_VERSION = 1


class PrivacyBudgetExceeded(RuntimeError):
    """Training would take a site past its (epsilon, delta) budget."""


@dataclass(frozen=True)
class LedgerEntry:
    """One release: a round of local DP-SGD steps whose update left the site."""

    run_id: str
    server_round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float
    timestamp: float = field(default_factory=time.time)
    # "dp-sgd" for a round of discriminator steps; "label-prior" for the one Gaussian
    # release of the site's class counts (q = 1, one step).
    purpose: str = "dp-sgd"


class PrivacyLedger:
    """Durable, append-only record of a site's DP-SGD releases against a fixed budget.

    The budget is fixed when the ledger is created. Opening it later with a different
    target never raises the budget: the smaller of the two is enforced, so neither a
    run configuration nor a coordinator can grant a site more than it agreed to.
    """

    def __init__(self, path: Path, *, target_epsilon: float, target_delta: float,
                 accountant: str = "rdp", entries: list[LedgerEntry] | None = None) -> None:
        self.path = Path(path)
        self.target_epsilon = float(target_epsilon)
        self.target_delta = float(target_delta)
        self.accountant = accountant
        self.entries: list[LedgerEntry] = list(entries or [])

    # ------------------------------------------------------------------ persistence
    @classmethod
    def open(cls, path: str | Path, *, target_epsilon: float, target_delta: float,
             accountant: str = "rdp") -> "PrivacyLedger":
        """Load the ledger at ``path``, or create it with this budget if absent.

        Raises:
            ValueError: if the file exists but is not a ledger, or its delta differs (an
                epsilon at another delta is a different guarantee; fix the config).
        """
        path = Path(path)
        if not path.exists():
            ledger = cls(path, target_epsilon=target_epsilon, target_delta=target_delta, accountant=accountant)
            ledger.save()
            return ledger
        try:
            raw = json.loads(path.read_text())
            entries = [LedgerEntry(**e) for e in raw["entries"]]
            stored_eps, stored_delta = float(raw["target_epsilon"]), float(raw["target_delta"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: not a readable privacy ledger ({exc}). Fix: restore it from backup; "
                "never delete it to reset a budget"
            ) from exc
        if stored_delta != float(target_delta):
            raise ValueError(
                f"{path}: ledger was created for delta={stored_delta}, config asks delta={target_delta}. "
                "Fix: use the ledger's delta"
            )
        if target_epsilon > stored_eps:
            logger.warning(
                "%s: configured target_epsilon=%s exceeds the ledger's budget %s; the budget stays %s",
                path, target_epsilon, stored_eps, stored_eps,
            )
        return cls(path, target_epsilon=min(stored_eps, float(target_epsilon)),
                   target_delta=stored_delta, accountant=raw.get("accountant", accountant), entries=entries)

    def save(self) -> None:
        payload = {
            "version": LEDGER_VERSION,
            "accountant": self.accountant,
            "target_epsilon": self.target_epsilon,
            "target_delta": self.target_delta,
            "epsilon_spent": self.epsilon_spent(),
            "entries": [asdict(e) for e in self.entries],
        }
        atomic_write_text(self.path, json.dumps(payload, indent=2))

    # ------------------------------------------------------------------ accounting
    @property
    def history(self) -> list[HistoryEntry]:
        return [(e.noise_multiplier, e.sample_rate, e.steps) for e in self.entries]

    def epsilon_spent(self) -> float:
        return epsilon_from_history(self.history, delta=self.target_delta, accountant=self.accountant)

    def projected_epsilon(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        return epsilon_from_history(
            [*self.history, (noise_multiplier, sample_rate, steps)],
            delta=self.target_delta, accountant=self.accountant,
        )

    def check_can_spend(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """Return the epsilon after the planned steps, or refuse.

        Raises:
            PrivacyBudgetExceeded: if the steps would take the site past its budget.
        """
        projected = self.projected_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        if projected > self.target_epsilon:
            raise PrivacyBudgetExceeded(
                f"site budget epsilon={self.target_epsilon:g} (delta={self.target_delta:g}) would be exceeded: "
                f"spent {self.epsilon_spent():.4f}, this round of {steps} steps at noise {noise_multiplier:.3f} "
                f"and sample rate {sample_rate:.4f} would reach {projected:.4f}. The site refuses to train; "
                f"fix: fewer rounds or local steps, more noise, or a new site budget agreed by the data owner"
            )
        return projected

    def record(self, *, run_id: str, server_round: int, history: list[HistoryEntry],
               purpose: str = "dp-sgd") -> LedgerEntry:
        """Append the steps of one release and write the ledger durably.

        ``history`` is the accountant's history for the release (normally a single
        ``(sigma, q, steps)`` entry); entries with equal sigma and q are merged.
        """
        if not history:
            raise ValueError("a release with no DP-SGD steps cannot be recorded")
        sigmas = {round(s, 12) for s, _, _ in history}
        rates = {round(q, 12) for _, q, _ in history}
        if len(sigmas) != 1 or len(rates) != 1:
            raise ValueError(f"one release must use one noise multiplier and sample rate, got {history}")
        steps = sum(int(n) for _, _, n in history)
        sigma, rate = float(history[0][0]), float(history[0][1])
        epsilon_after = self.projected_epsilon(noise_multiplier=sigma, sample_rate=rate, steps=steps)
        entry = LedgerEntry(run_id=run_id, server_round=server_round, noise_multiplier=sigma,
                            sample_rate=rate, steps=steps, epsilon_after=epsilon_after, purpose=purpose)
        self.entries.append(entry)
        self.save()
        return entry
