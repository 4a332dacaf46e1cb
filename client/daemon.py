"""The hospital site daemon: ``medgan site check`` and ``medgan site start``.

``start`` validates the site before anything connects (its TOML, its data directory, its
ledger), prints what the site will share, then runs a Flower SuperNode with TLS and node
authentication and keeps it running:

* ``flower-supernode`` retries a lost SuperLink on its own (no ``--max-retries`` by
  default, i.e. forever), so a coordinator restart is survived without a restart here;
  if the SuperNode exits anyway (e.g. the coordinator lost its state), the daemon starts
  it again with backoff. Exits caused by the site's own configuration are not retried.
* The ClientApp runs in ``--isolation subprocess``: one ``flwr-clientapp`` process per
  message, with this daemon's Python environment. Its log (round, step, epsilon, and any
  refusal such as ``site-a refused: PrivacyBudgetExceeded: ...``) reaches this daemon's
  log; the refusal also goes back to the coordinator as the error reply.
* The site decides which code runs on its data: ``flwr-clientapp`` is found first in a
  directory of this daemon (``<flwr-home>/bin``) and runs :mod:`client.guard`, which
  checks each run's FAB against the ``[app]`` policy of the site TOML
  (:mod:`client.app_policy`) before Flower installs or imports it. Apps installed by
  earlier starts are removed: each is re-installed from its FAB after the check.

Nothing here trains or touches records beyond counting them: the site's rules (budget,
step limit, non-private refusal) are enforced in :func:`medgan_core.site.train_round`.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from client.app_policy import AppPolicy, check_fab
from client.guard import guarded_env, install_guard
from medgan_core.errors import ConfigError
from medgan_core.processes import console_script, flower_process_env, stop_process
from privacy.releases import TRAIN_REPLY

if TYPE_CHECKING:
    from medgan_core.site import SiteConfig

__all__ = ["SuperNodeOptions", "add_arguments", "fab_hash", "main", "site_report", "supernode_command"]

logger = logging.getLogger(__name__)

# Flower exit codes that a restart cannot fix (flwr.supercore.exit.ExitCode): invalid auth
# key, TLS off with node auth on, invalid trusted entities. flower-supernode exits with
# status 1 for every error and prints "Exit Code: NNN", so the code is read from its log.
_FATAL_EXIT_CODES = {302, 303, 304}
_FLOWER_EXIT = re.compile(r"Exit Code: (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class SuperNodeOptions:
    """How this site reaches the coordinator.

    Attributes:
        superlink: The coordinator's ``host:port``.
        root_cert: CA certificate that signed the SuperLink's TLS certificate.
        auth_key: This site's OpenSSH private key registered at the coordinator.
        insecure: Plain HTTP, no node authentication (testing only).
        runtime_port: Local port of the SuperNode's Runtime API (one per SuperNode on a host).
        flwr_home: Flower's home for this site (installed apps); never the user's ~/.flwr.
        max_wait_time: Give up reconnecting after this many seconds (None: never).
    """

    superlink: str
    root_cert: Path | None
    auth_key: Path | None
    insecure: bool
    runtime_port: int
    flwr_home: Path
    max_wait_time: float | None = None


def supernode_command(*, site_toml: Path, options: SuperNodeOptions) -> list[str]:
    """The ``flower-supernode`` command line for this site.

    Raises:
        ConfigError: on a missing certificate or key, or insecure mode with a key.
    """
    site_toml = site_toml.resolve()
    if "'" in str(site_toml):
        raise ConfigError(f"{site_toml}: the site config path must not contain a quote (')")
    command = [console_script("flower-supernode"), "--superlink", options.superlink,
               "--node-config", f"site-config='{site_toml}'",
               "--isolation", "subprocess", "--port", str(options.runtime_port)]
    if options.max_wait_time is not None:
        command += ["--max-wait-time", str(options.max_wait_time)]
    if options.insecure:
        if options.auth_key is not None:
            raise ConfigError("--insecure cannot be combined with --auth-key: Flower only "
                              "authenticates SuperNodes over TLS. Drop --insecure and pass --root-cert")
        return command + ["--insecure"]
    if options.root_cert is None or options.auth_key is None:
        raise ConfigError("a deployed site needs --root-cert (the coordinator's ca.crt) and --auth-key "
                          "(this site's private key); --insecure is for local tests only")
    for path, what in ((options.root_cert, "--root-cert"), (options.auth_key, "--auth-key")):
        if not path.is_file():
            raise ConfigError(f"{what} {path}: no such file")
    if options.auth_key.stat().st_mode & 0o077:
        logger.warning("%s is readable by other users; restrict it: chmod 600 %s", options.auth_key, options.auth_key)
    return command + ["--root-certificates", str(options.root_cert.resolve()),
                      "--auth-supernode-private-key", str(options.auth_key.resolve())]


def site_report(site: SiteConfig) -> str:
    """Validate the site's data and ledger and describe what the site will share.

    Raises:
        ConfigError: if no usable record is found.
    """
    from medgan_core.site import load_site_data  # imports torch: only when a site is checked

    # Uncached: a check reads the disk as it is now, never an earlier load of this process.
    data = load_site_data.__wrapped__(site.modality, site.data_paths)
    report = data.report
    lines = [f"site {site.site_id} ({site.modality})",
             f"data: {len(report.loaded)} records/images loaded, {report.num_skipped} skipped, "
             f"{len(data.labels)} training samples"]
    counts = [int((data.labels == k).sum()) for k in range(len(data.class_names))]
    lines.append("classes: " + ", ".join(f"{n}={c}" for n, c in zip(data.class_names, counts)))
    lines += [f"  skipped {s['path']}: {s['reason']} (fix: {s['fix']})" for s in report.skipped]
    if len(data.labels) == 0:
        where = site.data_paths[0] if len(site.data_paths) == 1 else f"{Path(site.data_paths[0]).parent} ({len(site.data_paths)} records)"
        raise ConfigError(f"{site.site_id}: no usable record in {where}; what was found:\n" + "\n".join(lines))
    from medgan_core.modalities import get_modality

    record = f"one {get_modality(site.modality).record_word}"
    unit = ("patient (all of a person's records)" if site.privacy_unit == "patient" else
            f"record ({record}, not one patient)" if site.privacy_unit == "record" else
            f"record ({record}) or patient, as the run asks (set [privacy] unit to fix it)")
    lines.append(f"privacy budget: epsilon {site.target_epsilon:g} per {unit}, "
                 f"delta {site.target_delta:g} (ledger {site.ledger_path}): {_spent(site)}")
    if site.privacy_unit == "patient":
        from medgan_core.config import RunConfig
        from medgan_core.site import patient_feasibility

        schedule = RunConfig(modality=site.modality)  # the default schedule; a run may ask for less
        lines.append(f"patient-level DP with the default schedule ({schedule.num_server_rounds} rounds x "
                     f"{schedule.local_steps} steps, {schedule.patients_per_step} patients per step): "
                     + patient_feasibility(site, schedule).verdict)
    lines.append(f"limits: at most {site.max_local_steps} local steps per round; non-private training "
                 + ("allowed" if site.allow_non_private else "refused"))
    lines.append("device: " + _device_line(site))
    lines.append("shared per training round: the GAN weights (generator + discriminator, DP-SGD on the "
                 "discriminator) and the scalars " + ", ".join(TRAIN_REPLY)
                 + "; once per site: the class counts with Gaussian noise (charged; the public size and FedAvg "
                   "weight follow from them). Per evaluation: the epsilon spent only. Audits: "
                 + ("noisy AUCs, charged" if site.release_audit else "kept at the site")
                 + ". Every key is declared in privacy/releases.py; no record, sample or per-patient value "
                   "leaves the site.")
    return "\n".join(lines)


def _device_line(site: SiteConfig) -> str:
    """Where this site trains; a ``[site] device`` this machine cannot give is a ConfigError here."""
    import torch

    from medgan_core.device import resolve_device

    if site.device is None:
        here = f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu (PyTorch sees no GPU)"
        return f"as the run asks (its default 'auto' is {here} here; set [site] device to fix it)"
    return f"[site] device = {site.device!r}: {resolve_device(site.device, where=site.site_id, key='[site] device')}"


def _spent(site: SiteConfig) -> str:
    if not site.ledger_path.exists():
        return "nothing released yet"
    from privacy.ledger import LedgerError, LedgerMissing, PrivacyLedger

    try:
        ledger = PrivacyLedger.read(site.ledger_path)
    except LedgerMissing as error:
        if error.site_state:  # state beside a missing ledger: never treat it as a fresh start
            raise ConfigError(str(error)) from error
        return "nothing released yet"
    except LedgerError as error:
        raise ConfigError(str(error)) from error
    return (f"spent epsilon {ledger.epsilon_spent():.3f} of {ledger.target_epsilon:g} per record in "
            f"{len(ledger.entries)} releases")


def run_supervised(command: list[str], *, env: dict[str, str], log: TextIO | None,
                   max_restarts: int | None, stable_after: float | None = None) -> int:
    """Run the SuperNode, echo its output, restart it when it exits unexpectedly.

    Returns:
        The SuperNode's last exit code (0 after a requested stop).
    """
    restarts, stopping = 0, False
    process: subprocess.Popen[str] | None = None

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if process is not None and process.poll() is None:
            logger.info("stopping the SuperNode (signal %d)", signum)
            stop_process(process, timeout=15)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            started = time.monotonic()
            # Same process group as the daemon: a Ctrl-C or a kill of the group reaches the
            # SuperNode, and its SuperExec and ClientApp children watch their parent's pid.
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, bufsize=1)
            logger.info("SuperNode started (pid %d)", process.pid)
            codes: list[int] = []
            reader = threading.Thread(target=_pump, args=(process, log, codes), daemon=True)
            reader.start()
            # Reap the SuperNode as soon as it exits: its SuperExec child shares the output
            # pipe and only stops once the SuperNode's pid is gone (not a zombie).
            code = process.wait()
            reader.join(timeout=30)
            flower_code = codes[-1] if codes else None
            if stopping or code == 0:
                return 0
            if flower_code in _FATAL_EXIT_CODES:
                logger.error("SuperNode stopped with Flower exit code %d (site configuration); not restarting",
                             flower_code)
                return code
            if max_restarts is not None and restarts >= max_restarts:
                logger.error("SuperNode stopped (Flower exit code %s); %d restarts done, giving up",
                             flower_code, restarts)
                return code
            if stable_after is not None and time.monotonic() - started > stable_after:
                restarts = 0  # it ran for a while: this is a new failure, not a crash loop
            delay = min(60.0, 2.0 ** restarts)
            restarts += 1
            logger.warning("SuperNode stopped (Flower exit code %s); restarting in %.0f s (restart %d)",
                           flower_code, delay, restarts)
            time.sleep(delay)
            if stopping:
                return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if process is not None and process.poll() is None:
            stop_process(process, timeout=15)


def _pump(process: subprocess.Popen[str], log: TextIO | None, codes: list[int]) -> None:
    """Echo the SuperNode's output to the console and the log; collect Flower exit codes."""
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if log is not None:
            log.write(_ANSI.sub("", line))
            log.flush()
        if found := _FLOWER_EXIT.search(line):
            codes.append(int(found.group(1)))


def fab_hash(paths: list[Path], *, policy: AppPolicy | None = None) -> tuple[str, bool]:
    """``sha256  PATH`` lines (as ``sha256sum`` prints them) for ``[app] allowed-fab-sha256``.

    With ``policy``, each FAB is also checked as this site's guard would check it.

    Returns:
        The text, and whether every FAB is allowed (always True without ``policy``).
    """
    lines, all_allowed = [], True
    for path in paths:
        content = path.read_bytes()
        if policy is None:
            lines.append(f"{hashlib.sha256(content).hexdigest()}  {path}")
            continue
        verdict = check_fab(content, policy=policy)
        all_allowed &= verdict.allowed
        lines.append(f"{verdict.sha256}  {path}  " + ("allowed" if verdict.allowed else "REFUSED")
                     + f" by policy {policy.policy}")
        lines += [f"  {problem}" for problem in verdict.problems]
    return "\n".join(lines), all_allowed


def _clear_installed_apps(flwr_home: Path) -> None:
    """Remove the apps earlier starts installed: the guard re-installs each run's app from
    its FAB after the check, and trusts no directory it did not just check."""
    apps = flwr_home / "apps"
    if apps.is_dir() and any(apps.iterdir()):
        logger.info("removing previously installed apps under %s (re-installed from each run's FAB after the "
                    "[app] policy check)", apps)
        shutil.rmtree(apps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``medgan site check``, ``medgan site start`` and ``medgan site fab-hash``."""
    sub = parser.add_subparsers(dest="site_command", required=True)
    check = sub.add_parser("check", help="validate the site config and data, show what the site shares")
    check.add_argument("--config", required=True, help="the site TOML")
    start = sub.add_parser("start", help="validate, then run this site's SuperNode (TLS + node authentication)")
    start.add_argument("--config", required=True, help="the site TOML")
    start.add_argument("--superlink", required=True, help="coordinator host:port")
    start.add_argument("--root-cert", type=Path, help="the coordinator's ca.crt")
    start.add_argument("--auth-key", type=Path, help="this site's private key (medgan certs site-key)")
    start.add_argument("--runtime-port", type=int, default=9094,
                       help="local port of the SuperNode's Runtime API (distinct per SuperNode on a host)")
    start.add_argument("--flwr-home", type=Path, help="Flower's home for this site, the daemon's own: its apps/ is "
                       "emptied at start (default: .flwr beside the TOML)")
    start.add_argument("--log-file", type=Path, help="daemon log (default: SITE_ID.log beside the TOML)")
    start.add_argument("--max-restarts", type=int, help="stop after this many SuperNode restarts (default: never)")
    start.add_argument("--max-wait-time", type=float,
                       help="seconds the SuperNode keeps reconnecting to a lost coordinator (default: forever)")
    start.add_argument("--insecure", action="store_true",
                       help="plain HTTP without node authentication: local tests only, never with patient data")
    fab = sub.add_parser("fab-hash", help="sha256 of built FABs, for [app] allowed-fab-sha256 in the site TOML")
    fab.add_argument("fab", type=Path, nargs="+", help="a .fab file (flwr build --app APP_DIR)")
    fab.add_argument("--config", help="also check each FAB against this site TOML's [app] policy")


def main(args: argparse.Namespace) -> int:
    """Run ``medgan site check|start|fab-hash``."""
    if args.site_command == "fab-hash":
        return _fab_hash_command(args)
    from medgan_core.site import SiteConfig

    toml = Path(args.config)
    try:
        site = SiteConfig.from_toml(toml)
        policy = AppPolicy.from_toml(toml)
        report = site_report(site) + "\n" + policy.describe()
    except (ConfigError, ValueError) as error:
        # To stderr directly, not through logging, whose handlers a host process may own.
        print(f"medgan site {args.site_command}: {error}", file=sys.stderr, flush=True)
        return 2
    print(report, flush=True)
    if args.site_command == "check":
        return 0
    base = toml.resolve().parent
    log_path = args.log_file or base / f"{site.site_id}.log"
    if args.insecure:
        logger.warning("INSECURE: --insecure sends model updates unencrypted and lets any SuperNode join. "
                       "Use only for local tests, never with patient data.")
    options = SuperNodeOptions(superlink=args.superlink, root_cert=args.root_cert, auth_key=args.auth_key,
                               insecure=args.insecure, runtime_port=args.runtime_port,
                               flwr_home=args.flwr_home or base / ".flwr", max_wait_time=args.max_wait_time)
    try:
        command = supernode_command(site_toml=toml, options=options)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    options.flwr_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(log_path, "a", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
        log.write(report + "\n")
        _clear_installed_apps(options.flwr_home)
        bin_dir = options.flwr_home / "bin"
        guard = install_guard(bin_dir, site_toml=toml)
        logger.info("%s; every ClientApp starts through %s", policy.describe(), guard)
        logger.info("site %s connecting to %s (log %s)", site.site_id, args.superlink, log_path)
        try:
            return run_supervised(command, env=guarded_env(flower_process_env(options.flwr_home), bin_dir),
                                  log=log, max_restarts=args.max_restarts, stable_after=120.0)
        finally:
            logging.getLogger().removeHandler(handler)


def _fab_hash_command(args: argparse.Namespace) -> int:
    try:
        policy = AppPolicy.from_toml(args.config) if args.config else None
        text, all_allowed = fab_hash(args.fab, policy=policy)
    except (ConfigError, OSError) as error:
        logger.error("%s", error)
        return 2
    print(text, flush=True)
    return 0 if all_allowed else 1
