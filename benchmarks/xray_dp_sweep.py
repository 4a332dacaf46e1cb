"""Tune the DP chest X-ray GAN quickly: the federation in one process, without Flower's engine.

Three simulated sites (the patient shares of ``--data``, 1|1|1 and a held-out quarter, as
``scripts/run_xray_federation.sh``) run :func:`simulations.inprocess.run_inprocess_federation`:
every round each site trains through the ClientApp's own code (its ledger, its charged
size release and DP class prior, the noise derived from what remains of ``--epsilon``),
then Flower's FedAvg arithmetic. Then the TSTR balanced accuracy / AUROC of the report's
classifier (two classifier seeds) trained on 300 synthetic images per class and tested on
the held-out patients. No Ray, no report, no export: about two minutes per configuration
on one core.

Every knob is a run-config key (``medgan_core.config.RunConfig``); the swept ones take
several values, anything else goes through ``--run-config`` as for ``medgan simulate``
(e.g. ``--run-config "privacy-unit='record'"``: the run's default for X-rays is
patient-level DP). The sites' training randomness is secret, as in a deployment, so
``--repeats`` reruns a configuration with fresh randomness (each in a fresh run directory,
so every repeat has the whole budget); it cannot be seeded.

    .venv/bin/python benchmarks/xray_dp_sweep.py --repeats 3 --learning-rate-d 2e-4 3e-3 --generator-ema 0 0.99

Prints one row per (configuration, repeat) and the mean per configuration; writes a grid
of synthetic images per run under ``--out`` (PNG) beside the run directories.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from flwr.common.config import parse_config_args

from medgan_core.config import RunConfig
from medgan_core.data.xray import load_xray_dataset
from medgan_core.generate import sample_per_class
from medgan_core.metrics.tstr import evaluate_classifier, train_classifier
from medgan_core.models.state import load_gan_state
from medgan_core.models import build_gan
from medgan_core.modalities.xray import split_xray_patients, xray_share_weights
from simulations.federation import resolve_run_config
from simulations.inprocess import run_inprocess_federation

XRAY = {"modality": "xray", "model": "dcgan2d", "site-records": "1|1|1", "holdout-records": "1"}


def run_once(run: RunConfig, *, threads: int) -> tuple[float, float, np.ndarray, dict[str, float]]:
    """Train ``run`` in process; returns TSTR balanced accuracy, AUROC, a few images, epsilon per site."""
    result = run_inprocess_federation(run, run_id="xray-dp-sweep", threads=threads)
    gan = build_gan(run)
    final: dict[str, torch.Tensor | np.ndarray] = dict(result.weights)
    load_gan_state(gan, final)
    gan.generator.eval()
    synthetic, synthetic_labels = sample_per_class(gan, 300, seed=0)
    synthetic = np.clip((synthetic + 1) / 2, 0, 1)
    images, labels, patients, _ = load_xray_dataset(run.data_root, size=run.image_size)
    # The hold-out follows the sites' groups (a public share, if any, comes after it).
    holdout = split_xray_patients(patients, weights=xray_share_weights(run), seed=run.seed)[len(run.site_record_groups())]
    test_x = torch.from_numpy(images[holdout]).float().unsqueeze(1)
    test_y = torch.from_numpy(np.asarray(labels)[holdout]).long()
    scores = []
    for classifier_seed in (0, 1):
        model = train_classifier(torch.from_numpy(synthetic).float(),
                                 torch.from_numpy(synthetic_labels).long(), num_classes=2, epochs=8,
                                 seed=classifier_seed)
        outcome = evaluate_classifier(model, test_x, test_y)
        scores.append((outcome.balanced_accuracy, outcome.auroc))
    return (float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])), synthetic[::75][:8],
            result.epsilon)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/xray/kermany", help="data-root")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="num-server-rounds")
    parser.add_argument("--local-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epsilon", type=float, default=10.0, help="target-epsilon per site; 0 = no DP (control)")
    parser.add_argument("--learning-rate-g", type=float, default=2e-4)
    parser.add_argument("--learning-rate-d", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--generator-ema", type=float, nargs="+", default=[0.99])
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration (fresh secret randomness)")
    parser.add_argument("--run-config", action="append", default=[], help="other run-config overrides")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/xray_dp_sweep"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="opacus")

    base = {**XRAY, "data-root": args.data, "image-size": args.image_size, "num-server-rounds": args.rounds,
            "local-steps": args.local_steps, "batch-size": args.batch_size, "learning-rate-g": args.learning_rate_g,
            "dp-enabled": args.epsilon > 0, **({"target-epsilon": args.epsilon} if args.epsilon > 0 else {}),
            **parse_config_args(args.run_config)}
    print(f"epsilon {args.epsilon or 'off'} per site, {args.rounds} rounds x {args.local_steps} steps, "
          f"batch {args.batch_size}; other overrides {parse_config_args(args.run_config)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| lr D | G average | repeat | TSTR bal. acc. | TSTR AUROC | max epsilon spent | seconds |")
    print("|---|---|---|---|---|---|---|", flush=True)
    summary: dict[tuple, list[float]] = {}
    for lr_d, ema in itertools.product(args.learning_rate_d, args.generator_ema):
        for repeat in range(args.repeats):
            label = f"lrd{lr_d:g}_ema{ema:g}_repeat{repeat}"
            run_dir = (args.out / "runs" / label).resolve()
            if run_dir.exists():
                shutil.rmtree(run_dir)  # the run's ledgers belong to this run only
            run = resolve_run_config({**base, "learning-rate-d": lr_d, "generator-ema": ema,
                                      "run-dir": str(run_dir)})
            start = time.time()
            bacc, auroc, grid, spent = run_once(run, threads=args.threads)
            summary.setdefault((lr_d, ema), []).append(bacc)
            print(f"| {lr_d:g} | {ema:g} | {repeat} | {bacc:.3f} | {auroc:.3f} | {max(spent.values()):.2f} | "
                  f"{time.time() - start:.0f} |", flush=True)
            _save_grid(grid, args.out / f"{label}.png")
    print("\nmean TSTR balanced accuracy per configuration:")
    for (lr_d, ema), values in summary.items():
        print(f"  lr D {lr_d:g}, G average {ema:g}: {np.mean(values):.3f} over {len(values)} repeats")


def _save_grid(images: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(images), figsize=(1.5 * len(images), 1.7))
    for axis, image in zip(np.atleast_1d(axes), images):
        axis.imshow(image, cmap="gray", vmin=0, vmax=1)
        axis.axis("off")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    main()
