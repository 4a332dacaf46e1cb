#!/usr/bin/env bash
# The test suite: seeded, CPU-only, offline. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export FLWR_TELEMETRY_ENABLED=0
exec .venv/bin/python -m pytest "$@"
