"""12-lead ECG beats from PhysioNet/CinC 2021 WFDB records, labelled sinus or abnormal.

Sites are institutions: in a simulation each ``|``-separated group of ``site-records`` is
a record-name prefix (``"E|JS|HR"``: Georgia, Chapman-Shaoxing, PTB-XL) and the site holds
that institution's records under ``data-root``. ``holdout-records`` is the fraction of
every institution's patients held out (``"0.2"``), drawn with the run's seed: the held-out
set mixes all institutions and no site trains on it. One record is one patient. With
``partition='dirichlet'`` the institutions' site records are pooled and dealt again by class
(Dir(``partition-alpha``), :mod:`medgan_core.data.partition`); the hold-out is unchanged.

Samples are ``(N, C, 128)`` beats at 180 Hz in units of 5 mV, ``C`` = the run-config key
``leads`` (space-separated, ``""`` = all 12). Labels come from the record's SNOMED-CT codes
(:data:`medgan_core.data.ecg12.SINUS_RHYTHM_CODES`); every beat inherits its record's.

Privacy unit: the default is ``record`` = one beat. A record's 8-20 beats are one patient,
so a beat-level epsilon bounds what is learnt about one beat, not about the patient; with
about 15 patients per site, patient-level DP needs noise far above the signal (see
``benchmarks/patient_dp_feasibility.py`` and ``medgan site check``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from medgan_core.data.ecg12 import (ECG12_CLASS_NAMES, STANDARD_LEADS, Ecg12Config, dx_codes, label_of_codes,
                                    load_ecg12_records)
from medgan_core.data.partition import check_enough_patients, dirichlet_patient_partition
from medgan_core.data.splits import split_audit_patients
from medgan_core.errors import ConfigError
from medgan_core.metrics.names import DTW_SYN_TO_REAL
from medgan_core.modalities.base import Modality, SimulatedSite, register_modality
from medgan_core.modalities.ecg import wave_regions

if TYPE_CHECKING:
    from medgan_core.config import RunConfig
    from medgan_core.data.labelled import LabelledSet
    from medgan_core.data.site_data import SiteData
    from medgan_core.evaluation.settings import EvaluationSettings

__all__ = ["Ecg12Modality", "LeadSelection", "ecg12_split", "run_leads"]

#: Sampling rate of the export: the CinC 2021 records' own.
EXPORT_FS = 500


@dataclass(frozen=True)
class LeadSelection:
    """The leads a simulated site reads (its ``patient_share``: the records are its paths)."""

    leads: tuple[str, ...] = STANDARD_LEADS

    def config(self) -> Ecg12Config:
        return Ecg12Config(leads=self.leads)


def run_leads(run: "RunConfig") -> tuple[str, ...]:
    """The run-config key ``leads`` as lead names (all 12 when empty).

    Raises:
        ConfigError: an unknown or repeated lead name.
    """
    leads = tuple(run.leads.split()) or STANDARD_LEADS
    if any(lead not in STANDARD_LEADS for lead in leads) or len(set(leads)) != len(leads):
        raise ConfigError(f"run-config: leads = {run.leads!r}; name distinct leads among {' '.join(STANDARD_LEADS)}")
    return leads


def ecg12_split(run: "RunConfig") -> tuple[list[list[str]], list[str]]:
    """Each site's records (one institution each) and the held-out records, as names under ``data-root``.

    Raises:
        ConfigError: ``holdout-records`` is not a fraction in (0, 1), an institution
            prefix matches fewer than two records, or ``partition='dirichlet'`` cannot fill
            every site (:func:`~medgan_core.data.partition.dirichlet_patient_partition`).
    """
    try:
        fraction = float(run.holdout_records.strip())
    except ValueError:
        fraction = math.nan
    if not 0 < fraction < 1:
        raise ConfigError(f"modality ecg12: holdout-records = {run.holdout_records!r} must be the held-out fraction "
                          "of each institution's patients, e.g. '0.2'")
    root = Path(run.data_root)
    names = sorted(p.stem for p in root.glob("*.hea"))
    sites, holdout = [], []
    for index, group in enumerate(run.site_record_groups()):
        records = [n for n in names if any(n.startswith(prefix) and n[len(prefix):].isdigit() for prefix in group)]
        if len(records) < 2:
            raise ConfigError(f"modality ecg12: site {index} ({' '.join(group)}) matches {len(records)} records in "
                              f"{root}; each '|' group of site-records names an institution's record prefix, "
                              "e.g. 'E|JS|HR'")
        held = max(1, round(fraction * len(records)))
        chosen = set(np.random.default_rng([run.seed, index]).choice(len(records), held, replace=False).tolist())
        holdout += [r for i, r in enumerate(records) if i in chosen]
        sites.append([r for i, r in enumerate(records) if i not in chosen])
    if run.dirichlet_alpha is not None:
        sites = _dirichlet_sites(root, sites, alpha=run.dirichlet_alpha, seed=run.seed,
                                 min_patients=run.partition_min_patients)
    return sites, holdout


def _dirichlet_sites(root: Path, sites: list[list[str]], *, alpha: float, seed: int,
                     min_patients: int) -> list[list[str]]:
    # The record's class is its header's (label_of_codes), so no signal is read to split.
    import wfdb

    pool = sorted(r for site in sites for r in site)
    check_enough_patients(len(pool), num_sites=len(sites), min_patients=min_patients)
    labels = {r: label_of_codes(dx_codes(list(wfdb.rdheader(str(root / r)).comments or []))) for r in pool}
    return dirichlet_patient_partition(labels, num_sites=len(sites), alpha=alpha, seed=seed,
                                       min_patients=min_patients)


@register_modality
class Ecg12Modality(Modality):
    name = "ecg12"
    class_names = ECG12_CLASS_NAMES
    record_word = "beat"
    # ~15 patients per site: patient-level DP cannot reach a useful epsilon (module docstring).
    default_unit = "record"
    encoder_backbone = "signal"
    physical_scale = Ecg12Config().amplitude_scale_mv
    sample_unit = "mV"
    report_per_class = 200
    export_dir = "synthetic_wfdb"
    export_format = f"WFDB, 12 leads (mV, {EXPORT_FS} Hz, `.atr` beat positions)"
    round_metric = DTW_SYN_TO_REAL

    def model_kwargs(self, run: "RunConfig") -> dict[str, Any]:
        return {"channels": len(run_leads(run))}

    def site_paths(self, data_dir: Path, records: Sequence[str] | None) -> tuple[str, ...]:
        if records:
            return tuple(str(data_dir / r) for r in records)
        return tuple(str(p.with_suffix("")) for p in sorted(data_dir.glob("*.hea")))

    def simulated_site(self, run: "RunConfig", partition_id: int) -> SimulatedSite:
        sites, holdout = ecg12_split(run)
        leads = LeadSelection(run_leads(run))
        return SimulatedSite(data_paths=tuple(str(p) for p in run.record_paths(sites[partition_id])),
                             patient_share=leads, audit_paths=tuple(str(p) for p in run.record_paths(holdout)),
                             audit_share=leads)

    def load(self, data_paths: tuple[str, ...], *, image_size: int, patient_share: Any = None) -> "SiteData":
        from medgan_core.data.site_data import SiteData

        config = (patient_share or LeadSelection()).config()
        beats, report = load_ecg12_records(list(data_paths), config)
        return SiteData(torch.from_numpy(beats.beats), torch.from_numpy(beats.labels), self.class_names, report,
                        tuple(str(r) for r in beats.record_ids))  # samples (N, C, L)

    def audit_holdout(self, audit_paths: tuple[str, ...], *, image_size: int,
                      audit_share: Any = None) -> tuple["SiteData", "SiteData"]:
        non_members, reference = split_audit_patients(audit_paths)  # one record is one patient
        return (self.load(tuple(non_members), image_size=image_size, patient_share=audit_share),
                self.load(tuple(reference), image_size=image_size, patient_share=audit_share))

    def simulation_data_missing(self, run: "RunConfig") -> list[str]:
        sites, holdout = ecg12_split(run)
        records = [r for site in sites for r in site] + holdout
        return [str(p) for p in run.record_paths(records) if not Path(f"{p}.hea").exists()]

    def attribution_regions(self, sample_shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        # Beats are cut as MIT-BIH beats are (R peak at r_offset, model_fs): the same windows on every lead.
        config = Ecg12Config()
        return wave_regions(sample_shape, r_offset=config.r_offset, model_fs=config.model_fs)

    def export(self, samples: np.ndarray, labels: np.ndarray, out: Path, *, fs: int | None = None,
               provenance: str | None = None) -> list[Path]:
        from medgan_core.export.wfdb_export import write_synthetic_wfdb

        leads = STANDARD_LEADS if samples.shape[1] == len(STANDARD_LEADS) else tuple(f"lead{i}" for i in
                                                                                      range(samples.shape[1]))
        # "Q" (unclassified beat): the class is the record's, in its name and header comment.
        return write_synthetic_wfdb(samples, labels, out, config=Ecg12Config(), output_fs=fs or EXPORT_FS,
                                    lead_names=leads, beat_symbol="Q")

    def read_back(self, paths: Sequence[Path], *, image_size: int) -> "LabelledSet":
        """The exported records through the 12-lead reader (beats at their ``.atr`` positions);
        the class is the record name's (``synthetic_<class>``)."""
        from medgan_core.data.ecg12 import read_ecg12_record
        from medgan_core.data.labelled import LabelledSet

        parts = []
        for path in map(Path, paths):
            label = self.class_names.index(path.name.removeprefix("synthetic_"))
            leads = tuple(wfdb_lead_names(path))
            config = replace(Ecg12Config(), leads=leads) if set(leads) <= set(STANDARD_LEADS) else Ecg12Config()
            beats = read_ecg12_record(path, config, label=label)
            parts.append(LabelledSet(torch.from_numpy(beats.beats), torch.from_numpy(beats.labels)))
        return LabelledSet.concat(parts)

    def evaluation_data(self, run: "RunConfig") -> tuple[list["LabelledSet"], "LabelledSet"]:
        sites, holdout = ecg12_split(run)
        share = LeadSelection(run_leads(run))
        return ([self._labelled(run.record_paths(site), share) for site in sites],
                self._labelled(run.record_paths(holdout), share))

    def _labelled(self, paths: Sequence[Path], share: LeadSelection) -> "LabelledSet":
        from medgan_core.data.labelled import LabelledSet

        data = self.load(tuple(str(p) for p in paths), image_size=0, patient_share=share)
        if not len(data.labels):
            raise ValueError(f"no readable beats in records {[Path(p).name for p in paths]}")
        return LabelledSet(data.samples, data.labels, data.patient_ids)

    def evaluation_settings(self, **overrides: Any) -> "EvaluationSettings":
        return super().evaluation_settings(**{"dtw_radius": max(1, Ecg12Config().window // 10), **overrides})

    def sample_metrics(self, candidate: "LabelledSet", real: "LabelledSet", *, settings: "EvaluationSettings",
                       seed: int) -> dict[str, float]:
        from medgan_core.metrics.dtw import dtw_metrics

        scores = super().sample_metrics(candidate, real, settings=settings, seed=seed)
        # Per-lead DTW averaged over the leads, on subsets: it is O(N M L r C).
        syn = candidate.subsample(settings.dtw_samples, seed=seed).samples
        ref = real.subsample(2 * settings.dtw_samples, seed=seed + 1).samples
        scores.update(dtw_metrics(syn, ref, radius=settings.dtw_radius, scale=settings.physical_scale))
        return scores

    def plot_samples(self, real: "LabelledSet", synthetic: "LabelledSet", out_dir: Path, *, seed: int = 0,
                     real_title: str = "real (held-out patients)") -> Path:
        from medgan_core.plots import plot_lead_means

        config = Ecg12Config()
        leads = STANDARD_LEADS if real.samples.shape[1] == len(STANDARD_LEADS) else tuple(
            f"lead {i}" for i in range(real.samples.shape[1]))
        return plot_lead_means(real.samples.numpy(), real.labels.numpy(), synthetic.samples.numpy(),
                               synthetic.labels.numpy(), self.class_names, leads, out_dir / "real_vs_synthetic_leads.png",
                               fs=config.model_fs, to_mv=config.amplitude_scale_mv)


def wfdb_lead_names(record_path: Path) -> list[str]:
    """The signal names of a WFDB record's header."""
    import wfdb

    return list(wfdb.rdheader(str(record_path)).sig_name or [])
