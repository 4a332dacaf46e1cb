#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv (idempotent, fast when
# nothing changed). PyTorch is installed as the CPU build first, so that the project's
# plain "torch" requirement never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing PyTorch (CPU build): ${TORCH_SPEC:-torch==2.13.0}" >&2
  # TORCH_SPEC/TORCH_INDEX let a site pick another build, e.g.
  # TORCH_INDEX=https://download.pytorch.org/whl/cpu where PyPI's default is a CUDA build.
  python -m pip install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "${TORCH_SPEC:-torch==2.13.0}"
fi
stamp=.venv/.medgan-installed
want=$(cat pyproject.toml requirements/constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the project and its dependencies" >&2
  # The exact versions tested together (requirements/constraints.txt), so every new
  # machine resolves the same set; a failed install stops here instead of half-working.
  # uv (pinned in the constraints, installed into .venv by pip) resolves and installs the
  # same pinned set several times faster than pip; MEDGAN_INSTALLER=pip, or a uv that
  # fails (e.g. behind a package mirror only pip is configured for), falls back to pip.
  installed=""
  if [ "${MEDGAN_INSTALLER:-uv}" = "uv" ]; then
    if python -m pip install -q -c requirements/constraints.txt uv 2>&1 | { grep -v "^WARNING: Location" || true; } \
        && .venv/bin/uv pip install --python .venv/bin/python -q -c requirements/constraints.txt -e ".[test]"; then
      installed=uv
    else
      echo "[setup] uv could not install; falling back to pip" >&2
    fi
  fi
  if [ -z "$installed" ] && ! python -m pip install -q -c requirements/constraints.txt -e ".[test]" 2>&1 | { grep -v "^WARNING: Location" || true; }; then
    echo "[setup] pip install failed (see above); fix: check the network to PyPI, or run scripts/lock.sh after a dependency change" >&2
    exit 1
  fi
  python -c "import medgan_core, flwr, opacus, wfdb, pydicom" 
  echo "$want" > "$stamp"
fi
