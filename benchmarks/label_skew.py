"""How non-IID sites change utility: X-ray sites split by Dir(alpha) per class.

For each ``--alpha`` (default 100, 1, 0.1) the three simulated X-ray sites of
``scripts/run_xray_federation.sh`` (``site-records='1|1|1' holdout-records='1'``) are
dealt with ``partition='dirichlet'`` (:mod:`medgan_core.data.partition`), and the script
prints each site's patients and images per class, with the mean over sites of the largest
class's share of the images (0.74 is the overall mix here, 1.0 is one class per site). Each
site gets at least ``--min-patients`` patients (run-config ``partition-min-patients``; a
draw that leaves one with fewer is redrawn): the default 100 lets every site train with
the X-ray default, patient-level DP with 64 expected patients per step; at 10, Dir(0.1)
leaves a site of 13 patients, which refuses to train (its released patient count is below
``patients-per-step``).
The held-out quarter is the same for every alpha, so rows are scored on the same patients.
This part reads the images only: a few seconds.

With ``--train`` it also runs a short federation per alpha (and one for
``partition='records'``) in one process (:func:`simulations.inprocess.run_inprocess_federation`,
each site through the ClientApp's code, DP-SGD included) and prints the TSTR balanced
accuracy and AUROC of the report's classifier trained on 300 synthetic images per class
and tested on the held-out patients. Small on purpose (32x32, 2 rounds x 40 steps): a
comparison of partitions, not of the best model.

    .venv/bin/python benchmarks/label_skew.py
    .venv/bin/python benchmarks/label_skew.py --train
"""

from __future__ import annotations

import argparse
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from flwr.common.config import parse_config_args

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.generate import sample_per_class
from medgan_core.metrics.tstr import evaluate_classifier, train_classifier
from medgan_core.modalities import get_modality
from medgan_core.models import build_gan
from medgan_core.models.state import load_gan_state
from simulations.federation import resolve_run_config, site_class_counts
from simulations.inprocess import run_inprocess_federation

XRAY = {"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1", "holdout-records": "1"}


def counts_rows(run: RunConfig, label: str) -> list[str]:
    """Markdown rows: one per site, then the mean largest-class share."""
    rows, shares = [], []
    for k, site in enumerate(site_class_counts(run)):
        total = sum(site.per_class.values())
        shares.append(max(site.per_class.values()) / total)
        mix = " | ".join(f"{n} ({n / total:.0%})" for n in site.per_class.values())
        rows.append(f"| {label} | site-{k} | {site.patients} | {total} | {mix} |")
    rows.append(f"| {label} | mean largest-class share | | | {np.mean(shares):.2f} | |")
    return rows


def tstr(run: RunConfig, *, threads: int) -> tuple[float, float, float]:
    """Train ``run`` in process; TSTR balanced accuracy, AUROC (two classifier seeds) and max epsilon."""
    result = run_inprocess_federation(run, run_id="label-skew", threads=threads)
    gan = build_gan(run)
    load_gan_state(gan, dict(result.weights))
    gan.generator.eval()
    synthetic, synthetic_labels = sample_per_class(gan, 300, seed=0)
    _, holdout = get_modality("xray").evaluation_data(run)
    scores = []
    for classifier_seed in (0, 1):
        model = train_classifier(torch.from_numpy(synthetic).float(), torch.from_numpy(synthetic_labels).long(),
                                 num_classes=2, epochs=8, seed=classifier_seed)
        outcome = evaluate_classifier(model, holdout.samples, holdout.labels)
        scores.append((outcome.balanced_accuracy, outcome.auroc))
    return (float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])),
            max(result.epsilon.values(), default=float("nan")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/xray/kermany", help="data-root")
    parser.add_argument("--alpha", type=float, nargs="+", default=[100.0, 1.0, 0.1])
    parser.add_argument("--seed", type=int, default=42, help="the run's public seed (the partition)")
    parser.add_argument("--min-patients", type=int, default=100, help="partition-min-patients")
    parser.add_argument("--train", action="store_true", help="also train a short federation per alpha")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--local-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--run-config", action="append", default=[], help="other run-config overrides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/label_skew"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="opacus")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")

    base = {**XRAY, "data-root": args.data, "image-size": args.image_size, "seed": args.seed,
            "num-server-rounds": args.rounds, "local-steps": args.local_steps, "batch-size": args.batch_size,
            "learning-rate-d": 3e-3, "learning-rate-g": 2e-4, "generator-ema": 0.99,
            **parse_config_args(args.run_config)}
    partitions = [("records", {"partition": "records"})] + [
        (f"dirichlet {alpha:g}", {"partition": "dirichlet", "partition-alpha": alpha,
                                  "partition-min-patients": args.min_patients}) for alpha in args.alpha]

    print(f"X-ray, 3 sites, seed {args.seed}, at least {args.min_patients} patients per Dirichlet site: "
          "patients and images per class")
    print("| partition | site | patients | images | NORMAL | PNEUMONIA |")
    print("|---|---|---|---|---|---|")
    for label, keys in partitions:
        run = resolve_run_config({**base, **keys, "run-dir": str(args.out / "counts")})
        print("\n".join(counts_rows(run, label)), flush=True)
    if not args.train:
        return

    print(f"\n{args.rounds} rounds x {args.local_steps} steps, batch {args.batch_size}, {args.image_size}x"
          f"{args.image_size}; other overrides {parse_config_args(args.run_config)}")
    print("| partition | TSTR bal. acc. | TSTR AUROC | max epsilon spent | seconds |")
    print("|---|---|---|---|---|", flush=True)
    for label, keys in partitions:
        run_dir = (args.out / "runs" / label.replace(" ", "-")).resolve()
        if run_dir.exists():
            shutil.rmtree(run_dir)  # the run's ledgers belong to this run only
        run = resolve_run_config({**base, **keys, "run-dir": str(run_dir)})
        start = time.time()
        try:
            bacc, auroc, spent = tstr(run, threads=args.threads)
        except ConfigError as refused:  # a site too small to train privately says so
            print(f"| {label} | refused: {refused} | | | {time.time() - start:.0f} |", flush=True)
            continue
        print(f"| {label} | {bacc:.3f} | {auroc:.3f} | {spent:.2f} | {time.time() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
