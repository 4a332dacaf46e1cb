"""One site's local GAN training, with DP-SGD (Opacus) on the discriminator only.

Privacy reasoning, in short:

* Only the discriminator touches real records. Its step runs under Opacus DP-SGD with
  Poisson sampling: per-sample gradients are clipped to ``max_grad_norm`` and Gaussian
  noise is added, and Opacus's RDP accountant records ``(sigma, q, steps)``.
* The fakes in a discriminator step are a *fixed* number (the expected batch size) with
  labels drawn from a class prior that was itself released with DP (see
  ``medgan_core.site``), independent of the real batch. If they were paired with the
  real batch (same size, same labels), adding or removing one record would change two
  clipped terms and the sensitivity would be 2C, not C. The prior matters for utility:
  with uniform fake labels and rare real V beats, the discriminator learns "label V means
  fake" from the label alone and the generator never learns V morphology.
* The generator step sees the discriminator only through its outputs on fakes. The
  discriminator's parameters are frozen during that step, so the generator's backward
  pass neither fills per-sample gradients nor calls the DP optimizer, and the accountant
  does not count it. The generator is private by post-processing. With
  ``discriminator_steps`` = n_D > 1 the generator steps after every n_D-th discriminator
  step (and after the round's last): fewer generator steps, the same charged D steps.
* Randomness is secret. The Gaussian noise, the Poisson sampling of records and the fakes
  come from three generators seeded from the operating system's CSPRNG (``secrets``) at
  every call, so nobody outside the site process, in particular a coordinator holding the
  run configuration, can replay a round with and without a record and compare. A fixed
  ``LocalTrainingConfig.seed`` makes a round reproducible and therefore voids the
  guarantee: tests and benchmarks only (a site only passes one behind its site-local test
  switch, ``MEDGAN_INSECURE_DETERMINISTIC_SEED``).
* The sampling rate is ``q = batch_size / public_dataset_size`` where the size is public
  (a DP release charged to the ledger, see ``medgan_core.site``), never the exact record
  count: the sampler and the accountant use this same ``q``, and the noisy gradient sum is
  divided by the public expected batch size ``batch_size``, not by a count of the data.
* ``gan.loss == "wasserstein"`` changes only the per-sample loss (``-D(x)`` for a real
  record, ``+D(x~)`` for a fake), so each real record still contributes one clipped term.
  The critic's Lipschitz constraint is applied by ``enforce_lipschitz()`` after every
  step, to the already privatised weights: post-processing, no privacy cost. A gradient
  penalty is not offered: its parameter gradient is second order, which Opacus's
  per-sample gradients do not support.
* A VAE-GAN (``gan.encoder`` set) adds a second Gaussian mechanism on the same Poisson
  sample: the encoder's and the generator's reconstruction + KL step, clipped per record
  and noised with the same ``sigma`` (:mod:`medgan_core.training.vae_dp`, which also argues
  the accounting: one joint entry ``(sigma / sqrt(2), q, steps)``). It runs after D's step
  and reads no D weight, so both mechanisms query the same released state. Record-level
  only: patient-level ``dp`` is refused.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch
from opacus import PrivacyEngine
from torch import nn
from opacus.data_loader import DPDataLoader
from torch.utils.data import DataLoader, TensorDataset

from medgan_core.config import DEFAULT_GRAD_SAMPLE_MODE
from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair
from medgan_core.training import grad_samplers  # noqa: F401  (registers the faster Conv1d sampler)
from medgan_core.training.fused_dp import FusedDPGradients
from medgan_core.training.patient_dp import PatientDPSettings, train_local_gan_per_patient
from medgan_core.training.vae_dp import DPVaeStep, PlainVaeStep, round_history
from medgan_core.training.steps import (
    LocalTrainingConfig,
    LocalTrainingResult,
    ProgressFn,
    WassersteinLoss,
    mode_seeking_penalty,
)
from medgan_core.training.steps import WeightAverage as _WeightAverage
from medgan_core.training.steps import adversarial_loss as _adversarial_loss
from medgan_core.training.steps import check_loss as _check_loss
from medgan_core.training.steps import generator_step as _generator_step
from medgan_core.training.steps import prior_labels as _prior_labels
from medgan_core.training.steps import secret_generators as _generators
from medgan_core.training.steps import unwrap as _unwrap

__all__ = [
    "DPSettings",
    "LocalTrainingConfig",
    "LocalTrainingResult",
    "ProgressFn",
    "WassersteinLoss",
    "mode_seeking_penalty",
    "train_local_gan",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class DPSettings:
    """DP-SGD settings for the discriminator.

    Attributes:
        noise_multiplier: Noise std / clipping norm.
        max_grad_norm: Per-sample gradient clipping norm C.
        grad_sample_mode: How per-sample gradients are clipped. ``"fused"``: this
            project's one-pass clip-and-noise (:mod:`medgan_core.training.fused_dp`),
            the same mechanism as Opacus's, for Linear/Conv/Embedding discriminators;
            ``"hooks"``: Opacus's per-sample gradients, any layer Opacus supports;
            ``"ghost"``: Opacus's fast gradient clipping (norms without materialising).
    """

    noise_multiplier: float
    max_grad_norm: float = 1.0
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE


def train_local_gan(
    *,
    gan: GanPair,
    beats: torch.Tensor,
    labels: torch.Tensor,
    config: LocalTrainingConfig,
    dp: DPSettings | PatientDPSettings | None,
    fake_label_prior: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
    patient_ids: Sequence[Hashable] | None = None,
) -> LocalTrainingResult:
    """Run ``config.local_steps`` discriminator+generator steps on one site's data.

    Args:
        gan: Generator and discriminator, already loaded with the global weights.
        beats: (N, 1, L) or (N, 1, H, W) real samples in model units.
        labels: (N,) class indices.
        config: Steps, batch size, learning rates, seed.
        dp: DP-SGD settings, or ``None`` for non-private training (a control, never the
            default in a federation). A :class:`~medgan_core.training.patient_dp.PatientDPSettings`
            makes the patient the unit (``patient_dp.train_local_gan_per_patient``).
        fake_label_prior: (num_classes,) class probabilities for the fakes of the
            discriminator and generator steps; must not be computed from the data
            without DP. ``None`` means uniform. The generator step uses it too: a site
            whose discriminator has seen few examples of a class should move the
            generator's pathway for that class little, or federated averaging mixes a
            well-trained rare class with noise from the sites that barely have it.
        progress: Called as ``progress(step, total_steps, metrics)`` every few steps.
        patient_ids: (N,) the patient of each record; required with patient-level ``dp``
            and refused otherwise (record-level DP says nothing about patients).

    Returns:
        Mean losses over the last steps, and the DP history to record in the ledger.

    Raises:
        ConfigError: fewer samples than a batch, or an unknown ``gan.loss`` / a
            ``"wasserstein"`` critic without ``enforce_lipschitz()``; ``patient_ids``
            without patient-level ``dp`` or the reverse; a VAE-GAN with patient-level ``dp``.
    """
    if isinstance(dp, PatientDPSettings) and gan.encoder is not None:
        raise ConfigError("a VAE-GAN's encoder and generator train on real records, and their per-patient clipping "
                          "is not implemented: use privacy-unit='record' with a VAE-GAN variant, or a plain GAN "
                          "variant for patient-level DP")
    if isinstance(dp, PatientDPSettings):
        if patient_ids is None:
            raise ConfigError("patient-level DP needs patient_ids, one per record")
        return train_local_gan_per_patient(
            gan=gan, beats=beats, labels=labels, patient_ids=patient_ids, config=config, dp=dp,
            fake_label_prior=fake_label_prior, progress=progress)
    if patient_ids is not None:
        raise ConfigError("patient_ids are used only by patient-level DP: pass dp=PatientDPSettings(...), "
                          "or drop patient_ids for record-level DP")
    # Poisson sampling works with any number of records; only the non-private control's
    # fixed batches need a full one. With DP, the caller checks the public size instead:
    # refusing on the exact count would release one bit of it.
    if dp is None and len(beats) < config.batch_size:
        raise ConfigError(
            f"site has {len(beats)} samples, fewer than batch_size={config.batch_size}; lower batch-size"
        )
    _check_loss(gan)
    device = torch.device(config.device)
    noise_rng, fake_rng, sampling_rng = _generators(config.seed, device=device)
    # On the device before Opacus wraps the discriminator and the optimizers see the
    # parameters; the records stay on the CPU and each sampled batch is moved.
    generator, discriminator = gan.generator.to(device).train(), gan.discriminator.to(device).train()
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate_d, betas=config.betas)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=config.learning_rate_g, betas=config.betas)
    dataset = TensorDataset(beats, labels)
    public_size = config.public_dataset_size or len(beats)
    if public_size < config.batch_size:
        raise ConfigError(f"site has {public_size} samples, fewer than batch_size={config.batch_size}; "
                          "lower batch-size")
    sample_rate = config.batch_size / public_size
    criterion: nn.Module = _adversarial_loss(gan.loss)
    if dp is None:
        loader: DataLoader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True,
                                        generator=sampling_rng)
    else:
        # Our own Poisson sampler at the public rate q; Opacus must not derive q (or the
        # averaging denominator) from len(dataset), which is the private count.
        loader = DPDataLoader(dataset, sample_rate=sample_rate, generator=sampling_rng)
    fused: FusedDPGradients | None = None
    if dp is not None and dp.grad_sample_mode == "fused":
        # Same clipping, noise and averaging as Opacus's optimizer, one backward pass.
        fused = FusedDPGradients(discriminator, noise_multiplier=dp.noise_multiplier,
                                 max_grad_norm=dp.max_grad_norm, expected_batch_size=config.batch_size,
                                 noise_generator=noise_rng)
        criterion = _adversarial_loss(gan.loss, reduction="none")
    elif dp is not None:
        engine = PrivacyEngine(accountant="rdp")
        with warnings.catch_warnings():
            # "Secure RNG turned off": Opacus's secure mode needs torchcsprng, which does not
            # build for this torch; the noise generator passed here is seeded from secrets.
            warnings.simplefilter("ignore", UserWarning)
            prepared = engine.make_private(
                module=discriminator, optimizer=d_optimizer, criterion=criterion, data_loader=loader,
                noise_multiplier=dp.noise_multiplier, max_grad_norm=dp.max_grad_norm,
                poisson_sampling=False, grad_sample_mode=dp.grad_sample_mode, noise_generator=noise_rng,
            )
        if dp.grad_sample_mode == "ghost":
            discriminator, d_optimizer, criterion, _ = prepared
        else:
            discriminator, d_optimizer, _ = prepared
        discriminator.forbid_grad_accumulation()
        # Average the noisy sum over the public expected batch size (q * N' = batch_size).
        d_optimizer.expected_batch_size = config.batch_size
        logger.debug("DP-SGD with noise %.3f, clip %.2f, q %.5f, %s per-sample gradients",
                     dp.noise_multiplier, dp.max_grad_norm, sample_rate, dp.grad_sample_mode)
    prior = (torch.full((gan.num_classes,), 1.0 / gan.num_classes) if fake_label_prior is None
             else torch.as_tensor(fake_label_prior, dtype=torch.float64).clamp(min=1e-6)).to(device)
    fake_count = config.batch_size  # public and fixed; see module docstring
    d_losses: list[float] = []
    d_fake_losses: list[float] = []
    g_losses: list[float] = []
    batches = _cycle(loader)
    vae_step = _vae_step(gan, dp, config, noise_rng, fake_rng)
    ema = _WeightAverage(generator, config.generator_ema) if config.generator_ema > 0 else None
    for step in range(1, config.local_steps + 1):
        real, real_labels = (t.to(device) for t in next(batches))
        d_loss, d_loss_fake = _discriminator_step(
            gan, discriminator, d_optimizer, criterion, real, real_labels, fake_count, prior, fake_rng, fused)
        d_losses.append(d_loss)
        d_fake_losses.append(d_loss_fake)
        if vae_step is not None:
            # Same Poisson sample, same released state (D's step changed only D): the second
            # mechanism of this step. Its loss is on real records and stays at the site.
            vae_step(real, real_labels)
        if config.generator_steps_after(step):
            g_losses.append(_generator_step(gan, discriminator, g_optimizer, fake_count, prior, fake_rng,
                                            mode_seeking_weight=config.mode_seeking_weight))
            if ema is not None:
                ema.update(generator)
        if progress is not None and (step % 50 == 0 or step == config.local_steps):
            g_loss = g_losses[-1] if g_losses else float("nan")  # none yet when n_D > step
            progress(step, config.local_steps, {"d_loss": d_losses[-1], "g_loss": g_loss})
    if ema is not None:
        ema.copy_to(generator)
    tail = max(1, len(d_losses) // 4)
    g_tail = max(1, len(g_losses) // 4)
    dp_history: list[tuple[float, float, int]] = []
    if dp is not None:
        # Every step is one subsampled Gaussian step at (sigma, q) (at (sigma / sqrt 2, q) for
        # a VAE-GAN: D's and the VAE's mechanisms on one sample); recorded by us rather than
        # by Opacus's hook, whose q would be 1 / len(loader).
        dp_history = round_history(gan, noise_multiplier=dp.noise_multiplier, sample_rate=sample_rate,
                                   steps=config.local_steps)
        if fused is not None:
            fused.close()
        else:
            _unwrap(discriminator)
    gan.generator.cpu()  # the state dicts that leave the site are CPU tensors
    gan.discriminator.cpu()
    if gan.encoder is not None:
        gan.encoder.cpu()
    return LocalTrainingResult(
        d_loss=float(sum(d_losses[-tail:]) / tail), g_loss=float(sum(g_losses[-g_tail:]) / g_tail),
        d_loss_fake=float(sum(d_fake_losses[-tail:]) / tail),
        steps=config.local_steps, num_examples=len(beats), sample_rate=sample_rate,
        dp_history=dp_history,
    )


def _vae_step(gan: GanPair, dp: DPSettings | None, config: LocalTrainingConfig, noise_rng: torch.Generator,
              latent_rng: torch.Generator) -> DPVaeStep | PlainVaeStep | None:
    """The VAE-GAN's encoder + reconstruction step (None for a plain GAN), DP iff ``dp`` is given."""
    if gan.encoder is None:
        return None
    gan.encoder.to(config.device)  # G is already there; the latents and noise follow their generators
    if dp is None:
        return PlainVaeStep(gan, batch_size=config.batch_size, learning_rate=config.learning_rate_g,
                            betas=config.betas, latent_rng=latent_rng)
    return DPVaeStep(gan, noise_multiplier=dp.noise_multiplier, max_grad_norm=dp.max_grad_norm,
                     batch_size=config.batch_size, learning_rate=config.learning_rate_g, betas=config.betas,
                     noise_rng=noise_rng, latent_rng=latent_rng)


def _cycle(loader: DataLoader):
    while True:
        yield from loader


def _discriminator_step(gan: GanPair, discriminator: nn.Module, optimizer: torch.optim.Optimizer,
                        criterion: nn.Module, real: torch.Tensor, real_labels: torch.Tensor,
                        fake_count: int, prior: torch.Tensor, rng: torch.Generator,
                        fused: FusedDPGradients | None = None) -> tuple[float, float]:
    with torch.no_grad():
        fake_labels = _prior_labels(fake_count, prior, rng)
        fake = gan.generator(torch.randn(fake_count, gan.latent_dim, generator=rng, device=rng.device), fake_labels)
    inputs = torch.cat([real, fake])
    labels = torch.cat([real_labels, fake_labels])
    targets = torch.cat([torch.ones(len(real), device=real.device), torch.zeros(fake_count, device=real.device)])
    optimizer.zero_grad(set_to_none=True)
    if fused is None:
        scores = discriminator(inputs, labels)
        loss = criterion(scores, targets)
        loss.backward()
    else:
        with fused.capture():
            scores = discriminator(inputs, labels)
        per_sample = criterion(scores, targets)  # reduction "none"
        fused.backward(per_sample)
        loss = per_sample.mean()
    optimizer.step()
    if gan.loss == "wasserstein":
        gan.discriminator.enforce_lipschitz()  # on the privatised weights: post-processing
    with torch.no_grad():
        # The weights that scored these fakes are the previous steps' privatised output.
        fake_loss = _adversarial_loss(gan.loss)(scores.detach()[len(real):], targets[len(real):])
    return float(loss.detach()), float(fake_loss)


