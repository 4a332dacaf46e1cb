"""Patient-level splits: every record of one patient lands in the same group.

Splitting by image (or beat) would put near-identical views of one patient on both sides
of a train/test split or in two simulated hospitals, which inflates utility metrics and
makes membership-inference audits meaningless. The helper is modality-agnostic: for ECG,
pass one id per record (one MIT-BIH record is one patient).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from medgan_core.errors import ConfigError

__all__ = ["split_by_patient"]


def _target_fractions(fractions: Sequence[float] | None, num_sites: int | None) -> np.ndarray:
    if (fractions is None) == (num_sites is None):
        raise ValueError("pass exactly one of fractions=... or num_sites=...")
    if num_sites is not None:
        if int(num_sites) < 1:
            raise ValueError(f"num_sites={num_sites} must be >= 1")
        return np.full(int(num_sites), 1.0 / int(num_sites))
    target = np.asarray(list(fractions or []), dtype=np.float64)
    if target.size == 0 or np.any(target <= 0) or not np.isclose(target.sum(), 1.0, atol=1e-6):
        raise ValueError(
            f"fractions={list(fractions or [])} must be positive and sum to 1; "
            "e.g. fractions=(0.8, 0.2)"
        )
    return target


def split_by_patient(
    patient_ids: Sequence[str],
    *,
    fractions: Sequence[float] | None = None,
    num_sites: int | None = None,
    seed: int,
) -> list[np.ndarray]:
    """Split record indices into groups without ever splitting a patient.

    Patients are shuffled with ``seed`` and each is given, whole, to the group furthest
    below its target number of records, so group sizes follow ``fractions`` as closely as
    whole patients allow. The result depends only on the multiset of ids and the seed,
    not on the order of ``patient_ids``.

    Args:
        patient_ids: One id per record (image, beat or record).
        fractions: Target share of *records* per group, positive, summing to 1
            (e.g. ``(0.8, 0.2)`` for train/test).
        num_sites: Alternatively, this many equal-sized groups (simulated hospitals).
        seed: Seed of the patient shuffle.

    Returns:
        One sorted int64 index array per group, indexing ``patient_ids``.

    Raises:
        ValueError: both or neither of ``fractions``/``num_sites``, invalid fractions,
            or fewer patients than groups / a group left without any patient.
    """
    target = _target_fractions(fractions, num_sites)
    records: dict[str, list[int]] = defaultdict(list)
    for index, pid in enumerate(patient_ids):
        records[str(pid)].append(index)
    patients = sorted(records)
    if len(patients) < len(target):
        raise ValueError(
            f"{len(patients)} patients cannot fill {len(target)} groups without splitting "
            "a patient; use fewer groups or more data"
        )
    order = np.random.default_rng(seed).permutation(len(patients))
    wanted = target * len(patient_ids)
    filled = np.zeros(len(target))
    groups: list[list[int]] = [[] for _ in target]
    for position in order:
        indices = records[patients[position]]
        # Largest remaining deficit first; ties go to the lowest group index.
        k = int(np.argmax(wanted - filled))
        groups[k].extend(indices)
        filled[k] += len(indices)
    empty = [k for k, g in enumerate(groups) if not g]
    if empty:
        raise ValueError(
            f"groups {empty} received no patient (fractions {target.round(3).tolist()} with "
            f"{len(patients)} patients); use larger fractions or more data"
        )
    return [np.sort(np.asarray(g, dtype=np.int64)) for g in groups]


def split_audit_patients(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """Held-out patients (one record = one patient) -> (non-member, reference) halves.

    The first half (rounded up) are the membership audit's non-members, the rest its
    reference population; disjoint by construction.

    Raises:
        ConfigError: with fewer than two patients, since the halves must be disjoint.
    """
    paths = list(paths)
    if len(paths) < 2:
        raise ConfigError(
            f"the membership audit needs at least two held-out patients (non-members and a "
            f"disjoint reference), got {paths}; list more in holdout-records or [audit] records"
        )
    half = (len(paths) + 1) // 2
    return paths[:half], paths[half:]
