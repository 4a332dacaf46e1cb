#!/usr/bin/env bash
# X-ray utility per epsilon with the X-ray job's settings (scripts/run_xray_federation.sh:
# scripts/xray_job.toml, the file the job reads: the five-share split, round 1 from
# pretrained/xray-kermany-public-smooth), three runs each.
#   bash benchmarks/xray_utility_table.sh --epsilons 1,3,10,inf
# Extra arguments go to benchmarks/utility_table.py and win: --out DIR, --reuse, or a further
# --run-config "local-steps=50" (a shorter DP fine-tuning still). The table before the smooth
# generator (dcgan2d, 3 x 300 steps) is this script with --run-config "model='dcgan2d'
# pretrained='pretrained/xray-kermany-public' local-steps=300".
cd "$(dirname "$0")/.."
exec .venv/bin/python benchmarks/utility_table.py --runs 3 --out runs/utility-xray-smooth \
  --run-config scripts/xray_job.toml "$@"
