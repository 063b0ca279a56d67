"""OCPI 2.2.1 Locations module: objects and data types (mod_locations.asciidoc, chapter 8).

Objects (8.3): ``Location``, ``EVSE``, ``Connector``.
Data types (8.4): ``Capability``, ``ConnectorFormat``, ``ConnectorType``, ``ExceptionalPeriod``,
``Facility``, ``Hours``, ``ParkingRestriction``, ``ParkingType``, ``PowerType``,
``PublishTokenType``, ``RegularHours``, ``Status``, ``StatusSchedule``. The remaining data types of
this chapter that other modules use too (``AdditionalGeoLocation``, ``BusinessDetails``,
``EnergyMix``, ``EnergySource``, ``EnergySourceCategory``, ``EnvironmentalImpact``,
``EnvironmentalImpactCategory``, ``GeoLocation``, ``Image``, ``ImageCategory``) live in
:mod:`shared.models.v221.common` and are re-exported here.
"""

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from shared.models.types import Bool, CiString, DateTime, Int, OcpiModel, String, Url
from shared.models.v221.common import (
    AdditionalGeoLocation,
    BusinessDetails,
    DisplayText,
    EnergyMix,
    EnergySource,
    EnergySourceCategory,
    EnvironmentalImpact,
    EnvironmentalImpactCategory,
    GeoLocation,
    Image,
    ImageCategory,
)
from shared.models.v221.tokens import TokenType

__all__ = [
    "EVSE",
    "AdditionalGeoLocation",
    "BusinessDetails",
    "Capability",
    "Connector",
    "ConnectorFormat",
    "ConnectorType",
    "EnergyMix",
    "EnergySource",
    "EnergySourceCategory",
    "EnvironmentalImpact",
    "EnvironmentalImpactCategory",
    "ExceptionalPeriod",
    "Facility",
    "GeoLocation",
    "Hours",
    "Image",
    "ImageCategory",
    "Location",
    "ParkingRestriction",
    "ParkingType",
    "PowerType",
    "PublishTokenType",
    "RegularHours",
    "Status",
    "StatusSchedule",
    "TimeOfDay",
]


# ---------------------------------------------------------------------------- enums


class Capability(StrEnum):
    """Capability enum: the capabilities of an EVSE."""

    CHARGING_PROFILE_CAPABLE = "CHARGING_PROFILE_CAPABLE"
    CHARGING_PREFERENCES_CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
    CHIP_CARD_SUPPORT = "CHIP_CARD_SUPPORT"
    CONTACTLESS_CARD_SUPPORT = "CONTACTLESS_CARD_SUPPORT"
    CREDIT_CARD_PAYABLE = "CREDIT_CARD_PAYABLE"
    DEBIT_CARD_PAYABLE = "DEBIT_CARD_PAYABLE"
    PED_TERMINAL = "PED_TERMINAL"
    REMOTE_START_STOP_CAPABLE = "REMOTE_START_STOP_CAPABLE"
    RESERVABLE = "RESERVABLE"
    RFID_READER = "RFID_READER"
    START_SESSION_CONNECTOR_REQUIRED = "START_SESSION_CONNECTOR_REQUIRED"
    TOKEN_GROUP_CAPABLE = "TOKEN_GROUP_CAPABLE"
    UNLOCK_CAPABLE = "UNLOCK_CAPABLE"


class ConnectorFormat(StrEnum):
    """ConnectorFormat enum: socket or attached cable."""

    SOCKET = "SOCKET"
    CABLE = "CABLE"


class ConnectorType(StrEnum):
    """ConnectorType enum: the socket or plug standard."""

    CHADEMO = "CHADEMO"
    CHAOJI = "CHAOJI"
    DOMESTIC_A = "DOMESTIC_A"
    DOMESTIC_B = "DOMESTIC_B"
    DOMESTIC_C = "DOMESTIC_C"
    DOMESTIC_D = "DOMESTIC_D"
    DOMESTIC_E = "DOMESTIC_E"
    DOMESTIC_F = "DOMESTIC_F"
    DOMESTIC_G = "DOMESTIC_G"
    DOMESTIC_H = "DOMESTIC_H"
    DOMESTIC_I = "DOMESTIC_I"
    DOMESTIC_J = "DOMESTIC_J"
    DOMESTIC_K = "DOMESTIC_K"
    DOMESTIC_L = "DOMESTIC_L"
    DOMESTIC_M = "DOMESTIC_M"
    DOMESTIC_N = "DOMESTIC_N"
    DOMESTIC_O = "DOMESTIC_O"
    GBT_AC = "GBT_AC"
    GBT_DC = "GBT_DC"
    IEC_60309_2_single_16 = "IEC_60309_2_single_16"
    IEC_60309_2_three_16 = "IEC_60309_2_three_16"
    IEC_60309_2_three_32 = "IEC_60309_2_three_32"
    IEC_60309_2_three_64 = "IEC_60309_2_three_64"
    IEC_62196_T1 = "IEC_62196_T1"
    IEC_62196_T1_COMBO = "IEC_62196_T1_COMBO"
    IEC_62196_T2 = "IEC_62196_T2"
    IEC_62196_T2_COMBO = "IEC_62196_T2_COMBO"
    IEC_62196_T3A = "IEC_62196_T3A"
    IEC_62196_T3C = "IEC_62196_T3C"
    NEMA_5_20 = "NEMA_5_20"
    NEMA_6_30 = "NEMA_6_30"
    NEMA_6_50 = "NEMA_6_50"
    NEMA_10_30 = "NEMA_10_30"
    NEMA_10_50 = "NEMA_10_50"
    NEMA_14_30 = "NEMA_14_30"
    NEMA_14_50 = "NEMA_14_50"
    PANTOGRAPH_BOTTOM_UP = "PANTOGRAPH_BOTTOM_UP"
    PANTOGRAPH_TOP_DOWN = "PANTOGRAPH_TOP_DOWN"
    TESLA_R = "TESLA_R"
    TESLA_S = "TESLA_S"


class Facility(StrEnum):
    """Facility enum."""

    HOTEL = "HOTEL"
    RESTAURANT = "RESTAURANT"
    CAFE = "CAFE"
    MALL = "MALL"
    SUPERMARKET = "SUPERMARKET"
    SPORT = "SPORT"
    RECREATION_AREA = "RECREATION_AREA"
    NATURE = "NATURE"
    MUSEUM = "MUSEUM"
    BIKE_SHARING = "BIKE_SHARING"
    BUS_STOP = "BUS_STOP"
    TAXI_STAND = "TAXI_STAND"
    TRAM_STOP = "TRAM_STOP"
    METRO_STATION = "METRO_STATION"
    TRAIN_STATION = "TRAIN_STATION"
    AIRPORT = "AIRPORT"
    PARKING_LOT = "PARKING_LOT"
    CARPOOL_PARKING = "CARPOOL_PARKING"
    FUEL_STATION = "FUEL_STATION"
    WIFI = "WIFI"


class ParkingRestriction(StrEnum):
    """ParkingRestriction enum."""

    EV_ONLY = "EV_ONLY"
    PLUGGED = "PLUGGED"
    DISABLED = "DISABLED"
    CUSTOMERS = "CUSTOMERS"
    MOTORCYCLES = "MOTORCYCLES"


class ParkingType(StrEnum):
    """ParkingType enum."""

    ALONG_MOTORWAY = "ALONG_MOTORWAY"
    PARKING_GARAGE = "PARKING_GARAGE"
    PARKING_LOT = "PARKING_LOT"
    ON_DRIVEWAY = "ON_DRIVEWAY"
    ON_STREET = "ON_STREET"
    UNDERGROUND_GARAGE = "UNDERGROUND_GARAGE"


class PowerType(StrEnum):
    """PowerType enum."""

    AC_1_PHASE = "AC_1_PHASE"
    AC_2_PHASE = "AC_2_PHASE"
    AC_2_PHASE_SPLIT = "AC_2_PHASE_SPLIT"
    AC_3_PHASE = "AC_3_PHASE"
    DC = "DC"


class Status(StrEnum):
    """Status enum: the status of an EVSE."""

    AVAILABLE = "AVAILABLE"
    BLOCKED = "BLOCKED"
    CHARGING = "CHARGING"
    INOPERATIVE = "INOPERATIVE"
    OUTOFORDER = "OUTOFORDER"
    PLANNED = "PLANNED"
    REMOVED = "REMOVED"
    RESERVED = "RESERVED"
    UNKNOWN = "UNKNOWN"


# ---------------------------------------------------------------------------- classes

TimeOfDay = Annotated[
    str,
    StringConstraints(strict=True, max_length=5, pattern=r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$"),
]
"""string(5) ``HH:MM`` in 24h format with leading zeros, regex ``([0-1][0-9]|2[0-3]):[0-5][0-9]``."""


class ExceptionalPeriod(OcpiModel):
    """ExceptionalPeriod class."""

    period_begin: DateTime
    period_end: DateTime


class RegularHours(OcpiModel):
    """RegularHours class.

    The spec says ``period_end`` "must be later than" ``period_begin``; that is not enforced here
    (data in the field uses e.g. ``"00:00"`` as end of day and rejecting a whole Location for it
    would be harsher than the spec requires of a receiver).
    """

    weekday: Annotated[Int, Field(ge=1, le=7)]
    period_begin: TimeOfDay
    period_end: TimeOfDay


class Hours(OcpiModel):
    """Hours class: opening and access hours of the location."""

    twentyfourseven: Bool
    regular_hours: list[RegularHours] | None = None
    exceptional_openings: list[ExceptionalPeriod] | None = None
    exceptional_closings: list[ExceptionalPeriod] | None = None


class PublishTokenType(OcpiModel):
    """PublishTokenType class.

    Enforces the spec's SHALL rules: at least one of ``uid``, ``visual_number`` or ``group_id`` is
    set; ``type`` is set when ``uid`` is; ``issuer`` is set when ``visual_number`` is.
    """

    uid: CiString(36) | None = None
    type: TokenType | None = None
    visual_number: String(64) | None = None
    issuer: String(64) | None = None
    group_id: CiString(36) | None = None

    @model_validator(mode="after")
    def _check_required_combinations(self) -> Self:
        if self.uid is None and self.visual_number is None and self.group_id is None:
            raise ValueError("at least one of uid, visual_number or group_id SHALL be set")
        if self.uid is not None and self.type is None:
            raise ValueError("type SHALL be set when uid is set")
        if self.visual_number is not None and self.issuer is None:
            raise ValueError("issuer SHALL be set when visual_number is set")
        return self


class StatusSchedule(OcpiModel):
    """StatusSchedule class: a planned status period of an EVSE."""

    period_begin: DateTime
    period_end: DateTime | None = None
    status: Status


# ---------------------------------------------------------------------------- objects


class Connector(OcpiModel):
    """Connector object (8.3.3)."""

    id: CiString(36)
    standard: ConnectorType
    format: ConnectorFormat
    power_type: PowerType
    max_voltage: Int
    max_amperage: Int
    max_electric_power: Int | None = None
    tariff_ids: list[CiString(36)] | None = None
    terms_and_conditions: Url | None = None
    last_updated: DateTime


class EVSE(OcpiModel):
    """EVSE object (8.3.2)."""

    uid: CiString(36)
    evse_id: CiString(48) | None = None
    status: Status
    status_schedule: list[StatusSchedule] | None = None
    capabilities: list[Capability] | None = None
    connectors: Annotated[list[Connector], Field(min_length=1)]
    floor_level: String(4) | None = None
    coordinates: GeoLocation | None = None
    physical_reference: String(16) | None = None
    directions: list[DisplayText] | None = None
    parking_restrictions: list[ParkingRestriction] | None = None
    images: list[Image] | None = None
    last_updated: DateTime


class Location(OcpiModel):
    """Location object (8.3.1).

    ``address`` is string(255) and ``state`` string(45), per the 2.2.1 errata note ("earlier
    releases mistakenly gave maximum lengths of 45 and 20").
    """

    country_code: CiString(2)
    party_id: CiString(3)
    id: CiString(36)
    publish: Bool
    publish_allowed_to: list[PublishTokenType] | None = None
    name: String(255) | None = None
    address: String(255)
    city: String(45)
    postal_code: String(10) | None = None
    state: String(45) | None = None
    country: String(3)
    coordinates: GeoLocation
    related_locations: list[AdditionalGeoLocation] | None = None
    parking_type: ParkingType | None = None
    evses: list[EVSE] | None = None
    directions: list[DisplayText] | None = None
    operator: BusinessDetails | None = None
    suboperator: BusinessDetails | None = None
    owner: BusinessDetails | None = None
    facilities: list[Facility] | None = None
    time_zone: String(255)
    opening_times: Hours | None = None
    charging_when_closed: Bool | None = None
    images: list[Image] | None = None
    energy_mix: EnergyMix | None = None
    last_updated: DateTime
