"""Tune the DP chest X-ray GAN quickly: the federation's arithmetic in one process.

Three sites (a seeded patient split of ``--data``, shares 1|1|1 and a held-out quarter, as
``scripts/run_xray_federation.sh``), each trained by ``train_local_gan`` under DP-SGD with
the noise for ``--epsilon`` over all rounds, FedAvg weighted by site size, then the TSTR
balanced accuracy / AUROC of the report's classifier (two classifier seeds) trained on
300 synthetic images per class and tested on the held-out patients. No Flower, no ledger,
no export: it measures the training recipe, not the deployment, and takes about two
minutes per configuration on one core. Each ``--seed`` changes the training randomness
(batches, DP noise, latents), not the split.

    .venv/bin/python benchmarks/xray_dp_sweep.py --seeds 0 1 2 --discriminator-width 8 16 \\
        --learning-rate-d 3e-3 --generator-ema 0.99

Prints one row per (configuration, seed) and the mean per configuration; writes a grid
of synthetic images per run under ``--out`` (PNG).
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from medgan_core.data.xray import load_xray_dataset
from medgan_core.generate import sample_per_class
from medgan_core.metrics.tstr import evaluate_classifier, train_classifier
from medgan_core.models.registry import create_gan
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.site import split_xray_patients
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from privacy.accounting import noise_multiplier_for_target


def run_once(images, labels, groups, *, width: int, lr_d: float, ema: float, seed: int, args) -> tuple[float, float, np.ndarray]:
    def build():
        torch.manual_seed(args.init_seed)  # the same initial weights for every configuration's seeds
        return create_gan("dcgan2d", latent_dim=32, num_classes=2, image_size=args.image_size,
                          discriminator_width=width)

    state = gan_state(build())
    sites = [(torch.from_numpy(images[g] * 2 - 1).float().unsqueeze(1), torch.from_numpy(labels[g]).long())
             for g in groups[:-1]]
    for server_round in range(1, args.rounds + 1):
        updates = []
        for index, (x, y) in enumerate(sites):
            gan = build()
            load_gan_state(gan, state)
            dp = None
            if args.epsilon > 0:
                sigma = noise_multiplier_for_target(target_epsilon=args.epsilon, delta=1e-5,
                                                    sample_rate=args.batch_size / len(x),
                                                    steps=args.rounds * args.local_steps)
                dp = DPSettings(noise_multiplier=sigma, max_grad_norm=1.0)
            config = LocalTrainingConfig(local_steps=args.local_steps, batch_size=args.batch_size,
                                         learning_rate_d=lr_d, learning_rate_g=args.learning_rate_g,
                                         seed=seed * 7919 + server_round * 100 + index,
                                         mode_seeking_weight=0.1, generator_ema=ema)
            # The class mix without the label-prior noise: a tuning shortcut, not a release.
            prior = torch.bincount(y, minlength=2).double() / len(y)
            train_local_gan(gan=gan, beats=x, labels=y, config=config, dp=dp, fake_label_prior=prior)
            updates.append((gan_state(gan), len(x)))
        total = sum(n for _, n in updates)
        state = {k: sum(u[k].float() * n for u, n in updates) / total for k in updates[0][0]}
    gan = build()
    load_gan_state(gan, state)
    gan.generator.eval()
    synthetic, synthetic_labels = sample_per_class(gan, 300, seed=0)
    synthetic = np.clip((synthetic + 1) / 2, 0, 1)
    holdout = groups[-1]
    test_x = torch.from_numpy(images[holdout]).float().unsqueeze(1)
    test_y = torch.from_numpy(labels[holdout]).long()
    scores = []
    for classifier_seed in (0, 1):
        model = train_classifier(torch.from_numpy(synthetic).float().unsqueeze(1),
                                 torch.from_numpy(synthetic_labels).long(), num_classes=2, epochs=8,
                                 seed=classifier_seed)
        result = evaluate_classifier(model, test_x, test_y)
        scores.append((result.balanced_accuracy, result.auroc))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])), synthetic[::75][:8]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/xray/kermany")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--local-steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epsilon", type=float, default=10.0, help="per site; 0 = no DP (control)")
    parser.add_argument("--learning-rate-g", type=float, default=2e-4)
    parser.add_argument("--learning-rate-d", type=float, nargs="+", default=[3e-3])
    parser.add_argument("--discriminator-width", type=int, nargs="+", default=[16])
    parser.add_argument("--generator-ema", type=float, nargs="+", default=[0.99])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--init-seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/xray_dp_sweep"))
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="opacus")
    torch.set_num_threads(args.threads)

    images, labels, patients, _ = load_xray_dataset(args.data, size=args.image_size)
    labels = np.asarray(labels)
    groups = split_xray_patients(patients, weights=(1, 1, 1, 1), seed=42)
    print(f"sites: {[len(g) for g in groups[:-1]]} images; held out: {len(groups[-1])}; "
          f"epsilon {args.epsilon or 'off'}, {args.rounds} rounds x {args.local_steps} steps, batch {args.batch_size}",
          flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print("| D width | lr D | G average | seed | TSTR bal. acc. | TSTR AUROC | seconds |")
    print("|---|---|---|---|---|---|---|", flush=True)
    summary: dict[tuple, list[float]] = {}
    for width, lr_d, ema in itertools.product(args.discriminator_width, args.learning_rate_d, args.generator_ema):
        for seed in args.seeds:
            start = time.time()
            bacc, auroc, grid = run_once(images, labels, groups, width=width, lr_d=lr_d, ema=ema, seed=seed, args=args)
            summary.setdefault((width, lr_d, ema), []).append(bacc)
            print(f"| {width} | {lr_d:g} | {ema:g} | {seed} | {bacc:.3f} | {auroc:.3f} | {time.time() - start:.0f} |",
                  flush=True)
            _save_grid(grid, args.out / f"w{width}_lrd{lr_d:g}_ema{ema:g}_seed{seed}.png")
    print("\nmean TSTR balanced accuracy per configuration:")
    for (width, lr_d, ema), values in summary.items():
        print(f"  width {width}, lr D {lr_d:g}, G average {ema:g}: {np.mean(values):.3f} over {len(values)} seeds")


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
