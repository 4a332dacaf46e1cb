"""The files of a public pretraining (``medgan pretrain``): ``weights.pt`` and ``provenance.json``.

Reading and writing them needs nothing of the models, so that
:func:`medgan_core.models.initial_gan` can load a pretraining without importing the
training code (:mod:`medgan_core.pretraining`), which builds models.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.io_utils import atomic_write_bytes, atomic_write_text

__all__ = ["APP_ROOT", "PROVENANCE_FILE", "WEIGHTS_FILE", "check_writable", "load_pretrained", "portable_path",
           "pretrained_meta", "read_provenance", "resolve_pretrained", "write_pretrained"]

WEIGHTS_FILE = "weights.pt"
PROVENANCE_FILE = "provenance.json"
#: The app's root: the repository, or the Flower app bundle a deployment runs.
APP_ROOT = Path(__file__).resolve().parents[1]


def pretrained_meta(run: RunConfig) -> dict[str, Any]:
    """What a pretrained directory must match to load into ``run``'s model."""
    return {"model": run.model, "modality": run.modality, "latent-dim": run.latent_dim,
            "image-size": run.image_size}


def portable_path(path: str) -> str:
    """``path`` relative to the app's root where it lies inside it: the same text on every clone."""
    try:
        return str(Path(path).resolve().relative_to(APP_ROOT))
    except ValueError:
        return str(path)


def resolve_pretrained(value: str) -> Path:
    """The ``pretrained`` directory: absolute, or relative to the app's root."""
    path = Path(value)
    return path if path.is_absolute() else APP_ROOT / path


def check_writable(out: Path, *, overwrite: bool) -> None:
    """Refuse to replace a pretraining in ``out`` unless told to.

    Raises:
        ConfigError: ``out`` already holds one and ``overwrite`` is false.
    """
    if (Path(out) / WEIGHTS_FILE).exists() and not overwrite:
        raise ConfigError(f"{Path(out) / WEIGHTS_FILE} exists; pass --overwrite to replace it, or choose another --out")


def write_pretrained(out: str | Path, state: Mapping[str, torch.Tensor], provenance: dict[str, Any], *,
                     overwrite: bool = False) -> Path:
    """Write ``out/weights.pt`` (``state`` and the model it fits) and ``out/provenance.json``,
    each atomically.

    Raises:
        ConfigError: ``out`` already holds a pretraining and ``overwrite`` is false.
    """
    out = Path(out)
    check_writable(out, overwrite=overwrite)
    buffer = io.BytesIO()
    meta = {key: provenance[key] for key in ("model", "modality", "latent-dim", "image-size")}
    torch.save({"state": dict(state), "meta": meta}, buffer)
    # The weights first: a provenance file is only ever beside the weights it describes.
    atomic_write_bytes(out / WEIGHTS_FILE, buffer.getvalue())
    atomic_write_text(out / PROVENANCE_FILE, json.dumps(provenance, indent=2) + "\n")
    return out


def _existing(run: RunConfig, name: str) -> Path:
    path = resolve_pretrained(run.pretrained) / name
    if not path.is_file():
        raise ConfigError(f"pretrained={run.pretrained!r}: {path} is missing; make it with `medgan pretrain "
                          f"--out {run.pretrained}` or set pretrained=''")
    return path


def _unreadable(run: RunConfig, error: Exception) -> ConfigError:
    # A truncated or foreign file: name it and the fix.
    return ConfigError(f"{resolve_pretrained(run.pretrained)}: unreadable pretrained weights or provenance "
                       f"({error}); make them again with `medgan pretrain`")


def read_provenance(run: RunConfig) -> dict[str, Any]:
    """The provenance of ``run.pretrained``, without reading its weights.

    Raises:
        ConfigError: the directory or a file is missing or unreadable.
    """
    _existing(run, WEIGHTS_FILE)  # a provenance counts only beside the weights it describes
    try:
        return json.loads(_existing(run, PROVENANCE_FILE).read_text())
    except Exception as error:
        raise _unreadable(run, error) from error


def load_pretrained(run: RunConfig) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and provenance of ``run.pretrained``, checked against ``run``'s model.

    Raises:
        ConfigError: the directory or a file is missing or unreadable, or was made for
            another model, modality, latent size or image size.
    """
    provenance = read_provenance(run)
    weights = resolve_pretrained(run.pretrained) / WEIGHTS_FILE
    try:
        saved = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:
        raise _unreadable(run, error) from error
    expected = pretrained_meta(run)
    if saved.get("meta") != expected:
        raise ConfigError(f"{weights} was pretrained for {saved.get('meta')}, but this run builds {expected}; "
                          "pretrain again with this run's model and sizes, or set pretrained=''")
    return saved["state"], provenance
