"""A site's privacy ledger: the DP history of everything it ever released, on disk.

INVARIANT. At every instant, the epsilon recomputed from the ledger file (RDP at the
site's delta, :meth:`PrivacyLedger.epsilon_spent`) is at least the epsilon of every update
that has left the site or could still leave it. Over-counting is allowed (it only wastes
budget); under-counting is not, whatever process is killed at whatever point.

How each part keeps it:

1. One writer at a time. Every write holds an exclusive lock on the sibling file
   ``<ledger>.lock`` and re-reads the verified file under it, so no entry is ever computed
   from a stale history; :meth:`PrivacyLedger.locked` holds the lock from the budget check
   through the recorded release, so two rounds at one site cannot both pass one check.
2. Charge before training. :meth:`PrivacyLedger.charge` checks the budget and durably
   appends a PENDING entry with the planned (noise multiplier, sample rate, steps) before
   the first step runs. A pending entry counts at its full planned cost.
3. Settle before release. :meth:`PrivacyLedger.settle` replaces the pending entry with the
   steps actually run (never more than planned, same noise and sample rate), and only the
   handle that charged it may do so. A crash between charge and settle leaves the entry
   pending: counted in full forever (over-count), never dropped.
4. Durable writes: temporary file, fsync, rename, directory fsync; a crash leaves the old
   or the new file, never a mix. Nothing may leave the site before the write returns.
5. Tamper evidence: a hash chain over the budget and every entry
   (:mod:`privacy.ledger_format`); a dropped, reordered or edited entry is refused on load.
6. Never recreated silently: a missing ledger is created only in a fresh directory (see
   :meth:`PrivacyLedger.open` for the exact rule); otherwise :class:`LedgerMissing`.
7. The budget is fixed at creation and validated (0 < epsilon <= 100, 0 < delta < 1, on
   every open and every load); a configuration can lower it for a run, never raise it.
8. The accountant is RDP, fixed in code; a file naming another is refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

from privacy.atomic_io import atomic_write_text, temporary_name_prefix
from privacy._lock import FileLock
from privacy.accounting import (
    ACCOUNTANT,
    HistoryEntry,
    epsilon_from_history,
    validate_history,
    validate_history_entry,
)
from privacy.errors import LedgerBusy, LedgerError, LedgerMissing, LedgerTampered, PrivacyBudgetExceeded
from privacy.ledger_format import (
    LEDGER_VERSION,
    MAX_TARGET_EPSILON,
    PENDING,
    PURPOSES,
    SETTLED,
    LedgerEntry,
    LedgerHeader,
    LedgerState,
    parse_ledger,
    render_ledger,
    seal_entries,
    validate_budget,
)

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "LEDGER_BOUND_FILES",
    "LEDGER_VERSION",
    "MAX_TARGET_EPSILON",
    "PURPOSES",
    "LedgerBusy",
    "LedgerEntry",
    "LedgerError",
    "LedgerMissing",
    "LedgerTampered",
    "PrivacyBudgetExceeded",
    "PrivacyLedger",
    "lock_path",
]

logger = logging.getLogger(__name__)

DEFAULT_LOCK_TIMEOUT = 60.0
# Files a site keeps beside its ledger because they were released under it: without the
# ledger that charged them, reusing them would be a release nobody paid for.
LEDGER_BOUND_FILES = ("label_prior.json", "patient_release.json")


def lock_path(path: str | Path) -> Path:
    """The lock file of the ledger at ``path``: ``privacy_ledger.json.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


class PrivacyLedger:
    """Durable, tamper-evident, append-only record of a site's DP releases against a fixed budget.

    Get a handle with :meth:`open` (load, or create in a fresh directory), :meth:`read`
    (read-only, never creates), :meth:`init` (explicit creation) or :meth:`locked` (load
    and hold the lock). Opening with a target above the stored budget never raises it:
    the smaller of the two is enforced, so neither a run configuration nor a coordinator
    can grant a site more than it agreed to.
    """

    def __init__(self, path: str | Path, *, target_epsilon: float, target_delta: float,
                 state: LedgerState | None = None, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        """A handle on ``path`` holding ``state`` (an empty, unsaved ledger if None).

        ``lock_timeout``: how long this handle's writes wait for the lock before
        :class:`LedgerBusy`.

        Raises:
            ValueError: the budget is invalid, or ``target_delta`` differs from the ledger's.
        """
        epsilon, delta = validate_budget(target_epsilon, target_delta)
        self.path = Path(path)
        if state is None:
            state = LedgerState(LedgerHeader(epsilon, delta, None, "in memory"), ())
        self._state = state
        if delta != self._state.header.target_delta:
            raise LedgerError(
                f"{self.path}: ledger was created for delta={self._state.header.target_delta}, config asks "
                f"delta={delta}. Fix: use the ledger's delta (an epsilon at another delta is another guarantee)")
        self._requested_epsilon = epsilon
        self._lock_timeout = lock_timeout
        self._lock: FileLock | None = None
        self._charged: set[str] = set()  # hashes of the pending entries this handle may settle
        self._spent_cache: tuple[str, float] | None = None

    # ------------------------------------------------------------------ handles
    @classmethod
    def open(cls, path: str | Path, *, target_epsilon: float, target_delta: float,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> "PrivacyLedger":
        """Load the ledger at ``path``; create it only if its directory is fresh.

        Rule: a missing ledger is created if its directory does not exist or holds no site
        state. Site state is (a) the ledger's lock file once it carries its marker (written
        when a ledger first exists there), (b) any other file whose name, leading dots
        removed, starts with the ledger's stem (backups such as ``privacy_ledger.json.bak``,
        editor files), except the temporary file of an interrupted first write, and (c) the
        files in :data:`LEDGER_BOUND_FILES` (``label_prior.json``). Anything else (a site's
        TOML, its keys, the evaluation encoder) is configuration or unreleased data.

        Raises:
            ValueError: the budget is invalid.
            LedgerMissing: the ledger is missing but site state shows one existed.
            LedgerError: the file is not a valid ledger, or its delta differs.
            LedgerTampered: its hash chain does not match.
            LedgerBusy: creating it (or, later, a write through this handle) waited more than
                ``lock_timeout`` seconds for the lock.
        """
        epsilon, delta = validate_budget(target_epsilon, target_delta)
        path = Path(path)
        if not path.exists():
            with _exclusive_lock(path, lock_timeout) as lock:
                if not path.exists():  # re-checked under the lock: another process may have created it
                    cls._create(path, epsilon, delta, lock, origin="created on first use in a fresh directory",
                                refuse_site_state=True)
        return cls._load(path, epsilon, delta, lock_timeout)

    @classmethod
    def read(cls, path: str | Path) -> "PrivacyLedger":
        """Load and verify the ledger at ``path`` for reading; never creates anything.

        Raises:
            LedgerMissing: there is no file at ``path``.
            LedgerError, LedgerTampered: as for :meth:`open`.
        """
        path = Path(path)
        state = _read_state(path)
        return cls(path, target_epsilon=state.header.target_epsilon, target_delta=state.header.target_delta,
                   state=state)

    @classmethod
    def init(cls, path: str | Path, *, target_epsilon: float, target_delta: float, force: bool = False,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> "PrivacyLedger":
        """Create a new, empty ledger at ``path``: the deliberate act of starting a site's budget.

        Args:
            force: create it even though site state shows an earlier ledger existed (the
                data owner starts over knowingly; the origin field records it). Never
                replaces an existing ledger file.

        Raises:
            LedgerError: a ledger file already exists at ``path`` (a ledger is never reset).
            LedgerMissing: site state exists beside it and ``force`` is False.
        """
        epsilon, delta = validate_budget(target_epsilon, target_delta)
        path = Path(path)
        with _exclusive_lock(path, lock_timeout) as lock:
            if path.exists():
                raise LedgerError(f"{path}: a ledger already exists; a ledger is never reset or replaced. Fix: "
                                  "keep using it, or move the whole site directory aside to start a new site")
            state_files = _site_state(path)
            if state_files and not force:
                raise _missing_with_state(path, state_files)
            origin = "medgan privacy ledger init"
            if state_files:
                origin += " --force, over existing site state: " + ", ".join(state_files)
                logger.warning("%s: new ledger created over existing site state (%s) by explicit request",
                               path, ", ".join(state_files))
            cls._create(path, epsilon, delta, lock, origin=origin, refuse_site_state=False)
        return cls._load(path, epsilon, delta, lock_timeout)

    @classmethod
    @contextlib.contextmanager
    def locked(cls, path: str | Path, *, target_epsilon: float, target_delta: float,
               timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator["PrivacyLedger"]:
        """Hold the ledger's exclusive lock for a whole round: check, charge, train, settle.

        Loads (or, in a fresh directory, creates) the ledger under the lock, so the
        handle's history is current and stays current until the block ends.

        Raises:
            LedgerBusy: another process held the lock for more than ``timeout`` seconds.
            Everything :meth:`open` raises.
        """
        epsilon, delta = validate_budget(target_epsilon, target_delta)
        path = Path(path)
        with _exclusive_lock(path, timeout) as lock:
            if not path.exists():
                cls._create(path, epsilon, delta, lock, origin="created on first use in a fresh directory",
                            refuse_site_state=True)
            ledger = cls._load(path, epsilon, delta, timeout)
            ledger._lock = lock
            try:
                yield ledger
            finally:
                ledger._lock = None
                if ledger._charged:
                    logger.warning("%s: %d charge(s) of this round left pending, each counted at its full "
                                   "planned cost", path, len(ledger._charged))

    @classmethod
    def _create(cls, path: Path, epsilon: float, delta: float, lock: FileLock, *, origin: str,
                refuse_site_state: bool) -> None:
        state_files = _site_state(path)
        if refuse_site_state and state_files:
            raise _missing_with_state(path, state_files)
        ledger = cls(path, target_epsilon=epsilon, target_delta=delta,
                     state=LedgerState(LedgerHeader(epsilon, delta, time.time(), origin), ()))
        ledger._lock = lock
        ledger._write([])
        ledger._lock = None
        logger.info("%s: new privacy ledger, budget epsilon=%g delta=%g (%s)", path, epsilon, delta, origin)

    @classmethod
    def _load(cls, path: Path, epsilon: float, delta: float, lock_timeout: float) -> "PrivacyLedger":
        ledger = cls(path, target_epsilon=epsilon, target_delta=delta, state=_read_state(path),
                     lock_timeout=lock_timeout)
        if epsilon > ledger.budget_epsilon:
            logger.warning("%s: configured target_epsilon=%s exceeds the ledger's budget %s; the budget stays %s",
                           path, epsilon, ledger.budget_epsilon, ledger.budget_epsilon)
        return ledger

    # ------------------------------------------------------------------ state
    @property
    def target_epsilon(self) -> float:
        """The epsilon enforced by this handle: the stored budget, or the configured one if lower."""
        return min(self._state.header.target_epsilon, self._requested_epsilon)

    @property
    def target_delta(self) -> float:
        return self._state.header.target_delta

    @property
    def budget_epsilon(self) -> float:
        """The budget stored in the ledger when it was created."""
        return self._state.header.target_epsilon

    @property
    def accountant(self) -> str:
        return ACCOUNTANT

    @property
    def entries(self) -> tuple[LedgerEntry, ...]:
        return self._state.entries

    @property
    def pending(self) -> tuple[LedgerEntry, ...]:
        """Entries charged but not settled (each counted at its planned cost)."""
        return tuple(e for e in self._state.entries if e.status == PENDING)

    @property
    def head_hash(self) -> str:
        return self._state.head_hash

    @property
    def origin(self) -> str:
        return self._state.header.origin

    @property
    def version_on_disk(self) -> int:
        """1 for a legacy file not yet upgraded (it is upgraded on the next write)."""
        return self._state.version

    @property
    def history(self) -> list[HistoryEntry]:
        """Every entry's ``(noise_multiplier, sample_rate, steps)``, pending ones at their planned steps."""
        return [(e.noise_multiplier, e.sample_rate, e.steps) for e in self._state.entries]

    # ------------------------------------------------------------------ accounting
    @property
    def unit(self) -> str:
        """The unit the spend is guaranteed for: "patient" only if every release was
        patient-level (a record-level release bounds a patient only through group privacy);
        an empty ledger answers "record", the weaker claim."""
        units = {e.unit for e in self.entries}
        return "patient" if units == {"patient"} else "record"

    def epsilon_spent(self) -> float:
        """RDP epsilon of every entry, pending ones included, as of this handle's last read."""
        head = self.head_hash
        if self._spent_cache is None or self._spent_cache[0] != head:
            self._spent_cache = (head, epsilon_from_history(self.history, delta=self.target_delta))
        return self._spent_cache[1]

    def projected_epsilon(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        planned = validate_history_entry(noise_multiplier, sample_rate, steps)
        return epsilon_from_history([*self.history, planned], delta=self.target_delta)

    def check_can_spend(self, *, noise_multiplier: float, sample_rate: float, steps: int) -> float:
        """Return the epsilon after the planned steps, or refuse.

        Checked against this handle's history: current inside :meth:`locked`, possibly
        stale otherwise, which is why :meth:`charge` and :meth:`record` check again under
        the lock before writing.

        Raises:
            PrivacyBudgetExceeded: if the steps would take the site past its budget.
            ValueError: on an invalid noise multiplier, sample rate or step count.
        """
        projected = self.projected_epsilon(noise_multiplier=noise_multiplier, sample_rate=sample_rate, steps=steps)
        if projected > self.target_epsilon:
            pending = f" ({len(self.pending)} pending charge(s) included)" if self.pending else ""
            raise PrivacyBudgetExceeded(
                f"site budget epsilon={self.target_epsilon:g} (delta={self.target_delta:g}) would be exceeded: "
                f"spent {self.epsilon_spent():.4f}{pending}, this round of {steps} steps at noise "
                f"{noise_multiplier:.3f} and sample rate {sample_rate:.4f} would reach {projected:.4f}. The site "
                f"refuses to train; fix: fewer rounds or local steps, more noise, or a new site budget agreed by "
                f"the data owner"
            )
        return projected

    # ------------------------------------------------------------------ releases
    def charge(self, *, run_id: str, server_round: int, noise_multiplier: float, sample_rate: float, steps: int,
               purpose: str = "dp-sgd", unit: str = "record") -> LedgerEntry:
        """Durably append a PENDING entry for a planned release, before training starts.

        Checked against the history re-read under the lock. Until :meth:`settle`, the
        entry counts at its full planned cost, also after a crash.

        Returns:
            The pending entry; pass it to :meth:`settle` once training has run.

        Raises:
            PrivacyBudgetExceeded: the planned steps do not fit the budget; nothing is written.
            ValueError: an invalid input; nothing is written.
            LedgerBusy, LedgerError: as for :meth:`open`.
        """
        planned = validate_history_entry(noise_multiplier, sample_rate, steps)
        with self._exclusive():
            projected = self.check_can_spend(noise_multiplier=planned[0], sample_rate=planned[1], steps=planned[2])
            entry = self._append(LedgerEntry(
                run_id=run_id, server_round=server_round, noise_multiplier=planned[0], sample_rate=planned[1],
                steps=planned[2], epsilon_after=projected, purpose=purpose, status=PENDING, unit=unit))
        self._charged.add(entry.entry_hash)
        return entry

    def settle(self, entry: LedgerEntry, history: Sequence[HistoryEntry]) -> LedgerEntry:
        """Replace the pending ``entry`` with what training actually ran, before the release.

        ``history`` (the accountant's history of the round) must use the charged noise
        multiplier and sample rate and at most the charged steps, so the settled epsilon is
        exactly what was spent and never more than was charged. If another entry was
        appended after this one (possible only without :meth:`locked`), the entry stays
        pending at its full cost, with a warning.

        Returns:
            The settled entry (or the still-pending one, see above).

        Raises:
            ValueError: ``entry`` was not charged by this handle, or ``history`` does not fit
                the charge. The entry then stays pending at full cost, and the update must
                not leave the site.
        """
        if entry.entry_hash not in self._charged:
            raise ValueError(f"{self.path}: this handle did not charge entry {entry.entry_hash[:12]} (round "
                             f"{entry.server_round}); a pending entry left by another process stays at full cost")
        sigma, rate, steps = _one_release(history)
        with self._exclusive():
            entries = list(self._state.entries)
            hashes = [e.entry_hash for e in entries]
            if entry.entry_hash not in hashes:
                raise LedgerTampered(f"{self.path}: the charged entry of round {entry.server_round} is gone: "
                                     "restore from backup; never edit a ledger")
            if hashes[-1] != entry.entry_hash:
                logger.warning("%s: round %d's charge is no longer the last entry; it stays pending at its full "
                               "planned cost (safe). Hold PrivacyLedger.locked() from charge to settle to settle "
                               "exactly", self.path, entry.server_round)
                self._charged.discard(entry.entry_hash)
                return entries[hashes.index(entry.entry_hash)]
            charged = entries[-1]
            if not (math.isclose(sigma, charged.noise_multiplier, rel_tol=1e-12)
                    and math.isclose(rate, charged.sample_rate, rel_tol=1e-12)):
                raise ValueError(f"{self.path}: round {charged.server_round} ran noise {sigma} / sample rate {rate}, "
                                 f"charged {charged.noise_multiplier} / {charged.sample_rate}; the entry stays "
                                 "pending at full cost and this update must not leave the site")
            planned = charged.steps if charged.planned_steps is None else charged.planned_steps
            if steps > planned:
                raise ValueError(f"{self.path}: round {charged.server_round} ran {steps} steps, charged "
                                 f"{charged.planned_steps}; the entry stays pending at full cost and this update "
                                 "must not leave the site")
            actual = epsilon_from_history([*self.history[:-1], (charged.noise_multiplier, charged.sample_rate, steps)],
                                          delta=self.target_delta)
            settled = self._replace_last(replace(charged, steps=steps, status=SETTLED, epsilon_after=actual))
        self._charged.discard(entry.entry_hash)
        return settled

    def record(self, *, run_id: str, server_round: int, history: Sequence[HistoryEntry],
               purpose: str = "dp-sgd", unit: str = "record") -> LedgerEntry:
        """Charge and settle one release in one step, after training and before the release.

        ``history`` is the accountant's history for the release (normally a single
        ``(sigma, q, steps)`` entry); entries with equal sigma and q are merged. Prefer
        :meth:`charge` and :meth:`settle` inside :meth:`locked`: a crash during training
        is then accounted for too.

        Raises:
            PrivacyBudgetExceeded: the release does not fit the budget (checked against the
                history re-read under the lock); nothing is written and the update must
                not leave the site.
            ValueError: an invalid or empty history.
        """
        sigma, rate, steps = _one_release(history)
        with self._exclusive():
            projected = self.check_can_spend(noise_multiplier=sigma, sample_rate=rate, steps=steps)
            return self._append(LedgerEntry(run_id=run_id, server_round=server_round, noise_multiplier=sigma,
                                            sample_rate=rate, steps=steps, epsilon_after=projected, purpose=purpose,
                                            unit=unit))

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """Hold the lock (taking it unless this handle already does) and re-read the file under it.

        Re-reading makes every write start from the verified file, never from this
        handle's possibly stale (or modified) copy.
        """
        if self._lock is not None:
            self._reload()
            yield
            return
        with _exclusive_lock(self.path, self._lock_timeout) as lock:
            self._lock = lock
            try:
                self._reload()
                yield
            finally:
                self._lock = None

    def _reload(self) -> None:
        if not self.path.exists():
            state_files = _site_state(self.path)
            raise _missing_with_state(self.path, state_files) if state_files else LedgerMissing(
                f"{self.path}: the ledger disappeared while in use. Fix: restore it from backup; never delete a ledger")
        state = _read_state(self.path)
        if state.header.target_delta != self.target_delta:
            raise LedgerTampered(f"{self.path}: the ledger's delta changed while in use: restore from backup; "
                                 "never edit a ledger")
        self._state = state

    def _append(self, entry: LedgerEntry) -> LedgerEntry:
        self._write([*self._state.entries, entry])
        return self._state.entries[-1]

    def _replace_last(self, entry: LedgerEntry) -> LedgerEntry:
        self._write([*self._state.entries[:-1], entry])
        return self._state.entries[-1]

    def _write(self, entries: list[LedgerEntry]) -> None:
        assert self._lock is not None and self._lock.held, "ledger writes need the lock"
        upgraded = self._state.version != LEDGER_VERSION
        state = LedgerState(self._state.header, seal_entries(self._state.header, entries))
        spent = epsilon_from_history([(e.noise_multiplier, e.sample_rate, e.steps) for e in state.entries],
                                     delta=state.header.target_delta)
        atomic_write_text(self.path, render_ledger(state, epsilon_spent=spent))
        self._state = state
        self._lock.mark(f"lock of {self.path.name}; a privacy ledger exists here since "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}. If the ledger is ever missing, restore it "
                        "from backup: never delete it to reset a budget.\n")
        for stale in self.path.parent.glob(f"{temporary_name_prefix(self.path)}*.tmp"):
            stale.unlink(missing_ok=True)  # left by a killed writer; only lock holders write
        if upgraded:
            logger.warning("%s: upgraded from version 1 to version %d (hash-chained)", self.path, LEDGER_VERSION)
        logger.debug("%s: %d entries, head hash %s", self.path, len(state.entries), state.head_hash)


def _read_state(path: Path) -> LedgerState:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        state_files = _site_state(path)
        if state_files:
            raise _missing_with_state(path, state_files) from None
        raise LedgerMissing(f"{path}: no privacy ledger here. Fix: check the path (a site's TOML names its "
                            f"ledger), or create one with `medgan privacy ledger init {path} --target-epsilon E "
                            "--target-delta D`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: not a readable privacy ledger ({exc}). Fix: restore it from backup; "
                          "never delete it to reset a budget") from exc
    return parse_ledger(path, text)


def _site_state(path: Path) -> list[str]:
    """Names beside ``path`` that show a ledger existed there (the rule in :meth:`PrivacyLedger.open`)."""
    if not path.parent.is_dir():
        return []
    lock, temporary = lock_path(path), temporary_name_prefix(path)
    found = []
    for child in sorted(path.parent.iterdir()):
        name = child.name
        if name == path.name or (name.startswith(temporary) and name.endswith(".tmp")):
            continue
        if name == lock.name:
            if child.stat().st_size > 0:
                found.append(name)
        elif name in LEDGER_BOUND_FILES or name.lstrip(".").startswith(path.stem):
            found.append(name)
    return found


def _missing_with_state(path: Path, state_files: list[str]) -> LedgerMissing:
    return LedgerMissing(
        f"{path}: the ledger is missing but site state exists in {path.parent} ({', '.join(state_files)}); "
        f"restore the ledger from backup, or start over deliberately with `medgan privacy ledger init {path} "
        "--target-epsilon E --target-delta D --force`", site_state=tuple(state_files))


@contextlib.contextmanager
def _exclusive_lock(path: Path, timeout: float) -> Iterator[FileLock]:
    lock = FileLock(lock_path(path), timeout=timeout)
    try:
        lock.acquire()
    except TimeoutError:
        raise LedgerBusy(
            f"{path}: another process has held the ledger lock {lock.path.name} for more than {timeout:g} s "
            "(another round is training or recording at this site). Fix: wait for it and retry; the lock is "
            "released automatically when that process ends, nothing needs deleting") from None
    try:
        yield lock
    finally:
        lock.release()


def _one_release(history: Sequence[HistoryEntry]) -> HistoryEntry:
    """The single ``(sigma, q, steps)`` of one release; its entries must share sigma and q."""
    checked = validate_history(history)
    if not checked:
        raise ValueError("a release with no DP-SGD steps cannot be recorded")
    sigmas = {round(s, 12) for s, _, _ in checked}
    rates = {round(q, 12) for _, q, _ in checked}
    if len(sigmas) != 1 or len(rates) != 1:
        raise ValueError(f"one release must use one noise multiplier and sample rate, got {list(history)}")
    return checked[0][0], checked[0][1], sum(n for _, _, n in checked)
