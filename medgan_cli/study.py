"""``medgan study``: GAN variants x epsilon x centralized/local/federated (``simulations.study``)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from medgan_cli._common import parse_overrides

__all__ = ["register", "study"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("study", help="GAN variants x epsilon {1,3,10,no DP} x centralized/local/federated")
    parser.add_argument("--out", default="runs/study", help="output directory (cells, study.md/.csv/.json/.png)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke budget: 2 rounds x 25 steps per data holder, 32x32 images")
    parser.add_argument("--modality", help="a registered modality (ecg, xray, ...) on its bundled data; default: the "
                                           "run config's (ecg)")
    parser.add_argument("--models", help="comma-separated registered GAN variants that fit the modality "
                                         "(default: all of them; see `medgan models`)")
    parser.add_argument("--epsilons", help="comma-separated targets, inf = no DP (default 1,3,10,inf)")
    parser.add_argument("--settings", help="comma-separated subset of centralized,local,federated")
    parser.add_argument("--rounds", type=int, help="rounds per data holder (default 3; --quick 2)")
    parser.add_argument("--local-steps", type=int, help="local steps per round (default 100; --quick 25)")
    parser.add_argument("--run-config", action="append", help="run-config overrides, as for simulate")
    parser.set_defaults(func=study)


def _epsilon(text: str) -> float:
    """One ``--epsilons`` entry: a positive number, or inf/none/nodp for no DP."""
    from medgan_core.errors import ConfigError

    if text.strip().lower() in ("inf", "none", "nodp"):
        return math.inf
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--epsilons {text.strip()!r} is not a number; give comma-separated targets "
                          "such as 1,3,10,inf (inf = no DP)") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--run-config`` over ``--modality``'s bundled simulation data (its sites and hold-out)."""
    from medgan_core.modalities import get_modality

    given = parse_overrides(args.run_config or [])
    if not args.modality:
        return given
    return {**get_modality(args.modality).bundled_simulation, "modality": args.modality, **given}


def study(args: argparse.Namespace) -> int:
    from simulations.study import StudyConfig, run_study

    changes: dict[str, Any] = {"out_dir": Path(args.out), "overrides": _overrides(args)}
    if args.models:
        changes["models"] = tuple(args.models.split(","))
    if args.epsilons:
        changes["epsilons"] = tuple(_epsilon(e) for e in args.epsilons.split(","))
    if args.settings:
        changes["settings"] = tuple(args.settings.split(","))
    for name in ("rounds", "local_steps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    config = StudyConfig.quick(**changes) if args.quick else StudyConfig(**changes)
    try:
        run_study(config)
    except ValueError as error:
        raise SystemExit(f"medgan study: {error}") from error
    print((config.out_dir / "study.md").read_text())
    return 0
