"""One site's data as every part of the system sees it, whatever the modality."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medgan_core.data.report import DataReport

__all__ = ["SiteData"]


@dataclass(frozen=True)
class SiteData:
    """A site's records in model units, with their labels and patients.

    Attributes:
        samples: ``(N, C, ...)`` model inputs: ``(N, leads, L)`` for ECG beats,
            ``(N, 1, H, W)`` for images.
        labels: ``(N,)`` class indices into ``class_names``.
        class_names: The modality's class names.
        report: What was loaded and skipped, and why.
        patient_ids: ``(N,)`` the patient of each record, the unit of patient-level DP.
    """

    samples: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    report: DataReport
    patient_ids: tuple[str, ...] = ()

    @property
    def num_patients(self) -> int:
        return len(set(self.patient_ids))
