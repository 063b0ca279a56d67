"""OCPI status codes and the one exception hierarchy every module raises.

Status codes: OCPI 2.2.1 `status_codes.asciidoc`. Each exception carries the OCPI status code and
the HTTP status it maps to; `shared.api` turns any of them into the response envelope in one place.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class StatusCode(IntEnum):
    SUCCESS = 1000
    CLIENT_ERROR = 2000
    INVALID_PARAMETERS = 2001
    NOT_ENOUGH_INFORMATION = 2002
    UNKNOWN_LOCATION = 2003
    UNKNOWN_TOKEN = 2004
    SERVER_ERROR = 3000
    CLIENT_API_ERROR = 3001
    UNSUPPORTED_VERSION = 3002
    NO_MATCHING_ENDPOINTS = 3003
    HUB_ERROR = 4000
    HUB_UNKNOWN_RECEIVER = 4001
    HUB_TIMEOUT = 4002
    HUB_CONNECTION_PROBLEM = 4003


class OcpiError(Exception):
    """Base of every error that is answered in the OCPI envelope."""

    status_code: StatusCode = StatusCode.CLIENT_ERROR
    http_status: int = 400
    default_message = "Client error"

    def __init__(
        self,
        message: str | None = None,
        *,
        http_status: int | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        if http_status is not None:
            self.http_status = http_status
        self.data = data
        self.headers = headers or {}
        super().__init__(self.message)


# ---------------------------------------------------------------- 2xxx client errors
class ClientError(OcpiError):
    """2xxx. A request that parsed as JSON, was authenticated and addresses an existing resource has
    reached the OCPI layer: it is answered with HTTP 200 and the OCPI status code, never an HTTP
    error (status_codes.asciidoc). Subclasses name the exceptions the spec makes (404 on GET, 405)."""

    status_code = StatusCode.CLIENT_ERROR
    http_status = 200


class InvalidParameters(ClientError):
    """2001: invalid or missing parameters (also invalid JSON, model violations)."""

    status_code = StatusCode.INVALID_PARAMETERS
    default_message = "Invalid or missing parameters"


class NotEnoughInformation(ClientError):
    status_code = StatusCode.NOT_ENOUGH_INFORMATION
    default_message = "Not enough information"


class UnknownLocation(ClientError):
    status_code = StatusCode.UNKNOWN_LOCATION
    http_status = 404
    default_message = "Unknown location"


class UnknownToken(ClientError):
    status_code = StatusCode.UNKNOWN_TOKEN
    http_status = 404
    default_message = "Unknown token"


class NotFound(ClientError):
    """Unknown object (other than a location or token): HTTP 404 with generic 2000."""

    http_status = 404
    default_message = "Object not found"


class BadRequest(ClientError):
    """Transport-level client error (e.g. invalid JSON): HTTP 400 + 2001 (status_codes.asciidoc)."""

    status_code = StatusCode.INVALID_PARAMETERS
    http_status = 400
    default_message = "Bad request"


class Unauthorized(ClientError):
    """Missing or unknown credentials token: HTTP 401 (transport_and_format, Authorization header)."""

    http_status = 401
    default_message = "Unauthorized"


class MethodNotAllowed(ClientError):
    http_status = 405
    default_message = "Method not allowed"


class PayloadTooLarge(ClientError):
    http_status = 413
    default_message = "Request body too large"


# ---------------------------------------------------------------- 3xxx server errors
class ServerError(OcpiError):
    status_code = StatusCode.SERVER_ERROR
    http_status = 500
    default_message = "Server error"


class ClientApiError(ServerError):
    """3001: we could not use the other party's API (e.g. the credentials callback failed)."""

    status_code = StatusCode.CLIENT_API_ERROR
    http_status = 200
    default_message = "Unable to use the client's API"


class UnsupportedVersion(ServerError):
    status_code = StatusCode.UNSUPPORTED_VERSION
    http_status = 200
    default_message = "Unsupported version"


class NoMatchingEndpoints(ServerError):
    status_code = StatusCode.NO_MATCHING_ENDPOINTS
    http_status = 200
    default_message = "No matching endpoints or expected endpoints missing"


class ServiceUnavailable(ServerError):
    """Our own dependency (DynamoDB throttling etc.) failed: retryable for the client."""

    http_status = 503
    default_message = "Service temporarily unavailable"


# ---------------------------------------------------------------- 4xxx hub errors
class HubError(OcpiError):
    status_code = StatusCode.HUB_ERROR
    http_status = 200
    default_message = "Hub error"
