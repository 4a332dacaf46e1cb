"""Privacy calculator: noise multiplier from a target (epsilon, delta), and the reverse.

    medgan privacy noise   --dataset-size 4000 --batch-size 64 --rounds 5 --local-steps 200 --epsilon 10
    medgan privacy epsilon --dataset-size 4000 --batch-size 64 --rounds 5 --local-steps 200 --noise-multiplier 0.8
    medgan privacy ledger  runs/ecg/sites/site-0/privacy_ledger.json

All three work on existing runs without retraining; ``ledger`` recomputes a site's
epsilon from its on-disk history.
"""

from __future__ import annotations

import argparse
import json

from privacy.accounting import epsilon_from_history, noise_multiplier_for_target

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="privacy_command", required=True)
    for name in ("noise", "epsilon"):
        p = sub.add_parser(name)
        p.add_argument("--dataset-size", type=int, required=True, help="records at the site")
        p.add_argument("--batch-size", type=int, required=True, help="expected Poisson batch size")
        p.add_argument("--rounds", type=int, required=True)
        p.add_argument("--local-steps", type=int, required=True, help="DP-SGD steps per round")
        p.add_argument("--delta", type=float, default=1e-5)
        p.add_argument("--accountant", default="rdp", choices=("rdp", "prv", "gdp"))
    sub.choices["noise"].add_argument("--epsilon", type=float, required=True, help="target epsilon")
    sub.choices["epsilon"].add_argument("--noise-multiplier", type=float, required=True)
    ledger = sub.add_parser("ledger")
    ledger.add_argument("path", help="a site's privacy_ledger.json")


def main(args: argparse.Namespace) -> int:
    if args.privacy_command == "ledger":
        raw = json.loads(open(args.path).read())
        history = [(e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in raw["entries"]]
        eps = epsilon_from_history(history, delta=raw["target_delta"], accountant=raw.get("accountant", "rdp"))
        print(json.dumps({"ledger": args.path, "epsilon_recomputed": eps, "epsilon_recorded": raw.get("epsilon_spent"),
                          "target_epsilon": raw["target_epsilon"], "delta": raw["target_delta"],
                          "releases": len(history), "steps": sum(h[2] for h in history)}, indent=2))
        return 0
    sample_rate = args.batch_size / args.dataset_size
    steps = args.rounds * args.local_steps
    if args.privacy_command == "noise":
        sigma = noise_multiplier_for_target(target_epsilon=args.epsilon, delta=args.delta, sample_rate=sample_rate,
                                            steps=steps, accountant=args.accountant)
        eps = epsilon_from_history([(sigma, sample_rate, steps)], delta=args.delta, accountant=args.accountant)
        result = {"noise_multiplier": sigma, "epsilon_at_that_noise": eps}
    else:
        sigma = args.noise_multiplier
        result = {"epsilon": epsilon_from_history([(sigma, sample_rate, steps)], delta=args.delta,
                                                  accountant=args.accountant)}
    print(json.dumps({"sample_rate": sample_rate, "steps": steps, "delta": args.delta, **result}, indent=2))
    return 0
