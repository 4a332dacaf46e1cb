"""``medgan privacy noise | epsilon | ledger``: the calculator and ledger tool of :mod:`privacy.calculator`."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    from privacy.calculator import add_arguments, main

    parser = sub.add_parser("privacy", help="noise multiplier <-> epsilon calculator, privacy ledgers")
    add_arguments(parser)
    parser.set_defaults(func=main)
