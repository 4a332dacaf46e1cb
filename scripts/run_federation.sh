#!/usr/bin/env bash
# The main job: a federation of simulated hospitals on the bundled real ECG data,
# ending in a report (runs/ecg/report.md). Extra arguments go to `medgan simulate`,
# e.g. --run-config "num-server-rounds=2" --run-dir runs/try.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medgan simulate --overwrite "$@"
