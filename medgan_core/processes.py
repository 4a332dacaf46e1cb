"""Starting this environment's console scripts (Flower's CLIs) as child processes.

No Flower import: only the executable lookup and the environment they run in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from medgan_core.errors import ConfigError

__all__ = ["console_script", "flower_process_env", "stop_process"]


def console_script(name: str) -> str:
    """The entry point ``name`` of this interpreter's environment, else from PATH."""
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise ConfigError(f"{name} not found; install the project (pip install -e .) in this environment")
    return found


def flower_process_env(flwr_home: Path) -> dict[str, str]:
    """Environment for a Flower process: its own FLWR_HOME, no telemetry, unbuffered logs."""
    env = dict(os.environ)
    # The SuperLink and SuperNode start `flower-superexec` by name: put this interpreter's
    # environment first on PATH so an un-activated venv (as in CI) still finds it.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update({"FLWR_HOME": str(flwr_home), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
                "PYTHONUNBUFFERED": "1"})
    return env


def stop_process(process: subprocess.Popen, *, timeout: float) -> None:
    """Ask ``process`` to stop (SIGTERM), kill it after ``timeout`` seconds, and reap it."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
