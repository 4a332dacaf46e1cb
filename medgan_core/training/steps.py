"""What record-level and patient-level local training share: config, result, losses, the
generator step, the weight average and the secret generators.

:mod:`medgan_core.training.dp_gan` (record-level DP-SGD, and the entry point
``train_local_gan``) and :mod:`medgan_core.training.patient_dp` (patient-level) both build
on this module, so the dependency between them runs one way: ``dp_gan`` dispatches to
``patient_dp``, and neither reaches into the other's internals. The privacy reasoning of
each piece is in :mod:`medgan_core.training.dp_gan`'s module docstring.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair

__all__ = [
    "LocalTrainingConfig",
    "LocalTrainingResult",
    "ProgressFn",
    "WassersteinLoss",
    "WeightAverage",
    "adversarial_loss",
    "check_loss",
    "clip_factors",
    "generator_step",
    "mode_seeking_penalty",
    "prior_labels",
    "secret_generators",
    "set_noisy_average",
    "unwrap",
]

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class LocalTrainingConfig:
    local_steps: int = 60
    batch_size: int = 64
    learning_rate_d: float = 8e-4
    learning_rate_g: float = 8e-4
    betas: tuple[float, float] = (0.5, 0.999)
    # None (the default): secret randomness from the OS's CSPRNG, drawn anew at every call.
    # An int makes the round reproducible by whoever knows it, which voids the DP guarantee
    # against them: tests and benchmarks only.
    seed: int | None = None
    # The public size N' behind the Poisson sampling rate q = batch_size / N'. A site passes
    # the size it released with DP (charged); None means the exact count, for callers that
    # make no privacy claim about it (tests, baselines, the non-private control).
    public_dataset_size: int | None = None
    # Weight of the mode-seeking term (Mao et al., MSGAN, CVPR 2019) in the generator's
    # loss: 1 / (mean |G(z1,y) - G(z2,y)| / mean |z1 - z2|). It pushes two latents of the
    # same class apart in output space, against the collapse a noisy discriminator invites.
    # It reads only generator outputs, so it costs no privacy. 0 turns it off.
    mode_seeking_weight: float = 0.0
    # Decay of an exponential moving average of the generator's weights over the local
    # steps; the average, not the last iterate, is what the site releases. It starts at the
    # weights the round began with, so it also damps each site's drift before FedAvg (at
    # 0.99 over 100 steps, 0.99**100 = 37% of the release is the starting point). A function
    # of generator iterates only: no privacy cost. 0 turns it off.
    generator_ema: float = 0.0
    # Discriminator steps per generator step (n_D, Bie et al., "Private GANs, Revisited",
    # TMLR 2023): the generator steps after every n_D-th of the ``local_steps`` private
    # discriminator steps and after the last one (every round moves the generator). The
    # privacy count is the discriminator's steps, whatever n_D.
    discriminator_steps: int = 1
    # Where the generator, the discriminator, Opacus's per-sample gradients and the DP
    # noise live: a resolved device (``medgan_core.device.resolve_device``), never "auto".
    # The models come back to the CPU when training ends.
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        if self.local_steps <= 0 or self.batch_size <= 0:
            raise ConfigError(
                f"local_steps={self.local_steps} and batch_size={self.batch_size} must be positive"
            )
        if self.discriminator_steps <= 0:
            raise ConfigError(f"discriminator_steps={self.discriminator_steps} must be at least 1")
        if self.mode_seeking_weight < 0:
            raise ConfigError(f"mode_seeking_weight={self.mode_seeking_weight} must be >= 0")
        if not 0.0 <= self.generator_ema < 1.0:
            raise ConfigError(f"generator_ema={self.generator_ema} must be in [0, 1); 0 turns it off")
        if self.public_dataset_size is not None and self.public_dataset_size < self.batch_size:
            raise ConfigError(
                f"public_dataset_size={self.public_dataset_size} is smaller than batch_size={self.batch_size}; "
                "lower batch-size"
            )

    def generator_steps_after(self, step: int) -> bool:
        """Whether the generator steps after discriminator step ``step`` (1-based): after every
        ``discriminator_steps``-th and after the round's last, so every round moves it."""
        return step % self.discriminator_steps == 0 or step == self.local_steps


@dataclass
class LocalTrainingResult:
    d_loss: float
    g_loss: float
    # The discriminator's loss on the step's fakes only: a function of privatised weights
    # and data-independent fakes, so unlike ``d_loss`` it may leave the site.
    d_loss_fake: float
    steps: int
    num_examples: int
    sample_rate: float
    # Opacus accountant history of this training call only: [(sigma, q, steps)].
    dp_history: list[tuple[float, float, int]] = field(default_factory=list)


class WassersteinLoss(nn.modules.loss._Loss):
    """Critic loss ``-D(x)`` for targets 1 (real) and ``+D(x~)`` for targets 0 (fake).

    Per sample, like BCE, so Opacus clips each record's term; honours ``reduction`` because
    Opacus's ghost clipping asks the criterion for per-sample losses (``"none"``).
    """

    def forward(self, scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        per_sample = (1.0 - 2.0 * targets) * scores  # (B,)
        if self.reduction == "none":
            return per_sample
        return per_sample.sum() if self.reduction == "sum" else per_sample.mean()


_LOSSES = ("bce", "wasserstein")


def adversarial_loss(kind: str, reduction: str = "mean") -> nn.Module:
    """The discriminator's loss; ``reduction="none"`` gives one loss per sample."""
    return WassersteinLoss(reduction=reduction) if kind == "wasserstein" else nn.BCEWithLogitsLoss(reduction=reduction)


def _generator_loss(kind: str, scores: torch.Tensor) -> torch.Tensor:
    if kind == "wasserstein":
        return -scores.mean()
    return nn.functional.binary_cross_entropy_with_logits(scores, torch.ones_like(scores))


def check_loss(gan: GanPair) -> None:
    if gan.loss not in _LOSSES:
        raise ConfigError(f"GanPair.loss={gan.loss!r} is not one of {_LOSSES}")
    if gan.loss == "wasserstein" and not callable(getattr(gan.discriminator, "enforce_lipschitz", None)):
        raise ConfigError(
            f"{type(gan.discriminator).__name__} has loss 'wasserstein' but no enforce_lipschitz(); "
            "a critic must bound its Lipschitz constant (see medgan_core.models.xray.Critic2D)"
        )


def prior_labels(count: int, prior: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(prior, count, replacement=True, generator=generator)


def secret_generators(seed: int | None, *, device: torch.device | str = "cpu"
                      ) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Generators for (DP noise, fakes, Poisson sampling): secret unless ``seed`` is given.

    The noise and fake generators live on ``device``, where the noise and the latents are
    drawn (a CUDA tensor cannot be drawn from a CPU generator, and drawing on the CPU and
    copying would cost a transfer per step). The sampling generator stays on the CPU: the
    samplers draw their coins there, over record indices held on the CPU. Each is seeded
    from ``secrets`` on every call, whatever the device; on the CPU this is bit for bit
    what it always was.
    """
    seeds = [secrets.randbits(63) for _ in range(3)] if seed is None else [seed, seed + 1, seed + 2]
    devices = (torch.device(device), torch.device(device), torch.device("cpu"))
    return tuple(torch.Generator(device=d).manual_seed(s) for d, s in zip(devices, seeds))  # type: ignore[return-value]


class WeightAverage:
    """Exponential moving average of a module's floating-point parameters and buffers."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for key, value in module.state_dict().items():
            if key in self.shadow:
                self.shadow[key].lerp_(value, 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict({**module.state_dict(), **self.shadow})




def generator_step(gan: GanPair, discriminator: nn.Module, optimizer: torch.optim.Optimizer,
                   count: int, prior: torch.Tensor, rng: torch.Generator, *,
                   mode_seeking_weight: float = 0.0) -> float:
    d_params = [p for p in discriminator.parameters()]
    flags = [p.requires_grad for p in d_params]
    # Frozen discriminator with Opacus's hooks off: no per-sample gradients are captured,
    # no parameter gradient is written, and the DP optimizer is never involved.
    hooks = getattr(discriminator, "disable_hooks", None)
    if callable(hooks):
        discriminator.disable_hooks()
    for p in d_params:
        p.requires_grad_(False)
    try:
        paired = mode_seeking_weight > 0 and count >= 2
        if paired:
            # Pairs of latents per label: the first and second halves share their labels.
            half = prior_labels(count // 2, prior, rng)
            fake_labels = torch.cat([half, half])
        else:
            fake_labels = prior_labels(count, prior, rng)
        latents = torch.randn(len(fake_labels), gan.latent_dim, generator=rng, device=rng.device)
        fake = gan.generator(latents, fake_labels)
        loss = _generator_loss(gan.loss, discriminator(fake, fake_labels))
        total = loss + mode_seeking_weight * mode_seeking_penalty(fake, latents) if paired else loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    finally:
        for p, flag in zip(d_params, flags):
            p.requires_grad_(flag)
        if callable(hooks):
            discriminator.enable_hooks()
    return float(loss.detach())  # the adversarial part: comparable with and without the term


def mode_seeking_penalty(fake: torch.Tensor, latents: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's term for outputs whose first and second halves are paired (same labels).

    Small when the generator maps distant latents to distant outputs, large when it
    collapses them onto one output. Distances are mean absolute differences.
    """
    half = len(fake) // 2
    output_gap = (fake[:half] - fake[half:2 * half]).abs().flatten(1).mean(1)
    latent_gap = (latents[:half] - latents[half:2 * half]).abs().mean(1)
    return 1.0 / ((output_gap / latent_gap).mean() + eps)


def unwrap(grad_sample_module: nn.Module) -> None:
    """Remove Opacus hooks so the plain discriminator can be serialised and reused."""
    remove = getattr(grad_sample_module, "_close", None)
    if callable(remove):
        remove()


def clip_factors(norms: torch.Tensor, max_grad_norm: float) -> torch.Tensor:
    """Per-unit scale that clips a gradient of norm ``norms`` to ``max_grad_norm`` (C).

    Opacus's factor ``min(1, C / (||g|| + 1e-6))``, shared by every DP step here (records,
    patients, the VAE-GAN's second mechanism) so their sensitivity argument is one.
    """
    return (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)


def set_noisy_average(params: list[nn.Parameter], clipped_sums: list[torch.Tensor], *, std: float,
                      denominator: int, generator: torch.Generator | None) -> None:
    """``p.grad = (clipped sum + N(0, std^2)) / denominator`` for each parameter, in order.

    One normal draw per parameter, in parameter order, from the caller's secret
    ``generator`` (as Opacus's ``_generate_noise``), drawn on the sum's device; ``std = 0``
    is the no-privacy reduction. ``denominator`` is public (the expected batch size or
    patients per step), never a count of the data.
    """
    for parameter, total in zip(params, clipped_sums, strict=True):
        if std > 0:
            total = total + torch.normal(mean=0.0, std=std, size=total.shape, device=total.device,
                                         generator=generator)
        parameter.grad = (total / denominator).to(parameter.dtype)
