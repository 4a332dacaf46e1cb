"""``medgan simulate``, ``medgan status`` and ``medgan report``: a simulated federation and its run directory."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from medgan_cli._common import exclusive_run_dir, load_run, parse_overrides

if TYPE_CHECKING:
    from medgan_core.config import RunConfig

__all__ = ["register", "report", "simulate", "status"]

logger = logging.getLogger("medgan")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("simulate", help="run a federation of simulated hospitals, then the report")
    parser.add_argument("--run-config", action="append", help='overrides, e.g. "num-server-rounds=2 local-steps=50"')
    parser.add_argument("--run-dir", help="where checkpoints, metrics, ledgers and the report go")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    parser.add_argument("--ray-address", help="run the simulated sites on an existing Ray cluster, e.g. "
                        "127.0.0.1:6379 from `ray start --head` (default: a private Ray instance on this machine)")
    parser.add_argument("--gpus-per-site", type=float, default=None, metavar="SHARE",
                        help="GPU share Ray reserves for each simulated site, e.g. 0.25 (four sites per GPU) or 1; "
                             "default none: the sites train on the CPU")
    parser.set_defaults(func=simulate)

    parser = sub.add_parser("status", help="rounds done, each site's epsilon and refusals, last metrics of a run")
    parser.add_argument("--run-dir", required=True)
    parser.set_defaults(func=status)

    parser = sub.add_parser("report", help="recompute the report of an existing run")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--inception", help="TorchScript Inception-v3 file for a conventional image FID "
                        "(never downloaded; images only)")
    parser.set_defaults(func=report)


def simulate(args: argparse.Namespace) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from simulations.federation import check_gpus_per_site, resolve_run_config

    check_gpus_per_site(args.gpus_per_site, ray_address=args.ray_address or None)
    overrides = parse_overrides(args.run_config or [])
    if args.run_dir:
        overrides["run-dir"] = args.run_dir
    run = resolve_run_config(overrides)
    run_dir = Path(run.run_dir)
    with exclusive_run_dir(run_dir):
        return _simulate(run, run_dir, overwrite=args.overwrite, verbose=args.verbose,
                         ray_address=args.ray_address or None, gpus_per_site=args.gpus_per_site)


def _simulate(run: RunConfig, run_dir: Path, *, overwrite: bool, verbose: bool, ray_address: str | None,
              gpus_per_site: float | None) -> int:
    from medgan_core.run_dir import RunDirectory
    from simulations.audit import write_canary_manifest
    from simulations.federation import (check_patient_level_feasible, check_run_device, log_site_class_counts,
                                       run_federation)
    from medgan_core.run_history import refusal_summary
    from simulations.report import write_report

    check_run_device(run, gpus_per_site=gpus_per_site, ray_address=ray_address)
    check_patient_level_feasible(run)  # before any run directory, ledger or release
    log_site_class_counts(run)  # how (non-)IID the sites are, before anything trains
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise SystemExit(f"{run_dir} already holds a run (and its sites' privacy ledgers); "
                             "pass --overwrite to replace it or choose another --run-dir")
        shutil.rmtree(run_dir)
    started = time.time()
    write_canary_manifest(run)  # inclusion bits stay in the run dir, with the auditor
    run_federation(run, verbose=verbose, ray_address=ray_address, gpus_per_site=gpus_per_site)

    history = RunDirectory(run_dir).read_metrics()
    refused = refusal_summary(history)
    if not any(h.get("trained", 0) for h in history):
        print(f"medgan simulate: no site trained in any of {len(history)} rounds; the run has no model. "
              f"Refusals: {refused['by_code'] or 'none recorded'}. Fix: see the sites' log lines above "
              "(budget, batch-size, site limits)", file=sys.stderr)
        return 1
    logger.info("federation finished in %.0f s; writing the report", time.time() - started)
    written = write_report(run_dir)
    print((run_dir / "report.md").read_text())
    logger.info("done in %.0f s: %s", time.time() - started, run_dir / "report.md")
    if refused["total"]:
        print(f"medgan simulate: {refused['total']} site refusal(s) in this run: {refused['by_code']} "
              "(see the report's 'Refusals' section)", file=sys.stderr)
    return 0 if all(s["within_budget"] for s in written["privacy"].values()) else 1


def status(args: argparse.Namespace) -> int:
    from simulations.status import format_status, run_status

    run = load_run(args.run_dir, checkpoint=False)  # one clear line for a missing or broken run
    print(format_status(run_status(args.run_dir, run=run)))
    return 0


def report(args: argparse.Namespace) -> int:
    from medgan_core.errors import ConfigError
    from simulations.report import write_report

    load_run(args.run_dir, checkpoint=True)  # one clear line for a missing or broken run
    if args.inception and not Path(args.inception).is_file():
        raise ConfigError(f"--inception {args.inception}: no such file; pass a TorchScript Inception-v3 "
                          "file (it is never downloaded)")
    write_report(args.run_dir, inception=args.inception or None)
    print((Path(args.run_dir) / "report.md").read_text())
    return 0
