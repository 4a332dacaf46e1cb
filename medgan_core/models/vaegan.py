"""VAE-GAN (Larsen, Sønderby, Larochelle & Winther, ICML 2016) for ECG beats (``vaegan1d``,
(N, C, L)) and chest X-rays (``vaegan2d``, (N, 1, S, S)).

Three networks: an encoder ``E(x, y) -> (mu, logvar)`` of q(z | x, y), the generator
``G(z, y)``, which is also the VAE's decoder, and the discriminator ``D(x, y)``. G and D are
the DCGAN ones of the modality (``Generator1D`` with GroupNorm upsampling,
``Discriminator1D``; ``Generator2D``, ``Discriminator2D``); the encoder mirrors the
discriminator's strided convolutions and ends in two linear heads.

Privacy (the whole argument: :mod:`medgan_core.training.vae_dp`): E, and G through its
reconstruction of real records, see real data, so they are *not* private by
post-processing. Each step they take one DP-SGD step of their own on the same Poisson
sample as D (per-record clipping of the joint (E, G) gradient of the reconstruction + KL
loss, Gaussian noise), and the site charges both mechanisms. Two departures from the paper,
both for the per-record sensitivity: the reconstruction error is measured in sample space,
not in D's feature space, and D sees reals and prior fakes but no reconstructions (a
reconstruction of a real record would be a second D term of that record). G's
adversarial step on prior fakes stays post-processing of D.

No BatchNorm anywhere: per-record gradients (``torch.func.vmap``) need every record's
forward pass to be its own, which batch statistics would break, and GroupNorm also keeps
sites free of batch statistics to average.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medgan_core.models.ecg import Discriminator1D, EcgGanConfig, Generator1D
from medgan_core.models.registry import GanPair, register_gan
from medgan_core.models.xray import Discriminator2D, Generator2D, XrayGanConfig

__all__ = ["Encoder", "VaeGanConfig", "build_vaegan1d", "build_vaegan2d"]

# What sees real records in a VAE-GAN: each is trained under DP-SGD and charged.
VAEGAN_TOUCHES_REAL_DATA = ("encoder", "discriminator", "generator (reconstruction)")


@dataclass(frozen=True)
class VaeGanConfig:
    """The VAE part's settings (the GAN part takes the modality's DCGAN config).

    Attributes:
        encoder_width: Channels of the encoder's first convolution.
        kl_weight: Weight of KL(q(z | x, y) || N(0, I)) against the reconstruction error.
        reconstruction_weight: Weight of the per-record sum of squared errors.
    """

    encoder_width: int = 16
    kl_weight: float = 1.0
    reconstruction_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.encoder_width < 1 or self.kl_weight < 0 or self.reconstruction_weight <= 0:
            raise ValueError(f"encoder_width={self.encoder_width} must be >= 1, kl_weight={self.kl_weight} >= 0 and "
                             f"reconstruction_weight={self.reconstruction_weight} > 0")


class Encoder(nn.Module):
    """(sample, class) -> (mu, logvar) of q(z | x, y), each (B, latent)."""

    def __init__(self, features: nn.Module, feature_dim: int, *, latent_dim: int, num_classes: int,
                 config: VaeGanConfig) -> None:
        super().__init__()
        self.features = features  # (B, *shape) -> (B, F)
        self.class_embedding = nn.Embedding(num_classes, latent_dim)
        self.mu = nn.Linear(feature_dim + latent_dim, latent_dim)
        self.logvar = nn.Linear(feature_dim + latent_dim, latent_dim)
        self.kl_weight = config.kl_weight
        self.reconstruction_weight = config.reconstruction_weight

    def forward(self, samples: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.features(samples), self.class_embedding(labels)], dim=1)  # (B, F + latent)
        return self.mu(h), self.logvar(h).clamp(-10.0, 10.0)  # (B, latent) each


def _features_1d(channels: int, width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(channels, width, kernel_size=7, stride=2, padding=3), nn.LeakyReLU(0.2),  # (B, W, L/2)
        nn.Conv1d(width, width * 2, kernel_size=5, stride=2, padding=2), nn.LeakyReLU(0.2),  # (B, 2W, L/4)
        nn.Conv1d(width * 2, width * 2, kernel_size=5, stride=2, padding=2), nn.LeakyReLU(0.2),  # (B, 2W, L/8)
        nn.Conv1d(width * 2, width * 2, kernel_size=3, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, 2W, L/16)
        nn.Flatten(),
    )


def _features_2d(config: XrayGanConfig, width: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = 1
    for stage in range(config.num_resolutions):
        out_channels = width * min(2**stage, 4)
        layers += [nn.Conv2d(channels, out_channels, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = out_channels  # (B, C', S/2, S/2) per stage, down to 4x4
    return nn.Sequential(*layers, nn.Flatten()), channels * 4 * 4


def build_vaegan1d(*, encoder_width: int = 16, kl_weight: float = 1.0, reconstruction_weight: float = 1.0,
                   **kwargs: object) -> GanPair:
    """Beats of ``channels`` leads and ``beat_length`` samples; ``kwargs`` as ``dcgan1d``'s."""
    vae = VaeGanConfig(encoder_width=encoder_width, kl_weight=kl_weight, reconstruction_weight=reconstruction_weight)
    config = EcgGanConfig(**{"generator_upsampling": "nearest", **kwargs})  # type: ignore[arg-type]
    if config.generator_upsampling != "nearest":
        raise ValueError("vaegan1d needs generator_upsampling='nearest' (GroupNorm): its generator is trained on "
                         "real records with per-record gradients, which BatchNorm's batch statistics break")
    encoder = Encoder(_features_1d(config.channels, encoder_width), encoder_width * 2 * (config.beat_length // 16),
                      latent_dim=config.latent_dim, num_classes=config.num_classes, config=vae)
    return GanPair(generator=Generator1D(config), discriminator=Discriminator1D(config), latent_dim=config.latent_dim,
                   num_classes=config.num_classes, loss="bce", encoder=encoder)


def build_vaegan2d(*, encoder_width: int = 8, kl_weight: float = 1.0, reconstruction_weight: float = 1.0,
                   **kwargs: object) -> GanPair:
    """Square grey images of side ``image_size``; ``kwargs`` as ``dcgan2d``'s."""
    vae = VaeGanConfig(encoder_width=encoder_width, kl_weight=kl_weight, reconstruction_weight=reconstruction_weight)
    config = XrayGanConfig(**kwargs)  # type: ignore[arg-type]
    features, feature_dim = _features_2d(config, encoder_width)
    encoder = Encoder(features, feature_dim, latent_dim=config.latent_dim, num_classes=config.num_classes, config=vae)
    return GanPair(generator=Generator2D(config), discriminator=Discriminator2D(config), latent_dim=config.latent_dim,
                   num_classes=config.num_classes, loss="bce", encoder=encoder)


register_gan("vaegan1d", build_vaegan1d, sample_kinds=("signal",), touches_real_data=VAEGAN_TOUCHES_REAL_DATA)
register_gan("vaegan2d", build_vaegan2d, sample_kinds=("image",), touches_real_data=VAEGAN_TOUCHES_REAL_DATA)
