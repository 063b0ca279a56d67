"""OCPI 2.2.1 Versions module (version_information_endpoint.asciidoc, chapter 6).

Classes: ``Version`` (6.1.2), ``VersionDetail`` (the data of the version details endpoint, 6.2.1),
``Endpoint`` (6.2.2). Enums: ``InterfaceRole`` (6.2.3), ``ModuleID`` (6.2.4),
``VersionNumber`` (6.2.5).

Note: the spec allows custom module identifiers ("the ModuleID enum can be extended with
additional custom moduleIDs", e.g. ``nltnm-tokens``), so ``Endpoint.identifier`` is a
``ModuleID`` when the value is a standard one and a plain string otherwise.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from shared.models.types import OcpiModel, String, Url

__all__ = [
    "Endpoint",
    "InterfaceRole",
    "ModuleID",
    "Version",
    "VersionDetail",
    "VersionNumber",
]


class InterfaceRole(StrEnum):
    """InterfaceRole enum."""

    SENDER = "SENDER"
    RECEIVER = "RECEIVER"


class ModuleID(StrEnum):
    """ModuleID enum (the standard module identifiers)."""

    CDRS = "cdrs"
    CHARGING_PROFILES = "chargingprofiles"
    COMMANDS = "commands"
    CREDENTIALS = "credentials"
    HUB_CLIENT_INFO = "hubclientinfo"
    LOCATIONS = "locations"
    SESSIONS = "sessions"
    TARIFFS = "tariffs"
    TOKENS = "tokens"


class VersionNumber(StrEnum):
    """VersionNumber enum: the known OCPI versions."""

    V2_0 = "2.0"
    V2_1 = "2.1"
    V2_1_1 = "2.1.1"
    V2_2 = "2.2"
    V2_2_1 = "2.2.1"


class Version(OcpiModel):
    """Version class: one entry of the version information endpoint's data."""

    version: VersionNumber
    url: Url


class Endpoint(OcpiModel):
    """Endpoint class.

    ``identifier`` is a :class:`ModuleID` for the standard modules, or the custom module id string.
    """

    identifier: Annotated[ModuleID | String(), Field(union_mode="left_to_right")]
    role: InterfaceRole
    url: Url


class VersionDetail(OcpiModel):
    """Data of the version details endpoint: the version and its endpoints."""

    version: VersionNumber
    endpoints: Annotated[list[Endpoint], Field(min_length=1)]
