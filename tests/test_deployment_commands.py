"""The deployment commands, checked against Flower's own parsers and loaders: what
`medgan site start` and `medgan coordinator start|run` hand to flower-supernode,
flower-superlink and `flwr run`, and what `medgan site check` tells hospital IT."""

import hashlib
import os
import shutil
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from client.daemon import SuperNodeOptions, supernode_command
from medgan_core.errors import ConfigError
from server.certs import create_site_key, create_tls
from server.coordinator import SuperLinkOptions, stage_app, superlink_command, write_connection
from medgan_cli.main import main as medgan

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def material(tmp_path):
    return {"tls": create_tls(tmp_path / "certs"), "key": create_site_key(tmp_path / "keys", "site-a"),
            "toml": tmp_path / "site.toml"}


def test_supernode_runs_with_tls_node_auth_and_the_site_config(material, tmp_path):
    from flwr.common.config import parse_config_args
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode

    options = SuperNodeOptions(superlink="coordinator.example.org:9092", root_cert=material["tls"].ca_cert,
                               auth_key=material["key"].private_key, insecure=False, runtime_port=9195,
                               flwr_home=tmp_path / "flwr")
    command = supernode_command(site_toml=material["toml"], options=options)
    args = _parse_args_run_supernode().parse_args(command[1:])
    assert not args.insecure
    assert args.root_certificates == str(material["tls"].ca_cert.resolve())
    assert args.auth_supernode_private_key == str(material["key"].private_key.resolve())
    assert args.isolation == "subprocess" and args.port == 9195
    # The node config reaches the ClientApp as the key client.app.site_for reads.
    assert parse_config_args([args.node_config]) == {"site-config": str(material["toml"].resolve())}


def test_supernode_refuses_insecure_with_a_key_and_missing_material(material, tmp_path):
    base = dict(superlink="127.0.0.1:9092", runtime_port=9094, flwr_home=tmp_path)
    with pytest.raises(ConfigError, match="only authenticates SuperNodes over TLS"):
        supernode_command(site_toml=material["toml"], options=SuperNodeOptions(
            root_cert=None, auth_key=material["key"].private_key, insecure=True, **base))
    with pytest.raises(ConfigError, match="--root-cert"):
        supernode_command(site_toml=material["toml"], options=SuperNodeOptions(
            root_cert=None, auth_key=material["key"].private_key, insecure=False, **base))
    insecure = supernode_command(site_toml=material["toml"], options=SuperNodeOptions(
        root_cert=None, auth_key=None, insecure=True, **base))
    assert "--insecure" in insecure and "--auth-supernode-private-key" not in insecure


def test_superlink_runs_with_tls_node_auth_and_a_persistent_database(material, tmp_path):
    from flwr.superlink.cli.flower_superlink import _parse_args_run_superlink

    certs = material["tls"].ca_cert.parent
    options = SuperLinkOptions(host="0.0.0.0", port=9092, certs_dir=certs, state_dir=tmp_path / "state")
    args = _parse_args_run_superlink().parse_args(superlink_command(options)[1:])
    assert args.enable_supernode_auth and not args.insecure
    assert (args.ssl_ca_certfile, args.ssl_certfile, args.ssl_keyfile) == tuple(
        str((certs / name).resolve()) for name in ("ca.crt", "superlink.crt", "superlink.key"))
    assert args.database == str((tmp_path / "state" / "superlink.db").resolve())
    assert not args.runtime_dependency_install
    assert (args.host, args.port) == ("0.0.0.0", 9092)
    assert options.address == "127.0.0.1:9092"  # local tools dial loopback, covered by the certificate
    insecure = _parse_args_run_superlink().parse_args(superlink_command(
        SuperLinkOptions(host="127.0.0.1", port=9092, certs_dir=None, state_dir=tmp_path, insecure=True))[1:])
    assert insecure.insecure and not insecure.enable_supernode_auth
    with pytest.raises(ConfigError, match="medgan certs tls"):
        superlink_command(SuperLinkOptions(host="127.0.0.1", port=9092, certs_dir=tmp_path / "none",
                                           state_dir=tmp_path))


def test_connection_is_written_to_the_coordinators_flower_home_and_read_by_flwr(material, tmp_path,
                                                                               monkeypatch):
    from flwr.cli.flower_config import read_superlink_connection

    options = SuperLinkOptions(host="127.0.0.1", port=9333, certs_dir=material["tls"].ca_cert.parent,
                               state_dir=tmp_path / "state")
    path = write_connection(options)
    assert path == tmp_path / "state" / "flwr" / "config.toml"
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "state" / "flwr"))
    connection = read_superlink_connection()  # the default connection
    assert connection.name == "medgan" and connection.address == "127.0.0.1:9333"
    assert connection.root_certificates == str(material["tls"].ca_cert.resolve())
    assert not connection.insecure


def test_staged_app_ships_the_app_packages_and_leaves_pyproject_alone(tmp_path):
    from flwr.cli.build import build_fab_from_disk
    from flwr.common.config import get_fused_config_from_dir

    original = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    app = stage_app(tmp_path / "app")
    names = zipfile.ZipFile(BytesIO(build_fab_from_disk(app))).namelist()
    assert {"client/app.py", "server/app.py", "medgan_core/site/rounds.py", "privacy/ledger.py"} <= set(names)
    assert not any(n.startswith(("simulations/", "medgan_cli/", "tests/", "data/", "runs/")) for n in names)
    assert "federations" not in (app / "pyproject.toml").read_text()
    assert get_fused_config_from_dir(app, {}) == get_fused_config_from_dir(REPO, {})
    assert hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest() == original


def test_site_check_reports_loaded_skipped_classes_budget_and_what_is_shared(tmp_path, capsys):
    data = tmp_path / "ecg"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(REPO / "data" / "ecg" / "mitdb" / f"105.{ext}", data)
    for ext in ("hea", "atr"):  # 123 arrives without its signal file
        shutil.copy(REPO / "data" / "ecg" / "mitdb" / f"123.{ext}", data)
    toml = tmp_path / "site.toml"
    toml.write_text('[site]\nid = "site-q"\n[data]\nmodality = "ecg"\ndir = "ecg"\n'
                    '[privacy]\ntarget-epsilon = 8.0\ntarget-delta = 1e-5\nledger = "ledger.json"\n')

    assert medgan(["site", "check", "--config", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "1 records/images loaded, 1 skipped" in out
    assert "skipped" in out and "123.dat" in out and "copy 123.dat next to 123.hea" in out
    assert "classes: N=2526, V=41" in out
    assert "epsilon 8 per record (one beat) or patient, as the run asks" in out and "nothing released yet" in out
    assert "non-private training refused" in out
    assert "no record, sample or per-patient value leaves the site" in out and "d-loss-fake" in out
    assert not (tmp_path / "ledger.json").exists()  # checking spends nothing and writes nothing

    (data / "105.dat").unlink()
    assert medgan(["site", "check", "--config", str(toml)]) == 2
    assert "no usable record" in capsys.readouterr().err


def _fake_supernode(tmp_path: Path, flower_code: int) -> list[str]:
    """A stand-in that logs Flower's exit line and exits 1, as flower-supernode does."""
    counter = tmp_path / "starts"
    script = (f"import pathlib; p = pathlib.Path({str(counter)!r}); "
              f"p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1'); "
              f"print('ERROR : Exit Code: {flower_code}'); raise SystemExit(1)")
    return [sys.executable, "-c", script]


def test_daemon_restarts_a_failed_supernode_but_not_a_misconfigured_one(tmp_path):
    import io

    from client.daemon import run_supervised

    log = io.StringIO()
    # 305 (connection failed, e.g. coordinator down or key not registered yet): restarted.
    assert run_supervised(_fake_supernode(tmp_path, 305), env=dict(os.environ), log=log, max_restarts=1) == 1
    assert (tmp_path / "starts").read_text() == "2"
    assert log.getvalue().count("Exit Code: 305") == 2
    # 302 (invalid auth key): a restart cannot fix it.
    (tmp_path / "starts").unlink()
    assert run_supervised(_fake_supernode(tmp_path, 302), env=dict(os.environ), log=log, max_restarts=5) == 1
    assert (tmp_path / "starts").read_text() == "1"


# ------------------------------------------------------------- `medgan coordinator run` exit status
def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_coordinator_run_fails_when_no_superlink_answers(tmp_path, capsys):
    # `flwr run` cannot reach the SuperLink: no run starts, and that is a failure, not exit 0.
    import time

    state = tmp_path / "coordinator"
    write_connection(SuperLinkOptions(host="127.0.0.1", port=_unused_port(), certs_dir=None, state_dir=state,
                                      insecure=True))
    started = time.monotonic()

    code = medgan(["coordinator", "run", "--state-dir", str(state), "--run-dir", str(tmp_path / "run"),
                   "--run-config", "num-server-rounds=1"])

    assert code != 0
    assert "run None: not started" in capsys.readouterr().err  # medgan's logging goes to stderr
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_coordinator_run_fails_when_the_launched_run_fails(tmp_path, capsys):
    # A real SuperLink; the ServerApp fails at once (resume-from names no checkpoint), so
    # Flower records the run as finished:failed, whatever `flwr run --stream` exits with.
    import signal
    import subprocess
    import time

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

        code = medgan(["coordinator", "run", "--state-dir", str(state), "--run-dir", str(tmp_path / "run"),
                       "--run-config", f"num-server-rounds=1 resume-from='{tmp_path / 'nothing'}'"])
    finally:
        os.killpg(superlink.pid, signal.SIGTERM)
        superlink.wait(timeout=30)

    assert code != 0
    assert ": finished:failed after" in capsys.readouterr().err


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
