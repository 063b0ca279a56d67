"""OCPI 2.2.1 Sessions module: objects and data types (mod_sessions.asciidoc, chapter 9).

Objects (9.3): ``Session``, ``ChargingPreferences``.
Data types (9.4): ``ChargingPreferencesResponse``, ``ProfileType`` (defined in
:mod:`shared.models.v221.common`, re-exported here), ``SessionStatus``.
The ``Session`` object also uses ``CdrToken``, ``ChargingPeriod`` and ``AuthMethod`` from the CDRs
chapter; they are re-exported here for convenience.
"""

from enum import StrEnum

from shared.models.types import Bool, CiString, DateTime, Number, OcpiModel, String
from shared.models.v221.cdrs import AuthMethod, CdrDimension, CdrDimensionType, CdrToken, ChargingPeriod
from shared.models.v221.common import Price, ProfileType

__all__ = [
    "AuthMethod",
    "CdrDimension",
    "CdrDimensionType",
    "CdrToken",
    "ChargingPeriod",
    "ChargingPreferences",
    "ChargingPreferencesResponse",
    "ProfileType",
    "Session",
    "SessionStatus",
]


class ChargingPreferencesResponse(StrEnum):
    """ChargingPreferencesResponse enum: response to a PUT Charging Preferences request."""

    ACCEPTED = "ACCEPTED"
    DEPARTURE_REQUIRED = "DEPARTURE_REQUIRED"
    ENERGY_NEED_REQUIRED = "ENERGY_NEED_REQUIRED"
    NOT_POSSIBLE = "NOT_POSSIBLE"
    PROFILE_TYPE_NOT_SUPPORTED = "PROFILE_TYPE_NOT_SUPPORTED"


class SessionStatus(StrEnum):
    """SessionStatus enum."""

    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    INVALID = "INVALID"
    PENDING = "PENDING"
    RESERVATION = "RESERVATION"


class Session(OcpiModel):
    """Session object (9.3.1).

    ``evse_uid`` / ``connector_id`` may be ``#NA`` for a reservation without assigned EVSE (valid
    CiString values, nothing special to do).
    """

    country_code: CiString(2)
    party_id: CiString(3)
    id: CiString(36)
    start_date_time: DateTime
    end_date_time: DateTime | None = None
    kwh: Number
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString(36) | None = None
    location_id: CiString(36)
    evse_uid: CiString(36)
    connector_id: CiString(36)
    meter_id: String(255) | None = None
    currency: String(3)
    charging_periods: list[ChargingPeriod] | None = None
    total_cost: Price | None = None
    status: SessionStatus
    last_updated: DateTime


class ChargingPreferences(OcpiModel):
    """ChargingPreferences object (9.3.2)."""

    profile_type: ProfileType
    departure_time: DateTime | None = None
    energy_need: Number | None = None
    discharge_allowed: Bool | None = None
