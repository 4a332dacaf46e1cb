"""Synthetic beats (one lead or C leads) -> WFDB records with ``.atr`` annotations, in mV at the source rate."""

from __future__ import annotations

import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import wfdb
from scipy.signal import resample_poly

__all__ = ["BeatScale", "write_synthetic_wfdb"]


class BeatScale(Protocol):
    """What the export needs of a reader's configuration (``EcgConfig``, ``Ecg12Config``)."""

    @property
    def model_fs(self) -> int: ...
    @property
    def r_offset(self) -> int: ...
    @property
    def class_names(self) -> tuple[str, ...]: ...
    def to_millivolts(self, beats: np.ndarray) -> np.ndarray: ...


def write_synthetic_wfdb(
    beats: np.ndarray, labels: np.ndarray, out_dir: str | Path, *, config: BeatScale,
    output_fs: int = 360, lead_names: Sequence[str] = ("MLII",), beat_symbol: str | None = None,
) -> list[Path]:
    """Write one record per class: the class's beats back to back, one annotation each.

    Args:
        beats: (N, L) one-lead or (N, C, L) C-lead beats in model units at ``config.model_fs``.
        labels: (N,) class indices into ``config.class_names``.
        out_dir: Destination; records are named ``synthetic_<class>``.
        output_fs: Sampling rate of the written records (the source database's rate).
        lead_names: One name per lead (C names).
        beat_symbol: The ``.atr`` symbol of every beat; default the class name (``N``, ``V``).

    Returns:
        Paths of the written records (without extension). The directory is written in a
        temporary folder and moved into place, so a crash leaves no half-written record.
    """
    beats = np.asarray(beats)
    beats = beats[:, None, :] if beats.ndim == 2 else beats  # (N, C, L)
    if beats.ndim != 3 or beats.shape[1] != len(lead_names):
        raise ValueError(f"beats {beats.shape} must be (N, L) or (N, C, L) with C = {len(lead_names)} lead names")
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    ratio = Fraction(output_fs, config.model_fs)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    written = []
    try:
        for index, name in enumerate(config.class_names):
            chosen = beats[labels == index]
            if len(chosen) == 0:
                continue
            millivolts = config.to_millivolts(chosen)
            resampled = resample_poly(millivolts, ratio.numerator, ratio.denominator, axis=2)  # (n, C, L')
            window = resampled.shape[2]
            signal = resampled.transpose(0, 2, 1).reshape(-1, len(lead_names))  # (n * L', C)
            r_offset = int(round(config.r_offset * output_fs / config.model_fs))
            samples = np.arange(len(chosen)) * window + r_offset
            record = f"synthetic_{name}"
            leads = len(lead_names)
            wfdb.wrsamp(record, fs=output_fs, units=["mV"] * leads, sig_name=list(lead_names), p_signal=signal,
                        fmt=["16"] * leads, adc_gain=[1000.0] * leads, baseline=[0] * leads,
                        write_dir=str(staging),
                        comments=["synthetic beats from a federated DP-GAN; not a real patient", f"class: {name}"])
            wfdb.wrann(record, "atr", sample=samples, symbol=[beat_symbol or name] * len(samples),
                       write_dir=str(staging), fs=output_fs)
            written.append(out_dir / record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
