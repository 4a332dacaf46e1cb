"""The site's one DP release of its size: :class:`SizeRelease`, made once, charged, reused.

Everything the federation learns about how much data a site has comes from this release;
the exact counts never leave the site.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from medgan_core.config import RunConfig
from medgan_core.data.site_data import SiteData
from medgan_core.errors import ConfigError
from medgan_core.io_utils import atomic_write_text
from medgan_core.site.config import SiteConfig
from medgan_core.site.randomness import secret_generator
from privacy.ledger import PrivacyLedger
from privacy.patient_release import class_prior, patient_summary, public_patient_count
from privacy.patient_release import ledger_entry as patient_ledger_entry

__all__ = ["PATIENT_RELEASE_FILE", "SIZE_RELEASE_FILE", "SizeRelease", "class_counts", "size_release"]

logger = logging.getLogger(__name__)


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


def class_counts(data: SiteData) -> torch.Tensor:
    return torch.bincount(data.labels, minlength=len(data.class_names)).double()


def size_release(site: SiteConfig, run: RunConfig, data: SiteData, ledger: PrivacyLedger,
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
        exact, history = class_counts(data), (std, 1.0, 1)
    ledger.check_can_spend(noise_multiplier=history[0], sample_rate=history[1], steps=history[2])
    noise = torch.randn(len(exact), dtype=torch.float64, generator=secret_generator())
    noisy = tuple((exact.double() + noise * std).tolist())
    entry = ledger.record(run_id=run_id, server_round=0, history=[history], purpose="label-prior", unit=unit)
    release = SizeRelease(noisy, float(std), data.class_names, charged_entry=entry.entry_hash, unit=unit)
    atomic_write_text(path, release.to_json())
    logger.info("%s: released %s with Gaussian noise std %.1f (prior %s, public %s %d)", site.site_id,
                "its bounded patient summary" if unit == "patient" else "its class counts", std,
                [round(p, 4) for p in release.prior.tolist()], "patient count" if unit == "patient" else "size",
                release.public_size)
    return release
