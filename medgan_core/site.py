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
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.ecg import EcgConfig, load_ecg_records
from medgan_core.data.report import DataReport
from medgan_core.data.splits import split_by_patient
from medgan_core.errors import ConfigError
from medgan_core.evaluation import (
    LabelledSet,
    SitePatientSplit,
    load_or_train_encoder,
    site_scalars,
    split_site_patients,
)
from medgan_core.io_utils import atomic_write_text
from medgan_core.models.registry import GanPair, create_gan
from medgan_core.models.state import gan_state, load_gan_state
from medgan_core.training.dp_gan import DPSettings, LocalTrainingConfig, train_local_gan
from privacy.accounting import noise_multiplier_for_target
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
    "train_round",
    "xray_share_weights",
]

logger = logging.getLogger(__name__)


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
    """

    site_id: str
    modality: str
    data_paths: tuple[str, ...]
    ledger_path: Path
    target_epsilon: float
    target_delta: float
    max_local_steps: int = 1000
    allow_non_private: bool = False
    patient_share: "PatientShare | None" = None
    audit_paths: tuple[str, ...] = ()
    canaries: bool = False

    @classmethod
    def from_toml(cls, path: str | Path) -> "SiteConfig":
        """Read a site config file (see README, "Hospital IT").

        Raises:
            ConfigError: naming the file and the missing or bad key.
        """
        path = Path(path)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read site config ({exc})") from exc
        base = path.parent
        try:
            site, data, budget = raw["site"], raw["data"], raw["privacy"]
            modality = data["modality"]
            if modality == "ecg":
                root = base / data["dir"]
                records = data.get("records")
                paths = tuple(str(root / r) for r in records) if records else tuple(
                    str(p.with_suffix("")) for p in sorted(root.rglob("*.hea")))
            else:
                paths = (str(base / data["dir"]),)
            return cls(
                site_id=str(site["id"]), modality=modality, data_paths=paths,
                ledger_path=base / budget["ledger"], target_epsilon=float(budget["target-epsilon"]),
                target_delta=float(budget["target-delta"]),
                max_local_steps=int(raw.get("limits", {}).get("max-local-steps", 1000)),
                allow_non_private=bool(raw.get("limits", {}).get("allow-non-private", False)),
                audit_paths=tuple(str(base / data["dir"] / r) for r in raw.get("audit", {}).get("records", [])),
            )
        except KeyError as exc:
            raise ConfigError(f"{path}: missing key {exc}; see the README's site config example") from exc

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
        share = None
        if run.modality == "xray":
            share = PatientShare(weights=xray_share_weights(run), group=partition_id, seed=run.seed)
        return cls(
            site_id=f"site-{partition_id}", modality=run.modality, patient_share=share,
            data_paths=(run.data_root,) if share else tuple(str(p) for p in run.record_paths(groups[partition_id])),
            ledger_path=Path(run.run_dir) / "sites" / f"site-{partition_id}" / "privacy_ledger.json",
            target_epsilon=run.target_epsilon, target_delta=run.target_delta,
            allow_non_private=True,
            audit_paths=() if share else tuple(str(p) for p in run.record_paths(run.holdout_records.split())),
            canaries=partition_id == 0 and run.canaries > 0,
        )


@dataclass(frozen=True)
class PatientShare:
    """Simulation only: one group of a seeded patient-level split of an image directory.

    Attributes:
        weights: Relative share of the images for every simulated site, then for the
            held-out patients; e.g. ``(1, 1, 1, 1)``: three sites and a hold-out set of
            about equal size.
        group: This site's group (the held-out group is the last and is never a site).
        seed: Seed of the patient shuffle.
    """

    weights: tuple[float, ...]
    group: int
    seed: int

    def select(self, patient_ids: list[str]) -> np.ndarray:
        """Indices of this group's images among ``patient_ids`` (whole patients only)."""
        return split_xray_patients(patient_ids, weights=self.weights, seed=self.seed)[self.group]


def xray_share_weights(run: RunConfig) -> tuple[float, ...]:
    """Simulated X-ray sites: ``site-records`` and ``holdout-records`` as patient shares.

    An image folder has no record names to list, so for modality ``xray`` each
    ``|``-separated group of ``site-records`` is one number, the site's relative share of
    the images of ``data-root``, and ``holdout-records`` is the held-out share:
    ``site-records="1|1|1" holdout-records="1"`` gives three sites and a hold-out set of
    about a quarter of the images each, in whole patients.

    Returns:
        The site weights followed by the hold-out weight.

    Raises:
        ConfigError: a group is not one positive number.
    """
    groups = run.site_record_groups() + [run.holdout_records.split()]
    try:
        weights = tuple(float(group[0]) if len(group) == 1 else math.nan for group in groups)
    except ValueError:
        weights = (math.nan,)
    if len(groups) < 2 or not all(w > 0 and math.isfinite(w) for w in weights):
        raise ConfigError(
            f"modality xray: site-records={run.site_records!r} holdout-records={run.holdout_records!r} "
            "must be relative shares of the patients, one positive number per site, e.g. "
            "site-records='1|1|1' holdout-records='1'"
        )
    return weights


def split_xray_patients(patient_ids: list[str], *, weights: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Image indices per group of :func:`split_by_patient` with normalised ``weights``."""
    total = sum(weights)
    return split_by_patient(patient_ids, fractions=[w / total for w in weights], seed=seed)


@dataclass(frozen=True)
class SiteData:
    samples: torch.Tensor  # (N, 1, L) or (N, 1, H, W), model units
    labels: torch.Tensor  # (N,)
    class_names: tuple[str, ...]
    report: DataReport


@functools.lru_cache(maxsize=8)
def load_site_data(modality: str, data_paths: tuple[str, ...], image_size: int = 64,
                   patient_share: PatientShare | None = None) -> SiteData:
    """Read and cache a site's data; a bad record is skipped and reported, never fatal.

    For a simulated X-ray site (``patient_share``), the report covers the whole folder.
    """
    if modality == "ecg":
        beats, report = load_ecg_records(list(data_paths), EcgConfig())
        samples = torch.from_numpy(beats.beats).unsqueeze(1)
        return SiteData(samples, torch.from_numpy(beats.labels), beats.class_names, report)
    if modality == "xray":
        images, labels, patients, report = _xray_folder(data_paths[0], image_size)
        if patient_share is not None:
            chosen = patient_share.select(patients)
            images, labels = images[chosen], np.asarray(labels)[chosen]
        samples = torch.from_numpy(images * 2.0 - 1.0).float().unsqueeze(1)  # [0,1] -> [-1,1]
        return SiteData(samples, torch.from_numpy(np.asarray(labels)).long(), ("NORMAL", "PNEUMONIA"), report)
    raise ConfigError(f"unknown modality {modality!r}; use 'ecg' or 'xray'")


@functools.lru_cache(maxsize=2)
def _xray_folder(root: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], DataReport]:
    # Simulated sites share one folder; a worker process hosting several reads it once.
    from medgan_core.data.xray import load_xray_dataset

    return load_xray_dataset(root, size=image_size)


def build_gan(run: RunConfig, num_classes: int = 2) -> GanPair:
    kwargs: dict[str, object] = {"latent_dim": run.latent_dim, "num_classes": num_classes}
    if run.modality == "xray":
        kwargs["image_size"] = run.image_size
    return create_gan(run.model, **kwargs)


def _site_data(site: SiteConfig, run: RunConfig) -> SiteData:
    return load_site_data(site.modality, site.data_paths, run.image_size, site.patient_share)


def train_round(
    *, site: SiteConfig, run: RunConfig, run_id: str, server_round: int,
    weights: dict[str, np.ndarray],
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train the global GAN locally for one round and account for it.

    The ledger is checked before training and written (durably) after training and
    before this function returns, i.e. before the update can leave the site.

    Returns:
        The new flat GAN state and the reply metrics (same keys at every site).

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
    num_examples = len(data.labels)
    sample_rate = run.batch_size / num_examples
    dp: DPSettings | None = None
    ledger: PrivacyLedger | None = None
    if run.dp_enabled:
        ledger = PrivacyLedger.open(site.ledger_path, target_epsilon=site.target_epsilon,
                                    target_delta=site.target_delta)
        prior = _label_prior(site, run, data, ledger, run_id)
        noise = run.noise_multiplier if run.noise_multiplier > 0 else _derive_noise(
            ledger, run=run, server_round=server_round, sample_rate=sample_rate, local_steps=local_steps)
        ledger.check_can_spend(noise_multiplier=noise, sample_rate=sample_rate, steps=local_steps)
        dp = DPSettings(noise_multiplier=noise, max_grad_norm=run.max_grad_norm,
                        grad_sample_mode=run.grad_sample_mode)
    elif not site.allow_non_private:
        raise ConfigError(f"{site.site_id} does not allow non-private training (dp-enabled=false refused)")
    else:
        prior = _class_counts(data) / len(data.labels)

    def progress(step: int, total: int, metrics: dict[str, float]) -> None:
        spent = ledger.epsilon_spent() if ledger else math.inf
        logger.info("round %d | %s | step %d/%d | d_loss %.3f g_loss %.3f | epsilon spent %.3f",
                    server_round, site.site_id, step, total, metrics["d_loss"], metrics["g_loss"], spent)

    config = LocalTrainingConfig(
        local_steps=local_steps, batch_size=run.batch_size, learning_rate_d=run.learning_rate_d,
        learning_rate_g=run.learning_rate_g, seed=run.seed * 1000 + server_round * 17 + _stable_hash(site.site_id),
        mode_seeking_weight=run.mode_seeking_weight, generator_ema=run.generator_ema,
    )
    result = train_local_gan(gan=gan, beats=data.samples, labels=data.labels, config=config, dp=dp,
                             fake_label_prior=prior, progress=progress)
    epsilon = math.inf
    if ledger is not None:
        entry = ledger.record(run_id=run_id, server_round=server_round, history=result.dp_history)
        epsilon = entry.epsilon_after
        logger.info("round %d | %s | released update, epsilon %.3f of %.3f (delta %g)",
                    server_round, site.site_id, epsilon, ledger.target_epsilon, ledger.target_delta)
    metrics = {
        "num-examples": float(num_examples),
        "epsilon": float(epsilon),
        "d-loss": result.d_loss,
        "g-loss": result.g_loss,
        "noise-multiplier": float(dp.noise_multiplier if dp else 0.0),
        "local-steps": float(result.steps),
    }
    return gan_state(gan), metrics


def _class_counts(data: SiteData) -> torch.Tensor:
    return torch.bincount(data.labels, minlength=len(data.class_names)).double()


def _label_prior(site: SiteConfig, run: RunConfig, data: SiteData, ledger: PrivacyLedger,
                 run_id: str) -> torch.Tensor:
    """The site's class proportions, released once with the Gaussian mechanism.

    The discriminator's fakes must follow the real class mix (see
    ``medgan_core.training.dp_gan``), but the mix is a statistic of the site's data. It is
    released once per site as counts + N(0, sigma^2) (L2 sensitivity 1 under adding or
    removing a record), recorded in the ledger as one full-batch Gaussian step, and kept
    beside the ledger so later rounds reuse it (post-processing, no further cost).
    """
    path = site.ledger_path.with_name("label_prior.json")
    if path.exists():
        return torch.tensor(json.loads(path.read_text())["prior"], dtype=torch.float64)
    sigma = run.label_prior_noise
    ledger.check_can_spend(noise_multiplier=sigma, sample_rate=1.0, steps=1)
    # Unseeded on purpose: DP noise must not be predictable from the run configuration.
    noisy = _class_counts(data) + torch.randn(len(data.class_names), dtype=torch.float64) * sigma
    prior = noisy.clamp(min=1.0) / noisy.clamp(min=1.0).sum()
    ledger.record(run_id=run_id, server_round=0, history=[(sigma, 1.0, 1)], purpose="label-prior")
    atomic_write_text(path, json.dumps({"prior": prior.tolist(), "noise_std": sigma,
                                        "class_names": list(data.class_names)}))
    logger.info("%s: released class prior %s (Gaussian noise std %.1f on counts)", site.site_id,
                [round(p, 4) for p in prior.tolist()], sigma)
    return prior


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
    """Scalar losses and utility of the global model on the site's evaluation patients.

    Evaluation patients: a site with at least ``site-eval-min-patients`` patients holds out
    whole patients (never trained on, see :func:`_site_training_data`); a smaller site
    evaluates on its training patients and reports ``eval-held-out = 0``. The utility
    scalars (:data:`medgan_core.evaluation.SITE_SCALAR_KEYS`) are computed in the site's
    own encoder space, trained once on its training patients and kept at the site.
    Only means over the site's data leave the site, never per-record values.
    """
    split = _evaluation_split(site, run)
    data = _site_data(site, run) if not split.held_out else load_site_data(
        site.modality, split.evaluate, run.image_size)
    gan = build_gan(run, len(data.class_names))
    load_gan_state(gan, weights)
    gan.generator.eval()
    gan.discriminator.eval()
    rng = torch.Generator().manual_seed(run.seed)
    # Losses on a fixed random subset of eval-samples records: same estimate, a fraction of the time.
    subset = LabelledSet(data.samples, data.labels).subsample(run.eval_samples, seed=run.seed)
    with torch.no_grad():
        real_logits = gan.discriminator(subset.samples, subset.labels)
        fake_labels = torch.randint(0, gan.num_classes, (len(subset),), generator=rng)
        fake = gan.generator(torch.randn(len(subset), gan.latent_dim, generator=rng), fake_labels)
        fake_logits = gan.discriminator(fake, fake_labels)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    epsilon = math.inf
    if run.dp_enabled and site.ledger_path.exists():
        epsilon = PrivacyLedger.open(site.ledger_path, target_epsilon=site.target_epsilon,
                                     target_delta=site.target_delta).epsilon_spent()
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits))
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    if gan.loss == "wasserstein":  # critic scores, not logits: dp_gan's losses (equal counts)
        d_loss, g_loss = 0.5 * (fake_logits.mean() - real_logits.mean()), -fake_logits.mean()
    return {
        "num-examples": float(len(data.labels)),
        "epsilon": float(epsilon),
        "d-loss": float(d_loss),
        "g-loss": float(g_loss),
        "d-accuracy-real": float((real_logits > 0).float().mean()),
        "eval-held-out": float(split.held_out),
        **_site_utility(site, run, gan, data),
    }


def _evaluation_split(site: SiteConfig, run: RunConfig) -> SitePatientSplit:
    """The site's patient-level evaluation split, as record paths (ECG: one record, one patient).

    An X-ray site's folder is not split here (its patients come from file names inside
    one directory); it evaluates on its training patients and says so.
    """
    paths = site.data_paths if site.modality == "ecg" else ()
    by_name = {f"{Path(p).parent.name}/{Path(p).name}": p for p in paths}
    split = split_site_patients(list(by_name), min_patients=run.site_eval_min_patients)
    return SitePatientSplit(train=tuple(by_name[n] for n in split.train) or site.data_paths,
                            evaluate=tuple(by_name[n] for n in split.evaluate) or site.data_paths,
                            held_out=split.held_out)


def _site_training_data(site: SiteConfig, run: RunConfig) -> SiteData:
    """:func:`training_records` plus, for the audited simulated site, its included canaries."""
    data = training_records(site, run)
    if not site.canaries:
        return data
    from medgan_core.audit import with_included_canaries  # the audit module imports this one

    samples, labels = with_included_canaries(data.samples, data.labels, run)
    return SiteData(samples, labels, data.class_names, data.report)


def training_records(site: SiteConfig, run: RunConfig) -> SiteData:
    """The site's data minus its evaluation patients (all of it when none are held out)."""
    split = _evaluation_split(site, run)
    if not split.held_out:
        return _site_data(site, run)
    return load_site_data(site.modality, split.train, run.image_size)


def _site_utility(site: SiteConfig, run: RunConfig, gan: GanPair, data: SiteData) -> dict[str, float]:
    """Utility scalars of ``gan`` on ``data`` in the site's own encoder space."""
    train = _site_training_data(site, run)
    # The encoder is a non-private model of the site's training data: it stays beside the
    # ledger, in the site's private directory, and is reused so rounds stay comparable.
    encoder = load_or_train_encoder(site.ledger_path.with_name("evaluation_encoder.pt"),
                                    LabelledSet(train.samples, train.labels), modality=site.modality,
                                    epochs=run.eval_encoder_epochs, seed=run.seed)
    scale = EcgConfig().amplitude_scale_mv if site.modality == "ecg" else 1.0
    return site_scalars(gan=gan, encoder=encoder, real=LabelledSet(data.samples, data.labels),
                        num_classes=len(data.class_names), samples=run.eval_samples,
                        classifier_epochs=run.eval_classifier_epochs, physical_scale=scale, seed=run.seed)


def _stable_hash(text: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(text)) % 997
