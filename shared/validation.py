"""Model validation with OCPI errors, usable without FastAPI (background functions import it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import InvalidParameters


def describe_validation(err: Any, prefix: str = "") -> str:
    """One line naming each invalid field (pydantic or FastAPI validation errors)."""
    parts = []
    for e in err.errors()[:10]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "body")
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "Invalid or missing parameters: " + "; ".join(parts)


def validate(model: type[BaseModel], data: Any, prefix: str = "") -> Any:
    """Validate a parsed JSON value against a model; a violation is a 2001 naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise InvalidParameters(describe_validation(err, prefix)) from err
