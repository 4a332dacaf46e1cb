"""Label-skewed simulated sites: each class's patients spread over the sites by Dir(alpha).

Dirichlet label skew after Hsu, Qi and Brown (2019), "Measuring the effects of non-identical
data distribution for federated visual classification", in the per-class form of Yurochkin
et al. (2019) and NIID-Bench (Li et al., 2022): for every class a vector of site proportions
is drawn from a symmetric Dirichlet(alpha) and that class's patients are dealt to the sites
in those proportions, so sites differ in class mix and in size. Large alpha (100) gives
near-identical class mixes at every site; small alpha (0.1) gives sites that hold mostly
one class.

Two rules keep the split honest for medical data:

* **Whole patients.** The unit dealt out is a patient, never an image or a beat, so no
  patient is on two sites. A patient whose records have several classes (MIT-BIH ECG: N
  and V beats) counts under one label, :func:`patient_labels`: the class of most of its
  records, a tie going to the class that is rarest over all records.
* **No empty sites.** A draw that leaves a site with fewer than ``min_patients`` patients is
  rejected and redrawn (as NIID-Bench does; it slightly tempers the skew of very small
  alpha); when the patients cannot fill every site, or no draw of ``MAX_DRAWS`` does,
  :class:`~medgan_core.errors.ConfigError` names ``partition`` / ``partition-alpha`` and
  the fix instead of producing a site without data. The minimum is the run-config key
  ``partition-min-patients`` (default 10); a site that trains with patient-level DP needs
  more than ``patients-per-step`` patients, so raise it for such runs.

The split is seeded by the run's public seed and uses only the labels a simulation's
researcher already holds; it decides which simulated hospital holds which patient, like the
``records`` split, and is no part of any site's private randomness.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from medgan_core.errors import ConfigError

__all__ = ["MAX_DRAWS", "MIN_PATIENTS_PER_SITE", "check_enough_patients", "dirichlet_patient_partition", "dirichlet_record_groups",
           "patient_labels"]

#: Fewest patients a simulated site may get from a Dirichlet split, unless told otherwise
#: (run-config ``partition-min-patients``).
MIN_PATIENTS_PER_SITE = 10
#: Dirichlet draws tried before a split that leaves no site under the minimum is given up.
MAX_DRAWS = 1000


def patient_labels(patient_ids: Sequence[str], labels: Sequence[int]) -> dict[str, int]:
    """One label per patient: the class of most of its records; a tie goes to the class
    with the fewest records overall (the rare class is the one a skew study is about).

    Args:
        patient_ids: One id per record.
        labels: One class index per record, aligned with ``patient_ids``.

    Returns:
        Patient id -> class index.
    """
    overall = Counter(int(label) for label in labels)
    per_patient: dict[str, Counter[int]] = {}
    for pid, label in zip(patient_ids, labels, strict=True):
        per_patient.setdefault(str(pid), Counter())[int(label)] += 1
    return {pid: max(counts, key=lambda c: (counts[c], -overall[c], -c)) for pid, counts in per_patient.items()}


def check_enough_patients(num_patients: int, *, num_sites: int, min_patients: int = MIN_PATIENTS_PER_SITE) -> None:
    """Raise unless ``num_patients`` can give every one of ``num_sites`` sites ``min_patients``.

    Raises:
        ConfigError: naming ``partition`` and the fix.
    """
    if num_patients < num_sites * min_patients:
        raise ConfigError(
            f"run-config: partition='dirichlet' needs at least {min_patients} patients per site, "
            f"{num_sites * min_patients} for {num_sites} sites, but the sites' data holds {num_patients} "
            "patients; use partition='records' (the site-records split), fewer sites, a smaller "
            "partition-min-patients, or more patients")


def dirichlet_patient_partition(labels_by_patient: Mapping[str, int], *, num_sites: int, alpha: float, seed: int,
                                min_patients: int = MIN_PATIENTS_PER_SITE) -> list[list[str]]:
    """Deal every class's patients to ``num_sites`` sites in proportions drawn from Dir(alpha).

    The result depends only on the mapping's contents, ``alpha`` and ``seed`` (not on the
    order of the mapping).

    Args:
        labels_by_patient: Patient id -> class index (see :func:`patient_labels`).
        num_sites: Sites to fill.
        alpha: Dirichlet concentration, > 0; small = skewed, large = near IID.
        seed: The run's public seed.
        min_patients: Fewest patients any site may receive.

    Returns:
        Each site's patient ids, sorted; every patient is in exactly one site.

    Raises:
        ConfigError: ``alpha`` is not a finite positive number, fewer than
            ``num_sites * min_patients`` patients, or no draw fills every site.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"run-config: partition-alpha = {alpha!r} must be a finite number > 0 "
                          "(e.g. 0.1 strongly skewed, 100 near IID)")
    if num_sites < 1:
        raise ValueError(f"num_sites={num_sites} must be >= 1")
    patients = sorted(labels_by_patient)
    check_enough_patients(len(patients), num_sites=num_sites, min_patients=min_patients)
    by_class: dict[int, list[str]] = {}
    for pid in patients:
        by_class.setdefault(int(labels_by_patient[pid]), []).append(pid)
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DRAWS):
        sites: list[list[str]] = [[] for _ in range(num_sites)]
        for label in sorted(by_class):
            members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
            proportions = rng.dirichlet(np.full(num_sites, float(alpha)))
            if not np.all(np.isfinite(proportions)):
                proportions = np.eye(num_sites)[rng.integers(num_sites)]  # alpha -> 0: one site takes the class
            cuts = np.floor(np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for site, part in zip(sites, np.split(np.asarray(members, dtype=object), cuts), strict=True):
                site.extend(str(pid) for pid in part)
        if min(len(site) for site in sites) >= min_patients:
            return [sorted(site) for site in sites]
    raise ConfigError(
        f"run-config: partition='dirichlet' with partition-alpha = {alpha} left some site under {min_patients} "
        f"patients in {MAX_DRAWS} draws ({len(patients)} patients, {num_sites} sites); use a larger "
        "partition-alpha, a smaller partition-min-patients, fewer sites, more patients, or partition='records'")


def dirichlet_record_groups(patient_ids: Sequence[str], labels: Sequence[int], *, num_sites: int, alpha: float,
                            seed: int, min_patients: int = MIN_PATIENTS_PER_SITE) -> list[np.ndarray]:
    """:func:`dirichlet_patient_partition` on records: each site's record indices.

    Args:
        patient_ids: One id per record (image, beat).
        labels: One class index per record.
        num_sites, alpha, seed, min_patients: As for :func:`dirichlet_patient_partition`.

    Returns:
        One sorted int64 index array per site, indexing ``patient_ids``.
    """
    sites = dirichlet_patient_partition(patient_labels(patient_ids, labels), num_sites=num_sites, alpha=alpha,
                                        seed=seed, min_patients=min_patients)
    site_of = {pid: k for k, site in enumerate(sites) for pid in site}
    groups: list[list[int]] = [[] for _ in range(num_sites)]
    for index, pid in enumerate(patient_ids):
        groups[site_of[str(pid)]].append(index)
    return [np.asarray(group, dtype=np.int64) for group in groups]
