"""The VAE part of a VAE-GAN under DP-SGD: the second Gaussian mechanism of each local step.

A VAE-GAN (:mod:`medgan_core.models.vaegan`) trains its encoder E and its generator G on a
per-record reconstruction + KL loss of *real* records, so, unlike a plain GAN's generator,
E and G are not private by post-processing. Privacy reasoning, step by step:

* **One sample, two mechanisms.** Each local step Poisson-samples one real batch (the
  secret sampler of :mod:`medgan_core.training.dp_gan`). (a) D's step clips each record's
  gradient to C and adds noise ``sigma * C`` (Opacus, unchanged); (b) this module's step
  computes each record's gradient of ``loss_i = w_rec * ||G(mu_i + s_i * eps_i, y_i) - x_i||^2
  + w_kl * KL(q(z | x_i, y_i) || N(0, I))`` with respect to E and G jointly (per-record
  gradients by ``torch.func.vmap``), clips it to C, sums, and adds ``N(0, sigma^2 C^2 I)``
  noise from the same secret noise generator.
* **Same state.** Both queries read only the weights that earlier steps released: D's step
  changes only D, and the VAE loss does not read D (reconstruction error in sample space,
  not in D's features as in Larsen et al.; a D-feature loss would make (b) a function of
  (a)'s output). The reparameterisation noise ``eps`` comes from the secret fakes' generator
  and is independent of the data.
* **Accounting.** Scaled by ``1 / C``, a record's contribution to (a) and (b) together is
  one concatenated vector of norm at most ``sqrt(2)``, with noise ``sigma`` per coordinate,
  on one sample at rate ``q``: one sampled Gaussian mechanism with noise multiplier
  ``sigma / sqrt(2)`` (:func:`privacy.accounting.joint_noise_multiplier`). The round's
  history is ``[(sigma / sqrt(2), q, steps)]``; a site calibrates that joint multiplier to
  its budget and adds ``sqrt(2)`` times it in each mechanism, so the ledger's planned epsilon
  is the composed one.
* **Sensitivity of (b).** The loss is a sum of per-record terms and E and G have no
  batch statistics (GroupNorm, no BatchNorm), so adding or removing a record changes the
  clipped sum by one vector of norm <= C. The sum is divided by the public expected batch
  size, never by a count of the data; Adam's update is post-processing.
* **What stays post-processing.** G's adversarial step on prior fakes (through the frozen
  D) and the generator average read only released weights and secret, data-independent
  noise. D never sees a reconstruction of a real record (that would be a second D term of
  the record and double its sensitivity in (a)).

Patient-level DP is not offered for a VAE-GAN: ``train_local_gan`` refuses it with a
``ConfigError``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair
from medgan_core.training.steps import clip_factors, set_noisy_average
from privacy.accounting import joint_noise_multiplier

__all__ = ["DPVaeStep", "PlainVaeStep", "dp_mechanisms", "round_history", "vae_loss"]


def dp_mechanisms(gan: GanPair) -> int:
    """Gaussian mechanisms per local step: D's, plus the VAE part's when there is an encoder."""
    return 1 if gan.encoder is None else 2


def round_history(gan: GanPair, *, noise_multiplier: float, sample_rate: float,
                  steps: int) -> list[tuple[float, float, int]]:
    """The ledger history of one round: one joint entry ``(sigma / sqrt(k), q, steps)`` for k mechanisms."""
    joint = joint_noise_multiplier(noise_multiplier, mechanisms=dp_mechanisms(gan))
    return [(float(joint), float(sample_rate), int(steps))]


class _Vae(nn.Module):
    """E and G as one module, so that one functional call gives one record's VAE loss."""

    def __init__(self, encoder: nn.Module, generator: nn.Module) -> None:
        super().__init__()
        self.encoder, self.generator = encoder, generator

    def forward(self, samples: torch.Tensor, labels: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        return vae_loss(self.encoder, self.generator, samples, labels, eps)


def vae_loss(encoder: nn.Module, generator: nn.Module, samples: torch.Tensor, labels: torch.Tensor,
             eps: torch.Tensor) -> torch.Tensor:
    """Per-record VAE loss (B,): weighted sum of squared reconstruction errors plus KL to N(0, I)."""
    mu, logvar = encoder(samples, labels)  # (B, latent) each
    reconstruction = generator(mu + torch.exp(0.5 * logvar) * eps, labels)  # (B, *shape)
    squared_error = (reconstruction - samples).pow(2).flatten(1).sum(1)  # (B,)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # (B,)
    return encoder.reconstruction_weight * squared_error + encoder.kl_weight * kl


class _VaeStepBase:
    def __init__(self, gan: GanPair, *, batch_size: int, learning_rate: float, betas: tuple[float, float],
                 latent_rng: torch.Generator) -> None:
        if gan.encoder is None:
            raise ConfigError("a VAE step needs a GanPair with an encoder (a VAE-GAN variant such as vaegan1d)")
        self.gan, self.batch_size, self.latent_rng = gan, batch_size, latent_rng
        self.vae = _Vae(gan.encoder.train(), gan.generator.train())
        self.params = [p for p in self.vae.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=learning_rate, betas=betas)

    def _eps(self, count: int) -> torch.Tensor:
        return torch.randn(count, self.gan.latent_dim, generator=self.latent_rng, device=self.latent_rng.device)


class PlainVaeStep(_VaeStepBase):
    """Non-private VAE step: the gradient of ``sum_i loss_i / batch_size`` (the control, and the
    reference the DP step reduces to at sigma 0 and C = inf)."""

    def __call__(self, real: torch.Tensor, labels: torch.Tensor) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.vae(real, labels, self._eps(len(real)))
        (losses.sum() / self.batch_size).backward()
        self.optimizer.step()
        return float(losses.detach().mean()) if len(real) else 0.0


class DPVaeStep(_VaeStepBase):
    """DP-SGD step of E and G on the VAE loss: clip each record's joint gradient to C, add noise.

    Args:
        gan: A VAE-GAN (``gan.encoder`` set).
        noise_multiplier: ``sigma`` of this mechanism (the same as D's).
        max_grad_norm: ``C``; ``inf`` only with ``noise_multiplier == 0`` (a test of the reduction).
        batch_size: The public expected batch size that divides the noisy sum.
        noise_rng, latent_rng: Secret generators for the Gaussian noise and for ``eps``.
    """

    def __init__(self, gan: GanPair, *, noise_multiplier: float, max_grad_norm: float, batch_size: int,
                 learning_rate: float, betas: tuple[float, float], noise_rng: torch.Generator,
                 latent_rng: torch.Generator) -> None:
        super().__init__(gan, batch_size=batch_size, learning_rate=learning_rate, betas=betas, latent_rng=latent_rng)
        if not max_grad_norm > 0 or (max_grad_norm == float("inf") and noise_multiplier > 0):
            raise ConfigError(f"max_grad_norm={max_grad_norm} must be positive and finite when noise_multiplier > 0")
        self.noise_multiplier, self.max_grad_norm, self.noise_rng = noise_multiplier, max_grad_norm, noise_rng
        self._per_record = _per_record_gradients(self.vae)

    def __call__(self, real: torch.Tensor, labels: torch.Tensor) -> float:
        eps = self._eps(len(real))
        if len(real):
            grads = self._per_record(real, labels, eps)  # one (B, *p.shape) per parameter
            norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)  # (B,)
            factors = clip_factors(norms, self.max_grad_norm)  # per-record clipping to C
            summed = [torch.einsum("b,b...->...", factors, g) for g in grads]
            with torch.no_grad():
                loss = float(self.vae(real, labels, eps).mean())
        else:  # an empty Poisson sample: the release is pure noise, as in Opacus
            summed, loss = [torch.zeros_like(p) for p in self.params], 0.0
        # Divided by the public expected batch size, never a count; sigma = 0 is the
        # no-privacy reduction.
        set_noisy_average(self.params, summed, std=self.noise_multiplier * self.max_grad_norm,
                          denominator=self.batch_size, generator=self.noise_rng)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss


def _per_record_gradients(vae: _Vae) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """``(x, y, eps) -> [per-record gradient of loss_i, one (B, *shape) per trainable parameter]``."""
    names = [name for name, p in vae.named_parameters() if p.requires_grad]

    def one_record(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   e: torch.Tensor) -> torch.Tensor:
        buffers = dict(vae.named_buffers())
        return functional_call(vae, {**params, **buffers}, (x[None], y[None], e[None])).squeeze(0)

    per_record = vmap(grad(one_record), in_dims=(None, 0, 0, 0))

    def compute(x: torch.Tensor, y: torch.Tensor, e: torch.Tensor) -> list[torch.Tensor]:
        params = {name: p.detach() for name, p in vae.named_parameters() if p.requires_grad}
        out = per_record(params, x, y, e)
        return [out[name] for name in names]

    return compute
