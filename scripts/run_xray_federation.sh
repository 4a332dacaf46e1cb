#!/usr/bin/env bash
# The chest X-ray job: three simulated hospitals on the bundled Kermany set
# (data/xray/kermany, 5,190 images of 2,846 patients), split by patient into five equal
# shares: three sites of about 1,040 images, a held-out fifth no site trains on, and a
# public fifth that only the public pretraining saw (pretrained/xray-kermany-public-smooth: G
# and D trained without privacy on those patients; no site's data, so no privacy cost;
# docs/privacy.md "Public pretraining"). Then a conditional DP-GAN at 64x64 (dcgan2d_smooth:
# a generator without transposed convolutions, so no checkerboard; Opacus DP-SGD on
# the discriminator, patient-level by default: privacy-unit=auto means one patient for
# X-rays; add --run-config "privacy-unit='record'" for per image), the report
# (runs/xray/report.md) and the synthetic DICOM export (runs/xray/synthetic_dicom/{NORMAL,PNEUMONIA}/).
# The settings are in scripts/xray_job.toml, which benchmarks/xray_utility_table.sh reads too.
# Extra arguments go to `medgan simulate` and override them, e.g. --run-config
# "num-server-rounds=2" --run-dir runs/xray-try; --run-config "pretrained=''" starts from
# random weights.
# Why the discriminator's learning rate is 15x the generator's: under DP-SGD, Adam divides
# each coordinate's step by the noise's scale, so the discriminator moves toward its signal
# at only lr x (signal/noise) per step; at 2e-4 it barely left its initialisation in 300
# steps and the generator learnt to fool a random network. generator-ema=0.99 releases the
# average of each site's generator iterates (no privacy cost), which made runs repeatable.
# benchmarks/xray_dp_sweep.py compares these settings. discriminator-steps=3 gives the noisy
# discriminator three private steps per generator step (Bie et al., TMLR 2023). From the
# public pretraining a short DP fine-tuning is best: 100 local (discriminator) steps a round,
# 300 charged steps in all, at lower noise than 900 for the same epsilon. With this generator
# it held TSTR AUROC above 0.85 for both classifiers in each of three runs at epsilon 10 per
# patient, where dcgan2d with 3 x 300 steps did not (docs/evaluation.md, "Utility per epsilon
# with the smooth generator").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/medgan simulate --overwrite --run-dir runs/xray --run-config scripts/xray_job.toml "$@"
