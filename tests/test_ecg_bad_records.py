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


# ------------------------------------------------------------------ header values
def _edit_header(record: Path, line: int, field: int, value: str) -> Path:
    header = record.with_suffix(".hea")
    lines = header.read_text().splitlines()
    fields = lines[line].split()
    fields[field] = value
    lines[line] = " ".join(fields)
    header.write_text("\n".join(lines) + "\n")
    return header


@pytest.mark.parametrize("fs", ["0", "36", "-360", "nan", "inf", "20000"])
def test_implausible_sampling_rate_is_rejected_naming_the_header(tmp_path, fs):
    record = _copy(tmp_path)
    _edit_header(record, 0, 2, fs)

    with pytest.raises(InvalidRecordError, match="sampling frequency") as info:
        read_ecg_record(record, CONFIG)

    _assert_names_file_and_fix(info.value, "108.hea")
    assert repr(fs) in info.value.reason or f"{float(fs):g} Hz" in info.value.reason
    assert "50..10000 Hz" in info.value.reason and "sampling frequency" in info.value.fix


def test_zero_sampling_rate_is_skipped_and_the_other_records_load(tmp_path):
    good = _copy(tmp_path, "108")
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    zero = _copy(bad_dir, "121")
    _edit_header(zero, 0, 2, "0")  # was a ZeroDivisionError that stopped the whole site

    beats, report = load_ecg_records([zero, good], CONFIG)

    assert report.loaded == [str(good)] and len(beats) > 1000
    assert report.skipped[0]["path"] == str(bad_dir / "121.hea")
    assert "sampling frequency 0 Hz" in report.skipped[0]["reason"]


@pytest.mark.parametrize("field, value, key, shown", [
    (1, "16x", "format", "'16x'"),
    (2, "abc", "adc_gain", "'abc'"),       # wfdb silently used its default gain of 200
    (2, "200.0(x)/mV", "baseline", "'x'"),
    (3, "x", "adc_resolution", "'x'"),     # wfdb raised a bare TypeError
    (4, "1.5", "adc_zero", "'1.5'"),
    (6, "q", "checksum", "'q'"),
])
def test_unparsable_header_field_names_the_line_and_the_key(tmp_path, field, value, key, shown):
    record = _copy(tmp_path)
    _edit_header(record, 1, field, value)

    with pytest.raises(InvalidRecordError) as info:
        read_ecg_record(record, CONFIG)

    _assert_names_file_and_fix(info.value, "108.hea")
    assert f"line 2 (signal 0): {key} {shown} is not" in info.value.reason
    assert f"correct the {key} field" in info.value.fix


# ------------------------------------------------------------------ signals that are no ECG
def _beats_every_second(length: int) -> np.ndarray:
    return np.arange(400, length - 400, 360)


def _record_from_digital(tmp_path: Path, name: str, digital: np.ndarray, gain: float,
                         adc_res: int, samples: np.ndarray) -> Path:
    record = wfdb.Record(record_name=name, n_sig=1, fs=360, sig_len=len(digital), file_name=[f"{name}.dat"],
                         d_signal=digital[:, None].astype(np.int64), fmt=["16"], adc_gain=[gain],
                         baseline=[0], units=["mV"], sig_name=["MLII"], adc_res=[adc_res], adc_zero=[0],
                         block_size=[0])
    record.set_d_features(do_adc=False)  # checksum and initial value of the digital signal
    record.wrsamp(write_dir=str(tmp_path))
    wfdb.wrann(name, "atr", sample=samples, symbol=["N"] * len(samples), write_dir=str(tmp_path))
    return tmp_path / name


def test_flat_line_record_is_rejected(tmp_path):
    # Lead off: only +-1 LSB of noise, yet annotated beats all along.
    noise = np.random.default_rng(0).integers(-1, 2, 36_000)
    record = _record_from_digital(tmp_path, "flat", noise, 200.0, 12, _beats_every_second(36_000))

    with pytest.raises(InvalidRecordError, match="flat line") as info:
        read_ecg_record(record, CONFIG)

    _assert_names_file_and_fix(info.value, "flat.dat")
    assert "lead" in info.value.fix


def test_saturated_record_is_rejected(tmp_path):
    # Real ECG (108) through a gain far too high for a 12-bit converter: clipped at its limits.
    real = wfdb.rdrecord(str(SOURCE / "108"), sampto=36_000).p_signal[:, 0]
    digital = np.clip(np.round((real - np.median(real)) * 8 * 1000), -2048, 2047)
    samples = wfdb.rdann(str(SOURCE / "108"), "atr", sampto=35_500).sample[1:]
    record = _record_from_digital(tmp_path, "clipped", digital, 1000.0, 12, samples)

    with pytest.raises(InvalidRecordError, match="saturated") as info:
        read_ecg_record(record, CONFIG)

    _assert_names_file_and_fix(info.value, "clipped.dat")
    assert "labelled beats touch runs" in info.value.reason
    assert "(-2.048 mV / 2.047 mV)" in info.value.reason and "lower gain" in info.value.fix


def test_a_few_clipped_beats_do_not_reject_a_real_record():
    # mitdb/116 has a few clipped R peaks (0.14% of samples): it must still load whole.
    beats = read_ecg_record("data/ecg/mitdb/116", CONFIG)
    assert len(beats) > 2400


def test_flat_beats_inside_a_good_record_are_dropped(tmp_path):
    real = wfdb.rdrecord(str(SOURCE / "108"), sampto=36_000).p_signal[:, 0]
    samples = wfdb.rdann(str(SOURCE / "108"), "atr", sampto=35_500).sample[1:]
    whole = read_ecg_record(_record_from_digital(tmp_path, "whole", np.round(real * 200), 200.0, 12,
                                                 samples), CONFIG)
    real[10_000:20_000] = np.median(real)  # 28 s of lead-off in the middle
    partly = read_ecg_record(_record_from_digital(tmp_path, "partly", np.round(real * 200), 200.0, 12,
                                                  samples), CONFIG)

    # A window spans 100 samples (at 360 Hz) before its R peak and 156 after.
    on_flat = ((samples >= 10_000 + 100) & (samples <= 20_000 - 156)).sum()
    assert on_flat > 20 and len(partly) == len(whole) - on_flat


# ------------------------------------------------------------------ records that give no beat
def test_record_without_a_usable_beat_says_why(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    record = _synthetic_record(tmp_path, "edges", signal, beats=False)
    wfdb.wrann("edges", "atr", sample=np.array([10, 19_990]), symbol=["N", "V"], write_dir=str(tmp_path))

    with pytest.raises(InvalidRecordError) as info:
        read_ecg_record(record, CONFIG)

    assert "none of its 2 labelled beats (N, V) is usable" in info.value.reason
    assert "2 too close to the start or end" in info.value.reason
    _assert_names_file_and_fix(info.value, "edges.atr")


def test_annotations_beyond_the_signal_are_named(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    record = _synthetic_record(tmp_path, "short", signal, beats=False)
    wfdb.wrann("short", "atr", sample=np.arange(30_000, 40_000, 300), symbol=["N"] * 34,
               write_dir=str(tmp_path))

    with pytest.raises(InvalidRecordError, match="34 lie beyond the end of the signal") as info:
        read_ecg_record(record, CONFIG)

    assert "belong to" in info.value.fix


def test_no_labelled_beat_lists_the_symbols_found(tmp_path):
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    record = _synthetic_record(tmp_path, "rhythm", signal, beats=False)
    wfdb.wrann("rhythm", "atr", sample=np.array([100, 5000, 9000]), symbol=["A", "A", "~"],
               write_dir=str(tmp_path))

    with pytest.raises(InvalidRecordError) as info:
        read_ecg_record(record, CONFIG)

    assert "found A x2, ~ x1" in info.value.reason and "label map" in info.value.fix


def test_empty_record_is_skipped_with_its_reason_and_others_load(tmp_path):
    good = _copy(tmp_path, "108")
    signal = np.sin(np.linspace(0, 100, 20000)) * 0.5
    empty = _synthetic_record(tmp_path, "edges", signal, beats=False)
    wfdb.wrann("edges", "atr", sample=np.array([10]), symbol=["N"], write_dir=str(tmp_path))

    beats, report = load_ecg_records([empty, good], CONFIG)

    assert report.loaded == [str(good)] and len(beats) > 1000
    assert "too close to the start or end" in report.skipped[0]["reason"]


def test_every_kind_of_bad_record_is_skipped_and_good_ones_load(tmp_path):
    good = _copy(tmp_path, "108")
    bad = tmp_path / "bad"
    bad.mkdir()
    zero_fs = _copy(bad, "121")
    _edit_header(zero_fs, 0, 2, "0")
    flat = _record_from_digital(bad, "flat", np.zeros(36_000), 200.0, 12, _beats_every_second(36_000))
    bad_res = _copy(bad, "123")
    _edit_header(bad_res, 1, 3, "x")

    beats, report = load_ecg_records([zero_fs, flat, good, bad_res], CONFIG)

    assert report.loaded == [str(good)] and len(beats) == len(read_ecg_record(good, CONFIG))
    assert [Path(s["path"]).name for s in report.skipped] == ["121.hea", "flat.dat", "123.hea"]
    assert all(s["fix"] for s in report.skipped)


def test_unexpected_reader_failure_is_one_skipped_record(tmp_path, monkeypatch):
    import medgan_core.data.ecg as ecg

    good = _copy(tmp_path, "108")
    real_resample = ecg._resample

    def broken(signal, source_fs, target_fs):
        if len(signal) == 1234:
            raise RuntimeError("boom")
        return real_resample(signal, source_fs, target_fs)

    monkeypatch.setattr(ecg, "_resample", broken)
    odd = _synthetic_record(tmp_path, "odd", np.sin(np.linspace(0, 10, 1234)) * 0.5, beats=False)
    wfdb.wrann("odd", "atr", sample=np.array([600]), symbol=["N"], write_dir=str(tmp_path))

    beats, report = load_ecg_records([odd, good], CONFIG)

    assert report.loaded == [str(good)]
    assert "RuntimeError: boom" in report.skipped[0]["reason"]


# ------------------------------------------------------------------ a site's directory
def test_empty_record_directory_names_the_directory_and_the_fix(tmp_path):
    from medgan_core.data.ecg import find_records
    from medgan_core.errors import ConfigError

    (tmp_path / "ecg").mkdir()
    with pytest.raises(ConfigError) as info:
        find_records(tmp_path / "ecg")

    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'ecg'}: no WFDB record")
    assert ".hea" in message and "[data] dir" in message
    with pytest.raises(ConfigError, match="does not exist"):
        find_records(tmp_path / "nowhere")


def test_site_check_on_an_empty_directory_names_it(tmp_path, capsys):
    from medgan_cli.main import main

    (tmp_path / "ecg").mkdir()
    toml = tmp_path / "site.toml"
    toml.write_text('[site]\nid = "site-e"\n[data]\nmodality = "ecg"\ndir = "ecg"\n'
                    '[privacy]\ntarget-epsilon = 8.0\ntarget-delta = 1e-5\nledger = "ledger.json"\n')

    try:
        main(["site", "check", "--config", str(toml)])
    except SystemExit as exit_:
        message = str(exit_)
    else:
        message = capsys.readouterr().err
    assert f"{tmp_path / 'ecg'}: no WFDB record" in message
