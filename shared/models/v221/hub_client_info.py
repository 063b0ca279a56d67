"""OCPI 2.2.1 Hub Client Info module: objects and data types (mod_hub_client_info.asciidoc, ch. 15).

Object (15.3): ``ClientInfo``. Data type (15.4): ``ConnectionStatus``.
"""

from enum import StrEnum

from shared.models.types import CiString, DateTime, OcpiModel
from shared.models.v221.common import Role

__all__ = ["ClientInfo", "ConnectionStatus", "Role"]


class ConnectionStatus(StrEnum):
    """ConnectionStatus enum."""

    CONNECTED = "CONNECTED"
    OFFLINE = "OFFLINE"
    PLANNED = "PLANNED"
    SUSPENDED = "SUSPENDED"


class ClientInfo(OcpiModel):
    """ClientInfo object (15.3.1)."""

    party_id: CiString(3)
    country_code: CiString(2)
    role: Role
    status: ConnectionStatus
    last_updated: DateTime
