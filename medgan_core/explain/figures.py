"""Figures of ``medgan explain``: mean attribution share over the mean sample, per class."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medgan_core.plots import plt

__all__ = ["plot_attribution_grid"]


def plot_attribution_grid(share_maps: Mapping[str, Mapping[str, np.ndarray]],
                          mean_samples: Mapping[str, np.ndarray], regions: Mapping[str, np.ndarray],
                          path: Path, *, title: str, sample_scale: float = 1.0, sample_unit: str = "") -> Path:
    """One row per method, one column per class.

    A sample with one spatial axis (a beat) is drawn as a line with its attribution share
    on a second axis and the named regions shaded; one with two (an image) as the mean
    image in grey under the share as a heatmap, with the regions outlined.

    Args:
        share_maps: method -> class name -> ``(C, ...)`` share map (channels are summed).
        mean_samples: class name -> ``(C, ...)`` mean sample in model units.
        regions: name -> boolean mask of one sample (``Modality.attribution_regions``).
        path: The PNG written.
        title: The figure's title.
        sample_scale: Model units -> ``sample_unit`` for a line plot (mV for ECG).
    """
    methods, classes = list(share_maps), list(mean_samples)
    fig, axes = plt.subplots(len(methods), len(classes), figsize=(4.6 * len(classes), 2.9 * len(methods)),
                             squeeze=False)
    for row, method in enumerate(methods):
        for col, name in enumerate(classes):
            ax = axes[row, col]
            share = share_maps[method][name].sum(0)
            sample = mean_samples[name].mean(0)
            if share.ndim == 1:
                _line(ax, sample * sample_scale, share, regions, sample_unit)
            else:
                _heatmap(ax, sample, share, regions)
            ax.set_title(f"{method}: {name}", fontsize=9, pad=12)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _line(ax: plt.Axes, sample: np.ndarray, share: np.ndarray, regions: Mapping[str, np.ndarray],
          unit: str) -> None:
    positions = np.arange(len(sample))
    for index, (name, mask) in enumerate(regions.items()):
        inside = np.flatnonzero(mask.reshape(-1, len(sample)).any(0))
        if len(inside):
            ax.axvspan(inside[0] - 0.5, inside[-1] + 0.5, color=f"C{index + 2}", alpha=0.12, lw=0)
            ax.text((inside[0] + inside[-1]) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=6)
    ax.plot(positions, sample, color="k", lw=1.2)
    ax.set_ylabel(f"mean sample{f' ({unit})' if unit else ''}", fontsize=7)
    ax.set_xlabel("sample", fontsize=7)
    twin = ax.twinx()
    twin.fill_between(positions, share, color="C3", alpha=0.5, lw=0)
    twin.set_ylabel("mean |attribution| share", fontsize=7, color="C3")


def _heatmap(ax: plt.Axes, sample: np.ndarray, share: np.ndarray, regions: Mapping[str, np.ndarray]) -> None:
    ax.imshow(sample, cmap="gray")
    shown = ax.imshow(share, cmap="inferno", alpha=0.55)
    for mask in regions.values():
        ax.contour(mask.reshape(-1, *share.shape).any(0), levels=[0.5], colors="c", linewidths=0.6)
    ax.axis("off")
    plt.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
