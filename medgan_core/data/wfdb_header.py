"""Strict reading of the numbers in a WFDB header (``.hea``), before ``wfdb`` parses it.

``wfdb.rdheader`` matches fields with regular expressions and silently falls back to
defaults when a field does not match: ``fs=-360`` or ``fs=nan`` becomes the default 250 Hz,
a gain of ``abc`` becomes 200, an ADC resolution of ``x`` ends in a bare ``TypeError``.
Training on beats resampled from a wrong rate is worse than skipping the record, so every
numeric field is checked here first and a bad one is named with its line and key.

Field layout (PhysioNet ``header(5)``)::

    record[/segments] signals [fs[/counter_freq[(base_counter)]] [samples [time [date]]]]
    file format[xframes][:skew][+offset] [gain[(baseline)][/units] [adc_resolution
        [adc_zero [initial_value [checksum [block_size [description]]]]]]]
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from medgan_core.errors import InvalidRecordError

__all__ = ["header_sampling_frequency"]

_FORMATS = frozenset({"8", "16", "24", "32", "61", "80", "160", "212", "310", "311", "508", "516", "524"})
_FORMAT_FIELD = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_FIELD = re.compile(r"^([^(/]*)(?:\(([^)]*)\))?(?:/(.*))?$")
_FS_FIELD = re.compile(r"^([^/(]*)(?:/([^(]*))?(?:\(([^)]*)\))?$")
# wfdb reads plain decimals only: "1e3" would be read as 1 Hz.
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SIGNAL_FIELDS = ("adc_resolution", "adc_zero", "initial_value", "checksum", "block_size")
_LAYOUT = ("file format[xframes][:skew][+offset] adc_gain[(baseline)][/units] adc_resolution adc_zero "
           "initial_value checksum block_size description")


def _bad_field(header: Path, where: str, key: str, value: str, expected: str) -> InvalidRecordError:
    return InvalidRecordError(
        header, f"{where}: {key} {value!r} is not {expected}",
        f"correct the {key} field ({where}; a signal line reads: {_LAYOUT}) or re-export the record",
    )


def _number(header: Path, where: str, key: str, value: str, *, integer: bool) -> float:
    if integer:
        if re.fullmatch(r"[+-]?\d+", value) is None:
            raise _bad_field(header, where, key, value, "an integer")
        return float(int(value))
    try:
        number = float(value)
    except ValueError:
        raise _bad_field(header, where, key, value, "a number") from None
    if math.isfinite(number) and _DECIMAL.match(value) is None:
        raise _bad_field(header, where, key, value, "a plain decimal number (the WFDB reader "
                         "misreads other spellings such as 1e3)")
    return number


def _check_signal_line(header: Path, line_no: int, signal: int, fields: list[str]) -> None:
    where = f"line {line_no} (signal {signal})"
    if len(fields) < 2:
        raise InvalidRecordError(header, f"{where}: signal line has no format field",
                                 f"write each signal line as: {_LAYOUT}")
    match = _FORMAT_FIELD.match(fields[1])
    if match is None or match.group(1) not in _FORMATS:
        raise _bad_field(header, where, "format", fields[1],
                         f"a WFDB storage format ({', '.join(sorted(_FORMATS, key=int))})")
    if len(fields) > 2:
        gain = _GAIN_FIELD.match(fields[2])
        assert gain is not None  # the pattern matches any string
        if not math.isfinite(_number(header, where, "adc_gain", gain.group(1), integer=False)):
            raise _bad_field(header, where, "adc_gain", gain.group(1), "a finite number")
        if gain.group(2) is not None:
            _number(header, where, "baseline", gain.group(2), integer=True)
    for index, key in enumerate(_SIGNAL_FIELDS, 3):
        if len(fields) > index:
            _number(header, where, key, fields[index], integer=True)


def header_sampling_frequency(header: Path, *, fs_range: tuple[float, float]) -> float:
    """Check every numeric field of a WFDB header and return its sampling frequency.

    Args:
        header: The ``.hea`` file.
        fs_range: Plausible sampling frequencies (Hz), inclusive.

    Returns:
        The sampling frequency in Hz (250, WFDB's default, when the header omits it).

    Raises:
        InvalidRecordError: an unreadable header, a field that is not a number, or a
            sampling frequency that is not finite or lies outside ``fs_range``; the message
            names the line and the key.
    """
    try:
        text = header.read_text(encoding="latin-1")
    except OSError as exc:
        raise InvalidRecordError(header, f"header cannot be read ({exc})",
                                 "check the file's permissions or re-copy it") from exc
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines or len(lines[0][1]) < 2:
        raise InvalidRecordError(header, "header has no record line (name and number of signals)",
                                 "re-export the record; its first line reads: record signals fs samples")
    line_no, record = lines[0]
    signals = int(_number(header, f"line {line_no}", "number of signals", record[1], integer=True))
    fs = 250.0
    if len(record) > 2:
        match = _FS_FIELD.match(record[2])
        assert match is not None  # the pattern matches any string
        fs = _number(header, f"line {line_no}", "sampling frequency", match.group(1), integer=False)
        low, high = fs_range
        if not (math.isfinite(fs) and low <= fs <= high):
            problem = "is outside" if math.isfinite(fs) else "is not a finite number, so not in"
            raise InvalidRecordError(
                header,
                f"line {line_no}: sampling frequency {fs:g} Hz {problem} the plausible ECG "
                f"range {low:g}..{high:g} Hz",
                "correct the sampling frequency (third field of the header's first line; "
                "360 for MIT-BIH) or exclude the record",
            )
    if len(record) > 3:
        _number(header, f"line {line_no}", "number of samples", record[3], integer=True)
    if "/" not in record[0]:  # a multi-segment header lists segments, not signals
        for signal, (number, fields) in enumerate(lines[1:1 + signals]):
            _check_signal_line(header, number, signal, fields)
    return fs
