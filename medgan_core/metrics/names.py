"""One name per metric: the keys every report, comparison and study row uses, with unit and meaning.

A value travels under exactly one key (``DTW_SYN_TO_REAL``, never ``dtw_mv`` in one table
and ``dtw-syn-to-real`` in another); tables take their row labels from :data:`METRICS`.
Metrics added with :func:`medgan_core.metrics.registry.register_metric` get their name here too.
A unit of ``"sample"`` means the modality's sample unit (mV for ECG, intensity in [0, 1]
for X-rays: ``Modality.sample_unit``), filled in by :meth:`MetricName.label`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AUROC", "BALANCED_ACCURACY", "BALANCED_ACCURACY_STD", "COVERAGE", "DENSITY", "DTW_REAL_TO_SYN",
    "DTW_SYN_TO_REAL", "EXACT_COPIES", "FD", "HOLDOUT_TO_TRAIN_RMSE", "MACRO_F1", "MAE", "METRICS", "MMD2",
    "MetricName", "PRECISION", "PSNR", "RECALL", "RMSE", "SENSITIVITY", "SET_METRICS", "SSIM",
    "SYNTHETIC_TO_TRAIN_RMSE",
    "add_metric_name", "gain_key", "metric",
]

# Set metrics in the domain encoder's feature space.
FD = "fd"
PRECISION = "precision"
RECALL = "recall"
DENSITY = "density"
COVERAGE = "coverage"
MMD2 = "mmd2"
# Sample-space metrics (supplied by the modality: DTW for signals only).
DTW_SYN_TO_REAL = "dtw_syn_to_real"
DTW_REAL_TO_SYN = "dtw_real_to_syn"
RMSE = "rmse"
MAE = "mae"
PSNR = "psnr_db"
SSIM = "ssim"
EXACT_COPIES = "exact_copies"
# Memorisation check.
SYNTHETIC_TO_TRAIN_RMSE = "synthetic_to_train_rmse"
HOLDOUT_TO_TRAIN_RMSE = "holdout_to_train_rmse"
# Classifier scores (TSTR, TRTR, augmentation).
BALANCED_ACCURACY = "balanced_accuracy"
BALANCED_ACCURACY_STD = "balanced_accuracy_std"
AUROC = "auroc"
MACRO_F1 = "macro_f1"
# Recall of the last class (V, PNEUMONIA): the diagnosis found, at the default threshold.
SENSITIVITY = "sensitivity"


@dataclass(frozen=True)
class MetricName:
    """A metric key with what a table says about it.

    Attributes:
        key: The one spelling, used in JSON, CSV and code.
        label: Human-readable row label.
        unit: ``""`` (unitless), ``"dB"``, or ``"sample"`` (the modality's sample unit).
        lower_is_better: Direction, for tables and conclusions.
    """

    key: str
    label: str
    unit: str = ""
    lower_is_better: bool = False

    def label_in(self, sample_unit: str) -> str:
        """The row label with its unit, ``sample`` replaced by ``sample_unit``."""
        unit = sample_unit if self.unit == "sample" else self.unit
        return f"{self.label} ({unit})" if unit else self.label


METRICS: dict[str, MetricName] = {m.key: m for m in (
    MetricName(FD, "Fréchet distance, encoder features (lower = closer)", lower_is_better=True),
    MetricName(PRECISION, "PRDC precision (share of synthetic inside real manifold)"),
    MetricName(RECALL, "PRDC recall (share of real inside synthetic manifold)"),
    MetricName(DENSITY, "PRDC density"),
    MetricName(COVERAGE, "PRDC coverage (share of real neighbourhoods hit)"),
    MetricName(MMD2, "MMD^2, RBF on encoder features", lower_is_better=True),
    MetricName(DTW_SYN_TO_REAL, "DTW synthetic -> nearest real", "sample", lower_is_better=True),
    MetricName(DTW_REAL_TO_SYN, "DTW real -> nearest synthetic", "sample", lower_is_better=True),
    MetricName(RMSE, "RMSE to nearest real", "sample", lower_is_better=True),
    MetricName(MAE, "MAE to nearest real", "sample", lower_is_better=True),
    MetricName(PSNR, "PSNR to nearest real", "dB"),
    MetricName(SSIM, "SSIM to nearest real"),
    MetricName(EXACT_COPIES, "synthetic samples identical to a real one"),
    MetricName(SYNTHETIC_TO_TRAIN_RMSE, "synthetic -> nearest training RMSE", "sample"),
    MetricName(HOLDOUT_TO_TRAIN_RMSE, "held-out real -> nearest training RMSE", "sample"),
    MetricName(BALANCED_ACCURACY, "balanced accuracy"),
    MetricName(BALANCED_ACCURACY_STD, "std of balanced accuracy over classifier seeds"),
    MetricName(AUROC, "AUROC (last class vs rest)"),
    MetricName(MACRO_F1, "macro F1"),
    MetricName(SENSITIVITY, "sensitivity (recall of the last class at the default threshold)"),
)}

#: Built-in per-class set metrics in table order (feature space, then sample space); with the
#: registered ones: :func:`medgan_core.metrics.registry.set_metric_keys`.
SET_METRICS: tuple[str, ...] = (FD, PRECISION, RECALL, DENSITY, COVERAGE, MMD2, DTW_SYN_TO_REAL, DTW_REAL_TO_SYN,
                                RMSE, MAE, PSNR, SSIM)


def add_metric_name(name: MetricName) -> None:
    """Give a new metric its one key, label and unit (``register_metric`` calls this).

    Raises:
        ValueError: ``name.key`` is taken.
    """
    if name.key in METRICS:
        raise ValueError(f"metric {name.key!r} is already registered; choose another key")
    METRICS[name.key] = name


def metric(key: str) -> MetricName:
    """The registered metric ``key``.

    Raises:
        ValueError: An unknown key; the message lists the known ones.
    """
    try:
        return METRICS[key]
    except KeyError:
        raise ValueError(f"unknown metric {key!r}; known: {', '.join(METRICS)}") from None


def gain_key(key: str) -> str:
    """Key of the augmentation gain in classifier score ``key`` (own + synthetic minus own)."""
    return f"gain_{metric(key).key}"
