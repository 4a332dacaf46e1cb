"""12-lead ECG ingestion: PhysioNet/CinC 2021 WFDB records -> multi-lead beat windows.

A record (``.hea`` + ``.mat``, 10 s at 500 Hz in the bundled data) has no beat
annotations: R peaks are detected with ``wfdb.processing.xqrs_detect`` on one lead
(``detection_lead``, II), every configured lead is resampled to ``model_fs`` and a fixed
window is cut around each R peak, exactly as :mod:`medgan_core.data.ecg` cuts MIT-BIH
beats (median-centred per lead, divided by a fixed mV scale). Samples are ``(N, C, L)``.

The label is the record's, from the SNOMED-CT codes of its header's ``# Dx:`` line; every
beat of a record inherits it (see :data:`SINUS_RHYTHM_CODES`). One record is one patient.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import wfdb
from scipy.signal import resample_poly
from wfdb import processing

from medgan_core.data.report import DataReport
from medgan_core.data.wfdb_header import header_sampling_frequency
from medgan_core.errors import ConfigError, InvalidRecordError

__all__ = [
    "ECG12_CLASS_NAMES",
    "SINUS_RHYTHM_CODES",
    "STANDARD_LEADS",
    "Ecg12Beats",
    "Ecg12Config",
    "dx_codes",
    "label_of_codes",
    "load_ecg12_records",
    "read_ecg12_record",
]

logger = logging.getLogger(__name__)

STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

#: Class 0, "sinus": every Dx code of the record is one of these sinus rhythms (no other
#: diagnosis at all). Class 1, "abnormal": any other SNOMED-CT code is present (an
#: arrhythmia, ectopy, conduction or repolarisation finding), or none of these is.
SINUS_RHYTHM_CODES: Mapping[str, str] = MappingProxyType({
    "426783006": "sinus rhythm",
    "427084000": "sinus tachycardia",
    "426177001": "sinus bradycardia",
    "427393009": "sinus arrhythmia",
})
ECG12_CLASS_NAMES: tuple[str, ...] = ("sinus", "abnormal")


@dataclass(frozen=True)
class Ecg12Config:
    """How 12-lead records become model inputs.

    Attributes:
        leads: Leads kept, in this order (the sample's channels); all must be in a record.
        detection_leads: Leads the R-peak detector tries in turn (need not be among
            ``leads``); the first whose beats pass the RR plausibility check is used.
        model_fs, window, r_offset, amplitude_scale_mv: as :class:`medgan_core.data.ecg.EcgConfig`.
        fs_range: Plausible sampling rates (Hz); a header outside it is an error.
        min_amplitude_mv: A detection lead whose 1st-99th percentile range is below this is flat.
        min_beats: A record with fewer usable beats than this is rejected.
        rr_range_s: Plausible median RR interval (s); outside it the detector failed.
    """

    leads: tuple[str, ...] = STANDARD_LEADS
    detection_leads: tuple[str, ...] = ("II", "I", "V5")
    model_fs: int = 180
    window: int = 128
    r_offset: int = 50
    amplitude_scale_mv: float = 5.0
    fs_range: tuple[float, float] = (50.0, 10_000.0)
    min_amplitude_mv: float = 0.05
    min_beats: int = 3
    rr_range_s: tuple[float, float] = (0.25, 2.5)

    def __post_init__(self) -> None:
        unknown = [lead for lead in self.leads if lead not in STANDARD_LEADS]
        if not self.leads or unknown or len(set(self.leads)) != len(self.leads):
            raise ConfigError(f"leads={self.leads}: name distinct standard leads, a subset of {STANDARD_LEADS}")
        if not 0 <= self.r_offset < self.window:
            raise ConfigError(f"r_offset={self.r_offset} must lie in [0, window={self.window})")

    @property
    def class_names(self) -> tuple[str, ...]:
        return ECG12_CLASS_NAMES

    def to_model_units(self, beats_mv: np.ndarray) -> np.ndarray:
        """Baseline-corrected mV -> model units in [-1, 1]."""
        return np.clip(beats_mv / self.amplitude_scale_mv, -1.0, 1.0).astype(np.float32)

    def to_millivolts(self, beats: np.ndarray) -> np.ndarray:
        return np.asarray(beats, dtype=np.float64) * self.amplitude_scale_mv


@dataclass
class Ecg12Beats:
    """Beats of one or more records: ``beats`` (N, C, window) float32, ``labels`` (N,),
    ``record_ids`` (N,) (one record is one patient), ``median_rr_s`` per record."""

    beats: np.ndarray
    labels: np.ndarray
    record_ids: np.ndarray
    median_rr_s: dict[str, float]

    def __len__(self) -> int:
        return len(self.labels)


def _bad(path: Path, reason: str, fix: str) -> InvalidRecordError:
    return InvalidRecordError(str(path), reason, fix)


def dx_codes(comments: list[str]) -> tuple[str, ...]:
    """The SNOMED-CT codes of a header's ``# Dx: a,b,c`` comment (empty when there is none)."""
    for comment in comments:
        key, _, value = comment.partition(":")
        if key.strip().lower() == "dx":
            return tuple(code.strip() for code in value.split(",") if code.strip())
    return ()


def label_of_codes(codes: tuple[str, ...]) -> int:
    """0 (sinus) when every code is a sinus rhythm of :data:`SINUS_RHYTHM_CODES`, else 1 (abnormal)."""
    return 0 if codes and all(code in SINUS_RHYTHM_CODES for code in codes) else 1


def _read_leads(record_path: Path, config: Ecg12Config
                ) -> tuple[np.ndarray, dict[str, np.ndarray], float, tuple[str, ...]]:
    """The configured leads (T, C) and the detection leads present (name -> (T,)) in mV,
    the rate and the Dx codes."""
    header_file = record_path.with_suffix(".hea")
    if not header_file.exists():
        raise _bad(header_file, "header file not found", "supply the record's .hea file")
    fs = header_sampling_frequency(header_file, fs_range=config.fs_range)
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as exc:  # wfdb raises bare Exceptions for malformed headers
        raise _bad(header_file, f"unreadable WFDB header ({exc})", "fix or re-export the header") from exc
    names = list(header.sig_name or [])
    missing = [lead for lead in config.leads if lead not in names]
    if missing:
        raise _bad(header_file, f"lead(s) {', '.join(missing)} missing; the header lists {', '.join(names) or 'none'}",
                   "re-export the record with all leads, or choose the leads it has with the run-config key `leads`")
    for file_name in sorted(set(header.file_name or [])):
        if not (record_path.parent / file_name).exists():
            raise _bad(record_path.parent / file_name, "signal file named in the header is missing",
                       f"copy {file_name} next to {header_file.name}")
    signal_file = record_path.parent / (header.file_name or [record_path.name + ".mat"])[0]
    try:
        record = wfdb.rdrecord(str(record_path), physical=False)
    except Exception as exc:
        raise _bad(signal_file, f"signal file does not match its header ({type(exc).__name__}: {exc})",
                   "re-download or re-export the complete signal file") from exc
    digital = record.d_signal
    if digital is None or digital.ndim != 2 or digital.shape[0] != header.sig_len:
        found = 0 if digital is None else digital.shape[0]
        raise _bad(signal_file, f"truncated signal: header promises {header.sig_len} samples, file holds {found}",
                   "re-download or re-export the complete signal file")
    if record.checksum is not None:
        for channel, expected in enumerate(record.checksum):
            actual = int(digital[:, channel].astype(np.int64).sum()) & 0xFFFF
            if actual != (int(expected) & 0xFFFF):
                raise _bad(signal_file, f"checksum of lead {names[channel]} is {actual}, header says "
                           f"{int(expected) & 0xFFFF}: the signal is corrupted or belongs to another header",
                           "re-download or re-export the record")
    physical = np.asarray(record.dac(expanded=False, return_res=64), np.float64)
    if np.isnan(physical).any():
        raise _bad(signal_file, "the signal has missing samples (NaN)", "exclude the record or repair the gaps")
    leads = physical[:, [names.index(lead) for lead in config.leads]]
    detection = {lead: physical[:, names.index(lead)] for lead in config.detection_leads if lead in names}
    return leads, detection, fs, dx_codes(list(header.comments or []))


def _resample(signal: np.ndarray, source_fs: float, target_fs: int) -> np.ndarray:
    """(T, C) at ``source_fs`` -> (T', C) at ``target_fs``."""
    if source_fs == target_fs:
        return signal
    ratio = Fraction(target_fs).limit_denominator(1000) / Fraction(source_fs).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)


def detect_r_peaks(lead_mv: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices of one lead (mV) with ``wfdb.processing.xqrs_detect``."""
    peaks = processing.xqrs_detect(lead_mv, fs=fs, verbose=False)
    return np.asarray(peaks, dtype=np.int64)


def _plausible_peaks(lead_mv: np.ndarray, fs: float, config: Ecg12Config) -> tuple[np.ndarray, str]:
    """R peaks of one lead, and why they are implausible ("" when they are plausible)."""
    spread = float(np.percentile(lead_mv, 99) - np.percentile(lead_mv, 1))
    if spread < config.min_amplitude_mv:
        return np.zeros(0, np.int64), f"flat line ({spread:.3f} mV)"
    peaks = detect_r_peaks(lead_mv, fs)
    rr = np.diff(peaks) / fs
    median_rr = float(np.median(rr)) if len(rr) else math.nan
    low, high = config.rr_range_s
    if len(peaks) < config.min_beats or not low <= median_rr <= high:
        return peaks, (f"{len(peaks)} beats detected, median RR {median_rr:.2f} s (plausible: {low:g}-{high:g} s, "
                       f">= {config.min_beats} beats)")
    return peaks, ""


def _annotated_peaks(record_path: Path) -> np.ndarray | None:
    """The beat positions of the record's ``.atr`` file (what an export writes), if it has one."""
    if not record_path.with_suffix(".atr").exists():
        return None
    try:
        return np.asarray(wfdb.rdann(str(record_path), "atr").sample, dtype=np.int64)
    except Exception as exc:
        raise _bad(record_path.with_suffix(".atr"), f"unreadable annotations ({exc})", "re-export the .atr file") from exc


def read_ecg12_record(record_path: str | Path, config: Ecg12Config, *, label: int | None = None) -> Ecg12Beats:
    """Read one multi-lead WFDB record, find its beats and cut ``(N, C, window)`` windows.

    Beats are the ``.atr`` annotations when the record has them (an export), else detected
    (:func:`detect_r_peaks`). ``label`` overrides the label of the header's Dx codes.

    Raises:
        InvalidRecordError: a missing or truncated signal file, a missing lead, no Dx
            line, or no detection lead with enough beats at a plausible RR interval; the
            message names the file, the reason and a fix.
    """
    record_path = Path(record_path)
    header_file = record_path.with_suffix(".hea")
    leads, detection, fs, codes = _read_leads(record_path, config)
    if label is None and not codes:
        raise _bad(header_file, "no SNOMED-CT diagnosis: the header has no '# Dx:' comment line",
                   "add the record's '# Dx: <codes>' line, or exclude the record")
    annotated = _annotated_peaks(record_path)
    peaks, tried = (annotated, [""]) if annotated is not None else (np.zeros(0, np.int64), [])
    for lead, signal in detection.items() if annotated is None else ():
        peaks, why = _plausible_peaks(signal, fs, config)
        if not why:
            break
        tried.append(f"lead {lead}: {why}")
    if annotated is None and len(tried) == len(detection):  # every detection lead failed, or none exists
        raise _bad(record_path, "no plausible beats: " + ("; ".join(tried) or
                   f"none of the detection leads {config.detection_leads} is in the record"),
                   "check the signal quality of the detection leads or exclude the record")
    resampled = _resample(leads, fs, config.model_fs)  # (T', C)
    starts = np.round(peaks * config.model_fs / fs).astype(np.int64) - config.r_offset
    inside = (starts >= 0) & (starts + config.window <= len(resampled))
    if inside.sum() < config.min_beats:
        raise _bad(record_path, f"only {int(inside.sum())} of {len(peaks)} detected beats lie far enough "
                   "from the record's edges for a full window", "use a longer recording")
    windows = np.stack([resampled[s:s + config.window].T for s in starts[inside]])  # (N, C, L)
    centred = windows - np.median(windows, axis=2, keepdims=True)
    label = label_of_codes(codes) if label is None else label
    return Ecg12Beats(beats=config.to_model_units(centred), labels=np.full(len(centred), label, np.int64),
                      record_ids=np.full(len(centred), record_path.name, dtype=object),
                      median_rr_s={record_path.name: float(np.median(np.diff(peaks))) / fs if len(peaks) > 1
                                   else math.nan})


def load_ecg12_records(record_paths: list[str | Path], config: Ecg12Config,
                       report: DataReport | None = None) -> tuple[Ecg12Beats, DataReport]:
    """Read many records; a bad record is logged, skipped and reported, never fatal."""
    report = report if report is not None else DataReport()
    parts = []
    for path in record_paths:
        try:
            part = read_ecg12_record(path, config)
        except InvalidRecordError as error:
            logger.warning("skipping record: %s", error)
            report.add_skipped(error)
            continue
        except Exception as exc:  # a library failure on odd data: this record only
            error = _bad(Path(path), f"unexpected error while reading the record ({type(exc).__name__}: {exc})",
                         "check the record's files with wfdb.rdrecord; if they are valid, report this error")
            logger.warning("skipping record: %s", error, exc_info=True)
            report.add_skipped(error)
            continue
        parts.append(part)
        report.add_loaded(path, [config.class_names[i] for i in part.labels])
    if not parts:
        empty = np.zeros((0, len(config.leads), config.window), np.float32)
        return Ecg12Beats(empty, np.zeros(0, np.int64), np.zeros(0, dtype=object), {}), report
    return Ecg12Beats(
        beats=np.concatenate([p.beats for p in parts]), labels=np.concatenate([p.labels for p in parts]),
        record_ids=np.concatenate([p.record_ids for p in parts]),
        median_rr_s={k: v for p in parts for k, v in p.median_rr_s.items()},
    ), report
