"""What a coordinator keeps in its ``--state-dir``, and how its Flower tools find it.

* ``flwr/``: the coordinator's ``FLWR_HOME``; ``config.toml`` holds the :data:`CONNECTION`
  (``medgan``) SuperLink connection, so the user's own ``~/.flwr`` is never read or written.
* ``sites.json``: node id -> site name, for summaries (Flower's node list has no names).
* ``superlink.db``, ``superlink.log``, ``app/``: the SuperLink's database and log, the staged app.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from medgan_core.errors import ConfigError
from medgan_core.processes import console_script, flower_process_env

__all__ = ["CONNECTION", "SuperLinkUnavailable", "connection_address", "flwr_env", "flwr_json", "remember_site",
           "site_names"]

CONNECTION = "medgan"


class SuperLinkUnavailable(RuntimeError):
    """The ``flwr`` CLI got no answer from the coordinator's SuperLink."""


def flwr_env(state_dir: Path) -> dict[str, str]:
    """Environment for Flower processes of this coordinator."""
    return flower_process_env((state_dir / "flwr").resolve())


def flwr_json(arguments: list[str], *, state_dir: Path, timeout: float = 60) -> dict[str, Any]:
    """Run ``flwr ARGUMENTS medgan --format json`` on the coordinator's Flower home.

    Raises:
        SuperLinkUnavailable: the command failed (the SuperLink is down or unreachable).
    """
    command = [console_script("flwr"), *arguments, CONNECTION, "--format", "json"]
    try:
        done = subprocess.run(command, env=flwr_env(state_dir), capture_output=True, text=True, timeout=timeout)
        reply = json.loads(done.stdout[done.stdout.index("{"):])
    except (ValueError, subprocess.TimeoutExpired) as error:
        raise SuperLinkUnavailable(f"flwr {' '.join(arguments)}: no answer ({error})") from error
    if not reply.get("success"):
        # Flower's message ends with the reason, e.g. "Connection to the SuperLink is unavailable. ..."
        reason = str(reply.get("error-message", reply)).strip().splitlines()[-1]
        raise SuperLinkUnavailable(f"flwr {' '.join(arguments)}: {reason}")
    return reply


def connection_address(state_dir: Path) -> str:
    """The address of the :data:`CONNECTION` in ``<state-dir>/flwr/config.toml``.

    Raises:
        ConfigError: ``state_dir`` is missing or not a coordinator state directory.
    """
    if not state_dir.is_dir():
        raise ConfigError(f"--state-dir {state_dir}: no such directory; pass the --state-dir that "
                          "`medgan coordinator start` was given")
    config = state_dir / "flwr" / "config.toml"
    connection = tomllib.loads(config.read_text()).get("superlink", {}).get(CONNECTION) if config.is_file() else None
    if not isinstance(connection, dict) or "address" not in connection:
        raise ConfigError(f"--state-dir {state_dir}: not a coordinator state directory (no {CONNECTION!r} "
                          f"connection in {config}); start the coordinator with "
                          f"`medgan coordinator start --state-dir {state_dir}`")
    return str(connection["address"])


def remember_site(state_dir: Path, node_id: int, name: str) -> None:
    """Keep node id -> site name (Flower's node list has no names) for the round summaries."""
    path = state_dir / "sites.json"
    names = site_names(state_dir)
    names[str(node_id)] = name
    path.write_text(json.dumps(names, indent=2))


def site_names(state_dir: Path) -> dict[str, str]:
    """Node id (as a string) -> site name, for the sites this coordinator registered."""
    path = state_dir / "sites.json"
    return json.loads(path.read_text()) if path.exists() else {}
