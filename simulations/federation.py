"""Run a federation of simulated hospitals with Flower's simulation engine (Ray).

The run configuration is the Flower app's own (``[tool.flwr.app.config]`` in
``pyproject.toml``) fused with the overrides given here, exactly as ``flwr run`` does,
and every node and the ServerApp receive it through their Flower ``Context``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from flwr.app import Context, RecordDict
from flwr.common.config import get_fused_config_from_dir

from medgan_core.config import RunConfig

__all__ = ["APP_DIR", "resolve_run_config", "run_federation"]

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
    return replace(
        run,
        run_dir=absolute(run.run_dir, Path.cwd()),
        data_root=absolute(run.data_root, Path.cwd() if "data-root" in overrides else APP_DIR),
        resume_from=absolute(run.resume_from, Path.cwd()) if run.resume_from else "",
    )


def run_federation(run: RunConfig, *, num_sites: int | None = None, verbose: bool = False) -> None:
    """Run ``run.num_server_rounds`` rounds over ``num_sites`` simulated SuperNodes.

    Each simulated node is one site (its partition id indexes ``site-records``).
    """
    # Imported here: importing Flower's simulation stack starts nothing, but is slow.
    from flwr.common.constant import RUN_ID_NUM_BYTES, SUPERLINK_NODE_ID, TASK_ID_NUM_BYTES
    from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
    from flwr.simulation.run_simulation import _run_simulation
    from flwr.supercore.constant import NOOP_FEDERATION_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supercore.telemetry import EventType

    from client.app import app as client_app
    from server.app import app as server_app

    num_sites = num_sites or len(run.site_record_groups())
    overrides = run.to_mapping()
    # The same Run set-up as flwr.simulation.run_simulation, plus the override config.
    flower_run = Run.create_empty(run_id=generate_rand_int_from_bytes(RUN_ID_NUM_BYTES))
    flower_run.primary_task_id = generate_rand_int_from_bytes(TASK_ID_NUM_BYTES)
    flower_run.federation_id = NOOP_FEDERATION_ID
    flower_run.override_config = overrides
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = flower_run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    context = Context(run_id=flower_run.run_id, node_id=0, node_config={}, state=RecordDict(),
                      run_config=get_fused_config_from_dir(APP_DIR, overrides))
    cpus = os.cpu_count() or 1
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": cpus, "include_dashboard": False},
    }
    logger.info("simulating %d sites for %d rounds on %d CPUs; run dir %s",
                num_sites, run.num_server_rounds, cpus, run.run_dir)
    # The Python-API entry point of Flower's simulation engine that `flwr run` uses for
    # local simulations; it accepts the app directory so the run config is fused as in
    # a deployed run (the public `run_simulation` passes an empty run config).
    _run_simulation(
        num_supernodes=num_sites, exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app, server_app=server_app, backend_name="ray",
        backend_config=backend_config, server_app_context=context, app_dir=str(APP_DIR),
        run=flower_run, verbose_logging=verbose, is_app=True,
    )
