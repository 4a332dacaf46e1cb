"""Load a run's global generator and sample labelled synthetic data from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.models.registry import GanPair
from medgan_core.models.state import load_gan_state
from medgan_core.run_dir import RunDirectory

__all__ = ["load_run_gan", "sample_per_class"]


def load_run_gan(run_dir: str | Path, checkpoint: str = "latest.pt") -> tuple[GanPair, RunConfig]:
    """The GAN of a finished (or running) federation, from its run directory."""
    from medgan_core.site import build_gan

    directory = RunDirectory(run_dir)
    run = RunConfig.from_mapping(directory.read_json("config.json"))
    gan = build_gan(run)
    load_gan_state(gan, directory.load_checkpoint(checkpoint)["state"])
    gan.generator.eval()
    gan.discriminator.eval()
    return gan, run


def sample_per_class(gan: GanPair, n_per_class: int, *, seed: int = 0, batch: int = 512
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` samples of every class: arrays (N, ...) in model units and (N,) labels."""
    rng = torch.Generator().manual_seed(seed)
    labels = torch.arange(gan.num_classes).repeat_interleave(n_per_class)
    outputs = []
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            y = labels[start:start + batch]
            z = torch.randn(len(y), gan.latent_dim, generator=rng)
            outputs.append(gan.generator(z, y))
    return torch.cat(outputs).squeeze(1).numpy(), labels.numpy()
