"""Patient-level DP: how many patients a site needs, as a Markdown table for the README.

For each site size, the noise multiplier that reaches the target epsilon with patient-level
DP-SGD (``m`` expected patients per step, ``q = m / P``) and the noise-to-signal ratio
``sigma / m`` against the feasibility limit of ``privacy/feasibility.py``. Defaults: the
run's defaults (``RunConfig()``: ``num-server-rounds`` x ``local-steps``, ``m`` =
``patients-per-step``) at epsilon 10, delta 1e-5. Pure accounting (Opacus's RDP accountant,
``privacy/accounting.py``): a few seconds per row, no data, no training.

    .venv/bin/python benchmarks/patient_dp_feasibility.py --patients 20 50 100 300 1000 3000 10000
"""

from __future__ import annotations

import argparse

from medgan_core.config import RunConfig
from privacy.feasibility import MAX_NOISE_TO_SIGNAL, feasibility_table, format_feasibility_table


def main() -> None:
    run = RunConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, nargs="+", default=[20, 50, 100, 300, 1000, 3000, 10000])
    parser.add_argument("--patients-per-step", type=int, default=run.patients_per_step, help="m, expected patients per step")
    parser.add_argument("--local-steps", type=int, default=run.local_steps)
    parser.add_argument("--rounds", type=int, default=run.num_server_rounds)
    parser.add_argument("--epsilon", type=float, default=run.target_epsilon)
    parser.add_argument("--delta", type=float, default=run.target_delta)
    args = parser.parse_args()
    rows = feasibility_table(patient_counts=args.patients, expected_patients_per_step=args.patients_per_step,
                             local_steps=args.local_steps, rounds=args.rounds, target_epsilon=args.epsilon,
                             delta=args.delta)
    print(f"Patient-level DP at epsilon {args.epsilon:g} (delta {args.delta:g}), {args.rounds} x "
          f"{args.local_steps} steps, m = {args.patients_per_step}; feasible when sigma / m <= "
          f"{MAX_NOISE_TO_SIGNAL:g}\n")
    print(format_feasibility_table(rows))
    print()
    for row in rows:
        print(f"- {row.verdict}")


if __name__ == "__main__":
    main()
