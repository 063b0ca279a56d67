"""JSON helpers: numbers are parsed as Decimal (money and energy are never float)."""

from __future__ import annotations

import decimal
import json
from decimal import Decimal
from typing import Any

# DynamoDB's number type (the context boto3 serialises with): 38 significant digits, magnitudes
# 1E-130 to 9.99...E+125. A model writes an integral Number as an int (1E+40 -> 41 digits), so the
# largest magnitude we can store is below 1E+38. A number outside that is refused when parsed.
_SMALLEST, _LARGEST = Decimal("1E-130"), Decimal("1E+38")
_STORABLE = decimal.Context(
    Emin=-128,
    Emax=126,
    prec=38,
    traps=[decimal.Clamped, decimal.Overflow, decimal.Inexact, decimal.Rounded, decimal.Underflow],
)


class NumberOutOfRange(ValueError):
    """A JSON number with more than 38 significant digits or a magnitude outside 1E-130..1E+38."""


def _storable(text: str) -> Decimal:
    try:
        value = _STORABLE.create_decimal(text)
    except decimal.DecimalException:
        value = None
    if value is None or (value and not _SMALLEST <= abs(value) < _LARGEST):
        raise NumberOutOfRange(f"Number out of range (38 digits, 1E-130 to 1E+38): {text[:40]}")
    return value


def _int(text: str) -> int:
    _storable(text)
    return int(text)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str) -> Any:
    """Parse JSON with every non-integer number as an exact Decimal. NaN and Infinity (not JSON)
    and numbers DynamoDB cannot hold raise ValueError (NumberOutOfRange for the latter)."""
    return json.loads(raw, parse_float=_storable, parse_int=_int, parse_constant=_constant)


def _default(o: Any) -> Any:
    if isinstance(o, Decimal):
        # JSON has one number type; integral Decimals stay integers, others become the shortest
        # float repr, which is exact for the <= 15 significant digits OCPI numbers carry.
        return int(o) if o == o.to_integral_value() and abs(o) < 10**15 else float(o)
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")


def dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"), ensure_ascii=False)


def to_decimal_tree(obj: Any) -> Any:
    """Turn floats anywhere in a JSON-like tree into Decimal (DynamoDB rejects floats)."""
    if isinstance(obj, float):
        return Decimal(repr(obj))
    if isinstance(obj, dict):
        return {k: to_decimal_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_decimal_tree(v) for v in obj]
    return obj


def from_dynamo_tree(obj: Any) -> Any:
    """Turn DynamoDB's Decimals back into JSON-friendly values (int where integral)."""
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else obj
    if isinstance(obj, dict):
        return {k: from_dynamo_tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_dynamo_tree(v) for v in obj]
    return obj
