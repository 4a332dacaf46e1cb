"""``medgan coordinator status``: where a deployment stands, from the coordinator machine.

Two views, neither of which recomputes anything:

* Flower's, through its public CLI on the coordinator's ``FLWR_HOME``:
  ``flwr ls medgan --format json`` (runs, their status and times) and
  ``flwr supernode ls medgan --format json`` (sites online / offline), node ids named
  from ``<state-dir>/sites.json`` (written when ``medgan coordinator start|register``
  registers a site key).
* With ``--run-dir``, the run's own: ``metrics.jsonl`` as the ServerApp's ``RunRecorder``
  writes it, summarised as ``medgan status`` does (:mod:`medgan_core.run_history`). Each site's
  epsilon there is what the site reported in its last reply; the site's ledger, which is
  authoritative, is not on the coordinator machine.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from medgan_core.errors import ConfigError
from medgan_core.modalities import get_modality
from medgan_core.run_history import format_history, history_summary, unit_text
from server.coordinator_state import CONNECTION, SuperLinkUnavailable, connection_address, flwr_json, site_names

__all__ = ["add_arguments", "deployment_status", "format_deployment_status", "main", "run_view"]

logger = logging.getLogger(__name__)

LEDGER_NOTE = ("as reported by the site; the site's ledger is authoritative: "
               "`medgan privacy ledger show PATH` at the site")


def deployment_status(state_dir: Path, *, run_dir: Path | None = None) -> dict[str, Any]:
    """Flower's runs and sites for the coordinator in ``state_dir`` (and the run in ``run_dir``).

    Raises:
        ConfigError: not a coordinator state directory, or ``run_dir`` holds no run.
        SuperLinkUnavailable: the SuperLink does not answer.
    """
    address = connection_address(state_dir)
    try:
        runs = flwr_json(["ls"], state_dir=state_dir)["runs"]
        nodes = flwr_json(["supernode", "ls"], state_dir=state_dir)["nodes"]
    except SuperLinkUnavailable as error:
        raise SuperLinkUnavailable(f"the SuperLink at {address} did not answer ({error}); is it running? "
                                   f"Start it with `medgan coordinator start --state-dir {state_dir}`") from error
    names = site_names(state_dir)
    return {
        "state_dir": str(state_dir),
        "superlink": address,
        "runs": [{key: run.get(key) for key in ("run-id", "status", "fab-id", "fab-version", "pending-at",
                                                "running-at", "finished-at", "elapsed")} for run in runs],
        "sites": [{"node-id": node["node-id"], "name": names.get(str(node["node-id"])), "status": node["status"],
                   "online-at": node.get("online-at"), "offline-at": node.get("offline-at")} for node in nodes],
        "run": run_view(run_dir, names) if run_dir is not None else None,
    }


def run_view(run_dir: Path, names: dict[str, str]) -> dict[str, Any]:
    """The run's own view from ``metrics.jsonl``: rounds, each site's last reply, refusals, metrics.

    Args:
        run_dir: The ServerApp's run directory (``medgan coordinator run --run-dir``).
        names: Node id -> site name (``<state-dir>/sites.json``); unnamed nodes stay ``node ID``.

    Raises:
        ConfigError: ``run_dir`` holds no run (no ``config.json``).
    """
    from medgan_core.generate import load_run_config
    from medgan_core.run_dir import RunDirectory
    run = load_run_config(run_dir)
    directory = RunDirectory(run_dir)
    history = directory.read_metrics()
    sites: dict[str, dict[str, Any]] = {}
    for record in history:  # later rounds overwrite earlier ones: each site's last reply
        for node, reply in record.get("sites", {}).items():
            site = sites.setdefault(node, {"name": names.get(node, f"node {node}")})
            if "error" in reply:
                site["refused"] = {"round": record["round"], "error": reply["error"]}
            else:
                site.update(epsilon=reply.get("epsilon"), round=record["round"])
    checkpoints = sorted(directory.checkpoints.glob("round-*.pt"))
    return {"run_dir": str(directory.root), "dp_enabled": run.dp_enabled, "unit": run.unit,
            "record_word": get_modality(run.modality).record_word,
            "rounds_planned": run.num_server_rounds,
            "last_checkpoint": checkpoints[-1].name if checkpoints else None,
            "sites": dict(sorted(sites.items(), key=lambda item: item[1]["name"])),
            "epsilon_source": LEDGER_NOTE, **history_summary(history)}


def format_deployment_status(status: dict[str, Any]) -> str:
    lines = [f"SuperLink {status['superlink']} (connection {CONNECTION!r}, state {status['state_dir']})",
             f"runs (flwr ls): {len(status['runs']) or 'none'}"]
    for run in status["runs"]:
        ended = f", finished {run['finished-at']}" if run["finished-at"] else ""
        lines.append(f"  {run['run-id']}: {run['status']}, {run['fab-id']} {run['fab-version']}, "
                     f"submitted {run['pending-at']}{ended}, {_seconds(run['elapsed'])}")
    lines.append(f"sites (flwr supernode ls): {len(status['sites']) or 'none'}")
    for node in status["sites"]:
        since = node["online-at"] if node["status"] == "online" else node["offline-at"]
        lines.append(f"  {node['name'] or 'unnamed'} (node {node['node-id']}): {node['status']}"
                     + (f" since {since}" if since and since != "N/A" else ""))
    if status["run"] is not None:
        lines += format_run_view(status["run"])
    return "\n".join(lines)


def _seconds(elapsed: object) -> str:
    return f"took {elapsed:.0f} s" if isinstance(elapsed, (int, float)) else f"elapsed {elapsed}"


def format_run_view(view: dict[str, Any]) -> list[str]:
    lines = [f"run directory {view['run_dir']}: {view['last_round']['round'] or 0} of {view['rounds_planned']} "
             f"rounds done ({view['rounds_recorded']} recorded), last checkpoint {view['last_checkpoint'] or 'none'}, "
             f"DP {'on' if view['dp_enabled'] else 'OFF (non-private)'}, per {unit_text(view['unit'], view.get('record_word', 'record'))} "
             f"unless a site's [privacy] unit says otherwise"]
    for site in view["sites"].values():
        spent = ("epsilon n/a (non-private)" if site.get("epsilon") is None
                 else f"epsilon {site['epsilon']:.3f} after round {site['round']}") if "round" in site else "no update"
        refused = site.get("refused")
        lines.append(f"  {site['name']}: {spent}"
                     + (f"; refused round {refused['round']} ({refused['error']})" if refused else ""))
    if view["sites"]:
        lines.append(f"  (each epsilon {view['epsilon_source']})")
    return lines + format_history(view)


def main(args: argparse.Namespace) -> int:
    """``medgan coordinator status``: exit 0 with the status; 2 on a bad directory, 1 if no SuperLink answers."""
    try:
        status = deployment_status(args.state_dir, run_dir=args.run_dir)
    except (ConfigError, SuperLinkUnavailable) as error:
        if args.json:
            print(json.dumps({"success": False, "error": str(error)}))
        logger.error("%s", error)
        return 2 if isinstance(error, ConfigError) else 1
    print(json.dumps({"success": True, **status}, indent=2) if args.json else format_deployment_status(status))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, help="the ServerApp's run directory: adds rounds, each site's "
                        "reported epsilon, refusals and the last metrics")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(coordinator_func=main)
