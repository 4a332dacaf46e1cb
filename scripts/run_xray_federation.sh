#!/usr/bin/env bash
# The chest X-ray job: three simulated hospitals on the bundled Kermany subset
# (data/xray/kermany, 1,200 images of 809 patients), split by patient into three sites and
# a held-out quarter no site trains on; a conditional DP-GAN at 64x64 (Opacus DP-SGD on the
# discriminator), then the report (runs/xray/report.md) and the synthetic DICOM export
# (runs/xray/synthetic_dicom/{NORMAL,PNEUMONIA}/). Extra arguments go to `medgan simulate`
# and override these, e.g. --run-config "num-server-rounds=2" --run-dir runs/xray-try.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medgan simulate --overwrite --run-dir runs/xray \
  --run-config "modality='xray' model='dcgan2d' data-root='data/xray/kermany' image-size=64" \
  --run-config "site-records='1|1|1' holdout-records='1'" \
  --run-config "num-server-rounds=3 local-steps=100 batch-size=32 learning-rate-d=0.0002 learning-rate-g=0.0002" \
  "$@"
