"""resource.Quantity: parse Kubernetes quantities ("100m", "1Gi", "2.5e3") into exact numbers.

The grammar, errors and rounding are upstream's ``ParseQuantity``: a number with an optional
decimal (``n u m k M G T P E``), binary (``Ki`` … ``Ei``) or exponent (``e<int64>``, kept as
its low 32 bits) suffix; non-zero values round away from zero to whole nano units; binary
quantities are capped at 2**63-1. The value is computed from the digit strings as a scaled
integer, so no step costs more than the length of the text: a decimal quantity whose
magnitude reaches 10**:data:`MAX_DIGITS` is held as exactly that (upstream keeps it exact;
nothing compares such values), and a binary quantity with more than :data:`MAX_DIGITS`
significant digits is refused as non-numeric (upstream: only the body size limits them).
"""

from __future__ import annotations

import re
from fractions import Fraction

#: Upstream's splitREString, quoted in its format error.
SPLIT_RE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT = f"quantities must match the regular expression '{SPLIT_RE}'"
ERR_NUMERIC = "unable to parse numeric part of quantity"
ERR_SUFFIX = "unable to parse quantity's suffix"
#: Decimal digits a quantity's magnitude may have before it is held at 10**MAX_DIGITS.
MAX_DIGITS = 100
SATURATED = Fraction(10**MAX_DIGITS)
_INT64_MAX = 2**63 - 1

_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
#: sign, leading zeros, integer digits, fraction, suffix (parseQuantityString's scan).
_SCAN = re.compile(r"([+-]?)(0*)([0-9]*)(?:\.([0-9]*))?([eEinumkKMGTP]*[+-]?[0-9]*)")
_EXPONENT = re.compile(r"[eE]([+-]?)0*([0-9]+)")


def _suffix(suffix: str) -> tuple[int, int] | None:
    """(base, exponent) of a suffix, as upstream's suffixer interprets it; None when bad."""
    if suffix in _DECIMAL:
        return 10, _DECIMAL[suffix]
    if suffix in _BINARY:
        return 2, _BINARY[suffix]
    m = _EXPONENT.fullmatch(suffix)
    if m is None or len(m.group(2)) > 19:
        return None
    parsed = int(m.group(2)) * (-1 if m.group(1) == "-" else 1)
    if not -(2**63) <= parsed <= _INT64_MAX:
        return None
    return 10, (parsed + 2**31) % 2**32 - 2**31  # Go's int32(parsed)


def _needs_big(base: int, exponent: int, num: str, denom: str) -> bool:
    """Whether upstream leaves its int64 fast path (and so must parse the text as a number)."""
    if base == 10:
        return len(num) + len(denom) > 18 or exponent - len(denom) < -9
    if denom:
        return True
    return 15 - len(num) - exponent * 3 // 10 - 1 < 0 or int(num) << exponent > _INT64_MAX


def _nanos(digits: str, exp10: int) -> int:
    """ceil(digits * 10**exp10 * 10**9) for a non-zero digit string without leading zeros."""
    if exp10 >= -9:
        return int(digits) * 10 ** (exp10 + 9)
    cut = -9 - exp10
    if cut >= len(digits):
        return 1
    return int(digits[:-cut]) + (1 if digits[-cut:].strip("0") else 0)


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; ValueError (upstream's message) when it is not one."""
    if isinstance(value, bool):
        raise ValueError(f"quantity must be a string or number, not {value!r}")
    text = (value if isinstance(value, str) else repr(value)).strip()
    if not text:
        raise ValueError(ERR_FORMAT)
    m = _SCAN.fullmatch(text)
    if m is None:
        raise ValueError(ERR_FORMAT)
    sign, zeros, num, denom, suffix = m.groups()
    denom = denom or ""
    interpreted = _suffix(suffix)
    if interpreted is None:
        raise ValueError(ERR_SUFFIX)
    base, exponent = interpreted
    has_digits = bool(zeros or num or denom)
    num = num or "0"
    if not has_digits and _needs_big(base, exponent, num, denom):
        raise ValueError(ERR_NUMERIC)
    digits = (num + denom).lstrip("0")
    if not digits:
        return Fraction(0)
    amount = _amount(digits, base, exponent, (exponent if base == 10 else 0) - len(denom))
    return -amount if sign == "-" else amount


def _amount(digits: str, base: int, exponent: int, exp10: int) -> Fraction:
    """The magnitude of ``digits`` (non-zero, no leading zeros) times ``10**exp10`` and, for
    a binary suffix, ``2**exponent``: rounded up to a nano, saturated as upstream does."""
    magnitude = len(digits) + exp10
    if base == 10:
        return SATURATED if magnitude > MAX_DIGITS else Fraction(_nanos(digits, exp10), 10**9)
    if magnitude > 20:
        return Fraction(_INT64_MAX)
    if magnitude < -30:  # below 2**-60 nano: rounds up to one
        return Fraction(1, 10**9)
    if len(digits) > MAX_DIGITS:
        raise ValueError(ERR_NUMERIC)
    exact = Fraction(int(digits) << exponent, 10**-exp10)
    nano = -(-exact.numerator * 10**9 // exact.denominator)
    return min(Fraction(nano, 10**9), Fraction(_INT64_MAX))
