"""The budgets and units of an evaluation, in one place."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EvaluationSettings"]


@dataclass(frozen=True)
class EvaluationSettings:
    """Budgets and units of an evaluation; every field changes the numbers, so it is reported.

    A modality gives its defaults (``Modality.evaluation_settings``); callers override fields.

    Attributes:
        synthetic_per_class: Synthetic samples per class (the reference real set is
            subsampled to the same size: FD is biased by sample size).
        max_real_per_class: Real samples per class for FD/PRDC/MMD and nearest neighbours.
        dtw_samples: Synthetic samples per class for DTW (real: twice as many; signals only).
        dtw_radius: Sakoe-Chiba radius in samples (12 = 10% of a 128-sample ECG beat).
        nearest_k: k of PRDC's k-NN balls.
        data_range: Span of model units (2.0 for [-1, 1]) for PSNR/SSIM.
        physical_scale: Model units -> the modality's sample unit (5.0 mV for ECG; 0.5 for
            X-ray intensities in [0, 1]).
        classifier_epochs: Epochs of each TSTR/TRTR classifier.
        classifier_seeds: One classifier per seed; scores are averaged (empty: no TSTR).
    """

    synthetic_per_class: int = 500
    max_real_per_class: int = 1000
    dtw_samples: int = 150
    dtw_radius: int = 12
    nearest_k: int = 5
    data_range: float = 2.0
    physical_scale: float = 1.0
    classifier_epochs: int = 8
    classifier_seeds: tuple[int, ...] = (0, 1, 2)
