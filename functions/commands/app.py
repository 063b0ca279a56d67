"""Commands module (mod_commands.asciidoc).

- Receiver interface as CPO: eMSPs POST START_SESSION, STOP_SESSION, RESERVE_NOW,
  CANCEL_RESERVATION and UNLOCK_CONNECTOR; the answer is a CommandResponse, the result is POSTed to
  the request's response_url later by the push pipeline.
- Sender interface as eMSP: the response_url of a command we sent (`ocpi-admin command`), where
  the CPO POSTs the CommandResult.

Rules: shared/services/commands.py."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from shared.auth import Caller
from shared.envelope import OcpiResponse
from shared.http import create_app, from_party, handler_for, json_body, partner_request, wire
from shared.logs import logger
from shared.services import commands, push
from shared.store import get_store

router = APIRouter()
# The command types (mod_commands CommandType) and their request objects' kinds (shared/versions).
COMMAND_KINDS = ("START_SESSION", "STOP_SESSION", "RESERVE_NOW", "CANCEL_RESERVATION", "UNLOCK_CONNECTOR")


@router.post("/ocpi/{version}/receiver/commands/{command}")
async def receive(command: str, request: Request, who: Caller = Depends(partner_request)) -> OcpiResponse:
    kind = command.lower() if command.upper() in COMMAND_KINDS else None
    body = await json_body(request, kind)
    answer, stored = commands.receive(get_store(), who, from_party(request), command, body)
    # The timeout: a delivery message delayed until then; it sends TIMEOUT unless a result came.
    if stored is not None and not push.queue_timeout_check(who.partner_id, stored.ref, answer["timeout"]):
        logger.error("command timeout check not queued", extra={"command_id": stored.ref.object_id})
    return OcpiResponse(wire(request, "command_response", answer))


@router.post("/ocpi/{version}/sender/commands/{command}/{command_id}")
async def result(
    command: str, command_id: str, request: Request, who: Caller = Depends(partner_request)
) -> OcpiResponse:
    body = await json_body(request, "command_result")
    commands.receive_result(get_store(), who, command, command_id, body)
    return OcpiResponse(None)


app = create_app("commands", [router])
handler = handler_for(app)
