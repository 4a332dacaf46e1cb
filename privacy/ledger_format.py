"""The ledger file: its entries, its budget header, and the hash chain that binds them.

Version 2 (a JSON object)::

    version, accountant ("rdp"), target_epsilon, target_delta, created_at, origin,
    epsilon_spent (informational; always recomputed from the entries),
    entry_count, head_hash, entries: [{run_id, server_round, noise_multiplier,
    sample_rate, steps, planned_steps, status, purpose, epsilon_after, timestamp,
    entry_hash}, ...]

Hash chain: ``entry_hash = sha256(previous_hash + canonical_json(entry without
entry_hash))``, where the first entry's previous hash is the *genesis hash*, a sha256 of
the header (accountant, budget, created_at, origin). ``head_hash`` is the last entry's
hash (the genesis hash when there are none). A dropped, reordered or edited entry, or an
edited budget, no longer matches. The chain is evidence, not a signature: someone who
rewrites every hash can forge it, so sites should keep backups and may log the head hash
(every write logs it at DEBUG level) somewhere the site operator cannot edit.

Version 1 (no chain, no status) is still read: its fields are validated, its entries are
taken as settled, and the next write turns it into version 2, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from privacy.accounting import ACCOUNTANT, validate_delta, validate_history_entry
from privacy.errors import LedgerError, LedgerTampered

__all__ = [
    "LEDGER_VERSION",
    "MAX_TARGET_EPSILON",
    "PENDING",
    "PURPOSES",
    "SETTLED",
    "LedgerEntry",
    "LedgerHeader",
    "LedgerState",
    "parse_ledger",
    "render_ledger",
    "seal_entries",
    "validate_budget",
]

logger = logging.getLogger(__name__)

LEDGER_VERSION = 2
# Above this, (epsilon, delta)-DP says nothing useful about any one patient: the bound on
# how much more likely an outcome becomes with their record is e**100.
MAX_TARGET_EPSILON = 100.0
# What a release can be for. Adding one here is a privacy review, not a refactoring.
PURPOSES = (
    "dp-sgd",         # one round of DP-SGD steps on the discriminator
    "label-prior",    # the one Gaussian release of the site's class counts (q = 1, one step)
    "audit-release",  # a DP release of audit statistics computed on the site's records
)
#: The units a release can protect, weakest first.
UNITS = ("record", "patient")
PENDING, SETTLED = "pending", "settled"

_RESTORE = "restore it from backup; never edit a ledger"


def validate_budget(target_epsilon: object, target_delta: object) -> tuple[float, float]:
    """The budget as floats, or ``ValueError``.

    Raises:
        ValueError: unless 0 < epsilon <= MAX_TARGET_EPSILON and 0 < delta < 1, both finite.
    """
    if isinstance(target_epsilon, bool) or not isinstance(target_epsilon, numbers.Real):
        raise ValueError(f"target_epsilon={target_epsilon!r} must be a number")
    epsilon = float(target_epsilon)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"target_epsilon={epsilon} must be finite and > 0")
    if epsilon > MAX_TARGET_EPSILON:
        raise ValueError(f"target_epsilon={epsilon:g} is above {MAX_TARGET_EPSILON:g}: no meaningful guarantee "
                         "for a patient; choose a budget the data owner can defend (typically 1 to 10)")
    try:
        delta = validate_delta(target_delta)
    except ValueError as exc:
        raise ValueError(f"target_{exc}") from exc
    return epsilon, delta


@dataclass(frozen=True)
class LedgerEntry:
    """One release: a round of local DP-SGD steps (or another DP release) charged to a site.

    A ``pending`` entry is a charge made before training; ``steps`` is then the planned
    number and it counts at that full cost until settled. A ``settled`` entry holds the
    steps actually run (``steps <= planned_steps``). Invalid values cannot be constructed.
    """

    run_id: str
    server_round: int
    noise_multiplier: float
    sample_rate: float
    steps: int
    epsilon_after: float
    timestamp: float = field(default_factory=time.time)
    purpose: str = "dp-sgd"
    status: str = SETTLED
    planned_steps: int | None = None
    entry_hash: str = ""
    # What one unit of the (epsilon, delta) guarantee is for this release: one "record"
    # (a beat, an image) or one "patient" (all of a person's records). A patient-level
    # release is also record-level; a record-level one says nothing useful per patient.
    unit: str = "record"

    def __post_init__(self) -> None:
        sigma, rate, steps = validate_history_entry(self.noise_multiplier, self.sample_rate, self.steps)
        planned = steps if self.planned_steps is None else self.planned_steps
        _check(isinstance(self.run_id, str), f"run_id={self.run_id!r} must be a string")
        _check(_is_int(self.server_round) and self.server_round >= 0,
               f"server_round={self.server_round!r} must be an integer >= 0")
        _check(_is_finite(self.epsilon_after) and self.epsilon_after >= 0,
               f"epsilon_after={self.epsilon_after!r} must be finite and >= 0")
        _check(_is_finite(self.timestamp), f"timestamp={self.timestamp!r} must be finite")
        _check(self.purpose in PURPOSES, f"purpose={self.purpose!r} is not one of {', '.join(PURPOSES)}")
        _check(self.status in (PENDING, SETTLED), f"status={self.status!r} must be {PENDING!r} or {SETTLED!r}")
        _check(_is_int(planned) and planned >= steps,
               f"planned_steps={planned!r} must be an integer >= steps={steps}")
        _check(self.status == SETTLED or planned == steps, "a pending entry counts its planned steps")
        _check(isinstance(self.entry_hash, str), "entry_hash must be a string")
        _check(self.unit in UNITS, f"unit={self.unit!r} must be one of {', '.join(UNITS)}")
        for name, value in (("noise_multiplier", sigma), ("sample_rate", rate), ("steps", steps),
                            ("planned_steps", int(planned)), ("epsilon_after", float(self.epsilon_after)),
                            ("timestamp", float(self.timestamp))):
            object.__setattr__(self, name, value)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class LedgerHeader:
    """The budget a site agreed to, and where the ledger came from; bound by the genesis hash."""

    target_epsilon: float
    target_delta: float
    created_at: float | None
    origin: str

    def genesis_hash(self) -> str:
        return _sha256(_canonical({"ledger": "medgan privacy ledger", "accountant": ACCOUNTANT, **asdict(self)}))


@dataclass(frozen=True)
class LedgerState:
    """What a ledger file holds once verified (``version`` is the version read from disk)."""

    header: LedgerHeader
    entries: tuple[LedgerEntry, ...]
    version: int = LEDGER_VERSION

    @property
    def head_hash(self) -> str:
        return self.entries[-1].entry_hash if self.entries else self.header.genesis_hash()


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _entry_hash(previous_hash: str, entry: LedgerEntry) -> str:
    body = {k: v for k, v in asdict(entry).items() if k != "entry_hash"}
    if body["unit"] == "record":
        del body["unit"]  # entries written before units existed keep their hashes
    return _sha256(previous_hash + _canonical(body))


def seal_entries(header: LedgerHeader, entries: list[LedgerEntry] | tuple[LedgerEntry, ...]) -> tuple[LedgerEntry, ...]:
    """``entries`` with their chain hashes (re)computed from the header's genesis hash."""
    sealed, previous = [], header.genesis_hash()
    for entry in entries:
        entry = replace(entry, entry_hash=_entry_hash(previous, entry))
        sealed.append(entry)
        previous = entry.entry_hash
    return tuple(sealed)


def render_ledger(state: LedgerState, *, epsilon_spent: float) -> str:
    """The version-2 JSON text of ``state`` (its entries must be sealed)."""
    payload = {
        "version": LEDGER_VERSION,
        "accountant": ACCOUNTANT,
        **asdict(state.header),
        "epsilon_spent": epsilon_spent,
        "entry_count": len(state.entries),
        "head_hash": state.head_hash,
        "entries": [asdict(e) for e in state.entries],
    }
    return json.dumps(payload, indent=2, allow_nan=False)


_V2_KEYS = {"version", "accountant", "target_epsilon", "target_delta", "created_at", "origin", "epsilon_spent",
            "entry_count", "head_hash", "entries"}
_ENTRY_KEYS = {f.name for f in fields(LedgerEntry)}
_V1_ENTRY_KEYS = _ENTRY_KEYS - {"status", "planned_steps", "entry_hash", "unit"}


def parse_ledger(path: Path, text: str) -> LedgerState:
    """Parse and verify a ledger file's text: budget, every entry, and the hash chain.

    Raises:
        LedgerError: the file is not a valid ledger (names ``path`` and the fix).
        LedgerTampered: the hash chain, entry count or head hash does not match.
    """
    try:
        raw = json.loads(text)  # NaN/Infinity parse, and are refused field by field below
        _check(isinstance(raw, dict), "not a JSON object")
        version = raw.get("version")
        _check(_is_int(version) and version in (1, LEDGER_VERSION), f"unknown version {version!r} (this medgan reads 1 and 2)")
    except ValueError as exc:
        raise LedgerError(f"{path}: not a readable privacy ledger ({exc}). Fix: {_RESTORE}; "
                          "never delete it to reset a budget") from exc
    accountant = raw.get("accountant", ACCOUNTANT if version == 1 else None)
    if accountant != ACCOUNTANT:
        raise LedgerError(f"{path}: the ledger names accountant {accountant!r}; ledgers are kept with RDP only "
                          f"(GDP and PRV can under-report epsilon). Fix: {_RESTORE}")
    try:
        target_epsilon, target_delta = validate_budget(raw.get("target_epsilon"), raw.get("target_delta"))
    except ValueError as exc:
        raise LedgerError(f"{path}: the stored budget is invalid: {exc}. Fix: {_RESTORE}") from exc
    if version == 1:
        return _parse_v1(path, raw, LedgerHeader(target_epsilon, target_delta, None, "upgraded from version 1"))
    _expect_keys(path, "the ledger", raw, _V2_KEYS, _V2_KEYS)
    try:
        created_at, origin = raw["created_at"], raw["origin"]
        _check(created_at is None or _is_finite(created_at), f"created_at={created_at!r} must be a time or null")
        _check(isinstance(origin, str), f"origin={origin!r} must be a string")
        _check(isinstance(raw["entries"], list), "entries must be a list")
    except ValueError as exc:
        raise LedgerError(f"{path}: {exc}. Fix: {_RESTORE}") from exc
    header = LedgerHeader(target_epsilon, target_delta, created_at, origin)
    # "unit" is optional: entries written before units existed are record-level.
    entries = tuple(_parse_entry(path, i, e, _ENTRY_KEYS - {"unit"}, _ENTRY_KEYS) for i, e in enumerate(raw["entries"]))
    _verify_chain(path, header, entries, entry_count=raw["entry_count"], head_hash=raw["head_hash"])
    return LedgerState(header, entries, version=LEDGER_VERSION)


def _parse_v1(path: Path, raw: dict[str, Any], header: LedgerHeader) -> LedgerState:
    if not isinstance(raw.get("entries"), list):
        raise LedgerError(f"{path}: entries must be a list. Fix: {_RESTORE}")
    required = _V1_ENTRY_KEYS - {"purpose", "timestamp"}  # early version-1 files lack them
    entries = [_parse_entry(path, i, e, required, _V1_ENTRY_KEYS) for i, e in enumerate(raw["entries"])]
    logger.warning("%s: version-1 ledger without a hash chain: its fields are valid and it is accepted; "
                   "the next write upgrades it to version %d (hash-chained from then on)", path, LEDGER_VERSION)
    return LedgerState(header, seal_entries(header, entries), version=1)


def _expect_keys(path: Path, what: str, raw: dict[str, Any], required: set[str], allowed: set[str]) -> None:
    missing, unknown = sorted(required - raw.keys()), sorted(raw.keys() - allowed)
    if missing or unknown:
        raise LedgerError(f"{path}: {what} has " + "; ".join(
            part for part in (missing and f"missing fields {missing}", unknown and f"unknown fields {unknown}") if part)
            + f". Fix: {_RESTORE}")


def _parse_entry(path: Path, index: int, raw: object, required: set[str], allowed: set[str]) -> LedgerEntry:
    if not isinstance(raw, dict):
        raise LedgerError(f"{path}: entry {index} is not an object. Fix: {_RESTORE}")
    _expect_keys(path, f"entry {index}", raw, required, allowed)
    try:
        return LedgerEntry(**raw)
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"{path}: entry {index} (round {raw.get('server_round')!r}) is invalid: {exc}. "
                          f"Fix: {_RESTORE}") from exc


def _verify_chain(path: Path, header: LedgerHeader, entries: tuple[LedgerEntry, ...], *,
                  entry_count: object, head_hash: object) -> None:
    problem = f"entries were dropped, reordered or edited, or the budget was changed. Fix: {_RESTORE}"
    previous = header.genesis_hash()
    for index, entry in enumerate(entries):
        if _entry_hash(previous, entry) != entry.entry_hash:
            what = "the budget or the first entry" if index == 0 else f"entry {index} (round {entry.server_round})"
            raise LedgerTampered(f"{path}: hash chain broken at {what}: {problem}")
        previous = entry.entry_hash
    if entry_count != len(entries):
        raise LedgerTampered(f"{path}: entry_count={entry_count!r} but {len(entries)} entries: {problem}")
    if head_hash != previous:
        what = "the last entry" if entries else "the budget header (no entries)"
        raise LedgerTampered(f"{path}: head_hash does not match {what}: {problem}")
