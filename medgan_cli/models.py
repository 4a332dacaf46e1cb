"""``medgan models``: every registered GAN variant, the modalities it applies to, its size and
what touches real data (:mod:`medgan_core.models.catalog`)."""

from __future__ import annotations

import argparse
import dataclasses
import json

__all__ = ["models", "register"]

_HEADER = ("model", "modality", "kind", "built with", "G params", "D params", "E params", "loss",
           "touches real data (DP)")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="registered GAN variants: modalities, parameter counts, what sees real data")
    parser.add_argument("--json", action="store_true", help="one JSON object per (variant, modality), as a list")
    parser.set_defaults(func=models)


def models(args: argparse.Namespace) -> int:
    from medgan_core.models.catalog import variant_rows

    rows = variant_rows()
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
        return 0
    cells = [_HEADER] + [
        (row.model, row.modality, row.sample_kind,
         " ".join(f"{k}={v}" for k, v in row.model_kwargs.items()) or "-",
         f"{row.generator_parameters:,}", f"{row.discriminator_parameters:,}",
         f"{row.encoder_parameters:,}" if row.encoder_parameters else "-", row.loss,
         ", ".join(row.touches_real_data))
        for row in rows
    ]
    print("| " + " | ".join(cells[0]) + " |")
    print("|" + "---|" * len(_HEADER))
    for line in cells[1:]:
        print("| " + " | ".join(line) + " |")
    print("\nCounts are for a run with the modality's defaults; they scale with `built with` "
          "(ecg12: `channels` = the run's `leads`, 12 by default; xray: `image-size`).")
    return 0
