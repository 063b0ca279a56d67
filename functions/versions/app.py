"""Versions module: GET /ocpi/versions and GET /ocpi/{version} (version details)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import caller_or_registration, check_version, create_app, handler_for, public_base_url
from shared.services import versions

router = APIRouter()


@router.get("/ocpi/versions")
def get_versions(request: Request, who: Caller = Depends(caller_or_registration)) -> OcpiResponse:
    return OcpiResponse(versions.version_list(public_base_url(request)))


@router.get("/ocpi/{version}")
def get_version_details(
    version: str, request: Request, who: Caller = Depends(caller_or_registration)
) -> OcpiResponse:
    details = versions.version_details(public_base_url(request), check_version(version), who.partner)
    return OcpiResponse(details)


app = create_app("versions", [router])
handler = handler_for(app)
