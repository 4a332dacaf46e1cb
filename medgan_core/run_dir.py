"""The run directory: checkpoints, per-round metrics, config. Every write is atomic.

Layout::

    <run>/config.json               run configuration
    <run>/checkpoints/round-NNN.pt  global G+D after each round (flat prefixed state)
    <run>/checkpoints/latest.pt     copy of the newest round
    <run>/metrics.jsonl             one JSON object per round
    <run>/sites/<site>/privacy_ledger.json   (simulation) each site's ledger

A simulated site's state (ledger, class-count release) lives in the *first* run of a
resume chain (:func:`simulated_sites_root`): resuming into a new directory continues the
same ledgers, never fresh ones.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from medgan_core.io_utils import atomic_write_bytes, atomic_write_text

__all__ = ["LEDGER_FILE", "RunDirectory", "simulated_sites_root"]

#: A simulated site's privacy ledger, in its directory ``<run>/sites/<site>/``.
LEDGER_FILE = "privacy_ledger.json"


def simulated_sites_root(run_dir: str | Path, resume_from: str = "") -> Path:
    """The run directory holding the simulated sites' state for a run.

    A run that resumes another (``resume-from``) continues the sites of the run it resumes,
    which may itself have resumed an earlier one: follow ``resume-from`` through each
    run's ``config.json`` to the first. A site's ledger must compose every release it
    ever made, so a resumed simulation must never start it afresh.
    """
    current, seen = Path(run_dir), set()
    previous = resume_from
    while previous:
        current = Path(previous)
        if current.resolve() in seen:
            break  # a loop in the chain: stop at the repeat
        seen.add(current.resolve())
        config = current / "config.json"
        try:
            previous = str(json.loads(config.read_text()).get("resume-from", "")) if config.is_file() else ""
        except (OSError, ValueError):
            previous = ""
    return current


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity: non-private sites report epsilon = null
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class RunDirectory:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def sites(self) -> Path:
        """Simulated sites' state, one directory per site (use :func:`simulated_sites_root`
        for the run that holds it: a resumed run continues its first run's sites)."""
        return self.root / "sites"

    def site_ledger_path(self, site_id: str) -> Path:
        """Where simulated site ``site_id``'s privacy ledger lives in this run directory."""
        return self.sites / site_id / LEDGER_FILE

    def site_ledger_paths(self) -> list[Path]:
        """Every simulated site's ledger present in this run directory, sorted by site."""
        return sorted(self.sites.glob(f"*/{LEDGER_FILE}"))

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    def write_json(self, name: str, payload: Any) -> Path:
        path = self.root / name
        atomic_write_text(path, json.dumps(_json_safe(payload), indent=2))
        return path

    def read_json(self, name: str) -> Any:
        return json.loads((self.root / name).read_text())

    def save_checkpoint(self, server_round: int, state: dict[str, Any], meta: dict[str, Any]) -> Path:
        buffer = io.BytesIO()
        torch.save({"state": {k: torch.as_tensor(v) for k, v in state.items()}, "meta": meta,
                    "round": server_round}, buffer)
        data = buffer.getvalue()
        path = self.checkpoints / f"round-{server_round:03d}.pt"
        atomic_write_bytes(path, data)
        atomic_write_bytes(self.checkpoints / "latest.pt", data)
        return path

    def load_checkpoint(self, name: str = "latest.pt") -> dict[str, Any]:
        path = self.checkpoints / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: no checkpoint; was the run completed? Run the federation first")
        return torch.load(path, map_location="cpu", weights_only=True)

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one line; the file is rewritten atomically so no line is ever half-written."""
        existing = self.metrics_file.read_text() if self.metrics_file.exists() else ""
        atomic_write_text(self.metrics_file, existing + json.dumps(_json_safe(record)) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        return [json.loads(line) for line in self.metrics_file.read_text().splitlines() if line.strip()]
