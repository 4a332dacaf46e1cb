"""``medgan``: the command line for researchers, coordinators and hospital IT.

    medgan simulate [--run-config "k=v ..."]   federation of simulated hospitals + report
    medgan status   --run-dir DIR              rounds, epsilon per site, refusals of a run
    medgan report   --run-dir DIR              recompute a run's report from its artifacts
    medgan study    [--quick]                  GAN variant x epsilon x setting table + plot (ECG)
    medgan compare  --run-dir DIR ...          privacy-utility table over finished runs
    medgan generate --run-dir DIR --n N        N synthetic samples per class (WFDB for ECG)
    medgan audit    --run-dir DIR              membership-inference audit of a run (no retraining)
    medgan explain  --run-dir DIR              SHAP, LRP, LIME attributions of its discriminator and classifier
    medgan models   [--json]                   registered GAN variants, their sizes, what sees real data
    medgan pretrain --out DIR                  public pretraining of G and D (run-config pretrained=DIR)
    medgan privacy  ...                        noise multiplier <-> epsilon calculator, ledgers
    medgan certs | coordinator | site ...      real deployment (docs/deployment.md)
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from medgan_cli import audit, compare, deploy, explain, generate, models, pretrain, privacy, simulate, study
from medgan_cli._common import setup_logging

__all__ = ["COMMAND_GROUPS", "build_parser", "main"]

#: The command groups, in the order ``medgan --help`` lists them; each module's
#: ``register(subparsers)`` adds its sub-commands with ``func`` set to the command.
COMMAND_GROUPS: tuple[ModuleType, ...] = (simulate, study, compare, generate, audit, explain, models, pretrain,
                                          privacy, deploy)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from medgan_core.errors import ConfigError

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        return args.func(args)
    except ConfigError as error:
        # Configuration and input the user must fix: one line naming it, not a traceback.
        raise SystemExit(f"medgan {args.command}: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
