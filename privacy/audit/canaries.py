"""Canaries for the one-run epsilon audit (Steinke, Nasr & Jagielski 2023).

``m`` canary records are each put into one site's training set independently with
probability 1/2; after training an attack scores all ``m`` and
:func:`privacy.audit.one_run.epsilon_lower_bound` turns its guesses into an empirical
lower bound on epsilon. The bound is only valid if the inclusion bits are fair coins drawn
independently of everything the attack sees, which :func:`draw_inclusion` guarantees.

Canaries should be records that a model which memorises them reveals. Beats of one
patient are near-duplicates of each other, so an included beat and an excluded beat of
the same patient are almost indistinguishable to any attack and the audit would only
measure noise. :func:`craft_canaries` therefore starts from real beats and makes each one
individually distinctive with a data-independent, seeded transform (a random circular
shift and a random polarity), so that membership is the only systematic difference
between included and excluded canaries. Images are treated the same way: ``(N, C, H, W)``
records are shifted along their last axis (within each row) and negated, which for images
in ``[-1, 1]`` gives an inverted, wrapped copy no real image resembles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CanarySet", "craft_canaries", "draw_inclusion"]


@dataclass(frozen=True)
class CanarySet:
    """Canary records, their class labels and whether each went into training.

    Attributes:
        records: ``(m, ...)`` canaries in model units.
        labels: ``(m,)`` class index used for each canary in training and scoring.
        included: ``(m,)`` booleans, the fair coin flips; secret to the audited party.
        source_indices: ``(m,)`` indices of the pool records the canaries were made from,
            so callers can keep the rest of the pool disjoint from the canaries.
    """

    records: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    source_indices: np.ndarray

    def __post_init__(self) -> None:
        m = len(self.records)
        if not (len(self.labels) == len(self.included) == len(self.source_indices) == m):
            raise ValueError(
                f"canary arrays disagree in length: records {m}, labels {len(self.labels)}, "
                f"included {len(self.included)}, source_indices {len(self.source_indices)}"
            )

    def __len__(self) -> int:
        return len(self.records)

    def included_records(self) -> tuple[np.ndarray, np.ndarray]:
        """The canaries that go into training: ``(records, labels)`` of the included ones."""
        return self.records[self.included], self.labels[self.included]

    def save(self, path: str | Path) -> Path:
        """Write the set as ``.npz`` (the simulation driver keeps it in the run directory)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as handle:
            np.savez(handle, records=self.records, labels=self.labels, included=self.included,
                     source_indices=self.source_indices)
        return out

    @classmethod
    def load(cls, path: str | Path) -> "CanarySet":
        with np.load(Path(path)) as data:
            return cls(records=data["records"], labels=data["labels"],
                       included=data["included"].astype(bool), source_indices=data["source_indices"])


def draw_inclusion(num_canaries: int, *, seed: int) -> np.ndarray:
    """Independent fair coins, one per canary: ``True`` means "put it into training".

    Args:
        num_canaries: ``m`` >= 1.
        seed: seed of the coin flips; use one the attack cannot see.

    Returns:
        ``(m,)`` booleans.

    Raises:
        ValueError: if ``num_canaries`` < 1.
    """
    if num_canaries < 1:
        raise ValueError(f"num_canaries must be >= 1, got {num_canaries}")
    return np.random.default_rng([seed, 0xC0FFEE]).random(num_canaries) < 0.5


def craft_canaries(
    pool: np.ndarray,
    *,
    num_canaries: int,
    num_classes: int,
    seed: int,
    max_shift: int = 40,
) -> CanarySet:
    """Make ``num_canaries`` distinctive canaries from distinct records of ``pool``.

    Each canary is one pool record circularly shifted along its last axis by a uniform
    offset in ``[-max_shift, max_shift]`` and multiplied by a random sign, with a uniformly
    drawn class label; inclusion bits come from :func:`draw_inclusion`. All randomness is
    seeded and independent of the records' content.

    Args:
        pool: ``(N, ...)`` real records in model units (e.g. held-out beats ``(N, 1, L)``,
            images ``(N, 1, H, W)``); the canaries keep this per-record shape.
        num_canaries: ``m``, at most ``N``.
        num_classes: labels are drawn uniformly from ``range(num_classes)``.
        seed: seed of the selection, transforms, labels and inclusion bits.
        max_shift: largest circular shift in samples (0 keeps the records' alignment).

    Returns:
        The :class:`CanarySet`.

    Raises:
        ValueError: if the pool is too small or the parameters are out of range.
    """
    pool = np.asarray(pool)
    if pool.ndim < 2:
        raise ValueError(f"pool must be a batch of records (N, ...), got shape {pool.shape}")
    if not 1 <= num_canaries <= len(pool):
        raise ValueError(
            f"num_canaries={num_canaries} but the pool holds {len(pool)} records; "
            "lower the number of canaries or use a larger pool"
        )
    if num_classes < 1 or max_shift < 0:
        raise ValueError(f"need num_classes >= 1 and max_shift >= 0, got {num_classes}, {max_shift}")
    rng = np.random.default_rng([seed, 0xCA7A])
    source = np.sort(rng.choice(len(pool), num_canaries, replace=False))
    shifts = rng.integers(-max_shift, max_shift + 1, num_canaries)
    signs = rng.choice(np.array([-1.0, 1.0]), num_canaries)
    records = np.stack([s * np.roll(pool[i], k, axis=-1) for i, k, s in zip(source, shifts, signs)])
    labels = rng.integers(0, num_classes, num_canaries)
    return CanarySet(records=records.astype(pool.dtype, copy=False), labels=labels,
                     included=draw_inclusion(num_canaries, seed=seed), source_indices=source)
