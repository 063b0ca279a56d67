"""OCPI 2.2.1 classes and enums shared by several modules.

* ``DisplayText``, ``Price``, ``Role``                          -- chapter "Types" (types.asciidoc, 16.x).
* ``GeoLocation``, ``AdditionalGeoLocation``, ``BusinessDetails``, ``Image``, ``ImageCategory``,
  ``EnergyMix``, ``EnergySource``, ``EnergySourceCategory``, ``EnvironmentalImpact``,
  ``EnvironmentalImpactCategory``                              -- Locations module, "Data types"
  (mod_locations.asciidoc, 8.4); used by Locations, CDRs, Tariffs and Credentials.
* ``ProfileType``                                              -- Sessions module, "Data types"
  (mod_sessions.asciidoc, 9.4.2); defined here because Tokens and Sessions both use it.
  ``shared.models.v221.sessions`` re-exports it.
* ``OcpiResponse``                                             -- the response format of chapter
  "Transport and format" (transport_and_format.asciidoc, 4.1.7).
"""

from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import Field, StringConstraints

from shared.models.types import Bool, CiString, DateTime, Int, Number, OcpiModel, String, Url

__all__ = [
    "AdditionalGeoLocation",
    "BusinessDetails",
    "DisplayText",
    "EnergyMix",
    "EnergySource",
    "EnergySourceCategory",
    "EnvironmentalImpact",
    "EnvironmentalImpactCategory",
    "GeoLocation",
    "Image",
    "ImageCategory",
    "Latitude",
    "Longitude",
    "OcpiResponse",
    "Price",
    "ProfileType",
    "Role",
]


# ---------------------------------------------------------------------------- types.asciidoc


class DisplayText(OcpiModel):
    """DisplayText class (types.asciidoc)."""

    language: String(2)
    text: String(512)


class Price(OcpiModel):
    """Price class (types.asciidoc)."""

    excl_vat: Number
    incl_vat: Number | None = None


class Role(StrEnum):
    """Role enum (types.asciidoc)."""

    CPO = "CPO"
    EMSP = "EMSP"
    HUB = "HUB"
    NAP = "NAP"
    NSP = "NSP"
    OTHER = "OTHER"
    SCSP = "SCSP"


# ---------------------------------------------------------------------------- mod_locations data types

# The spec types latitude/longitude as string(10)/string(11) *and* gives a regex. The two
# contradict each other: the regex allows a minus sign, 2 (3) integer digits and 7 decimals,
# i.e. 11 (12) characters, e.g. "-33.8688197" / "-151.2092955" -- ordinary 7-decimal coordinates
# of the southern/western hemispheres that the spec explicitly recommends ("More is always
# better"). The regex is the precise definition, so it alone is enforced; it bounds the length
# to 11 (12) characters.
Latitude = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^-?[0-9]{1,2}\.[0-9]{5,7}$"),
]
"""GeoLocation.latitude: regex ``-?[0-9]{1,2}\\.[0-9]{5,7}`` (spec: string(10), see note above)."""

Longitude = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^-?[0-9]{1,3}\.[0-9]{5,7}$"),
]
"""GeoLocation.longitude: regex ``-?[0-9]{1,3}\\.[0-9]{5,7}`` (spec: string(11), see note above)."""


class GeoLocation(OcpiModel):
    """GeoLocation class (mod_locations.asciidoc, WGS 84)."""

    latitude: Latitude
    longitude: Longitude


class AdditionalGeoLocation(OcpiModel):
    """AdditionalGeoLocation class (mod_locations.asciidoc)."""

    latitude: Latitude
    longitude: Longitude
    name: DisplayText | None = None


class ImageCategory(StrEnum):
    """ImageCategory enum (mod_locations.asciidoc)."""

    CHARGER = "CHARGER"
    ENTRANCE = "ENTRANCE"
    LOCATION = "LOCATION"
    NETWORK = "NETWORK"
    OPERATOR = "OPERATOR"
    OTHER = "OTHER"
    OWNER = "OWNER"


ImageDimension = Annotated[Int, Field(ge=0, le=99999)]
"""``int(5)``: at most 5 digits."""


class Image(OcpiModel):
    """Image class (mod_locations.asciidoc)."""

    url: Url
    thumbnail: Url | None = None
    category: ImageCategory
    type: CiString(4)
    width: ImageDimension | None = None
    height: ImageDimension | None = None


class BusinessDetails(OcpiModel):
    """BusinessDetails class (mod_locations.asciidoc)."""

    name: String(100)
    website: Url | None = None
    logo: Image | None = None


class EnergySourceCategory(StrEnum):
    """EnergySourceCategory enum (mod_locations.asciidoc)."""

    NUCLEAR = "NUCLEAR"
    GENERAL_FOSSIL = "GENERAL_FOSSIL"
    COAL = "COAL"
    GAS = "GAS"
    GENERAL_GREEN = "GENERAL_GREEN"
    SOLAR = "SOLAR"
    WIND = "WIND"
    WATER = "WATER"


class EnergySource(OcpiModel):
    """EnergySource class (mod_locations.asciidoc)."""

    source: EnergySourceCategory
    percentage: Number


class EnvironmentalImpactCategory(StrEnum):
    """EnvironmentalImpactCategory enum (mod_locations.asciidoc)."""

    NUCLEAR_WASTE = "NUCLEAR_WASTE"
    CARBON_DIOXIDE = "CARBON_DIOXIDE"


class EnvironmentalImpact(OcpiModel):
    """EnvironmentalImpact class (mod_locations.asciidoc)."""

    category: EnvironmentalImpactCategory
    amount: Number


class EnergyMix(OcpiModel):
    """EnergyMix class (mod_locations.asciidoc)."""

    is_green_energy: Bool
    energy_sources: list[EnergySource] | None = None
    environ_impact: list[EnvironmentalImpact] | None = None
    supplier_name: String(64) | None = None
    energy_product_name: String(64) | None = None


# ---------------------------------------------------------------------------- mod_sessions data types


class ProfileType(StrEnum):
    """ProfileType enum (mod_sessions.asciidoc); also used by Token.default_profile_type."""

    CHEAP = "CHEAP"
    FAST = "FAST"
    GREEN = "GREEN"
    REGULAR = "REGULAR"


# ---------------------------------------------------------------------------- transport_and_format

DataT = TypeVar("DataT")


class OcpiResponse(OcpiModel, Generic[DataT]):
    """The OCPI response format (transport_and_format.asciidoc, "Response format").

    ``data`` is an object, a list of objects or a string depending on the request; use e.g.
    ``OcpiResponse[list[Version]]`` to validate it. It is optional (absent in error responses).
    """

    data: DataT | None = None
    status_code: Int
    status_message: String() | None = None
    timestamp: DateTime
