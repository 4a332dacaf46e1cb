"""Patient-level DP-SGD for the discriminator: one patient, with all its records, is the unit.

We follow DP-FedAvg with per-user clipping (McMahan, Ramage, Talwar & Zhang, "Learning
Differentially Private Recurrent Language Models", ICLR 2018: Algorithm 1 in its DP-FedSGD
form, flat clipping, and the fixed-denominator estimator): users are Poisson-sampled with
probability ``q``, each sampled user's combined update is clipped to ``C`` in L2, the
clipped updates are summed, Gaussian noise of std ``sigma * C`` is added, and the sum is
divided by the *expected* number of users per round ``q * W``, a public constant, so the
sensitivity is that of the sum. Here a user is a patient and its update is one gradient,
on the current discriminator, of the summed real-record loss over at most ``k`` of its
records (DP-FedSGD: one gradient on a batch of the user's data).
The accountant is the one for record-level DP-SGD, the sampled Gaussian mechanism
(Mironov, Talwar & Zhang 2019, Opacus RDP) with the patient as the unit: history
``[(sigma, q_patients, steps)]``.

Sensitivity, step by step, for neighbouring sites that differ in one whole patient ``p``
(with any number of records):

* Patients are sampled independently, each with its own secret coin; ``p``'s coin and
  ``p``'s choice of at most ``k`` records touch nothing of the other patients.
* Every real record of the step belongs to exactly one patient's unit, and a unit is
  clipped after its records' per-record gradients are summed: ``p`` adds one vector of
  norm at most ``C``, whatever its record count (``k`` bounds work and weight, not privacy).
* The step's fakes are a fixed, public number (``m`` units of ``k`` fakes, labels from the
  DP prior) drawn from the generator and secret randomness; given the weights that came
  out of earlier (privatised) steps they do not depend on the data, so their term is the
  same with and without ``p``. We clip them in units like patients so that the fake side
  of the loss weighs as much as the real side (``m`` units each); adding them unclipped
  would be just as private but would let the fakes' raw gradient swamp the clipped real
  signal, and one clipped unit for all fakes would weigh ``1/m`` of the real side.
* Hence the sum changes by one vector of norm <= ``C``: the Gaussian noise
  ``N(0, sigma^2 C^2 I)`` gives the sampled Gaussian mechanism at rate ``q`` for one
  patient. Dividing by the public ``m`` (never a count of the data), Adam, the critic's
  weight clip and the generator step are post-processing.

The patient sampling, the record choice, the fakes and the noise come from the secret
generators of :mod:`medgan_core.training.steps` (seeded from ``secrets`` unless the config gives a test seed).
``q = m / P'`` with ``P'`` the site's public patient count (a DP release the caller
charged); ``P' = None`` means the exact count, for callers that make no claim about it.
The guarantee is per patient id: a person under two ids counts as two patients.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Hashable, Sequence

import torch
from opacus import GradSampleModule
from torch import nn

from medgan_core.config import DEFAULT_GRAD_SAMPLE_MODE
from medgan_core.errors import ConfigError
from medgan_core.models.registry import GanPair
from medgan_core.training import steps
from medgan_core.training.steps import LocalTrainingConfig, LocalTrainingResult, ProgressFn

__all__ = [
    "PatientDPSettings",
    "clipped_unit_sum",
    "group_by_patient",
    "sample_patient_records",
    "train_local_gan_per_patient",
]

logger = logging.getLogger(__name__)

# "fused" is record-level; per patient it means Opacus's per-record gradients ("hooks").
_PER_SAMPLE_MODES = ("fused", "hooks", "functorch")


@dataclass(frozen=True)
class PatientDPSettings:
    """Patient-level DP-SGD settings for the discriminator (all public).

    Attributes:
        noise_multiplier: ``sigma``: noise std over the per-patient clipping norm.
        public_patient_count: ``P'``, the site's patient count as released with DP; the
            sampling rate is ``expected_patients_per_step / P'``. ``None`` uses the exact
            count and makes no privacy claim about it (tests, baselines).
        expected_patients_per_step: ``m``, and the denominator of the noisy sum.
        records_per_patient: ``k``: at most this many records of a sampled patient per step.
        max_grad_norm: ``C``: the L2 bound of one patient's combined gradient. ``inf``
            only with ``noise_multiplier == 0`` (no privacy: a test of the reduction).
        grad_sample_mode: ``"hooks"`` or ``"functorch"``. Ghost clipping computes
            per-record gradient *norms* only, and the norm of a patient's sum is not a
            function of its records' norms, so ``"ghost"`` is refused.
    """

    noise_multiplier: float
    public_patient_count: int | None
    expected_patients_per_step: int
    records_per_patient: int
    max_grad_norm: float = 1.0
    grad_sample_mode: str = DEFAULT_GRAD_SAMPLE_MODE

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise ConfigError(f"noise_multiplier={self.noise_multiplier} must be finite and >= 0")
        if not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm={self.max_grad_norm} must be positive")
        if math.isinf(self.max_grad_norm) and self.noise_multiplier > 0:
            raise ConfigError("max_grad_norm=inf with noise_multiplier > 0 means infinite noise; give a finite C")
        if self.expected_patients_per_step < 1 or self.records_per_patient < 1:
            raise ConfigError(f"expected_patients_per_step={self.expected_patients_per_step} and "
                              f"records_per_patient={self.records_per_patient} must be at least 1")
        if self.public_patient_count is not None and self.public_patient_count < self.expected_patients_per_step:
            raise ConfigError(f"public_patient_count={self.public_patient_count} is below expected_patients_per_step="
                              f"{self.expected_patients_per_step}; lower expected_patients_per_step")
        if self.grad_sample_mode not in _PER_SAMPLE_MODES:
            raise ConfigError(
                f"grad_sample_mode={self.grad_sample_mode!r} cannot clip per patient: it must be one of "
                f"{_PER_SAMPLE_MODES} (ghost clipping gives per-record gradient norms, and a patient's "
                "clipped sum needs the per-record gradients themselves)")

    def sample_rate(self, patient_count: int) -> float:
        """``q = m / P'``; ``patient_count`` (exact) is used only when ``public_patient_count`` is None."""
        public = self.public_patient_count if self.public_patient_count is not None else patient_count
        if public < self.expected_patients_per_step:
            raise ConfigError(f"the site has {public} patients, fewer than expected_patients_per_step="
                              f"{self.expected_patients_per_step}; lower expected_patients_per_step")
        return self.expected_patients_per_step / public


def group_by_patient(patient_ids: Sequence[Hashable]) -> list[torch.Tensor]:
    """Record indices per patient, patients in order of first appearance.

    Raises:
        ConfigError: an id is ``None`` or empty (such a record has no unit to belong to).
    """
    groups: dict[Hashable, list[int]] = {}
    for index, patient in enumerate(patient_ids):
        if patient is None or patient == "":
            raise ConfigError(f"record {index} has no patient id; patient-level DP needs one for every record")
        groups.setdefault(patient, []).append(index)
    return [torch.tensor(indices, dtype=torch.long) for indices in groups.values()]


def sample_patient_records(groups: Sequence[torch.Tensor], *, sample_rate: float, records_per_patient: int,
                           generator: torch.Generator) -> list[torch.Tensor]:
    """Poisson-sample patients, then at most ``records_per_patient`` records of each.

    Each patient is in with probability ``sample_rate``, independently; a sampled patient
    with more than ``k`` records contributes ``k`` of them, uniformly without replacement.

    Returns:
        One tensor of record indices per sampled patient (possibly none).
    """
    chosen = torch.rand(len(groups), generator=generator) < sample_rate
    picks = []
    for i in torch.nonzero(chosen).flatten().tolist():
        records = groups[i]
        if len(records) > records_per_patient:
            records = records[torch.randperm(len(records), generator=generator)[:records_per_patient]]
        picks.append(records)
    return picks


def clipped_unit_sum(discriminator: GradSampleModule, criterion: nn.Module, *, inputs: torch.Tensor,
                     labels: torch.Tensor, targets: torch.Tensor, units: torch.Tensor,
                     max_grad_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``sum_u clip_C(sum_{i in u} grad loss_i)`` for every trainable parameter.

    Args:
        discriminator: Wrapped with ``loss_reduction="sum"`` (per-record gradients unscaled).
        criterion: Per-record loss with ``reduction="none"``.
        inputs, labels, targets: One row per record, reals and fakes alike.
        units: (B,) the unit (patient, or group of fakes) of each row, ids ``0..U-1``.
        max_grad_norm: ``C``.

    Returns:
        The clipped sums (one tensor per trainable parameter) and the per-row losses.
    """
    params = [p for p in discriminator.parameters() if p.requires_grad]
    for p in params:
        p.grad, p.grad_sample = None, None
    losses = criterion(discriminator(inputs, labels), targets)  # (B,)
    losses.sum().backward()
    missing = [name for name, p in discriminator.named_parameters() if p.requires_grad and p.grad_sample is None]
    if missing:
        raise RuntimeError(f"no per-record gradients for {missing}: every trainable parameter of the discriminator "
                           "must take part in its forward pass")
    count = int(units.max()) + 1
    per_unit = [torch.zeros(count, *p.shape, dtype=p.grad_sample.dtype, device=p.grad_sample.device)
                .index_add_(0, units, p.grad_sample)
                for p in params]  # each (U, *shape)
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_unit]).norm(dim=0)  # (U,)
    factors = steps.clip_factors(norms, max_grad_norm)
    for p in params:
        p.grad, p.grad_sample = None, None
    return [torch.einsum("u,u...->...", factors, g) for g in per_unit], losses.detach()


def train_local_gan_per_patient(
    *,
    gan: GanPair,
    beats: torch.Tensor,
    labels: torch.Tensor,
    patient_ids: Sequence[Hashable],
    config: LocalTrainingConfig,
    dp: PatientDPSettings,
    fake_label_prior: torch.Tensor | None = None,
    progress: ProgressFn | None = None,
) -> LocalTrainingResult:
    """:func:`~medgan_core.training.dp_gan.train_local_gan` with the patient as the DP unit.

    Args are those of ``train_local_gan`` plus ``patient_ids`` (one per record) and
    ``dp``. Of ``config``, ``batch_size`` is the generator step's fake count only, and
    ``public_dataset_size`` must be None (the rate comes from ``dp.public_patient_count``).

    Returns:
        Mean losses and the history ``[(sigma, q_patients, local_steps)]`` for the ledger.

    Raises:
        ConfigError: mismatched ids, too few patients, a record-level public size, or an
            unknown ``gan.loss``.
    """
    if len(patient_ids) != len(beats):
        raise ConfigError(f"{len(patient_ids)} patient ids for {len(beats)} records; give one id per record")
    if config.public_dataset_size is not None:
        raise ConfigError("public_dataset_size is record-level; with patient-level DP the sampling rate comes from "
                          "PatientDPSettings.public_patient_count: pass public_dataset_size=None")
    steps.check_loss(gan)
    groups = group_by_patient(patient_ids)
    sample_rate = dp.sample_rate(len(groups))
    device = torch.device(config.device)
    noise_rng, fake_rng, sampling_rng = steps.secret_generators(config.seed, device=device)
    generator = gan.generator.to(device).train()
    discriminator = GradSampleModule(gan.discriminator.to(device).train(), batch_first=True, loss_reduction="sum",
                                     force_functorch=dp.grad_sample_mode == "functorch")
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=config.learning_rate_d, betas=config.betas)
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=config.learning_rate_g, betas=config.betas)
    prior = (torch.full((gan.num_classes,), 1.0 / gan.num_classes) if fake_label_prior is None
             else torch.as_tensor(fake_label_prior, dtype=torch.float64).clamp(min=1e-6)).to(device)
    logger.debug("patient-level DP-SGD: sigma %.3f, C %.2f, q %.5f over %d patients, k %d",
                 dp.noise_multiplier, dp.max_grad_norm, sample_rate, len(groups), dp.records_per_patient)
    step = _PatientStep(gan=gan, discriminator=discriminator, optimizer=d_optimizer, dp=dp, prior=prior,
                        sample_rate=sample_rate, rngs=(noise_rng, fake_rng, sampling_rng))
    ema = steps.WeightAverage(generator, config.generator_ema) if config.generator_ema > 0 else None
    d_losses, d_fake_losses, g_losses = [], [], []
    try:
        for index in range(1, config.local_steps + 1):
            d_loss, d_loss_fake = step(beats, labels, groups)
            d_losses.append(d_loss)
            d_fake_losses.append(d_loss_fake)
            if config.generator_steps_after(index):
                g_losses.append(steps.generator_step(gan, discriminator, g_optimizer, config.batch_size, prior,
                                                     fake_rng, mode_seeking_weight=config.mode_seeking_weight))
                if ema is not None:
                    ema.update(generator)
            if progress is not None and (index % 50 == 0 or index == config.local_steps):
                g_loss = g_losses[-1] if g_losses else float("nan")  # none yet when n_D > index
                progress(index, config.local_steps, {"d_loss": d_losses[-1], "g_loss": g_loss})
    finally:
        steps.unwrap(discriminator)
        gan.generator.cpu()  # the state dicts that leave the site are CPU tensors
        gan.discriminator.cpu()
    if ema is not None:
        ema.copy_to(generator)  # the shadow may live on the device; copy_to copies across
    tail = max(1, len(d_losses) // 4)
    g_tail = max(1, len(g_losses) // 4)
    return LocalTrainingResult(
        d_loss=sum(d_losses[-tail:]) / tail, g_loss=sum(g_losses[-g_tail:]) / g_tail,
        d_loss_fake=sum(d_fake_losses[-tail:]) / tail, steps=config.local_steps, num_examples=len(beats),
        sample_rate=sample_rate,
        dp_history=[(float(dp.noise_multiplier), float(sample_rate), int(config.local_steps))],
    )


class _PatientStep:
    """One discriminator step: sample patients, clip per unit, add noise, divide by ``m``."""

    def __init__(self, *, gan: GanPair, discriminator: GradSampleModule, optimizer: torch.optim.Optimizer,
                 dp: PatientDPSettings, prior: torch.Tensor, sample_rate: float,
                 rngs: tuple[torch.Generator, torch.Generator, torch.Generator]) -> None:
        self.gan, self.discriminator, self.optimizer, self.dp = gan, discriminator, optimizer, dp
        self.prior, self.sample_rate = prior, sample_rate
        self.noise_rng, self.fake_rng, self.sampling_rng = rngs
        self.criterion = steps.adversarial_loss(gan.loss)
        self.criterion.reduction = "none"

    def __call__(self, beats: torch.Tensor, labels: torch.Tensor,
                 groups: Sequence[torch.Tensor]) -> tuple[float, float]:
        picks = sample_patient_records(groups, sample_rate=self.sample_rate,
                                       records_per_patient=self.dp.records_per_patient, generator=self.sampling_rng)
        inputs, row_labels, targets, units = self.batch(beats, labels, picks)
        summed, losses = clipped_unit_sum(self.discriminator, self.criterion, inputs=inputs, labels=row_labels,
                                          targets=targets, units=units, max_grad_norm=self.dp.max_grad_norm)
        # Divided by the public m, never a count; sigma = 0 is the no-privacy reduction.
        steps.set_noisy_average([p for p in self.discriminator.parameters() if p.requires_grad], summed,
                                std=self.dp.noise_multiplier * self.dp.max_grad_norm,
                                denominator=self.dp.expected_patients_per_step, generator=self.noise_rng)
        self.optimizer.step()
        if self.gan.loss == "wasserstein":
            self.gan.discriminator.enforce_lipschitz()  # on the privatised weights: post-processing
        real_count = len(losses) - self.fake_count
        return float(losses.mean()), float(losses[real_count:].mean())

    @property
    def fake_count(self) -> int:
        return self.dp.expected_patients_per_step * self.dp.records_per_patient

    def batch(self, beats: torch.Tensor, labels: torch.Tensor,
              picks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows (reals of the sampled patients, then public fakes) and the unit of each row."""
        index = torch.cat([*picks, torch.empty(0, dtype=torch.long)])
        real_units = torch.repeat_interleave(torch.arange(len(picks)),
                                             torch.tensor([len(p) for p in picks], dtype=torch.long))
        device = self.prior.device
        with torch.no_grad():
            fake_labels = steps.prior_labels(self.fake_count, self.prior, self.fake_rng)
            fake = self.gan.generator(torch.randn(self.fake_count, self.gan.latent_dim, generator=self.fake_rng,
                                                  device=device), fake_labels)
        # m public units of k fakes each, after the patients' units.
        fake_units = len(picks) + torch.arange(self.dp.expected_patients_per_step).repeat_interleave(
            self.dp.records_per_patient)
        # The records and the sampling stay on the CPU; the step's rows go to the device.
        inputs = torch.cat([beats[index].to(device), fake])
        row_labels = torch.cat([labels[index].to(device), fake_labels])
        targets = torch.cat([torch.ones(len(index), device=device), torch.zeros(self.fake_count, device=device)])
        return inputs, row_labels, targets, torch.cat([real_units, fake_units]).to(device)
