"""Typed, validated configuration values: one rule per key, checked at the boundary.

Both the coordinator's run config (``medgan_core.config.RunConfig``) and a site's TOML
(``medgan_core.site.SiteConfig``) read every value through :func:`coerce`, before any
work is done or any budget is spent. Every error is one line naming where the value came
from, the key, what was given and what is accepted. Booleans are booleans (``"false"``
in quotes is not one), numbers are finite, and each key has its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from medgan_core.errors import ConfigError

__all__ = ["Rule", "coerce", "finite_in", "positive_int", "non_negative_int", "one_of"]


@dataclass(frozen=True)
class Rule:
    """What one key accepts: a type, and optionally a check with its wording."""

    kind: type
    check: Callable[[Any], bool] | None = None
    requirement: str = ""


def finite_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    def check(v: float) -> bool:
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return math.isfinite(v) and above and below

    bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return Rule(float, check, f"a finite number in {bounds}")


def positive_int(maximum: int = 10**9) -> Rule:
    return Rule(int, lambda v: 1 <= v <= maximum, f"a whole number from 1 to {maximum:,}")


def non_negative_int(maximum: int = 10**9) -> Rule:
    return Rule(int, lambda v: 0 <= v <= maximum, f"a whole number from 0 to {maximum:,}")


def one_of(*choices: str) -> Rule:
    return Rule(str, lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


def coerce(value: Any, rule: Rule, *, where: str, key: str) -> Any:
    """``value`` as ``rule.kind``, checked; else ConfigError naming ``where`` and ``key``.

    Accepted spellings: a bool only as a bool (TOML's and Flower's unquoted true/false;
    the string "false" is refused, because a quoted word is a typo that must not decide
    whether a site trains privately); an int, or a string of digits; a float from an int,
    float or numeric string, never NaN or infinite.
    """
    converted = _convert(value, rule.kind)
    if converted is _INVALID or (rule.check is not None and not rule.check(converted)):
        wanted = rule.requirement or _KIND_WORDS[rule.kind]
        raise ConfigError(f"{where}: {key} = {value!r} is invalid; use {wanted}")
    return converted


_INVALID = object()
_KIND_WORDS = {bool: "true or false, unquoted", int: "a whole number", float: "a finite number",
               str: "a string", list: "a list of strings"}


def _convert(value: Any, kind: type) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else _INVALID
    if kind is int:
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return _INVALID
        return _INVALID
    if kind is float:
        if isinstance(value, bool):
            return _INVALID
        if not isinstance(value, (int, float, str)):
            return _INVALID
        try:
            number = float(value)
        except ValueError:
            return _INVALID
        return number if math.isfinite(number) else _INVALID
    if kind is str:
        return value if isinstance(value, str) else _INVALID
    if kind is list:
        if isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value):
            return list(value)
        return _INVALID
    raise TypeError(f"no conversion for {kind}")
