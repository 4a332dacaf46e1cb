"""Load a run's global generator and sample labelled synthetic data from it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.errors import ConfigError
from medgan_core.models import GanPair, build_gan
from medgan_core.models.state import load_gan_state
from medgan_core.progress import track
from medgan_core.run_dir import RunDirectory

__all__ = ["load_run_config", "load_run_gan", "sample_per_class"]

#: Run-config keys of earlier versions that a saved run may still hold; they configured
#: the sites' own evaluation, which no longer exists (a site releases no evaluation).
RETIRED_KEYS = ("eval-samples", "eval-encoder-epochs", "eval-classifier-epochs", "site-eval-min-patients")


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration of the run in ``run_dir``, pointing at ``run_dir`` itself.

    The recorded ``run-dir`` is replaced by the directory actually given, so that a copied
    or moved run is read from where it is (its ledgers, checkpoints), never from where it
    was made.

    Raises:
        ConfigError: no run there, or its config.json is unreadable or invalid.
    """
    directory = RunDirectory(run_dir)
    path = directory.root / "config.json"
    if not path.is_file():
        raise ConfigError(f"{directory.root}: no run here (config.json missing); pass the run directory "
                          "that `medgan simulate` or `medgan coordinator run` wrote")
    try:
        raw = directory.read_json("config.json")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); restore it from a backup or rerun the federation") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: not a run configuration; restore it or rerun")
    raw = {k: v for k, v in raw.items() if k not in RETIRED_KEYS}
    run = RunConfig.from_mapping(raw, where=str(path))
    return replace(run, run_dir=str(directory.root.resolve()))


def load_run_gan(run_dir: str | Path, checkpoint: str = "latest.pt", *, run: RunConfig | None = None,
                 device: torch.device | str = "cpu") -> tuple[GanPair, RunConfig]:
    """The GAN of a finished (or running) federation, from its run directory.

    Args:
        run_dir: The run directory.
        checkpoint: The checkpoint file in its ``checkpoints/``.
        run: The run's configuration, if the caller has already read it
            (:func:`load_run_config`); read from ``run_dir/config.json`` otherwise.
        device: Where the generator and discriminator are put (a resolved device,
            :func:`medgan_core.device.resolve_device`).
    """
    directory = RunDirectory(run_dir)
    run = run if run is not None else load_run_config(run_dir)
    if not (directory.checkpoints / checkpoint).is_file():
        raise ConfigError(f"{directory.checkpoints / checkpoint}: no checkpoint; the run trained no round "
                          "(see its metrics.jsonl for refusals) or the directory is incomplete")
    gan = build_gan(run)
    load_gan_state(gan, directory.load_checkpoint(checkpoint)["state"])
    gan.generator.to(device).eval()
    gan.discriminator.to(device).eval()
    return gan, run


def sample_per_class(gan: GanPair, n_per_class: int, *, seed: int = 0, batch: int = 512
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` samples of every class: arrays (N, C, ...) in model units and (N,) labels.

    Runs on the generator's device; the latents are drawn on the CPU, so a seed gives the
    same latents on every device.
    """
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(gan.num_classes).repeat_interleave(n_per_class)
    device = next(gan.generator.parameters()).device
    outputs = []
    with torch.no_grad():
        for start in track(range(0, len(labels), batch), description=f"generating {len(labels)} samples"):
            y = labels[start:start + batch]
            z = torch.randn(len(y), gan.latent_dim, generator=rng)
            outputs.append(gan.generator(z.to(device), y.to(device)).cpu())
    return torch.cat(outputs).numpy(), labels.numpy()
