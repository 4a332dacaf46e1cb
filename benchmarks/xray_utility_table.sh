#!/usr/bin/env bash
# X-ray utility per epsilon with the X-ray job's settings (scripts/run_xray_federation.sh:
# the five-share split, round 1 from pretrained/xray-kermany-public), three runs each.
#   bash benchmarks/xray_utility_table.sh --epsilons 1,3,10,inf
# Extra arguments go to benchmarks/utility_table.py and win: --out DIR, --reuse, or a further
# --run-config "local-steps=50" (the shorter DP fine-tuning that makes epsilon 3 feasible).
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/utility_table.py --runs 3 --out runs/utility-xray-pre \
  --run-config "modality='xray' model='dcgan2d' data-root='data/xray/kermany' image-size=64" \
  --run-config "site-records='1|1|1' holdout-records='1' public-records='1' pretrained='pretrained/xray-kermany-public'" \
  --run-config "num-server-rounds=3 local-steps=300 discriminator-steps=3 batch-size=64 learning-rate-d=0.003 learning-rate-g=0.0002 generator-ema=0.99" \
  "$@"
