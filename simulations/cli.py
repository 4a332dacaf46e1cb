"""``medgan``: the command line for researchers, coordinators and hospital IT.

    medgan simulate [--run-config "k=v ..."]   federation of simulated hospitals + report
    medgan report   --run-dir DIR              recompute a run's report from its artifacts
    medgan generate --run-dir DIR --n N        N synthetic samples per class (WFDB for ECG)
    medgan privacy  ...                        noise multiplier <-> epsilon calculator
    medgan audit    --run-dir DIR              membership-inference audit of a run (no retraining)
    medgan study    [--quick]                  GAN variant x epsilon x setting table + plot (ECG)
    medgan certs | coordinator | site ...      real deployment (docs/deployment.md)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medgan_core.config import RunConfig

__all__ = ["main"]

logger = logging.getLogger("medgan")


def _parse_overrides(items: list[str]) -> dict:
    """``--run-config "a=1 b='x y'"``, parsed by Flower's own parser, as ``flwr run`` does."""
    import click
    from flwr.common.config import parse_config_args

    from medgan_core.errors import ConfigError

    try:
        return parse_config_args(items)
    except (click.ClickException, ValueError) as error:
        message = error.message if isinstance(error, click.ClickException) else str(error)
        raise ConfigError(f"--run-config: {message}") from error


# ---------------------------------------------------------------- checks before any work
# Each raises ConfigError, which main() prints as one line "medgan COMMAND: ...".
def _load_run(run_dir: str, *, checkpoint: bool) -> RunConfig:
    """The configuration of a saved run, after checking the directory is one."""
    from medgan_core.errors import ConfigError
    from medgan_core.generate import load_run_config

    root = Path(run_dir)
    hint = "pass the run directory that `medgan simulate --run-dir` wrote"
    if not root.is_dir():
        raise ConfigError(f"--run-dir {root}: no such directory; {hint}")
    config = root / "config.json"
    if not config.is_file():
        raise ConfigError(f"--run-dir {root}: not a run directory (no config.json in it); {hint}")
    # The recorded run-dir is replaced by this directory: a copied or moved run is read
    # (ledgers, checkpoints) from where it is now.
    run = load_run_config(root)
    latest = root / "checkpoints" / "latest.pt"
    if checkpoint and not latest.is_file():
        raise ConfigError(f"{latest}: no checkpoint, the run has not finished a round; run or resume "
                          "the federation first")
    return run


def _at_least_one(option: str, value: int, what: str) -> None:
    from medgan_core.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1 ({what})")


def _check_fs(fs: int) -> None:
    from medgan_core.data.ecg import EcgConfig
    from medgan_core.errors import ConfigError

    low, high = EcgConfig().fs_range
    if not low <= fs <= high:
        raise ConfigError(f"--fs {fs}: must lie in {low:g}..{high:g} Hz (the sampling rate of the written "
                          "ECG records; 360 for MIT-BIH)")


def _check_out(out: Path) -> None:
    """``out`` can be written and holds nothing but an earlier export, which is replaced."""
    from medgan_core.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; choose a new or empty directory")
    if out.is_dir():
        foreign = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                         if p.is_file() and not p.name.startswith("synthetic_"))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(f"--out {out}: holds files that generate did not write ({shown}); generate "
                              "replaces the whole directory, so choose a new or empty one")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: cannot be created, {existing} is a file, not a directory; "
                          "choose another --out")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot write in {existing} ({error.strerror or error}); choose a "
                          "directory you can write to") from error


def _write_staged(out: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """Run ``write`` into a staging folder beside ``out``, then move it into place.

    A failure (or a kill) part-way leaves ``out`` as it was: never half an export.

    Returns:
        The written paths, under ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        paths = write(staging)
        if out.exists():
            shutil.rmtree(out)  # only an earlier export: _check_out refused anything else
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / Path(p).relative_to(staging) for p in paths]


def _setup_logging(verbose: bool) -> None:
    # force: opacus.utils.module_utils calls logging.basicConfig at import (via
    # privacy.calculator), which would otherwise make this a no-op and hide INFO logs.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Flower's "flwr" logger has its own console handler; propagating to the root handler
    # as well would print every Flower line twice.
    logging.getLogger("flwr").propagate = False
    for noisy in ("alembic", "matplotlib", "PIL", "filelock", "be.kuleuven.dtai.distance"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def cmd_simulate(args: argparse.Namespace) -> int:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from simulations.federation import resolve_run_config

    overrides = _parse_overrides(args.run_config or [])
    if args.run_dir:
        overrides["run-dir"] = args.run_dir
    run = resolve_run_config(overrides)
    run_dir = Path(run.run_dir)
    with _exclusive_run_dir(run_dir):
        return _simulate(args, run, run_dir)


def _check_patient_level_feasible(run) -> None:
    """With patient-level DP, every simulated site must be able to train usefully; say
    which cannot, with the noise it would need and why, before anything is spent."""
    from medgan_core.errors import ConfigError
    from medgan_core.site import SiteConfig, patient_feasibility

    if not run.dp_enabled or run.unit != "patient":
        return
    for partition in range(len(run.site_record_groups())):
        site = SiteConfig.for_simulation(run, partition)
        verdict = patient_feasibility(site, run)
        logger.info("%s: %s", site.site_id, verdict.verdict)
        if not verdict.feasible:
            raise ConfigError(f"privacy-unit=patient: {site.site_id}: {verdict.verdict}. Fix: "
                              "privacy-unit='record' (one beat or image is the unit), or sites with more patients")


@contextlib.contextmanager
def _exclusive_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold a lock beside ``run_dir`` for the whole simulation: a second `medgan simulate` on
    the same directory must not train (or --overwrite it) while the first one runs."""
    import fcntl

    from medgan_core.errors import ConfigError

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.parent / f".{run_dir.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise ConfigError(f"--run-dir {run_dir}: another medgan simulate is running in it; wait for it or "
                              "choose another --run-dir") from error
        yield  # the kernel releases the lock when the file closes or the process dies


def _simulate(args: argparse.Namespace, run, run_dir: Path) -> int:
    from simulations.federation import run_federation

    _check_patient_level_feasible(run)  # before any run directory, ledger or release

    if run_dir.exists() and any(run_dir.iterdir()):
        if not args.overwrite:
            raise SystemExit(f"{run_dir} already holds a run (and its sites' privacy ledgers); "
                             "pass --overwrite to replace it or choose another --run-dir")
        import shutil

        shutil.rmtree(run_dir)
    started = time.time()
    from simulations.audit import write_canary_manifest

    write_canary_manifest(run)  # inclusion bits stay in the run dir, with the auditor
    run_federation(run, verbose=args.verbose)
    from medgan_core.run_dir import RunDirectory
    from simulations.report import refusal_summary

    history = RunDirectory(run_dir).read_metrics()
    refused = refusal_summary(history)
    if not any(h.get("trained", 0) for h in history):
        print(f"medgan simulate: no site trained in any of {len(history)} rounds; the run has no model. "
              f"Refusals: {refused['by_code'] or 'none recorded'}. Fix: see the sites' log lines above "
              "(budget, batch-size, site limits)", file=sys.stderr)
        return 1
    logger.info("federation finished in %.0f s; writing the report", time.time() - started)
    report = report_function(run.modality)(run_dir)
    print((run_dir / "report.md").read_text())
    logger.info("done in %.0f s: %s", time.time() - started, run_dir / "report.md")
    if refused["total"]:
        print(f"medgan simulate: {refused['total']} site refusal(s) in this run: {refused['by_code']} "
              "(see the report's 'Refusals' section)", file=sys.stderr)
    return 0 if all(s["within_budget"] for s in report["privacy"].values()) else 1


def report_function(modality: str) -> Callable[..., dict]:
    """The function writing a run's report for ``modality`` (``Modality.report_function``)."""
    import importlib

    from medgan_core.modalities import get_modality

    module, name = get_modality(modality).report_function.split(":")
    return getattr(importlib.import_module(module), name)


def cmd_status(args: argparse.Namespace) -> int:
    from simulations.status import format_status, run_status

    _load_run(args.run_dir, checkpoint=False)  # one clear line for a missing or broken run
    print(format_status(run_status(args.run_dir)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from medgan_core.errors import ConfigError

    run = _load_run(args.run_dir, checkpoint=True)
    if args.inception and not Path(args.inception).is_file():
        raise ConfigError(f"--inception {args.inception}: no such file; pass a TorchScript Inception-v3 "
                          "file (it is never downloaded)")
    write_report = report_function(run.modality)
    extra = {}
    if args.inception:
        import inspect

        if "inception" not in inspect.signature(write_report).parameters:
            raise ConfigError(f"--inception: the {run.modality} report does not take an Inception model; compute it "
                              "with medgan_core.evaluation.inception_fid(real, synthetic, path=...)")
        extra["inception"] = args.inception
    write_report(args.run_dir, **extra)
    print((Path(args.run_dir) / "report.md").read_text())
    return 0


def _epsilon(text: str) -> float:
    """One ``--epsilons`` entry: a positive number, or inf/none/nodp for no DP."""
    import math

    from medgan_core.errors import ConfigError

    if text.strip().lower() in ("inf", "none", "nodp"):
        return math.inf
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--epsilons {text.strip()!r} is not a number; give comma-separated targets "
                          "such as 1,3,10,inf (inf = no DP)") from None


def cmd_study(args: argparse.Namespace) -> int:

    from simulations.study import StudyConfig, run_study

    changes: dict = {"out_dir": Path(args.out), "overrides": _parse_overrides(args.run_config or [])}
    if args.models:
        changes["models"] = tuple(args.models.split(","))
    if args.epsilons:
        changes["epsilons"] = tuple(_epsilon(e) for e in args.epsilons.split(","))
    if args.settings:
        changes["settings"] = tuple(args.settings.split(","))
    for name in ("rounds", "local_steps"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    study = StudyConfig.quick(**changes) if args.quick else StudyConfig(**changes)
    try:
        run_study(study)
    except ValueError as error:
        raise SystemExit(f"medgan study: {error}") from error
    print((study.out_dir / "study.md").read_text())
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from simulations.compare import compare_runs

    compare_runs(args.run_dir, args.out)
    print((Path(args.out) / "privacy_utility.md").read_text())
    print(f"written: {Path(args.out) / 'privacy_utility.png'}, {Path(args.out) / 'privacy_utility.csv'}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out or Path(args.run_dir) / "generated")
    _at_least_one("--n", args.n, "synthetic samples per class")
    _check_fs(args.fs)
    _load_run(args.run_dir, checkpoint=True)
    _check_out(out)
    from medgan_core.generate import load_run_gan, sample_per_class

    gan, run = load_run_gan(args.run_dir)
    samples, labels = sample_per_class(gan, args.n, seed=args.seed)
    from medgan_core.modalities import get_modality

    modality = get_modality(run.modality)
    paths = _write_staged(out, lambda staging: modality.export(samples, labels, staging, fs=args.fs))
    print(json.dumps({"written": [str(p) for p in paths][:20], "per_class": args.n, "out": str(out)}, indent=2))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    _at_least_one("--n-synthetic", args.n_synthetic, "samples drawn from the generator")
    _load_run(args.run_dir, checkpoint=True)
    from simulations.audit import audit_run, format_table

    report = audit_run(args.run_dir, attacks=args.attacks, n_synthetic=args.n_synthetic, seed=args.seed)
    print(format_table(report))
    print(f"\nwritten: {Path(args.run_dir) / 'audit' / 'audit.json'}, " + ", ".join(report["figures"]))
    if report["violation"]:
        print("VIOLATION: an empirical epsilon lower bound exceeds the accountant's epsilon; "
              "this indicates a bug in accounting or the DP implementation", file=sys.stderr)
        return 3
    return 0


def cmd_privacy(args: argparse.Namespace) -> int:
    from privacy.calculator import main as calculator_main

    return calculator_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    simulate = sub.add_parser("simulate", help="run a federation of simulated hospitals, then the report")
    simulate.add_argument("--run-config", action="append", help='overrides, e.g. "num-server-rounds=2 local-steps=50"')
    simulate.add_argument("--run-dir", help="where checkpoints, metrics, ledgers and the report go")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    simulate.set_defaults(func=cmd_simulate)

    status = sub.add_parser("status", help="rounds done, each site's epsilon and refusals, last metrics of a run")
    status.add_argument("--run-dir", required=True)
    status.set_defaults(func=cmd_status)
    report = sub.add_parser("report", help="recompute the report of an existing run")
    report.add_argument("--run-dir", required=True)
    report.add_argument("--inception", help="TorchScript Inception-v3 file for a conventional image FID "
                        "(never downloaded; images only)")
    report.set_defaults(func=cmd_report)

    study = sub.add_parser("study", help="GAN variants x epsilon {1,3,10,no DP} x centralized/local/federated")
    study.add_argument("--out", default="runs/study", help="output directory (cells, study.md/.csv/.json/.png)")
    study.add_argument("--quick", action="store_true", help="smoke budget: 2 rounds x 25 steps per data holder")
    study.add_argument("--models", help="comma-separated registered 1-D GAN variants (default dcgan1d)")
    study.add_argument("--epsilons", help="comma-separated targets, inf = no DP (default 1,3,10,inf)")
    study.add_argument("--settings", help="comma-separated subset of centralized,local,federated")
    study.add_argument("--rounds", type=int, help="rounds per data holder (default 3; --quick 2)")
    study.add_argument("--local-steps", type=int, help="local steps per round (default 100; --quick 25)")
    study.add_argument("--run-config", action="append", help="run-config overrides, as for simulate")
    study.set_defaults(func=cmd_study)

    compare = sub.add_parser("compare", help="privacy-utility table and plot over finished runs (their report.json)")
    compare.add_argument("--run-dir", action="append", required=True, help="a finished run; repeat for each run")
    compare.add_argument("--out", default="runs/compare", help="where privacy_utility.md/.csv/.png go")
    compare.set_defaults(func=cmd_compare)

    generate = sub.add_parser("generate", help="write N synthetic samples per class from a run's generator")
    generate.add_argument("--run-dir", required=True)
    generate.add_argument("--n", type=int, default=100, help="samples per class")
    generate.add_argument("--out", help="output directory (default RUN_DIR/generated)")
    generate.add_argument("--fs", type=int, default=360, help="ECG: sampling rate of the written records")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=cmd_generate)

    audit = sub.add_parser("audit", help="membership-inference audit of an existing run (no retraining)")
    audit.add_argument("--run-dir", required=True)
    audit.add_argument("--attacks", nargs="+", help="attack names (default: the run's audit-attacks)")
    audit.add_argument("--n-synthetic", type=int, default=2000, help="samples drawn from the generator")
    audit.add_argument("--seed", type=int, default=0)
    audit.set_defaults(func=cmd_audit)

    try:
        from privacy.calculator import add_arguments
    except ImportError:  # pragma: no cover
        add_arguments = None
    if add_arguments is not None:
        privacy = sub.add_parser("privacy", help="noise multiplier <-> epsilon calculator")
        add_arguments(privacy)
        privacy.set_defaults(func=cmd_privacy)

    from client import daemon
    from server import certs, coordinator

    for name, module, text in (("certs", certs, "TLS certificates and site keys for a deployment"),
                               ("coordinator", coordinator, "run the SuperLink, register sites, launch runs"),
                               ("site", daemon, "hospital site: check data, run the SuperNode daemon")):
        deploy = sub.add_parser(name, help=text)
        module.add_arguments(deploy)
        deploy.set_defaults(func=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    from medgan_core.errors import ConfigError

    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except ConfigError as error:
        # Configuration and input the user must fix: one line naming it, not a traceback.
        raise SystemExit(f"medgan {args.command}: {error}") from error


if __name__ == "__main__":
    sys.exit(main())
