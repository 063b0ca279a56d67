"""Charging profiles module (mod_charging_profiles.asciidoc).

- Receiver interface as CPO: GET `{session_id}?duration=&response_url=`, PUT `{session_id}`
  (SetChargingProfile), DELETE `{session_id}?response_url=`; each answered with a
  ChargingProfileResponse, the result POSTed to the response_url later by the push pipeline.
- Sender interface as eMSP: POST of a result to the response_url of a request we sent
  (`ocpi-admin profile`), PUT `{session_id}` of an ActiveChargingProfile by the CPO.

Rules: shared/services/charging_profiles.py, shared/services/commands.py."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import create_app, from_party, handler_for, json_body, partner_request
from shared.logs import logger
from shared.services import charging_profiles, commands, push
from shared.store import get_store

router = APIRouter()
RECEIVER = "/ocpi/{version}/receiver/chargingprofiles/{session_id}"


def _answer(who: Caller, answer: dict[str, Any], stored: Any) -> OcpiResponse:
    # When the result is due (see commands): a delayed delivery sends it, or nothing if none came.
    if stored is not None and not push.queue_timeout_check(who.partner_id, stored.ref, answer["timeout"]):
        logger.error("charging profile timeout check not queued", extra={"command_id": stored.ref.object_id})
    return OcpiResponse(answer)


@router.get(RECEIVER)
def get_profile(session_id: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    q = request.query_params
    answer, stored = charging_profiles.receive(
        get_store(),
        who,
        from_party(request),
        "GET",
        session_id,
        response_url=q.get("response_url"),
        duration=q.get("duration"),
    )
    return _answer(who, answer, stored)


@router.put(RECEIVER)
async def set_profile(
    session_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request)
    answer, stored = charging_profiles.receive(
        get_store(), who, from_party(request), "PUT", session_id, body=body
    )
    return _answer(who, answer, stored)


@router.delete(RECEIVER)
def clear_profile(session_id: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    answer, stored = charging_profiles.receive(
        get_store(),
        who,
        from_party(request),
        "DELETE",
        session_id,
        response_url=request.query_params.get("response_url"),
    )
    return _answer(who, answer, stored)


# ------------------------------------------------------------------ Sender interface (as eMSP)
@router.post("/ocpi/{version}/sender/chargingprofiles/{kind}/{command_id}")
async def result(
    kind: str, command_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    """The response_url of a request we sent (`ocpi-admin profile`): the CPO POSTs its result."""
    body = await json_body(request)
    commands.receive_result(get_store(), who, kind, command_id, body)
    return OcpiResponse(None)


@router.put("/ocpi/{version}/sender/chargingprofiles/{session_id}")
async def active_profile(
    session_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request)
    charging_profiles.receive_active_profile(get_store(), who, from_party(request), session_id, body)
    return OcpiResponse(None)


app = create_app("chargingprofiles", [router])
handler = handler_for(app)
