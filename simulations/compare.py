"""``medgan compare``: a privacy-utility table and plot over several finished runs.

Reads each run's ``report.json`` (written by ``medgan simulate`` / ``medgan report``), so
nothing is retrained or resampled: the numbers are exactly those of each run's report.
Epsilon is the largest spend of any site (the federation's guarantee is its weakest
site's); a non-private control has epsilon infinity and is drawn as a reference line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from medgan_core.errors import ConfigError
from medgan_core.io_utils import atomic_write_text
from medgan_core.metrics.names import AUROC, BALANCED_ACCURACY, COVERAGE, DTW_SYN_TO_REAL, FD, RMSE, gain_key

__all__ = ["compare_runs", "privacy_utility_rows"]

_TSTR, _TRTR = f"tstr_{BALANCED_ACCURACY}", f"trtr_{BALANCED_ACCURACY}"
#: Set metrics of the final generator, macro over classes, under their one name (metrics.names).
_MACRO = (FD, COVERAGE, DTW_SYN_TO_REAL, RMSE)
_COLUMNS = ("run", "modality", "dp", "epsilon", _TSTR, f"tstr_{AUROC}", _TRTR, *_MACRO, gain_key(BALANCED_ACCURACY))


def _load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path}: no report; run `medgan report --run-dir {run_dir}` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: not valid JSON ({error}); recompute it with `medgan report`") from error


def _modality(report: dict, run_dir: Path) -> str:
    """The modality the report records (``report.json`` ``"modality"``).

    Raises:
        ConfigError: A report without it (written before reports recorded it).
    """
    if not report.get("modality"):
        raise ConfigError(f"{run_dir / 'report.json'}: records no modality; recompute it with "
                          f"`medgan report --run-dir {run_dir}`")
    return str(report["modality"])


def _macro(per_class: dict[str, dict], key: str) -> float | None:
    values = [scores[key] for scores in per_class.values() if scores.get(key) is not None]
    return sum(values) / len(values) if values else None


def privacy_utility_rows(run_dirs: list[Path]) -> list[dict[str, Any]]:
    """One row per run, sorted by epsilon (non-private last)."""
    rows = []
    for run_dir in run_dirs:
        report = _load(run_dir)
        spent = [site["epsilon_spent"] for site in report.get("privacy", {}).values()]
        epsilon = math.inf if not report.get("dp_enabled", True) or not spent else max(spent)
        utility = report.get("utility", {})
        final = report.get("final_metrics", {})
        gain = report.get("augmentation_gain", {})
        row: dict[str, Any] = {"run": str(run_dir), "modality": _modality(report, Path(run_dir)),
                               "dp": bool(report.get("dp_enabled", True)), "epsilon": epsilon}
        row[_TSTR] = utility.get("tstr", {}).get(BALANCED_ACCURACY)
        row[f"tstr_{AUROC}"] = utility.get("tstr", {}).get(AUROC)
        row[_TRTR] = utility.get("trtr", {}).get(BALANCED_ACCURACY)
        for key in _MACRO:
            row[key] = _macro(final, key)
        row[gain_key(BALANCED_ACCURACY)] = gain.get(gain_key(BALANCED_ACCURACY))
        rows.append(row)
    return sorted(rows, key=lambda r: r["epsilon"])


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "inf (no DP)" if math.isinf(value) else f"{value:.3f}"
    return str(value)


def _markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Privacy-utility comparison", "",
             "Epsilon: the largest spend of any site (delta as in each run). TSTR/TRTR: balanced accuracy of the "
             "same small classifier on the held-out patients. fd, coverage, dtw_syn_to_real, rmse: macro over classes, "
             "in each run's sample unit (n/a where the modality has no such metric). Gain: the smallest site's "
             "balanced accuracy with synthetic data added minus without.", "",
             "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in _COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import medgan_core.plots  # noqa: F401  (selects the Agg backend)
    import matplotlib.pyplot as plt

    private = [r for r in rows if math.isfinite(r["epsilon"]) and r[_TSTR] is not None]
    controls = [r for r in rows if not math.isfinite(r["epsilon"]) and r[_TSTR] is not None]
    figure, axis = plt.subplots(figsize=(6, 4))
    if private:
        axis.plot([r["epsilon"] for r in private], [r[_TSTR] for r in private], "o-",
                  label="TSTR (DP runs)")
    for index, control in enumerate(controls):
        axis.axhline(control[_TSTR], linestyle="--", color=f"C{index + 1}",
                     label=f"TSTR, no DP ({Path(control['run']).name})")
    trtr = [r[_TRTR] for r in rows if r[_TRTR] is not None]
    if trtr:
        axis.axhline(max(trtr), linestyle=":", color="black", label="TRTR (real data)")
    axis.axhline(0.5, color="grey", linewidth=0.8)
    axis.set_xlabel("epsilon spent (largest site)")
    axis.set_ylabel("balanced accuracy on held-out patients")
    axis.set_title("Privacy-utility trade-off")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=120)
    plt.close(figure)
    tmp.replace(path)


def compare_runs(run_dirs: list[str | Path], out_dir: str | Path) -> list[dict[str, Any]]:
    """Write ``privacy_utility.md``, ``.csv`` and ``.png`` for ``run_dirs`` into ``out_dir``."""
    if len(run_dirs) < 2:
        raise ConfigError("compare needs at least two --run-dir (for example DP runs at several epsilon and a "
                          "non-private control)")
    rows = privacy_utility_rows([Path(d) for d in run_dirs])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "privacy_utility.md", _markdown(rows))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "privacy_utility.csv", buffer.getvalue())
    _plot(rows, out / "privacy_utility.png")
    return rows
