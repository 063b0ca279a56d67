"""Tariffs module (mod_tariffs.asciidoc): sender (our own tariffs, as CPO) and receiver (CPO
partners push theirs to us, as eMSP: GET/PUT/DELETE)."""

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
from shared.services import objects, tariffs
from shared.store import get_store

router = APIRouter()
RECEIVER = "/ocpi/{version}/receiver/tariffs/{country_code}/{party_id}/{tariff_id}"


@router.get("/ocpi/{version}/sender/tariffs")
def list_tariffs(request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    params = page_params(request)
    items, page = tariffs.list_own(get_store(), params)
    return paged_response(request, items, params, page, "tariff")


@router.get(RECEIVER)
def rx_get(
    country_code: str, party_id: str, tariff_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    found = objects.get_received(get_store(), tariffs.KIND, who, country_code, party_id, tariff_id)
    return OcpiResponse(wire(request, "tariff", found.body))


@router.put(RECEIVER)
async def rx_put(
    country_code: str, party_id: str, tariff_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request, "tariff")
    return outcome_response(
        objects.put_received(get_store(), tariffs.KIND, who, country_code, party_id, tariff_id, body)
    )


@router.delete(RECEIVER)
def rx_delete(
    country_code: str, party_id: str, tariff_id: str, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    return outcome_response(
        objects.delete_received(get_store(), tariffs.KIND, who, country_code, party_id, tariff_id)
    )


app = create_app("tariffs", [router])
handler = handler_for(app)
