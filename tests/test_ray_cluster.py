"""The simulation on an existing Ray cluster (``medgan simulate --ray-address``): Flower's
Ray backend joins the cluster through ``RAY_ADDRESS`` instead of starting its own Ray."""

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from medgan_core.processes import stop_process
from medgan_core.run_dir import RunDirectory
from simulations.federation import federation_config


def test_a_private_ray_gets_every_core_and_a_cluster_keeps_its_own():
    private = federation_config(num_sites=3, cpus=8)
    on_cluster = federation_config(num_sites=3, cpus=8, ray_address="127.0.0.1:6379")

    assert private == "num_supernodes=3 client_resources_num_cpus=1 init_args_num_cpus=8 verbose=false"
    # Ray refuses num_cpus when it joins an existing cluster: the cluster's resources decide.
    assert on_cluster == "num_supernodes=3 client_resources_num_cpus=1 verbose=false"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def ray_head(*, num_cpus: int) -> Iterator[tuple[str, Path]]:
    """``ray start --head --block`` on loopback, on free ports, in its own temp dir; yields
    its address and that temp dir. Stopped by terminating that one process (``--block`` then stops every
    process it started), never ``ray stop``, which would stop every Ray on the machine."""
    port = _free_port()
    ray = str(Path(sys.executable).parent / "ray")
    with tempfile.TemporaryDirectory(prefix="rayt") as temp_dir:
        command = [ray, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
                   "--num-cpus", str(num_cpus), "--include-dashboard", "false", "--disable-usage-stats",
                   "--temp-dir", temp_dir, "--ray-client-server-port", str(_free_port()),
                   "--dashboard-agent-listen-port", str(_free_port()),
                   "--dashboard-agent-grpc-port", str(_free_port()),
                   "--runtime-env-agent-port", str(_free_port()), "--metrics-export-port", str(_free_port())]
        log = Path(temp_dir) / "ray-start.log"
        head = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "Ray runtime started" not in log.read_text():
                assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
            yield f"127.0.0.1:{port}", Path(temp_dir)
        finally:
            stop_process(head, timeout=30)


@pytest.mark.slow
def test_two_sites_train_on_an_existing_ray_cluster(tmp_path, monkeypatch):
    from simulations.federation import resolve_run_config, run_federation

    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "num-server-rounds": 1, "local-steps": 2,
                              "batch-size": 32, "site-records": "mitdb/106 mitdb/100|mitdb/105 mitdb/123",
                              "min-nodes": 2})
    with ray_head(num_cpus=2) as (address, temp_dir):
        # Only the one given: a stray RAY_ADDRESS in the caller's environment is not used.
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
        run_federation(run, ray_address=address)
        [first] = RunDirectory(run.run_dir).read_metrics()
        # The sites ran in the cluster's workers: their logs are in its session directory.
        actor_logs = [path for path in temp_dir.glob("session_latest/logs/worker-*.out")
                      if "ClientAppActor" in path.read_text(errors="replace")]

    assert first["round"] == 1 and first["trained"] == 2
    assert not any("error" in site for site in first["sites"].values())
    assert actor_logs
