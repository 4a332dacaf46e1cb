"""Which training lever moves the synthetic data's utility under DP, measured on held-out patients.

Each lever is a set of ``--run-config`` overrides on top of the main job's configuration.
For every lever and run (each run draws fresh secret DP noise, so runs are independent
training seeds) it trains the federation in one process
(:func:`simulations.inprocess.run_inprocess_federation`, the sites' own code and Flower's
FedAvg arithmetic), samples ``--per-class`` synthetic records per class and scores them on
the held-out patients with both classifiers of the report (the project's CNN and the
independent gradient-boosted trees on z-normalised samples: balanced accuracy, AUROC,
sensitivity to the rare class; for a hold-out of few patients also patient by patient, in
``levers.jsonl``) and the rare class's Frechet distance in the report's encoder features
beside the real training patients' own.

    .venv/bin/python benchmarks/utility_levers.py --runs 3 \\
        --lever "baseline=" --lever "nd3=discriminator-steps=3 local-steps=300 model='dcgan1d'" [--out runs/levers]

A lever is ``NAME=<run-config>``, the overrides as ``medgan simulate --run-config`` takes them
(TOML values, parsed by Flower's parser; empty: the defaults). A name ending in ``@init``
scores the round-1 model without training it (epsilon 0): with ``pretrained=DIR``, what the
public pretraining alone gives, the baseline a DP fine-tuning must beat. Results are appended
to ``levers.jsonl`` in ``--out`` as each run finishes (a cut-off sweep keeps what it
measured), and the summary table (mean ± std over runs) is printed and written to
``levers.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from medgan_cli._common import parse_overrides  # noqa: E402
from medgan_core.data.labelled import LabelledSet  # noqa: E402
from medgan_core.evaluation.scoring import sample_with_labels  # noqa: E402
from medgan_core.evaluation.utility import classifier_scores, gbt_scores  # noqa: E402
from medgan_core.metrics.encoder import load_or_train_encoder  # noqa: E402
from medgan_core.metrics.frechet import feature_statistics, frechet_distance  # noqa: E402
from medgan_core.modalities import get_modality  # noqa: E402
from medgan_core.models import build_gan  # noqa: E402
from medgan_core.models.state import load_gan_state  # noqa: E402
from simulations.federation import resolve_run_config  # noqa: E402
from simulations.inprocess import initial_weights, run_inprocess_federation  # noqa: E402

METRICS = ("balanced_accuracy", "auroc", "sensitivity")


def parse_lever(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME=<run-config>``: the overrides parsed by Flower's parser, as ``medgan simulate --run-config``."""
    name, _, overrides = text.partition("=")
    return name, parse_overrides([overrides]) if overrides.strip() else {}


def measure(name: str, overrides: dict[str, Any], *, per_class: int, classifier_seeds: tuple[int, ...],
            encoder_path: Path, run_index: int, weights_dir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="lever-") as run_dir:
        run = resolve_run_config({**overrides, "run-dir": run_dir})
        started = time.monotonic()
        if name.endswith("@init"):  # the round-1 model itself: nothing of any site's data
            weights, epsilon = dict(initial_weights(run)), 0.0
        else:
            result = run_inprocess_federation(run, run_id=f"{name}-{run_index}")
            weights, epsilon = result.weights, max(result.epsilon.values())
        train_seconds = time.monotonic() - started
    gan = build_gan(run)
    load_gan_state(gan, weights)
    if weights_dir is not None:  # to look at the samples later (medgan_core.plots)
        torch.save({"state": weights, "overrides": overrides}, weights_dir / f"{name}-run{run_index}.pt")
    modality = get_modality(run.modality)
    sites, holdout = modality.evaluation_data(run)
    train = LabelledSet.concat(sites)
    num_classes = len(modality.class_names)
    synthetic = sample_with_labels(gan, torch.arange(num_classes).repeat_interleave(per_class), seed=run_index)
    encoder = load_or_train_encoder(encoder_path, train.samples, train.labels, backbone=modality.encoder_backbone,
                                    epochs=modality.encoder_epochs, seed=run.seed)
    rare = num_classes - 1
    real_rare = holdout.samples[holdout.labels == rare]
    real_stats = feature_statistics(encoder.features(real_rare))
    fd = frechet_distance(*real_stats, *feature_statistics(encoder.features(synthetic.samples[synthetic.labels == rare])))
    fd_ref = frechet_distance(*real_stats, *feature_statistics(encoder.features(train.samples[train.labels == rare])))
    row = {
        "lever": name, "overrides": overrides, "run": run_index, "train_seconds": round(train_seconds, 1),
        "epsilon": epsilon,
        "cnn": classifier_scores(synthetic, holdout, num_classes=num_classes, epochs=8, seeds=classifier_seeds,
                                 per_patient=True),
        "trees": gbt_scores(synthetic, holdout, num_classes=num_classes, seeds=classifier_seeds, per_patient=True),
        "fd_rare": float(fd), "fd_rare_real_reference": float(fd_ref),
    }
    return row


def summarise(rows: list[dict]) -> list[str]:
    def cell(values: list[float]) -> str:
        values = [v for v in values if not math.isnan(v)]
        if len(values) < 2:
            return f"{values[0]:.3f}" if values else "-"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = ["| lever | runs | epsilon | CNN bal. acc | CNN AUROC | CNN sens. | trees bal. acc | trees AUROC "
             "| trees sens. | FD rare (real ref) | train s |", "|" + "---|" * 11]
    for name in dict.fromkeys(r["lever"] for r in rows):
        mine = [r for r in rows if r["lever"] == name]
        cells = [cell([r[c][m] for r in mine]) for c in ("cnn", "trees") for m in METRICS]
        fd = f"{cell([r['fd_rare'] for r in mine])} ({statistics.mean(r['fd_rare_real_reference'] for r in mine):.0f})"
        lines.append(f"| {name} | {len(mine)} | {cell([r['epsilon'] for r in mine])} | {' | '.join(cells)} | {fd} "
                     f"| {statistics.mean(r['train_seconds'] for r in mine):.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lever", action="append", required=True,
                        help="NAME=<run-config>, e.g. \"nd3=discriminator-steps=3 local-steps=300\"")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--classifier-seeds", default="0,1")
    parser.add_argument("--out", default="runs/levers")
    parser.add_argument("--summary-only", action="store_true", help="print the table of --out's levers.jsonl")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "levers.jsonl"
    if not args.summary_only:
        seeds = tuple(int(s) for s in args.classifier_seeds.split(","))
        for run_index in range(args.runs):  # interleaved: a cut-off sweep has every lever's first runs
            for text in args.lever:
                name, overrides = parse_lever(text)
                row = measure(name, overrides, per_class=args.per_class, classifier_seeds=seeds,
                              encoder_path=out / "encoder.pt", run_index=run_index, weights_dir=out)
                with log.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"{name} run {run_index}: eps {row['epsilon']:.3f}, trees {row['trees']['balanced_accuracy']:.3f}/"
                      f"{row['trees']['auroc']:.3f}/{row['trees']['sensitivity']:.3f}, CNN "
                      f"{row['cnn']['balanced_accuracy']:.3f}/{row['cnn']['auroc']:.3f}/{row['cnn']['sensitivity']:.3f}, "
                      f"FD V {row['fd_rare']:.0f} ({row['train_seconds']:.0f} s)", flush=True)
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    names = {parse_lever(t)[0] for t in args.lever}
    table = summarise([r for r in rows if r["lever"] in names])
    (out / "levers.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
