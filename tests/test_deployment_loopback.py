"""A real deployment on 127.0.0.1: the `medgan` commands a coordinator and two hospitals
run, as separate processes, over TLS with SuperNode authentication.

One SuperLink (``medgan coordinator start``) and two site daemons (``medgan site start``),
each site with its own patients (bundled MIT-BIH records), TOML, key and privacy ledger.
Then: a node with an unregistered key and a node without TLS are refused; a 2-round run;
a coordinator restart (the sites reconnect on their own); a resumed third round in which
the site with the small budget refuses, in its log and in its reply, and the other trains.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from server.certs import create_site_key, create_tls

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MEDGAN = [sys.executable, "-m", "medgan_cli"]
# Site budgets: site-b's is spent by the resumed round's request, site-a's is not.
SITES = {"site-a": (["106", "100"], 50.0), "site-b": (["105", "123"], 3.0)}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(root: Path) -> dict[str, str]:
    # Flower must never touch the real ~/.flwr: every process gets a FLWR_HOME in tmp.
    return {**os.environ, "FLWR_HOME": str(root / "flwr-default"), "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}


def _medgan(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*MEDGAN, *args], cwd=REPO, env=_env(root), capture_output=True, text=True,
                          timeout=timeout)


class Processes:
    """Background processes, each in its own process group so a kill reaches its children."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> Path:
        log = self.root / f"{name}.out"
        with open(log, "a") as out:
            self.running[name] = subprocess.Popen([*MEDGAN, *args], cwd=REPO, env=_env(self.root), stdout=out,
                                                  stderr=subprocess.STDOUT, start_new_session=True)
        return log

    def wait(self, name: str, timeout: float) -> int:
        code = self.running[name].wait(timeout=timeout)  # on a timeout it stays for stop_all
        del self.running[name]
        return code

    def stop(self, name: str) -> None:
        process = self.running.pop(name)
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for process in self.running.values():  # signal all first: they shut down in parallel
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name in list(self.running):
            self.stop(name)


def _wait_for(path: Path, text: str, timeout: float, after: int = 0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace")[after:]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s:\n{path.read_text(errors='replace')[-3000:]}")


def _site_toml(root: Path, site: str) -> Path:
    records, epsilon = SITES[site]
    directory = root / site
    directory.mkdir()
    toml = directory / "site.toml"
    toml.write_text(f"""[site]
id = "{site}"

[data]
modality = "ecg"
dir = "{REPO / 'data' / 'ecg' / 'mitdb'}"
records = {json.dumps(records)}

[privacy]
target-epsilon = {epsilon}
target-delta = 1e-5
ledger = "privacy_ledger.json"

[limits]
max-local-steps = 50
""")
    return toml


def _dp_rounds(ledger: Path) -> list[int]:
    entries = json.loads(ledger.read_text())["entries"]
    return [e["server_round"] for e in entries if e.get("purpose", "dp-sgd") == "dp-sgd"]


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy")
    certs, keys = root / "certs", root / "keys"
    create_tls(certs)  # `medgan certs` itself is covered by tests/test_certs.py
    for site in (*SITES, "rogue"):
        create_site_key(keys, site)
    port = _free_port()
    processes = Processes(root)
    coordinator = ["coordinator", "start", "--certs", str(certs), "--port", str(port),
                   "--state-dir", str(root / "coordinator"),
                   "--site-key", str(keys / "site-a.pub"), "--site-key", str(keys / "site-b.pub")]
    try:
        log = processes.start("coordinator", *coordinator)
        _wait_for(log, "SuperLink ready", timeout=120)
        for site in SITES:
            processes.start(site, "site", "start", "--config", str(_site_toml(root, site)),
                            "--superlink", f"127.0.0.1:{port}", "--root-cert", str(certs / "ca.crt"),
                            "--auth-key", str(keys / f"{site}.key"), "--runtime-port", str(_free_port()))
        for site in SITES:
            _wait_for(root / site / f"{site}.log", "SuperNode ID:", timeout=120)
        yield {"root": root, "port": port, "certs": certs, "keys": keys, "processes": processes,
               "coordinator": coordinator}
    finally:
        processes.stop_all()


def _nodes(root: Path) -> list[dict]:
    env = {**_env(root), "FLWR_HOME": str(root / "coordinator" / "flwr")}
    listed = subprocess.run([str(Path(sys.executable).with_name("flwr")), "supernode", "ls", "medgan",
                             "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
    return json.loads(listed.stdout[listed.stdout.index("{"):])["nodes"]


def test_unregistered_key_and_plaintext_client_are_refused(federation):
    root, port, processes = federation["root"], federation["port"], federation["processes"]
    site_a = root / "site-a" / "site.toml"
    common = ["site", "start", "--config", str(site_a), "--superlink", f"127.0.0.1:{port}", "--max-restarts", "0"]
    rogue_log = root / "rogue.log"
    processes.start("rogue", *common, "--root-cert", str(federation["certs"] / "ca.crt"),
                    "--auth-key", str(federation["keys"] / "rogue.key"), "--runtime-port", str(_free_port()),
                    "--flwr-home", str(root / "rogue-flwr"), "--log-file", str(rogue_log))
    plain_log = root / "plain.log"
    processes.start("plain", *common, "--insecure", "--max-wait-time", "5", "--runtime-port", str(_free_port()),
                    "--flwr-home", str(root / "plain-flwr"), "--log-file", str(plain_log))

    assert processes.wait("rogue", timeout=120) != 0
    assert processes.wait("plain", timeout=120) != 0
    # The unregistered key reached the SuperLink over TLS and was turned away.
    assert "Failed to activate SuperNode" in rogue_log.read_text()
    # The plaintext client never got an answer from the TLS port, and was warned loudly.
    plain = plain_log.read_text()
    assert "Failed to initialize the connection to the SuperLink" in plain
    assert "INSECURE" in (root / "plain.out").read_text()
    # Only the two registered sites are known to the SuperLink, and both are online.
    nodes = _nodes(root)
    assert len(nodes) == 2 and {n["status"] for n in nodes} == {"online"}


def test_two_rounds_then_coordinator_restart_and_resumed_round_with_refusal(federation):
    root, processes = federation["root"], federation["processes"]
    run_dir = root / "run"
    state = ["--state-dir", str(root / "coordinator"), "--run-dir", str(run_dir)]
    small = "local-steps=3 batch-size=32 noise-multiplier=1.0 fraction-evaluate=0.0"

    launched = _medgan(root, "coordinator", "run", *state, "--run-config", f"num-server-rounds=2 {small}",
                       timeout=420)
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert [r["round"] for r in _metrics(run_dir)] == [1, 2]
    assert all(len(r["sites"]) == 2 and not any("error" in s for s in r["sites"].values())
               for r in _metrics(run_dir))
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"round-001.pt", "round-002.pt", "latest.pt"}
    assert json.loads((run_dir / "config.json").read_text())["num-server-rounds"] == 2
    for site in SITES:  # each site's own ledger advanced by exactly the two rounds
        assert _dp_rounds(root / site / "privacy_ledger.json") == [1, 2]

    # The coordinator restarts; the sites reconnect by themselves (same node ids, from the
    # SuperLink's database), and the run resumes at round 3.
    processes.stop("coordinator")
    log = processes.start("coordinator", *federation["coordinator"])
    _wait_for(log, "SuperLink ready", timeout=120, after=log.read_text().rfind("SuperLink ready") + 1)
    greedy = "local-steps=3 batch-size=256 noise-multiplier=0.5 fraction-evaluate=0.0"
    resumed = _medgan(root, "coordinator", "run", *state, "--resume", "--run-config",
                      f"num-server-rounds=3 {greedy}", timeout=420)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]

    history = _metrics(run_dir)
    assert [r["round"] for r in history] == [1, 2, 3]
    errors = [s["error"] for s in history[2]["sites"].values() if "error" in s]
    # The coordinator gets a fixed code and sentence; the details stay in the site's log.
    assert len(errors) == 1 and errors[0].startswith("medgan:budget-exhausted: ")
    assert "site-b" not in errors[0] and "epsilon" not in errors[0]
    assert (run_dir / "checkpoints" / "round-003.pt").exists()
    assert _dp_rounds(root / "site-a" / "privacy_ledger.json") == [1, 2, 3]
    assert _dp_rounds(root / "site-b" / "privacy_ledger.json") == [1, 2]
    site_b_log = (root / "site-b" / "site-b.log").read_text()
    assert "site-b refused: PrivacyBudgetExceeded" in site_b_log
    # Every ClientApp started through the site's guard, which allowed the genuine app.
    assert "site-b: app allowed: FAB sha256 " in site_b_log and "refused the app" not in site_b_log
    assert "site-b: refused (medgan:budget-exhausted" in resumed.stdout  # the coordinator's summary


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
