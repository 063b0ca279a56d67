"""The OCPI modules this code base knows, and which of them this deployment serves.

Which modules are deployed comes from the environment (`OCPI_MODULES`, set once in template.yaml's
Globals and checked against the template's functions by tests/unit/test_template.py), so the
version details endpoint lists exactly what is deployed. Interface roles per own role follow each
module chapter of OCPI 2.2.1 (e.g. mod_locations: CPO = Sender, eMSP = Receiver).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# The OCPI versions this code speaks; which of them a deployment offers: shared/versions/convert.py
# enabled_versions() (OCPI_VERSIONS).
from shared.versions import SUPPORTED_VERSIONS  # noqa: F401

SENDER = "SENDER"
RECEIVER = "RECEIVER"


@dataclass(frozen=True)
class ModuleSpec:
    identifier: str  # ModuleID (version_information_endpoint, ModuleID enum)
    interfaces: tuple[tuple[str, str], ...]  # (own role or "*", interface role)

    def interfaces_for(self, own_roles: set[str]) -> list[str]:
        out: list[str] = []
        for role, iface in self.interfaces:
            if (role == "*" or role in own_roles) and iface not in out:
                out.append(iface)
        return out


MODULES: dict[str, ModuleSpec] = {
    m.identifier: m
    for m in (
        ModuleSpec("credentials", (("*", SENDER),)),
        ModuleSpec("locations", (("CPO", SENDER), ("EMSP", RECEIVER))),
        ModuleSpec("tariffs", (("CPO", SENDER), ("EMSP", RECEIVER))),
        ModuleSpec("tokens", (("EMSP", SENDER), ("CPO", RECEIVER))),
        ModuleSpec("sessions", (("CPO", SENDER), ("EMSP", RECEIVER))),
        ModuleSpec("cdrs", (("CPO", SENDER), ("EMSP", RECEIVER))),
        ModuleSpec("commands", (("EMSP", SENDER), ("CPO", RECEIVER))),
        ModuleSpec("chargingprofiles", (("EMSP", SENDER), ("SCSP", SENDER), ("CPO", RECEIVER))),
        ModuleSpec("hubclientinfo", (("*", RECEIVER),)),
    )
}


def deployed_modules() -> list[str]:
    raw = os.environ.get("OCPI_MODULES", "credentials")
    names = [m.strip() for m in raw.split(",") if m.strip()]
    return [m for m in names if m in MODULES]


def endpoint_path(version: str, identifier: str, interface: str) -> str:
    """Our URL layout: /ocpi/{version}/credentials and /ocpi/{version}/{sender|receiver}/{module}.

    Sender and receiver interfaces get separate trees because their URL shapes overlap
    (e.g. sender `/{location_id}/{evse_uid}/{connector_id}` vs receiver `/{cc}/{pid}/{location_id}`)."""
    if identifier == "credentials":
        return f"/ocpi/{version}/credentials"
    return f"/ocpi/{version}/{interface.lower()}/{identifier}"
