"""OCPI 2.2.1 Credentials module: object and data type (credentials.asciidoc, chapter 7).

Object (7.3): ``Credentials``. Data type (7.4): ``CredentialsRole``.
"""

from typing import Annotated

from pydantic import Field, StringConstraints

from shared.models.types import CiString, OcpiModel, Url
from shared.models.v221.common import BusinessDetails, Role

__all__ = ["Credentials", "CredentialsRole", "CredentialsToken", "Role"]


CredentialsToken = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$"),
]
"""Credentials.token: string(64) of printable non-whitespace ASCII (U+0021..U+007E), as the
object description requires."""


class CredentialsRole(OcpiModel):
    """CredentialsRole class."""

    role: Role
    business_details: BusinessDetails
    party_id: CiString(3)
    country_code: CiString(2)


class Credentials(OcpiModel):
    """Credentials object (7.3.1)."""

    token: CredentialsToken
    url: Url
    roles: Annotated[list[CredentialsRole], Field(min_length=1)]
