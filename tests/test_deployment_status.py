"""``medgan coordinator status``: Flower's runs and sites (``flwr ls``, ``flwr supernode ls``)
from a real SuperLink, and the run's own record (rounds, each site's reported epsilon,
refusals, last metrics)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from medgan_cli.main import main as medgan
from medgan_core.run_dir import RunDirectory
from server.coordinator import SuperLinkOptions, write_connection

REPO = Path(__file__).resolve().parents[1]


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _recorded_run(run_dir: Path, small_run) -> None:
    """Two rounds as the ServerApp's RunRecorder writes them: node 11 trains twice, node 22
    is refused in round 2 (fixed code before the first ': ')."""
    directory = RunDirectory(run_dir)
    directory.write_json("config.json", {**small_run.to_mapping(), "run-dir": str(run_dir)})
    refusal = "medgan:budget-exhausted: the site's privacy budget does not allow this request"
    directory.append_metrics({"round": 1, "trained": 2, "refusals": {},
                              "sites": {"11": {"epsilon": 4.25, "num-examples": 300.0},
                                        "22": {"epsilon": 5.5, "num-examples": 200.0}},
                              "train": {"epsilon": 4.75, "g-loss": 0.8125}})
    directory.append_metrics({"round": 2, "trained": 1, "refusals": {"22": refusal},
                              "sites": {"11": {"epsilon": 7.125, "num-examples": 300.0}, "22": {"error": refusal}},
                              "train": {"epsilon": 7.125, "g-loss": 0.5}})


def test_status_names_the_fix_for_a_missing_or_foreign_state_dir(tmp_path, capsys):
    assert medgan(["coordinator", "status", "--state-dir", str(tmp_path / "none")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert medgan(["coordinator", "status", "--state-dir", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert "not a coordinator state directory" in err and "medgan coordinator start --state-dir" in err
    assert json.loads(out)["success"] is False


def test_status_fails_clearly_when_no_superlink_answers(tmp_path, capsys):
    state, port = tmp_path / "coordinator", _unused_port()
    write_connection(SuperLinkOptions(host="127.0.0.1", port=port, certs_dir=None, state_dir=state, insecure=True))

    code = medgan(["coordinator", "status", "--state-dir", str(state), "--json"])

    out, err = capsys.readouterr()
    assert code == 1
    assert f"the SuperLink at 127.0.0.1:{port} did not answer" in err and "is it running?" in err
    assert "Connection to the SuperLink is unavailable" in json.loads(out)["error"]


@pytest.mark.slow
def test_status_lists_the_launched_run_and_the_runs_own_record(tmp_path, capsys, small_run):
    state, port = tmp_path / "coordinator", _unused_port()
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-default"), "FLWR_TELEMETRY_ENABLED": "0",
           "FLWR_DISABLE_UPDATE_CHECK": "1"}
    superlink = subprocess.Popen([sys.executable, "-m", "medgan_cli", "coordinator", "start", "--insecure",
                                  "--state-dir", str(state), "--port", str(port)], cwd=REPO, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "flwr" / "config.toml").exists() or not _listening(port):
            assert superlink.poll() is None and time.monotonic() < deadline, "the SuperLink did not start"
            time.sleep(0.2)
        assert medgan(["coordinator", "status", "--state-dir", str(state), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["runs"] == []
        # A run that fails at once (resume-from names no checkpoint): Flower records it.
        medgan(["coordinator", "run", "--state-dir", str(state), "--run-dir", str(tmp_path / "failed"),
                "--run-config", f"num-server-rounds=1 resume-from='{tmp_path / 'nothing'}'"])
        capsys.readouterr()
        (state / "sites.json").write_text(json.dumps({"11": "hospital-a"}))
        _recorded_run(tmp_path / "recorded", small_run)

        text_code = medgan(["coordinator", "status", "--state-dir", str(state), "--run-dir", str(tmp_path / "recorded")])
        text = capsys.readouterr().out
        json_code = medgan(["coordinator", "status", "--state-dir", str(state), "--json"])
        listed = json.loads(capsys.readouterr().out)
    finally:
        os.killpg(superlink.pid, signal.SIGTERM)
        superlink.wait(timeout=30)

    assert text_code == json_code == 0
    [run] = listed["runs"]
    assert run["status"] == "finished:failed" and run["finished-at"]
    assert listed["sites"] == [] and listed["run"] is None  # no SuperNode joined
    assert f"SuperLink 127.0.0.1:{port}" in text
    assert f"runs (flwr ls): 1\n  {run['run-id']}: finished:failed, " in text
    assert "sites (flwr supernode ls): none" in text
    _assert_recorded_run(text, tmp_path / "recorded")


def _assert_recorded_run(text: str, run_dir: Path) -> None:
    assert f"run directory {run_dir}: 2 of 2 rounds done (2 recorded), last checkpoint none, DP on" in text
    assert "  hospital-a: epsilon 7.125 after round 2\n" in text
    assert "  node 22: epsilon 5.500 after round 1; refused round 2 (medgan:budget-exhausted: " in text
    assert "the site's ledger is authoritative: `medgan privacy ledger show PATH` at the site" in text
    assert "refusals: 1 (medgan:budget-exhausted x1); round 2: 1 refused, 1 trained" in text
    assert "last round 2: 1 site(s) trained; epsilon 7.125, g-loss 0.5" in text


def test_run_view_reads_each_sites_last_reply(tmp_path, small_run):
    from server.deployment_status import format_run_view, run_view

    _recorded_run(tmp_path / "recorded", small_run)

    view = run_view(tmp_path / "recorded", {"11": "hospital-a"})

    assert view["sites"]["11"] == {"name": "hospital-a", "epsilon": 7.125, "round": 2}
    assert view["sites"]["22"]["epsilon"] == 5.5 and view["sites"]["22"]["refused"]["round"] == 2
    assert view["unit"] == small_run.unit and view["rounds_recorded"] == 2
    _assert_recorded_run("\n".join(format_run_view(view)) + "\n", tmp_path / "recorded")
