#!/usr/bin/env bash
# Re-resolve the dependencies in a throw-away environment and write the exact versions to
# requirements/constraints.txt (the file scripts/bootstrap.sh installs with). Run it after
# changing dependencies in pyproject.toml, then run the tests and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
"$tmp/venv/bin/python" -m pip install -q -e ".[test]"
{
  echo "# Exact versions of every dependency, tested together (Python 3.11, CPU build of torch)."
  echo "# scripts/bootstrap.sh installs with '-c requirements/constraints.txt', so a new machine"
  echo "# resolves this same set. After changing dependencies in pyproject.toml: bash scripts/lock.sh"
  "$tmp/venv/bin/python" -m pip freeze --exclude-editable | grep -v '^torch==' 
  echo "${TORCH_SPEC:-torch==2.13.0}"
} > requirements/constraints.txt
echo "wrote requirements/constraints.txt ($(grep -c '==' requirements/constraints.txt) pins)"
