"""Versions module (version_information_endpoint.asciidoc): what we serve, derived from deployment."""

from __future__ import annotations

from shared.config import get_settings
from shared.modules import MODULES, SUPPORTED_VERSIONS, deployed_modules, endpoint_path


def version_list(base_url: str) -> list[dict]:
    return [{"version": v, "url": f"{base_url}/ocpi/{v}"} for v in SUPPORTED_VERSIONS]


def version_details(base_url: str, version: str) -> dict:
    own_roles = get_settings().own_roles()
    endpoints = []
    for name in deployed_modules():
        spec = MODULES[name]
        for iface in spec.interfaces_for(own_roles):
            endpoints.append(
                {"identifier": name, "role": iface, "url": base_url + endpoint_path(version, name, iface)}
            )
    return {"version": version, "endpoints": endpoints}
