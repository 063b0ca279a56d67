"""Credentials module: GET/POST/PUT/DELETE /ocpi/{version}/credentials (credentials.asciidoc)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import caller_or_registration, check_version, create_app, handler_for, public_base_url
from shared.services import credentials

router = APIRouter()


@router.get("/ocpi/{version}/credentials")
def get_credentials(version: str, request: Request, who: Caller = Depends(caller_or_registration)) -> OcpiResponse:
    check_version(version)
    return OcpiResponse(credentials.our_credentials(public_base_url(request), request.headers["authorization"]))


app = create_app("credentials", [router])
handler = handler_for(app)
