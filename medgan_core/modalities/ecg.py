"""Single-lead ECG beats from WFDB records (.hea, .dat, .atr), labelled N or V.

One MIT-BIH record is one patient; a simulated site is a list of records
(``site-records``). Samples are ``(N, 1, 128)`` beats at 180 Hz in units of 5 mV.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from medgan_core.data.ecg import EcgConfig, find_records, load_ecg_records
from medgan_core.data.splits import split_audit_patients
from medgan_core.modalities.base import Modality, SimulatedSite

if TYPE_CHECKING:
    from medgan_core.config import RunConfig
    from medgan_core.data.site_data import SiteData

__all__ = ["EcgModality"]


class EcgModality(Modality):
    name = "ecg"
    class_names = EcgConfig().class_names
    record_word = "beat"
    default_unit = "record"  # the bundled sites have 2-3 patients: too few for patient-level DP
    encoder_backbone = "ecg"
    report_function = "simulations.report:ecg_report"
    physical_scale = EcgConfig().amplitude_scale_mv

    def site_paths(self, data_dir: Path, records: Sequence[str] | None) -> tuple[str, ...]:
        if records:
            return tuple(str(data_dir / r) for r in records)
        # find_records names the folder and the fix when it holds no record at all.
        return tuple(str(p) for p in find_records(data_dir))

    def simulated_site(self, run: "RunConfig", partition_id: int) -> SimulatedSite:
        groups = run.site_record_groups()
        return SimulatedSite(
            data_paths=tuple(str(p) for p in run.record_paths(groups[partition_id])),
            audit_paths=tuple(str(p) for p in run.record_paths(run.holdout_records.split())),
        )

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
        records = [r for group in run.site_record_groups() for r in group] + run.holdout_records.split()
        return [str(p) for p in run.record_paths(records) if not Path(f"{p}.hea").exists()]

    def export(self, samples: np.ndarray, labels: np.ndarray, out: Path, *, fs: int | None = None,
               provenance: str | None = None) -> list[Path]:
        from medgan_core.export.wfdb_export import write_synthetic_wfdb

        beats = samples[:, 0] if samples.ndim == 3 else samples  # one lead
        return write_synthetic_wfdb(beats, labels, out, config=EcgConfig(), output_fs=fs or 360)
