"""OCPI 2.2.1 Commands module: objects and data types (mod_commands.asciidoc, chapter 13).

Objects (13.3): ``CancelReservation``, ``CommandResponse``, ``CommandResult``, ``ReserveNow``,
``StartSession``, ``StopSession``, ``UnlockConnector``.
Data types (13.4): ``CommandResponseType``, ``CommandResultType``, ``CommandType``.
"""

from enum import StrEnum
from typing import Self

from pydantic import model_validator

from shared.models.types import CiString, DateTime, Int, OcpiModel, Url
from shared.models.v221.common import DisplayText
from shared.models.v221.tokens import Token

__all__ = [
    "COMMAND_MODELS",
    "CancelReservation",
    "CommandResponse",
    "CommandResponseType",
    "CommandResult",
    "CommandResultType",
    "CommandType",
    "ReserveNow",
    "StartSession",
    "StopSession",
    "UnlockConnector",
]


class CommandResponseType(StrEnum):
    """CommandResponseType enum: response from the CPO to the command request."""

    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    ACCEPTED = "ACCEPTED"
    UNKNOWN_SESSION = "UNKNOWN_SESSION"


class CommandResultType(StrEnum):
    """CommandResultType enum: result of the command sent to the Charge Point."""

    ACCEPTED = "ACCEPTED"
    CANCELED_RESERVATION = "CANCELED_RESERVATION"
    EVSE_OCCUPIED = "EVSE_OCCUPIED"
    EVSE_INOPERATIVE = "EVSE_INOPERATIVE"
    FAILED = "FAILED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    REJECTED = "REJECTED"
    TIMEOUT = "TIMEOUT"
    UNKNOWN_RESERVATION = "UNKNOWN_RESERVATION"


class CommandType(StrEnum):
    """CommandType enum."""

    CANCEL_RESERVATION = "CANCEL_RESERVATION"
    RESERVE_NOW = "RESERVE_NOW"
    START_SESSION = "START_SESSION"
    STOP_SESSION = "STOP_SESSION"
    UNLOCK_CONNECTOR = "UNLOCK_CONNECTOR"


class CancelReservation(OcpiModel):
    """CancelReservation object (13.3.1)."""

    response_url: Url
    reservation_id: CiString(36)


class CommandResponse(OcpiModel):
    """CommandResponse object (13.3.2): sent in the HTTP response body."""

    result: CommandResponseType
    timeout: Int
    message: list[DisplayText] | None = None


class CommandResult(OcpiModel):
    """CommandResult object (13.3.3): POSTed to the ``response_url``."""

    result: CommandResultType
    message: list[DisplayText] | None = None


class ReserveNow(OcpiModel):
    """ReserveNow object (13.3.4)."""

    response_url: Url
    token: Token
    expiry_date: DateTime
    reservation_id: CiString(36)
    location_id: CiString(36)
    evse_uid: CiString(36) | None = None
    authorization_reference: CiString(36) | None = None


class StartSession(OcpiModel):
    """StartSession object (13.3.5).

    Enforced: ``evse_uid`` is required when ``connector_id`` is set (explicit in the spec).
    """

    response_url: Url
    token: Token
    location_id: CiString(36)
    evse_uid: CiString(36) | None = None
    connector_id: CiString(36) | None = None
    authorization_reference: CiString(36) | None = None

    @model_validator(mode="after")
    def _check_evse_for_connector(self) -> Self:
        if self.connector_id is not None and self.evse_uid is None:
            raise ValueError("evse_uid is required when connector_id is set")
        return self


class StopSession(OcpiModel):
    """StopSession object (13.3.6)."""

    response_url: Url
    session_id: CiString(36)


class UnlockConnector(OcpiModel):
    """UnlockConnector object (13.3.7)."""

    response_url: Url
    location_id: CiString(36)
    evse_uid: CiString(36)
    connector_id: CiString(36)


COMMAND_MODELS: dict[CommandType, type[OcpiModel]] = {
    CommandType.CANCEL_RESERVATION: CancelReservation,
    CommandType.RESERVE_NOW: ReserveNow,
    CommandType.START_SESSION: StartSession,
    CommandType.STOP_SESSION: StopSession,
    CommandType.UNLOCK_CONNECTOR: UnlockConnector,
}
"""Request body model for each ``CommandType`` (POST ``{commands_endpoint_url}/{command}``)."""
