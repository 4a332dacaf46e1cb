"""Helpers shared by the ``medgan`` commands: logging, run loading, checks, staged writes.

Each check raises :class:`~medgan_core.errors.ConfigError`, which :func:`medgan_cli.main.main`
prints as one line ``medgan COMMAND: ...`` instead of a traceback.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medgan_core.config import RunConfig

__all__ = ["at_least_one", "check_out", "exclusive_run_dir", "load_run", "parse_overrides", "setup_logging",
           "write_staged"]

RUN_DIR_HINT = "pass the run directory that `medgan simulate --run-dir` wrote"


def setup_logging(verbose: bool) -> None:
    """INFO (DEBUG with ``--verbose``) to the console, each Flower line once."""
    # force: opacus.utils.module_utils calls logging.basicConfig at import (via
    # privacy.calculator), which would otherwise make this a no-op and hide INFO logs.
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    # Flower's "flwr" logger has its own console handler; propagating to the root handler
    # as well would print every Flower line twice.
    logging.getLogger("flwr").propagate = False
    for noisy in ("alembic", "matplotlib", "PIL", "filelock", "be.kuleuven.dtai.distance"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--run-config`` values, each parsed by Flower's own parser as ``flwr run`` does, later ones winning.

    Each value is either ``"a=1 b='x y'"`` or the path of a TOML file of such keys (e.g.
    ``scripts/xray_job.toml``). Unlike ``flwr run``, a file may be followed by key=value
    overrides, so a job's settings live in one file that the job's script and its
    benchmarks both read, and a user still overrides any of them on the command line.
    """
    import click
    from flwr.common.config import parse_config_args

    from medgan_core.errors import ConfigError

    merged: dict[str, Any] = {}
    for item in items:
        if item.endswith(".toml") and not Path(item).expanduser().is_file():
            raise ConfigError(f"--run-config {item}: no such TOML file; pass an existing file of key = value "
                              "lines or overrides such as \"num-server-rounds=2\"")
        try:
            merged.update(parse_config_args([item]))
        except (click.ClickException, ValueError) as error:
            message = error.message if isinstance(error, click.ClickException) else str(error)
            where = f"--run-config {item}" if item.endswith(".toml") else "--run-config"
            raise ConfigError(f"{where}: {message}") from error
    return merged


def load_run(run_dir: str | Path, *, checkpoint: bool) -> RunConfig:
    """The configuration of a saved run (its config.json, read once), after checking the
    directory is one and, with ``checkpoint``, that it has finished a round."""
    from medgan_core.errors import ConfigError
    from medgan_core.generate import load_run_config

    root = Path(run_dir)
    if not root.is_dir():
        raise ConfigError(f"--run-dir {root}: no such directory; {RUN_DIR_HINT}")
    if not (root / "config.json").is_file():
        raise ConfigError(f"--run-dir {root}: not a run directory (no config.json in it); {RUN_DIR_HINT}")
    # The recorded run-dir is replaced by this directory: a copied or moved run is read
    # (ledgers, checkpoints) from where it is now.
    run = load_run_config(root)
    latest = root / "checkpoints" / "latest.pt"
    if checkpoint and not latest.is_file():
        raise ConfigError(f"{latest}: no checkpoint, the run has not finished a round; run or resume "
                          "the federation first")
    return run


@contextlib.contextmanager
def exclusive_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold a lock beside ``run_dir`` for the whole simulation: a second `medgan simulate` on
    the same directory must not train (or --overwrite it) while the first one runs.

    The lock is :class:`privacy._lock.FileLock` (the ledgers' flock, released by the kernel
    when the holder dies), taken without waiting.
    """
    from medgan_core.errors import ConfigError
    from privacy._lock import FileLock

    lock = FileLock(run_dir.parent / f".{run_dir.name}.lock", timeout=0)
    try:
        lock.acquire()
    except TimeoutError as error:
        raise ConfigError(f"--run-dir {run_dir}: another medgan simulate is running in it; wait for it or "
                          "choose another --run-dir") from error
    try:
        yield
    finally:
        lock.release()


def at_least_one(option: str, value: int, what: str) -> None:
    from medgan_core.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1 ({what})")


def check_out(out: Path) -> None:
    """``out`` can be written and holds nothing but an earlier export, which is replaced."""
    from medgan_core.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory; choose a new or empty directory")
    if out.is_dir():
        foreign = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                         if p.is_file() and not p.name.startswith("synthetic_"))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(f"--out {out}: holds files that generate did not write ({shown}); generate "
                              "replaces the whole directory, so choose a new or empty one")
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: cannot be created, {existing} is a file, not a directory; "
                          "choose another --out")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(f"--out {out}: cannot write in {existing} ({error.strerror or error}); choose a "
                          "directory you can write to") from error


def write_staged(out: Path, write: Callable[[Path], list[Path]]) -> list[Path]:
    """Run ``write`` into a staging folder beside ``out``, then move it into place.

    A failure (or a kill) part-way leaves ``out`` as it was: never half an export.

    Returns:
        The written paths, under ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        paths = write(staging)
        if out.exists():
            shutil.rmtree(out)  # only an earlier export: check_out refused anything else
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / Path(p).relative_to(staging) for p in paths]
