"""WGAN for ECG beats (``wgan1d``): ``dcgan1d``'s generator and a weight-clipped critic.

The 1-D counterpart of ``wgan2d`` (:mod:`medgan_core.models.xray`), with the same Lipschitz
choice and for the same reasons: a gradient penalty's parameter gradient is second order,
which Opacus's per-sample gradients cannot clip, and spectral normalisation keeps buffers
that Opacus's ``GradSampleModule`` refuses. Clipping every critic weight into ``[-c, c]``
after each DP step (:meth:`Critic1D.enforce_lipschitz`, called by the training loop for
``loss == "wasserstein"``) is a deterministic function of parameters that DP-SGD has
already released: post-processing, so it spends no privacy and leaves the per-sample
sensitivity C of the step untouched.
"""

from __future__ import annotations

import torch

from medgan_core.models.ecg import Discriminator1D, EcgGanConfig, Generator1D
from medgan_core.models.registry import GanPair, register_gan

__all__ = ["Critic1D", "build_wgan1d"]


class Critic1D(Discriminator1D):
    """The WGAN critic: :class:`Discriminator1D` whose weights are clipped to ``[-c, c]``."""

    def __init__(self, config: EcgGanConfig, *, weight_clip: float) -> None:
        super().__init__(config)
        if weight_clip <= 0:
            raise ValueError(f"weight_clip={weight_clip} must be positive")
        self.weight_clip = weight_clip
        self.enforce_lipschitz()

    @torch.no_grad()
    def enforce_lipschitz(self) -> None:
        """Clip every parameter into ``[-c, c]``; reads only released parameters."""
        for parameter in self.parameters():
            parameter.clamp_(-self.weight_clip, self.weight_clip)


def build_wgan1d(*, weight_clip: float = 0.05, **kwargs: object) -> GanPair:
    config = EcgGanConfig(**kwargs)  # type: ignore[arg-type]
    return GanPair(generator=Generator1D(config), discriminator=Critic1D(config, weight_clip=weight_clip),
                   latent_dim=config.latent_dim, num_classes=config.num_classes, loss="wasserstein")


register_gan("wgan1d", build_wgan1d, sample_kinds=("signal",))
