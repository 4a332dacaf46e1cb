"""The membership audit's real records besides the members: held-out patients and canaries.

Kept apart from :mod:`medgan_core.audit` because a site's training data needs the canaries
(:func:`with_included_canaries`) while the audit needs the site: this module imports
neither, so the dependency runs one way (``audit`` -> ``site`` -> ``audit_pools``).

Everything is modality-agnostic: the modality says which patients are held out and how
they split into non-members and reference (:meth:`Modality.audit_holdout`), and records
keep the model's layout ``(N, C, ...)``: ``(N, 1, L)`` beats, ``(N, 1, H, W)`` images.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medgan_core.config import RunConfig
from medgan_core.data.site_data import SiteData
from medgan_core.modalities import get_modality
from privacy.audit.canaries import CanarySet, craft_canaries

__all__ = ["AuditPools", "audit_pools", "canary_records", "canary_unit", "simulation_canaries",
           "with_included_canaries"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditPools:
    """Real records the auditor holds besides the members, in the model's ``(N, C, ...)``
    layout, with their labels, the patients of each half, and the run's canaries."""

    non_members: np.ndarray
    non_member_labels: np.ndarray
    reference: np.ndarray
    reference_labels: np.ndarray
    canaries: CanarySet | None = None
    non_member_patients: tuple[str, ...] = ()
    reference_patients: tuple[str, ...] = ()


@functools.lru_cache(maxsize=4)
def _holdout(modality: str, audit_paths: tuple[str, ...], image_size: int, audit_share: Any
             ) -> tuple[SiteData, SiteData]:
    # Every audit of a run reads the same held-out patients: once per process.
    return get_modality(modality).audit_holdout(audit_paths, image_size=image_size, audit_share=audit_share)


def _simulation_holdout(run: RunConfig) -> tuple[SiteData, SiteData]:
    """The simulation's held-out patients (``holdout-records``), as every simulated site sees them."""
    simulated = get_modality(run.modality).simulated_site(run, 0)
    return _holdout(run.modality, simulated.audit_paths, run.image_size, simulated.audit_share)


def _arrays(data: SiteData) -> tuple[np.ndarray, np.ndarray]:
    return data.samples.numpy(), data.labels.numpy()


def _patients(data: SiteData) -> tuple[str, ...]:
    return tuple(dict.fromkeys(data.patient_ids))  # in order of appearance, once each


def canary_unit(run: RunConfig) -> str:
    """What one canary is, and so what the one-run bound is per: ``"patient"`` under
    patient-level DP, else the modality's record word (``"beat"``, ``"image"``)."""
    return "patient" if run.unit == "patient" else get_modality(run.modality).record_word


def canary_records(run: RunConfig) -> int:
    """Records of one canary: 1 under record-level DP; under patient-level DP a canary is a
    whole synthetic patient of ``records-per-patient`` records, as many as one patient can
    bring into a discriminator step, so the canary uses the whole per-patient allowance."""
    return run.records_per_patient if run.unit == "patient" else 1


@functools.lru_cache(maxsize=4)
def simulation_canaries(run: RunConfig) -> CanarySet | None:
    """The ``canaries`` canaries of a simulated run (``None`` when ``canaries`` = 0).

    Crafted from the reference patients' records (:func:`privacy.audit.canaries.craft_canaries`),
    whatever the modality; each canary is :func:`canary_records` records (a synthetic patient
    under patient-level DP, one record otherwise). A pure function of the run configuration (seeded by ``seed``), so
    the simulated site, the central audit and ``medgan audit`` all see the same canaries and bits.
    """
    if run.canaries == 0:
        return None
    _, reference = _simulation_holdout(run)
    pool, _ = _arrays(reference)
    return craft_canaries(pool, num_canaries=run.canaries, num_classes=len(reference.class_names), seed=run.seed,
                          records_per_canary=canary_records(run))


def with_included_canaries(samples: torch.Tensor, labels: torch.Tensor, run: RunConfig
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Append the included canaries to a site's training ``(N, C, ...)`` samples and labels."""
    canaries = simulation_canaries(run)
    if canaries is None:
        return samples, labels
    records, canary_labels = canaries.included_records()
    logger.info("audit: %d of %d canaries (%d records) included in this site's training data",
                int(canaries.included.sum()), len(canaries), len(records))
    extra = torch.from_numpy(np.ascontiguousarray(records, dtype=np.float32)).reshape(-1, *samples.shape[1:])
    return (torch.cat([samples, extra.to(samples.dtype)]),
            torch.cat([labels, torch.from_numpy(canary_labels).to(labels.dtype)]))


def audit_pools(run: RunConfig, audit_paths: tuple[str, ...] | None = None,
                audit_share: Any = None) -> AuditPools:
    """Non-members, reference (minus canary sources) and canaries for ``run``.

    Args:
        run: the run configuration.
        audit_paths: a site's held-out patient records (``SiteConfig.audit_paths``, with its
            ``audit_share``); default the simulation's ``holdout-records``, with its canaries.
        audit_share: see ``audit_paths``.
    """
    if audit_paths is None:
        non_members, reference = _simulation_holdout(run)
        canaries = simulation_canaries(run)
    else:
        non_members, reference = _holdout(run.modality, tuple(audit_paths), run.image_size, audit_share)
        canaries = None
    x0, y0 = _arrays(non_members)
    xr, yr = _arrays(reference)
    if canaries is not None:
        keep = np.ones(len(xr), bool)
        keep[canaries.source_indices] = False
        xr, yr = xr[keep], yr[keep]
    return AuditPools(x0, y0, xr, yr, canaries, _patients(non_members), _patients(reference))
