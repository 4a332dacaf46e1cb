"""Chest X-rays: an image folder (DICOM, JPEG, PNG) with NORMAL/ and PNEUMONIA/ class folders.

Patients come from the file names (or DICOM PatientID, or a labels CSV), so a simulated
federation splits one folder into sites by whole patients (:class:`PatientShare`): by the
relative shares of ``site-records`` or, with ``partition='dirichlet'``, each class's
patients by Dir(``partition-alpha``) (:mod:`medgan_core.data.partition`). The
default DP unit is the patient: a site of this size (hundreds of patients) can afford it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from medgan_core.data.partition import MIN_PATIENTS_PER_SITE, dirichlet_record_groups
from medgan_core.data.report import DataReport
from medgan_core.data.splits import split_by_patient
from medgan_core.errors import ConfigError
from medgan_core.modalities.base import Modality, SimulatedSite, register_modality

if TYPE_CHECKING:
    from medgan_core.config import RunConfig
    from medgan_core.data.labelled import LabelledSet
    from medgan_core.data.site_data import SiteData
    from medgan_core.evaluation.settings import EvaluationSettings

__all__ = ["PatientShare", "PooledShare", "XrayModality", "split_xray_patients", "xray_share_weights"]


@dataclass(frozen=True)
class PatientShare:
    """Simulation only: one group of a seeded patient-level split of an image directory.

    Attributes:
        weights: Relative share of the images for every simulated site, then for the
            held-out patients (then for the public patients, with ``public-records``);
            e.g. ``(1, 1, 1, 1)``: three sites and a hold-out set of about equal size.
        group: This site's group (the groups after the sites' are never a site).
        seed: Seed of the patient shuffle.
        alpha: ``None`` for the split by ``weights``; else the sites' patients are dealt by
            Dir(alpha) per class (the groups after the sites' stay the ones of ``weights``).
        min_patients: Dirichlet only: fewest patients per site.
        num_sites: How many of the groups are sites; ``None``: all but the last.
    """

    weights: tuple[float, ...]
    group: int
    seed: int
    alpha: float | None = None
    min_patients: int = MIN_PATIENTS_PER_SITE
    num_sites: int | None = None

    def select(self, patient_ids: list[str], labels: np.ndarray | None = None) -> np.ndarray:
        """Indices of this group's images among ``patient_ids`` (whole patients only);
        ``labels`` (one per image) are needed for a Dirichlet split."""
        return split_xray_patients(patient_ids, weights=self.weights, seed=self.seed, labels=labels,
                                   alpha=self.alpha, min_patients=self.min_patients,
                                   num_sites=self.num_sites)[self.group]


@dataclass(frozen=True)
class PooledShare:
    """Simulation only: the union of several sites' :class:`PatientShare` (the centralized setting)."""

    shares: tuple[PatientShare, ...]

    def select(self, patient_ids: list[str], labels: np.ndarray | None = None) -> np.ndarray:
        """Indices of the images of every share's patients, in folder order."""
        return np.sort(np.concatenate([share.select(patient_ids, labels) for share in self.shares]))


def xray_share_weights(run: RunConfig) -> tuple[float, ...]:
    """Simulated X-ray sites: ``site-records`` and ``holdout-records`` as patient shares.

    An image folder has no record names to list, so for modality ``xray`` each
    ``|``-separated group of ``site-records`` is one number, the site's relative share of
    the images of ``data-root``, and ``holdout-records`` is the held-out share:
    ``site-records="1|1|1" holdout-records="1"`` gives three sites and a hold-out set of
    about a quarter of the images each, in whole patients.

    With ``public-records`` (one number too), the public share follows the hold-out's: the
    patients ``medgan pretrain`` trains on, which no site and no evaluation sees.

    Returns:
        The site weights, then the hold-out weight, then the public weight if any.

    Raises:
        ConfigError: a group is not one positive number.
    """
    groups = run.site_record_groups() + [run.holdout_records.split()]
    if run.public_records.strip():
        groups.append(run.public_records.split())
    try:
        weights = tuple(float(group[0]) if len(group) == 1 else math.nan for group in groups)
    except ValueError:
        weights = (math.nan,)
    if len(groups) < 2 or not all(w > 0 and math.isfinite(w) for w in weights):
        raise ConfigError(
            f"modality xray: site-records={run.site_records!r} holdout-records={run.holdout_records!r} "
            f"public-records={run.public_records!r} must be relative shares of the patients, one positive "
            "number per site, e.g. site-records='1|1|1' holdout-records='1' (public-records='1' or '')"
        )
    return weights


def split_xray_patients(patient_ids: list[str], *, weights: tuple[float, ...], seed: int,
                        labels: np.ndarray | None = None, alpha: float | None = None,
                        min_patients: int = MIN_PATIENTS_PER_SITE, num_sites: int | None = None) -> list[np.ndarray]:
    """Image indices per group: the sites', then the held-out group (then the public one).

    The groups are those of :func:`split_by_patient` with normalised ``weights``; the first
    ``num_sites`` (default all but the last) are the sites'. With ``alpha``, the groups after
    the sites' stay as they are (so every alpha is scored on the same patients) and the
    sites' patients, pooled, are dealt again by
    :func:`~medgan_core.data.partition.dirichlet_record_groups` (the site weights then only
    set the number of sites).

    Raises:
        ConfigError: see :func:`~medgan_core.data.partition.dirichlet_patient_partition`.
        ValueError: ``alpha`` without ``labels``.
    """
    total = sum(weights)
    groups = split_by_patient(patient_ids, fractions=[w / total for w in weights], seed=seed)
    if alpha is None:
        return groups
    if labels is None:
        raise ValueError("a Dirichlet split of the patients needs the images' labels")
    sites_count = len(groups) - 1 if num_sites is None else num_sites
    pool = np.sort(np.concatenate(groups[:sites_count]))
    sites = dirichlet_record_groups([patient_ids[i] for i in pool], np.asarray(labels)[pool],
                                    num_sites=sites_count, alpha=alpha, seed=seed, min_patients=min_patients)
    return [pool[site] for site in sites] + groups[sites_count:]


@functools.lru_cache(maxsize=2)
def _xray_folder(root: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], DataReport]:
    # Simulated sites share one folder; a worker process hosting several reads it once.
    from medgan_core.data.xray import load_xray_dataset

    return load_xray_dataset(root, size=image_size)


@register_modality
class XrayModality(Modality):
    name = "xray"
    class_names = ("NORMAL", "PNEUMONIA")
    record_word = "image"
    default_unit = "patient"
    encoder_backbone = "image"
    encoder_epochs = 3  # a few epochs at the run's image size: the encoder is a small CNN
    physical_scale = 0.5  # model units [-1, 1] -> intensity [0, 1]
    sample_unit = "intensity [0, 1]"
    report_per_class = 300
    export_dir = "synthetic_dicom"
    export_format = "DICOM Secondary Capture (+ PNG previews)"
    # The bundled Kermany subset, split by patient into three equal sites and a held-out share.
    bundled_simulation = MappingProxyType({
        "data-root": str(Path(__file__).resolve().parents[2] / "data" / "xray" / "kermany"),
        "site-records": "1|1|1", "holdout-records": "1"})

    def model_kwargs(self, run: "RunConfig") -> dict[str, Any]:
        return {"image_size": run.image_size}

    def site_paths(self, data_dir: Path, records: Sequence[str] | None) -> tuple[str, ...]:
        return (str(data_dir),)

    def simulated_site(self, run: "RunConfig", partition_id: int) -> SimulatedSite:
        weights = xray_share_weights(run)
        num_sites = len(run.site_record_groups())
        share = PatientShare(weights=weights, group=partition_id, seed=run.seed, alpha=run.dirichlet_alpha,
                             min_patients=run.partition_min_patients, num_sites=num_sites)
        # The held-out group is the same for every partition: no alpha needed to find it.
        holdout = PatientShare(weights=weights, group=num_sites, seed=run.seed, num_sites=num_sites)
        return SimulatedSite(data_paths=(run.data_root,), patient_share=share,
                             audit_paths=(run.data_root,), audit_share=holdout)

    def public_split(self, run: "RunConfig") -> dict[str, Any]:
        return {"shares": list(xray_share_weights(run)), "seed": run.seed}

    def public_data(self, run: "RunConfig") -> SimulatedSite:
        if not run.public_records.strip():
            raise ConfigError("modality xray: public-records is empty; set it to the public patients' share, "
                              "e.g. public-records='1' (one more share of data-root after the hold-out's)")
        weights = xray_share_weights(run)
        num_sites = len(run.site_record_groups())
        return SimulatedSite(data_paths=(run.data_root,),
                             patient_share=PatientShare(weights=weights, group=num_sites + 1, seed=run.seed,
                                                        num_sites=num_sites))

    def pooled_simulated_site(self, run: "RunConfig") -> SimulatedSite:
        sites = [self.simulated_site(run, k) for k in range(len(run.site_record_groups()))]
        return SimulatedSite(data_paths=(run.data_root,),
                             patient_share=PooledShare(tuple(site.patient_share for site in sites)),
                             audit_paths=sites[0].audit_paths, audit_share=sites[0].audit_share)

    def load(self, data_paths: tuple[str, ...], *, image_size: int, patient_share: Any = None) -> "SiteData":
        from medgan_core.data.site_data import SiteData

        images, labels, patients, report = _xray_folder(data_paths[0], image_size)
        patients = [str(p) for p in patients]
        if patient_share is not None:
            chosen = patient_share.select(patients, np.asarray(labels))
            images, labels = images[chosen], np.asarray(labels)[chosen]
            patients = [patients[i] for i in chosen]
        samples = torch.from_numpy(images * 2.0 - 1.0).float().unsqueeze(1)  # [0,1] -> [-1,1]
        return SiteData(samples, torch.from_numpy(np.asarray(labels)).long(), self.class_names, report,
                        tuple(patients))

    def audit_holdout(self, audit_paths: tuple[str, ...], *, image_size: int,
                      audit_share: Any = None) -> tuple["SiteData", "SiteData"]:
        # One folder of held-out patients (or the simulation's hold-out share of the shared
        # folder), halved by a seeded split of whole patients: a patient's images are all
        # non-members or all reference, and both halves get about the same class mix.
        if len(audit_paths) != 1:
            raise ConfigError(f"modality xray: [audit] records must name one folder of held-out patients' images "
                              f"(NORMAL/ and PNEUMONIA/ inside), got {list(audit_paths)}")
        data = self.load(audit_paths, image_size=image_size, patient_share=audit_share)
        if data.num_patients < 2:
            raise ConfigError(f"the membership audit needs at least two held-out patients in {audit_paths[0]} "
                              f"(non-members and a disjoint reference), got {data.num_patients}; add patients")
        seed = audit_share.seed if isinstance(audit_share, PatientShare) else 0
        halves = split_by_patient(list(data.patient_ids), fractions=[0.5, 0.5], seed=seed)
        return _subset(data, halves[0]), _subset(data, halves[1])

    def simulation_data_missing(self, run: "RunConfig") -> list[str]:
        return [] if Path(run.data_root).is_dir() else [run.data_root]

    def attribution_regions(self, sample_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        # A frontal (PA/AP) film shows the patient's right lung on the image's left. The lung
        # fields are taken as the central area (rows 15-85 %, columns 10-90 %) without the
        # mediastinum (the middle 20 % of columns), halved into upper and lower zones; the
        # images are centred chest films, not segmented, so these are coarse zones.
        height, width = sample_shape[-2:]
        rows = (round(0.15 * height), round(0.5 * height), round(0.85 * height))
        cols = (round(0.1 * width), round(0.4 * width), round(0.6 * width), round(0.9 * width))
        boxes = {
            "right lung, upper": (rows[0], rows[1], cols[0], cols[1]),
            "right lung, lower": (rows[1], rows[2], cols[0], cols[1]),
            "left lung, upper": (rows[0], rows[1], cols[2], cols[3]),
            "left lung, lower": (rows[1], rows[2], cols[2], cols[3]),
            "mediastinum": (rows[0], rows[2], cols[1], cols[2]),
        }
        regions = {}
        for name, (top, bottom, left, right) in boxes.items():
            mask = np.zeros(sample_shape, dtype=bool)
            mask[..., top:bottom, left:right] = True
            regions[name] = mask
        return regions

    def export(self, samples: np.ndarray, labels: np.ndarray, out: Path, *, fs: int | None = None,
               provenance: str | None = None) -> list[Path]:
        from medgan_core.export.dicom_export import export_synthetic_images

        extra = {"provenance": provenance} if provenance else {}
        return export_synthetic_images(np.clip((samples + 1.0) / 2.0, 0.0, 1.0), labels, out, self.class_names,
                                       **extra)

    def evaluation_settings(self, **overrides: Any) -> "EvaluationSettings":
        # One classifier seed: a 2-D classifier on thousands of images costs about ten
        # times a beat classifier, and a report trains five of them per seed.
        return super().evaluation_settings(**{"classifier_seeds": (0,), **overrides})

    def read_back(self, paths: Sequence[Path], *, image_size: int) -> "LabelledSet":
        """The exported DICOM files (not the PNG previews); the class is the parent folder's name."""
        from medgan_core.data.labelled import LabelledSet
        from medgan_core.data.xray import read_xray

        dicoms = [Path(p) for p in paths if Path(p).suffix.lower() == ".dcm"]
        if not dicoms:
            raise FileNotFoundError(f"no exported DICOM file among {len(paths)} paths")
        images = np.stack([read_xray(path, size=image_size) for path in dicoms])
        labels = [self.class_names.index(path.parent.name) for path in dicoms]
        return LabelledSet(torch.from_numpy(images * 2.0 - 1.0).float().unsqueeze(1), torch.tensor(labels).long())

    def evaluation_data(self, run: "RunConfig") -> tuple[list["LabelledSet"], "LabelledSet"]:
        from medgan_core.data.labelled import LabelledSet

        images, labels, patients, _ = _xray_folder(run.data_root, run.image_size)
        patients = [str(p) for p in patients]
        every = LabelledSet(torch.from_numpy(images * 2.0 - 1.0).float().unsqueeze(1),
                            torch.from_numpy(np.asarray(labels)).long(), tuple(patients))
        num_sites = len(run.site_record_groups())
        groups = split_xray_patients(patients, weights=xray_share_weights(run), seed=run.seed,
                                     labels=np.asarray(labels), alpha=run.dirichlet_alpha,
                                     min_patients=run.partition_min_patients, num_sites=num_sites)
        return [every.take(group) for group in groups[:num_sites]], every.take(groups[num_sites])

    def plot_samples(self, real: "LabelledSet", synthetic: "LabelledSet", out_dir: Path, *, seed: int = 0,
                     real_title: str = "real (held-out patients)") -> Path:
        from medgan_core.plots import plot_image_grid

        def intensities(data: "LabelledSet") -> np.ndarray:
            return np.clip((data.samples[:, 0].numpy() + 1.0) / 2.0, 0.0, 1.0)

        return plot_image_grid(intensities(real), real.labels.numpy(), intensities(synthetic),
                               synthetic.labels.numpy(), self.class_names, out_dir / "real_vs_synthetic_xrays.png",
                               seed=seed)

def _subset(data: "SiteData", indices: np.ndarray) -> "SiteData":
    from medgan_core.data.site_data import SiteData

    chosen = torch.from_numpy(indices)
    return SiteData(data.samples[chosen], data.labels[chosen], data.class_names, data.report,
                    tuple(data.patient_ids[i] for i in indices))
