"""ROC figures for audit reports: linear axes for AUC, log-log axes for the low-FPR regime."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["plot_roc"]

logger = logging.getLogger(__name__)

# Floor for the log-log panel: FPR/TPR of exactly 0 cannot be drawn on a log axis.
_LOG_FLOOR = 1e-5


def plot_roc(
    results: dict[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    title: str,
) -> Path:
    """Write a PNG with a linear ROC panel and a log-log ROC panel, each with the diagonal.

    Args:
        results: attack name -> ``(fpr, tpr)`` arrays, e.g. from
            :func:`privacy.audit.metrics.roc_curve`.
        path: output PNG path; parent directories are created.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ValueError: if ``results`` is empty or an entry's arrays differ in length.
    """
    if not results:
        raise ValueError("results is empty; pass at least one attack's (fpr, tpr)")
    # The object-oriented Figure + Agg canvas renders without touching pyplot's global
    # backend, so plotting works headless and does not disturb a caller's own figures.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5))
    FigureCanvasAgg(fig)
    linear, loglog = fig.subplots(1, 2)
    for name, (fpr, tpr) in results.items():
        fpr, tpr = np.asarray(fpr, dtype=float), np.asarray(tpr, dtype=float)
        if fpr.shape != tpr.shape:
            raise ValueError(f"{name}: fpr {fpr.shape} and tpr {tpr.shape} differ in shape")
        linear.plot(fpr, tpr, label=name)
        loglog.plot(np.maximum(fpr, _LOG_FLOOR), np.maximum(tpr, _LOG_FLOOR), label=name)
    diagonal = np.array([_LOG_FLOOR, 1.0])
    for ax in (linear, loglog):
        ax.plot(diagonal, diagonal, "k--", linewidth=0.8, label="chance")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize="small")
    linear.set_xlim(0, 1)
    linear.set_ylim(0, 1)
    linear.set_title("ROC (linear)")
    loglog.set_xscale("log")
    loglog.set_yscale("log")
    loglog.set_xlim(_LOG_FLOOR, 1)
    loglog.set_ylim(_LOG_FLOOR, 1)
    loglog.set_title("ROC (log-log, low-FPR regime)")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    logger.info("wrote ROC figure %s", out)
    return out
