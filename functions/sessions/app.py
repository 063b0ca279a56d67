"""Sessions module (mod_sessions.asciidoc): the sender interface (our own sessions, as CPO: the list
for the caller's eMSP party, `date_from` required; charging preferences) and the receiver interface
(CPO partners push theirs to us, as eMSP: GET/PUT/PATCH). Rules: shared/services/sessions.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import (
    create_app,
    from_party,
    handler_for,
    json_body,
    outcome_response,
    page_params,
    paged_response,
    partner_request,
    wire,
)
from shared.services import objects, sessions
from shared.store import get_store

router = APIRouter()
SENDER = "/ocpi/{version}/sender/sessions"
RECEIVER = "/ocpi/{version}/receiver/sessions/{country_code}/{party_id}/{session_id}"


# ------------------------------------------------------------------ sender interface
@router.get(SENDER)
def list_sessions(request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    params = page_params(request, require_date_from=True)  # mod_sessions: date_from is required
    party = objects.caller_party(who, "EMSP", from_party(request))
    items, page = sessions.list_own(get_store(), party, params)
    return paged_response(request, items, params, page, "session")


@router.put(SENDER + "/{session_id}/charging_preferences")
async def charging_preferences(
    session_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request)
    answer = sessions.set_charging_preferences(get_store(), who, from_party(request), session_id, body)
    return OcpiResponse(answer)


# ------------------------------------------------------------------ receiver interface
@router.get(RECEIVER)
def rx_get(
    country_code: str,
    party_id: str,
    session_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    found = sessions.get_received(get_store(), who, country_code, party_id, session_id)
    return OcpiResponse(wire(request, "session", found))


@router.put(RECEIVER)
async def rx_put(
    country_code: str,
    party_id: str,
    session_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "session")
    return outcome_response(sessions.put_session(get_store(), who, country_code, party_id, session_id, body))


@router.patch(RECEIVER)
async def rx_patch(
    country_code: str,
    party_id: str,
    session_id: str,
    request: Request,
    who: Caller = Depends(partner_request),
) -> OcpiResponse:
    body = await json_body(request, "session_patch")
    return outcome_response(
        sessions.patch_session(get_store(), who, country_code, party_id, session_id, body)
    )


app = create_app("sessions", [router])
handler = handler_for(app)
