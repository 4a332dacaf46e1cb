"""A site runs only the app code it agreed to (``[app]`` in its TOML, ``client/guard.py``).

Real FABs: the app ``medgan coordinator run`` ships (``stage_app``), built with
``flwr build`` and, for tampered copies, with the builder ``flwr run`` uses. The guard's
hooks run with Flower's own installer and loader, in a temporary ``FLWR_HOME``.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from client.app_policy import AppPolicy, check_fab, installed_package_dirs
from client.guard import REFUSAL, Guard, guarded_env, install_guard
from medgan_core.errors import ConfigError
from server.coordinator import stage_app
from medgan_cli.main import main as medgan

REPO = Path(__file__).resolve().parents[1]
INSTALLED = AppPolicy()
TAMPERED_LINE = "from __future__ import annotations  # changed by the coordinator\n"


def _flwr_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "FLWR_HOME": str(tmp / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1"}


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """The app as the coordinator ships it, built by ``flwr build`` into a .fab file."""
    root = tmp_path_factory.mktemp("fab")
    app = stage_app(root / "app")
    built = subprocess.run([str(Path(sys.executable).with_name("flwr")), "build", "--app", str(app)], cwd=root,
                           env=_flwr_env(root), capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    (fab,) = root.glob("*.fab")
    return {"app": app, "fab": fab, "bytes": fab.read_bytes()}


def _variant(genuine: dict, tmp_path: Path, edit) -> bytes:
    """A FAB built, as ``flwr run`` builds it, from an edited copy of the shipped app."""
    from flwr.cli.build import build_fab_from_disk

    app = tmp_path / "app"
    shutil.copytree(genuine["app"], app)
    edit(app)
    return build_fab_from_disk(app)


def _change_future_line(path: Path) -> int:
    """Change one line of ``path``; return its line number."""
    lines = path.read_text().splitlines(keepends=True)
    number = lines.index("from __future__ import annotations\n")
    lines[number] = TAMPERED_LINE
    path.write_text("".join(lines))
    return number + 1


def test_the_fab_built_from_the_installed_code_is_allowed_and_its_hash_is_what_flwr_run_ships(genuine, capsys):
    from flwr.cli.build import build_fab_from_disk

    verdict = check_fab(genuine["bytes"], policy=INSTALLED)
    assert verdict.allowed, verdict.problems
    sha256 = hashlib.sha256(genuine["bytes"]).hexdigest()
    assert verdict.sha256 == sha256
    # `flwr build` is deterministic and equal to what `flwr run` sends, so a site can
    # allow-list the hash of a FAB file it reviewed.
    assert build_fab_from_disk(genuine["app"]) == genuine["bytes"]
    assert genuine["fab"].name.endswith(f".{sha256[:8]}.fab")
    assert medgan(["site", "fab-hash", str(genuine["fab"])]) == 0
    assert capsys.readouterr().out == f"{sha256}  {genuine['fab']}\n"


@pytest.mark.parametrize("changed", ["medgan_core/site/rounds.py", "client/app.py"])
def test_one_changed_line_is_refused_and_the_file_and_line_are_named(genuine, tmp_path, changed):
    numbers = []
    fab = _variant(genuine, tmp_path, lambda app: numbers.append(_change_future_line(app / changed)))

    verdict = check_fab(fab, policy=INSTALLED)
    assert not verdict.allowed
    local = installed_package_dirs()[changed.split("/")[0]] / changed.split("/", 1)[1]
    assert verdict.problems == (f"{changed}: differs from the installed {local} (first at line {numbers[0]})",)


def test_an_extra_python_file_anywhere_is_refused(genuine, tmp_path):
    def add(app: Path) -> None:
        (app / "privacy" / "helper.py").write_text("x = 1\n")
        (app / "sitecustomize.py").write_text("x = 1\n")

    verdict = check_fab(_variant(genuine, tmp_path, add), policy=INSTALLED)
    assert not verdict.allowed
    assert len(verdict.problems) == 2
    assert verdict.problems[0].startswith("privacy/helper.py: extra Python file, not in this site's installed code")
    assert verdict.problems[1].startswith("sitecustomize.py: Python file outside this site's packages")


def test_compiled_code_a_foreign_clientapp_and_a_non_zip_are_refused(genuine, tmp_path):
    # A hand-made FAB (a coordinator need not use `flwr build`): the genuine files plus
    # bytecode that Python would import instead of the checked client/app.py.
    buffer = BytesIO()
    with zipfile.ZipFile(BytesIO(genuine["bytes"])) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("client/__pycache__/app.cpython-311.pyc", b"\x00" * 16)
        target.writestr("client/app.cpython-311-x86_64-linux-gnu.so", b"\x7fELF")
    problems = check_fab(buffer.getvalue(), policy=INSTALLED).problems
    assert [p.split(":")[0] for p in problems] == ["client/__pycache__/app.cpython-311.pyc",
                                                   "client/app.cpython-311-x86_64-linux-gnu.so"]

    def other_entry(app: Path) -> None:
        pyproject = app / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace('clientapp = "client.app:app"',
                                                           'clientapp = "server.app:app"'))

    problems = check_fab(_variant(genuine, tmp_path, other_entry), policy=INSTALLED).problems
    assert problems == ("pyproject.toml: clientapp = 'server.app:app', this site runs only 'client.app:app'",)
    assert check_fab(b"not a zip", policy=INSTALLED).problems[0].startswith("not a FAB")


def test_a_readme_or_run_config_default_may_differ(genuine, tmp_path):
    def edit(app: Path) -> None:
        (app / "README.md").write_text("# shipped by the coordinator\n")
        pyproject = app / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace("local-steps = 200", "local-steps = 20"))

    fab = _variant(genuine, tmp_path, edit)
    assert fab != genuine["bytes"] and check_fab(fab, policy=INSTALLED).allowed


def test_allow_list_accepts_a_listed_hash_and_refuses_any_other(genuine, tmp_path):
    listed = hashlib.sha256(genuine["bytes"]).hexdigest()
    policy = AppPolicy(policy="allow-list", allowed_fab_sha256=(listed,), source="site.toml")
    other = _variant(genuine, tmp_path, lambda app: (app / "README.md").write_text("other\n"))

    assert check_fab(genuine["bytes"], policy=policy).allowed
    refused = check_fab(other, policy=policy)
    assert refused.problems == (f"sha256 {refused.sha256} is not in [app] allowed-fab-sha256 of site.toml",)


def _toml(tmp_path: Path, app_table: str) -> Path:
    toml = tmp_path / "site.toml"
    toml.write_text(app_table + '[site]\nid = "site-g"\n')
    return toml


@pytest.mark.parametrize("table, message", [
    ('[app]\npolicy = "trust-me"\n', '\\[app\\] policy = \'trust-me\' is not a policy; use "installed"'),
    ('[app]\npolicy = "allow-list"\n', "empty allowed-fab-sha256 refuses every run"),
    ('[app]\npolicy = "allow-list"\nallowed-fab-sha256 = "abc"\n', "must be a list of strings"),
    ('[app]\npolicy = "allow-list"\nallowed-fab-sha256 = ["abc"]\n', "'abc' is not a sha256"),
    (f'[app]\nallowed-fab-sha256 = ["{"a" * 64}"]\n', 'only read with policy = "allow-list"'),
    ('[app]\nallowed-fab-hashes = []\n', "unknown key \\[app\\] allowed-fab-hashes"),
    ('app = "installed"\n', "\\[app\\] must be a table"),
])
def test_a_bad_app_table_is_one_line_naming_the_file_the_key_and_the_fix(tmp_path, table, message):
    toml = _toml(tmp_path, table)
    with pytest.raises(ConfigError, match=message) as error:
        AppPolicy.from_toml(toml)
    assert str(error.value).startswith(f"{toml}: ") and "\n" not in str(error.value)


def test_policy_defaults_to_installed_and_hashes_are_normalised(tmp_path):
    assert AppPolicy.from_toml(_toml(tmp_path, "")).policy == "installed"
    upper = "AB" * 32
    policy = AppPolicy.from_toml(_toml(tmp_path, f'[app]\npolicy = "allow-list"\nallowed-fab-sha256 = ["{upper}"]\n'))
    assert policy.allowed_fab_sha256 == (upper.lower(),)


def test_site_check_prints_the_policy_and_refuses_a_bad_one(tmp_path, capsys):
    toml = tmp_path / "site.toml"
    base = (f'[site]\nid = "site-g"\n[data]\nmodality = "ecg"\ndir = "{REPO / "data" / "ecg" / "mitdb"}"\n'
            'records = ["105"]\n[privacy]\ntarget-epsilon = 5.0\ntarget-delta = 1e-5\nledger = "ledger.json"\n')
    toml.write_text(base)
    assert medgan(["site", "check", "--config", str(toml)]) == 0
    assert ("app: policy installed: runs only a FAB whose Python files are byte-identical to this site's "
            f"installed medgan-federated ({installed_package_dirs()['client'].parent}: client, server, medgan_core, "
            "privacy, simulations)") in capsys.readouterr().out

    toml.write_text(base + '[app]\npolicy = "allow-list"\n')
    assert medgan(["site", "check", "--config", str(toml)]) == 2
    assert 'policy = "allow-list" with an empty allowed-fab-sha256' in capsys.readouterr().err


def test_fab_hash_with_a_site_config_says_whether_this_site_would_run_it(genuine, tmp_path, capsys):
    tampered = tmp_path / "tampered.fab"
    tampered.write_bytes(_variant(genuine, tmp_path, lambda app: _change_future_line(app / "client" / "app.py")))
    toml = _toml(tmp_path, "")

    assert medgan(["site", "fab-hash", str(genuine["fab"]), str(tampered), "--config", str(toml)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(f"{genuine['fab']}  allowed by policy installed")
    assert lines[1].endswith(f"{tampered}  REFUSED by policy installed")
    assert lines[2].startswith("  client/app.py: differs from the installed")


def _guard(tmp_path: Path, toml: Path) -> Guard:
    from flwr.cli.install import install_from_fab
    from flwr.clientapp.utils import get_load_client_app_fn
    from flwr.common.config import get_project_dir

    return Guard(site_toml=toml, install=install_from_fab, get_loader=get_load_client_app_fn,
                 project_dir=get_project_dir)


def test_a_refused_fab_is_never_installed_or_imported_and_the_reply_is_the_fixed_reason(
        genuine, tmp_path, monkeypatch, flower_identity, caplog):
    from flwr.app import Context, Message, MessageType, RecordDict

    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    marker = tmp_path / "imported"
    fab = _variant(genuine, tmp_path, lambda app: (app / "client" / "app.py").open("a").write(
        f"__import__('pathlib').Path({str(marker)!r}).touch()\n"))
    guard = _guard(tmp_path, _toml(tmp_path, ""))

    assert guard.install_from_fab(fab, skip_prompt=True) is None
    app = guard.get_load_client_app_fn("", None, True)("medgan/medgan-federated", "0.1.0",
                                                       hashlib.sha256(fab).hexdigest())
    msg = Message(RecordDict(), dst_node_id=5, message_type=MessageType.TRAIN)
    reply = app(message=msg, context=Context(run_id=1, node_id=5, node_config={}, state=RecordDict(),
                                             run_config={}))

    assert reply.has_error() and reply.error.reason == REFUSAL
    assert not marker.exists() and not (tmp_path / "flwr-home" / "apps").exists()
    logged = [r.getMessage() for r in caplog.records if r.name == "client.guard"]
    sha256 = hashlib.sha256(fab).hexdigest()
    assert len(logged) == 1 and logged[0].startswith(f"site-g: refused the app: FAB sha256 {sha256}, policy installed")
    assert "client/app.py: differs from the installed" in logged[0]


def test_an_allowed_fab_is_installed_but_only_that_directory_may_be_loaded(genuine, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "flwr-home"))
    toml = _toml(tmp_path, "")
    sha256 = hashlib.sha256(genuine["bytes"]).hexdigest()
    guard = _guard(tmp_path, toml)
    installed = guard.install_from_fab(genuine["bytes"], skip_prompt=True)
    assert installed is not None and (installed / "client" / "app.py").read_bytes() == (
        genuine["app"] / "client" / "app.py").read_bytes()
    loader = guard.get_load_client_app_fn("", None, True)
    # The run claims another FAB hash, or another app name, than the bytes checked.
    other = "0" * 64
    assert loader("medgan/medgan-federated", "0.1.0", other).__name__ == "refusal"
    assert loader("medgan/other", "0.1.0", sha256).__name__ == "refusal"

    # Flower skips installing into an existing directory: one that no longer holds the
    # FAB's files (here a planted .pyc) is refused, not trusted.
    (installed / "client" / "__pycache__").mkdir()
    (installed / "client" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00" * 16)
    caplog.clear()
    assert _guard(tmp_path, toml).install_from_fab(genuine["bytes"], skip_prompt=True) is None
    assert (f"{installed}/client/__pycache__/app.cpython-311.pyc: in the installed directory, not in the FAB"
            in caplog.text)


def test_an_allow_listed_fab_runs_its_own_code_not_the_guards_copy(genuine, tmp_path):
    """The guard is site code imported from the installation; Flower must still import
    the allow-listed FAB (here: one line added to client/app.py), not a mix of both."""
    marker = tmp_path / "fab-code-ran"
    fab = tmp_path / "reviewed.fab"
    fab.write_bytes(_variant(genuine, tmp_path, lambda app: (app / "client" / "app.py").open("a").write(
        f"__import__('pathlib').Path({str(marker)!r}).touch()\n")))
    sha256 = hashlib.sha256(fab.read_bytes()).hexdigest()
    toml = _toml(tmp_path, f'[app]\npolicy = "allow-list"\nallowed-fab-sha256 = ["{sha256}"]\n')
    script = f"""
import sys
from pathlib import Path
from flwr.cli.install import install_from_fab
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.config import get_project_dir
from client.guard import Guard

guard = Guard(site_toml=Path({str(toml)!r}), install=install_from_fab, get_loader=get_load_client_app_fn,
              project_dir=get_project_dir)
installed = guard.install_from_fab(Path({str(fab)!r}).read_bytes(), skip_prompt=True)
app = guard.get_load_client_app_fn("", None, True)("medgan/medgan-federated", "0.1.0", {sha256!r})
print(type(app).__name__, sys.modules["client.app"].__file__.startswith(str(installed)),
      sys.modules["medgan_core.site"].__file__.startswith(str(installed)))
"""
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_flwr_env(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.splitlines()[-1].split() == ["ClientApp", "True", "True"]
    assert marker.exists()


def test_the_daemon_puts_the_guard_first_on_path_and_it_runs_flowers_command(tmp_path):
    toml = _toml(tmp_path, "")
    script = install_guard(tmp_path / "bin", site_toml=toml)
    env = guarded_env({**_flwr_env(tmp_path), "PATH": os.environ.get("PATH", "")}, tmp_path / "bin")

    from flwr.supercore.constant import TASK_TYPE_TO_COMMAND, TaskType

    # Flower's SuperExec starts the ClientApp by this name, found on PATH.
    assert TASK_TYPE_TO_COMMAND[TaskType.CLIENT_APP] == script.name == "flwr-clientapp"
    assert shutil.which("flwr-clientapp", path=env["PATH"]) == str(script)
    assert stat.S_IMODE(script.stat().st_mode) == 0o700
    assert str(toml.resolve()) in script.read_text()
    # Flower's own flwr-clientapp parser answers through the guard (run from another
    # directory: the guard and the code it compares come from the installation).
    shown = subprocess.run([str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0 and "Run a Flower ClientApp" in shown.stdout


@pytest.mark.slow
def test_a_tampered_app_is_refused_at_a_deployed_site_and_the_coordinator_gets_the_reason(tmp_path):
    """Real processes on 127.0.0.1 (plain HTTP: TLS and node keys are covered by
    tests/test_deployment_loopback.py, which also runs the genuine app through the guard):
    a coordinator ships a copy of the app with one line changed in medgan_core/site/rounds.py and
    one line added to client/app.py; the site refuses it before installing or importing it."""
    from tests.test_deployment_loopback import Processes, _free_port, _medgan, _wait_for

    tampered = stage_app(tmp_path / "tampered")
    _change_future_line(tampered / "medgan_core" / "site" / "rounds.py")
    marker = tmp_path / "client-app-was-imported"
    with (tampered / "client" / "app.py").open("a") as app:
        app.write(f"__import__('pathlib').Path({str(marker)!r}).touch()\n")
    site = tmp_path / "site-g"
    site.mkdir()
    toml = site / "site.toml"
    toml.write_text(f'[site]\nid = "site-g"\n[data]\nmodality = "ecg"\ndir = "{REPO / "data" / "ecg" / "mitdb"}"\n'
                    'records = ["105"]\n[privacy]\ntarget-epsilon = 5.0\ntarget-delta = 1e-5\n'
                    'ledger = "privacy_ledger.json"\n')
    port, processes = _free_port(), Processes(tmp_path)
    state = tmp_path / "coordinator"
    try:
        # Both start at once (the SuperNode retries until the SuperLink listens).
        log = processes.start("coordinator", "coordinator", "start", "--insecure", "--port", str(port),
                              "--state-dir", str(state))
        processes.start("site-g", "site", "start", "--config", str(toml), "--superlink", f"127.0.0.1:{port}",
                        "--insecure", "--runtime-port", str(_free_port()))
        _wait_for(log, "SuperLink ready", timeout=120)
        _wait_for(site / "site-g.log", "SuperNode ID:", timeout=120)

        run = _medgan(tmp_path, "coordinator", "run", "--state-dir", str(state), "--run-dir", str(tmp_path / "run"),
                      "--app", str(tampered), "--run-config",
                      "num-server-rounds=1 min-nodes=1 fraction-evaluate=0.0 local-steps=3 batch-size=32",
                      timeout=300)
    finally:
        processes.stop_all()

    rounds = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [list(r["sites"].values()) for r in rounds] == [[{"error": REFUSAL}]]
    assert f"refused ({REFUSAL})" in run.stdout  # the coordinator's round summary
    site_log = (site / "site-g.log").read_text()
    assert "app: policy installed" in site_log
    refusal_line = next(line for line in site_log.splitlines() if "refused the app" in line)
    assert "site-g: refused the app: FAB sha256 " in refusal_line
    assert "medgan_core/site/rounds.py: differs from the installed" in refusal_line
    assert "client/app.py: differs from the installed" in refusal_line
    assert not marker.exists()  # nothing of the FAB was imported at the site
    assert not (site / "privacy_ledger.json").exists()  # nothing trained, nothing spent
    assert not any((site / ".flwr" / "apps").glob("*"))  # nothing installed
