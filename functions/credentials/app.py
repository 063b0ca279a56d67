"""Credentials module: GET/POST/PUT/DELETE /ocpi/{version}/credentials (credentials.asciidoc)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from shared.auth import Caller, presented_token
from shared.envelope import OcpiResponse
from shared.http import (
    caller_or_registration,
    check_version,
    create_app,
    handler_for,
    json_body,
    public_base_url,
)
from shared.services import credentials
from shared.store import get_store

router = APIRouter()
PATH = "/ocpi/{version}/credentials"


@router.get(PATH)
def get_credentials(
    version: str, request: Request, who: Caller = Depends(caller_or_registration)
) -> OcpiResponse:
    check_version(version)
    return OcpiResponse(
        credentials.get_credentials(
            public_base_url(request),
            who,
            presented_token(request.headers.get("authorization"), who.token_hash),
            version,
        )
    )


@router.post(PATH)
async def post_credentials(
    version: str, request: Request, who: Caller = Depends(caller_or_registration)
) -> OcpiResponse:
    check_version(version)
    body = await json_body(request)
    # The handshake calls the partner back: keep those blocking calls off the event loop.
    return OcpiResponse(
        await run_in_threadpool(
            credentials.register_partner, get_store(), public_base_url(request), version, who, body
        )
    )


@router.put(PATH)
async def put_credentials(
    version: str, request: Request, who: Caller = Depends(caller_or_registration)
) -> OcpiResponse:
    check_version(version)
    body = await json_body(request)
    return OcpiResponse(
        await run_in_threadpool(
            credentials.update_partner, get_store(), public_base_url(request), version, who, body
        )
    )


@router.delete(PATH)
def delete_credentials(version: str, who: Caller = Depends(caller_or_registration)) -> OcpiResponse:
    check_version(version)
    credentials.unregister_partner(get_store(), who)
    return OcpiResponse()


app = create_app("credentials", [router])
handler = handler_for(app)
