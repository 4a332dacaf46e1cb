"""The ``medgan`` command line: its own package, installed as a console script, every
command listed, and no library package depending on it."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medgan_cli.main import build_parser

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["simulate", "status", "report", "study", "compare", "generate", "audit", "explain", "models", "pretrain", "privacy",
            "certs", "coordinator", "site"]


def _help(*command: str) -> str:
    done = subprocess.run([*command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _listed(text: str) -> list[str]:
    """The sub-commands argparse lists, in order: the ``{a,b,...}`` of the usage line."""
    usage = " ".join(text.split("\n\n")[0].split())
    return usage[usage.index("{") + 1:usage.index("}")].split(",")


def test_installed_console_script_lists_every_command():
    script = Path(sys.executable).parent / "medgan"
    assert script.is_file(), f"{script}: not installed; run bash scripts/bootstrap.sh"

    text = _help(str(script))

    assert _listed(text) == COMMANDS
    for command in COMMANDS:
        assert f"\n    {command} " in text  # each with its help line


def test_python_m_medgan_cli_is_the_same_command_line():
    assert _help(sys.executable, "-m", "medgan_cli") == _help(str(Path(sys.executable).parent / "medgan"))


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])

    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: medgan {command}")


def test_no_library_package_imports_the_cli():
    offenders = []
    for package in ("medgan_core", "privacy", "client", "server", "simulations"):
        for source in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{source.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] == "medgan_cli"]
    assert offenders == []
