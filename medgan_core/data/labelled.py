"""LabelledSet: samples in model units with class labels and, for real data, each sample's patient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LabelledSet"]


@dataclass(frozen=True)
class LabelledSet:
    """Samples in model units with class labels and, for real data, each sample's patient.

    Attributes:
        samples: (N, 1, L) signals or (N, 1, H, W) images.
        labels: (N,) int64 class indices.
        patients: Patient id per sample (empty for synthetic data).
    """

    samples: torch.Tensor
    labels: torch.Tensor
    patients: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.labels.shape != (self.samples.shape[0],):
            raise ValueError(f"labels {tuple(self.labels.shape)} must be (N,) for samples {tuple(self.samples.shape)}")
        if self.patients and len(self.patients) != len(self.labels):
            raise ValueError(f"{len(self.patients)} patient ids for {len(self.labels)} samples")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: torch.Tensor | np.ndarray) -> "LabelledSet":
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        patients = tuple(self.patients[i] for i in idx.tolist()) if self.patients else ()
        return LabelledSet(self.samples[idx], self.labels[idx], patients)

    def of_class(self, label: int) -> "LabelledSet":
        return self.take(torch.nonzero(self.labels == label).flatten())

    def subsample(self, n: int, *, seed: int) -> "LabelledSet":
        """At most ``n`` samples, drawn without replacement with a fixed seed."""
        if len(self) <= n:
            return self
        return self.take(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))

    def first_per_class(self, n: int, num_classes: int) -> "LabelledSet":
        """The first ``n`` samples of every class, class by class."""
        labels = self.labels.numpy()
        return self.take(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(num_classes)]))

    def class_counts(self, class_names: Sequence[str]) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(class_names)}

    @staticmethod
    def concat(parts: Sequence["LabelledSet"]) -> "LabelledSet":
        with_patients = all(p.patients for p in parts)
        return LabelledSet(torch.cat([p.samples for p in parts]), torch.cat([p.labels for p in parts]),
                           tuple(x for p in parts for x in p.patients) if with_patients else ())
