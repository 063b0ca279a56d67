"""Tariffs module (mod_tariffs.asciidoc): CPO-owned, flat objects with receiver GET/PUT/DELETE."""

from __future__ import annotations

from typing import Any

from shared.models.v221.tariffs import Tariff
from shared.services import objects
from shared.services.objects import ObjectKind

KIND = ObjectKind("tariffs", Tariff, "id", "CPO")


def list_own(store: Any, params: Any) -> tuple[list[dict[str, Any]], Any]:
    page = objects.list_own(store, KIND, params)
    return [o.body for o in page.items], page
