"""``medgan generate``: N synthetic samples per class from a run's generator (WFDB for ECG, DICOM for X-ray)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medgan_cli._common import at_least_one, check_out, load_run, write_staged

__all__ = ["generate", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("generate", help="write N synthetic samples per class from a run's generator")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--n", type=int, default=100, help="samples per class")
    parser.add_argument("--out", help="output directory (default RUN_DIR/generated)")
    parser.add_argument("--fs", type=int, default=360, help="ECG: sampling rate of the written records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto",
                        help="where the generator runs: auto (CUDA when PyTorch sees a GPU, else CPU), cpu, cuda, "
                             "cuda:N (default auto)")
    parser.set_defaults(func=generate)


def _check_fs(fs: int) -> None:
    from medgan_core.data.ecg import EcgConfig
    from medgan_core.errors import ConfigError

    low, high = EcgConfig().fs_range
    if not low <= fs <= high:
        raise ConfigError(f"--fs {fs}: must lie in {low:g}..{high:g} Hz (the sampling rate of the written "
                          "ECG records; 360 for MIT-BIH)")


def generate(args: argparse.Namespace) -> int:
    out = Path(args.out or Path(args.run_dir) / "generated")
    at_least_one("--n", args.n, "synthetic samples per class")
    _check_fs(args.fs)
    from medgan_core.device import resolve_device

    device = resolve_device(args.device, where="", key="--device")
    run = load_run(args.run_dir, checkpoint=True)
    check_out(out)
    from medgan_core.generate import load_run_gan, sample_per_class
    from medgan_core.modalities import get_modality

    gan, run = load_run_gan(args.run_dir, run=run, device=device)  # config.json is read once, by load_run
    samples, labels = sample_per_class(gan, args.n, seed=args.seed)
    modality = get_modality(run.modality)
    paths = write_staged(out, lambda staging: modality.export(samples, labels, staging, fs=args.fs))
    print(json.dumps({"written": [str(p) for p in paths][:20], "per_class": args.n, "out": str(out)}, indent=2))
    return 0
