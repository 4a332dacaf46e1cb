"""How well real data generalises to each choice of held-out ECG patients: the ceiling of TSTR.

A generator trained on the sites can at best teach a classifier what the sites' real
records teach it. With few patients, PVC and even normal-beat morphology is largely
patient-specific, so for some held-out patients a classifier trained on every other
patient's real beats already misses. This script measures that ceiling: for each candidate
hold-out (patients, ``;`` between candidates) it trains both of the report's classifiers
(the project's CNN and the independent gradient-boosted trees on z-normalised beats) on the
real beats of every other record listed and tests them on the held-out patients, patient by
patient as well. No GAN, no privacy: real data only.

    .venv/bin/python benchmarks/holdout_ceiling.py \\
        [--records "mitdb/100 mitdb/105 ..."] [--holdouts "mitdb/114 mitdb/116;mitdb/116;..."]

Prints a markdown table (mean over ``--seeds`` classifier seeds) and writes it to ``--out``;
``--figure`` also draws each patient's mean beat per class, z-normalised as the trees see it,
the first candidate hold-out's patients dashed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from medgan_core.data.ecg import EcgConfig  # noqa: E402
from medgan_core.data.labelled import LabelledSet  # noqa: E402
from medgan_core.evaluation.utility import classifier_scores, gbt_scores  # noqa: E402
from medgan_core.metrics.tstr_gbt import gbt_features  # noqa: E402
from medgan_core.modalities import get_modality  # noqa: E402
from simulations.federation import resolve_run_config  # noqa: E402

RECORDS = "mitdb/100 mitdb/105 mitdb/106 mitdb/108 mitdb/114 mitdb/116 mitdb/121 mitdb/123 svdb/800"
HOLDOUTS = "mitdb/114 mitdb/116;mitdb/114;mitdb/116;mitdb/105;mitdb/108;mitdb/106;mitdb/105 mitdb/116"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", default=RECORDS, help="every record, space-separated, under data/ecg")
    parser.add_argument("--holdouts", default=HOLDOUTS, help="candidate hold-outs, ';' between them")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", default="runs/holdout_ceiling.md")
    parser.add_argument("--figure", default="", help="PNG of each patient's mean z-normalised beat per class")
    args = parser.parse_args()
    records = args.records.split()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    # One read of every record; resolve_run_config only for the data root and the reader.
    run = resolve_run_config({"run-dir": "runs/holdout-ceiling", "site-records": " ".join(records[:-1]),
                              "holdout-records": records[-1]})
    sites, last = get_modality("ecg").evaluation_data(run)
    every = LabelledSet.concat([*sites, last])
    patients = np.asarray(every.patients)
    if args.figure:
        plot_patient_means(every, highlighted=args.holdouts.split(";")[0].split(), out=Path(args.figure))
    lines = ["| held out | N / V beats | trained on | CNN bal. acc | CNN AUROC | trees bal. acc | trees AUROC | "
             "per patient, trees: N called N / V called V |", "|---|---|---|---|---|---|---|---|"]
    for candidate in args.holdouts.split(";"):
        held = candidate.split()
        unknown = sorted(set(held) - set(records))
        if unknown:
            sys.exit(f"holdout_ceiling: {unknown} are not in --records; list them there")
        test_mask = np.isin(patients, held)
        train, test = every.take(np.flatnonzero(~test_mask)), every.take(np.flatnonzero(test_mask))
        cnn = classifier_scores(train, test, num_classes=2, epochs=8, seeds=seeds)
        trees = gbt_scores(train, test, num_classes=2, seeds=seeds, per_patient=True)
        counts = test.class_counts(("N", "V"))
        breakdown = "; ".join(f"{p}: {s['recall_per_class'][0]:.2f} / {s['recall_per_class'][1]:.2f}"
                              for p, s in trees["per_patient"].items())
        lines.append(f"| {', '.join(held)} | {counts['N']} / {counts['V']} | the other {len(records) - len(held)} "
                     f"records | {cnn['balanced_accuracy']:.3f} | {cnn['auroc']:.3f} | "
                     f"{trees['balanced_accuracy']:.3f} | {trees['auroc']:.3f} | {breakdown} |")
        print(lines[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def plot_patient_means(beats: LabelledSet, *, highlighted: list[str], out: Path) -> None:
    """One line per patient and class: the mean of its beats after the trees' z-normalisation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = gbt_features(beats.samples)
    patients, labels = np.asarray(beats.patients), beats.labels.numpy()
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for label, (axis, name) in enumerate(zip(axes, ("N", "V"))):
        for patient in sorted(set(beats.patients)):
            mine = (patients == patient) & (labels == label)
            if mine.any():
                axis.plot(features[mine].mean(0), "--" if patient in highlighted else "-",
                          lw=2.5 if patient in highlighted else 1.2, label=f"{patient} ({int(mine.sum())})")
        axis.set_title(f"{name}: mean beat per patient, z-normalised (dashed: held out)")
        axis.set_xlabel(f"sample ({EcgConfig().model_fs} Hz, R peak at {EcgConfig().r_offset})")
        axis.legend(fontsize=7)
    axes[0].set_ylabel("z-score")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
