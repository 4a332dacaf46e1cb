"""The patient-level counterpart of the class-count release: one vector, sensitivity sqrt(2).

Patient-level DP-SGD needs two public numbers from the site's data: its patient count
``P'`` (for ``q = m / P'``) and a class prior for the fakes. Under patient adjacency the
record-level class-count release no longer works: one patient with ``n`` records moves
the counts by up to ``n`` in L2, unbounded for a Holter recording. So each patient's
contribution is bounded first. Patient ``p`` with ``n_p`` records and class fractions
``f_p`` (``||f_p||_1 = 1``) contributes

    v_p = (w_p * f_p, 1),   w_p = min(n_p, k) / k,

``K`` class components then a patient indicator. ``sum_p w_p f_p`` is ``1/k`` times the
expected class histogram of the real rows one step draws from its patients, so its
normalised noisy value is the prior the fakes should follow; the last component is the
patient count. ``||v_p||_2^2 = w_p^2 ||f_p||_2^2 + 1 <= ||f_p||_1^2 + 1 = 2``, so adding or
removing one patient, with any number of records and classes, moves the sum by at most
``sqrt(2)``: the Gaussian mechanism with std ``s`` on every component has noise
multiplier ``s / sqrt(2)``, charged once as the full-batch step ``(s / sqrt(2), 1.0, 1)``.
"""

from __future__ import annotations

import math
from typing import Hashable, Sequence

import numpy as np

from privacy.accounting import HistoryEntry

__all__ = ["PATIENT_SUMMARY_SENSITIVITY", "class_prior", "ledger_entry", "patient_summary", "public_patient_count"]

#: L2 sensitivity of :func:`patient_summary` to adding or removing one whole patient.
PATIENT_SUMMARY_SENSITIVITY = math.sqrt(2.0)


def patient_summary(*, labels: Sequence[int], patient_ids: Sequence[Hashable], num_classes: int,
                    records_per_patient: int) -> np.ndarray:
    """``sum_p (w_p f_p, 1)``: (num_classes + 1,), before noise (module docstring).

    Raises:
        ValueError: mismatched lengths, a label outside ``0..num_classes-1``, or ``k < 1``.
    """
    if len(labels) != len(patient_ids):
        raise ValueError(f"{len(labels)} labels for {len(patient_ids)} patient ids; give one id per record")
    if records_per_patient < 1:
        raise ValueError(f"records_per_patient={records_per_patient} must be at least 1")
    histograms: dict[Hashable, np.ndarray] = {}
    for label, patient in zip(labels, patient_ids):
        if not 0 <= int(label) < num_classes:
            raise ValueError(f"label {label} is outside 0..{num_classes - 1}")
        histograms.setdefault(patient, np.zeros(num_classes))[int(label)] += 1
    summary = np.zeros(num_classes + 1)
    for histogram in histograms.values():
        count = histogram.sum()
        summary[:num_classes] += min(count, records_per_patient) / records_per_patient * histogram / count
        summary[num_classes] += 1.0
    return summary


def ledger_entry(noise_std: float) -> HistoryEntry:
    """The accountant's entry for one release of the summary with Gaussian noise std ``noise_std``."""
    if not noise_std > 0:
        raise ValueError(f"noise_std={noise_std} must be positive")
    return (noise_std / PATIENT_SUMMARY_SENSITIVITY, 1.0, 1)


def public_patient_count(noisy_summary: Sequence[float]) -> int:
    """``P'``: the noisy last component, rounded, at least 1 (post-processing)."""
    return max(1, round(float(noisy_summary[-1])))


def class_prior(noisy_summary: Sequence[float], *, floor: float = 1e-3) -> np.ndarray:
    """The fakes' class prior: the noisy class components, floored and normalised."""
    mass = np.maximum(np.asarray(noisy_summary[:-1], dtype=np.float64), floor)
    return mass / mass.sum()
