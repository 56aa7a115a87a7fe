"""Tests of resource.Quantity parsing (edgek.quantity) against upstream's ParseQuantity."""

from __future__ import annotations

import re
import time
from fractions import Fraction

import pytest

from edgek.quantity import ERR_FORMAT, ERR_NUMERIC, ERR_SUFFIX, SATURATED, parse_quantity

NANO = Fraction(1, 10**9)
INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("100m", Fraction(1, 10)),
        ("1Gi", 2**30),
        ("1.5Gi", 3 * 2**29),
        ("2.5e3", 2500),
        ("1E5", 10**5),
        ("1E", 10**18),
        ("1e+5", 10**5),
        (".5", Fraction(1, 2)),
        ("5.", 5),
        ("-.5m", Fraction(-1, 2000)),
        (" 1 ", 1),
        # rounded away from zero to whole nano units
        ("0.9n", NANO),
        ("-0.9n", -NANO),
        ("1.0000000001", 1 + NANO),
        ("1e-999999999", NANO),
        # binary quantities are capped at 2**63-1
        ("8Ei", INT64_MAX),
        ("-8Ei", -INT64_MAX),
        # no digits but a suffix the int64 fast path handles: zero
        ("Ki", 0),
        ("k", 0),
        ("+", 0),
        # the exponent is kept as its low 32 bits (Go's int32 conversion)
        ("1e4294967297", 10),
        (1.5, Fraction(3, 2)),
        (10**30, 10**30),
    ],
)
def test_values(text: str | int | float, value: Fraction | int) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", ERR_FORMAT),
        ("1.5.5", ERR_FORMAT),
        ("abc", ERR_FORMAT),
        ("1e", ERR_SUFFIX),
        ("1ee5", ERR_SUFFIX),
        ("1Mi5", ERR_SUFFIX),
        ("1K", ERR_SUFFIX),
        ("1e99999999999999999999", ERR_SUFFIX),
        ("Ei", ERR_NUMERIC),
        ("e-20", ERR_NUMERIC),
    ],
)
def test_errors(text: str, error: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(error) + "$"):
        parse_quantity(text)


@pytest.mark.parametrize(
    "text", ["1e999999999", "1e2147483647", "9" * 200_000, "1" + "0" * 200_000 + "Ki"]
)
def test_cost_does_not_grow_with_the_exponent(text: str) -> None:
    start = time.perf_counter()
    value = parse_quantity(text)
    assert time.perf_counter() - start < 0.1
    assert value in (SATURATED, INT64_MAX)


def test_long_fraction_rounds_exactly() -> None:
    assert parse_quantity("0." + "0" * 100_000 + "1") == NANO
    assert parse_quantity("1." + "0" * 100_000 + "1") == 1 + NANO
    assert parse_quantity("0.000000001" + "0" * 1000) == NANO
    assert parse_quantity("0." + "0" * 100_000 + "1Ki") == NANO


def test_binary_significant_digits_are_limited() -> None:
    """A binary quantity is computed exactly, so its digits are limited (edgek's bound)."""
    assert parse_quantity("1." + "0" * 90 + "1Ki") == 1024 + NANO
    with pytest.raises(ValueError, match=f"^{ERR_NUMERIC}$"):
        parse_quantity("1." + "0" * 100_000 + "1Ki")
