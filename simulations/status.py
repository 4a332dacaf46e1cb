"""``medgan status --run-dir DIR``: where a simulated run stands, without recomputing anything.

Rounds done, each site's epsilon from its ledger (per record), refusals by round and
code, and the last round's aggregated metrics. It reads only the run directory (and, for
a resumed run, the ledgers of the run it continues); it works while a run is going.
For a deployment, ``medgan coordinator status`` (:mod:`server.deployment_status`) gives
Flower's view and the run's own, formatted by :mod:`medgan_core.run_history`; each site's spend is ``medgan privacy ledger show PATH`` at the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medgan_core.config import RunConfig
from medgan_core.generate import load_run_config
from medgan_core.modalities import get_modality
from medgan_core.run_dir import RunDirectory
from medgan_core.run_history import format_history, history_summary, unit_text

__all__ = ["format_status", "run_status"]


def run_status(run_dir: str | Path, *, run: RunConfig | None = None) -> dict[str, Any]:
    """The status of the run in ``run_dir`` as a dict (see :func:`format_status`).

    Args:
        run_dir: The run directory.
        run: Its configuration, if the caller has already read it (``load_run_config``);
            read from ``run_dir/config.json`` otherwise.
    """
    from simulations.report import site_privacy_summary

    run = run if run is not None else load_run_config(run_dir)
    directory = RunDirectory(run_dir)
    history = directory.read_metrics()
    checkpoints = sorted(directory.checkpoints.glob("round-*.pt"))
    return {
        "run_dir": str(directory.root),
        "modality": run.modality,
        "model": run.model,
        "dp_enabled": run.dp_enabled,
        "rounds_planned": run.num_server_rounds,
        "last_checkpoint": checkpoints[-1].name if checkpoints else None,
        "report": (directory.root / "report.md").is_file(),
        "sites": site_privacy_summary(run) if run.dp_enabled else {},
        **history_summary(history),
    }


def format_status(status: dict[str, Any]) -> str:
    lines = [f"run {status['run_dir']}: {status['modality']}, {status['model']}, "
             f"{status['rounds_recorded']} of {status['rounds_planned']} rounds recorded, last checkpoint "
             f"{status['last_checkpoint'] or 'none'}, DP {'on' if status['dp_enabled'] else 'OFF (non-private)'}, "
             f"report {'written' if status['report'] else 'not written yet'}"]
    record_word = get_modality(status["modality"]).record_word
    for site, s in status["sites"].items():
        lines.append(f"  {site}: epsilon {s['epsilon_spent']:.3f} of {s['target_epsilon']:g} per "
                     f"{unit_text(s.get('unit'), record_word)}; delta {s['target_delta']:g}, {s['steps']} DP steps")
    return "\n".join(lines + format_history(status))
