"""``medgan audit``: membership-inference audit of a finished run, no retraining (``simulations.audit``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medgan_cli._common import at_least_one, load_run

__all__ = ["VIOLATION_EXIT", "audit", "register"]

#: Exit status when an empirical epsilon lower bound exceeds the accountant's epsilon.
VIOLATION_EXIT = 3


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("audit", help="membership-inference audit of an existing run (no retraining)")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--attacks", nargs="+", help="attack names (default: the run's audit-attacks)")
    parser.add_argument("--n-synthetic", type=int, default=2000, help="samples drawn from the generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=audit)


def audit(args: argparse.Namespace) -> int:
    at_least_one("--n-synthetic", args.n_synthetic, "samples drawn from the generator")
    load_run(args.run_dir, checkpoint=True)
    from simulations.audit import audit_run, format_table

    report = audit_run(args.run_dir, attacks=args.attacks, n_synthetic=args.n_synthetic, seed=args.seed)
    print(format_table(report))
    print(f"\nwritten: {Path(args.run_dir) / 'audit' / 'audit.json'}, " + ", ".join(report["figures"]))
    if report["violation"]:
        print("VIOLATION: an empirical epsilon lower bound exceeds the accountant's epsilon; "
              "this indicates a bug in accounting or the DP implementation", file=sys.stderr)
        return VIOLATION_EXIT
    return 0
