#!/usr/bin/env bash
# 12-lead ECG across three institutions (PhysioNet/CinC 2021: Georgia, Chapman-Shaoxing,
# PTB-XL), one simulated site each, through Flower's simulation engine, ending in a report
# (runs/ecg12/report.md) and a 12-lead WFDB export. 20% of each institution's patients are
# held out (seeded). The DP unit is one beat: ~15 patients per site cannot afford
# patient-level DP (benchmarks/patient_dp_feasibility.py). Extra arguments go to
# `medgan simulate`, e.g. --run-config "num-server-rounds=4".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medgan simulate --overwrite --run-dir runs/ecg12 \
  --run-config "modality='ecg12' data-root='data/ecg12/cinc2021' site-records='E|JS|HR' holdout-records='0.2' privacy-unit='record' num-server-rounds=2 local-steps=40 batch-size=32 min-nodes=3" "$@"
