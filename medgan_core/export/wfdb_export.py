"""Synthetic beats -> WFDB records with ``.atr`` annotations, in mV at the source rate."""

from __future__ import annotations

import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import wfdb
from scipy.signal import resample_poly

from medgan_core.data.ecg import EcgConfig

__all__ = ["write_synthetic_wfdb"]


def write_synthetic_wfdb(
    beats: np.ndarray, labels: np.ndarray, out_dir: str | Path, *, config: EcgConfig,
    output_fs: int = 360, lead_name: str = "MLII",
) -> list[Path]:
    """Write one record per class: the class's beats back to back, one annotation each.

    Args:
        beats: (N, L) beats in model units at ``config.model_fs``.
        labels: (N,) class indices into ``config.class_names``.
        out_dir: Destination; records are named ``synthetic_<class>``.
        output_fs: Sampling rate of the written records (the source database's rate).

    Returns:
        Paths of the written records (without extension). The directory is written in a
        temporary folder and moved into place, so a crash leaves no half-written record.
    """
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
            resampled = resample_poly(millivolts, ratio.numerator, ratio.denominator, axis=1)
            window = resampled.shape[1]
            signal = resampled.reshape(-1, 1)
            r_offset = int(round(config.r_offset * output_fs / config.model_fs))
            samples = np.arange(len(chosen)) * window + r_offset
            record = f"synthetic_{name}"
            wfdb.wrsamp(record, fs=output_fs, units=["mV"], sig_name=[lead_name], p_signal=signal,
                        fmt=["16"], adc_gain=[1000.0], baseline=[0], write_dir=str(staging),
                        comments=["synthetic beats from a federated DP-GAN; not a real patient"])
            wfdb.wrann(record, "atr", sample=samples, symbol=[name] * len(samples), write_dir=str(staging),
                       fs=output_fs)
            written.append(out_dir / record)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return written
