"""The beat extractor against the annotations, across sampling rates."""

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from medgan_core.data.ecg import EcgConfig, load_ecg_records, read_ecg_record

ROOT = "data/ecg"
CONFIG = EcgConfig()


def _expected(record: str, fs: float, length: int, config: EcgConfig = CONFIG):
    ann = wfdb.rdann(record, "atr")
    symbols = np.array(ann.symbol)
    keep = np.isin(symbols, list(config.label_map))
    centres = np.round(ann.sample[keep] * config.model_fs / fs).astype(int)
    resampled_len = int(np.ceil(length * config.model_fs / fs))
    inside = (centres - config.r_offset >= 0) & (centres - config.r_offset + config.window <= resampled_len)
    return symbols[keep][inside]


@pytest.mark.parametrize("record", [f"{ROOT}/mitdb/106", f"{ROOT}/svdb/800", "tests/fixtures/ecg/data_8_2"])
def test_one_beat_per_annotation_with_its_label(record):
    header = wfdb.rdheader(record)
    beats = read_ecg_record(record, CONFIG)
    symbols = _expected(record, header.fs, header.sig_len)
    assert len(beats) == len(symbols)
    expected_labels = [CONFIG.class_names.index(CONFIG.label_map[s]) for s in symbols]
    assert beats.labels.tolist() == expected_labels
    assert beats.beats.shape == (len(symbols), CONFIG.window)


def test_pvc_counts_match_the_database():
    # MIT-BIH 106 has 520 PVCs and 1507 normal beats; only beats at the very edges drop.
    beats = read_ecg_record(f"{ROOT}/mitdb/106", CONFIG)
    counts = beats.class_counts()
    assert 515 <= counts["V"] <= 520
    assert 1500 <= counts["N"] <= 1507


def test_window_is_the_signal_around_the_annotation_in_millivolts():
    record = f"{ROOT}/mitdb/106"
    signal = wfdb.rdrecord(record, channel_names=["MLII"]).p_signal[:, 0]
    resampled = resample_poly(signal, 1, 2)  # 360 Hz -> 180 Hz
    ann = wfdb.rdann(record, "atr")
    beats = read_ecg_record(record, CONFIG)
    first = next(i for i, s in enumerate(ann.symbol) if s in CONFIG.label_map and ann.sample[i] // 2 > CONFIG.r_offset)
    start = int(round(ann.sample[first] / 2)) - CONFIG.r_offset
    window = resampled[start:start + CONFIG.window]
    expected_mv = window - np.median(window)
    np.testing.assert_allclose(CONFIG.to_millivolts(beats.beats[0]), np.clip(expected_mv, -5, 5), atol=1e-5)


def test_r_peak_sits_at_the_offset():
    beats = read_ecg_record(f"{ROOT}/mitdb/100", CONFIG)
    normal = beats.beats[beats.labels == 0]
    peak = np.abs(normal).argmax(axis=1)
    assert np.median(np.abs(peak - CONFIG.r_offset)) <= 3


def test_normalisation_inverts_to_millivolts():
    mv = np.linspace(-2.9, 2.9, 128)[None]
    np.testing.assert_allclose(CONFIG.to_millivolts(CONFIG.to_model_units(mv)), mv, atol=1e-6)


def test_label_map_is_configurable():
    only_v = EcgConfig(label_map={"V": "V", "N": "N"}, class_names=("N", "V"))
    with_bbb = EcgConfig()
    a = read_ecg_record(f"{ROOT}/mitdb/106", only_v)
    b = read_ecg_record(f"{ROOT}/mitdb/106", with_bbb)
    assert len(a) == len(b)  # 106 has only N and V
    with pytest.raises(ValueError, match="class_names"):
        EcgConfig(label_map={"V": "PVC"})


def test_loader_concatenates_patients_and_keeps_their_ids():
    beats, report = load_ecg_records([f"{ROOT}/mitdb/106", f"{ROOT}/mitdb/100"], CONFIG)
    assert set(beats.record_ids) == {"106", "100"}
    assert len(report.loaded) == 2 and report.num_skipped == 0
