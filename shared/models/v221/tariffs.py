"""OCPI 2.2.1 Tariffs module: objects and data types (mod_tariffs.asciidoc, chapter 11).

Object (11.3): ``Tariff``.
Data types (11.4): ``DayOfWeek``, ``PriceComponent``, ``ReservationRestrictionType``,
``TariffElement``, ``TariffDimensionType``, ``TariffRestrictions``, ``TariffType``.
"""

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from shared.models.types import CiString, DateTime, Int, Number, OcpiModel, String, Url
from shared.models.v221.common import DisplayText, EnergyMix, Price

__all__ = [
    "DayOfWeek",
    "PriceComponent",
    "ReservationRestrictionType",
    "Tariff",
    "TariffDate",
    "TariffDimensionType",
    "TariffElement",
    "TariffRestrictions",
    "TariffTime",
    "TariffType",
]


class DayOfWeek(StrEnum):
    """DayOfWeek enum."""

    MONDAY = "MONDAY"
    TUESDAY = "TUESDAY"
    WEDNESDAY = "WEDNESDAY"
    THURSDAY = "THURSDAY"
    FRIDAY = "FRIDAY"
    SATURDAY = "SATURDAY"
    SUNDAY = "SUNDAY"


class ReservationRestrictionType(StrEnum):
    """ReservationRestrictionType enum."""

    RESERVATION = "RESERVATION"
    RESERVATION_EXPIRES = "RESERVATION_EXPIRES"


class TariffDimensionType(StrEnum):
    """TariffDimensionType enum."""

    ENERGY = "ENERGY"
    FLAT = "FLAT"
    PARKING_TIME = "PARKING_TIME"
    TIME = "TIME"


class TariffType(StrEnum):
    """TariffType enum."""

    AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
    PROFILE_CHEAP = "PROFILE_CHEAP"
    PROFILE_FAST = "PROFILE_FAST"
    PROFILE_GREEN = "PROFILE_GREEN"
    REGULAR = "REGULAR"


class PriceComponent(OcpiModel):
    """PriceComponent class."""

    type: TariffDimensionType
    price: Number
    vat: Number | None = None
    step_size: Int


TariffTime = Annotated[
    str,
    StringConstraints(strict=True, max_length=5, pattern=r"^([0-1][0-9]|2[0-3]):[0-5][0-9]$"),
]
"""string(5) ``HH:MM``, regex ``([0-1][0-9]|2[0-3]):[0-5][0-9]``."""

TariffDate = Annotated[
    str,
    StringConstraints(
        strict=True,
        max_length=10,
        pattern=r"^([12][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
    ),
]
"""string(10) ``YYYY-MM-DD``, regex ``([12][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])``."""


class TariffRestrictions(OcpiModel):
    """TariffRestrictions class."""

    start_time: TariffTime | None = None
    end_time: TariffTime | None = None
    start_date: TariffDate | None = None
    end_date: TariffDate | None = None
    min_kwh: Number | None = None
    max_kwh: Number | None = None
    min_current: Number | None = None
    max_current: Number | None = None
    min_power: Number | None = None
    max_power: Number | None = None
    min_duration: Int | None = None
    max_duration: Int | None = None
    day_of_week: list[DayOfWeek] | None = None
    reservation: ReservationRestrictionType | None = None


class TariffElement(OcpiModel):
    """TariffElement class."""

    price_components: Annotated[list[PriceComponent], Field(min_length=1)]
    restrictions: TariffRestrictions | None = None


class Tariff(OcpiModel):
    """Tariff object (11.3.1)."""

    country_code: CiString(2)
    party_id: CiString(3)
    id: CiString(36)
    currency: String(3)
    type: TariffType | None = None
    tariff_alt_text: list[DisplayText] | None = None
    tariff_alt_url: Url | None = None
    min_price: Price | None = None
    max_price: Price | None = None
    elements: Annotated[list[TariffElement], Field(min_length=1)]
    start_date_time: DateTime | None = None
    end_date_time: DateTime | None = None
    energy_mix: EnergyMix | None = None
    last_updated: DateTime
