"""JSON helpers: numbers are parsed as Decimal (money and energy are never float)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def loads(raw: bytes | str) -> Any:
    """Parse JSON with every non-integer number as an exact Decimal."""
    return json.loads(raw, parse_float=Decimal)


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
