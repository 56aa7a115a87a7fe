"""Go's text for float64 values, as upstream messages and kubectl print them."""

from __future__ import annotations

from decimal import Decimal


def go_float(value: float, *, exponent_from: int = 21) -> str:
    """Shortest round-trip digits in Go's style: ``fmt``'s ``%v`` switches to exponent form
    below 1e-4 or from 1e21 (``exponent_from=21``); ``strconv.FormatFloat(f, 'g', -1, 64)``
    already from 1e6 (``exponent_from=6``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if str(value).startswith("-") else ""
    if value == 0:
        return sign + "0"
    t = Decimal(repr(abs(value))).as_tuple()
    assert isinstance(t.exponent, int)
    all_digits = "".join(map(str, t.digits))
    point = len(all_digits) + t.exponent  # position of the decimal point in the digits
    digits = all_digits.rstrip("0")
    exp = point - 1
    if exp < -4 or exp >= exponent_from:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"
