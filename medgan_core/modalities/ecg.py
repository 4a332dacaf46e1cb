"""Single-lead ECG beats from WFDB records (.hea, .dat, .atr), labelled N or V.

One MIT-BIH record is one patient; a simulated site is a list of records
(``site-records``), or with ``partition='dirichlet'`` a label-skewed deal of all those
records (:func:`ecg_site_groups`). Samples are ``(N, 1, 128)`` beats at 180 Hz in units of 5 mV.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from medgan_core.data.ecg import EcgConfig, find_records, load_ecg_records
from medgan_core.data.partition import check_enough_patients, dirichlet_patient_partition, patient_labels
from medgan_core.data.splits import split_audit_patients
from medgan_core.errors import ConfigError
from medgan_core.metrics.names import DTW_SYN_TO_REAL
from medgan_core.modalities.base import Modality, SimulatedSite, register_modality

if TYPE_CHECKING:
    from medgan_core.config import RunConfig
    from medgan_core.data.labelled import LabelledSet
    from medgan_core.data.site_data import SiteData
    from medgan_core.evaluation.settings import EvaluationSettings

__all__ = ["ECG_WAVE_WINDOWS_MS", "EcgModality", "ecg_labelled_set", "ecg_site_groups"]

#: Named windows of a beat in ms relative to its R peak, [start, end), for attribution summaries.
ECG_WAVE_WINDOWS_MS: dict[str, tuple[int, int]] = {
    "P wave": (-200, -80),
    "QRS": (-60, 60),
    "ST segment": (60, 120),
    "T wave": (120, 400),
}


def ecg_labelled_set(record_paths: Sequence[str | Path], patients: Sequence[str]) -> "LabelledSet":
    """ECG beats of ``record_paths`` (one record is one patient, named by ``patients``).

    Bad records are skipped and logged by the reader, as everywhere else.

    Raises:
        ValueError: No record yields a beat.
    """
    from medgan_core.data.labelled import LabelledSet

    config = EcgConfig()
    parts = []
    for path, patient in zip(record_paths, patients, strict=True):
        beats, _ = load_ecg_records([path], config)
        if len(beats):
            parts.append(LabelledSet(torch.from_numpy(beats.beats).unsqueeze(1), torch.from_numpy(beats.labels),
                                     (patient,) * len(beats)))
    if not parts:
        raise ValueError(f"no readable beats in records {list(patients)}")
    return LabelledSet.concat(parts)


def ecg_site_groups(run: "RunConfig") -> list[list[str]]:
    """Each simulated site's records: ``site-records``' groups, or with ``partition='dirichlet'``
    all of their records dealt again by class (the hold-out is unchanged).

    A record (patient) holds N and V beats; it counts under its majority class, a tie going to
    the rarer class (:func:`~medgan_core.data.partition.patient_labels`), so on MIT-BIH most
    records count as N. A record without a readable beat is left out.

    Raises:
        ConfigError: fewer patients than the Dirichlet split needs (the bundled MIT-BIH
            data, 7 site records for 3 sites at 10 per site, is too few: use
            ``partition='records'``).
    """
    groups = run.site_record_groups()
    if run.dirichlet_alpha is None:
        return groups
    pool = tuple(sorted({record for group in groups for record in group}))
    minimum = run.partition_min_patients
    check_enough_patients(len(pool), num_sites=len(groups), min_patients=minimum)  # before reading any record
    return _dirichlet_records(run.data_root, pool, len(groups), run.dirichlet_alpha, run.seed, minimum)


@functools.lru_cache(maxsize=4)
def _dirichlet_records(data_root: str, pool: tuple[str, ...], num_sites: int, alpha: float,
                       seed: int, min_patients: int) -> list[list[str]]:
    # Every simulated site asks for its records; each process reads the beats' labels once.
    labels: dict[str, int] = {}
    for record in pool:
        beats, _ = load_ecg_records([Path(data_root) / record], EcgConfig())
        if len(beats):
            labels.update(patient_labels([record] * len(beats), beats.labels.tolist()))
    return dirichlet_patient_partition(labels, num_sites=num_sites, alpha=alpha, seed=seed,
                                       min_patients=min_patients)


@register_modality
class EcgModality(Modality):
    name = "ecg"
    class_names = EcgConfig().class_names
    record_word = "beat"
    default_unit = "record"  # the bundled sites have 2-3 patients: too few for patient-level DP
    encoder_backbone = "signal"
    physical_scale = EcgConfig().amplitude_scale_mv
    sample_unit = "mV"
    report_per_class = 500
    export_dir = "synthetic_wfdb"
    export_format = "WFDB (mV, 360 Hz, `.atr` symbols N/V)"
    round_metric = DTW_SYN_TO_REAL

    def site_paths(self, data_dir: Path, records: Sequence[str] | None) -> tuple[str, ...]:
        if records:
            return tuple(str(data_dir / r) for r in records)
        # find_records names the folder and the fix when it holds no record at all.
        return tuple(str(p) for p in find_records(data_dir))

    def simulated_site(self, run: "RunConfig", partition_id: int) -> SimulatedSite:
        groups = ecg_site_groups(run)
        return SimulatedSite(
            data_paths=tuple(str(p) for p in run.record_paths(groups[partition_id])),
            audit_paths=tuple(str(p) for p in run.record_paths(run.holdout_records.split())),
        )

    def public_data(self, run: "RunConfig") -> SimulatedSite:
        public = run.public_records.split()
        if not public:
            raise ConfigError("modality ecg: public-records is empty; name the public records under data-root, "
                              "e.g. public-records='cpsc2021/data_8_2 cpsc2021/data_8_3'")
        shared = sorted(set(run.simulation_records()) & set(public))
        if shared:
            raise ConfigError(f"modality ecg: public-records names {shared}, which a site or the hold-out holds; "
                              "public pretraining must use records no site and no evaluation holds")
        return SimulatedSite(data_paths=tuple(str(p) for p in run.record_paths(public)))

    def public_split(self, run: "RunConfig") -> dict[str, Any]:
        return {"records": sorted(run.public_records.split())}

    def load(self, data_paths: tuple[str, ...], *, image_size: int, patient_share: Any = None) -> "SiteData":
        from medgan_core.data.site_data import SiteData

        beats, report = load_ecg_records(list(data_paths), EcgConfig())
        samples = torch.from_numpy(beats.beats).unsqueeze(1)  # (N, leads=1, L)
        return SiteData(samples, torch.from_numpy(beats.labels), beats.class_names, report,
                        tuple(str(r) for r in beats.record_ids))

    def audit_holdout(self, audit_paths: tuple[str, ...], *, image_size: int,
                      audit_share: Any = None) -> tuple["SiteData", "SiteData"]:
        # One record is one patient: the first half of the records are the non-members.
        non_members, reference = split_audit_patients(audit_paths)
        return (self.load(tuple(non_members), image_size=image_size),
                self.load(tuple(reference), image_size=image_size))

    def simulation_data_missing(self, run: "RunConfig") -> list[str]:
        return [str(p) for p in run.record_paths(run.simulation_records()) if not Path(f"{p}.hea").exists()]

    def attribution_regions(self, sample_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        config = EcgConfig()
        return wave_regions(sample_shape, r_offset=config.r_offset, model_fs=config.model_fs)

    def export(self, samples: np.ndarray, labels: np.ndarray, out: Path, *, fs: int | None = None,
               provenance: str | None = None) -> list[Path]:
        from medgan_core.export.wfdb_export import write_synthetic_wfdb

        beats = samples[:, 0] if samples.ndim == 3 else samples  # one lead
        return write_synthetic_wfdb(beats, labels, out, config=EcgConfig(), output_fs=fs or 360)

    def read_back(self, paths: Sequence[Path], *, image_size: int) -> "LabelledSet":
        # The project's reader (rdrecord + rdann, resampling, beat windows), as for real records.
        return ecg_labelled_set(paths, [Path(path).name for path in paths])

    def evaluation_data(self, run: "RunConfig") -> tuple[list["LabelledSet"], "LabelledSet"]:
        sites = [ecg_labelled_set(run.record_paths(list(patients)), patients) for patients in ecg_site_groups(run)]
        holdout = run.holdout_records.split()
        return sites, ecg_labelled_set(run.record_paths(holdout), holdout)

    def evaluation_settings(self, **overrides: Any) -> "EvaluationSettings":
        return super().evaluation_settings(**{"dtw_radius": max(1, EcgConfig().window // 10), **overrides})

    def sample_metrics(self, candidate: "LabelledSet", real: "LabelledSet", *, settings: "EvaluationSettings",
                       seed: int) -> dict[str, float]:
        from medgan_core.metrics.dtw import dtw_metrics

        scores = super().sample_metrics(candidate, real, settings=settings, seed=seed)
        # DTW on subsets: it is O(N M L r).
        syn = candidate.subsample(settings.dtw_samples, seed=seed).samples
        ref = real.subsample(2 * settings.dtw_samples, seed=seed + 1).samples
        scores.update(dtw_metrics(syn, ref, radius=settings.dtw_radius, scale=settings.physical_scale))
        return scores

    def plot_samples(self, real: "LabelledSet", synthetic: "LabelledSet", out_dir: Path, *, seed: int = 0,
                     real_title: str = "real (held-out patients)") -> Path:
        from medgan_core.plots import plot_beats_real_vs_synthetic

        config = EcgConfig()
        return plot_beats_real_vs_synthetic(real.samples[:, 0].numpy(), real.labels.numpy(),
                                            synthetic.samples[:, 0].numpy(), synthetic.labels.numpy(),
                                            self.class_names, out_dir / "real_vs_synthetic_beats.png",
                                            fs=config.model_fs, to_mv=config.amplitude_scale_mv, seed=seed,
                                            real_title=real_title)


def wave_regions(sample_shape: tuple[int, ...], *, r_offset: int, model_fs: float) -> dict[str, np.ndarray]:
    """Masks of the named waves (:data:`ECG_WAVE_WINDOWS_MS`) of beats whose R peak is at
    ``r_offset`` of the window, sampled at ``model_fs``; every lead gets the same windows.

    Typical adult intervals: P wave 80-120 ms ending about 80 ms before R; QRS under 120 ms,
    wide (>= 120 ms) in a ventricular beat, whose late QRS then falls in "ST segment"; T wave
    up to ~400 ms.
    """
    length = sample_shape[-1]
    regions = {}
    for name, (start_ms, end_ms) in ECG_WAVE_WINDOWS_MS.items():
        start = max(0, r_offset + round(start_ms * model_fs / 1000))
        end = min(length, r_offset + round(end_ms * model_fs / 1000))
        mask = np.zeros(sample_shape, dtype=bool)
        mask[..., start:end] = True
        regions[name] = mask
    return regions
