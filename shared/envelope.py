"""The OCPI response envelope (transport_and_format.asciidoc, "Response format")."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from shared import jsonutil
from shared.errors import OcpiError, StatusCode
from shared.logs import bind
from shared.timeutil import now_utc, timestamp

__all__ = ["OcpiResponse", "envelope", "error_response", "now_utc", "timestamp"]


def _plain(data: Any) -> Any:
    if hasattr(data, "to_json_dict"):
        return data.to_json_dict()
    if isinstance(data, list):
        return [_plain(d) for d in data]
    return data


def envelope(data: Any = None, status_code: int = StatusCode.SUCCESS, message: str | None = None) -> dict:
    body: dict[str, Any] = {}
    if data is not None:
        body["data"] = _plain(data)
    body["status_code"] = int(status_code)
    if message:
        body["status_message"] = message
    body["timestamp"] = timestamp()
    return body


class OcpiResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        data: Any = None,
        *,
        status_code: int = StatusCode.SUCCESS,
        message: str | None = None,
        http_status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        bind(ocpi_status=int(status_code))  # for the request's log line and metric (shared/http.py)
        super().__init__(
            content=jsonutil.dumps(envelope(data, status_code, message)),
            status_code=http_status,
            headers=headers,
            media_type=self.media_type,
        )


def error_response(err: OcpiError) -> OcpiResponse:
    return OcpiResponse(
        err.data,
        status_code=err.status_code,
        message=err.message,
        http_status=err.http_status,
        headers=err.headers,
    )
