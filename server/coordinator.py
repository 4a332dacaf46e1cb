"""The coordinator: ``medgan coordinator start | register | run | status``.

* ``start`` runs ``flower-superlink`` with TLS (``--ssl-*``) and SuperNode authentication
  (``--enable-supernode-auth``), keeps its state in a SQLite database so registered sites
  and their node ids survive a restart, and registers the sites' public keys.
* ``register`` adds site public keys to a running SuperLink (``flwr supernode register``).
* ``run`` launches the Flower app on the federation (``flwr run APP medgan --stream``),
  streams the ServerApp's log, and prints each round's per-site record from the run
  directory. ``--resume`` continues the run directory's latest checkpoint.
* ``status`` shows Flower's runs and sites and, with ``--run-dir``, the run's own record
  (:mod:`server.deployment_status`).

Everything Flower keeps for the coordinator (the ``medgan`` SuperLink connection in
``config.toml``, installed apps, the database) lives in ``--state-dir``; Flower finds it
through ``FLWR_HOME``, so the user's own ``~/.flwr`` is never read or written
(:mod:`server.coordinator_state`).

In Flower 1.41 the Fleet, Control and Runtime APIs share one HTTPS port (``--port``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medgan_core.errors import ConfigError
from medgan_core.processes import console_script
from server import deployment_status
from server.coordinator_state import CONNECTION, SuperLinkUnavailable, flwr_env, flwr_json, remember_site, site_names

__all__ = [
    "APP_PACKAGES",
    "CONNECTION",
    "SuperLinkOptions",
    "add_arguments",
    "flwr_env",
    "main",
    "register_site",
    "stage_app",
    "superlink_command",
    "write_connection",
]

logger = logging.getLogger(__name__)

# The packages the ServerApp and ClientApp import; the app shipped to sites holds only these.
APP_PACKAGES = ("medgan_core", "privacy", "client", "server")
APP_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SuperLinkOptions:
    """How the coordinator's SuperLink listens.

    Attributes:
        host: Interface to bind; ``0.0.0.0`` to accept sites from other machines.
        port: The one port of the Fleet, Control and Runtime APIs.
        certs_dir: Holds ``ca.crt``, ``superlink.crt``, ``superlink.key`` (``medgan certs tls``).
        state_dir: Flower home and SuperLink database of this coordinator.
        insecure: Plain HTTP and no node authentication (local tests only).
    """

    host: str
    port: int
    certs_dir: Path | None
    state_dir: Path
    insecure: bool = False

    @property
    def address(self) -> str:
        """Where local tools (``flwr``) reach the SuperLink."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{host}:{self.port}"

    @property
    def flwr_home(self) -> Path:
        return self.state_dir / "flwr"


def superlink_command(options: SuperLinkOptions) -> list[str]:
    """The ``flower-superlink`` command line.

    Raises:
        ConfigError: if a certificate file is missing (secure mode).
    """
    command = [console_script("flower-superlink"), "--host", options.host, "--port", str(options.port),
               "--database", str((options.state_dir / "superlink.db").resolve()),
               # The app's dependencies are this environment's; never `uv sync` at run time.
               "--disable-runtime-dependency-installation"]
    if options.insecure:
        return command + ["--insecure"]
    files = _tls_files(options.certs_dir)
    return command + ["--ssl-ca-certfile", str(files["ca"]), "--ssl-certfile", str(files["cert"]),
                      "--ssl-keyfile", str(files["key"]), "--enable-supernode-auth"]


def _tls_files(certs_dir: Path | None) -> dict[str, Path]:
    if certs_dir is None:
        raise ConfigError("--certs DIR is required (medgan certs tls --out DIR); --insecure is for local tests only")
    files = {"ca": certs_dir / "ca.crt", "cert": certs_dir / "superlink.crt", "key": certs_dir / "superlink.key"}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}; create them with: medgan certs tls --out {certs_dir}")
    return {k: p.resolve() for k, p in files.items()}


def write_connection(options: SuperLinkOptions) -> Path:
    """Write the ``medgan`` SuperLink connection into ``<state>/flwr/config.toml``."""
    import tomli_w  # a Flower dependency

    path = options.flwr_home / "config.toml"
    options.flwr_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = tomllib.loads(path.read_text()) if path.exists() else {}
    connection: dict[str, object] = {"address": options.address}
    if options.insecure:
        connection["insecure"] = True
    else:
        connection["root-certificates"] = str(_tls_files(options.certs_dir)["ca"])
    superlink = config.setdefault("superlink", {})
    superlink[CONNECTION] = connection
    superlink.setdefault("default", CONNECTION)
    path.write_text(tomli_w.dumps(config))
    return path


def register_site(public_key: Path, *, state_dir: Path, timeout: float = 120) -> int | None:
    """Register one site's public key with the running SuperLink.

    Returns:
        The site's node id, or None if the key was already registered.

    Raises:
        RuntimeError: if the SuperLink refuses the key for another reason.
    """
    command = [console_script("flwr"), "supernode", "register", str(public_key), CONNECTION,
               "--name", public_key.stem, "--format", "json"]
    done = subprocess.run(command, env=flwr_env(state_dir), capture_output=True, text=True, timeout=timeout)
    try:
        reply = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError as exc:
        raise RuntimeError(f"flwr supernode register {public_key}: {done.stdout}{done.stderr}") from exc
    if reply.get("success"):
        return int(reply["node-id"])
    if "already in use" in str(reply.get("error-message", "")):
        return None
    raise RuntimeError(f"{public_key}: {reply.get('error-message', reply)}")


def stage_app(out_dir: Path, app_dir: Path = APP_DIR) -> Path:
    """Copy the Flower app (pyproject + :data:`APP_PACKAGES`) into ``out_dir``.

    ``flwr run`` ships this copy to every site. The pyproject's legacy
    ``[tool.flwr.federations]`` table is left out: given a project that has it,
    ``flwr run`` (1.41, 1.42) "migrates" it by rewriting the project's pyproject.toml.
    """
    import tomli_w

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    config = tomllib.loads((app_dir / "pyproject.toml").read_text())
    config.get("tool", {}).get("flwr", {}).pop("federations", None)
    (out_dir / "pyproject.toml").write_text(tomli_w.dumps(config))
    for package in APP_PACKAGES:
        shutil.copytree(app_dir / package, out_dir / package,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "test_*.py"))
    return out_dir


def _wait_for_port(address: str, process: subprocess.Popen, timeout: float) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with code {process.returncode}; see its log above")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"SuperLink not listening on {address} after {timeout:.0f} s")


def _pump(process: subprocess.Popen, log_path: Path) -> None:
    """Echo the SuperLink's output to the console and its log file until it exits."""
    import threading

    def copy() -> None:
        with open(log_path, "a", encoding="utf-8") as log:
            for line in process.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                log.write(line)
                log.flush()

    threading.Thread(target=copy, daemon=True).start()


def cmd_start(args: argparse.Namespace) -> int:
    options = SuperLinkOptions(host=args.host, port=args.port, certs_dir=args.certs, state_dir=args.state_dir,
                               insecure=args.insecure)
    if options.insecure:
        logger.warning("INSECURE: --insecure runs the SuperLink over plain HTTP with no SuperNode "
                       "authentication: any process that can reach port %d can join and read the model. "
                       "Local tests only, never with patient data.", options.port)
    try:
        command = superlink_command(options)
        keys = _public_keys(args.site_key)
        options.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_connection(options)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    process = subprocess.Popen(command, env=flwr_env(options.state_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    _pump(process, options.state_dir / "superlink.log")

    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        logger.info("stopping the SuperLink (signal %d)", signum)
        stopping.append(signum)
        process.terminate()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        _wait_for_port(options.address, process, timeout=args.startup_timeout)
        for key in keys:
            if options.insecure:
                logger.warning("--insecure: node authentication is off, %s is not registered", key)
                continue
            node_id = register_site(key, state_dir=options.state_dir)
            logger.info("site %s: %s", key.stem,
                        f"registered as node {node_id}" if node_id else "already registered")
            if node_id:
                remember_site(options.state_dir, node_id, key.stem)
        logger.info("SuperLink ready on %s (connection %r, state %s)", options.address, CONNECTION, options.state_dir)
        code = process.wait()
        return 0 if stopping else code
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        logger.error("%s", error)
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)
        return 1


def _public_keys(items: list[Path]) -> list[Path]:
    keys: list[Path] = []
    for item in items:
        found = sorted(item.glob("*.pub")) if item.is_dir() else [item]
        for key in found:
            if not key.is_file():
                raise ConfigError(f"{key}: no such public key file (medgan certs site-key makes SITE.pub)")
        keys += found
    return keys


def cmd_register(args: argparse.Namespace) -> int:
    try:
        keys = _public_keys(args.site_key)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    status = 0
    for key in keys:
        try:
            node_id = register_site(key, state_dir=args.state_dir)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            logger.error("%s", error)
            status = 1
            continue
        if node_id:
            remember_site(args.state_dir, node_id, key.stem)
        print(f"{key.stem}: " + (f"registered as node {node_id}" if node_id else "already registered"))
    return status


def cmd_run(args: argparse.Namespace) -> int:
    from click import ClickException  # what Flower's config parser raises
    from flwr.common.config import get_fused_config_from_dir, parse_config_args

    from medgan_core.config import RunConfig

    run_dir = Path(args.run_dir).resolve()
    if "'" in str(run_dir):
        logger.error("--run-dir must not contain a quote (')")
        return 2
    overrides = [*(args.run_config or []), f"run-dir='{run_dir}'"]
    if args.resume:
        if not (run_dir / "checkpoints" / "latest.pt").exists():
            logger.error("--resume: %s has no checkpoint to continue from", run_dir)
            return 2
        overrides.append(f"resume-from='{run_dir}'")
    elif (run_dir / "metrics.jsonl").exists():
        logger.error("%s already holds a run; pass --resume to continue it or choose another --run-dir", run_dir)
        return 2
    try:  # the same fuse and checks the ServerApp will do, before anything is shipped
        RunConfig.from_mapping(get_fused_config_from_dir(args.app, parse_config_args(overrides)))
    except (ConfigError, ValueError, ClickException) as error:
        logger.error("%s", error)
        return 2
    app = stage_app(args.state_dir / "app", args.app)
    command = [console_script("flwr"), "run", str(app), CONNECTION, "--stream"]
    for item in overrides:
        command += ["--run-config", item]
    logger.info("launching on the federation: %s", " ".join(command[1:]))
    started = time.monotonic()
    process = subprocess.Popen(command, env=flwr_env(args.state_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    run_id = _follow(process)  # `flwr run --stream` returns when the run ends
    code = process.wait()
    _print_rounds(run_dir, site_names(args.state_dir))
    status = _run_status(run_id, args.state_dir) if run_id else "not started"
    logger.info("run %s: %s after %.0f s; run directory %s", run_id, status, time.monotonic() - started, run_dir)
    return code if status == "finished:completed" else (code or 1)


def _follow(process: subprocess.Popen) -> str | None:
    """Echo ``flwr run --stream`` until the run ends; return the run id it printed."""
    run_id = None
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if found := re.search(r"Successfully started run (\d+)", line):
            run_id = found.group(1)
    return run_id


def _run_status(run_id: str, state_dir: Path) -> str:
    """``finished:completed``, ``finished:failed``, ... as ``flwr ls`` reports it."""
    try:
        return str(flwr_json(["ls", "--run-id", run_id], state_dir=state_dir, timeout=120)["runs"][0]["status"])
    except (SuperLinkUnavailable, KeyError, IndexError) as error:
        return f"unknown ({error})"


def _epsilon(value: float | None) -> str:
    return "epsilon n/a (non-private)" if value is None else f"epsilon {value:.3f}"


def _print_rounds(run_dir: Path, names: dict[str, str]) -> None:
    """One line per round: each site's epsilon, or its refusal."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        logger.warning("no rounds recorded in %s", run_dir)
        return
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        sites = "; ".join(f"{names.get(node, 'node ' + node)}: "
                          + (f"refused ({site['error']})" if "error" in site else _epsilon(site.get("epsilon")))
                          for node, site in sorted(record.get("sites", {}).items()))
        print(f"round {record['round']}: {sites}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``medgan coordinator start|register|run|status``."""
    sub = parser.add_subparsers(dest="coordinator_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state-dir", type=Path, default=Path("coordinator"),
                        help="Flower home and SuperLink database of this coordinator (default: ./coordinator)")

    start = sub.add_parser("start", parents=[common], help="run the SuperLink (TLS + node authentication)")
    start.add_argument("--certs", type=Path, help="directory from `medgan certs tls`")
    start.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 for remote sites")
    start.add_argument("--port", type=int, default=9092, help="the SuperLink's one port (Fleet, Control, Runtime)")
    start.add_argument("--site-key", type=Path, action="append", default=[],
                       help="a site's public key, or a directory of SITE.pub files (repeatable)")
    start.add_argument("--startup-timeout", type=float, default=120)
    start.add_argument("--insecure", action="store_true",
                       help="plain HTTP, no node authentication: local tests only, never with patient data")
    start.set_defaults(coordinator_func=cmd_start)

    register = sub.add_parser("register", parents=[common], help="register site public keys with the running SuperLink")
    register.add_argument("site_key", type=Path, nargs="+", help="SITE.pub files or directories of them")
    register.set_defaults(coordinator_func=cmd_register)

    run = sub.add_parser("run", parents=[common], help="launch the app on the federation and follow it")
    run.add_argument("--run-config", action="append", help='overrides, e.g. "num-server-rounds=4 local-steps=200"')
    run.add_argument("--run-dir", required=True, help="where the ServerApp writes checkpoints and metrics")
    run.add_argument("--resume", action="store_true", help="continue RUN_DIR from its latest checkpoint")
    run.add_argument("--app", type=Path, default=APP_DIR, help="the Flower app (default: this project)")
    run.set_defaults(coordinator_func=cmd_run)

    status = sub.add_parser("status", parents=[common],
                            help="runs and sites (flwr ls, flwr supernode ls); with --run-dir, rounds and epsilons")
    deployment_status.add_arguments(status)


def main(args: argparse.Namespace) -> int:
    return args.coordinator_func(args)
