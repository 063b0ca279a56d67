"""CDRs module (mod_cdrs.asciidoc): the sender interface (our own CDRs, as CPO: the list for the
caller's eMSP party) and the receiver interface (as eMSP: a CPO partner POSTs a CDR once and may GET
it back at the `Location` we answer). CDRs are never replaced or deleted: PUT, PATCH and DELETE are
405. Rules: shared/services/cdrs.py."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import (
    create_app,
    handler_for,
    json_body,
    page_params,
    paged_response,
    partner_request,
    public_base_url,
    routing_headers,
    wire,
)
from shared.services import cdrs, objects
from shared.store import get_store
from shared.store.base import ObjectRef

router = APIRouter()
SENDER = "/ocpi/{version}/sender/cdrs"
RECEIVER = "/ocpi/{version}/receiver/cdrs"


def cdr_url(request: Request, version: str, ref: ObjectRef) -> str:
    """Our URL of a received CDR (the `Location` of the POST): the receiver GET below."""
    parts = (ref.country_code, ref.party_id, ref.object_id)
    return f"{public_base_url(request)}/ocpi/{version}/receiver/cdrs/" + "/".join(
        quote(p, safe="") for p in parts
    )


# ------------------------------------------------------------------ sender interface
@router.get(SENDER)
def list_cdrs(request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    params = page_params(request)  # mod_cdrs: date_from is optional
    routing = routing_headers(request)
    party = objects.caller_party(who, "EMSP", (routing.from_country_code, routing.from_party_id))
    items, page = cdrs.list_own(get_store(), party, params)
    return paged_response(request, items, params, page, "cdr")


# ------------------------------------------------------------------ receiver interface
@router.post(RECEIVER)
async def rx_post(version: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    body = await json_body(request, "cdr")
    result = cdrs.create_received(get_store(), who, body)
    # The same answer for the first POST and an identical replay (shared/services/cdrs.py).
    return OcpiResponse(
        None, http_status=201, headers={"Location": cdr_url(request, version, result.extra["ref"])}
    )


@router.get(RECEIVER + "/{country_code}/{party_id}/{cdr_id}")
def rx_get(
    country_code: str, party_id: str, cdr_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    found = cdrs.get_received(get_store(), who, country_code, party_id, cdr_id)
    return OcpiResponse(wire(request, "cdr", found))


app = create_app("cdrs", [router])
handler = handler_for(app)
