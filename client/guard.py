"""The site's guard in front of every ClientApp: ``flwr-clientapp`` behind the app policy.

With ``--isolation subprocess`` Flower 1.41's SuperExec starts one ``flwr-clientapp``
process per message, looked up by name on PATH
(``flwr/supercore/superexec/executor/subprocess_executor.py``). That process pulls the
message and the run's FAB from the SuperNode, installs the FAB under
``$FLWR_HOME/apps/`` and imports the ClientApp from there
(``flwr/supernode/runtime/run_clientapp.py``). The site daemon writes an executable named
``flwr-clientapp`` into a directory of its own (:func:`install_guard`) and puts it first
on the SuperNode's PATH (:func:`guarded_env`); it runs :func:`main` in the site's Python
environment, which runs Flower's own ``flwr-clientapp`` with its two app steps wrapped:

1. install (``install_from_fab``): the FAB's bytes are checked against the site's
   ``[app]`` policy (:mod:`client.app_policy`) *before* anything is written or imported.
   A refused FAB is never installed; the site log gets the hash and every file that
   differs. An allowed FAB is installed by Flower, then the installed directory must hold
   exactly the FAB's files (an older directory of the same name is not trusted).
2. load (``get_load_client_app_fn``): Flower must load the directory just checked: the
   run's FAB hash must be the hash of the bytes checked and the directory Flower derives
   from the run must be the one installed. Otherwise, and after a refusal, the "app" is
   :func:`refusal`, site code that replies :data:`REFUSAL` to the coordinator.

The coordinator learns only the fixed reason :data:`REFUSAL`, not which of the site's
files differ (that would tell it the site's code version); the site's log has the detail.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shlex
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from client.app_policy import APP_PACKAGES, AppPolicy, check_fab, fab_entries

__all__ = ["REFUSAL", "Guard", "guarded_env", "install_guard", "main", "refusal"]

logger = logging.getLogger(__name__)

REFUSAL = "medgan:app-not-allowed"
COMMAND = "flwr-clientapp"


def refusal(message: Any, context: Any) -> Any:
    """Stands in for a refused ClientApp: the reply is an error with :data:`REFUSAL` only."""
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode

    del context
    return Message(Error(code=ErrorCode.LOAD_CLIENT_APP_EXCEPTION, reason=REFUSAL), reply_to=message)


class Guard:
    """Flower's install and load steps of one ``flwr-clientapp`` process, behind a policy.

    Args:
        site_toml: The site's TOML; its ``[app]`` table is read for each FAB, so a TOML
            that became unreadable refuses (fails closed) instead of allowing.
        install: Flower's ``install_from_fab``.
        get_loader: Flower's ``get_load_client_app_fn``.
        project_dir: Flower's ``get_project_dir`` (where the loader will import from).
    """

    def __init__(self, *, site_toml: Path, install: Callable[..., Path],
                 get_loader: Callable[..., Callable[[str, str, str], Any]],
                 project_dir: Callable[[str, str, str], Path]) -> None:
        self.site_toml = site_toml
        self._install = install
        self._get_loader = get_loader
        self._project_dir = project_dir
        self.checked_sha256: str | None = None
        self.installed: Path | None = None

    def install_from_fab(self, fab_file: bytes, install_dir: Path | None = None,
                         skip_prompt: bool = False) -> Path | None:
        """Check the FAB; let Flower install it only if the site's policy allows it."""
        sha256 = hashlib.sha256(fab_file).hexdigest()
        policy_name = "unreadable"
        try:
            policy = AppPolicy.from_toml(self.site_toml)
            policy_name = policy.policy
            problems = list(check_fab(fab_file, policy=policy).problems)
            if not problems:
                path = self._install(fab_file, install_dir, skip_prompt)
                problems = installed_differences(path, fab_file)
        except Exception as exc:  # noqa: BLE001 - a check that fails is a refusal, never a pass
            problems = [f"the check itself failed: {type(exc).__name__}: {exc}"]
        site = _site_id(self.site_toml)
        if problems:
            logger.error("%s: refused the app: FAB sha256 %s, policy %s (%s): %s; replied %r", site, sha256,
                         policy_name, self.site_toml, "; ".join(problems), REFUSAL)
            return None
        logger.info("%s: app allowed: FAB sha256 %s, policy %s", site, sha256, policy_name)
        self.checked_sha256, self.installed = sha256, path
        return path

    def get_load_client_app_fn(self, default_app_ref: str, app_path: str | None,
                               multi_app: bool) -> Callable[[str, str, str], Any]:
        """Flower's loader, for the checked FAB only; :func:`refusal` otherwise."""
        load = self._get_loader(default_app_ref, app_path, multi_app)

        def guarded_load(fab_id: str, fab_version: str, fab_hash: str) -> Any:
            if self.installed is None:
                return refusal
            try:
                target = self._project_dir(fab_id, fab_version, fab_hash).resolve()
            except ValueError:  # a malformed fab_id
                target = None
            if fab_hash != self.checked_sha256 or target != self.installed.resolve():
                logger.error("%s: refused the app: the run names FAB %s %s sha256 %s, but the checked FAB is "
                             "sha256 %s installed at %s; replied %r", _site_id(self.site_toml), fab_id,
                             fab_version, fab_hash, self.checked_sha256, self.installed, REFUSAL)
                return refusal
            _forget_site_packages()
            return load(fab_id, fab_version, fab_hash)

        return guarded_load


def installed_differences(path: Path, fab: bytes) -> list[str]:
    """Why the installed directory ``path`` is not exactly the FAB's files (empty: it is).

    Flower skips installing when the directory already exists; its name holds only 8
    characters of the hash, so an older directory must not be trusted blindly.
    """
    expected: dict[str, bytes] = dict(fab_entries(fab))
    found = {p.relative_to(path).as_posix(): p for p in path.rglob("*") if not p.is_dir() or p.is_symlink()}
    problems = [f"{path / name}: in the installed directory, not in the FAB"
                for name in sorted(set(found) - set(expected))]
    problems += [f"{path / name}: missing from the installed directory"
                 for name in sorted(set(expected) - set(found))]
    problems += [f"{found[name]}: installed file differs from the FAB's"
                 for name in sorted(set(expected) & set(found))
                 if found[name].is_symlink() or found[name].read_bytes() != expected[name]]
    if problems:
        problems.append(f"remove {path} (the next run re-installs it from its FAB)")
    return problems


def _forget_site_packages() -> None:
    """Let Flower import the checked FAB, not this guard's own copy of the packages.

    The guard itself is site code imported from the site's installation (``client``,
    ``medgan_core``); left in ``sys.modules``, ``import client.app`` would resolve there
    and an allow-listed FAB would run mixed with the installed code.
    """
    for name in [m for m in sys.modules if m.split(".")[0] in APP_PACKAGES]:
        del sys.modules[name]


def _site_id(site_toml: Path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(site_toml.read_text())["site"]["id"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(site_toml)


@contextlib.contextmanager
def _patched(module: Any, **replacements: Any) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def main(argv: list[str] | None = None) -> None:
    """``flwr-clientapp`` as the site runs it: Flower's command with the guarded app steps."""
    from flwr.common.config import get_project_dir
    from flwr.supernode.cli.flwr_clientapp import flwr_clientapp
    from flwr.supernode.runtime import run_clientapp

    parser = argparse.ArgumentParser(prog=COMMAND, add_help=False, allow_abbrev=False)
    parser.add_argument("--site-config", type=Path, required=True)
    parser.add_argument("--allow-runtime-dependency-installation", action="store_true")
    ours, flower_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if ours.allow_runtime_dependency_installation:
        # Installing the FAB's dependencies would run code that no policy checked.
        logger.warning("ignoring --allow-runtime-dependency-installation: the ClientApp runs with the site's "
                       "installed packages only")
    # The FAB directory is imported from; writing bytecode there would leave files no
    # check saw (and installed_differences would refuse the next run of the same FAB).
    sys.dont_write_bytecode = True
    guard = Guard(site_toml=ours.site_config, install=run_clientapp.install_from_fab,
                  get_loader=run_clientapp.get_load_client_app_fn, project_dir=get_project_dir)
    sys.argv = [COMMAND, *flower_args]
    with _patched(run_clientapp, install_from_fab=guard.install_from_fab,
                  get_load_client_app_fn=guard.get_load_client_app_fn):
        flwr_clientapp()


def install_guard(bin_dir: Path, *, site_toml: Path) -> Path:
    """Write the site's ``flwr-clientapp`` into ``bin_dir`` (rewritten at every start).

    Returns:
        The executable, to be found first on PATH (:func:`guarded_env`).
    """
    bin_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    script = bin_dir / COMMAND
    # -P (Python >= 3.11): the working directory is not put on sys.path, so the guard and
    # the code it compares against are the site's installation, wherever the daemon runs.
    flags = " -P" if sys.version_info >= (3, 11) else ""
    script.write_text("#!/bin/sh\n"
                      "# Written by `medgan site start`: Flower starts flwr-clientapp by name for every\n"
                      "# message; this site runs it behind the [app] policy of its TOML (client/guard.py).\n"
                      f"exec {shlex.quote(sys.executable)}{flags} -c 'from client.guard import main; main()' "
                      f"--site-config {shlex.quote(str(site_toml.resolve()))} \"$@\"\n")
    script.chmod(stat.S_IRWXU)
    return script


def guarded_env(env: dict[str, str], bin_dir: Path) -> dict[str, str]:
    """``env`` with ``bin_dir`` first on PATH, ahead of Flower's own ``flwr-clientapp``."""
    return {**env, "PATH": os.pathsep.join([str(bin_dir.resolve()), env.get("PATH", "")])}

