"""OCPI 2.2.1 Charging Profiles module: objects and data types (mod_charging_profiles.asciidoc, ch. 14).

Objects (14.3): ``ChargingProfileResponse``, ``ActiveChargingProfileResult``,
``ChargingProfileResult``, ``ClearProfileResult``, ``SetChargingProfile``.
Data types (14.4): ``ActiveChargingProfile``, ``ChargingRateUnit``, ``ChargingProfile``,
``ChargingProfilePeriod``, ``ChargingProfileResponseType``, ``ChargingProfileResultType``.

``min_charging_rate`` and ``limit`` "accept at most one digit fraction (e.g. 8.1)": that is
described as what the Charge Point accepts, so it is not enforced here.
"""

from enum import StrEnum

from shared.models.types import DateTime, Int, Number, OcpiModel, Url

__all__ = [
    "ActiveChargingProfile",
    "ActiveChargingProfileResult",
    "ChargingProfile",
    "ChargingProfilePeriod",
    "ChargingProfileResponse",
    "ChargingProfileResponseType",
    "ChargingProfileResult",
    "ChargingProfileResultType",
    "ChargingRateUnit",
    "ClearProfileResult",
    "SetChargingProfile",
]


class ChargingRateUnit(StrEnum):
    """ChargingRateUnit enum."""

    W = "W"
    A = "A"


class ChargingProfileResponseType(StrEnum):
    """ChargingProfileResponseType enum: response from the CPO to a ChargingProfile request."""

    ACCEPTED = "ACCEPTED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TOO_OFTEN = "TOO_OFTEN"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class ChargingProfileResultType(StrEnum):
    """ChargingProfileResultType enum: result sent by the EVSE via the CPO."""

    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"


class ChargingProfilePeriod(OcpiModel):
    """ChargingProfilePeriod class."""

    start_period: Int
    limit: Number


class ChargingProfile(OcpiModel):
    """ChargingProfile class."""

    start_date_time: DateTime | None = None
    duration: Int | None = None
    charging_rate_unit: ChargingRateUnit
    min_charging_rate: Number | None = None
    charging_profile_period: list[ChargingProfilePeriod] | None = None


class ActiveChargingProfile(OcpiModel):
    """ActiveChargingProfile class."""

    start_date_time: DateTime
    charging_profile: ChargingProfile


class ChargingProfileResponse(OcpiModel):
    """ChargingProfileResponse object (14.3.1): sent in the HTTP response body."""

    result: ChargingProfileResponseType
    timeout: Int


class ActiveChargingProfileResult(OcpiModel):
    """ActiveChargingProfileResult object (14.3.2): result of a GET ActiveChargingProfile."""

    result: ChargingProfileResultType
    profile: ActiveChargingProfile | None = None


class ChargingProfileResult(OcpiModel):
    """ChargingProfileResult object (14.3.3): result of a PUT SetChargingProfile."""

    result: ChargingProfileResultType


class ClearProfileResult(OcpiModel):
    """ClearProfileResult object (14.3.4): result of a DELETE (ClearProfile)."""

    result: ChargingProfileResultType


class SetChargingProfile(OcpiModel):
    """SetChargingProfile object (14.3.5)."""

    charging_profile: ChargingProfile
    response_url: Url
