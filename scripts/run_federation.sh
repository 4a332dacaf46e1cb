#!/usr/bin/env bash
# The main job: a federation of simulated hospitals on the bundled real ECG data,
# ending in a report (runs/ecg/report.md). Extra arguments go to `medgan simulate`,
# e.g. --run-config "num-server-rounds=2" --run-dir runs/try.
# Round 1 starts from the public pretraining in pretrained/ecg-cpsc2021 (CPSC 2021 records,
# no site holds them; no privacy cost; docs/privacy.md "Public pretraining"); add
# --run-config "pretrained=''" to start from random weights instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medgan simulate --overwrite --run-config "pretrained='pretrained/ecg-cpsc2021'" "$@"
