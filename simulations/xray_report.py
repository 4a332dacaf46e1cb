"""End-of-run report for a chest X-ray federation: privacy spent, utility, export, figures.

Mirrors :mod:`simulations.report` (ECG). Everything is recomputed from the run directory
(config, checkpoint, ledgers) and the image folder ``data-root``, whose patients the
simulation split into sites and a held-out group (:func:`medgan_core.site.split_xray_patients`),
so ``medgan report --run-dir ...`` reproduces the numbers of a saved run.

Utility is measured on what a user would receive: the synthetic images are exported as
DICOM (+ PNG) first, and the train-on-synthetic classifier is trained only on those DICOM
files read back through the same reader as real data, then tested on real images of
held-out patients that no site trained on.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.xray import load_xray_dataset, read_xray
from medgan_core.export.dicom_export import export_synthetic_images
from medgan_core.generate import load_run_gan, sample_per_class
from medgan_core.io_utils import atomic_write_text
from medgan_core.metrics.fidelity import nearest_neighbour_fidelity
from medgan_core.metrics.tstr import tstr_trtr
from medgan_core.plots import plot_curves, plot_image_grid
from medgan_core.run_dir import RunDirectory
from medgan_core.site import split_xray_patients, xray_share_weights
from simulations.report import privacy_table_md, refusal_summary, refusals_md, site_privacy_summary

__all__ = ["CLASS_NAMES", "read_exported_images", "xray_report"]

logger = logging.getLogger(__name__)

CLASS_NAMES = ("NORMAL", "PNEUMONIA")


def read_exported_images(export_dir: str | Path, *, size: int,
                         class_names: tuple[str, ...] = CLASS_NAMES) -> tuple[np.ndarray, np.ndarray]:
    """The exported DICOM files (not the PNG previews) as ``(N, size, size)`` in [0, 1] and labels."""
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        for path in sorted((Path(export_dir) / name).glob("*.dcm")):
            images.append(read_xray(path, size=size))
            labels.append(label)
    if not images:
        raise FileNotFoundError(f"{export_dir}: no exported DICOM files under {list(class_names)}")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.ascontiguousarray(images, np.float32)).unsqueeze(1), torch.from_numpy(labels).long()


def _counts(labels: np.ndarray) -> dict[str, int]:
    return {name: int((labels == c).sum()) for c, name in enumerate(CLASS_NAMES)}


def xray_report(run_dir: str | Path, *, n_per_class: int = 300, seed: int = 0, classifier_epochs: int = 8) -> dict:
    """Write ``report.json``, ``report.md``, figures and ``synthetic_dicom/{NORMAL,PNEUMONIA}/``.

    Args:
        run_dir: A finished (or running) X-ray federation's run directory.
        n_per_class: Synthetic images exported per class; the TSTR classifier trains on them.
        seed: Seed of the latent draws and of the classifiers.
        classifier_epochs: Epochs of the TSTR and TRTR classifiers (same for both).

    Returns:
        The report as a dict (also written to ``report.json``); ``privacy`` holds each
        site's ledger summary with ``within_budget``.
    """
    directory = RunDirectory(run_dir)
    gan, run = load_run_gan(run_dir)
    images, labels, patients, data_report = load_xray_dataset(run.data_root, size=run.image_size)
    groups = split_xray_patients(patients, weights=xray_share_weights(run), seed=run.seed)
    train_idx, holdout_idx = np.concatenate(groups[:-1]), groups[-1]
    holdout_patients = sorted({patients[i] for i in holdout_idx})
    logger.info("report: %d images of site patients, %d images of %d held-out patients",
                len(train_idx), len(holdout_idx), len(holdout_patients))

    privacy = site_privacy_summary(run)
    synthetic, synthetic_labels = sample_per_class(gan, n_per_class, seed=seed)
    export_dir = directory.root / "synthetic_dicom"
    if export_dir.exists():
        shutil.rmtree(export_dir)  # a recomputed report replaces the export, never mixes two
    spent = max((s["epsilon_spent"] for s in privacy.values()), default=float("nan"))
    provenance = (f"Model {run.model}, {len(groups) - 1} sites, {run.num_server_rounds} rounds; "
                  + (f"DP per site: epsilon <= {spent:.2f}, delta = {run.target_delta:g}." if run.dp_enabled
                     else "NOT differentially private (control run)."))
    export_synthetic_images(np.clip((synthetic + 1.0) / 2.0, 0.0, 1.0), synthetic_labels, export_dir,
                            CLASS_NAMES, provenance=provenance)

    # Utility: one classifier trained only on the export, one on the sites' real images;
    # both tested on held-out patients. Both see images in [0, 1] as the reader returns them.
    exported, exported_labels = read_exported_images(export_dir, size=run.image_size)
    real_test = _tensors(images[holdout_idx], labels[holdout_idx])
    utility = tstr_trtr(
        synthetic=_tensors(exported, exported_labels), real_train=_tensors(images[train_idx], labels[train_idx]),
        real_test=real_test, num_classes=len(CLASS_NAMES), seed=seed, epochs=classifier_epochs,
    )
    # Memorisation check (see medgan_core.metrics.fidelity): synthetic images much closer
    # to the training images than fresh real images are would be a red flag.
    train_images = torch.from_numpy(images[train_idx])
    nearest = {
        "synthetic_to_train": nearest_neighbour_fidelity(torch.from_numpy(exported), train_images),
        "holdout_to_train": nearest_neighbour_fidelity(torch.from_numpy(images[holdout_idx]), train_images),
    }

    figures = directory.root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot_image_grid(images[holdout_idx], labels[holdout_idx], exported, exported_labels, CLASS_NAMES,
                    figures / "real_vs_synthetic_xrays.png", seed=seed)
    history = directory.read_metrics()
    plot_curves(
        {
            "epsilon (ledger)": {site: s["epsilon_by_round"] for site, s in privacy.items()},
            "discriminator loss on fakes": {"mean of sites": [(h["round"], h["train"]["d-loss-fake"]) for h in history if h.get("train")]},
            "generator loss": {"mean of sites": [(h["round"], h["train"]["g-loss"]) for h in history if h.get("train")]},
        },
        figures / "training_curves.png", title=f"{run.modality} federation, target epsilon {run.target_epsilon}",
    )
    report = {
        "run_dir": str(directory.root),
        "modality": run.modality,
        "dp_enabled": run.dp_enabled,
        "rounds": len(history),
        "refusals": refusal_summary(history),
        "privacy": privacy,
        "split": {"weights": list(xray_share_weights(run)), "seed": run.seed},
        "holdout_patients": len(holdout_patients),
        "holdout_class_counts": _counts(labels[holdout_idx]),
        "train_class_counts": _counts(labels[train_idx]),
        "utility": {k: v.to_dict() for k, v in utility.items()},
        "nearest_neighbour_rmse": {k: {"mean": v.rmse_mean, "std": v.rmse_std} for k, v in nearest.items()},
        "synthetic_per_class": n_per_class,
        "image_size": run.image_size,
        "figures": sorted(str(p.relative_to(directory.root)) for p in figures.glob("*.png")),
        "synthetic_dicom": str(export_dir.relative_to(directory.root)),
        "data_report": data_report.to_dict(),
    }
    directory.write_json("report.json", report)
    atomic_write_text(directory.root / "report.md", _markdown(report, run))
    return report


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _markdown(report: dict, run: RunConfig) -> str:
    lines = [f"# Federation report: {report['run_dir']}", ""]
    lines += [f"Modality {run.modality}, model {run.model}, {report['image_size']}x{report['image_size']}, "
              f"{report['rounds']} rounds, DP {'on' if report['dp_enabled'] else 'OFF (non-private control)'}.", ""]
    lines += privacy_table_md(report["privacy"])
    lines += refusals_md(report["refusals"])
    lines += ["", f"## Utility on {report['holdout_patients']} held-out patients ({report['holdout_class_counts']})", "",
              f"The same small CNN, trained on {report['synthetic_per_class']} exported synthetic DICOMs per class "
              f"(TSTR) or on the sites' real images {report['train_class_counts']} (TRTR).", "",
              "| training data | balanced accuracy | AUROC (PNEUMONIA vs NORMAL) | macro F1 |", "|---|---|---|---|"]
    for key, label in (("tstr", "synthetic (TSTR)"), ("trtr", "real site data (TRTR)")):
        u = report["utility"][key]
        lines.append(f"| {label} | {_fmt(u['balanced_accuracy'])} | {_fmt(u['auroc'])} | {_fmt(u['macro_f1'])} |")
    nearest = report["nearest_neighbour_rmse"]
    lines += ["", "## Memorisation check: RMSE to the nearest training image (pixels in [0, 1])", "",
              "| images | mean | std |", "|---|---|---|",
              f"| synthetic | {_fmt(nearest['synthetic_to_train']['mean'])} | {_fmt(nearest['synthetic_to_train']['std'])} |",
              f"| held-out real (reference) | {_fmt(nearest['holdout_to_train']['mean'])} | "
              f"{_fmt(nearest['holdout_to_train']['std'])} |",
              "", "Synthetic images far closer to training images than fresh real images are would suggest copying.",
              "", "## Figures", ""] + [f"![{f}]({f})" for f in report["figures"]]
    lines += ["", f"Synthetic X-rays as DICOM Secondary Capture (+ PNG previews): `{report['synthetic_dicom']}/`", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(xray_report(sys.argv[1])["utility"], indent=2))
