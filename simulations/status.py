"""``medgan status --run-dir DIR``: where a simulated run stands, without recomputing anything.

Rounds done, each site's epsilon from its ledger (per record), refusals by round and
code, and the last round's aggregated metrics. It reads only the run directory (and, for
a resumed run, the ledgers of the run it continues); it works while a run is going.
For a deployment, ``medgan coordinator status`` (:mod:`server.deployment_status`) gives
Flower's view and the run's own, formatted with :func:`history_summary` and
:func:`format_history`; each site's spend is ``medgan privacy ledger show PATH`` at the site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medgan_core.config import RunConfig
from medgan_core.generate import load_run_config
from medgan_core.run_dir import RunDirectory

__all__ = ["format_history", "format_status", "history_summary", "run_status", "unit_text"]


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


def history_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """What ``metrics.jsonl`` (the ServerApp's ``RunRecorder``) says: rounds, refusals, last round.

    Args:
        history: The records of ``metrics.jsonl``, in order (``RunDirectory.read_metrics``).

    Returns:
        ``rounds_recorded``, ``refusals`` (``simulations.report.refusal_summary``) and
        ``last_round`` (its number, how many sites trained, the aggregated train metrics).
    """
    from simulations.report import refusal_summary

    last = history[-1] if history else {}
    return {
        "rounds_recorded": len(history),
        "refusals": refusal_summary(history),
        "last_round": {"round": last.get("round"), "trained": last.get("trained"), "train": last.get("train")},
    }


def unit_text(unit: str | None) -> str:
    """What one unit of a site's (epsilon, delta) protects, in words."""
    return "patient" if unit == "patient" else "record (one beat or image)"


def format_status(status: dict[str, Any]) -> str:
    lines = [f"run {status['run_dir']}: {status['modality']}, {status['model']}, "
             f"{status['rounds_recorded']} of {status['rounds_planned']} rounds recorded, last checkpoint "
             f"{status['last_checkpoint'] or 'none'}, DP {'on' if status['dp_enabled'] else 'OFF (non-private)'}, "
             f"report {'written' if status['report'] else 'not written yet'}"]
    for site, s in status["sites"].items():
        lines.append(f"  {site}: epsilon {s['epsilon_spent']:.3f} of {s['target_epsilon']:g} per "
                     f"{unit_text(s.get('unit'))}; delta {s['target_delta']:g}, {s['steps']} DP steps")
    return "\n".join(lines + format_history(status))


def format_history(summary: dict[str, Any]) -> list[str]:
    """The refusal and last-round lines of a :func:`history_summary`, indented under a run."""
    lines = []
    refusals = summary["refusals"]
    if refusals["total"]:
        lines.append(f"  refusals: {refusals['total']} ({', '.join(f'{c} x{n}' for c, n in refusals['by_code'].items())})"
                     + "".join(f"; round {r['round']}: {r['refused']} refused, {r['trained']} trained"
                               for r in refusals["rounds"]))
    else:
        lines.append("  refusals: none")
    last = summary["last_round"]
    if last["round"] is not None:
        train = ", ".join(f"{k} {v:.4g}" for k, v in (last["train"] or {}).items() if isinstance(v, (int, float)))
        lines.append(f"  last round {last['round']}: {last['trained']} site(s) trained; {train or 'no train metrics'}")
    return lines
