"""End-of-run report for an ECG federation: privacy spent, fidelity, utility, figures.

Everything is recomputed from the run directory (config, checkpoint, ledgers) and the
bundled data, so ``medgan report --run-dir ...`` reproduces the numbers of a saved run.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.ecg import EcgConfig, load_ecg_records
from medgan_core.export.wfdb_export import write_synthetic_wfdb
from medgan_core.generate import load_run_gan, sample_per_class
from medgan_core.io_utils import atomic_write_text
from medgan_core.metrics.tstr import tstr_trtr
from medgan_core.plots import plot_beats_real_vs_synthetic, plot_curves
from medgan_core.run_dir import RunDirectory
from privacy.ledger import PrivacyLedger

__all__ = ["ecg_report", "site_privacy_summary"]

logger = logging.getLogger(__name__)


def site_privacy_summary(run: RunConfig) -> dict[str, dict]:
    """Each simulated site's epsilon per round, from its ledger, with a recomputation."""
    summary: dict[str, dict] = {}
    for ledger_path in sorted((Path(run.run_dir) / "sites").glob("*/privacy_ledger.json")):
        ledger = PrivacyLedger.open(ledger_path, target_epsilon=run.target_epsilon, target_delta=run.target_delta)
        recomputed = ledger.epsilon_spent()
        summary[ledger_path.parent.name] = {
            "epsilon_by_round": [(e.server_round, e.epsilon_after) for e in ledger.entries],
            "epsilon_spent": recomputed,
            "epsilon_recorded": ledger.entries[-1].epsilon_after if ledger.entries else 0.0,
            "target_epsilon": ledger.target_epsilon,
            "target_delta": ledger.target_delta,
            "within_budget": recomputed <= ledger.target_epsilon,
            "noise_multiplier": ledger.entries[-1].noise_multiplier if ledger.entries else None,
            "steps": sum(e.steps for e in ledger.entries),
        }
    return summary


def _nn_dtw(synthetic: np.ndarray, real: np.ndarray, window: int) -> float:
    from medgan_core.metrics.dtw import dtw_matrix

    return float(dtw_matrix(synthetic, real, window=window).min(axis=1).mean())


def ecg_report(run_dir: str | Path, *, n_per_class: int = 500, dtw_samples: int = 150, seed: int = 0,
               wfdb_per_class: int = 100) -> dict:
    """Write ``report.json``, ``report.md``, figures and the synthetic WFDB export.

    Returns:
        The report as a dict (also written to ``report.json``).
    """
    directory = RunDirectory(run_dir)
    gan, run = load_run_gan(run_dir)
    config = EcgConfig()
    site_records = [r for group in run.site_record_groups() for r in group]
    train, _ = load_ecg_records(run.record_paths(site_records), config)
    holdout, holdout_report = load_ecg_records(run.record_paths(run.holdout_records.split()), config)
    logger.info("report: %d training beats from site patients, %d held-out beats from %s",
                len(train), len(holdout), run.holdout_records)
    synthetic, synthetic_labels = sample_per_class(gan, n_per_class, seed=seed)

    # Fidelity: nearest-neighbour DTW from synthetic to held-out real beats, per class.
    rng = np.random.default_rng(seed)
    band = max(1, config.window // 10)
    dtw = {}
    for index, name in enumerate(config.class_names):
        syn = synthetic[synthetic_labels == index]
        real = holdout.beats[holdout.labels == index]
        if len(real) == 0:
            continue
        syn = syn[rng.choice(len(syn), min(dtw_samples, len(syn)), replace=False)]
        real = real[rng.choice(len(real), min(dtw_samples * 2, len(real)), replace=False)]
        # A real-to-real baseline tells what "close" means on this data.
        other = holdout.beats[holdout.labels != index]
        baseline = other[rng.choice(len(other), min(dtw_samples, len(other)), replace=False)]
        dtw[name] = {
            "synthetic_to_real_mv": _nn_dtw(syn, real, band) * config.amplitude_scale_mv,
            "other_class_real_to_real_mv": _nn_dtw(baseline, real, band) * config.amplitude_scale_mv,
        }

    # Utility: the same classifier trained on synthetic vs real, tested on held-out patients.
    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(x, np.float32)).unsqueeze(1), torch.from_numpy(y).long()

    utility = tstr_trtr(
        synthetic=tensors(synthetic, synthetic_labels), real_train=tensors(train.beats, train.labels),
        real_test=tensors(holdout.beats, holdout.labels), num_classes=len(config.class_names), seed=seed,
    )

    figures = directory.root / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    plot_beats_real_vs_synthetic(holdout.beats, holdout.labels, synthetic, synthetic_labels, config.class_names,
                                 figures / "real_vs_synthetic_beats.png", fs=config.model_fs,
                                 to_mv=config.amplitude_scale_mv)
    privacy = site_privacy_summary(run)
    history = directory.read_metrics()
    plot_curves(
        {
            "epsilon (ledger)": {site: s["epsilon_by_round"] for site, s in privacy.items()},
            "discriminator loss": {"mean of sites": [(h["round"], h["train"]["d-loss"]) for h in history if h.get("train")]},
            "generator loss": {"mean of sites": [(h["round"], h["train"]["g-loss"]) for h in history if h.get("train")]},
        },
        figures / "training_curves.png", title=f"{run.modality} federation, target epsilon {run.target_epsilon}",
    )
    wfdb_dir = directory.root / "synthetic_wfdb"
    picks = np.concatenate([np.flatnonzero(synthetic_labels == c)[:wfdb_per_class] for c in range(gan.num_classes)])
    write_synthetic_wfdb(synthetic[picks], synthetic_labels[picks], wfdb_dir, config=config)

    report = {
        "run_dir": str(directory.root),
        "dp_enabled": run.dp_enabled,
        "rounds": len(history),
        "privacy": privacy,
        "holdout_patients": run.holdout_records.split(),
        "holdout_class_counts": holdout.class_counts(),
        "train_class_counts": train.class_counts(),
        "dtw_nearest_neighbour": dtw,
        "utility": {k: v.to_dict() for k, v in utility.items()},
        "synthetic_per_class": n_per_class,
        "figures": sorted(str(p.relative_to(directory.root)) for p in figures.glob("*.png")),
        "synthetic_wfdb": str(wfdb_dir.relative_to(directory.root)),
        "data_report_holdout": holdout_report.to_dict(),
    }
    directory.write_json("report.json", report)
    atomic_write_text(directory.root / "report.md", _markdown(report, run))
    return report


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


def _markdown(report: dict, run: RunConfig) -> str:
    lines = [f"# Federation report: {report['run_dir']}", ""]
    lines += [f"Modality {run.modality}, model {run.model}, {report['rounds']} rounds, "
              f"DP {'on' if report['dp_enabled'] else 'OFF (non-private control)'}.", ""]
    lines += ["## Privacy spent per site (from each site's ledger)", "",
              "| site | epsilon spent | target | delta | noise multiplier | DP steps | within budget |",
              "|---|---|---|---|---|---|---|"]
    for site, s in report["privacy"].items():
        lines.append(f"| {site} | {_fmt(s['epsilon_spent'])} | {s['target_epsilon']:g} | {s['target_delta']:g} | "
                     f"{_fmt(s['noise_multiplier'])} | {s['steps']} | {s['within_budget']} |")
    lines += ["", "## Fidelity: nearest-neighbour DTW to held-out real beats (mV, lower is closer)", "",
              "| class | synthetic -> real | other-class real -> real (reference) |", "|---|---|---|"]
    for name, d in report["dtw_nearest_neighbour"].items():
        lines.append(f"| {name} | {_fmt(d['synthetic_to_real_mv'])} | {_fmt(d['other_class_real_to_real_mv'])} |")
    lines += ["", f"## Utility on held-out patients {', '.join(report['holdout_patients'])} "
              f"({report['holdout_class_counts']})", "",
              "| training data | balanced accuracy | AUROC (V vs N) | macro F1 |", "|---|---|---|---|"]
    for key, label in (("tstr", "synthetic (TSTR)"), ("trtr", "real site data (TRTR)")):
        u = report["utility"][key]
        lines.append(f"| {label} | {_fmt(u['balanced_accuracy'])} | {_fmt(u['auroc'])} | {_fmt(u['macro_f1'])} |")
    lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in report["figures"]]
    lines += ["", f"Synthetic beats as WFDB (mV, 360 Hz, `.atr` symbols N/V): `{report['synthetic_wfdb']}/`", ""]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    import sys

    logging.basicConfig(level=logging.INFO)
    print(json.dumps(ecg_report(sys.argv[1])["utility"], indent=2))
