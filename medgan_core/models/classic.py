"""Classic conditional GAN (Goodfellow et al. 2014): fully connected generator and
discriminator, for ECG beats (``mlp1d``, (N, C, L)) and chest X-rays (``mlp2d``, (N, 1, S, S)).

The baseline family: no convolution, so no locality prior. The discriminator keeps the
interface of the convolutional ones (``forward(samples, labels) -> (B,)`` logits, class by a
projection term, Miyato & Koyama 2018), so the DP step, the audits and the explanations use
it unchanged. It has no normalisation layer at all (BatchNorm would mix the records of a
batch and break DP-SGD's per-sample sensitivity); the generator uses LayerNorm, which
normalises each sample on its own, so there are no batch statistics to average across sites.

Why the discriminator is narrow (128 hidden units): its first layer has ``prod(shape) * 128``
weights, which at 64x64 is already half a million, and DP-SGD's noise norm grows with the
square root of the number of discriminator parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from medgan_core.models.registry import GanPair, register_gan

__all__ = ["MlpDiscriminator", "MlpGanConfig", "MlpGenerator", "build_mlp1d", "build_mlp2d"]


@dataclass(frozen=True)
class MlpGanConfig:
    sample_shape: tuple[int, ...]  # (C, L) for beats, (1, S, S) for images
    latent_dim: int = 32
    num_classes: int = 2
    generator_width: int = 256
    discriminator_width: int = 128

    @property
    def sample_size(self) -> int:
        return math.prod(self.sample_shape)


class MlpGenerator(nn.Module):
    """z, class -> sample in [-1, 1] of ``sample_shape``."""

    def __init__(self, config: MlpGanConfig) -> None:
        super().__init__()
        self.config = config
        width = config.generator_width
        self.class_embedding = nn.Embedding(config.num_classes, config.latent_dim)
        self.body = nn.Sequential(
            nn.Linear(config.latent_dim * 2, width), nn.LayerNorm(width), nn.ReLU(inplace=True),
            nn.Linear(width, width * 2), nn.LayerNorm(width * 2), nn.ReLU(inplace=True),
            nn.Linear(width * 2, config.sample_size),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.class_embedding(labels)], dim=1)  # (B, 2*latent)
        return torch.tanh(self.body(h)).view(z.shape[0], *self.config.sample_shape)  # (B, *shape)


class MlpDiscriminator(nn.Module):
    """(sample, class) -> real/fake logit, with a class projection term."""

    def __init__(self, config: MlpGanConfig) -> None:
        super().__init__()
        width = config.discriminator_width
        self.features = nn.Sequential(
            nn.Flatten(),  # (B, *shape) -> (B, prod(shape))
            nn.Linear(config.sample_size, width), nn.LeakyReLU(0.2),
            nn.Linear(width, width // 2), nn.LeakyReLU(0.2),  # (B, W/2)
        )
        self.head = nn.Linear(width // 2, 1)
        self.class_projection = nn.Embedding(config.num_classes, width // 2)

    def forward(self, samples: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(samples)  # (B, F)
        return self.head(h).squeeze(1) + (self.class_projection(labels) * h).sum(dim=1)  # (B,)


def _pair(config: MlpGanConfig) -> GanPair:
    return GanPair(generator=MlpGenerator(config), discriminator=MlpDiscriminator(config),
                   latent_dim=config.latent_dim, num_classes=config.num_classes, loss="bce")


def build_mlp1d(*, beat_length: int = 128, channels: int = 1, **kwargs: object) -> GanPair:
    """Beats of ``channels`` leads and ``beat_length`` samples."""
    return _pair(MlpGanConfig(sample_shape=(channels, beat_length), **kwargs))  # type: ignore[arg-type]


def build_mlp2d(*, image_size: int = 64, **kwargs: object) -> GanPair:
    """Square grey images of side ``image_size``."""
    return _pair(MlpGanConfig(sample_shape=(1, image_size, image_size), **kwargs))  # type: ignore[arg-type]


register_gan("mlp1d", build_mlp1d, sample_kinds=("signal",))
register_gan("mlp2d", build_mlp2d, sample_kinds=("image",))
