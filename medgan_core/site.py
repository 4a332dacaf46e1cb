"""What a hospital site does in one federated round, independent of Flower.

The Flower ClientApp only unpacks a message, calls :func:`train_round` or
:func:`evaluate_round`, and packs the reply. Everything a site decides for itself lives
here: its data, its privacy ledger and budget, and its limits on local work.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.site_data import SiteData
from medgan_core.errors import ConfigError
from medgan_core.io_utils import atomic_write_text
from medgan_core.modalities import available_modalities, get_modality
from medgan_core.modalities.xray import PatientShare, split_xray_patients, xray_share_weights
from medgan_core.run_dir import simulated_sites_root
from medgan_core.schema import Rule, coerce, finite_in, positive_int
from medgan_core.models.registry import GanPair, create_gan
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from medgan_core.training.patient_dp import PatientDPSettings
from privacy.accounting import noise_multiplier_for_target
from privacy.feasibility import MAX_NOISE_TO_SIGNAL, PatientFeasibility, patient_level_feasibility
from privacy.patient_release import class_prior, patient_summary, public_patient_count
from privacy.patient_release import ledger_entry as patient_ledger_entry
from privacy.ledger import PrivacyBudgetExceeded, PrivacyLedger

__all__ = [
    "PatientShare",
    "SiteConfig",
    "SiteData",
    "build_gan",
    "evaluate_round",
    "load_site_data",
    "training_records",
    "split_xray_patients",
    "NonPrivateRefused",
    "SizeRelease",
    "patient_feasibility",
    "train_round",
    "xray_share_weights",
]

logger = logging.getLogger(__name__)


#: Site-local switch for reproducible DP randomness in tests. It is read from the site
#: process's own environment (never from the run config the coordinator sends); a
#: simulated site honours it, a deployed site refuses to start with it set.
INSECURE_SEED_VARIABLE = "MEDGAN_INSECURE_DETERMINISTIC_SEED"


@dataclass(frozen=True)
class SiteConfig:
    """A site's own settings; the coordinator's run config cannot override them.

    Attributes:
        site_id: Name used in logs and the ledger.
        modality: "ecg" or "xray".
        data_paths: ECG record paths (without extension) or one image directory.
        ledger_path: Where the privacy ledger lives; it must survive restarts.
        target_epsilon, target_delta: The site's total budget over every run.
        max_local_steps: Upper bound on local steps per round, whatever is requested.
        allow_non_private: Whether a run may train without DP (simulated controls only).
        patient_share: Simulated X-ray sites only: which patients of the image directory
            are this site's (see :class:`PatientShare`); ``None`` means all of them.
        audit_paths: ECG records of patients the site never trains on, used only by the
            membership audit (``query.audit``): non-members and reference, split by patient.
        canaries: Simulation only: whether the run's audit canaries (run-config
            ``canaries``, see :mod:`medgan_core.audit`) are offered to this site's training
            data; each is included with probability 1/2. Never set for a deployed site.
        release_audit: Whether ``query.audit`` may send the audit's AUCs to the coordinator
            (with Gaussian noise, charged to the ledger); otherwise the audit's results stay
            in the site's directory. TOML ``[release] audit``; off by default.
        audit_noise_multiplier: Noise of that release, per AUC (sensitivity 1, see
            :func:`medgan_core.audit.release_audit`).
        privacy_unit: ``[privacy] unit`` ("record" or "patient"): the site's own choice of DP
            unit, which wins over the run's ``privacy-unit``; ``None`` follows the run.
        insecure_seed: Tests only: a fixed seed for the DP noise and sampling, which makes
            rounds replayable by anyone who knows it. Set only from the site's environment
            (:data:`INSECURE_SEED_VARIABLE`) and only for simulated sites.
    """

    site_id: str
    modality: str
    data_paths: tuple[str, ...]
    ledger_path: Path
    target_epsilon: float
    target_delta: float
    max_local_steps: int = 1000
    allow_non_private: bool = False
    patient_share: object = None
    audit_paths: tuple[str, ...] = ()
    canaries: bool = False
    release_audit: bool = False
    audit_noise_multiplier: float = 10.0
    insecure_seed: int | None = None
    privacy_unit: str | None = None

    def unit(self, run: RunConfig) -> str:
        """The DP unit this site trains with: its own ``[privacy] unit`` wins over the run's."""
        return self.privacy_unit or run.unit

    @property
    def state_dir(self) -> Path:
        """The site's private directory: its ledger and everything kept beside it."""
        return self.ledger_path.parent

    @classmethod
    def from_toml(cls, path: str | Path) -> "SiteConfig":
        """Read and validate a site config file (see README, "Hospital IT").

        Every key is checked against its rule before anything else happens.

        Raises:
            ConfigError: one line naming the file, the key and the fix.
        """
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read site config ({exc}); fix the file or the path") from exc
        if os.environ.get(INSECURE_SEED_VARIABLE):
            raise ConfigError(
                f"{path}: {INSECURE_SEED_VARIABLE} is set in this site's environment; a deployed site refuses "
                "replayable DP randomness (it voids the guarantee); unset it"
            )
        base = path.parent
        for name in raw:
            if name not in _SITE_KEYS:
                raise ConfigError(f"{path}: unknown section [{name}]; known sections: " + ", ".join(_SITE_KEYS))
        sections = {name: _section(raw, name, path, required=name in ("site", "data", "privacy"))
                    for name in _SITE_KEYS}
        for name, table in sections.items():
            for key in table:
                if key not in _SITE_KEYS[name]:
                    raise ConfigError(f"{path}: unknown key [{name}] {key}; known keys in [{name}]: "
                                      + ", ".join(_SITE_KEYS[name]))

        def value(section: str, key: str, rule: Rule, default: object = _REQUIRED) -> object:
            table = sections[section]
            if key not in table:
                if default is _REQUIRED:
                    raise ConfigError(f"{path}: [{section}] {key} is missing; see deploy/examples/site.toml")
                return default
            return coerce(table[key], rule, where=str(path), key=f"[{section}] {key}")

        modality = value("data", "modality", Rule(str, lambda v: v in available_modalities(),
                                                  "one of " + ", ".join(map(repr, available_modalities()))))
        data_dir = base / str(value("data", "dir", _PATH))
        paths = get_modality(str(modality)).site_paths(data_dir, value("data", "records", Rule(list), None))
        audit_records = value("audit", "records", Rule(list), [])
        return cls(
            site_id=str(value("site", "id", _NAME)), modality=str(modality), data_paths=paths,
            ledger_path=base / str(value("privacy", "ledger", _PATH)),
            target_epsilon=float(value("privacy", "target-epsilon", _EPSILON)),  # type: ignore[arg-type]
            target_delta=float(value("privacy", "target-delta", _DELTA)),  # type: ignore[arg-type]
            max_local_steps=int(value("limits", "max-local-steps", positive_int(1_000_000), 1000)),  # type: ignore[arg-type]
            allow_non_private=bool(value("limits", "allow-non-private", Rule(bool), False)),
            audit_paths=tuple(str(data_dir / r) for r in audit_records),  # type: ignore[union-attr]
            release_audit=bool(value("release", "audit", Rule(bool), False)),
            audit_noise_multiplier=float(value("release", "audit-noise-multiplier",  # type: ignore[arg-type]
                                               finite_in(1.0, 1e4), 10.0)),
            privacy_unit=value("privacy", "unit", Rule(str, lambda v: v in ("record", "patient"),  # type: ignore[arg-type]
                                                       "'record' or 'patient'"), None),
        )

    @classmethod
    def for_simulation(cls, run: RunConfig, partition_id: int) -> "SiteConfig":
        """The simulated site ``partition_id``: its patients and a ledger in the run dir.

        ECG: ``site-records`` lists each site's records. X-ray: ``site-records`` and
        ``holdout-records`` are relative shares of the patients of ``data-root`` (see
        :func:`xray_share_weights`).
        """
        groups = run.site_record_groups()
        if not 0 <= partition_id < len(groups):
            raise ConfigError(
                f"partition {partition_id} has no records: site-records defines {len(groups)} sites; "
                "use as many simulated nodes as site groups"
            )
        simulated = get_modality(run.modality).simulated_site(run, partition_id)
        seed = os.environ.get(INSECURE_SEED_VARIABLE, "").strip()
        return cls(
            site_id=f"site-{partition_id}", modality=run.modality, patient_share=simulated.patient_share,
            data_paths=simulated.data_paths,
            ledger_path=simulated_sites_root(run.run_dir, run.resume_from) / "sites" / f"site-{partition_id}"
            / "privacy_ledger.json",
            target_epsilon=run.target_epsilon, target_delta=run.target_delta,
            allow_non_private=True,
            audit_paths=simulated.audit_paths,
            canaries=partition_id == 0 and run.canaries > 0,
            # The researcher's own simulated sites answer the final federated audit; with
            # noise and charged like any release.
            release_audit=run.audit_every > 0,
            insecure_seed=(int(coerce(seed, positive_int(2**62), where=INSECURE_SEED_VARIABLE, key="value"))
                           + partition_id) if seed else None,
        )


_REQUIRED = object()
# Every section and key a site file may hold; anything else is a typo to report, not ignore.
_SITE_KEYS: dict[str, tuple[str, ...]] = {
    "site": ("id",),
    "data": ("modality", "dir", "records"),
    "privacy": ("target-epsilon", "target-delta", "ledger", "unit"),
    "limits": ("max-local-steps", "allow-non-private"),
    "audit": ("records",),
    "release": ("audit", "audit-noise-multiplier"),
    "app": ("policy", "allowed-fab-sha256"),  # read by the site daemon's app guard (client/)
}
_PATH = Rule(str, lambda v: bool(v.strip()), "a non-empty path (relative to the site file)")
_NAME = Rule(str, lambda v: bool(v.strip()) and len(v) <= 100, "a non-empty name")
_EPSILON = finite_in(0.0, 100.0, low_open=True)  # above 100 the guarantee means nothing
_DELTA = finite_in(0.0, 1e-2, low_open=True)  # delta is a failure probability: << 1 / records


def _section(raw: dict, name: str, path: Path, *, required: bool) -> dict:
    table = raw.get(name)
    if table is None:
        if required:
            raise ConfigError(f"{path}: section [{name}] is missing; see deploy/examples/site.toml")
        return {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{name}] must be a table (a [{name}] section), not {type(table).__name__}")
    return table


@functools.lru_cache(maxsize=8)
def load_site_data(modality: str, data_paths: tuple[str, ...], image_size: int = 64,
                   patient_share: object = None) -> SiteData:
    """Read and cache a site's data (the modality's reader); a bad record is skipped and
    reported, never fatal. For a simulated share of a folder, the report covers the folder."""
    return get_modality(modality).load(data_paths, image_size=image_size, patient_share=patient_share)


def build_gan(run: RunConfig, num_classes: int = 2) -> GanPair:
    return create_gan(run.model, latent_dim=run.latent_dim, num_classes=num_classes,
                      **get_modality(run.modality).model_kwargs(run))


def _site_data(site: SiteConfig, run: RunConfig) -> SiteData:
    return load_site_data(site.modality, site.data_paths, run.image_size, site.patient_share)


class NonPrivateRefused(ConfigError):
    """The run asks for training without DP and the site does not allow it."""


@dataclass(frozen=True)
class SizeRelease:
    """The site's class counts, released once with the Gaussian mechanism and charged.

    Everything the federation needs to know about how much data a site has is derived
    from this one release (post-processing, no further cost): the class prior of the
    discriminator's fakes, the public size ``N'`` behind the Poisson sampling rate
    ``q = batch_size / N'``, and the FedAvg weight. The exact count never leaves the site.
    Adding or removing one record changes one count by one: L2 sensitivity 1.
    """

    noisy_counts: tuple[float, ...]
    noise_std: float
    class_names: tuple[str, ...]
    # The ledger entry that charged this release: a release whose charge is not in the
    # site's ledger (a deleted or swapped ledger) is refused rather than reused for free.
    charged_entry: str = ""
    # "record": noisy record counts per class (sensitivity 1). "patient": the bounded patient
    # summary of privacy.patient_release, K weighted class components then the patient
    # count (sensitivity sqrt 2); its public size is the number of patients.
    unit: str = "record"

    @property
    def prior(self) -> torch.Tensor:
        if self.unit == "patient":
            return torch.from_numpy(class_prior(self.noisy_counts))
        counts = torch.tensor(self.noisy_counts, dtype=torch.float64).clamp(min=1.0)
        return counts / counts.sum()

    @property
    def public_size(self) -> int:
        if self.unit == "patient":
            return public_patient_count(self.noisy_counts)
        return max(1, round(sum(max(c, 0.0) for c in self.noisy_counts)))

    def to_json(self) -> str:
        return json.dumps({"noisy_counts": list(self.noisy_counts), "noise_std": self.noise_std,
                           "class_names": list(self.class_names), "prior": self.prior.tolist(),
                           "public_size": self.public_size, "charged_entry": self.charged_entry,
                           "unit": self.unit}, indent=2)

    @classmethod
    def read(cls, path: Path) -> "SizeRelease":
        try:
            raw = json.loads(path.read_text())
            release = cls(tuple(float(c) for c in raw["noisy_counts"]), float(raw["noise_std"]),
                          tuple(str(c) for c in raw["class_names"]), str(raw.get("charged_entry", "")),
                          str(raw.get("unit", "record")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: not a readable class-count release ({exc}); it is part of the site's privacy state: "
                "restore it from backup together with the ledger"
            ) from exc
        if not all(math.isfinite(c) for c in release.noisy_counts):
            raise ConfigError(f"{path}: non-finite counts; restore it from backup together with the ledger")
        return release


#: Files beside the ledger holding the site's :class:`SizeRelease`, one per DP unit.
SIZE_RELEASE_FILE = "label_prior.json"
PATIENT_RELEASE_FILE = "patient_release.json"


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
        ConfigError: if the run asks for something the site does not allow.
    """
    data = _site_training_data(site, run)  # never the site's held-out evaluation patients
    local_steps = min(run.local_steps, site.max_local_steps)
    if local_steps < run.local_steps:
        logger.warning("%s: run asks %d local steps, site limit is %d", site.site_id, run.local_steps, local_steps)
    gan = build_gan(run, len(data.class_names))
    load_gan_state(gan, weights)
    seed = None if site.insecure_seed is None else site.insecure_seed * 1000 + server_round
    if not run.dp_enabled:
        if not site.allow_non_private:
            raise NonPrivateRefused(f"{site.site_id} does not allow non-private training (dp-enabled=false refused)")
        return _train_non_private(site, run, gan, data, local_steps, seed, server_round)

    # The lock is held from the budget check through the recorded release, and the round is
    # charged at its planned cost before training: a concurrent round waits (or is refused
    # as busy), and a crash at any point leaves the spend counted, never lost.
    with PrivacyLedger.locked(site.ledger_path, target_epsilon=site.target_epsilon,
                              target_delta=site.target_delta) as ledger:
        unit = site.unit(run)
        release = _size_release(site, run, data, ledger, run_id, unit)
        if unit == "patient":
            dp, sample_rate, noise = _patient_dp(site, run, release, ledger, server_round, local_steps)
        else:
            if release.public_size < run.batch_size:
                raise ConfigError(f"{site.site_id}: its released size {release.public_size} is below "
                                  f"batch-size={run.batch_size}; lower batch-size")
            sample_rate = run.batch_size / release.public_size
            noise = run.noise_multiplier if run.noise_multiplier > 0 else _derive_noise(
                ledger, run=run, server_round=server_round, sample_rate=sample_rate, local_steps=local_steps)
            dp = DPSettings(noise_multiplier=noise, max_grad_norm=run.max_grad_norm,
                            grad_sample_mode=run.grad_sample_mode)
        ledger.check_can_spend(noise_multiplier=noise, sample_rate=sample_rate, steps=local_steps)
        charged = ledger.charge(run_id=run_id, server_round=server_round, noise_multiplier=noise,
                                sample_rate=sample_rate, steps=local_steps, unit=unit)

        def progress(step: int, total: int, metrics: dict[str, float]) -> None:
            logger.info("round %d | %s | step %d/%d | d_loss %.3f g_loss %.3f | epsilon %.3f per %s "
                        "(this round charged)", server_round, site.site_id, step, total, metrics["d_loss"],
                        metrics["g_loss"], ledger.epsilon_spent(), ledger.unit)

        patient_level = unit == "patient"
        config = _local_config(run, local_steps, seed,
                               public_dataset_size=None if patient_level else release.public_size)
        result = train_local_gan(gan=gan, beats=data.samples, labels=data.labels, config=config, dp=dp,
                                 fake_label_prior=release.prior, progress=progress,
                                 patient_ids=data.patient_ids if patient_level else None)
        # A history that does not fit the charge raises here: the update then never leaves.
        entry = ledger.settle(charged, result.dp_history)
        logger.info("round %d | %s | released update, epsilon %.3f of %.3f per %s (delta %g)", server_round,
                    site.site_id, entry.epsilon_after, ledger.target_epsilon, ledger.unit, ledger.target_delta)
    return gan_state(gan), _train_reply(float(release.public_size), entry.epsilon_after, result, noise)


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
    noise = run.noise_multiplier if run.noise_multiplier > 0 else _derive_noise(
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
    data = _site_training_data(site, run)
    return patient_level_feasibility(
        patients=data.num_patients, expected_patients_per_step=run.patients_per_step,
        local_steps=min(run.local_steps, site.max_local_steps), rounds=run.num_server_rounds,
        target_epsilon=site.target_epsilon, delta=site.target_delta,
        history=[patient_ledger_entry(run.label_prior_noise)],
    )


def _local_config(run: RunConfig, local_steps: int, seed: int | None, *,
                  public_dataset_size: int | None) -> LocalTrainingConfig:
    return LocalTrainingConfig(
        local_steps=local_steps, batch_size=run.batch_size, learning_rate_d=run.learning_rate_d,
        learning_rate_g=run.learning_rate_g, seed=seed, public_dataset_size=public_dataset_size,
        mode_seeking_weight=run.mode_seeking_weight, generator_ema=run.generator_ema,
    )


def _train_reply(num_examples: float, epsilon: float, result, noise: float) -> dict[str, float]:
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
                       seed: int | None, server_round: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The non-private control: exact counts, no ledger, and no privacy claim at all."""
    config = _local_config(run, local_steps, seed, public_dataset_size=None)
    prior = _class_counts(data) / len(data.labels)
    result = train_local_gan(gan=gan, beats=data.samples, labels=data.labels, config=config, dp=None,
                             fake_label_prior=prior)
    logger.info("round %d | %s | released a NON-PRIVATE update (dp-enabled=false)", server_round, site.site_id)
    return gan_state(gan), _train_reply(float(len(data.labels)), math.inf, result, 0.0)


def _class_counts(data: SiteData) -> torch.Tensor:
    return torch.bincount(data.labels, minlength=len(data.class_names)).double()


def _size_release(site: SiteConfig, run: RunConfig, data: SiteData, ledger: PrivacyLedger,
                  run_id: str, unit: str = "record") -> SizeRelease:
    """The site's :class:`SizeRelease` for ``unit``: read back if made before, else made once and charged.

    Record level: the class counts, sensitivity 1, charged as ``(sigma, 1, 1)``. Patient
    level: the bounded patient summary (:mod:`privacy.patient_release`), sensitivity
    sqrt(2) whatever a patient's number of records, charged as ``(sigma / sqrt 2, 1, 1)``.
    Recorded in the ledger before the file is written, so a crash in between over-counts;
    kept beside the ledger so later rounds and runs reuse it at no further cost.
    """
    path = site.state_dir / (PATIENT_RELEASE_FILE if unit == "patient" else SIZE_RELEASE_FILE)
    if path.exists():
        release = SizeRelease.read(path)
        if release.charged_entry not in {e.entry_hash for e in ledger.entries if e.purpose == "label-prior"}:
            raise ConfigError(
                f"{path}: this class-count release is not charged in the ledger {site.ledger_path} (a replaced "
                "or re-created ledger?). Fix: restore the ledger that charged it from backup; if it is lost, "
                "delete this file so the counts are released (and charged) again"
            )
        return release
    std = run.label_prior_noise
    if unit == "patient":
        exact = torch.from_numpy(patient_summary(labels=data.labels.tolist(), patient_ids=data.patient_ids,
                                                 num_classes=len(data.class_names),
                                                 records_per_patient=run.records_per_patient))
        history = patient_ledger_entry(std)
    else:
        exact, history = _class_counts(data), (std, 1.0, 1)
    ledger.check_can_spend(noise_multiplier=history[0], sample_rate=history[1], steps=history[2])
    noise = torch.randn(len(exact), dtype=torch.float64, generator=_secret_generator())
    noisy = tuple((exact.double() + noise * std).tolist())
    entry = ledger.record(run_id=run_id, server_round=0, history=[history], purpose="label-prior", unit=unit)
    release = SizeRelease(noisy, float(std), data.class_names, charged_entry=entry.entry_hash, unit=unit)
    atomic_write_text(path, release.to_json())
    logger.info("%s: released %s with Gaussian noise std %.1f (prior %s, public %s %d)", site.site_id,
                "its bounded patient summary" if unit == "patient" else "its class counts", std,
                [round(p, 4) for p in release.prior.tolist()], "patient count" if unit == "patient" else "size",
                release.public_size)
    return release


def _secret_generator() -> torch.Generator:
    # DP noise must not be predictable from anything the coordinator knows.
    return torch.Generator().manual_seed(secrets.randbits(63))


def _derive_noise(ledger: PrivacyLedger, *, run: RunConfig, server_round: int, sample_rate: float,
                  local_steps: int) -> float:
    """Noise so that the planned remaining rounds end at (not above) the site's budget."""
    remaining_rounds = max(1, run.num_server_rounds - server_round + 1)
    try:
        return noise_multiplier_for_target(
            target_epsilon=ledger.target_epsilon, delta=ledger.target_delta, sample_rate=sample_rate,
            steps=remaining_rounds * local_steps, history=ledger.history,
        )
    except ValueError as exc:
        raise PrivacyBudgetExceeded(f"site budget epsilon={ledger.target_epsilon:g} is spent: {exc}") from exc


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


def _site_training_data(site: SiteConfig, run: RunConfig) -> SiteData:
    """:func:`training_records` plus, for the audited simulated site, its included canaries."""
    data = training_records(site, run)
    if not site.canaries:
        return data
    from medgan_core.audit import with_included_canaries  # the audit module imports this one

    samples, labels = with_included_canaries(data.samples, data.labels, run)
    # Each canary is its own synthetic patient, so the patient-level audit unit is the canary.
    canary_ids = tuple(f"canary-{i}" for i in range(len(samples) - len(data.samples)))
    return SiteData(samples, labels, data.class_names, data.report, data.patient_ids + canary_ids)


def training_records(site: SiteConfig, run: RunConfig) -> SiteData:
    """Every record of the site (it holds none out: it evaluates nothing locally)."""
    return _site_data(site, run)
