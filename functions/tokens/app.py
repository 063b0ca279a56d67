"""Tokens module (mod_tokens.asciidoc): sender (our own tokens, as eMSP, with real-time
authorization) and receiver (eMSP partners push theirs to us, as CPO: GET/PUT/PATCH, `?type=`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import (
    create_app,
    handler_for,
    json_body,
    outcome_response,
    page_params,
    paged_response,
    partner_request,
    wire,
)
from shared.services import objects, tokens
from shared.store import get_store

router = APIRouter()
RECEIVER = "/ocpi/{version}/receiver/tokens/{country_code}/{party_id}/{token_uid}"


@router.get("/ocpi/{version}/sender/tokens")
def list_tokens(request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    params = page_params(request)
    items, page = tokens.list_own(get_store(), who, params)
    return paged_response(request, items, params, page, "token")


@router.post("/ocpi/{version}/sender/tokens/{token_uid}/authorize")
async def authorize(token_uid: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    raw = await request.body()
    body = await json_body(request, "location_references") if raw.strip() else None
    info = tokens.authorize(get_store(), who, token_uid, request.query_params.get("type"), body)
    return OcpiResponse(wire(request, "authorization_info", info))


@router.get(RECEIVER)
def rx_get(
    country_code: str, party_id: str, token_uid: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    variant = tokens.token_type(request.query_params.get("type"))
    found = objects.get_received(get_store(), tokens.KIND, who, country_code, party_id, token_uid, variant)
    return OcpiResponse(wire(request, "token", found.body))


@router.put(RECEIVER)
async def rx_put(
    country_code: str, party_id: str, token_uid: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    variant = tokens.token_type(request.query_params.get("type"))
    body = await json_body(request, "token")
    return outcome_response(
        objects.put_received(get_store(), tokens.KIND, who, country_code, party_id, token_uid, body, variant)
    )


@router.patch(RECEIVER)
async def rx_patch(
    country_code: str, party_id: str, token_uid: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    variant = tokens.token_type(request.query_params.get("type"))
    body = await json_body(request, "token_patch")
    return outcome_response(
        objects.patch_received(
            get_store(), tokens.KIND, who, country_code, party_id, token_uid, body, variant
        )
    )


app = create_app("tokens", [router])
handler = handler_for(app)
