"""Every kind of bad record is a clear error naming the file, and never stops the others."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb

from medgan_core.data.ecg import EcgConfig, load_ecg_records, read_ecg_record
from medgan_core.errors import InvalidRecordError

CONFIG = EcgConfig()
SOURCE = Path("data/ecg/mitdb")


def _copy(tmp_path: Path, record: str = "108") -> Path:
    for ext in (".hea", ".dat", ".atr"):
        shutil.copy(SOURCE / f"{record}{ext}", tmp_path / f"{record}{ext}")
        (tmp_path / f"{record}{ext}").chmod(0o644)
    return tmp_path / record


def _synthetic_record(tmp_path: Path, name: str, signal: np.ndarray, beats=True) -> Path:
    wfdb.wrsamp(name, fs=360, units=["mV"], sig_name=["MLII"], p_signal=signal[:, None], fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    if beats:
        samples = np.arange(400, len(signal) - 400, 300)
        wfdb.wrann(name, "atr", sample=samples, symbol=["N"] * len(samples), write_dir=str(tmp_path))
    return tmp_path / name


def _assert_names_file_and_fix(error: InvalidRecordError, fragment: str):
    assert fragment in error.path
    assert "Fix:" in str(error)


def test_missing_dat(tmp_path):
    record = _copy(tmp_path)
    (tmp_path / "108.dat").unlink()
    with pytest.raises(InvalidRecordError, match="missing") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "108.dat")


def test_truncated_signal(tmp_path):
    record = _copy(tmp_path)
    data = (tmp_path / "108.dat").read_bytes()
    (tmp_path / "108.dat").write_bytes(data[: len(data) // 3])
    with pytest.raises(InvalidRecordError, match="truncated|does not match") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "108.dat")


def test_header_signal_mismatch_checksum(tmp_path):
    record = _copy(tmp_path)
    header = (tmp_path / "108.hea").read_text().splitlines()
    fields = header[1].split()
    fields[6] = str((int(fields[6]) + 1234) % 32768)  # checksum field of the signal line
    header[1] = " ".join(fields)
    (tmp_path / "108.hea").write_text("\n".join(header) + "\n")
    with pytest.raises(InvalidRecordError, match="checksum") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "108.dat")


def test_header_signal_mismatch_signal_count(tmp_path):
    record = _copy(tmp_path)
    lines = (tmp_path / "108.hea").read_text().splitlines()
    first = lines[0].split()
    first[1] = "2"  # header claims two signals, the file holds one
    lines[0] = " ".join(first)
    lines.insert(2, lines[1].replace("MLII", "V1"))
    (tmp_path / "108.hea").write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidRecordError) as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "108")


def test_no_annotation_file(tmp_path):
    record = _copy(tmp_path)
    (tmp_path / "108.atr").unlink()
    with pytest.raises(InvalidRecordError, match="annotation") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "108.atr")


def test_annotations_without_beats(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    record = _synthetic_record(tmp_path, "nobeats", signal, beats=False)
    wfdb.wrann("nobeats", "atr", sample=np.array([100, 5000]), symbol=["~", "|"], write_dir=str(tmp_path))
    with pytest.raises(InvalidRecordError, match="no beat annotations") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "nobeats.atr")


def test_long_nan_runs_reject_the_record(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    signal[2000:8000] = np.nan  # 30% missing
    record = _synthetic_record(tmp_path, "gappy", signal)
    assert np.isnan(wfdb.rdrecord(str(record)).p_signal).any()
    with pytest.raises(InvalidRecordError, match="NaN") as info:
        read_ecg_record(record, CONFIG)
    _assert_names_file_and_fix(info.value, "gappy.dat")


def test_short_nan_run_drops_only_the_touching_beats(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    clean = read_ecg_record(_synthetic_record(tmp_path, "clean", signal), CONFIG)
    signal[5000:5100] = np.nan
    gappy = read_ecg_record(_synthetic_record(tmp_path, "gap", signal), CONFIG)
    assert 0 < len(clean) - len(gappy) <= 3
    assert not np.isnan(gappy.beats).any()


def test_missing_header(tmp_path):
    with pytest.raises(InvalidRecordError, match="header") as info:
        read_ecg_record(tmp_path / "nothing", CONFIG)
    _assert_names_file_and_fix(info.value, "nothing.hea")


def test_one_bad_record_never_stops_the_others(tmp_path):
    good = _copy(tmp_path, "108")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    truncated = _copy(bad_dir, "121")
    (bad_dir / "121.dat").write_bytes((bad_dir / "121.dat").read_bytes()[:1000])
    missing_atr = _copy(bad_dir, "123")
    (bad_dir / "123.atr").unlink()
    beats, report = load_ecg_records([truncated, good, missing_atr, tmp_path / "ghost"], CONFIG)
    assert report.loaded == [str(good)]
    assert report.num_skipped == 3
    assert len(beats) > 1000
    reasons = " ".join(s["reason"] for s in report.skipped)
    assert "annotation" in reasons and "header" in reasons
