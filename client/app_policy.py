"""Which Flower App Bundle (FAB) a site agrees to run: the ``[app]`` table of its TOML.

The coordinator ships the ClientApp, i.e. the code that enforces the site's budget, in
the FAB of every run. A site therefore pins the code it runs on its data:

* ``policy = "installed"`` (default): the FAB's Python files must be byte-identical to
  this site's installed medgan-federated, the code hospital IT reviewed and installed.
  Every ``.py`` file of the FAB lies in one of :data:`APP_PACKAGES` and exists, with the
  same bytes, in the site's installation; no compiled code (``.pyc``, extension modules)
  at all; the FAB's ``pyproject.toml`` names ``client.app:app`` as its ClientApp. Other
  files (README, run-config defaults in ``pyproject.toml``) may differ: no code reads them
  at a site, and the run config is the coordinator's to choose anyway.
* ``policy = "allow-list"``: only FABs whose sha256 is in ``allowed-fab-sha256``; for a
  site that reviewed a FAB file itself (``medgan site fab-hash APP.fab``).

Nothing here imports Flower or a FAB's code: a FAB is only read as a zip in memory.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import io
import re
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from medgan_core.errors import ConfigError

__all__ = ["APP_PACKAGES", "CLIENTAPP", "POLICIES", "AppPolicy", "Verdict", "check_fab",
           "fab_entries", "installed_package_dirs"]

# The project's packages: the only places a FAB may hold Python code.
APP_PACKAGES = ("client", "server", "medgan_core", "privacy", "simulations")
CLIENTAPP = "client.app:app"
POLICIES = ("installed", "allow-list")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Files Python would import in place of a checked .py: bytecode and extension modules.
_COMPILED = tuple(s.lower() for s in (*importlib.machinery.BYTECODE_SUFFIXES,
                                      *importlib.machinery.EXTENSION_SUFFIXES, ".so", ".pyd"))


@dataclass(frozen=True)
class AppPolicy:
    """A site's rule for which FAB it runs.

    Attributes:
        policy: ``"installed"`` or ``"allow-list"``.
        allowed_fab_sha256: Lower-case sha256 hex digests (``"allow-list"`` only).
        source: The TOML it was read from, for messages.
    """

    policy: str = "installed"
    allowed_fab_sha256: tuple[str, ...] = ()
    source: str = "<default>"

    @classmethod
    def from_toml(cls, path: str | Path) -> AppPolicy:
        """Read the ``[app]`` table of a site TOML (absent: ``policy = "installed"``).

        Raises:
            ConfigError: one line naming the file, the key and the fix.
        """
        path = Path(path)
        try:
            table = tomllib.loads(path.read_text()).get("app", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read site config ({exc})") from exc
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [app] must be a table; see deploy/examples/site.toml")
        unknown = sorted(set(table) - {"policy", "allowed-fab-sha256"})
        if unknown:
            raise ConfigError(f"{path}: unknown key [app] {unknown[0]}; the keys are policy and allowed-fab-sha256")
        policy = table.get("policy", "installed")
        if policy not in POLICIES:
            raise ConfigError(f'{path}: [app] policy = {policy!r} is not a policy; use "installed" (run only '
                              'this site\'s installed code) or "allow-list" (with allowed-fab-sha256)')
        hashes = table.get("allowed-fab-sha256", [])
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise ConfigError(f'{path}: [app] allowed-fab-sha256 must be a list of strings, e.g. ["3f1c...", ...] '
                              "(medgan site fab-hash APP.fab prints them)")
        hashes = [h.strip().lower() for h in hashes]
        for value in hashes:
            if not _SHA256.fullmatch(value):
                raise ConfigError(f"{path}: [app] allowed-fab-sha256 entry {value!r} is not a sha256 (64 hex "
                                  "characters); copy it from medgan site fab-hash APP.fab")
        if policy == "installed" and hashes:
            # One rule at a time: a list that is silently ignored (or silently added to the
            # installed code) would make the site's TOML say something it does not do.
            raise ConfigError(f'{path}: [app] allowed-fab-sha256 is only read with policy = "allow-list"; '
                              'set policy = "allow-list" (and list every FAB to run) or remove the list')
        if policy == "allow-list" and not hashes:
            raise ConfigError(f'{path}: [app] policy = "allow-list" with an empty allowed-fab-sha256 refuses every '
                              "run; add the hashes of the reviewed FABs (medgan site fab-hash APP.fab)")
        return cls(policy=policy, allowed_fab_sha256=tuple(hashes), source=str(path))

    def describe(self) -> str:
        """One line for ``medgan site check`` and the daemon log."""
        if self.policy == "allow-list":
            return (f"app: policy allow-list: runs only a FAB whose sha256 is one of "
                    f"{', '.join(h[:12] + '...' for h in self.allowed_fab_sha256)} ({self.source})")
        dirs = installed_package_dirs()
        parents = {p.parent for p in dirs.values()}
        where = f"{parents.pop()}: {', '.join(dirs)}" if len(parents) == 1 else ", ".join(map(str, dirs.values()))
        return ("app: policy installed: runs only a FAB whose Python files are byte-identical to this "
                f"site's installed medgan-federated ({where})")


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one FAB.

    Attributes:
        sha256: The FAB's sha256, as Flower names and installs it.
        problems: Why it is refused, one item per file (empty: allowed).
    """

    sha256: str
    problems: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return not self.problems


def installed_package_dirs() -> dict[str, Path]:
    """This interpreter's copy of each of :data:`APP_PACKAGES` (found, not imported)."""
    found = {}
    for name in APP_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            found[name] = Path(list(spec.submodule_search_locations)[0])
    return found


def fab_entries(fab: bytes) -> list[tuple[str, bytes]]:
    """The files of a FAB, in archive order (duplicates kept), without Flower's ``.info/``.

    Raises:
        zipfile.BadZipFile: if ``fab`` is not a zip archive.
    """
    with zipfile.ZipFile(io.BytesIO(fab)) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()
                if not info.is_dir() and not info.filename.startswith(".info/")]


def check_fab(fab: bytes, *, policy: AppPolicy, installed: dict[str, Path] | None = None) -> Verdict:
    """Decide whether this site runs ``fab``.

    Args:
        fab: The FAB's bytes, as the SuperNode received them.
        policy: The site's policy.
        installed: Package name -> directory of the site's code (default: this
            interpreter's, :func:`installed_package_dirs`).

    Returns:
        The verdict, listing every problem found (a refusal names each file).
    """
    sha256 = hashlib.sha256(fab).hexdigest()
    if policy.policy == "allow-list":
        listed = sha256 in policy.allowed_fab_sha256
        return Verdict(sha256, () if listed else (f"sha256 {sha256} is not in [app] allowed-fab-sha256 "
                                                  f"of {policy.source}",))
    try:
        entries = fab_entries(fab)
    except zipfile.BadZipFile as exc:
        return Verdict(sha256, (f"not a FAB (zip archive): {exc}",))
    installed = installed_package_dirs() if installed is None else installed
    problems = [p for name, content in entries if (p := _check_file(name, content, installed))]
    problems += _check_components(entries)
    return Verdict(sha256, tuple(problems))


def _check_file(name: str, content: bytes, installed: dict[str, Path]) -> str | None:
    """Why the FAB file ``name`` is refused under ``installed``, or None."""
    parts = PurePosixPath(name).parts
    lower = name.lower()
    if name.startswith("/") or ".." in parts or "__pycache__" in parts or lower.endswith(_COMPILED):
        return f"{name}: compiled code or an unsafe path is never run"
    if not lower.endswith(".py"):
        return None  # README, pyproject.toml, ...: not code (the ClientApp entry is checked apart)
    if len(parts) < 2 or parts[0] not in installed:
        return f"{name}: Python file outside this site's packages ({', '.join(p + '/' for p in installed)})"
    local = installed[parts[0]].joinpath(*parts[1:])
    if not local.is_file():
        return f"{name}: extra Python file, not in this site's installed code ({local})"
    mine = local.read_bytes()
    if mine != content:
        return f"{name}: differs from the installed {local} (first at line {_first_difference(mine, content)})"
    return None


def _first_difference(mine: bytes, theirs: bytes) -> int:
    a, b = mine.splitlines(), theirs.splitlines()
    return next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)) + 1)


def _check_components(entries: list[tuple[str, bytes]]) -> list[str]:
    """The ClientApp Flower loads must be the site's ``client.app:app``."""
    configs = [content for name, content in entries if name == "pyproject.toml"]
    if len(configs) != 1:
        return [f"pyproject.toml: the FAB holds {len(configs)} of them, Flower reads exactly one"]
    try:
        components = tomllib.loads(configs[0].decode())["tool"]["flwr"]["app"]["components"]
        clientapp = components["clientapp"]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        return [f"pyproject.toml: no [tool.flwr.app.components] clientapp ({type(exc).__name__}: {exc})"]
    if clientapp != CLIENTAPP:
        return [f"pyproject.toml: clientapp = {clientapp!r}, this site runs only {CLIENTAPP!r}"]
    return []
