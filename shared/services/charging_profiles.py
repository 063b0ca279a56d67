"""Charging profiles as CPO, the Receiver (mod_charging_profiles.asciidoc): an eMSP (or its SCSP
through it) asks for the ActiveChargingProfile of one of our sessions (GET), sets a profile (PUT
SetChargingProfile) or clears it (DELETE).

Like commands (shared/services/commands.py, whose storage and result path this reuses): the
synchronous answer is a ChargingProfileResponse (ACCEPTED, REJECTED, UNKNOWN_SESSION, ...) with a
`timeout`; the request goes to the back office as `ocpi.command.requested` with type GET_PROFILE,
SET_PROFILE or CLEAR_PROFILE; the back office answers `ocpi.command.result` with the result object
of that type (ActiveChargingProfileResult {result, profile}, ChargingProfileResult {result},
ClearProfileResult {result}); the push pipeline POSTs it to the request's `response_url`. Their
result type has no TIMEOUT value: if the back office never answers, nothing is sent.

Only the eMSP of the session's token may ask (else UNKNOWN_SESSION, the same answer as for a session
we do not have: no oracle); a session that has ended is REJECTED.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.auth import Caller
from shared.errors import InvalidParameters
from shared.models.types import Url
from shared.models.v221.charging_profiles import SetChargingProfile
from shared.services import commands, objects, sessions
from shared.store.base import StoredObject
from shared.validation import validate

ACTIONS = {"GET": "GET_PROFILE", "PUT": "SET_PROFILE", "DELETE": "CLEAR_PROFILE"}


class _ResponseUrl(BaseModel):
    response_url: Url


def _url(value: Any) -> str:
    if not value:
        raise InvalidParameters("Invalid or missing parameters: response_url is required")
    return str(validate(_ResponseUrl, {"response_url": value}).response_url)


def receive(
    store: Any,
    who: Caller,
    from_party: tuple[str | None, str | None] | None,
    method: str,
    session_id: str,
    *,
    response_url: Any = None,
    duration: Any = None,
    body: Any = None,
) -> tuple[dict[str, Any], StoredObject | None]:
    """One request of the Receiver interface; returns (ChargingProfileResponse, the stored request
    when ACCEPTED)."""
    timeout = commands.timeout_seconds()
    kind = ACTIONS[method]
    emsp = objects.caller_party(who, "EMSP", from_party)
    if emsp is None:
        raise InvalidParameters(
            "Only an eMSP can manage charging profiles: your credentials hold no EMSP role"
        )
    if kind == "SET_PROFILE":
        req = validate(SetChargingProfile, body).to_json_dict()
    else:
        req = {"response_url": _url(response_url)}
        if kind == "GET_PROFILE":
            try:
                seconds = int(str(duration))
            except ValueError:
                raise InvalidParameters(
                    "Invalid or missing parameters: duration (seconds) is required"
                ) from None
            if seconds <= 0:
                raise InvalidParameters("Invalid or missing parameters: duration must be positive")
            req["duration"] = seconds
    commands.check_response_url(who, req["response_url"])
    found = sessions.get_own(store, session_id)
    if found is None or sessions.token_party(found.body) != emsp:
        return {"result": "UNKNOWN_SESSION", "timeout": timeout}, None
    if str(found.body.get("status")) in {"COMPLETED", "INVALID"}:
        return {"result": "REJECTED", "timeout": timeout}, None
    req["session_id"] = found.body["id"]
    cpo = (found.ref.country_code.upper(), found.ref.party_id.upper())
    stored = commands.accept(store, who, emsp, cpo, kind, req, timeout)
    if stored is None:
        return {"result": "REJECTED", "timeout": timeout}, None
    if kind == "SET_PROFILE":
        _remember_setter(store, cpo, found.body["id"], who.partner_id)
    return {"result": "ACCEPTED", "timeout": timeout}, stored


# ------------------------------------------------------------------ as CPO: ActiveChargingProfile updates
OWN_ACTIVE = "ocpi.own.active_charging_profile"  # from the back office
SETTERS = "profilesetters"


def _remember_setter(store: Any, cpo: tuple[str, str], session_id: str, partner_id: str) -> None:
    """mod_charging_profiles, Sender PUT: "The Receiver SHALL NOT call this interface for any session
    where the Sender has never successfully called the charging profile Receiver PUT interface for
    this session": remember who did."""
    from datetime import UTC, datetime

    from shared.store.base import ObjectRef

    ref = ObjectRef(SETTERS, cpo[0], cpo[1], session_id)
    found = store.get(ref)
    partners = sorted({*(found.body.get("partner_ids", []) if found else []), partner_id})
    store.put(ref, {"session_id": session_id, "partner_ids": partners}, datetime.now(UTC), collection="cmd")


def own_active_profile(store: Any, detail: Any) -> int:
    """`ocpi.own.active_charging_profile` (source `ocpi.backoffice`): `{"session_id",
    "active_charging_profile"}`: the charger's profile changed. PUT to every partner that set a
    profile on that session (push pipeline, module `activeprofiles`); returns how many."""
    from datetime import UTC, datetime

    from shared import events
    from shared.models.types import format_datetime
    from shared.models.v221.charging_profiles import ActiveChargingProfile
    from shared.store.base import ObjectRef

    if not isinstance(detail, dict) or not isinstance(detail.get("session_id"), str):
        raise InvalidParameters("ocpi.own.active_charging_profile needs session_id")
    profile = validate(ActiveChargingProfile, detail.get("active_charging_profile")).to_json_dict()
    found = sessions.get_own(store, detail["session_id"])
    if found is None:
        raise InvalidParameters(f"Unknown own session {detail['session_id'][:36]}")
    cc, pid, sid = found.ref.country_code, found.ref.party_id, found.body["id"]
    setters = store.get(ObjectRef(SETTERS, cc, pid, sid))
    partners = setters.body.get("partner_ids", []) if setters else []
    if not partners:
        return 0
    now = datetime.now(UTC)
    ref = ObjectRef(ACTIVE, cc, pid, sid)
    emsp = list(sessions.token_party(found.body))  # the session's eMSP party: OCPI-to-* of the PUT
    store.put(
        ref, {"session_id": sid, "active_charging_profile": profile, "emsp": emsp}, now, collection="cmd"
    )
    for partner_id in partners:
        events.publish(
            events.OWN_CHANGED,
            {
                "module": ACTIVE,
                "action": "put",
                "country_code": cc,
                "party_id": pid,
                "id": sid,
                "partner_id": partner_id,
                "last_updated": format_datetime(now),
            },
        )
    return len(partners)


# ------------------------------------------------------------------ as eMSP: the Sender interface
ACTIVE = "activeprofiles"
ACTIVE_RECEIVED = "ocpi.received.active_charging_profile"


def receive_active_profile(
    store: Any, who: Caller, from_party: tuple[str | None, str | None] | None, session_id: str, raw: Any
) -> None:
    """A CPO partner PUTs the ActiveChargingProfile of one of its sessions (mod_charging_profiles,
    Sender PUT): kept per (CPO party, session) and announced (`ocpi.received.active_charging_profile`)
    for our smart charging."""
    from datetime import UTC, datetime

    from shared import events
    from shared.models.v221.charging_profiles import ActiveChargingProfile
    from shared.store.base import ObjectRef

    profile = validate(ActiveChargingProfile, raw).to_json_dict()
    cpo = objects.caller_party(who, "CPO", from_party)
    if cpo is None:
        raise InvalidParameters("Only a CPO sends ActiveChargingProfiles: your credentials hold no CPO role")
    session_id = objects.path_id(session_id, "session_id")
    now = datetime.now(UTC)
    store.put(
        ObjectRef(ACTIVE, cpo[0], cpo[1], session_id),
        {"session_id": session_id, "active_charging_profile": profile},
        now,
        collection=objects.RECEIVED,
        meta=objects.received_meta(who),
    )
    events.publish(
        ACTIVE_RECEIVED,
        {
            "country_code": cpo[0],
            "party_id": cpo[1],
            "session_id": session_id,
            "partner_id": who.partner_id,
            "active_charging_profile": profile,
        },
    )
