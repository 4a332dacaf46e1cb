"""PNG figures for run reports (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_beats_real_vs_synthetic", "plot_curves", "plot_image_grid", "plot_lead_means"]


def plot_beats_real_vs_synthetic(real: np.ndarray, real_labels: np.ndarray, synthetic: np.ndarray,
                                 synthetic_labels: np.ndarray, class_names: Sequence[str], path: Path,
                                 *, fs: float, to_mv: float, per_class: int = 12, seed: int = 0,
                                 real_title: str = "real (held-out patients)") -> Path:
    """One row per class: real beats (left) and synthetic beats (right), overlaid, in mV."""
    rng = np.random.default_rng(seed)
    fig, axes = plt.subplots(len(class_names), 2, figsize=(10, 3 * len(class_names)), sharex=True, squeeze=False)
    t = np.arange(real.shape[1]) / fs
    for row, name in enumerate(class_names):
        for col, (data, labels, title) in enumerate(((real, real_labels, real_title),
                                                     (synthetic, synthetic_labels, "synthetic"))):
            ax = axes[row, col]
            chosen = np.flatnonzero(labels == row)
            if len(chosen):
                pick = rng.choice(chosen, size=min(per_class, len(chosen)), replace=False)
                ax.plot(t, data[pick].T * to_mv, color="C0" if col == 0 else "C3", alpha=0.35, lw=0.8)
                ax.plot(t, data[chosen].mean(0) * to_mv, color="k", lw=1.5, label="mean")
            ax.set_title(f"{name}: {title} (n={len(chosen)})")
            ax.set_ylabel("mV")
    for ax in axes[-1]:
        ax.set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lead_means(real: np.ndarray, real_labels: np.ndarray, synthetic: np.ndarray, synthetic_labels: np.ndarray,
                    class_names: Sequence[str], lead_names: Sequence[str], path: Path, *, fs: float,
                    to_mv: float) -> Path:
    """One small panel per lead: the real (held-out) and synthetic mean beat of every class, in mV.

    Args:
        real, synthetic: (N, C, L) beats in model units; ``lead_names`` names the C leads.
    """
    columns = min(4, len(lead_names))
    rows = -(-len(lead_names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.2 * rows), sharex=True, squeeze=False)
    t = np.arange(real.shape[2]) / fs
    for lead, name in enumerate(lead_names):
        ax = axes[lead // columns, lead % columns]
        for label, class_name in enumerate(class_names):
            for data, labels, style, kind in ((real, real_labels, "-", "real"),
                                              (synthetic, synthetic_labels, "--", "synthetic")):
                chosen = labels == label
                if chosen.any():
                    ax.plot(t, data[chosen, lead].mean(0) * to_mv, style, color=f"C{label}", lw=1.1,
                            label=f"{class_name} {kind} (n={int(chosen.sum())})")
        ax.set_title(name, fontsize=9)
    for ax in axes.flat[len(lead_names):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("mV")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(series: dict[str, dict[str, Sequence[tuple[float, float]]]], path: Path, *,
                title: str = "") -> Path:
    """One panel per metric; each panel holds named (x, y) series."""
    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.4), squeeze=False)
    for ax, (metric, lines) in zip(axes[0], series.items()):
        for name, points in lines.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", label=name)
        ax.set_title(metric)
        ax.set_xlabel("round")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_image_grid(real: np.ndarray, real_labels: np.ndarray, synthetic: np.ndarray,
                    synthetic_labels: np.ndarray, class_names: Sequence[str], path: Path,
                    *, per_class: int = 6, seed: int = 0) -> Path:
    """Rows: class x (real, synthetic); images in [0, 1]."""
    rng = np.random.default_rng(seed)
    rows = 2 * len(class_names)
    fig, axes = plt.subplots(rows, per_class, figsize=(1.6 * per_class, 1.7 * rows), squeeze=False)
    for c, name in enumerate(class_names):
        for r, (data, labels, kind) in enumerate(((real, real_labels, "real"), (synthetic, synthetic_labels, "synthetic"))):
            chosen = np.flatnonzero(labels == c)
            pick = rng.choice(chosen, size=min(per_class, len(chosen)), replace=False) if len(chosen) else []
            for j in range(per_class):
                ax = axes[2 * c + r, j]
                ax.axis("off")
                if j < len(pick):
                    ax.imshow(data[pick[j]], cmap="gray", vmin=0, vmax=1)
            axes[2 * c + r, 0].set_title(f"{name} {kind}", fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
