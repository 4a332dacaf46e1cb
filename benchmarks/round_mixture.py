"""Sampling from a mixture of a run's per-round generators instead of the last one: does it help?

Every round's global generator is already released to the coordinator (it aggregates them),
and the public pretraining is public, so synthetic data drawn from any mix of them is
post-processing: it costs no site any privacy beyond the run's final epsilon. The last
round's generator can be worse than the sequence it ends (Neunhoeffer, Wu & Dwork,
"Private Post-GAN Boosting", ICLR 2021, whose private re-weighting this skips by mixing
uniformly, so nothing data-dependent is chosen).

For each run directory of a ``benchmarks/utility_table.py`` output (``eps-*-run*``, with
``checkpoints/round-NNN.pt``) it samples ``--per-class`` records per class from

* ``last``: the last round's generator (what the report scores);
* ``rounds``: every round's generator, an equal share each;
* ``public+rounds``: those and the public pretraining's generator (runs that have one),

and scores them on the held-out patients with the report's two classifiers (the CNN and
the gradient-boosted trees; balanced accuracy and AUROC), for ``--sample-seeds`` latent
seeds each. Rows are appended to ``--out``/round_mixture.jsonl as they finish (a cut-off
sweep keeps them); the table (mean ± sd over runs x sample seeds) goes to round_mixture.md.

    .venv/bin/python benchmarks/round_mixture.py --runs-dir runs/utility-ecg-pre \\
        --epsilons 10,1,no-DP --out runs/round-mixture
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from medgan_core.data.labelled import LabelledSet  # noqa: E402
from medgan_core.evaluation.scoring import sample_with_labels  # noqa: E402
from medgan_core.evaluation.utility import classifier_scores, gbt_scores  # noqa: E402
from medgan_core.generate import load_run_config  # noqa: E402
from medgan_core.models import GanPair, build_gan  # noqa: E402
from medgan_core.models.state import load_gan_state  # noqa: E402
from medgan_core.modalities import get_modality  # noqa: E402
from simulations.inprocess import initial_weights  # noqa: E402

MIXTURES = ("last", "rounds", "public+rounds")


def mixtures(run_dir: Path) -> dict[str, list[GanPair]]:
    """Each of :data:`MIXTURES` as its generators, built once per run from its checkpoints
    (``public+rounds`` only for a run with a public pretraining)."""
    run = load_run_config(run_dir)
    rounds = sorted((run_dir / "checkpoints").glob("round-*.pt"))
    if not rounds:
        raise SystemExit(f"round_mixture: {run_dir}/checkpoints has no round-NNN.pt; pass a finished run")
    gans = []
    for state in [torch.load(path, map_location="cpu", weights_only=False)["state"] for path in rounds]:
        gan = build_gan(run)
        load_gan_state(gan, state)
        gans.append(gan)
    built = {"last": gans[-1:], "rounds": gans}
    if run.pretrained:
        public = build_gan(run)
        load_gan_state(public, initial_weights(run))
        built["public+rounds"] = [public, *gans]
    return built


def sample_mixture(gans: list[GanPair], num_classes: int, per_class: int, seed: int) -> LabelledSet:
    """``per_class`` records of each class, an equal share from each generator (latents seeded)."""
    share = per_class // len(gans)
    return LabelledSet.concat([sample_with_labels(gan, torch.arange(num_classes).repeat_interleave(share),
                                                  seed=1000 * seed + k) for k, gan in enumerate(gans)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", required=True, help="a benchmarks/utility_table.py --out directory")
    parser.add_argument("--epsilons", default="10,1,no-DP", help="which eps-<E>-run* directories, comma-separated")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--sample-seeds", default="1,2")
    parser.add_argument("--classifier-seeds", default="0,1")
    parser.add_argument("--out", default="runs/round-mixture")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "round_mixture.jsonl"
    done = {(r["run"], r["sample_seed"], r["mixture"]) for r in map(json.loads, log.read_text().splitlines())
            } if log.exists() else set()
    classifier_seeds = tuple(int(s) for s in args.classifier_seeds.split(","))
    run_dirs = [d for e in args.epsilons.split(",") for d in sorted(Path(args.runs_dir).glob(f"eps-{e}-run*"))]
    if not run_dirs:
        raise SystemExit(f"round_mixture: no eps-<E>-run* directories for {args.epsilons} in {args.runs_dir}")
    holdout_of: dict[str, LabelledSet] = {}
    for run_dir in run_dirs:
        run = load_run_config(run_dir)
        modality = get_modality(run.modality)
        num_classes = len(modality.class_names)
        key = f"{run.modality}:{run.data_root}:{run.holdout_records}"
        if key not in holdout_of:
            holdout_of[key] = modality.evaluation_data(run)[1]
        holdout = holdout_of[key]
        built = mixtures(run_dir)
        for sample_seed in (int(s) for s in args.sample_seeds.split(",")):
            for mixture, gans in built.items():
                if (run_dir.name, sample_seed, mixture) in done:
                    continue
                synthetic = sample_mixture(gans, num_classes, args.per_class, sample_seed)
                row: dict[str, Any] = {"run": run_dir.name, "epsilon": run_dir.name.split("-run")[0].removeprefix("eps-"),
                       "sample_seed": sample_seed, "mixture": mixture, "generators": len(gans),
                       "trees": gbt_scores(synthetic, holdout, num_classes=num_classes, seeds=classifier_seeds,
                                           per_patient=True),
                       "cnn": classifier_scores(synthetic, holdout, num_classes=num_classes, epochs=8,
                                                seeds=classifier_seeds, per_patient=True)}
                with log.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
                print(f"{run_dir.name} seed {sample_seed} {mixture:14s} trees {row['trees']['balanced_accuracy']:.3f}/"
                      f"{row['trees']['auroc']:.3f}  CNN {row['cnn']['balanced_accuracy']:.3f}/"
                      f"{row['cnn']['auroc']:.3f}", flush=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    table = summarise(rows)
    (out / "round_mixture.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


def summarise(rows: list[dict]) -> list[str]:
    def cell(values: list[float]) -> str:
        if len(values) < 2:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

    lines = ["| epsilon | sampled from | runs x seeds | CNN bal. acc | CNN AUROC | trees bal. acc | trees AUROC |",
             "|" + "---|" * 7]
    for epsilon in dict.fromkeys(r["epsilon"] for r in rows):
        for mixture in MIXTURES:
            mine = [r for r in rows if r["epsilon"] == epsilon and r["mixture"] == mixture]
            if not mine:
                continue
            cells = [cell([r[c][m] for r in mine]) for c in ("cnn", "trees") for m in ("balanced_accuracy", "auroc")]
            lines.append(f"| {epsilon} | {mixture} | {len({r['run'] for r in mine})} x "
                         f"{len({r['sample_seed'] for r in mine})} | {' | '.join(cells)} |")
    return lines


if __name__ == "__main__":
    main()
