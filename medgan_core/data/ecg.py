"""ECG ingestion: WFDB records -> fixed windows around annotated beats, in model units.

A record is read with ``wfdb`` at whatever rate it was sampled, one lead is chosen,
the signal is resampled to one model rate, and a fixed window is cut around every beat
annotation whose symbol the label map knows. Beats are normalised by subtracting the
window's median (the isoelectric level) and dividing by a *fixed* amplitude scale in mV.
The scale is a constant of the configuration, never estimated from a site's data, so
(a) export inverts it exactly to mV and (b) no data-dependent statistic leaves a site.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import wfdb
from scipy.signal import resample_poly

from medgan_core.data.report import DataReport
from medgan_core.errors import ConfigError, InvalidRecordError

__all__ = [
    "DEFAULT_LABEL_MAP",
    "EcgBeats",
    "EcgConfig",
    "load_ecg_records",
    "read_ecg_record",
]

logger = logging.getLogger(__name__)

# Normal-like beats (normal, bundle branch blocks, escape beats) vs premature ventricular
# contractions. Other symbols (S, F, Q, rhythm and noise marks) are not beats of either
# class and are ignored.
DEFAULT_LABEL_MAP: Mapping[str, str] = MappingProxyType(
    {"N": "N", "L": "N", "R": "N", "e": "N", "j": "N", "V": "V"}
)


@dataclass(frozen=True)
class EcgConfig:
    """How records become model inputs.

    Attributes:
        model_fs: Sampling rate (Hz) every record is resampled to.
        window: Samples per beat at ``model_fs``.
        r_offset: Index of the annotated R peak inside the window.
        amplitude_scale_mv: Fixed mV scale; a beat in model units is (mV - median) / scale.
        label_map: Annotation symbol -> class name.
        class_names: Class order; the label of a beat is its index here.
        leads: Preferred lead names, first found wins; otherwise channel 0 is used.
        max_nan_fraction: Records with more missing samples than this are rejected;
            below it, only the beats whose window touches a gap are dropped.
    """

    model_fs: int = 180
    window: int = 128
    r_offset: int = 50
    amplitude_scale_mv: float = 5.0
    label_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABEL_MAP))
    class_names: tuple[str, ...] = ("N", "V")
    leads: tuple[str, ...] = ("MLII", "II", "ECG")
    max_nan_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.r_offset < self.window:
            raise ConfigError(f"r_offset={self.r_offset} must lie in [0, window={self.window})")
        unknown = set(self.label_map.values()) - set(self.class_names)
        if unknown:
            raise ConfigError(
                f"label_map maps to {sorted(unknown)} which are not in class_names="
                f"{self.class_names}; add them to class_names or fix the map"
            )

    def __hash__(self) -> int:  # label_map is a dict; hash its items so configs can key caches
        return hash((self.model_fs, self.window, self.r_offset, self.amplitude_scale_mv,
                     tuple(sorted(self.label_map.items())), self.class_names, self.leads,
                     self.max_nan_fraction))

    def to_model_units(self, beats_mv: np.ndarray) -> np.ndarray:
        """(N, L) baseline-corrected mV -> model units in [-1, 1]."""
        return np.clip(beats_mv / self.amplitude_scale_mv, -1.0, 1.0).astype(np.float32)

    def to_millivolts(self, beats: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_model_units` (exact for beats within the clip range)."""
        return np.asarray(beats, dtype=np.float64) * self.amplitude_scale_mv


@dataclass
class EcgBeats:
    """Beats of one or more records, in model units.

    Attributes:
        beats: (N, window) float32 in [-1, 1].
        labels: (N,) int64 class indices into ``class_names``.
        record_ids: (N,) patient/record id of each beat (one record is one patient).
        class_names: Class names.
    """

    beats: np.ndarray
    labels: np.ndarray
    record_ids: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, config: EcgConfig) -> "EcgBeats":
        return cls(
            beats=np.zeros((0, config.window), np.float32),
            labels=np.zeros(0, np.int64),
            record_ids=np.zeros(0, dtype=object),
            class_names=config.class_names,
        )

    @classmethod
    def concatenate(cls, parts: list["EcgBeats"], config: EcgConfig) -> "EcgBeats":
        if not parts:
            return cls.empty(config)
        return cls(
            beats=np.concatenate([p.beats for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            record_ids=np.concatenate([p.record_ids for p in parts]),
            class_names=config.class_names,
        )

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(self.class_names)}


def _bad(path: Path, reason: str, fix: str) -> InvalidRecordError:
    return InvalidRecordError(str(path), reason, fix)


def _read_signal(record_path: Path, leads: tuple[str, ...]) -> tuple[np.ndarray, float, str]:
    """Read one lead in mV; validate the files against the header."""
    header_file = record_path.with_suffix(".hea")
    if not header_file.exists():
        raise _bad(header_file, "header file not found", "supply the record's .hea file")
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as exc:  # wfdb raises bare Exceptions for malformed headers
        raise _bad(header_file, f"unreadable WFDB header ({exc})", "fix or re-export the header") from exc
    for file_name in sorted(set(header.file_name or [])):
        data_file = record_path.parent / file_name
        if not data_file.exists():
            raise _bad(
                data_file,
                "signal file named in the header is missing",
                f"copy {file_name} next to {header_file.name}",
            )
    try:
        record = wfdb.rdrecord(str(record_path), physical=False)
    except Exception as exc:
        raise _bad(
            record_path.with_suffix(".dat"),
            f"signal file does not match its header ({type(exc).__name__}: {exc})",
            "check that the .dat file is complete and that the header's format/signal count are right",
        ) from exc
    digital = record.d_signal
    if digital is None or digital.ndim != 2 or digital.shape[0] != header.sig_len:
        found = 0 if digital is None else digital.shape[0]
        raise _bad(
            record_path.with_suffix(".dat"),
            f"truncated signal: header promises {header.sig_len} samples, file holds {found}",
            "re-download or re-export the complete .dat file",
        )
    if digital.shape[1] != header.n_sig:
        raise _bad(
            record_path.with_suffix(".dat"),
            f"header lists {header.n_sig} signals, file holds {digital.shape[1]}",
            "fix the header's signal lines",
        )
    if record.checksum is not None:
        for channel, expected in enumerate(record.checksum):
            actual = int(digital[:, channel].astype(np.int64).sum()) & 0xFFFF
            if actual != (int(expected) & 0xFFFF):
                raise _bad(
                    record_path.with_suffix(".dat"),
                    f"checksum of signal {channel} is {actual}, header says {int(expected) & 0xFFFF}: "
                    "header and signal do not belong together or the signal is corrupted",
                    "re-export the record so header and .dat match",
                )
    names = list(record.sig_name or [])
    preferred = [lead for lead in leads if lead in names]
    channel = names.index(preferred[0]) if preferred else 0
    physical = record.dac(expanded=False, return_res=64)[:, channel]  # NaN where sample invalid
    return np.asarray(physical, np.float64), float(record.fs), names[channel] if names else "0"


def _resample(signal: np.ndarray, source_fs: float, target_fs: int) -> np.ndarray:
    if source_fs == target_fs:
        return signal
    ratio = Fraction(target_fs).limit_denominator(1000) / Fraction(source_fs).limit_denominator(1000)
    # resample_poly cannot handle NaN: interpolate gaps for filtering, then restore them.
    nan_mask = np.isnan(signal)
    filled = signal.copy()
    if nan_mask.any():
        idx = np.arange(len(signal))
        filled[nan_mask] = np.interp(idx[nan_mask], idx[~nan_mask], signal[~nan_mask])
    out = resample_poly(filled, ratio.numerator, ratio.denominator)
    if nan_mask.any():
        positions = (np.flatnonzero(nan_mask) * target_fs / source_fs).astype(int)
        out[np.clip(positions, 0, len(out) - 1)] = np.nan
    return out


def read_ecg_record(record_path: str | Path, config: EcgConfig) -> EcgBeats:
    """Read one WFDB record and cut labelled beat windows.

    Args:
        record_path: Record path without extension (``.../mitdb/106``).
        config: Windowing, resampling and labelling settings.

    Returns:
        The record's beats in model units; beats near the record edges or touching a
        gap are dropped.

    Raises:
        InvalidRecordError: missing or truncated signal, header/signal mismatch, no usable
            annotations, or too many missing samples. The message names the file and a fix.
    """
    record_path = Path(record_path)
    signal, source_fs, _lead = _read_signal(record_path, config.leads)
    nan_fraction = float(np.isnan(signal).mean())
    if nan_fraction > config.max_nan_fraction:
        raise _bad(
            record_path.with_suffix(".dat"),
            f"{nan_fraction:.0%} of samples are missing (NaN runs), above max_nan_fraction="
            f"{config.max_nan_fraction:.0%}",
            "exclude the record or repair the signal gaps",
        )
    annotation_file = record_path.with_suffix(".atr")
    if not annotation_file.exists():
        raise _bad(annotation_file, "annotation file not found", "supply the record's beat annotations (.atr)")
    try:
        annotation = wfdb.rdann(str(record_path), "atr")
    except Exception as exc:
        raise _bad(annotation_file, f"unreadable annotations ({exc})", "re-export the .atr file") from exc
    symbols = np.asarray(annotation.symbol)
    samples = np.asarray(annotation.sample, dtype=np.int64)
    known = np.isin(symbols, list(config.label_map))
    if not known.any():
        raise _bad(
            annotation_file,
            f"no beat annotations with symbols in the label map {sorted(config.label_map)}",
            "annotate the beats or extend the label map",
        )
    resampled = _resample(signal, source_fs, config.model_fs)
    centres = np.round(samples[known] * config.model_fs / source_fs).astype(np.int64)
    starts = centres - config.r_offset
    inside = (starts >= 0) & (starts + config.window <= len(resampled))
    starts, kept_symbols = starts[inside], symbols[known][inside]
    windows = np.lib.stride_tricks.sliding_window_view(resampled, config.window)[starts]
    complete = ~np.isnan(windows).any(axis=1)
    windows, kept_symbols = windows[complete], kept_symbols[complete]
    if (~complete).any():
        logger.info("%s: dropped %d beats touching signal gaps", record_path, int((~complete).sum()))
    baseline = np.median(windows, axis=1, keepdims=True)
    class_index = {name: i for i, name in enumerate(config.class_names)}
    labels = np.array([class_index[config.label_map[s]] for s in kept_symbols], dtype=np.int64)
    return EcgBeats(
        beats=config.to_model_units(windows - baseline),
        labels=labels,
        record_ids=np.full(len(labels), record_path.name, dtype=object),
        class_names=config.class_names,
    )


def load_ecg_records(
    record_paths: list[str | Path], config: EcgConfig, report: DataReport | None = None
) -> tuple[EcgBeats, DataReport]:
    """Read many records; a bad record is logged, skipped and counted, never fatal.

    Returns:
        The beats of every good record and the report of what was loaded and skipped.
    """
    report = report if report is not None else DataReport()
    parts = []
    for path in record_paths:
        try:
            beats = read_ecg_record(path, config)
        except InvalidRecordError as error:
            logger.warning("skipping record: %s", error)
            report.add_skipped(error)
            continue
        parts.append(beats)
        report.add_loaded(path, [config.class_names[i] for i in beats.labels])
    return EcgBeats.concatenate(parts, config), report


def find_records(root: str | Path) -> list[Path]:
    """All WFDB records (by header) under ``root``, sorted."""
    return sorted(p.with_suffix("") for p in Path(root).rglob("*.hea"))
