"""Hub client info module (mod_hub_client_info.asciidoc), Receiver interface for every own role:
a hub partner PUTs the connection status of the parties behind it and may GET it back. The rules
(only a HUB may call, ids, staleness, the mirror the push pipeline reads, the reconnect event) are
in shared/services/hubclientinfo.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import create_app, handler_for, json_body, outcome_response, partner_request
from shared.services import hubclientinfo
from shared.store import get_store

router = APIRouter()
RECEIVER = "/ocpi/{version}/receiver/hubclientinfo/{country_code}/{party_id}"


@router.get(RECEIVER)
def rx_get(country_code: str, party_id: str, who: Caller = Depends(partner_request)) -> OcpiResponse:
    return OcpiResponse(hubclientinfo.get(get_store(), who, country_code, party_id).body)


@router.put(RECEIVER)
async def rx_put(
    country_code: str, party_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request)
    return outcome_response(hubclientinfo.put(get_store(), who, country_code, party_id, body))


app = create_app("hubclientinfo", [router])
handler = handler_for(app)
