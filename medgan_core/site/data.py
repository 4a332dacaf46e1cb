"""A site's records: read once per process and cached, plus the audit's canaries when the
site is the audited simulated one."""

from __future__ import annotations

import functools

from medgan_core.audit_pools import simulation_canaries, with_included_canaries
from medgan_core.config import RunConfig
from medgan_core.data.site_data import SiteData
from medgan_core.modalities import get_modality
from medgan_core.site.config import SiteConfig

__all__ = ["SiteData", "load_site_data", "site_training_data", "training_records"]


@functools.lru_cache(maxsize=8)
def load_site_data(modality: str, data_paths: tuple[str, ...], image_size: int = 64,
                   patient_share: object = None) -> SiteData:
    """Read and cache a site's data (the modality's reader); a bad record is skipped and
    reported, never fatal. For a simulated share of a folder, the report covers the folder."""
    return get_modality(modality).load(data_paths, image_size=image_size, patient_share=patient_share)


def site_training_data(site: SiteConfig, run: RunConfig) -> SiteData:
    """:func:`training_records` plus, for the audited simulated site, its included canaries."""
    data = training_records(site, run)
    if not site.canaries:
        return data
    samples, labels = with_included_canaries(data.samples, data.labels, run)
    canaries = simulation_canaries(run)
    # Each canary is its own synthetic patient (k records under patient-level DP, one
    # otherwise), so the patient-level DP unit is the canary: its records share its id.
    groups = canaries.included_groups() if canaries is not None else ()
    canary_ids = tuple(f"canary-{g}" for g in groups)
    return SiteData(samples, labels, data.class_names, data.report, data.patient_ids + canary_ids)


def training_records(site: SiteConfig, run: RunConfig) -> SiteData:
    """Every record of the site (it holds none out: it evaluates nothing locally)."""
    return load_site_data(site.modality, site.data_paths, run.image_size, site.patient_share)
