"""Run a federation of simulated hospitals with Flower's simulation engine (Ray).

The run configuration is the Flower app's own (``[tool.flwr.app.config]`` in
``pyproject.toml``) fused with the overrides given here, exactly as ``flwr run`` does,
and every node and the ServerApp receive it through their Flower ``Context``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from flwr.common.config import get_fused_config_from_dir

from medgan_core.config import RunConfig
from medgan_core.device import resolve_device
from medgan_core.errors import ConfigError
from medgan_core.processes import console_script, flower_process_env, stop_process

__all__ = ["APP_DIR", "SiteCounts", "check_gpus_per_site", "check_patient_level_feasible", "check_run_device",
           "federation_config", "local_simulation_superlink", "log_site_class_counts", "resolve_run_config", "run_federation",
           "site_class_counts", "to_run_config_arg"]

logger = logging.getLogger(__name__)

APP_DIR = Path(__file__).resolve().parents[1]


def resolve_run_config(overrides: dict[str, Any]) -> RunConfig:
    """Fuse pyproject defaults with ``overrides`` and make paths absolute.

    Paths become absolute because the simulated nodes run in Ray worker processes whose
    working directory is not the caller's.
    """
    RunConfig.reject_unknown_keys(overrides)  # before Flower's fuser, whose message names no fix
    fused = get_fused_config_from_dir(APP_DIR, dict(overrides))
    run = RunConfig.from_mapping(fused)
    def absolute(path: str, base: Path) -> str:
        return str(Path(path) if Path(path).is_absolute() else (base / path).resolve())
    run = replace(
        run,
        run_dir=absolute(run.run_dir, Path.cwd()),
        data_root=absolute(run.data_root, Path.cwd() if "data-root" in overrides else APP_DIR),
        resume_from=absolute(run.resume_from, Path.cwd()) if run.resume_from else "",
        pretrained=absolute(run.pretrained, Path.cwd() if "pretrained" in overrides else APP_DIR)
        if run.pretrained else "",
    )
    if run.pretrained:
        from medgan_core.pretrained_weights import load_pretrained
        from medgan_core.pretraining import check_public_split

        # Loaded here, not only in the ServerApp: a pretraining for another model is refused
        # with its fix before Flower starts, and no site or hold-out patient may be in it.
        check_public_split(run, load_pretrained(run)[1])
    return run


def check_patient_level_feasible(run: RunConfig) -> None:
    """With patient-level DP, every simulated site must be able to train usefully; say
    which cannot, with the noise it would need and why, before anything is spent.

    Raises:
        ConfigError: a simulated site cannot train at the patient level.
    """
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


@dataclass(frozen=True)
class SiteCounts:
    """One simulated site's data: patients, and records (images, beats) per class name."""

    patients: int
    per_class: dict[str, int]


def site_class_counts(run: RunConfig) -> list[SiteCounts]:
    """What each simulated site of ``run`` holds, by class (reads the sites' data, as the
    report does: the same patients the sites train on)."""
    from medgan_core.modalities import get_modality

    modality = get_modality(run.modality)
    sites, _ = modality.evaluation_data(run)
    return [SiteCounts(patients=len(set(site.patients)),
                       per_class={name: int((site.labels == k).sum()) for k, name in enumerate(modality.class_names)})
            for site in sites]


def log_site_class_counts(run: RunConfig) -> list[SiteCounts]:
    """Log each simulated site's patients and class counts (``partition`` shows how skewed
    the sites are); returns them."""
    split = "records" if run.dirichlet_alpha is None else f"dirichlet, alpha {run.dirichlet_alpha:g}"
    counts = site_class_counts(run)
    for k, site in enumerate(counts):
        total = sum(site.per_class.values()) or 1
        mix = ", ".join(f"{name} {n} ({n / total:.0%})" for name, n in site.per_class.items())
        logger.info("site-%d (partition %s): %d patients; %s", k, split, site.patients, mix)
    return counts


def run_federation(run: RunConfig, *, num_sites: int | None = None, verbose: bool = False,
                   ray_address: str | None = None, gpus_per_site: float | None = None) -> None:
    """Run ``run.num_server_rounds`` rounds over ``num_sites`` simulated SuperNodes.

    Each simulated node is one site (its partition id indexes ``site-records``). The run
    goes through Flower's public path, ``flwr run APP --run-config ... --stream``, against
    a simulation SuperLink this function starts on free local ports with its own Flower
    home (a temporary directory, never the user's ``~/.flwr``) and stops afterwards.

    Args:
        run: The run configuration every node and the ServerApp receive.
        num_sites: Simulated SuperNodes; by default one per group of ``site-records``.
        verbose: Flower's verbose simulation logs.
        ray_address: An existing Ray cluster to run the sites' ClientApps on (e.g.
            ``"127.0.0.1:6379"`` from ``ray start --head``); ``None`` starts a private Ray
            instance with every local core. See :func:`federation_config`.
        gpus_per_site: The GPU share Ray reserves for each site's ClientApp (e.g. 0.25:
            four sites share one GPU); ``None`` asks for none, and Ray then hides the GPUs
            from the sites (``device="auto"`` trains on the CPU).

    Raises:
        ConfigError: ``gpus_per_site`` is not a valid Ray GPU share, or asks a private Ray
            instance for GPUs on a machine where PyTorch sees none (Ray would wait forever).
        RuntimeError: The SuperLink did not start, or the run did not finish as completed.
    """
    num_sites = num_sites or len(run.site_record_groups())
    check_gpus_per_site(gpus_per_site, ray_address=ray_address)
    cpus = os.cpu_count() or 1
    logger.info("simulating %d sites for %d rounds on %s; run dir %s", num_sites, run.num_server_rounds,
                f"the Ray cluster at {ray_address}" if ray_address else f"{cpus} CPUs", run.run_dir)
    federation = federation_config(num_sites=num_sites, cpus=cpus, verbose=verbose, ray_address=ray_address,
                                   gpus_per_site=gpus_per_site)
    with tempfile.TemporaryDirectory(prefix="medgan-flwr-") as home:
        with local_simulation_superlink(Path(home), ray_address=ray_address) as env:
            # Flower's log stream goes to this process's stderr, beside its other log lines;
            # stdout stays for what the caller prints (medgan simulate: the report).
            started = subprocess.run(
                [console_script("flwr"), "run", str(APP_DIR), "local", "--run-config", to_run_config_arg(run.to_mapping()),
                 "--federation-config", federation, "--stream"], env=env, cwd=APP_DIR, stdout=2, check=False)
            if started.returncode != 0:
                raise RuntimeError(f"flwr run exited with {started.returncode}; see the lines above")
            statuses = run_statuses(env=env)  # this SuperLink is fresh: its one run is ours
    if statuses != ["finished:completed"]:
        raise RuntimeError(f"the Flower run ended as {statuses}; see the log lines above")


def federation_config(*, num_sites: int, cpus: int, verbose: bool = False, ray_address: str | None = None,
                      gpus_per_site: float | None = None) -> str:
    """The ``--federation-config`` of a simulated run: one CPU per ClientApp, so Ray runs
    ``floor(CPUs / 1)`` ClientApp actors side by side and the sites queue for them.

    ``gpus_per_site`` adds ``client_resources_num_gpus``, only when given: each ClientApp
    actor then also reserves that share of a GPU (Ray sets its ``CUDA_VISIBLE_DEVICES``),
    so ``floor(GPUs / share)`` actors run at once. Without it the actors reserve no GPU,
    and Ray hides the GPUs from them.

    A private Ray instance gets every local core (``init_args_num_cpus``). Flower 1.42's
    federation config has no field for a cluster address: Flower's Ray backend calls
    ``ray.init(**init_args)``, which reads ``RAY_ADDRESS`` from the environment (set by
    :func:`local_simulation_superlink`), and Ray refuses ``num_cpus`` when it joins an
    existing cluster: the cluster's own resources decide the actors then.
    """
    parts = [f"num_supernodes={num_sites}", "client_resources_num_cpus=1"]
    if gpus_per_site is not None:
        parts.append(f"client_resources_num_gpus={gpus_per_site!r}")
    if ray_address is None:
        parts.append(f"init_args_num_cpus={cpus}")
    parts.append(f"verbose={'true' if verbose else 'false'}")
    return " ".join(parts)


def check_gpus_per_site(gpus_per_site: float | None, *, ray_address: str | None = None) -> None:
    """Refuse a GPU share Ray cannot schedule, before anything starts.

    Ray takes a share in (0, 1] or a whole number of GPUs. A private Ray instance (no
    ``ray_address``) sees this machine's GPUs only; asking it for a GPU share where PyTorch
    sees none would leave every site waiting for a GPU forever. A cluster's GPUs may be on
    other nodes, so there only the number is checked.

    Raises:
        ConfigError: naming ``--gpus-per-site``, the value and the fix.
    """
    if gpus_per_site is None:
        return
    if not (math.isfinite(gpus_per_site) and 0 < gpus_per_site and (gpus_per_site <= 1 or gpus_per_site.is_integer())):
        raise ConfigError(f"--gpus-per-site {gpus_per_site!r} is invalid; use a share of one GPU in (0, 1] "
                          "(0.25: four sites per GPU) or a whole number of GPUs")
    if ray_address is None and not torch.cuda.is_available():
        raise ConfigError(f"--gpus-per-site {gpus_per_site!r} asks Ray for GPUs, but PyTorch sees no GPU on this "
                          "machine; fix: leave --gpus-per-site out (the sites train on the CPU), or run on a machine "
                          "with an NVIDIA GPU and a CUDA build of PyTorch")


def check_run_device(run: RunConfig, *, gpus_per_site: float | None, ray_address: str | None = None) -> None:
    """Refuse ``device = 'cuda...'`` that no simulated site could honour, before anything starts.

    Each site resolves its device itself (and refuses a round it cannot train), but on a
    private Ray instance every site would refuse every round: here PyTorch sees no GPU, or
    Ray, given no ``--gpus-per-site``, hides the GPUs from the sites' ClientApps. A cluster
    (``ray_address``) is not checked: its GPUs may be on other nodes.

    Raises:
        ConfigError: naming ``device``, the value and the fix.
    """
    if ray_address is not None or not run.device.startswith("cuda"):
        return
    resolve_device(run.device)  # no CUDA (or no such GPU) on this machine: says so and how to fix
    if gpus_per_site is None:
        raise ConfigError(f"run-config: device = {run.device!r} but Ray shows the simulated sites no GPU unless asked; "
                          "fix: add --gpus-per-site (e.g. 0.25: four sites per GPU), or device = 'auto'")


def to_run_config_arg(mapping: dict[str, Any]) -> str:
    """``mapping`` as one ``--run-config`` string in the TOML values Flower's parser reads."""
    import tomli_w

    return " ".join(tomli_w.dumps({key: value}).strip().replace(" = ", "=", 1) for key, value in mapping.items())


def run_statuses(*, env: dict[str, str]) -> list[str]:
    """The status of each run on the SuperLink of ``env`` (e.g. ``finished:completed``)."""
    import json

    listed = subprocess.run([console_script("flwr"), "ls", "local", "--format", "json"],
                            env=env, cwd=APP_DIR, capture_output=True, text=True, check=False)
    try:
        return [run["status"] for run in json.loads(listed.stdout)["runs"]]
    except (ValueError, KeyError, TypeError):
        return [f"unknown ({listed.stdout.strip() or listed.stderr.strip()})"]

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_simulation_superlink(flwr_home: Path, *, timeout: float = 60.0,
                               ray_address: str | None = None) -> Iterator[dict[str, str]]:
    """A ``flower-superlink --simulation`` on free local ports, as ``flwr run`` starts for
    its ``:local:`` connection, but owned here: stopped on exit, never left detached.

    Yields the environment for ``flwr`` commands: ``FLWR_HOME`` holds a ``config.toml``
    whose ``local`` connection points at this SuperLink. Apps run in this environment:
    runtime dependency installation is off (no ``uv sync`` of a fresh one per run).
    The simulation process inherits it: ``RAY_ADDRESS`` is ``ray_address`` when given
    and unset otherwise, so a stray ``RAY_ADDRESS`` in the caller's shell never sends a
    run to a cluster it did not ask for.
    """
    http_port, control_port = _free_port(), _free_port()
    (flwr_home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{http_port}"\ninsecure = true\n')
    # Flower's processes start each other by name (flower-superexec, flwr-serverapp, ...):
    # this interpreter's environment goes first on PATH, so an un-activated venv (as in CI
    # and the README's scripts) finds them.
    env = {**flower_process_env(flwr_home), "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
    env.pop("RAY_ADDRESS", None)
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    log = flwr_home / "superlink.log"
    superlink = subprocess.Popen(
        [console_script("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
         "--control-api-address", f"127.0.0.1:{control_port}", "--host", "127.0.0.1", "--port", str(http_port),
         "--disable-runtime-dependency-installation", "--database", str(flwr_home / "state.db")],
        env=env, cwd=APP_DIR, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_healthy(superlink, http_port, timeout=timeout, log=log)
        yield env
    finally:
        stop_process(superlink, timeout=20)


def _wait_healthy(process: subprocess.Popen, port: int, *, timeout: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"flower-superlink exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"flower-superlink did not answer on 127.0.0.1:{port} within {timeout:.0f} s; see {log}")
