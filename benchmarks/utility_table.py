"""What the synthetic data is worth at each epsilon, with its spread over independent runs.

For each target epsilon (``inf`` = the non-private control, ``dp-enabled=false``) it runs
the main job's federation ``--runs`` times (every DP run draws fresh secret noise, so the
runs are independent training seeds), writes each run's report, and tabulates over runs
both TSTR classifiers of the report: the project's CNN and the independent
gradient-boosted trees on z-normalised samples, each trained on the synthetic samples and
on the exported files read back, with balanced accuracy, AUROC and sensitivity (recall of
the rare class) on the held-out patients. A DP row above its own non-private control is
within noise, not a ranking.

    .venv/bin/python benchmarks/utility_table.py [--epsilons 1,3,10,inf] [--runs 3]
        [--out runs/utility-ecg] [--run-config "modality='xray' ..."]

Writes ``utility.md``, ``utility.json`` and ``utility.png`` in ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medgan_core.modalities import get_modality  # noqa: E402
ROWS = (("CNN", "utility", "tstr"), ("CNN, exported files", "utility", "tstr_exported"),
        ("trees", "utility_gbt", "tstr"), ("trees, exported files", "utility_gbt", "tstr_exported"),
        # Runs from a public pretraining: both classifiers on its real records alone, the baseline
        # the synthetic rows must beat (the report's "public data alone").
        ("CNN, public data alone", "utility", "public"), ("trees, public data alone", "utility_gbt", "public"))
METRICS = ("balanced_accuracy", "auroc", "sensitivity")


def run_one(epsilon: float, run_dir: Path, extra: list[str]) -> dict:
    config = "dp-enabled=false" if math.isinf(epsilon) else f"target-epsilon={epsilon:g}"
    command = [str(ROOT / ".venv/bin/medgan"), "simulate", "--overwrite", "--run-dir", str(run_dir),
               # the epsilon last, so that it wins over a run-config file's
               *[a for c in extra for a in ("--run-config", c)], "--run-config", config]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        # A site that refuses before spending (e.g. patient-level DP infeasible at this
        # epsilon) is a result, not a crash: the table says so.
        refusal = next((line for line in done.stderr.splitlines() if line.startswith("medgan simulate: ")), None)
        if refusal is None:
            sys.exit(f"utility_table: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return {"refused": refusal.removeprefix("medgan simulate: "), "_seconds": time.monotonic() - started}
    report = json.loads((run_dir / "report.json").read_text())
    report["_seconds"] = time.monotonic() - started
    return report


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def summarise(results: dict[str, list[dict]]) -> tuple[list[str], dict]:
    summary: dict = {}
    lines = ["| epsilon | classifier, trained on | balanced accuracy | AUROC | sensitivity |",
             "|---|---|---|---|---|"]
    for label, all_reports in results.items():
        reports = [r for r in all_reports if "refused" not in r]
        if not reports:
            reason = all_reports[0]["refused"]
            summary[label] = {"refused": reason}
            lines.append(f"| {label} | refused before training: {reason[:160]}{'...' if len(reason) > 160 else ''} | - | - | - |")
            continue
        privacy_unit = next((s.get("unit") for r in reports for s in r.get("privacy", {}).values()), "record")
        unit = "patient" if privacy_unit == "patient" else get_modality(reports[0]["modality"]).record_word
        spent = [max(s["epsilon_spent"] for s in r["privacy"].values()) for r in reports if r.get("privacy")]
        name = f"{label} ({_cell(spent)} spent, per {unit})" if spent else f"{label} (no DP)"
        summary[label] = {}
        for row_name, section, key in ROWS:
            rows = [r.get(section, {}).get(key) for r in reports]
            rows = [row for row in rows if row]
            if not rows:
                continue
            cells = {m: [row.get(m, float("nan")) for row in rows] for m in METRICS}
            summary[label][row_name] = cells
            lines.append(f"| {name} | {row_name} | " + " | ".join(_cell(cells[m]) for m in METRICS) + " |")
        trtr = [r.get("utility", {}).get("trtr") for r in reports]
        trtr_trees = [r.get("utility_gbt", {}).get("trtr") for r in reports]
        summary[label]["TRTR"] = {m: [t.get(m, float("nan")) for t in trtr if t] for m in METRICS}
        summary[label]["TRTR trees"] = {m: [t.get(m, float("nan")) for t in trtr_trees if t] for m in METRICS}
    return lines, summary


def plot(summary: dict, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in zip(axes, ("auroc", "sensitivity")):
        for row_name in ("CNN", "trees"):
            means = [statistics.mean(summary[k][row_name][metric]) if summary[k].get(row_name) else math.nan
                     for k in labels]
            sds = [statistics.stdev(summary[k][row_name][metric]) if summary[k].get(row_name)
                   and len(summary[k][row_name][metric]) > 1 else 0.0 for k in labels]
            ax.errorbar(range(len(labels)), means, yerr=sds, marker="o", capsize=3, label=f"TSTR, {row_name}")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("target epsilon per site")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.tight_layout()
    path = out / "utility.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epsilons", default="1,3,10,inf")
    parser.add_argument("--runs", type=int, default=3, help="independent runs per epsilon (training seeds)")
    parser.add_argument("--out", default="runs/utility-ecg")
    parser.add_argument("--run-config", action="append", default=[], help="extra overrides for every run")
    parser.add_argument("--reuse", action="store_true",
                        help="tabulate a run directory's existing report.json instead of running it again "
                             "(e.g. to join tables made by parallel invocations with the same --out)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    epsilons = [float(e) for e in args.epsilons.split(",")]
    results: dict[str, list[dict]] = {}
    total, done = len(epsilons) * args.runs, 0
    for epsilon in epsilons:
        label = "no DP" if math.isinf(epsilon) else f"{epsilon:g}"
        results[label] = []
        for k in range(args.runs):
            run_dir = out / f"eps-{label.replace(' ', '-')}-run{k}"
            if args.reuse and (run_dir / "report.json").is_file():
                report = {**json.loads((run_dir / "report.json").read_text()), "_seconds": float("nan")}
            else:
                report = run_one(epsilon, run_dir, args.run_config)
            results[label].append(report)
            done += 1
            if "refused" in report:
                print(f"[{done}/{total}] epsilon {label}: refused ({report['refused'][:120]}); "
                      "the other runs at this epsilon would refuse the same way", file=sys.stderr, flush=True)
                done += args.runs - 1 - k
                break
            tstr = report["utility"]["tstr"]
            print(f"[{done}/{total}] epsilon {label}, run {k}: CNN TSTR {tstr['balanced_accuracy']:.3f} / "
                  f"{tstr['auroc']:.3f} in {report['_seconds']:.0f} s", file=sys.stderr, flush=True)
    lines, summary = summarise(results)
    header = (f"TSTR on the held-out patients, mean ± sd over {args.runs} independent runs per epsilon "
              f"(`benchmarks/utility_table.py --epsilons {args.epsilons} --runs {args.runs}"
              + "".join(f' --run-config "{c}"' for c in args.run_config) + "`)")
    text = "\n".join([header, "", *lines]) + "\n"
    (out / "utility.md").write_text(text)
    (out / "utility.json").write_text(json.dumps(summary, indent=2) + "\n")
    figure = plot(summary, out)
    print(text)
    print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
