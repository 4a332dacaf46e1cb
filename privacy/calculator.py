"""Privacy calculator and ledger tool: the ``medgan privacy ...`` subcommands.

    medgan privacy noise   --dataset-size 4000 --batch-size 64 --rounds 5 --local-steps 200 --epsilon 10
    medgan privacy epsilon --dataset-size 4000 --batch-size 64 --rounds 5 --local-steps 200 --noise-multiplier 0.8
    medgan privacy ledger show   runs/ecg/sites/site-0/privacy_ledger.json   (``ledger PATH`` is the same)
    medgan privacy ledger verify runs/ecg/sites/site-0/privacy_ledger.json
    medgan privacy ledger init   site/privacy_ledger.json --target-epsilon 3 --target-delta 1e-5 [--force]

``noise`` and ``epsilon`` use RDP, the accountant every ledger records and enforces with;
``--accountant gdp|prv`` shows an optimistic approximation beside the RDP number, labelled
as such. ``show`` and ``verify`` read a ledger without writing anything. An error is one
line naming the file and the fix, and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from privacy.accounting import (
    ACCOUNTANT,
    OPTIMISTIC_ACCOUNTANTS,
    epsilon_from_history,
    joint_noise_multiplier,
    noise_multiplier_for_target,
    per_mechanism_noise_multiplier,
)
from privacy.errors import LedgerBusy
from privacy.ledger import PrivacyLedger

__all__ = ["PRIVACY_UNIT", "add_arguments", "main"]

PRIVACY_UNIT = "per record (one beat or one image)"
_UNIT_WORDS = {"record": PRIVACY_UNIT, "patient": "per patient (all of a person's records)"}


def _unit(ledger: PrivacyLedger) -> str:
    """The unit the ledger's spend is guaranteed for (patient only if every release was)."""
    return _UNIT_WORDS[ledger.unit]
LEDGER_ACTIONS = ("show", "verify", "init")
_OPTIMISTIC_LABEL = ("optimistic approximation: {name} can under-report epsilon; site ledgers record and enforce "
                     "with rdp (epsilon_rdp)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="privacy_command", required=True)
    for name in ("noise", "epsilon"):
        p = sub.add_parser(name)
        p.add_argument("--dataset-size", type=int, required=True, help="records at the site")
        p.add_argument("--batch-size", type=int, required=True, help="expected Poisson batch size")
        p.add_argument("--rounds", type=int, required=True)
        p.add_argument("--local-steps", type=int, required=True, help="DP-SGD steps per round")
        p.add_argument("--delta", type=float, default=1e-5)
        p.add_argument("--mechanisms", type=int, default=1,
                       help="Gaussian mechanisms per step on the same sample (2 for a VAE-GAN: D's and the "
                            "encoder/reconstruction step); accounted as one at sigma / sqrt(mechanisms)")
        p.add_argument("--accountant", default=ACCOUNTANT, choices=(ACCOUNTANT, *OPTIMISTIC_ACCOUNTANTS),
                       help="rdp (default; what ledgers use) or an optimistic approximation, shown labelled")
    sub.choices["noise"].add_argument("--epsilon", type=float, required=True, help="target epsilon")
    sub.choices["epsilon"].add_argument("--noise-multiplier", type=float, required=True)
    ledger = sub.add_parser("ledger", help="show, verify or create a site's privacy ledger",
                            description="show PATH (or just PATH): recomputed epsilon, verified chain, releases; "
                                        "verify PATH: exit 1 on a damaged ledger; init PATH: create a ledger")
    ledger.add_argument("words", nargs="+", metavar="[show|verify|init] PATH")
    ledger.add_argument("--target-epsilon", type=float, help="init: the site's budget epsilon")
    ledger.add_argument("--target-delta", type=float, help="init: the site's budget delta")
    ledger.add_argument("--force", action="store_true",
                        help="init: start over although site state shows an earlier ledger existed")


def main(args: argparse.Namespace) -> int:
    """Run one ``medgan privacy`` subcommand.

    Raises:
        SystemExit: with a one-line message (exit status 1) on any invalid input or ledger.
    """
    command = f"medgan privacy {args.privacy_command}"
    try:
        if args.privacy_command == "ledger":
            action, path = _ledger_words(args.words)
            command += f" {action}"
            return _LEDGER_COMMANDS[action](args, path)
        return _calculate(args)
    except (ValueError, LedgerBusy) as error:
        raise SystemExit(f"{command}: {error}") from None


def _ledger_words(words: list[str]) -> tuple[str, str]:
    if len(words) == 1:
        return "show", words[0]  # `medgan privacy ledger PATH`, as before
    if len(words) == 2 and words[0] in LEDGER_ACTIONS:
        return words[0], words[1]
    raise ValueError(f"expected [{'|'.join(LEDGER_ACTIONS)}] PATH, got {' '.join(words)!r}")


def _show(args: argparse.Namespace, path: str) -> int:
    ledger = PrivacyLedger.read(path)
    spent = ledger.epsilon_spent()
    print(json.dumps({
        "ledger": path,
        "summary": f"epsilon {spent:.4f} of {ledger.budget_epsilon:g} at delta {ledger.target_delta:g}, "
                   f"{_unit(ledger)}",
        "privacy_unit": _unit(ledger),
        "accountant": ledger.accountant,
        "epsilon_recomputed": spent,
        "epsilon_recorded": ledger.entries[-1].epsilon_after if ledger.entries else 0.0,
        "target_epsilon": ledger.budget_epsilon,
        "delta": ledger.target_delta,
        "chain": _chain_status(ledger),
        "origin": ledger.origin,
        "releases": len(ledger.entries),
        "steps": sum(e.steps for e in ledger.entries),
        "pending": [{"run_id": e.run_id, "server_round": e.server_round, "purpose": e.purpose,
                     "planned_steps": e.planned_steps, "epsilon_after": e.epsilon_after} for e in ledger.pending],
        "entries": [{"run_id": e.run_id, "server_round": e.server_round, "purpose": e.purpose, "status": e.status,
                     "noise_multiplier": e.noise_multiplier, "sample_rate": e.sample_rate, "steps": e.steps,
                     "epsilon_after": e.epsilon_after, "unit": e.unit} for e in ledger.entries],
    }, indent=2))
    return 0


def _chain_status(ledger: PrivacyLedger) -> str:
    if ledger.version_on_disk == 1:
        return "version 1: fields valid, no hash chain yet (upgraded to version 2 on the next write)"
    return f"verified ({len(ledger.entries)} entries, head {ledger.head_hash[:16]})"


def _verify(args: argparse.Namespace, path: str) -> int:
    ledger = PrivacyLedger.read(path)
    pending = f", {len(ledger.pending)} pending" if ledger.pending else ""
    print(f"{path}: ok, {_chain_status(ledger)}{pending}; epsilon {ledger.epsilon_spent():.4f} of "
          f"{ledger.budget_epsilon:g} at delta {ledger.target_delta:g}, {_unit(ledger)}")
    return 0


def _init(args: argparse.Namespace, path: str) -> int:
    if args.target_epsilon is None or args.target_delta is None:
        raise ValueError(f"{path}: init needs --target-epsilon and --target-delta (the budget the data owner "
                         "agreed to)")
    ledger = PrivacyLedger.init(path, target_epsilon=args.target_epsilon, target_delta=args.target_delta,
                                force=args.force)
    print(f"{path}: new privacy ledger, budget epsilon {ledger.budget_epsilon:g} at delta "
          f"{ledger.target_delta:g}, {PRIVACY_UNIT}; origin: {ledger.origin}")
    return 0


_LEDGER_COMMANDS = {"show": _show, "verify": _verify, "init": _init}


def _calculate(args: argparse.Namespace) -> int:
    if args.dataset_size <= 0 or args.batch_size <= 0 or args.rounds <= 0 or args.local_steps <= 0:
        raise ValueError("--dataset-size, --batch-size, --rounds and --local-steps must be positive")
    sample_rate = args.batch_size / args.dataset_size
    steps = args.rounds * args.local_steps
    mechanisms = args.mechanisms
    if args.privacy_command == "noise":
        # Calibrate the joint multiplier; each mechanism then adds sqrt(mechanisms) times it.
        sigma = noise_multiplier_for_target(target_epsilon=args.epsilon, delta=args.delta, sample_rate=sample_rate,
                                            steps=steps, accountant=args.accountant)
        key = "epsilon_at_that_noise"
        result: dict[str, float | str] = {
            "noise_multiplier": per_mechanism_noise_multiplier(sigma, mechanisms=mechanisms)}
    else:
        sigma = joint_noise_multiplier(args.noise_multiplier, mechanisms=mechanisms)
        key, result = "epsilon", {}
    if mechanisms != 1:
        result["mechanisms"] = mechanisms
        result["joint_noise_multiplier"] = sigma
    result[key] = epsilon_from_history([(sigma, sample_rate, steps)], delta=args.delta, accountant=args.accountant)
    if args.accountant != ACCOUNTANT:
        result["accountant"] = args.accountant
        result["label"] = _OPTIMISTIC_LABEL.format(name=args.accountant.upper())
        result["epsilon_rdp"] = epsilon_from_history([(sigma, sample_rate, steps)], delta=args.delta)
        print(f"note: {args.accountant} is an {result['label']}", file=sys.stderr)
    print(json.dumps({"sample_rate": sample_rate, "steps": steps, "delta": args.delta, **result}, indent=2))
    return 0
