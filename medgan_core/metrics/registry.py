"""Metrics users add: one function and one :func:`register_metric` call, in the metric's own file.

A registered metric scores one class's candidate samples (synthetic, or real for the
reference) against that class's held-out real samples. Scoring
(:func:`medgan_core.evaluation.score_against_real`) computes every registered metric that
applies to the run's modality, so its value lands in ``report.json`` (``final_metrics``,
``reference_metrics``), in the study's rows and, under its label and unit, in ``report.md``'s
final-metrics table (:func:`set_metric_keys`). Nothing else needs editing.

The registry imports no metric: :mod:`medgan_core.metrics` imports the metric modules,
which register themselves here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from medgan_core.metrics.names import METRICS, SET_METRICS, MetricName, add_metric_name

if TYPE_CHECKING:
    from medgan_core.data.labelled import LabelledSet
    from medgan_core.evaluation.settings import EvaluationSettings

__all__ = ["SampleMetric", "register_metric", "registered_metric_keys", "registered_metric_scores",
           "set_metric_keys"]


class SampleMetric(Protocol):
    """``fn(candidate, real, *, settings, seed) -> float``: one class, sample units via
    ``settings.physical_scale`` when the metric's unit is ``"sample"``."""

    def __call__(self, candidate: "LabelledSet", real: "LabelledSet", *, settings: "EvaluationSettings",
                 seed: int) -> float: ...


@dataclass(frozen=True)
class _Registered:
    fn: SampleMetric
    applies_to: tuple[str, ...] | None  # modality names; None = every modality


_REGISTERED: dict[str, _Registered] = {}


def register_metric(key: str, fn: SampleMetric, *, label: str, unit: str = "", lower_is_better: bool = False,
                    applies_to: tuple[str, ...] | None = None) -> None:
    """Score every class with ``fn`` under ``key`` from now on.

    Args:
        key: The one spelling of the metric (JSON, CSV, code); must be new.
        fn: The metric (see :class:`SampleMetric`).
        label: Row label in ``report.md``.
        unit: ``""``, a unit such as ``"dB"``, or ``"sample"`` (the modality's sample unit).
        lower_is_better: Direction, for tables and conclusions.
        applies_to: Modality names it is computed for; ``None`` = every modality.

    Raises:
        ValueError: ``key`` already names a metric (built-in or registered).
    """
    if key in METRICS or key in _REGISTERED:
        raise ValueError(f"metric {key!r} is already registered; choose another key")
    add_metric_name(MetricName(key, label, unit, lower_is_better))
    _REGISTERED[key] = _Registered(fn, tuple(applies_to) if applies_to is not None else None)


def registered_metric_keys(modality: str | None = None) -> tuple[str, ...]:
    """Keys of the registered metrics (that apply to ``modality``, when given), in registration order."""
    return tuple(key for key, entry in _REGISTERED.items()
                 if modality is None or entry.applies_to is None or modality in entry.applies_to)


def registered_metric_scores(candidate: "LabelledSet", real: "LabelledSet", *, modality: str,
                             settings: "EvaluationSettings", seed: int) -> dict[str, float]:
    """Every registered metric that applies to ``modality``, of one class's ``candidate`` vs ``real``."""
    return {key: float(_REGISTERED[key].fn(candidate, real, settings=settings, seed=seed))
            for key in registered_metric_keys(modality)}


def set_metric_keys() -> tuple[str, ...]:
    """Per-class set metrics in table order: the built-in ones, then the registered ones."""
    return SET_METRICS + registered_metric_keys()
