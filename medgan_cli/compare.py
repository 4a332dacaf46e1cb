"""``medgan compare``: privacy-utility table and plot over finished runs (``simulations.compare``)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["compare", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="privacy-utility table and plot over finished runs (their report.json)")
    parser.add_argument("--run-dir", action="append", required=True, help="a finished run; repeat for each run")
    parser.add_argument("--out", default="runs/compare", help="where privacy_utility.md/.csv/.png go")
    parser.set_defaults(func=compare)


def compare(args: argparse.Namespace) -> int:
    from simulations.compare import compare_runs

    out = Path(args.out)
    compare_runs(args.run_dir, args.out)
    print((out / "privacy_utility.md").read_text())
    print(f"written: {out / 'privacy_utility.png'}, {out / 'privacy_utility.csv'}")
    return 0
