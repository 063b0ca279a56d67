"""Commands module as CPO, the Receiver (mod_commands.asciidoc): eMSPs ask our chargers to start or
stop a session, reserve, cancel a reservation or unlock a connector.

Asynchronous (mod_commands, Flow): the POST is answered at once with a CommandResponse (ACCEPTED,
REJECTED, NOT_SUPPORTED, UNKNOWN_SESSION) and a `timeout`; the real result is POSTed to the
request's `response_url` later.

1. :func:`receive` checks the request against what we hold: the location, EVSE and connector exist
   and are ours (unknown: OCPI 2003, as the spec's UNLOCK_CONNECTOR example shows); `connector_id`
   is sent when the EVSE has START_SESSION_CONNECTOR_REQUIRED; a reserved EVSE is RESERVABLE; the
   session to stop is ours and the caller's (its `cdr_token` party, else UNKNOWN_SESSION); the
   reservation to cancel is the caller's; the token of START_SESSION / RESERVE_NOW is the caller's
   own ("An eMSP ... SHALL only use Tokens that are owned by this eMSP"). The token is NOT
   authorized by us (the eMSP did that, mod_commands StartSession).
2. An accepted command is stored (module `commands`, our CPO party, a fresh unguessable id) and
   announced on the bus as `ocpi.command.requested` for the back office (which talks OCPP). A
   delivery message delayed by the timeout is queued at once (:func:`timeout_delivery`).
3. The back office answers with `ocpi.command.result` (source `ocpi.backoffice`, detail
   `{"command_id", "result": CommandResultType, ["message": [DisplayText]]}`), handled by the ingest
   function (:func:`record_result`). The first result of a command wins (a conditional create):
   a duplicate or a result after the timeout is not applied (`late`).
4. Either way the result is sent by the push pipeline (shared/services/push.py: module `commands`,
   addressed to the partner that sent the command): POST CommandResult to the `response_url`,
   retried with backoff, dead-lettered if the partner never takes it. If no result arrived when the
   delayed message comes, the delivery records TIMEOUT itself and POSTs that.

Reservations are kept per eMSP party and `reservation_id` (mod_commands ReserveNow: the id is the
eMSP's; a RESERVE_NOW with a known id replaces that reservation).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import events
from shared.auth import Caller
from shared.config import get_settings
from shared.errors import InvalidParameters, UnknownLocation
from shared.logs import logger
from shared.models.types import format_datetime, parse_datetime
from shared.models.v221.charging_profiles import (
    ActiveChargingProfileResult,
    ChargingProfileResult,
    ClearProfileResult,
)
from shared.models.v221.commands import COMMAND_MODELS, CommandResult, CommandType
from shared.services import locations, objects, sessions
from shared.store.base import ObjectRef, StoredObject, WriteResult
from shared.validation import validate
from shared.versions import convert

MODULE = "commands"
RESULTS = "cmdresults"  # the result of a command: created once (first result wins)
RESERVATIONS = "reservations"
COLLECTION = "cmd"
REQUESTED = "ocpi.command.requested"
RESULT = "ocpi.command.result"  # from the back office
LATE = "ocpi.command.late_result"  # a result that came after another one (or after the timeout)
DEFAULT_TIMEOUT = 60  # seconds the back office has to answer (OCPI_COMMAND_TIMEOUT)
_FINISHED = {"COMPLETED", "INVALID"}
#: Result object of each request type that is not a command (mod_charging_profiles 11.3).
RESULT_MODELS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "GET_PROFILE": (ActiveChargingProfileResult, ("result", "profile")),
    "SET_PROFILE": (ChargingProfileResult, ("result",)),
    "CLEAR_PROFILE": (ClearProfileResult, ("result",)),
}
#: Their ChargingProfileResultType has no TIMEOUT: nothing is POSTed when the back office never
#: answers; the Sender assumes so after `timeout` (mod_charging_profiles, ChargingProfileResponse).
NO_TIMEOUT_RESULT = frozenset(RESULT_MODELS)
_DOWN = {"INOPERATIVE", "OUTOFORDER", "REMOVED"}


def timeout_seconds() -> int:
    import os

    return int(os.environ.get("OCPI_COMMAND_TIMEOUT", DEFAULT_TIMEOUT))


def _answer(result: str, timeout: int, message: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"result": result, "timeout": timeout}
    if message:
        out["message"] = [{"language": "en", "text": message[:512]}]
    return out


def _own_cpo_parties() -> list[tuple[str, str]]:
    return [
        (p.country_code.upper(), p.party_id.upper()) for p in get_settings().own_parties if p.role == "CPO"
    ]


def _location(store: Any, location_id: str) -> StoredObject:
    for cc, pid in _own_cpo_parties():
        found = store.get(objects.ref_of(locations.KIND, cc, pid, location_id))
        if found is not None and found.collection == objects.OWN:
            return found
    raise UnknownLocation(f"Unknown location {location_id}")


def _evse(location: dict[str, Any], evse_uid: str) -> dict[str, Any]:
    evse = next((e for e in location.get("evses") or [] if str(e["uid"]).upper() == evse_uid.upper()), None)
    if evse is None:
        raise UnknownLocation(f"Unknown EVSE {evse_uid} at location {location['id']}")
    return evse


def _connector(evse: dict[str, Any], connector_id: str) -> dict[str, Any]:
    conn = next(
        (c for c in evse.get("connectors") or [] if str(c["id"]).upper() == connector_id.upper()), None
    )
    if conn is None:
        raise UnknownLocation(f"Unknown connector {connector_id} at EVSE {evse['uid']}")
    return conn


def check_response_url(who: Caller, url: str) -> None:
    """We POST results there with the partner's token: it must be on the partner's own platform (a
    host of the endpoints it registered), never an arbitrary address (2001). Partners that
    registered no endpoints are not checked."""
    from urllib.parse import urlsplit

    hosts = {
        urlsplit(str(e.get("url", ""))).hostname
        for e in (who.partner or {}).get("endpoints") or []
        if isinstance(e, dict)
    } - {None}
    if hosts and urlsplit(url).hostname not in hosts:
        raise InvalidParameters("response_url must point at your own platform (a host of your endpoints)")


def reservation_ref(cpo: tuple[str, str], emsp: tuple[str, str], reservation_id: str) -> ObjectRef:
    return ObjectRef(RESERVATIONS, cpo[0], cpo[1], f"{emsp[0]}*{emsp[1]}*{reservation_id}".upper())


def receive(
    store: Any,
    who: Caller,
    from_party: tuple[str | None, str | None] | None,
    command: str,
    raw: Any,
    *,
    now: datetime | None = None,
) -> tuple[dict[str, Any], StoredObject | None]:
    """Check one command; returns (the CommandResponse, the stored command when ACCEPTED)."""
    timeout = timeout_seconds()
    try:
        ctype = CommandType(str(command).upper())
    except ValueError:
        return _answer("NOT_SUPPORTED", timeout, f"Unknown command {str(command)[:32]}"), None
    if not _own_cpo_parties():
        return _answer("NOT_SUPPORTED", timeout, "We operate no charge points"), None
    emsp = objects.caller_party(who, "EMSP", from_party)
    if emsp is None:
        raise InvalidParameters("Only an eMSP can send commands: your credentials hold no EMSP role")
    req = validate(COMMAND_MODELS[ctype], raw).to_json_dict()
    check_response_url(who, req["response_url"])

    def reject(message: str, result: str = "REJECTED") -> tuple[dict[str, Any], None]:
        return _answer(result, timeout, message), None

    token = req.get("token")
    if token is not None and (str(token["country_code"]).upper(), str(token["party_id"]).upper()) != emsp:
        return reject("The token is not one of yours (mod_commands: only own tokens)")

    cpo: tuple[str, str]
    extra: dict[str, Any] = {}
    if ctype in (CommandType.START_SESSION, CommandType.RESERVE_NOW, CommandType.UNLOCK_CONNECTOR):
        found = _location(store, req["location_id"])
        cpo = (found.ref.country_code.upper(), found.ref.party_id.upper())
        location = locations.assemble(found)
        evse = _evse(location, req["evse_uid"]) if req.get("evse_uid") else None
        conn = _connector(evse, req["connector_id"]) if evse is not None and req.get("connector_id") else None
        if evse is not None and str(evse.get("status")) in _DOWN:
            return reject(f"EVSE {evse['uid']} is {evse['status']}")
        caps = set(evse.get("capabilities") or []) if evse is not None else set()
        if ctype == CommandType.START_SESSION:
            if evse is not None and "START_SESSION_CONNECTOR_REQUIRED" in caps and conn is None:
                return reject(f"EVSE {evse['uid']} needs a connector_id (START_SESSION_CONNECTOR_REQUIRED)")
            if evse is not None and "REMOTE_START_STOP_CAPABLE" not in caps:
                return reject(f"EVSE {evse['uid']} cannot be started remotely")
        if ctype == CommandType.RESERVE_NOW:
            if evse is not None and "RESERVABLE" not in caps:
                return reject(f"EVSE {evse['uid']} cannot be reserved")
            extra["reservation"] = reservation_ref(cpo, emsp, req["reservation_id"]).object_id
        if ctype == CommandType.UNLOCK_CONNECTOR and "UNLOCK_CAPABLE" not in caps:
            return reject(f"EVSE {req['evse_uid']} cannot unlock its connectors remotely")
    elif ctype == CommandType.STOP_SESSION:
        found_session = sessions.get_own(store, req["session_id"])
        if found_session is None or sessions.token_party(found_session.body) != emsp:
            return reject(f"Unknown session {req['session_id']}", "UNKNOWN_SESSION")
        if str(found_session.body.get("status")) in _FINISHED:
            return reject(f"Session {req['session_id']} has ended")
        cpo = (found_session.ref.country_code.upper(), found_session.ref.party_id.upper())
    else:  # CANCEL_RESERVATION: the caller's reservation, at one of our CPO parties
        held = None
        for party in _own_cpo_parties():
            held = store.get(reservation_ref(party, emsp, req["reservation_id"]))
            if held is not None:
                cpo = party
                break
        if held is None:
            return reject(f"Unknown reservation {req['reservation_id']}")
        extra["reservation"] = held.ref.object_id

    stored = accept(store, who, emsp, cpo, ctype.value, req, timeout, extra, now=now)
    if stored is None:
        return reject("The command could not be forwarded to the charge point, retry")
    if ctype == CommandType.RESERVE_NOW:
        # The reservation as the eMSP knows it (a RESERVE_NOW with a known id replaces it).
        store.put(
            reservation_ref(cpo, emsp, req["reservation_id"]),
            {
                "command_id": stored.ref.object_id,
                **{k: v for k, v in req.items() if k != "response_url"},
                "last_updated": stored.body["last_updated"],
            },
            parse_datetime(stored.body["last_updated"]),
            collection=COLLECTION,
        )
    return _answer("ACCEPTED", timeout), stored


def accept(
    store: Any,
    who: Caller,
    emsp: tuple[str, str],
    cpo: tuple[str, str],
    kind: str,
    req: dict[str, Any],
    timeout: int,
    extra: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
) -> StoredObject | None:
    """Store an accepted request (a command, or a charging profile request: shared/services/
    charging_profiles.py) under a fresh unguessable id and announce it to the back office
    (`ocpi.command.requested`); None (nothing kept) when the bus did not take it."""
    now = now or datetime.now(UTC)
    command_id = secrets.token_hex(16)
    body = {
        "id": command_id,
        "type": kind,
        "request": req,
        "response_url": req["response_url"],
        "partner_id": who.partner_id,
        "emsp_country_code": emsp[0],
        "emsp_party_id": emsp[1],
        "timeout_at": format_datetime(now + timedelta(seconds=timeout)),
        "last_updated": format_datetime(now),
        **(extra or {}),
    }
    ref = ObjectRef(MODULE, cpo[0], cpo[1], command_id)
    store.put(ref, body, now, collection=COLLECTION)
    detail = {
        "command_id": command_id,
        "type": kind,
        "country_code": cpo[0],
        "party_id": cpo[1],
        "partner_id": who.partner_id,
        "emsp_country_code": emsp[0],
        "emsp_party_id": emsp[1],
        "timeout": timeout,
        "request": {k: v for k, v in req.items() if k != "response_url"},
    }
    if not events.publish(REQUESTED, detail):
        store.delete(ref)  # the back office will never hear of it: do not accept it
        return None
    return store.get(ref)


def get_command(store: Any, command_id: str) -> StoredObject | None:
    for cc, pid in _own_cpo_parties():
        found = store.get(ObjectRef(MODULE, cc, pid, command_id))
        if found is not None:
            return found
    return None


def result_of(store: Any, ref: ObjectRef) -> dict[str, Any] | None:
    found = store.get(ObjectRef(RESULTS, ref.country_code, ref.party_id, ref.object_id))
    return found.body if found is not None else None


def _set_result(store: Any, ref: ObjectRef, result: dict[str, Any], source: str, now: datetime) -> bool:
    """Record the command's result once; False when one was already recorded."""
    body = {**result, "source": source, "last_updated": format_datetime(now)}
    outcome, _ = store.create(
        ObjectRef(RESULTS, ref.country_code, ref.party_id, ref.object_id), body, now, collection=COLLECTION
    )
    return outcome is WriteResult.CREATED


def record_result(store: Any, detail: Any, now: datetime | None = None) -> str:
    """An `ocpi.command.result` from the back office: `applied`, or `late` (a result was recorded
    already: a duplicate, or one after our TIMEOUT). Unknown commands are InvalidParameters."""
    if not isinstance(detail, dict) or not isinstance(detail.get("command_id"), str):
        raise InvalidParameters("ocpi.command.result needs command_id")
    found = get_command(store, detail["command_id"])
    if found is None:
        raise InvalidParameters(f"Unknown command {detail['command_id'][:40]}")
    model, names = RESULT_MODELS.get(found.body["type"], (CommandResult, ("result", "message")))
    result = validate(model, {k: v for k, v in detail.items() if k in names}).to_json_dict()
    now = now or datetime.now(UTC)
    if not _set_result(store, found.ref, result, "backoffice", now):
        events.publish(LATE, {"command_id": found.ref.object_id, "result": result["result"]})
        return "late"
    announce(found.ref, found.body, format_datetime(now))
    return "applied"


def announce(ref: ObjectRef, command: dict[str, Any], last_updated: str) -> None:
    """`ocpi.own.changed` for a command whose result is known: the push pipeline POSTs it to the
    partner that sent the command (`partner_id`)."""
    events.publish(
        events.OWN_CHANGED,
        {
            "module": MODULE,
            "action": "put",
            "country_code": ref.country_code,
            "party_id": ref.party_id,
            "id": ref.object_id,
            "partner_id": command["partner_id"],
            "last_updated": last_updated,
        },
    )


def ensure_result(store: Any, ref: ObjectRef, now: datetime | None = None) -> dict[str, Any] | None:
    """The command's result, recording TIMEOUT if none came and the timeout has passed; None while
    the back office still has time."""
    found = result_of(store, ref)
    if found is not None:
        return found
    command = store.get(ref)
    if command is None:
        return None
    now = now or datetime.now(UTC)
    if format_datetime(now) < command.body["timeout_at"]:
        return None
    if command.body["type"] in NO_TIMEOUT_RESULT:
        _set_result(store, ref, {"result": None}, "timeout", now)  # closes it: a later answer is late
        return result_of(store, ref)
    _set_result(store, ref, {"result": "TIMEOUT"}, "timeout", now)
    return result_of(store, ref)


def seconds_left(store: Any, ref: ObjectRef, now: datetime | None = None) -> int:
    from shared.models.types import parse_datetime

    command = store.get(ref)
    if command is None:
        return 0
    left = parse_datetime(command.body["timeout_at"]) - (now or datetime.now(UTC))
    return max(0, int(left.total_seconds()) + 1)


# ------------------------------------------------------------------ as eMSP: we command a partner's chargers
SENT = "sentcmds"  # commands we sent (our EMSP party, the id in our response_url)
SENT_RESULTS = "sentcmdresults"
RESULT_RECEIVED = "ocpi.command.result_received"


def sender_url(base_url: str, version: str, kind: str, command_id: str) -> str:
    """Our response_url: the Sender interface URL plus the request type and an unguessable id
    (mod_commands 13.1 and mod_charging_profiles: "the Sender can make some unique identifier part
    of the response_url")."""
    module = "chargingprofiles" if kind in RESULT_MODELS else "commands"
    return f"{base_url}/ocpi/{version}/sender/{module}/{kind}/{command_id}"


def _own_emsp() -> tuple[str, str]:
    for p in get_settings().own_parties:
        if p.role == "EMSP":
            return p.country_code.upper(), p.party_id.upper()
    raise InvalidParameters("We have no EMSP party to send commands from")


def send(
    store: Any,
    base_url: str,
    partner_id: str,
    kind: str,
    request: dict[str, Any] | None = None,
    *,
    session_id: str | None = None,
    duration: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Send a command (START_SESSION, ...) or a charging profile request (SET_PROFILE with
    ``request`` = {"charging_profile"}, GET_PROFILE with ``duration``, CLEAR_PROFILE; all with
    ``session_id``) to a CPO partner; returns {"command_id", "response"}. We set the response_url."""
    from shared.client import OcpiClient, OcpiClientError
    from shared.errors import ClientApiError, NoMatchingEndpoints
    from shared.models.v221.charging_profiles import SetChargingProfile
    from shared.services.credentials import STATUS_REGISTERED, endpoint_url, outbound_token
    from shared.services.push import partner_parties

    kind = str(kind).upper()
    profile = kind in RESULT_MODELS
    if not profile:
        kind = CommandType(kind).value
    elif not session_id:
        raise InvalidParameters(f"{kind} needs a session_id")
    partner = store.get_partner(partner_id)
    if not partner or partner.get("status") != STATUS_REGISTERED:
        raise InvalidParameters(f"Partner {partner_id} is not registered")
    module = "chargingprofiles" if profile else "commands"
    url = endpoint_url(partner, module, "RECEIVER")
    cpo = next(iter(partner_parties(partner, "CPO")), None)
    if not url or cpo is None:
        raise NoMatchingEndpoints(f"Partner {partner_id} offers no {module} Receiver interface")
    emsp = _own_emsp()
    try:
        token = outbound_token(partner)  # opened before anything is stored: a KMS failure leaves no trace
    except OcpiClientError as err:
        raise ClientApiError(f"The request was not sent: {err.message[:300]}") from err
    command_id = secrets.token_hex(16)
    version = str(partner.get("version") or "2.2.1")
    response_url = sender_url(base_url, version, kind, command_id)
    body: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    if kind == "SET_PROFILE":
        body = validate(SetChargingProfile, {**(request or {}), "response_url": response_url}).to_json_dict()
        method, target = "PUT", f"{url.rstrip('/')}/{session_id}"
    elif profile:
        params = {
            "response_url": response_url,
            **({"duration": int(duration or 0)} if kind == "GET_PROFILE" else {}),
        }
        if kind == "GET_PROFILE" and params["duration"] <= 0:
            raise InvalidParameters("GET_PROFILE needs a positive duration (seconds)")
        method, target = ("GET" if kind == "GET_PROFILE" else "DELETE"), f"{url.rstrip('/')}/{session_id}"
    else:
        body = {**(request or {}), "response_url": response_url}
        validate(COMMAND_MODELS[CommandType(kind)], body)  # refuse here what the partner would refuse
        method, target = "POST", f"{url.rstrip('/')}/{kind}"
    now = now or datetime.now(UTC)
    ref = ObjectRef(SENT, emsp[0], emsp[1], command_id)
    record = {
        "id": command_id,
        "type": kind,
        "partner_id": partner_id,
        "request": body or {**(params or {}), "session_id": session_id},
        "last_updated": format_datetime(now),
    }
    store.put(ref, record, now, collection=COLLECTION)
    client = OcpiClient(token, raw_token=bool(partner.get("raw_token")), from_party=emsp, to_party=cpo)
    wire_body = body
    if body is not None and not profile:  # the command in the partner's version (shared/versions)
        try:
            wire_body = convert.to_partner(store, partner, kind.lower(), body)
        except ValueError as err:
            raise InvalidParameters(f"{kind}: {err}") from err
    try:
        result = client.request(method, target, json=wire_body, params=params, retries=0)
    except OcpiClientError as err:
        raise ClientApiError(f"The partner did not take the request: {err.message[:300]}") from err
    response = result.data if isinstance(result.data, dict) else {}
    if response and not profile:
        try:
            response = convert.from_partner(store, partner, "command_response", response)
        except (ValueError, KeyError, TypeError, AttributeError) as err:  # the partner's answer, malformed
            logger.warning("command response not convertible", extra={"error": str(err)[:200]})
            response = {"result": "REJECTED", "message": [{"language": "en", "text": "unreadable response"}]}
    store.patch(ref, {"response": response, "last_updated": format_datetime(now)}, now)
    return {"command_id": command_id, "response": response}


def receive_result(store: Any, who: Caller, command: str, command_id: str, raw: Any) -> str:
    """A CPO partner POSTs a CommandResult to our response_url: only the partner the command was sent
    to, only for that command type; the first result is kept and announced
    (`ocpi.command.result_received`), a repeated one is acknowledged and ignored (`duplicate`)."""
    from shared.errors import NotFound

    model, _ = RESULT_MODELS.get(str(command).upper(), (CommandResult, ()))
    result = validate(model, raw).to_json_dict()
    emsp = _own_emsp()
    found = store.get(ObjectRef(SENT, emsp[0], emsp[1], command_id)) if len(command_id) <= 36 else None
    if (
        found is None
        or found.body.get("partner_id") != who.partner_id
        or found.body["type"] != str(command).upper()
    ):
        raise NotFound(f"Unknown command {command_id[:40]}")  # the same answer for foreign ones: no oracle
    now = datetime.now(UTC)
    outcome, _ = store.create(
        ObjectRef(SENT_RESULTS, emsp[0], emsp[1], command_id),
        {**result, "last_updated": format_datetime(now)},
        now,
        collection=COLLECTION,
    )
    if outcome is not WriteResult.CREATED:
        return "duplicate"
    events.publish(
        RESULT_RECEIVED,
        {"command_id": command_id, "type": found.body["type"], "partner_id": who.partner_id, **result},
    )
    return "stored"


def sent_command(store: Any, command_id: str) -> dict[str, Any] | None:
    """A command we sent, with its synchronous response and its result once it came."""
    emsp = _own_emsp()
    found = store.get(ObjectRef(SENT, emsp[0], emsp[1], command_id))
    if found is None:
        return None
    res = store.get(ObjectRef(SENT_RESULTS, emsp[0], emsp[1], command_id))
    return {**found.body, "result": res.body if res is not None else None}


SEND = "ocpi.command.send"  # from the back office: send a command / profile request to a CPO partner
SENT_EVENT = "ocpi.command.sent"
SEND_FAILED = "ocpi.command.send_failed"


def send_from_backoffice(store: Any, detail: Any) -> str:
    """`ocpi.command.send` (source `ocpi.backoffice`): `{"partner_id", "type": START_SESSION | ... |
    SET_PROFILE | GET_PROFILE | CLEAR_PROFILE, ["request": {...}], ["session_id"], ["duration"]}`.
    Announces `ocpi.command.sent` (`command_id`, the partner's response) or `ocpi.command.send_failed`.
    Never retried: a command the partner may have taken is not sent twice (the operator decides)."""
    from shared.errors import OcpiError

    if not isinstance(detail, dict) or not isinstance(detail.get("partner_id"), str):
        raise InvalidParameters("ocpi.command.send needs partner_id")
    base = get_settings().public_url
    if not base:
        raise InvalidParameters("OCPI_PUBLIC_URL is not set: no response_url can be given")
    kind = str(detail.get("type", "")).upper()
    ids = {"partner_id": detail["partner_id"], "type": kind, "reference": detail.get("reference")}
    try:
        out = send(
            store,
            base,
            detail["partner_id"],
            kind,
            detail.get("request") if isinstance(detail.get("request"), dict) else None,
            session_id=detail.get("session_id"),
            duration=detail.get("duration"),
        )
    except (OcpiError, ValueError) as err:
        events.publish(SEND_FAILED, {**ids, "error": str(getattr(err, "message", err))[:500]})
        return "failed"
    events.publish(SENT_EVENT, {**ids, **out})
    return "sent"
