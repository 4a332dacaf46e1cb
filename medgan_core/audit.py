"""Membership-inference audits of a federation's GAN, for any modality (no Flower).

Who is a member, who is not, and what the reference is:

* **Members** of site K: the records site K trains on, canaries excluded.
* **Held-out patients** (``holdout-records``; a deployed site's ``[audit] records``) are
  split by patient by the modality (:meth:`Modality.audit_holdout`): one half are the
  **non-members**, the other the **reference** population (DOMIAS's reference density,
  and the training set of the reference GAN that calibrated GAN-Leaks needs). ECG: the
  first half of the held-out records (one record, one patient); with the bundled
  configuration, non-members ``mitdb/114``, reference ``mitdb/116``. X-ray: a seeded split
  of the hold-out group's patients. Splitting by patient keeps the non-members
  independent of the reference.
* **Canaries** (``canaries`` = m > 0, simulation only): m distinctive canaries crafted from
  reference records (beats or images, :func:`privacy.audit.canaries.craft_canaries`), each
  put into site 0's training data with probability 1/2. The canary follows the DP unit:
  one record under record-level DP; under patient-level DP a whole synthetic patient of
  ``records-per-patient`` records (one id, one coin), scored as the mean of its records'
  scores, so the one-run bound is per patient, like the accountant's epsilon beside it.
  The canaries' sources are removed from the reference pool, so no candidate is ever in
  the reference.
  (:mod:`medgan_core.audit_pools` holds the pools and the canaries.)

Attacks score records flattened to vectors (``privacy.audit``), so beats and images go
through the same code.

Caveat on the member vs held-out-patient audit: members and non-members are different
patients, so an attack also detects *which patients* a model was trained on. That is
patient-level (group) inference, which record-level DP does not bound; it is reported as
measured, with this caveat. The canary audit compares included and excluded copies of
the same kind of record, so only it measures record-level leakage, and only it yields
the one-run epsilon lower bound.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from dataclasses import replace
from typing import Sequence

import numpy as np
import torch

from medgan_core.audit_pools import (
    AuditPools,
    audit_pools,
    canary_records,
    canary_unit,
    simulation_canaries,
    with_included_canaries,
)
from medgan_core.config import RunConfig
from medgan_core.data.splits import split_audit_patients
from medgan_core.errors import ConfigError
from medgan_core.io_utils import atomic_write_text
from medgan_core.models import GanPair, build_gan
from medgan_core.models.state import load_gan_state
from medgan_core.progress import track
from medgan_core.site import SiteConfig, training_records
from medgan_core.training.dp_gan import LocalTrainingConfig, train_local_gan
from privacy.audit.attacks import attacks_need, available_attacks
from privacy.audit.runner import DEFAULT_ATTACKS, AttackAudit, audit_generator, audit_metrics, sample_generator
from privacy.ledger import PrivacyLedger

__all__ = [
    "AuditPools",
    "audit_federation",
    "audit_pools",
    "canary_records",
    "canary_scope",
    "canary_unit",
    "default_reference_steps",
    "parse_attacks",
    "reference_synthetic",
    "simulation_canaries",
    "site_accountant_epsilon",
    "release_site_audit",
    "site_audit",
    "split_audit_patients",
    "train_reference_gan",
    "with_included_canaries",
]

logger = logging.getLogger(__name__)

# Candidates per side: enough for TPR at 0.1% FPR (>= 1000 non-members), bounded cost.
MAX_CANDIDATES = 2000


def parse_attacks(text: str | Sequence[str]) -> list[str]:
    """``"logan gan_leaks"`` or a list -> attack names, validated against the registry.

    Raises:
        ConfigError: unknown names (the message lists the known ones) or none at all.
    """
    names = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    unknown = [n for n in names if n not in available_attacks()]
    if unknown or not names:
        raise ConfigError(f"audit attacks {unknown or names!r} unknown or empty; known attacks: "
                          + ", ".join(available_attacks()))
    return names


def train_reference_gan(*, run: RunConfig, records: np.ndarray, labels: np.ndarray, steps: int,
                        seed: int = 0) -> GanPair:
    """A GAN trained without any candidate, on reference records only (non-private).

    It starts from the federation's initial weights (``seed`` of the run, as the
    ServerApp builds them) so that its samples differ from the audited GAN's by the data,
    not by the initialisation. Kept short: it only calibrates GAN-Leaks. ``records`` are
    ``(N, C, ...)`` in the model's layout (:class:`AuditPools`).
    """
    torch.manual_seed(run.seed)
    gan = build_gan(run)
    config = LocalTrainingConfig(local_steps=steps, batch_size=min(run.batch_size, len(records)),
                                 learning_rate_d=run.learning_rate_d, learning_rate_g=run.learning_rate_g,
                                 mode_seeking_weight=run.mode_seeking_weight,
                                 generator_ema=run.generator_ema, seed=seed)
    samples = torch.from_numpy(np.ascontiguousarray(records, dtype=np.float32))
    train_local_gan(gan=gan, beats=samples, labels=torch.from_numpy(labels).long(), config=config, dp=None)
    logger.info("audit: trained the reference GAN for %d steps on %d reference records", steps, len(records))
    return gan


def default_reference_steps(run: RunConfig, cap: int = 400) -> int:
    """Steps of the reference GAN: as many as one site trains in the run, at most ``cap``."""
    return max(1, min(run.num_server_rounds * run.local_steps, cap))


def reference_synthetic(gan: GanPair, reference_labels: np.ndarray, *, n: int, seed: int) -> np.ndarray:
    """``n`` samples of the reference GAN in the reference population's class mix."""
    classes, counts = np.unique(reference_labels, return_counts=True)
    labels = np.random.default_rng(seed + 1).choice(classes, n, p=counts / counts.sum())
    return sample_generator(gan, labels, seed=seed + 1)


def site_accountant_epsilon(run: RunConfig, site_index: int) -> tuple[float, float]:
    """(epsilon spent, delta) from simulated site ``site_index``'s ledger.

    ``(inf, target-delta)`` for a non-private run; ``(nan, target-delta)`` if the
    ledger is missing.
    """
    if not run.dp_enabled:
        return math.inf, run.target_delta
    path = SiteConfig.for_simulation(run, site_index).ledger_path
    if not path.exists():
        return math.nan, run.target_delta
    ledger = PrivacyLedger.read(path)
    return ledger.epsilon_spent(), ledger.target_delta


def canary_scope(site_index: int = 0) -> str:
    """Name of the canary audit in reports: canaries go to simulated site 0."""
    return f"site-{site_index}-canaries"


def _subsample(x: np.ndarray, y: np.ndarray, limit: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= limit:
        return x, y
    keep = np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))
    return x[keep], y[keep]


def audit_federation(
    *,
    run: RunConfig,
    gan: GanPair,
    reference_gan: GanPair | None,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    n_synthetic: int = 2000,
    max_candidates: int = MAX_CANDIDATES,
    seed: int = 0,
) -> dict[str, dict[str, AttackAudit]]:
    """Researcher-mode audit of the global GAN: every simulated site, plus the canaries.

    Needs every site's records, so it runs where the simulation driver has all data.

    Returns:
        Scope (``site-K``, and ``site-0-canaries`` when ``canaries`` > 0) -> attack name
        -> :class:`AttackAudit`. Site scopes carry the site's accountant epsilon but no
        lower bound (their membership was not randomized); the canary scope has both.
    """
    pools = audit_pools(run)
    x0, y0 = _subsample(pools.non_members, pools.non_member_labels, max_candidates, seed)
    ref_syn = None
    if reference_gan is not None:
        ref_syn = reference_synthetic(reference_gan, pools.reference_labels, n=n_synthetic, seed=seed)
    common = dict(gan=gan, reference=pools.reference, reference_labels=pools.reference_labels,
                  reference_synthetic=ref_syn, attacks=list(attacks), n_synthetic=n_synthetic, seed=seed)
    scopes: dict[str, dict[str, AttackAudit]] = {}
    for index in track(range(len(run.site_record_groups())), description="membership audit, sites"):
        site = replace(SiteConfig.for_simulation(run, index), canaries=False)
        data = training_records(site, run)
        x1, y1 = _subsample(data.samples.numpy(), data.labels.numpy(), max_candidates, seed)
        epsilon, delta = site_accountant_epsilon(run, index)
        logger.info("audit site-%d: %d members vs %d non-members", index, len(x1), len(x0))
        scopes[f"site-{index}"] = audit_generator(
            members=x1, member_labels=y1, non_members=x0, non_member_labels=y0,
            delta=delta, accountant_epsilon=epsilon, **common)
    if pools.canaries is not None:
        c = pools.canaries
        epsilon, delta = site_accountant_epsilon(run, 0)
        inc = c.record_included
        logger.info("audit canaries: %d included vs %d excluded (site 0), one per %s", int(c.included.sum()),
                    int((~c.included).sum()), canary_unit(run))
        # Grouped only when a canary has several records: record-level audits stay as they were.
        groups = len(c.records) > len(c)
        scopes[canary_scope(0)] = audit_generator(
            members=c.records[inc], member_labels=c.labels[inc],
            non_members=c.records[~inc], non_member_labels=c.labels[~inc],
            member_groups=c.record_groups[inc] if groups else None,
            non_member_groups=c.record_groups[~inc] if groups else None,
            delta=delta, accountant_epsilon=epsilon, randomized_inclusion=True, **common)
    return scopes


def site_audit(
    *,
    site: SiteConfig,
    run: RunConfig,
    weights: dict[str, np.ndarray],
    attacks: Sequence[str],
    n_synthetic: int = 1000,
    reference_steps: int = 100,
    max_candidates: int = MAX_CANDIDATES,
    seed: int = 0,
) -> dict[str, AttackAudit]:
    """A site audits the global model on its own data (the ``query.audit`` handler's core).

    Members are the site's training records; non-members and the reference are its own
    held-out patients (``SiteConfig.audit_paths``, split by patient, see module doc). A
    reference GAN is trained on the site's reference patients only if an attack needs it.
    The site never sees the simulation's canary bits, so its reference keeps every record.

    Raises:
        ConfigError: the site has fewer than two held-out patients.
    """
    if not site.audit_paths:
        raise ConfigError(f"{site.site_id} has no held-out audit records; list them in the site "
                          "config under [audit] records (simulation: holdout-records)")
    pools = audit_pools(run, site.audit_paths, site.audit_share)
    data = training_records(site, run)
    x1, y1 = _subsample(data.samples.numpy(), data.labels.numpy(), max_candidates, seed)
    x0, y0 = _subsample(pools.non_members, pools.non_member_labels, max_candidates, seed)
    gan = build_gan(run, len(data.class_names))
    load_gan_state(gan, weights)
    ref_syn = None
    if attacks_need(attacks, "reference_synthetic"):
        reference_gan = train_reference_gan(run=run, records=pools.reference, labels=pools.reference_labels,
                                            steps=reference_steps, seed=seed)
        ref_syn = reference_synthetic(reference_gan, pools.reference_labels, n=n_synthetic, seed=seed)
    return audit_generator(gan=gan, members=x1, member_labels=y1, non_members=x0, non_member_labels=y0,
                           reference=pools.reference, reference_labels=pools.reference_labels,
                           reference_synthetic=ref_syn, attacks=list(attacks), n_synthetic=n_synthetic,
                           seed=seed)


def release_site_audit(*, site: SiteConfig, run: RunConfig, run_id: str, weights: dict[str, np.ndarray],
                       attacks: Sequence[str]) -> dict[str, float]:
    """The ``query.audit`` handler's core: audit at the site, keep the results there, and
    release noisy AUCs only if the site opted in.

    The full audit (AUCs with intervals, TPR at low FPR, counts) is written to
    ``<site state>/audits/`` for the site's own data-protection officer. The coordinator
    gets ``audit-kept-at-site = 1`` unless the site's TOML says ``[release] audit = true``;
    then each attack's AUC is sent plus Gaussian noise of std ``audit-noise-multiplier``,
    charged to the ledger as that many Gaussian releases of sensitivity 1. Sensitivity 1
    is the honest bound: the reference GAN and the subsampled member set can change with
    any single record, so an AUC in [0, 1] may move by up to 1.

    Raises:
        ConfigError: no held-out audit records.
        PrivacyBudgetExceeded: the release would exceed the site's budget.
    """
    audits = site_audit(site=site, run=run, weights=weights, attacks=attacks)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    atomic_write_text(site.state_dir / "audits" / f"audit-{stamp}-{run_id}.json",
                      json.dumps({"run_id": run_id, "metrics": audit_metrics(audits),
                                  "audits": {k: a.to_dict() for k, a in audits.items()}}, indent=2, default=str))
    if not site.release_audit:
        logger.info("%s: audit results kept at the site (%s)", site.site_id, site.state_dir / "audits")
        return {"audit-kept-at-site": 1.0}
    sigma = site.audit_noise_multiplier
    with PrivacyLedger.locked(site.ledger_path, target_epsilon=site.target_epsilon,
                              target_delta=site.target_delta) as ledger:
        ledger.check_can_spend(noise_multiplier=sigma, sample_rate=1.0, steps=len(audits))
        # Charged before the noisy values exist: a crash after this over-counts, never under.
        # An AUC lies in [0, 1] whatever one record or one whole patient changes: sensitivity
        # 1 under either unit, so the release is charged in the site's unit.
        ledger.record(run_id=run_id, server_round=0, history=[(sigma, 1.0, len(audits))], purpose="audit-release",
                      unit=site.unit(run))
        spent = ledger.epsilon_spent()
    rng = np.random.default_rng(secrets.randbits(128))
    released = {}
    for name, audit in audits.items():
        auc = audit.result.auc if audit.result is not None and math.isfinite(audit.result.auc) else 0.5
        released[f"{name}-auc-noised"] = float(min(max(auc, 0.0), 1.0) + rng.normal(0.0, sigma))
    logger.info("%s: released %d noisy audit AUCs (std %.1f), charged; epsilon now %.3f per record",
                site.site_id, len(released), sigma, spent)
    return {"audit-kept-at-site": 1.0, **released}
