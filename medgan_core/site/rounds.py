"""What a hospital site does in one federated round, independent of Flower.

The Flower ClientApp only unpacks a message, calls :func:`train_round` or
:func:`evaluate_round`, and packs the reply. Everything a site decides for itself lives
here: its privacy ledger and budget, its DP unit and its limits on local work.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.site_data import SiteData
from medgan_core.device import resolve_device
from medgan_core.errors import ConfigError
from medgan_core.models import GanPair, build_gan
from medgan_core.modalities import get_modality
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.site.config import SiteConfig
from medgan_core.site.data import site_training_data
from medgan_core.site.randomness import derive_noise
from medgan_core.site.release import SizeRelease, class_counts, size_release
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, LocalTrainingResult, train_local_gan
from medgan_core.training.patient_dp import PatientDPSettings
from medgan_core.training.vae_dp import dp_mechanisms
from privacy.accounting import joint_noise_multiplier, per_mechanism_noise_multiplier
from privacy.feasibility import MAX_NOISE_TO_SIGNAL, PatientFeasibility, patient_level_feasibility
from privacy.ledger import PrivacyLedger
from privacy.patient_release import ledger_entry as patient_ledger_entry

__all__ = ["NonPrivateRefused", "evaluate_round", "patient_feasibility", "site_device", "train_round"]

logger = logging.getLogger(__name__)


class NonPrivateRefused(ConfigError):
    """The run asks for training without DP and the site does not allow it."""


def train_round(
    *, site: SiteConfig, run: RunConfig, run_id: str, server_round: int,
    weights: dict[str, np.ndarray],
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train the global GAN locally for one round and account for it.

    The ledger is checked before training and written (durably) after training and
    before this function returns, i.e. before the update can leave the site. Every
    refusal depends only on the configuration and on values already released (the
    ledger, the public size), never on the data directly.

    Returns:
        The new flat GAN state and the reply metrics (keys: ``privacy.releases.TRAIN_REPLY``).

    Raises:
        PrivacyBudgetExceeded: if the round would take the site past its budget.
        ConfigError: if the run asks for something the site does not allow, or for a
            device (CUDA) this machine lacks: checked before any budget is charged.
    """
    device = site_device(site, run)
    data = site_training_data(site, run)  # never the site's held-out evaluation patients
    local_steps = min(run.local_steps, site.max_local_steps)
    if local_steps < run.local_steps:
        logger.warning("%s: run asks %d local steps, site limit is %d", site.site_id, run.local_steps, local_steps)
    gan = build_gan(run, len(data.class_names))
    load_gan_state(gan, weights)
    seed = None if site.insecure_seed is None else site.insecure_seed * 1000 + server_round
    if not run.dp_enabled:
        if not site.allow_non_private:
            raise NonPrivateRefused(f"{site.site_id} does not allow non-private training (dp-enabled=false refused)")
        return _train_non_private(site, run, gan, data, local_steps, seed, server_round, device)

    if site.unit(run) == "patient" and gan.encoder is not None:
        # Before the ledger is opened: a refused round spends and writes nothing.
        raise ConfigError(f"{site.site_id}: model={run.model!r} trains its encoder and generator on real records, "
                          "and patient-level clipping of that step is not implemented; use privacy-unit='record' "
                          "(the site's [privacy] unit too), or a plain GAN variant for patient-level DP")
    # The lock is held from the budget check through the recorded release, and the round is
    # charged at its planned cost before training: a concurrent round waits (or is refused
    # as busy), and a crash at any point leaves the spend counted, never lost.
    with PrivacyLedger.locked(site.ledger_path, target_epsilon=site.target_epsilon,
                              target_delta=site.target_delta) as ledger:
        unit = site.unit(run)
        release = size_release(site, run, data, ledger, run_id, unit)
        dp: DPSettings | PatientDPSettings
        if unit == "patient":
            dp, sample_rate, noise = _patient_dp(site, run, release, ledger, server_round, local_steps)
            charged_noise = noise
        else:
            if release.public_size < run.batch_size:
                raise ConfigError(f"{site.site_id}: its released size {release.public_size} is below "
                                  f"batch-size={run.batch_size}; lower batch-size")
            sample_rate = run.batch_size / release.public_size
            noise, charged_noise = _record_noise(run, gan, ledger, server_round, sample_rate, local_steps)
            dp = DPSettings(noise_multiplier=noise, max_grad_norm=run.max_grad_norm,
                            grad_sample_mode=run.grad_sample_mode)
        ledger.check_can_spend(noise_multiplier=charged_noise, sample_rate=sample_rate, steps=local_steps)
        charged = ledger.charge(run_id=run_id, server_round=server_round, noise_multiplier=charged_noise,
                                sample_rate=sample_rate, steps=local_steps, unit=unit)

        # The unit in words on every epsilon: "patient", or the modality's record ("beat", "image").
        unit_word = "patient" if ledger.unit == "patient" else get_modality(site.modality).record_word

        def progress(step: int, total: int, metrics: dict[str, float]) -> None:
            logger.info("round %d | %s | step %d/%d | d_loss %.3f g_loss %.3f | epsilon %.3f per %s "
                        "(this round charged)", server_round, site.site_id, step, total, metrics["d_loss"],
                        metrics["g_loss"], ledger.epsilon_spent(), unit_word)

        patient_level = unit == "patient"
        config = _local_config(run, local_steps, seed, device=device,
                               public_dataset_size=None if patient_level else release.public_size)
        result = train_local_gan(gan=gan, beats=data.samples, labels=data.labels, config=config, dp=dp,
                                 fake_label_prior=release.prior, progress=progress,
                                 patient_ids=data.patient_ids if patient_level else None)
        # A history that does not fit the charge raises here: the update then never leaves.
        entry = ledger.settle(charged, result.dp_history)
        logger.info("round %d | %s | released update, epsilon %.3f of %.3f per %s (delta %g)", server_round,
                    site.site_id, entry.epsilon_after, ledger.target_epsilon, unit_word, ledger.target_delta)
    return gan_state(gan), _train_reply(float(release.public_size), entry.epsilon_after, result, noise)


def _record_noise(run: RunConfig, gan: GanPair, ledger: PrivacyLedger, server_round: int, sample_rate: float,
                  local_steps: int) -> tuple[float, float]:
    """``(sigma per mechanism, sigma the ledger charges)`` for record-level DP-SGD.

    A plain GAN has one Gaussian mechanism per step (D's), and both are the same. A VAE-GAN
    has two on the same sample (D's and the VAE part's), accounted as one with
    ``sigma / sqrt(2)`` (:func:`privacy.accounting.joint_noise_multiplier`): the budget
    calibrates that joint multiplier, and each mechanism adds ``sqrt(2)`` times it, so the
    planned (charged) epsilon is the composed one. A run's explicit ``noise-multiplier`` is
    the per-mechanism sigma, and is charged at its joint value.
    """
    mechanisms = dp_mechanisms(gan)
    if run.noise_multiplier > 0:
        return run.noise_multiplier, joint_noise_multiplier(run.noise_multiplier, mechanisms=mechanisms)
    joint = derive_noise(ledger, run=run, server_round=server_round, sample_rate=sample_rate, local_steps=local_steps)
    return per_mechanism_noise_multiplier(joint, mechanisms=mechanisms), joint


def _patient_dp(site: SiteConfig, run: RunConfig, release: SizeRelease, ledger: PrivacyLedger,
                server_round: int, local_steps: int) -> tuple[PatientDPSettings, float, float]:
    """Patient-level DP-SGD settings from the public patient count P' (charged release).

    Every decision here uses only P', the configuration and the ledger, so a refusal
    reveals nothing uncharged. Refuses when the noise the budget needs would drown the
    signal (:func:`privacy.feasibility.patient_level_feasibility`): training into noise
    spends budget for nothing.
    """
    patients, m = release.public_size, run.patients_per_step
    if run.grad_sample_mode == "ghost":
        raise ConfigError("grad-sample-mode='ghost' cannot combine per-record gradients per patient; "
                          "use grad-sample-mode='hooks' with privacy-unit='patient'")
    if patients < m:
        raise ConfigError(f"{site.site_id}: its released patient count {patients} is below patients-per-step={m}; "
                          "lower patients-per-step")
    sample_rate = m / patients
    noise = run.noise_multiplier if run.noise_multiplier > 0 else derive_noise(
        ledger, run=run, server_round=server_round, sample_rate=sample_rate, local_steps=local_steps)
    if noise / m > MAX_NOISE_TO_SIGNAL:
        raise ConfigError(
            f"{site.site_id}: patient-level DP is infeasible here: {patients} patients, {m} per step, need noise "
            f"multiplier {noise:.2f}, i.e. noise {noise / m:.3f}x the clipped signal per step (limit "
            f"{MAX_NOISE_TO_SIGNAL}); fix: more patients per site, fewer steps or rounds, a larger budget, or "
            "privacy-unit='record'")
    dp = PatientDPSettings(noise_multiplier=noise, public_patient_count=patients, expected_patients_per_step=m,
                           records_per_patient=run.records_per_patient, max_grad_norm=run.max_grad_norm,
                           grad_sample_mode=run.grad_sample_mode)
    return dp, sample_rate, noise


def patient_feasibility(site: SiteConfig, run: RunConfig) -> PatientFeasibility:
    """Whether patient-level DP can train usefully at this site, from its own patient count.

    A local check for the site's operator and the simulation's researcher (``medgan site
    check``, ``medgan simulate``), made before anything is spent; nothing of it is released.
    """
    data = site_training_data(site, run)
    return patient_level_feasibility(
        patients=data.num_patients, expected_patients_per_step=run.patients_per_step,
        local_steps=min(run.local_steps, site.max_local_steps), rounds=run.num_server_rounds,
        target_epsilon=site.target_epsilon, delta=site.target_delta,
        history=[patient_ledger_entry(run.label_prior_noise)],
    )


def site_device(site: SiteConfig, run: RunConfig) -> torch.device:
    """Where ``site`` trains: its own ``[site] device`` if set, else the run's ``device``, resolved here.

    Raises:
        ConfigError: CUDA asked for and absent on this machine; the message says which
            setting asked (the site file's or the run's) and the fix.
    """
    key = "[site] device" if site.device else "device"
    return resolve_device(site.device_name(run), where=site.site_id if site.device else f"{site.site_id}: run-config",
                          key=key)


def _local_config(run: RunConfig, local_steps: int, seed: int | None, *, device: torch.device | str = "cpu",
                  public_dataset_size: int | None) -> LocalTrainingConfig:
    return LocalTrainingConfig(
        local_steps=local_steps, batch_size=run.batch_size, learning_rate_d=run.learning_rate_d,
        learning_rate_g=run.learning_rate_g, seed=seed, public_dataset_size=public_dataset_size,
        mode_seeking_weight=run.mode_seeking_weight, generator_ema=run.generator_ema,
        discriminator_steps=run.discriminator_steps, device=device,
    )


def _train_reply(num_examples: float, epsilon: float, result: LocalTrainingResult, noise: float) -> dict[str, float]:
    # Keys and their release category: privacy.releases.TRAIN_REPLY.
    return {
        "num-examples": num_examples,
        "epsilon": float(epsilon),
        "d-loss-fake": result.d_loss_fake,
        "g-loss": result.g_loss,
        "noise-multiplier": float(noise),
        "local-steps": float(result.steps),
    }


def _train_non_private(site: SiteConfig, run: RunConfig, gan: GanPair, data: SiteData, local_steps: int,
                       seed: int | None, server_round: int, device: torch.device
                       ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The non-private control: exact counts, no ledger, and no privacy claim at all."""
    config = _local_config(run, local_steps, seed, device=device, public_dataset_size=None)
    prior = class_counts(data) / len(data.labels)
    result = train_local_gan(gan=gan, beats=data.samples, labels=data.labels, config=config, dp=None,
                             fake_label_prior=prior)
    logger.info("round %d | %s | released a NON-PRIVATE update (dp-enabled=false)", server_round, site.site_id)
    return gan_state(gan), _train_reply(float(len(data.labels)), math.inf, result, 0.0)


def evaluate_round(*, site: SiteConfig, run: RunConfig, weights: dict[str, np.ndarray]) -> dict[str, float]:
    """What a site says when asked to evaluate: only values that do not depend on its data.

    A site's evaluation of the global model on its own records would be an uncharged
    statistic of them (a discriminator the coordinator chooses turns "accuracy on real
    records" into a counting query; a distance to the nearest real record is a membership
    oracle). So a site releases none: the simulation scores the global model centrally on
    the researcher's held-out patients (``simulations/report.py``), and a deployed
    coordinator evaluates on data of its own. The reply carries the site's epsilon spent
    (a function of its ledger, whose entries are all public or charged) and a constant
    aggregation weight. ``weights`` is accepted and ignored.
    """
    del weights
    epsilon = math.inf if not run.dp_enabled else 0.0
    if run.dp_enabled and site.ledger_path.exists():
        epsilon = PrivacyLedger.read(site.ledger_path).epsilon_spent()
    return {"num-examples": 1.0, "epsilon": float(epsilon)}
