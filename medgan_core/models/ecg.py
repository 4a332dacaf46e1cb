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

__all__ = ["EcgGanConfig", "Discriminator1D", "Generator1D", "build_dcgan1d", "build_dcgan1d_smooth"]


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
    # Padding of the generator's convolutions ("zeros" or "replicate"). Zero padding shows
    # as spikes at the window's ends, which a real beat window never has.
    generator_padding: str = "zeros"
    # Cut-off of a fixed (untrained) low-pass filter on the generator's output, as a fraction
    # of the Nyquist rate (0 = none). A noisy DP discriminator gives the generator little
    # reason to avoid high-frequency jitter that no real beat has; the filter removes it by
    # construction. Part of the generator, so it costs no privacy.
    generator_lowpass: float = 0.0


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
                           nn.Conv1d(channels, out_channels, kernel_size=5, padding=2,
                                     padding_mode=config.generator_padding),
                           nn.GroupNorm(8, out_channels)]
            elif config.generator_upsampling == "transpose":
                blocks += [nn.ConvTranspose1d(channels, out_channels, kernel_size=4, stride=2, padding=1),
                           nn.BatchNorm1d(out_channels)]
            else:
                raise ValueError(f"generator_upsampling={config.generator_upsampling!r}; use 'transpose' or 'nearest'")
            blocks.append(nn.ReLU(inplace=True))
            channels, length = out_channels, length * 2
        self.upsample = nn.Sequential(*blocks)
        self.to_signal = nn.Conv1d(channels, config.channels, kernel_size=7, padding=3,
                                   padding_mode=config.generator_padding)
        self.lowpass: nn.Module = (LowPass1d(config.generator_lowpass, channels=config.channels)
                                   if config.generator_lowpass > 0 else nn.Identity())

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.class_embedding(labels)], dim=1)  # (B, 2*latent)
        h = self.project(h).view(z.shape[0], -1, 16)  # (B, 2W, 16)
        h = self.upsample(torch.relu(h))  # (B, C, L)
        return torch.tanh(self.lowpass(self.to_signal(h)))  # (B, leads, L)


class LowPass1d(nn.Module):
    """A fixed windowed-sinc (Hamming) low-pass filter per channel, with replicate padding.

    ``cutoff`` is a fraction of the Nyquist rate in (0, 1). The taps are a buffer, not a
    parameter: nothing trains them and they travel with the state dict.
    """

    def __init__(self, cutoff: float, *, channels: int = 1, taps: int = 15) -> None:
        super().__init__()
        if not 0.0 < cutoff < 1.0:
            raise ValueError(f"cutoff={cutoff} must be a fraction of the Nyquist rate in (0, 1)")
        n = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
        kernel = cutoff * torch.sinc(cutoff * n) * torch.hamming_window(taps, periodic=False, dtype=torch.float64)
        kernel = (kernel / kernel.sum()).float()  # unit gain at DC: the baseline passes unchanged
        self.channels = channels
        self.register_buffer("kernel", kernel.view(1, 1, taps).repeat(channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.kernel.shape[-1] // 2
        return nn.functional.conv1d(nn.functional.pad(x, (half, half), mode="replicate"), self.kernel,
                                    groups=self.channels)


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


def build_dcgan1d_smooth(**kwargs: object) -> GanPair:
    """DCGAN-1D whose generator upsamples by nearest neighbour + convolution with GroupNorm and
    replicate padding, then a fixed low-pass at 0.45 of the Nyquist rate (40 Hz at the ECG
    model rate of 180 Hz, above a QRS complex's main energy): no checkerboard pattern of
    strided transposed convolutions (Odena et al., Distill 2016), no batch statistics that
    differ between training and sampling, no jitter above what a beat contains and no
    spikes at the window's ends. The discriminator is :class:`Discriminator1D`'s."""
    return build_dcgan1d(**{"generator_upsampling": "nearest", "generator_padding": "replicate",
                            "generator_lowpass": 0.45, **kwargs})


register_gan("dcgan1d_smooth", build_dcgan1d_smooth, sample_kinds=("signal",))
