#!/usr/bin/env bash
# DP vs non-DP local GAN training throughput on a CUDA GPU, in one command:
#
#   bash benchmarks/bench_gpu.sh
#
# Creates .venv if needed (scripts/bootstrap.sh), checks that PyTorch sees a GPU, runs
# table 1 of benchmarks/bench_dp.py with --device cuda for each batch size, and prints
# samples/s with and without DP and their ratio. Environment knobs:
#   DEVICE=cuda:1          which GPU (default cuda)
#   BATCH_SIZES="64 256"   real samples per step, one table each (default "64 256")
#   STEPS=100              local steps per interleaved round, 5 rounds per mode (default 100)
#   MODES=non-dp,fused     modes of bench_dp.py, non-dp first (default: all five)
#   OUT=runs/bench-gpu     where the JSON rows go (default runs/bench-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
BATCH_SIZES=${BATCH_SIZES:-"64 256"}
STEPS=${STEPS:-100}
MODES=${MODES:-non-dp,fused,hooks,ghost,functorch}
OUT=${OUT:-runs/bench-gpu}

bash scripts/bootstrap.sh

if ! .venv/bin/python - "$DEVICE" <<'EOF'
import sys

import torch

from medgan_core.device import resolve_device
from medgan_core.errors import ConfigError

if not torch.cuda.is_available():
    print(f"bench_gpu.sh: PyTorch sees no CUDA GPU on this machine (torch {torch.__version__}, CUDA build "
          f"{torch.version.cuda or 'none'}); this benchmark needs one and ran nothing.", file=sys.stderr)
    if torch.version.cuda is None:
        print("fix: on a machine with an NVIDIA GPU and its driver, install a CUDA build of PyTorch into .venv, e.g.\n"
              "  .venv/bin/python -m pip install --force-reinstall --index-url "
              "https://download.pytorch.org/whl/cu128 torch==" + torch.__version__.split("+")[0], file=sys.stderr)
    else:
        print("fix: check that the NVIDIA driver is loaded (nvidia-smi) and that CUDA_VISIBLE_DEVICES does not "
              "hide the GPU", file=sys.stderr)
    sys.exit(2)
try:
    device = resolve_device(sys.argv[1], where="bench_gpu.sh", key="DEVICE")
except ConfigError as error:
    print(error, file=sys.stderr)
    sys.exit(2)
if device.type != "cuda":
    print(f"bench_gpu.sh: DEVICE={sys.argv[1]} resolves to {device} here; this benchmark is for a CUDA GPU "
          "(set DEVICE=cuda or cuda:N, or run benchmarks/bench_dp.py for the CPU)", file=sys.stderr)
    sys.exit(2)
print(f"bench_gpu.sh: {device} = {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
      f"CUDA {torch.version.cuda}")
EOF
then
  exit 2
fi

mkdir -p "$OUT"
for batch in $BATCH_SIZES; do
  json="$OUT/bench-dp-batch$batch.json"
  .venv/bin/python benchmarks/bench_dp.py --skip-round --device "$DEVICE" --modes "$MODES" \
    --steps "$STEPS" --batch-size "$batch" --json "$json"
  .venv/bin/python - "$json" "$batch" <<'EOF'
import json
import sys

rows = {row["mode"]: row for row in json.load(open(sys.argv[1]))}
base = rows.pop("non-dp")
print(f"\nsummary ({base['device']}, batch {sys.argv[2]}): "
      f"non-DP {base['samples_per_s']:.0f} samples/s")
for mode, row in rows.items():
    print(f"  DP ({mode}) {row['samples_per_s']:.0f} samples/s: non-DP / DP = "
          f"{base['samples_per_s'] / row['samples_per_s']:.2f}x")
EOF
done
echo "rows written to $OUT/"
