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

When the privacy unit is a patient, a canary is a whole synthetic patient
(``records_per_canary`` = k > 1): k distinct pool records, all given the canary's one
transform (so they share its signature), included or excluded together by one coin. The
one-run bound then takes one guess per canary, which is what patient-level DP bounds: the
coin decides the presence of one unit, whatever the number of its records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CanarySet", "craft_canaries", "draw_inclusion", "mean_by_group"]


@dataclass(frozen=True)
class CanarySet:
    """Canaries (each one record, or k records of one synthetic patient), their class labels
    and whether each went into training.

    Attributes:
        records: ``(n, ...)`` canary records in model units, ``n = m * k``, canary by canary.
        labels: ``(n,)`` class index of each record in training and scoring (one per canary).
        included: ``(m,)`` booleans, one fair coin per canary; secret to the audited party.
        source_indices: ``(n,)`` indices of the pool records the canaries were made from,
            so callers can keep the rest of the pool disjoint from the canaries.
        groups: ``(n,)`` canary index of each record (``None``: ``arange(n)``, one record
            per canary, as in manifests written before grouped canaries).
    """

    records: np.ndarray
    labels: np.ndarray
    included: np.ndarray
    source_indices: np.ndarray
    groups: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.records)
        if self.groups is None:
            object.__setattr__(self, "groups", np.arange(n))
        if not (len(self.labels) == len(self.source_indices) == len(self.record_groups) == n):
            raise ValueError(
                f"canary arrays disagree in length: records {n}, labels {len(self.labels)}, "
                f"source_indices {len(self.source_indices)}, groups {len(self.record_groups)}"
            )
        if n and not np.array_equal(np.unique(self.record_groups), np.arange(len(self.included))):
            raise ValueError(f"groups must name every canary 0..{len(self.included) - 1}, "
                             f"got {np.unique(self.record_groups)[:10]}")

    def __len__(self) -> int:
        """``m``, the number of canaries (coins), not of records."""
        return len(self.included)

    @property
    def record_groups(self) -> np.ndarray:
        """``(n,)`` canary index of each record."""
        assert self.groups is not None  # set in __post_init__
        return self.groups

    @property
    def record_included(self) -> np.ndarray:
        """``(n,)`` the coin of each record's canary: a canary's records go in or out together."""
        return self.included[self.record_groups]

    def included_records(self) -> tuple[np.ndarray, np.ndarray]:
        """The records that go into training: ``(records, labels)`` of the included canaries."""
        keep = self.record_included
        return self.records[keep], self.labels[keep]

    def included_groups(self) -> np.ndarray:
        """Canary index of each record :meth:`included_records` returns, in the same order."""
        return self.record_groups[self.record_included]

    def save(self, path: str | Path) -> Path:
        """Write the set as ``.npz`` (the simulation driver keeps it in the run directory)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "wb") as handle:
            np.savez(handle, records=self.records, labels=self.labels, included=self.included,
                     source_indices=self.source_indices, groups=self.record_groups)
        return out

    @classmethod
    def load(cls, path: str | Path) -> "CanarySet":
        """Read a set :meth:`save` wrote (one written before grouped canaries has no ``groups``)."""
        with np.load(Path(path)) as data:
            groups = data["groups"] if "groups" in data.files else None
            return cls(records=data["records"], labels=data["labels"], included=data["included"].astype(bool),
                       source_indices=data["source_indices"], groups=groups)


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
    records_per_canary: int = 1,
) -> CanarySet:
    """Make ``num_canaries`` distinctive canaries from distinct records of ``pool``.

    Each canary is ``records_per_canary`` (k) pool records, all circularly shifted along
    their last axis by the canary's one uniform offset in ``[-max_shift, max_shift]`` and
    multiplied by its one random sign, with one uniformly drawn class label; inclusion bits,
    one per canary, come from :func:`draw_inclusion`. All randomness is seeded and
    independent of the records' content. With k = 1 the canaries, labels and bits are the
    same as they always were for a seed.

    Args:
        pool: ``(N, ...)`` real records in model units (e.g. held-out beats ``(N, 1, L)``,
            images ``(N, 1, H, W)``); the canaries keep this per-record shape.
        num_canaries: ``m``, with ``m * k`` at most ``N``.
        num_classes: labels are drawn uniformly from ``range(num_classes)``.
        seed: seed of the selection, transforms, labels and inclusion bits.
        max_shift: largest circular shift in samples (0 keeps the records' alignment).
        records_per_canary: k >= 1, records of each canary (a synthetic patient when > 1).

    Returns:
        The :class:`CanarySet`.

    Raises:
        ValueError: if the pool is too small or the parameters are out of range.
    """
    pool = np.asarray(pool)
    if pool.ndim < 2:
        raise ValueError(f"pool must be a batch of records (N, ...), got shape {pool.shape}")
    if records_per_canary < 1:
        raise ValueError(f"records_per_canary must be >= 1, got {records_per_canary}")
    k = records_per_canary
    if not 1 <= num_canaries * k <= len(pool):
        raise ValueError(
            f"num_canaries={num_canaries} of {k} record(s) each but the pool holds {len(pool)} records; "
            "lower the number of canaries (or records per canary) or use a larger pool"
        )
    if num_classes < 1 or max_shift < 0:
        raise ValueError(f"need num_classes >= 1 and max_shift >= 0, got {num_classes}, {max_shift}")
    rng = np.random.default_rng([seed, 0xCA7A])
    # The draws in the order they always had, so k = 1 reproduces earlier canaries exactly.
    # Sorted sources cut into runs of k: a canary's records tend to be neighbours in the
    # pool (often one source patient), which is harmless either way, as the transform is
    # what makes the canary recognisable.
    source = np.sort(rng.choice(len(pool), num_canaries * k, replace=False))
    shifts = rng.integers(-max_shift, max_shift + 1, num_canaries)
    signs = rng.choice(np.array([-1.0, 1.0]), num_canaries)
    groups = np.repeat(np.arange(num_canaries), k)
    records = np.stack([signs[g] * np.roll(pool[i], shifts[g], axis=-1) for i, g in zip(source, groups)])
    labels = rng.integers(0, num_classes, num_canaries)[groups]
    return CanarySet(records=records.astype(pool.dtype, copy=False), labels=labels,
                     included=draw_inclusion(num_canaries, seed=seed), source_indices=source, groups=groups)


def mean_by_group(values: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-group means of per-record values: a canary patient's score from its records' scores.

    Args:
        values: ``(n,)`` per-record values (attack scores).
        groups: ``(n,)`` group label of each record (any sortable labels).

    Returns:
        ``(group labels (g,), means (g,))``, groups in sorted order.

    Raises:
        ValueError: if the shapes differ.
    """
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups)
    if v.ndim != 1 or g.shape != v.shape:
        raise ValueError(f"values {v.shape} and groups {g.shape} must be 1-D of equal length")
    labels, inverse = np.unique(g, return_inverse=True)
    sums = np.bincount(inverse, weights=v, minlength=len(labels))
    return labels, sums / np.bincount(inverse, minlength=len(labels))
