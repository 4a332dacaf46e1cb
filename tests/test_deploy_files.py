"""The container and service files in deploy/, checked offline against the real code.

No Docker needed: deploy/compose.yaml is parsed with PyYAML and every service's command
with `medgan`'s own argparse parser; the host paths it mounts are in the repository or
made by the commands of docs/deployment.md ("Containers and services"), which are run
here into tmp_path, and the SuperLink certificate they make names the host the sites
dial. The sites' TOMLs pass `medgan site check` with the container paths mapped to the
host. `docker compose config` runs only where a Docker engine answers.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import tomli_w
import yaml

from medgan_cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "medgan-site.service"
DOCS = REPO / "docs" / "deployment.md"
SECTION = "## Containers and services"
# The flags whose values are paths inside the container, and whether the command writes there.
READ_PATH_FLAGS = ("--config", "--root-cert", "--auth-key", "--certs", "--site-key")
WRITE_PATH_FLAGS = ("--state-dir", "--flwr-home", "--log-file")


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _parse(argv: list[str], where: str):
    """``argv`` parsed by the real ``medgan`` parser; a wrong subcommand or flag fails here."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 and prints the reason to stderr
        raise AssertionError(f"{where}: `medgan {shlex.join(argv)}` is not a valid medgan command") from exc


def _flag(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == flag]


def _mount_for(service: dict, path: str) -> dict | None:
    """The bind mount whose target is ``path`` or a directory above it."""
    for volume in service["volumes"]:
        target = PurePosixPath(volume["target"])
        if PurePosixPath(path) == target or target in PurePosixPath(path).parents:
            return volume
    return None


def _mounts_at(service: dict, path: str) -> list[dict]:
    """The bind mounts that hold ``path``, or lie inside it when it is a directory of mounted files."""
    inside = [v for v in service["volumes"] if PurePosixPath(path) in PurePosixPath(v["target"]).parents]
    above = _mount_for(service, path)
    return [above] if above is not None else inside


def _site_services() -> dict[str, dict]:
    return {name: s for name, s in _services().items() if s["command"][:2] == ["site", "start"]}


# ---------------------------------------------------------------- compose: commands and mounts
def test_every_compose_command_is_a_real_medgan_command_without_insecure():
    services = _services()
    assert {tuple(s["command"][:2]) for s in services.values()} == {("coordinator", "start"), ("site", "start")}
    for name, service in services.items():
        args = _parse(service["command"], f"compose service {name}")
        assert not args.insecure, f"{name}: --insecure (plain HTTP, no node authentication) in a deployment file"
    assert len(_site_services()) == 2


def test_sites_dial_the_coordinator_service_on_its_port():
    services = _services()
    coordinator = _parse(services["coordinator"]["command"], "coordinator")
    assert coordinator.host == "0.0.0.0"  # reachable from the sites' containers
    for name, service in _site_services().items():
        host, port = _parse(service["command"], name).superlink.rsplit(":", 1)
        assert host == "coordinator" and host in services
        assert int(port) == coordinator.port
    # The health check the sites wait for probes that port and the file `start` writes
    # into --state-dir after registering the site keys.
    probe = " ".join(services["coordinator"]["healthcheck"]["test"])
    assert str(coordinator.port) in probe and f"{coordinator.state_dir}/sites.json" in probe


def test_every_container_path_a_command_names_is_mounted_read_only_or_writable_as_needed():
    for name, service in _services().items():
        argv = service["command"]
        for flag in READ_PATH_FLAGS + WRITE_PATH_FLAGS:
            for path in _flag(argv, flag):
                mounts = _mounts_at(service, path)
                assert mounts, f"{name}: {flag} {path} is not on any mounted volume"
                writable = flag in WRITE_PATH_FLAGS
                for mount in mounts:
                    assert bool(mount.get("read_only")) is not writable, (
                        f"{name}: {flag} {path} lies on {mount['target']}, which must be "
                        + ("writable" if writable else "read-only"))
        assert all(v["type"] == "bind" for v in service["volumes"])  # long syntax: no silent empty dirs


def test_keys_are_mounted_only_where_they_belong():
    services = _services()
    coordinator = services["coordinator"]
    certs = _parse(coordinator["command"], "coordinator").certs
    targets = {v["target"] for v in coordinator["volumes"]}
    assert {f"{certs}/{f}" for f in ("ca.crt", "superlink.crt", "superlink.key")} <= targets
    coordinator_sources = {v["source"] for v in coordinator["volumes"]}
    all_sources = [v["source"] for s in services.values() for v in s["volumes"]]
    assert not [s for s in all_sources if s.endswith("ca.key")], "the CA key is mounted nowhere"
    for name, service in _site_services().items():
        args = _parse(service["command"], name)
        key_source = _mount_for(service, str(args.auth_key))["source"]
        site_id = tomllib.loads((DEPLOY / _mount_for(service, args.config)["source"]).read_text())["site"]["id"]
        # The coordinator names a site by its key's file name, the site's log by its id.
        assert Path(key_source).name == f"{site_id}.key"
        assert key_source.removesuffix(".key") + ".pub" in coordinator_sources
        assert key_source not in coordinator_sources
        others = [v["source"] for other, s in _site_services().items() if other != name for v in s["volumes"]]
        assert key_source not in others, f"{name}'s private key is mounted in another site"


def _documented_commands() -> list[list[str]]:
    """The shell commands of the section's ```bash blocks, comments dropped, lines joined."""
    text = DOCS.read_text()
    assert SECTION in text, f"{DOCS} has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                tokens = shlex.split(part, comments=True)
                if tokens:
                    commands.append(tokens)
    return commands


def _run_documented_commands(root: Path) -> list[list[str]]:
    """Run the section's `medgan certs` and `mkdir` commands with ``root`` as the repository."""
    ran = []
    for tokens in _documented_commands():
        program = Path(tokens[0]).name
        if any(Path(t).is_absolute() for t in tokens[1:]):
            continue  # a host's own paths (/etc, /var/lib: the systemd set-up), not the repository's
        if program == "medgan" and tokens[1] == "certs":
            argv = [str(root / t) if previous == "--out" else t for previous, t in zip(["", *tokens], tokens)][1:]
            args = _parse(argv, "docs/deployment.md")
            assert args.func(args) == 0, f"documented command failed: {shlex.join(tokens)}"
            ran.append(tokens)
        elif program == "mkdir":
            operands = [t for previous, t in zip(["", *tokens[1:]], tokens[1:])
                        if not t.startswith("-") and previous != "-m"]
            for directory in operands:
                (root / directory).mkdir(parents=True, exist_ok=True)
            ran.append(tokens)
    return ran


def _in_repository(path: Path) -> bool:
    """In the repository and not git-ignored (a directory: something under it), or present without git."""
    relative = path.relative_to(REPO)
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return path.exists()
    # Tracked or new, but not ignored: deploy/secrets and deploy/state are made, never committed.
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", str(relative)],
                            cwd=REPO, capture_output=True, text=True)
    return listed.returncode == 0 and bool(listed.stdout.strip())


def test_mounted_host_paths_are_in_the_repository_or_made_by_the_documented_commands(tmp_path):
    ran = _run_documented_commands(tmp_path)
    assert any(t[:3] == ["medgan", "certs", "tls"] for t in ran) and any(t[0] == "mkdir" for t in ran)
    for name, service in _services().items():
        for volume in service["volumes"]:
            source = (DEPLOY / volume["source"]).resolve()
            made = tmp_path / source.relative_to(REPO)
            if _in_repository(source):
                continue
            assert made.exists(), (f"{name}: host path {volume['source']} is neither in the repository nor made by "
                                   f"a command in {DOCS.name}, section {SECTION!r}")
            # A file must be mounted on a file target and a directory on a directory target.
            assert made.is_dir() == (not PurePosixPath(volume["target"]).suffix), (name, volume)


def test_the_documented_superlink_certificate_names_the_host_the_sites_dial(tmp_path):
    from cryptography import x509

    _run_documented_commands(tmp_path)
    coordinator = _services()["coordinator"]
    certs = _parse(coordinator["command"], "coordinator").certs
    source = _mount_for(coordinator, f"{certs}/superlink.crt")["source"]
    cert = x509.load_pem_x509_certificate((tmp_path / (DEPLOY / source).resolve().relative_to(REPO)).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName)
    for name, service in _site_services().items():
        host = _parse(service["command"], name).superlink.rsplit(":", 1)[0]
        assert host in names, f"{name} dials {host}, which the SuperLink certificate does not name ({names})"


@pytest.mark.parametrize("site", ["hospital-a", "hospital-b"])
def test_site_toml_reads_the_mounted_data_and_keeps_its_ledger_on_the_state_volume(site, tmp_path, capsys):
    service = _services()[site]
    args = _parse(service["command"], site)
    toml_source = DEPLOY / _mount_for(service, args.config)["source"]
    raw = tomllib.loads(toml_source.read_text())
    data_mount = _mount_for(service, raw["data"]["dir"])
    ledger_mount = _mount_for(service, raw["privacy"]["ledger"])
    assert data_mount is not None and data_mount["read_only"]
    assert ledger_mount is not None and not ledger_mount.get("read_only")
    assert ledger_mount is _mount_for(service, str(args.flwr_home))  # one state volume per site

    # `medgan site check` on the same TOML with the container paths mapped to host paths.
    host_data = (DEPLOY / data_mount["source"]).resolve()
    raw["data"]["dir"] = str(host_data / PurePosixPath(raw["data"]["dir"]).relative_to(data_mount["target"]))
    raw["privacy"]["ledger"] = str(tmp_path / PurePosixPath(raw["privacy"]["ledger"]).relative_to(
        ledger_mount["target"]))
    mapped = tmp_path / "site.toml"
    mapped.write_text(tomli_w.dumps(raw))
    check = _parse(["site", "check", "--config", str(mapped)], site)
    assert check.func(check) == 0
    report = capsys.readouterr().out
    assert f"site {site} (ecg)" in report
    assert f"data: {len(raw['data']['records'])} records/images loaded, 0 skipped" in report
    assert "nothing released yet" in report and "policy installed" in report
    assert list(tmp_path.iterdir()) == [mapped]  # a check writes nothing, no ledger either


def test_docker_compose_config_when_an_engine_answers():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client on PATH")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        reason = ((version.stderr or version.stdout).strip().splitlines() or ["no output"])[0]
        pytest.skip(f"`docker compose version` failed: {reason[:200]}")
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"no Docker engine answers `docker info`: {(info.stderr or info.stdout).strip()[-200:]}")
    done = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- Dockerfile
def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_installs_as_bootstrap_does_torch_cpu_then_the_constraints():
    constraints = (REPO / "requirements" / "constraints.txt").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", constraints, flags=re.M).group(1)
    bootstrap_default = re.search(r"TORCH_SPEC:-torch==([\w.]+)", (REPO / "scripts" / "bootstrap.sh").read_text())
    instructions = _instructions()
    arguments = dict(arg.split("=", 1) for kind, arg in instructions if kind == "ARG" and "=" in arg)
    assert arguments["TORCH_SPEC"] == f"torch=={torch_pin}" == f"torch=={bootstrap_default.group(1)}"
    assert arguments["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    runs = [arg for kind, arg in instructions if kind == "RUN"]
    installs = [shlex.split(part) for run in runs for part in run.split("&&") if "pip install" in part]
    torch_step = next(i for i, tokens in enumerate(installs) if "$TORCH_SPEC" in tokens)
    project_step = next(i for i, tokens in enumerate(installs) if "-c" in tokens)
    assert torch_step < project_step  # the CPU build is in place before the project's plain "torch"
    project = installs[project_step]
    assert project[project.index("-c") + 1] == "requirements/constraints.txt"
    assert project[-1] == "." and "[test]" not in " ".join(project)
    copied = [arg.split()[0] for kind, arg in instructions if kind == "COPY"]
    assert "requirements/constraints.txt" in copied


def test_dockerfile_copies_code_only_and_runs_medgan_as_a_non_root_user():
    instructions = _instructions()
    assert instructions[0][0] == "FROM" and instructions[0][1].startswith("python:3.11-slim")
    copied = [source for kind, arg in instructions if kind == "COPY" for source in arg.split()[:-1]]
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert {p.rstrip("*") for p in packages["include"]} <= set(copied)  # every installed package
    assert set(copied) <= {"pyproject.toml", "README.md", "LICENSE", "requirements/constraints.txt",
                           "medgan_core", "privacy", "client", "server", "simulations", "medgan_cli"}
    user = [arg for kind, arg in instructions if kind == "USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    assert [arg for kind, arg in instructions if kind == "ENTRYPOINT"] == ['["medgan"]']
    assert not any(kind == "VOLUME" for kind, _ in instructions)  # no anonymous volume could hold a ledger

    # The build context: everything left out but what is copied.
    ignore = [line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == set(copied)


def test_git_ignores_the_keys_ledgers_and_state_the_documented_commands_make():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["deploy/secrets/certs/ca.key", "deploy/secrets/hospital-a/hospital-a.key",
             "deploy/state/hospital-a/privacy_ledger.json", "deploy/state/coordinator/superlink.db", "deploy/.env"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO, capture_output=True, text=True)
    assert ignored.stdout.split() == paths


# ---------------------------------------------------------------- systemd
def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def _exec_start(unit: configparser.ConfigParser) -> list[str]:
    return shlex.split(unit["Service"]["ExecStart"].replace("\\\n", " "))


def test_systemd_unit_starts_a_secure_site_with_real_flags_and_writes_only_its_state_dir():
    unit = _unit()
    service = unit["Service"]
    command = _exec_start(unit)
    assert command[0] == "/opt/medgan/.venv/bin/medgan"
    args = _parse(command[1:], UNIT.name)
    assert (args.command, args.site_command) == ("site", "start") and not args.insecure
    assert args.root_cert is not None and args.auth_key is not None
    assert service["User"] not in ("root", "0") and service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
    assert service["ProtectSystem"] == "strict"
    writable = [PurePosixPath(p) for p in service["ReadWritePaths"].split()]
    for path in (args.flwr_home, args.log_file):  # their defaults (beside the TOML) would be read-only
        assert path is not None and any(w == PurePosixPath(path) or w in PurePosixPath(path).parents
                                        for w in writable), f"{path} is not under ReadWritePaths={writable}"
    # Configuration errors exit 2 (medgan site start): systemd must not restart into them.
    assert service["RestartPreventExitStatus"] == "2"


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    medgan = str(Path(sys.executable).with_name("medgan"))
    unit = tmp_path / UNIT.name  # the same unit, with this checkout's medgan in place of /opt/medgan's
    unit.write_text(UNIT.read_text().replace("/opt/medgan/.venv/bin/medgan", medgan))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
