"""Versions module (version_information_endpoint.asciidoc): what we serve, derived from deployment."""

from __future__ import annotations

from typing import Any

from shared.config import get_settings
from shared.modules import MODULES, deployed_modules, endpoint_path
from shared.versions.convert import enabled_versions

# OCPI 2.1.1 has no hubclientinfo and no chargingprofiles (docs/versions-2.1.1.md section 10).
NOT_IN_211 = frozenset({"hubclientinfo", "chargingprofiles"})


def version_list(base_url: str) -> list[dict]:
    return [{"version": v, "url": f"{base_url}/ocpi/{v}"} for v in enabled_versions()]


def version_details(base_url: str, version: str, partner: dict[str, Any] | None = None) -> dict:
    if version == "2.1.1":
        return _details_211(base_url, partner)
    own_roles = get_settings().own_roles()
    endpoints = []
    for name in deployed_modules():
        spec = MODULES[name]
        for iface in spec.interfaces_for(own_roles):
            endpoints.append(
                {"identifier": name, "role": iface, "url": base_url + endpoint_path(version, name, iface)}
            )
    return {"version": version, "endpoints": endpoints}


def _details_211(base_url: str, partner: dict[str, Any] | None) -> dict:
    """OCPI 2.1.1 endpoints have no role: one URL per module, for the one role of ours this
    partner talks to (shared/services/credentials.own_role_211)."""
    from shared.services.credentials import own_role_211

    role = own_role_211(partner)
    endpoints = []
    for name in deployed_modules():
        if name in NOT_IN_211:
            continue
        ifaces = MODULES[name].interfaces_for({role})
        if ifaces:
            endpoints.append({"identifier": name, "url": base_url + endpoint_path("2.1.1", name, ifaces[0])})
    return {"version": "2.1.1", "endpoints": endpoints}
