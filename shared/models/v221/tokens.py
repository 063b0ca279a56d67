"""OCPI 2.2.1 Tokens module: objects and data types (mod_tokens.asciidoc, chapter 12).

Objects (12.3): ``AuthorizationInfo``, ``Token``.
Data types (12.4): ``AllowedType``, ``EnergyContract``, ``LocationReferences``, ``TokenType``,
``WhitelistType``. ``ProfileType`` (Sessions chapter) is re-exported for convenience.
"""

from enum import StrEnum

from shared.models.types import Bool, CiString, DateTime, OcpiModel, String
from shared.models.v221.common import DisplayText, ProfileType

__all__ = [
    "AllowedType",
    "AuthorizationInfo",
    "EnergyContract",
    "LocationReferences",
    "ProfileType",
    "Token",
    "TokenType",
    "WhitelistType",
]


class AllowedType(StrEnum):
    """AllowedType enum: status of a Token and whether charging is allowed."""

    ALLOWED = "ALLOWED"
    BLOCKED = "BLOCKED"
    EXPIRED = "EXPIRED"
    NO_CREDIT = "NO_CREDIT"
    NOT_ALLOWED = "NOT_ALLOWED"


class TokenType(StrEnum):
    """TokenType enum."""

    AD_HOC_USER = "AD_HOC_USER"
    APP_USER = "APP_USER"
    OTHER = "OTHER"
    RFID = "RFID"


class WhitelistType(StrEnum):
    """WhitelistType enum: when authorization of a Token by the CPO is allowed."""

    ALWAYS = "ALWAYS"
    ALLOWED = "ALLOWED"
    ALLOWED_OFFLINE = "ALLOWED_OFFLINE"
    NEVER = "NEVER"


class EnergyContract(OcpiModel):
    """EnergyContract class."""

    supplier_name: String(64)
    contract_id: String(64) | None = None


class LocationReferences(OcpiModel):
    """LocationReferences class."""

    location_id: CiString(36)
    evse_uids: list[CiString(36)] | None = None


class Token(OcpiModel):
    """Token object (12.3.2)."""

    country_code: CiString(2)
    party_id: CiString(3)
    uid: CiString(36)
    type: TokenType
    contract_id: CiString(36)
    visual_number: String(64) | None = None
    issuer: String(64)
    group_id: CiString(36) | None = None
    valid: Bool
    whitelist: WhitelistType
    language: String(2) | None = None
    default_profile_type: ProfileType | None = None
    energy_contract: EnergyContract | None = None
    last_updated: DateTime


class AuthorizationInfo(OcpiModel):
    """AuthorizationInfo object (12.3.1): response to a real-time authorization request."""

    allowed: AllowedType
    token: Token
    location: LocationReferences | None = None
    authorization_reference: CiString(36) | None = None
    info: DisplayText | None = None
