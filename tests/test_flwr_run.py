"""`flwr run .` from the repository root runs the app as a Flower simulation, beside
`medgan simulate`: Flower builds the app from this directory, fuses the run config of
pyproject.toml with --run-config, and the sites train on the bundled records."""

import subprocess
from pathlib import Path

import pytest

from medgan_core.run_dir import RunDirectory

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_flwr_run_dot_trains_on_the_bundled_records(tmp_path):
    from simulations.federation import local_simulation_superlink

    run_dir = tmp_path / "run"
    home = tmp_path / "flwr-home"
    home.mkdir()
    with local_simulation_superlink(home) as env:
        started = subprocess.run(
            ["flwr", "run", ".", "--run-config",
             f"num-server-rounds=1 local-steps=2 batch-size=32 run-dir='{run_dir}'",
             "--federation-config", "num_supernodes=3", "--stream"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=240)

    assert started.returncode == 0, started.stdout + started.stderr
    assert "Successfully started run" in started.stdout
    directory = RunDirectory(str(run_dir))
    assert (directory.checkpoints / "latest.pt").exists()
    [first] = directory.read_metrics()
    assert first["round"] == 1 and first["trained"] == 3
    assert len(first["sites"]) == 3  # keyed by Flower node id
    assert not any("error" in site for site in first["sites"].values())
    # pyproject.toml is Flower's app config only: no legacy federations table for
    # `flwr run` 1.42 to "migrate" by rewriting the file.
    assert "[tool.flwr.federations" not in (REPO / "pyproject.toml").read_text()


@pytest.mark.slow
def test_a_failed_flower_run_raises_instead_of_passing_silently(tmp_path):
    from simulations.federation import resolve_run_config, run_federation

    # The ServerApp refuses to resume from a directory without a checkpoint: Flower ends
    # the run as failed, and `flwr run --stream` itself still exits 0.
    missing = tmp_path / "no-such-run"
    run = resolve_run_config({"run-dir": str(tmp_path / "run"), "num-server-rounds": 1, "local-steps": 2,
                              "resume-from": str(missing)})

    with pytest.raises(RuntimeError, match="finished:failed"):
        run_federation(run)
