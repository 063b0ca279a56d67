"""OCPI 2.2.1: the canonical form itself. In: a copy. Out: the canonical object without what only
newer versions carry (shared/versions/v230.py `strip_for_221`), so a 2.2.1 partner gets 2.2.1."""

from __future__ import annotations

import copy
from typing import Any

from shared.versions import Context


def to_canonical(kind: str, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return copy.deepcopy(obj)


def from_canonical(kind: str, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
    try:
        from shared.versions.v230 import strip_for_221
    except ImportError:  # pragma: no cover - before 2.3.0 support exists
        return copy.deepcopy(obj)
    return strip_for_221(kind, obj)
