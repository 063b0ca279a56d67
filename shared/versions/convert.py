"""The conversion layer's entry points (shared/versions/__init__.py explains the design).

Which versions this deployment offers comes from `OCPI_VERSIONS` (comma-separated, default
`DEFAULT_VERSIONS`); the versions endpoint, the credentials handshake and the route check use
`enabled_versions()`.
"""

from __future__ import annotations

import importlib
import os
from functools import lru_cache
from types import ModuleType
from typing import Any

from shared.versions import CANONICAL, KINDS, SUPPORTED_VERSIONS, Context

_MODULES = {"2.1.1": "shared.versions.v211", "2.2.1": "shared.versions.v221", "2.3.0": "shared.versions.v230"}


# What a deployment offers unless OCPI_VERSIONS says otherwise.
DEFAULT_VERSIONS = SUPPORTED_VERSIONS


class VersionNotSupported(ValueError):
    pass


def enabled_versions() -> tuple[str, ...]:
    raw = os.environ.get("OCPI_VERSIONS", "")
    wanted = [v.strip() for v in raw.split(",") if v.strip()] if raw else list(DEFAULT_VERSIONS)
    return tuple(v for v in SUPPORTED_VERSIONS if v in wanted)


@lru_cache(maxsize=8)
def converter(version: str) -> ModuleType:
    name = _MODULES.get(version)
    if name is None:
        raise VersionNotSupported(f"OCPI {version} is not supported")
    return importlib.import_module(name)


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}")


def inbound(version: str, kind: str, obj: Any, ctx: Context | None = None) -> Any:
    """The wire form of ``version`` -> canonical. Non-objects pass through (validation reports
    them); lists are converted item by item."""
    _check(kind)
    if version == CANONICAL and not isinstance(obj, list):
        return obj  # the canonical form itself: no copy needed, the services never mutate input
    if isinstance(obj, list):
        return [inbound(version, kind, o, ctx) for o in obj]
    if not isinstance(obj, dict):
        return obj
    return converter(version).to_canonical(kind, obj, ctx or Context())


class NotExpressible(ValueError):
    """An object the target version cannot carry (a converter refused it)."""


def outbound(version: str, kind: str, obj: Any, ctx: Context | None = None) -> Any:
    """Canonical -> the wire form of ``version``; lists item by item, leaving out the objects that
    version cannot carry (an unpublished location or a Credit CDR for 2.1.1: the list a 2.1.1
    partner gets is what 2.1.1 can express). A single such object raises NotExpressible."""
    _check(kind)
    if isinstance(obj, list):
        out = []
        for item in obj:
            try:
                out.append(outbound(version, kind, item, ctx))
            except NotExpressible:
                continue
        return out
    if not isinstance(obj, dict):
        return obj
    try:
        return converter(version).from_canonical(kind, obj, ctx or Context())
    except NotExpressible:
        raise
    except ValueError as err:  # the converter's own refusal (v211.UnsupportedInVersion)
        raise NotExpressible(str(err)) from err


def store_context(store: Any) -> Context:
    """A Context whose lookups read the given store (the assembled location, EVSEs included)."""

    def load_location(cc: str, pid: str, location_id: str) -> dict[str, Any] | None:
        from shared.services import locations
        from shared.store.base import ObjectRef

        found = store.get(ObjectRef("locations", cc, pid, location_id))
        return locations.assemble(found) if found is not None else None

    return Context(load_location=load_location)


def partner_context(store: Any, partner: dict[str, Any] | None, version: str | None = None) -> Context:
    """store_context plus the two parties of the exchange (OCPI 2.1.1 objects carry no owner or
    token party: the converter takes them from here)."""
    ctx = store_context(store)
    version = version or partner_version(partner)
    if version != "2.1.1" or not partner:
        return ctx
    from shared.config import get_settings
    from shared.services.credentials import own_role_211

    role = own_role_211(partner)
    own = next((p for p in get_settings().own_parties if p.role.upper() == role), None)
    if own is not None:
        ctx.own_party = (own.country_code, own.party_id, role)
    theirs = next(iter(partner.get("roles") or []), None)
    if isinstance(theirs, dict):
        ctx.partner_party = (theirs["country_code"], theirs["party_id"], theirs["role"])
    else:
        ctx.partner_party = ("", "", "EMSP" if role == "CPO" else "CPO")
    return ctx


def partner_version(partner: dict[str, Any] | None) -> str:
    """The version negotiated with a partner (2.2.1 for records from before versions were stored)."""
    version = str((partner or {}).get("version") or CANONICAL)
    return version if version in SUPPORTED_VERSIONS else CANONICAL


def to_partner(store: Any, partner: dict[str, Any] | None, kind: str, obj: Any) -> Any:
    """Canonical -> what this partner's version expects (the outbound client and push)."""
    version = partner_version(partner)
    return outbound(
        version, kind, obj, partner_context(store, partner, version) if version != CANONICAL else None
    )


def from_partner(store: Any, partner: dict[str, Any] | None, kind: str, obj: Any) -> Any:
    """This partner's version -> canonical (what we pull or get answered)."""
    version = partner_version(partner)
    if version == CANONICAL:
        return obj
    return inbound(version, kind, obj, partner_context(store, partner, version))
