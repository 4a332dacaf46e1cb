"""Conditional 1-D DCGAN for heartbeats of one lead or ``channels`` leads.

The discriminator has no BatchNorm (it would mix samples in a batch, breaking per-sample
gradients and DP-SGD's sensitivity argument) and is small and strided so that Opacus's
per-sample gradient norms are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medgan_core.models.registry import GanPair, register_gan

__all__ = ["EcgGanConfig", "Discriminator1D", "Generator1D", "build_dcgan1d"]


@dataclass(frozen=True)
class EcgGanConfig:
    latent_dim: int = 32
    num_classes: int = 2
    beat_length: int = 128  # must be 16 * 2**k: the generator upsamples from 16
    channels: int = 1  # leads: generator output and discriminator input channels
    generator_width: int = 64
    discriminator_width: int = 32
    # "transpose": ConvTranspose1d + BatchNorm (classic DCGAN); "nearest": nearest
    # upsampling + Conv1d + GroupNorm (no batch statistics to average across sites).
    generator_upsampling: str = "transpose"


class Generator1D(nn.Module):
    """z, class -> beat in [-1, 1]."""

    def __init__(self, config: EcgGanConfig) -> None:
        super().__init__()
        self.config = config
        width = config.generator_width
        self.class_embedding = nn.Embedding(config.num_classes, config.latent_dim)
        self.project = nn.Linear(config.latent_dim * 2, width * 2 * 16)
        blocks: list[nn.Module] = []
        channels, length = width * 2, 16
        while length < config.beat_length:
            out_channels = max(channels // 2, 16)
            if config.generator_upsampling == "nearest":
                blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv1d(channels, out_channels, kernel_size=5, padding=2),
                           nn.GroupNorm(8, out_channels)]
            elif config.generator_upsampling == "transpose":
                blocks += [nn.ConvTranspose1d(channels, out_channels, kernel_size=4, stride=2, padding=1),
                           nn.BatchNorm1d(out_channels)]
            else:
                raise ValueError(f"generator_upsampling={config.generator_upsampling!r}; use 'transpose' or 'nearest'")
            blocks.append(nn.ReLU(inplace=True))
            channels, length = out_channels, length * 2
        self.upsample = nn.Sequential(*blocks)
        self.to_signal = nn.Conv1d(channels, config.channels, kernel_size=7, padding=3)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.class_embedding(labels)], dim=1)  # (B, 2*latent)
        h = self.project(h).view(z.shape[0], -1, 16)  # (B, 2W, 16)
        h = self.upsample(torch.relu(h))  # (B, C, L)
        return torch.tanh(self.to_signal(h))  # (B, leads, L)


class Discriminator1D(nn.Module):
    """(beat, class) -> real/fake logit, with a projection term for the class."""

    def __init__(self, config: EcgGanConfig) -> None:
        super().__init__()
        width = config.discriminator_width
        self.features = nn.Sequential(
            nn.Conv1d(config.channels, width, kernel_size=7, stride=2, padding=3),  # (B, leads, L) -> (B, W, L/2)
            nn.LeakyReLU(0.2),
            nn.Conv1d(width, width * 2, kernel_size=5, stride=2, padding=2),  # (B, 2W, L/4)
            nn.LeakyReLU(0.2),
            nn.Conv1d(width * 2, width * 2, kernel_size=5, stride=2, padding=2),  # (B, 2W, L/8)
            nn.LeakyReLU(0.2),
            nn.Conv1d(width * 2, width * 2, kernel_size=3, stride=2, padding=1),  # (B, 2W, L/16)
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        feature_dim = width * 2 * (config.beat_length // 16)
        self.head = nn.Linear(feature_dim, 1)
        # Projection discriminator (Miyato & Koyama 2018): <embed(y), h> adds the class.
        self.class_projection = nn.Embedding(config.num_classes, feature_dim)

    def forward(self, beats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(beats)  # (B, F)
        return self.head(h).squeeze(1) + (self.class_projection(labels) * h).sum(dim=1)  # (B,)


def build_dcgan1d(**kwargs: object) -> GanPair:
    config = EcgGanConfig(**kwargs)  # type: ignore[arg-type]
    return GanPair(
        generator=Generator1D(config),
        discriminator=Discriminator1D(config),
        latent_dim=config.latent_dim,
        num_classes=config.num_classes,
    )


register_gan("dcgan1d", build_dcgan1d, sample_kinds=("signal",))
