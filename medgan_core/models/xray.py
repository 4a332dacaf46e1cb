"""Conditional 2-D GANs for square grey chest X-rays (64x64 by default, 128x128 as option).

The variants share the discriminator and differ in the loss, the critic's constraint or how
the generator upsamples:

* ``dcgan2d``: non-saturating BCE loss, as ``dcgan1d`` for ECG; transposed convolutions.
* ``dcgan2d_smooth`` (the X-ray job's): ``dcgan2d`` whose generator upsamples by nearest
  neighbour + 3x3 convolution, so it cannot draw the transposed convolutions' checkerboard.
* ``dcgan2d_lowpass``: ``dcgan2d_smooth`` with a fixed binomial low-pass on the generator's
  half-side image.
* ``wgan2d``: Wasserstein loss with a weight-clipped critic (Arjovsky et al. 2017).

Why weight clipping and not a gradient penalty or spectral normalisation: DP-SGD needs a
per-sample gradient of the whole discriminator loss. A gradient penalty (WGAN-GP) is a
function of ``grad_x D(x)``, so its parameter gradient is second order; Opacus's
per-sample gradient hooks only see first-order backward passes and cannot clip it. The
penalty's interpolates would also mix each real record with a fake. Spectral
normalisation keeps power-iteration buffers in a parametrised layer, which Opacus 1.6's
``GradSampleModule`` refuses ("trainable layer with buffers").
Clipping the critic's weights into ``[-c, c]`` after every DP step is a deterministic
function of the already privatised parameters, so it is post-processing: it costs no
privacy and leaves the sensitivity argument of :mod:`medgan_core.training.dp_gan` intact.
The training loop calls :meth:`Critic2D.enforce_lipschitz` after each discriminator step.

Neither discriminator has BatchNorm (it mixes samples in a batch, which breaks per-sample
gradients and DP-SGD's sensitivity argument); the generator uses GroupNorm, which
normalises per sample, so training and sampling behave alike and there are no batch
statistics to average across sites. Both networks are small (at 64x64, 305,697 generator
parameters with transposed convolutions, 230,433 with nearest upsampling, and 110,001
discriminator parameters).

Why the discriminator has width 16: DP-SGD's noise norm grows with the square root of the
number of discriminator parameters, which argues for a tiny network. Under DP at epsilon 10
on about 1,300 images per site, width 4 (7.5k parameters) gave the generator less class
signal; widths 8 (28k) and 16 (110k) were alike on average over three training seeds, with
width 16 the steadier of the two, at about 1.6x the CPU time per step
(``benchmarks/xray_dp_sweep.py``; figures in the README's "Chest X-rays" section).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from medgan_core.models.registry import GanPair, register_gan

__all__ = [
    "BinomialLowPass2d",
    "Critic2D",
    "Discriminator2D",
    "Generator2D",
    "XrayGanConfig",
    "build_dcgan2d",
    "build_dcgan2d_lowpass",
    "build_dcgan2d_smooth",
    "build_wgan2d",
]

_BASE = 4  # the generator starts from 4x4; the discriminator ends at 4x4


@dataclass(frozen=True)
class XrayGanConfig:
    latent_dim: int = 32
    num_classes: int = 2
    image_size: int = 64  # 4 * 2**k with k >= 2: 16, 32, 64 (default), 128
    # Small on purpose: the norm of DP-SGD's noise grows with the square root of the number
    # of discriminator parameters, and a site trains on a CPU (see the module docstring).
    generator_width: int = 32
    discriminator_width: int = 16
    weight_clip: float = 0.05  # wgan2d only: critic weights stay in [-c, c]
    # "transpose": 4x4 stride-2 transposed convolutions (the cheapest on a CPU); "nearest":
    # nearest upsampling + 3x3 convolution with replicate padding, which cannot draw the
    # transposed convolutions' checkerboard (Odena, Dumoulin & Olah, Distill 2016).
    generator_upsampling: str = "transpose"
    # A fixed (untrained) 3x3 binomial low-pass on the generator's half-side image before
    # the bilinear doubling: zero gain at that side's Nyquist rate, so the pixel-to-pixel
    # texture a noisy DP critic lets through cannot be drawn (as dcgan1d_smooth's low-pass).
    generator_lowpass: bool = False

    def __post_init__(self) -> None:
        steps = self.image_size // _BASE
        if self.image_size < 16 or self.image_size % _BASE or steps & (steps - 1):
            raise ValueError(f"image_size={self.image_size} must be 4 * 2**k >= 16, e.g. 64 or 128")
        if self.weight_clip <= 0:
            raise ValueError(f"weight_clip={self.weight_clip} must be positive")
        if self.generator_upsampling not in ("transpose", "nearest"):
            raise ValueError(f"generator_upsampling={self.generator_upsampling!r}; use 'transpose' or 'nearest'")

    @property
    def num_resolutions(self) -> int:
        """Number of 2x up- (G) or down-sampling (D) stages between 4x4 and the image."""
        return (self.image_size // _BASE).bit_length() - 1


class Generator2D(nn.Module):
    """z, class -> image in [-1, 1]."""

    def __init__(self, config: XrayGanConfig) -> None:
        super().__init__()
        self.config = config
        channels = config.generator_width * 4
        self.class_embedding = nn.Embedding(config.num_classes, config.latent_dim)
        self.project = nn.Linear(config.latent_dim * 2, channels * _BASE * _BASE)
        blocks: list[nn.Module] = []
        for _ in range(config.num_resolutions - 1):
            out_channels = max(channels // 2, 16)
            if config.generator_upsampling == "transpose":
                # A 4x4 transposed convolution with stride 2 doubles the side; on a CPU it costs
                # less than half of nearest upsampling + 3x3 conv at the larger side, but its
                # uneven kernel overlap draws a checkerboard that a noisy DP critic never removes.
                blocks.append(nn.ConvTranspose2d(channels, out_channels, kernel_size=4, stride=2, padding=1))
            else:
                # Every output pixel sees the same number of kernel taps: no checkerboard.
                blocks += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(channels, out_channels, kernel_size=3, padding=1, padding_mode="replicate")]
            blocks += [nn.GroupNorm(8, out_channels), nn.ReLU(inplace=True)]
            channels = out_channels
        self.upsample = nn.Sequential(*blocks)
        # The image is drawn at half the side and doubled bilinearly: a smoothness prior.
        # Under DP the discriminator's gradients are noisy, and a generator free to place
        # every pixel learns speckle that fools it; a bilinear last step cannot. It also
        # keeps wide feature maps off the full resolution, where a CPU spends its time.
        self.to_image = nn.Sequential(
            nn.Conv2d(channels, 1, kernel_size=3, padding=1),  # (B, 1, S/2, S/2)
            BinomialLowPass2d() if config.generator_lowpass else nn.Identity(),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),  # (B, 1, S, S)
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.class_embedding(labels)], dim=1)  # (B, 2*latent)
        h = self.project(h).view(z.shape[0], -1, _BASE, _BASE)  # (B, 4W, 4, 4)
        h = self.upsample(torch.relu(h))  # (B, C, S/2, S/2)
        return torch.tanh(self.to_image(h))  # (B, 1, S, S)


class BinomialLowPass2d(nn.Module):
    """The fixed 3x3 binomial filter ``[1, 2, 1]^T [1, 2, 1] / 16`` on one channel, with
    replicate padding: unit gain at DC, zero at the Nyquist rate on both axes. The taps are a
    buffer, not a parameter: nothing trains them and they travel with the state dict."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(taps, taps) / 16).view(1, 1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel)


class Discriminator2D(nn.Module):
    """(image, class) -> real/fake logit (or critic score), with a class projection term."""

    def __init__(self, config: XrayGanConfig) -> None:
        super().__init__()
        width = config.discriminator_width
        layers: list[nn.Module] = []
        channels = 1
        for stage in range(config.num_resolutions):
            out_channels = width * min(2**stage, 4)
            # Strided 4x4 convolutions halve the side: (B, C, S, S) -> (B, C', S/2, S/2).
            layers += [nn.Conv2d(channels, out_channels, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out_channels
        self.features = nn.Sequential(*layers, nn.Flatten())  # (B, C * 4 * 4)
        feature_dim = channels * _BASE * _BASE
        self.head = nn.Linear(feature_dim, 1)
        # Projection discriminator (Miyato & Koyama 2018): <embed(y), h> adds the class.
        self.class_projection = nn.Embedding(config.num_classes, feature_dim)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(images)  # (B, F)
        return self.head(h).squeeze(1) + (self.class_projection(labels) * h).sum(dim=1)  # (B,)


class Critic2D(Discriminator2D):
    """The WGAN critic: :class:`Discriminator2D` whose weights are clipped to ``[-c, c]``."""

    def __init__(self, config: XrayGanConfig) -> None:
        super().__init__(config)
        self.weight_clip = config.weight_clip
        self.enforce_lipschitz()

    @torch.no_grad()
    def enforce_lipschitz(self) -> None:
        """Clip every parameter into ``[-c, c]``: bounds the critic's Lipschitz constant.

        Called after each (DP) optimizer step; it only reads the released parameters, so
        it is post-processing and spends no privacy.
        """
        for parameter in self.parameters():
            parameter.clamp_(-self.weight_clip, self.weight_clip)


def build_dcgan2d(**kwargs: object) -> GanPair:
    config = XrayGanConfig(**kwargs)  # type: ignore[arg-type]
    return GanPair(generator=Generator2D(config), discriminator=Discriminator2D(config),
                   latent_dim=config.latent_dim, num_classes=config.num_classes, loss="bce")


def build_wgan2d(**kwargs: object) -> GanPair:
    config = XrayGanConfig(**kwargs)  # type: ignore[arg-type]
    return GanPair(generator=Generator2D(config), discriminator=Critic2D(config),
                   latent_dim=config.latent_dim, num_classes=config.num_classes, loss="wasserstein")


def build_dcgan2d_smooth(**kwargs: object) -> GanPair:
    """DCGAN-2D whose generator upsamples by nearest neighbour + 3x3 convolution (replicate
    padding) instead of transposed convolutions: every output pixel gets the same number of
    kernel taps, so there is no checkerboard (Odena, Dumoulin & Olah, Distill 2016). The
    discriminator, which DP-SGD trains, is :class:`Discriminator2D`'s."""
    return build_dcgan2d(**{"generator_upsampling": "nearest", **kwargs})


def build_dcgan2d_lowpass(**kwargs: object) -> GanPair:
    """:func:`build_dcgan2d_smooth` with a fixed binomial low-pass on the generator's image
    before its bilinear doubling (:class:`BinomialLowPass2d`): the generator cannot draw
    texture at the pixel scale of its half-side image. Part of the generator, so it costs
    no privacy; the discriminator is :class:`Discriminator2D`'s."""
    return build_dcgan2d_smooth(**{"generator_lowpass": True, **kwargs})


register_gan("dcgan2d", build_dcgan2d, sample_kinds=("image",))
register_gan("dcgan2d_lowpass", build_dcgan2d_lowpass, sample_kinds=("image",))
register_gan("dcgan2d_smooth", build_dcgan2d_smooth, sample_kinds=("image",))
register_gan("wgan2d", build_wgan2d, sample_kinds=("image",))
