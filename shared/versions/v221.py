"""OCPI 2.2.1: the canonical form itself. In: a copy. Out: the canonical object without what only
newer versions carry (shared/versions/v230.py `strip_for_221`), so a 2.2.1 partner gets 2.2.1."""

from __future__ import annotations

import copy
from typing import Any

from shared.versions import Context


def to_canonical(kind: str, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
    return copy.deepcopy(obj)


def from_canonical(kind: str, obj: dict[str, Any], ctx: Context) -> dict[str, Any]:
    from shared.versions.v230 import sendable_to_221, strip_for_221

    if not sendable_to_221(kind, obj):  # e.g. an EMAID token: 2.2.1 partners never get it
        raise ValueError(f"OCPI 2.2.1 cannot carry this {kind}")
    return strip_for_221(kind, obj)
