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
import math
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import numpy as np
import wfdb
from scipy.signal import resample_poly

from medgan_core.data.report import DataReport
from medgan_core.data.wfdb_header import header_sampling_frequency
from medgan_core.errors import ConfigError, DataFolderError, InvalidRecordError

__all__ = [
    "DEFAULT_LABEL_MAP",
    "EcgBeats",
    "EcgConfig",
    "find_records",
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

# A run this long at the signal's minimum or maximum is clipping: a sharp R peak stays on
# its top sample for about 2 ms, an amplifier or ADC at its limit for as long as it lasts.
_CLIP_RUN_S = 0.010
_CLIP_STEP_LSB = 4


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
        fs_range: Plausible ECG sampling rates (Hz); a header outside it is an error.
        min_amplitude_mv: Flat-line threshold: a record whose 1st-99th percentile range,
            or a beat whose peak-to-peak amplitude, is below this carries no ECG (lead off).
        max_clipped_fraction: Records in which more labelled beats than this fraction touch
            a run at the signal's minimum or maximum (amplifier or ADC saturation) are
            rejected. Below it the beats are kept: a few clipped R peaks (mitdb/116 has
            some) leave the rest of the window intact.
    """

    model_fs: int = 180
    window: int = 128
    r_offset: int = 50
    amplitude_scale_mv: float = 5.0
    label_map: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABEL_MAP))
    class_names: tuple[str, ...] = ("N", "V")
    leads: tuple[str, ...] = ("MLII", "II", "ECG")
    max_nan_fraction: float = 0.1
    fs_range: tuple[float, float] = (50.0, 10_000.0)
    min_amplitude_mv: float = 0.05
    max_clipped_fraction: float = 0.1

    def __post_init__(self) -> None:
        low, high = self.fs_range
        if not 0 < low < high < math.inf:
            raise ConfigError(f"fs_range={self.fs_range} must be (low, high) with 0 < low < high")
        if not 0 < self.max_clipped_fraction <= 1 or self.min_amplitude_mv < 0:
            raise ConfigError(f"max_clipped_fraction={self.max_clipped_fraction} must lie in (0, 1] and "
                              f"min_amplitude_mv={self.min_amplitude_mv} must be >= 0")
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
                     self.max_nan_fraction, self.fs_range, self.min_amplitude_mv, self.max_clipped_fraction))

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


def _read_signal(record_path: Path, config: EcgConfig) -> tuple[np.ndarray, float, str]:
    """Read one lead in mV; validate the header's values and the files against the header."""
    header_file = record_path.with_suffix(".hea")
    if not header_file.exists():
        raise _bad(header_file, "header file not found", "supply the record's .hea file")
    fs = header_sampling_frequency(header_file, fs_range=config.fs_range)
    try:
        header = wfdb.rdheader(str(record_path))
    except Exception as exc:  # wfdb raises bare Exceptions for malformed headers
        raise _bad(header_file, f"unreadable WFDB header ({exc})", "fix or re-export the header") from exc
    if not math.isclose(float(header.fs), fs):
        raise _bad(header_file, f"the WFDB reader reads the sampling frequency as {header.fs} Hz, the "
                   f"header says {fs:g} Hz", "write the sampling frequency as a plain decimal number")
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
    preferred = [lead for lead in config.leads if lead in names]
    channel = names.index(preferred[0]) if preferred else 0
    physical = record.dac(expanded=False, return_res=64)[:, channel]  # NaN where sample invalid
    return np.asarray(physical, np.float64), fs, names[channel] if names else "0"


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


def _clipped_mask(signal: np.ndarray, fs: float) -> tuple[np.ndarray, float, float]:
    """Samples the amplifier or ADC clipped: runs at the signal's minimum or maximum.

    A run counts when it lasts at least ``_CLIP_RUN_S`` and the signal jumps onto or off
    it by more than ``_CLIP_STEP_LSB`` quantisation steps: a clipped QRS arrives at the
    limit steeply, whereas the smooth top of a slow wave reaches its maximum one step at a
    time and may rest there just as long.

    Returns:
        The mask and the two limits (mV). NaN samples are never part of a run.
    """
    valid = signal[~np.isnan(signal)]
    low, high = float(valid.min()), float(valid.max())
    steps = np.abs(np.diff(valid))
    lsb = float(steps[steps > 0].min()) if (steps > 0).any() else 0.0
    min_run = max(2, int(round(_CLIP_RUN_S * fs)))
    padded = np.r_[np.nan, signal, np.nan]
    delta = np.zeros(len(signal) + 1, np.int64)
    for rail in (low, high):
        edges = np.flatnonzero(np.diff(np.r_[0, (signal == rail).astype(np.int8), 0]))
        starts, ends = edges[::2], edges[1::2]
        # padded[i] is signal[i - 1]: the sample before a run and the one after it.
        jump = np.fmax(np.abs(padded[starts] - rail), np.abs(padded[ends + 1] - rail))
        clipped = (ends - starts >= min_run) & (jump > _CLIP_STEP_LSB * lsb)
        np.add.at(delta, starts[clipped], 1)
        np.add.at(delta, ends[clipped], -1)
    return np.cumsum(delta[:-1]) > 0, low, high


def _check_signal(record_path: Path, signal: np.ndarray, lead: str, config: EcgConfig) -> None:
    """Reject a record with too many gaps or a flat line."""
    data_file = record_path.with_suffix(".dat")
    nan_fraction = float(np.isnan(signal).mean())
    if nan_fraction > config.max_nan_fraction:
        raise _bad(
            data_file,
            f"{nan_fraction:.0%} of samples are missing (NaN runs), above max_nan_fraction="
            f"{config.max_nan_fraction:.0%}",
            "exclude the record or repair the signal gaps",
        )
    spread = float(np.nanpercentile(signal, 99) - np.nanpercentile(signal, 1))
    if spread < config.min_amplitude_mv:
        raise _bad(
            data_file,
            f"flat line: lead {lead} varies by {spread:.3f} mV (1st to 99th percentile) over the whole "
            f"record, below min_amplitude_mv={config.min_amplitude_mv:g}; no ECG was recorded",
            "exclude the record, or check the lead (disconnected electrode) and choose one that "
            "carries the ECG with EcgConfig.leads",
        )


def _check_saturation(record_path: Path, signal: np.ndarray, fs: float, lead: str, samples: np.ndarray,
                      config: EcgConfig) -> None:
    """Reject a record in which too many beats touch a clipped run (see ``max_clipped_fraction``)."""
    clipped, low, high = _clipped_mask(signal, fs)
    if not clipped.any():
        return
    before = int(np.ceil(config.r_offset * fs / config.model_fs))
    after = int(np.ceil((config.window - config.r_offset) * fs / config.model_fs))
    counts = np.r_[0, np.cumsum(clipped)]
    first = np.clip(samples - before, 0, len(signal))
    last = np.clip(samples + after, 0, len(signal))
    touched = float(((counts[last] - counts[first]) > 0).mean())
    if touched > config.max_clipped_fraction:
        raise _bad(
            record_path.with_suffix(".dat"),
            f"saturated: {touched:.0%} of its {len(samples)} labelled beats touch runs of "
            f"{_CLIP_RUN_S * 1000:.0f} ms or more at the limits of lead {lead} ({low:.3f} mV / {high:.3f} mV), "
            f"above max_clipped_fraction={config.max_clipped_fraction:.0%}; the amplifier or ADC clipped the ECG",
            "exclude the record, or re-acquire or re-export it with a lower gain (larger input range)",
        )


def _labelled_annotations(record_path: Path, config: EcgConfig) -> tuple[np.ndarray, np.ndarray]:
    """Symbols and sample positions of the annotations whose symbol the label map knows."""
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
        found = Counter(symbols.tolist()).most_common(10)
        listed = ", ".join(f"{symbol} x{count}" for symbol, count in found) or "no annotation at all"
        raise _bad(
            annotation_file,
            f"no beat annotations with symbols in the label map {sorted(config.label_map)}; found {listed}",
            "annotate the beats, or map the symbols that are beats to a class in the label map "
            "(EcgConfig.label_map)",
        )
    return symbols[known], samples[known]


def _no_usable_beat(record_path: Path, config: EcgConfig, symbols: np.ndarray, fs: float,
                    signal_length: int, dropped: dict[str, int]) -> InvalidRecordError:
    """Why every labelled beat of a record was dropped, cause by cause."""
    classes = [c for c in config.class_names if c in {config.label_map[s] for s in symbols}]
    before_ms = 1000 * config.r_offset / config.model_fs
    after_ms = 1000 * (config.window - config.r_offset) / config.model_fs
    causes = {
        "outside": (f"{dropped['outside']} lie beyond the end of the signal ({signal_length} samples at "
                    f"{fs:g} Hz)", "check that the .atr file and the signal belong to the same record"),
        "edge": (f"{dropped['edge']} too close to the start or end of the record (a beat needs "
                 f"{before_ms:.0f} ms of signal before and {after_ms:.0f} ms after its R peak)",
                 "use a longer recording"),
        "gap": (f"{dropped['gap']} touch missing samples (NaN)", "repair the signal gaps"),
        "flat": (f"{dropped['flat']} lie on a flat signal (peak-to-peak below {config.min_amplitude_mv:g} mV)",
                 "check the lead: it carries no ECG where the beats are annotated"),
    }
    present = [key for key in causes if dropped[key]]
    on_annotations = dropped["outside"] + dropped["edge"] >= dropped["gap"] + dropped["flat"]
    return _bad(
        record_path.with_suffix(".atr" if on_annotations else ".dat"),
        f"none of its {len(symbols)} labelled beats ({', '.join(classes)}) is usable: "
        + "; ".join(causes[key][0] for key in present),
        "; ".join(causes[key][1] for key in present),
    )


def read_ecg_record(record_path: str | Path, config: EcgConfig) -> EcgBeats:
    """Read one WFDB record and cut labelled beat windows.

    Args:
        record_path: Record path without extension (``.../mitdb/106``).
        config: Windowing, resampling, labelling and signal-quality settings.

    Returns:
        The record's beats in model units (at least one); beats near the record edges,
        touching a gap or on a flat stretch of signal are dropped.

    Raises:
        InvalidRecordError: missing or truncated signal, a header value that is not a
            number or an implausible sampling frequency, header/signal mismatch, no usable
            annotations, too many missing samples, a flat-line or saturated signal, or no
            beat left after dropping; the message names the file, the reason and a fix.
    """
    record_path = Path(record_path)
    signal, source_fs, lead = _read_signal(record_path, config)
    _check_signal(record_path, signal, lead, config)
    symbols, samples = _labelled_annotations(record_path, config)
    _check_saturation(record_path, signal, source_fs, lead, samples, config)
    resampled = _resample(signal, source_fs, config.model_fs)
    centres = np.round(samples * config.model_fs / source_fs).astype(np.int64)
    starts = centres - config.r_offset
    outside = (samples < 0) | (samples >= len(signal))
    inside = (starts >= 0) & (starts + config.window <= len(resampled)) & ~outside
    windows = np.lib.stride_tricks.sliding_window_view(resampled, config.window)[starts[inside]]
    complete = ~np.isnan(windows).any(axis=1)
    windows, kept_symbols = windows[complete], symbols[inside][complete]
    centred = windows - np.median(windows, axis=1, keepdims=True)
    flat = np.ptp(centred, axis=1) < config.min_amplitude_mv if len(centred) else np.zeros(0, bool)
    centred, kept_symbols = centred[~flat], kept_symbols[~flat]
    dropped = {"outside": int(outside.sum()), "edge": int((~inside & ~outside).sum()),
               "gap": int((~complete).sum()), "flat": int(flat.sum())}
    if len(kept_symbols) == 0:
        raise _no_usable_beat(record_path, config, symbols, source_fs, len(signal), dropped)
    if dropped["gap"] or dropped["flat"]:
        logger.info("%s: dropped %d beats touching signal gaps and %d on a flat signal",
                    record_path, dropped["gap"], dropped["flat"])
    class_index = {name: i for i, name in enumerate(config.class_names)}
    labels = np.array([class_index[config.label_map[s]] for s in kept_symbols], dtype=np.int64)
    return EcgBeats(
        beats=config.to_model_units(centred),
        labels=labels,
        record_ids=np.full(len(labels), record_path.name, dtype=object),
        class_names=config.class_names,
    )


def load_ecg_records(
    record_paths: list[str | Path], config: EcgConfig, report: DataReport | None = None
) -> tuple[EcgBeats, DataReport]:
    """Read many records; a bad record is logged, skipped and counted, never fatal.

    Returns:
        The beats of every good record and the report of what was loaded and skipped
        (each skipped record with its reason and fix).
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
        except Exception as exc:  # a reader bug or a library failure on odd data: one record only
            error = _bad(
                Path(path), f"unexpected error while reading the record ({type(exc).__name__}: {exc})",
                "check the record's files with wfdb.rdrecord/rdann; if they are valid, report this "
                "error with the record attached",
            )
            logger.warning("skipping record: %s", error, exc_info=True)
            report.add_skipped(error)
            continue
        parts.append(beats)
        report.add_loaded(path, [config.class_names[i] for i in beats.labels])
    return EcgBeats.concatenate(parts, config), report


def find_records(root: str | Path) -> list[Path]:
    """All WFDB records (by header) under ``root``, sorted.

    Raises:
        DataFolderError: ``root`` is not a directory or holds no ``.hea`` header; the
            message names the directory and what to do.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFolderError(
            root, "the ECG data directory does not exist or is not a directory",
            "point [data] dir of the site config (or data-root of the run config) at the folder "
            "that holds the WFDB records",
        )
    records = sorted(p.with_suffix("") for p in root.rglob("*.hea"))
    if not records:
        others = sorted(p.name for p in root.rglob("*") if p.is_file())
        held = f"it holds {len(others)} other files, e.g. {', '.join(others[:3])}" if others else "it is empty"
        raise DataFolderError(
            root, f"no WFDB record found (no .hea header in it or its subfolders; {held})",
            "copy each record's .hea, .dat and .atr files into it, or point [data] dir of the site "
            "config at the folder that holds them",
        )
    return records
