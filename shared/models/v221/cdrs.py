"""OCPI 2.2.1 CDRs module: objects and data types (mod_cdrs.asciidoc, chapter 10).

Object (10.3): ``CDR``.
Data types (10.4): ``AuthMethod``, ``CdrDimension``, ``CdrDimensionType``, ``CdrLocation``,
``CdrToken``, ``ChargingPeriod``, ``SignedData``, ``SignedValue``.
"""

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from shared.models.types import Bool, CiString, DateTime, Int, Number, OcpiModel, String
from shared.models.v221.common import GeoLocation, Price
from shared.models.v221.locations import ConnectorFormat, ConnectorType, PowerType
from shared.models.v221.tariffs import Tariff
from shared.models.v221.tokens import TokenType

__all__ = [
    "CDR",
    "AuthMethod",
    "CdrDimension",
    "CdrDimensionType",
    "CdrLocation",
    "CdrToken",
    "ChargingPeriod",
    "SignedData",
    "SignedValue",
]


class AuthMethod(StrEnum):
    """AuthMethod enum."""

    AUTH_REQUEST = "AUTH_REQUEST"
    COMMAND = "COMMAND"
    WHITELIST = "WHITELIST"


class CdrDimensionType(StrEnum):
    """CdrDimensionType enum.

    CURRENT, ENERGY_EXPORT, ENERGY_IMPORT, POWER and STATE_OF_CHARGE are for Sessions only.
    """

    CURRENT = "CURRENT"
    ENERGY = "ENERGY"
    ENERGY_EXPORT = "ENERGY_EXPORT"
    ENERGY_IMPORT = "ENERGY_IMPORT"
    MAX_CURRENT = "MAX_CURRENT"
    MIN_CURRENT = "MIN_CURRENT"
    MAX_POWER = "MAX_POWER"
    MIN_POWER = "MIN_POWER"
    PARKING_TIME = "PARKING_TIME"
    POWER = "POWER"
    RESERVATION_TIME = "RESERVATION_TIME"
    STATE_OF_CHARGE = "STATE_OF_CHARGE"
    TIME = "TIME"


class CdrDimension(OcpiModel):
    """CdrDimension class."""

    type: CdrDimensionType
    volume: Number


class CdrLocation(OcpiModel):
    """CdrLocation class.

    Note: unlike ``Location`` (errata: address string(255), state string(45)), the CdrLocation
    table of the 2.2.1 text still says ``address`` string(45) and ``state`` string(20); the table
    is followed here.
    """

    id: CiString(36)
    name: String(255) | None = None
    address: String(45)
    city: String(45)
    postal_code: String(10) | None = None
    state: String(20) | None = None
    country: String(3)
    coordinates: GeoLocation
    evse_uid: CiString(36)
    evse_id: CiString(48)
    connector_id: CiString(36)
    connector_standard: ConnectorType
    connector_format: ConnectorFormat
    connector_power_type: PowerType


class CdrToken(OcpiModel):
    """CdrToken class."""

    country_code: CiString(2)
    party_id: CiString(3)
    uid: CiString(36)
    type: TokenType
    contract_id: CiString(36)


class ChargingPeriod(OcpiModel):
    """ChargingPeriod class."""

    start_date_time: DateTime
    dimensions: Annotated[list[CdrDimension], Field(min_length=1)]
    tariff_id: CiString(36) | None = None


class SignedValue(OcpiModel):
    """SignedValue class (``plain_data`` string(5000) per the 2.2.1 errata, was 512)."""

    nature: CiString(32)
    plain_data: String(5000)
    signed_data: String(5000)


class SignedData(OcpiModel):
    """SignedData class (``url`` is typed ``string(512)`` in the spec, not ``URL``)."""

    encoding_method: CiString(36)
    encoding_method_version: Int | None = None
    public_key: String(512) | None = None
    signed_values: Annotated[list[SignedValue], Field(min_length=1)]
    url: String(512) | None = None


class CDR(OcpiModel):
    """CDR object (10.3.1).

    Enforced: when ``credit`` is ``true``, ``credit_reference_id`` must be set ("needs to be set
    as well").
    """

    country_code: CiString(2)
    party_id: CiString(3)
    id: CiString(39)
    start_date_time: DateTime
    end_date_time: DateTime
    session_id: CiString(36) | None = None
    cdr_token: CdrToken
    auth_method: AuthMethod
    authorization_reference: CiString(36) | None = None
    cdr_location: CdrLocation
    meter_id: String(255) | None = None
    currency: String(3)
    tariffs: list[Tariff] | None = None
    charging_periods: Annotated[list[ChargingPeriod], Field(min_length=1)]
    signed_data: SignedData | None = None
    total_cost: Price
    total_fixed_cost: Price | None = None
    total_energy: Number
    total_energy_cost: Price | None = None
    total_time: Number
    total_time_cost: Price | None = None
    total_parking_time: Number | None = None
    total_parking_cost: Price | None = None
    total_reservation_cost: Price | None = None
    remark: String(255) | None = None
    invoice_reference_id: CiString(39) | None = None
    credit: Bool | None = None
    credit_reference_id: CiString(39) | None = None
    home_charging_compensation: Bool | None = None
    last_updated: DateTime

    @model_validator(mode="after")
    def _check_credit_reference(self) -> Self:
        if self.credit and self.credit_reference_id is None:
            raise ValueError("credit_reference_id is required for a Credit CDR (credit = true)")
        return self
