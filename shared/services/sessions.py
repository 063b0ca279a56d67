"""Sessions module (mod_sessions.asciidoc): CPO-owned. As CPO we are the Sender (partners list the
sessions of their drivers and set charging preferences), as eMSP the Receiver (a CPO partner
pushes sessions into us: GET/PUT/PATCH at `{country_code}/{party_id}/{session_id}`).

Storage: the header item holds the Session without `charging_periods`; each ChargingPeriod is a
child item whose child_id is its `start_date_time` in sortable form, so
- a PATCH that appends a period is one UpdateItem of the header plus one PutItem per period sent
  (plus the store's parent `last_updated` check, a no-op here): the cost does not depend on how many
  periods the session has, because sessions keep no manifest of their children (`manifest=False`);
- a retried PATCH carrying the same period writes the same key again (idempotent), and periods
  come back in time order (child_id order);
- two periods of one request with the same start keep both (`#1`, `#2` suffixes, in request order).
A GET reads the session whole with one Query; the sender list loads each listed session's periods
with one Query per session (`load_children`): the manifest that would allow batching is exactly
what made appends cost O(history).

Rules (mod_sessions, Receiver interface):
- PUT replaces the whole session, `charging_periods` included (omitted or `[]`: no periods left).
- PATCH changes only the fields sent; its `charging_periods` are *added* (an empty list or none:
  periods unchanged; replacing periods needs a PUT). `last_updated` is required.
- An update older than the stored session (`last_updated`) is not applied at all, periods included,
  and answered with success + STALE_MESSAGE (shared/services/objects.py): a PUT may have replaced the
  periods since, so an old PATCH's periods could resurrect removed ones. A stored period is never
  overwritten by an older write of the same period either.
- Unknown session on PATCH (or GET) -> HTTP 404 + 2000 (OCPI has no session-specific code).
- Returned sessions carry `charging_periods` only when there are periods.
Known limit: a PUT racing a PATCH of the same session may drop the period that PATCH appended
(pushes of one object are normally serialised by the sender).

Our own sessions (as CPO) come from the back office (ingest, `ocpi.own.put|patch`) and are stored
in the collection `to:{CC}*{PID}` of the eMSP party of their `cdr_token`: the sender interface lists
only the calling eMSP party's collection (objects.caller_party), and the push pipeline, which reads the
stored session on each `ocpi.own.changed`, delivers it to that party (the collection is the mark).

Charging preferences (mod_sessions, "Set: Charging Preferences", Sender PUT):
- the body must be a valid ChargingPreferences (2001);
- the session must be one of our own and its token's eMSP party one the caller holds (and equal to
  the OCPI-from-* party when those headers are sent), else HTTP 404 + 2000, as for any unknown object;
- the session's EVSE, when it is among our own locations and lacks the capability
  CHARGING_PREFERENCES_CAPABLE -> HTTP 404 + 2001 (ChargingPreferencesResponse: the spec's words);
  an EVSE we do not know (e.g. `#NA` of a reservation) is left to the back office;
- a COMPLETED or INVALID session -> NOT_POSSIBLE (nothing is forwarded);
- otherwise `ocpi.own.charging_preferences` is published for the operator's back office and we
  answer ACCEPTED: the back office acts on them asynchronously, OCPI has no way to carry its later
  answer. If the event cannot be published, 503 + 3000 (retry), never a false ACCEPTED.
"""

from __future__ import annotations

from typing import Any

from shared import events
from shared.auth import Caller
from shared.config import get_settings
from shared.errors import InvalidParameters, NotFound, ServiceUnavailable
from shared.models.types import parse_datetime, sortable_datetime
from shared.models.v221.sessions import ChargingPreferences, ChargingPreferencesResponse, Session
from shared.services import locations, objects
from shared.services.objects import RECEIVED, ObjectKind, Outcome, check_same, outcome, path_id
from shared.store.base import Child, ObjectMissing, ObjectRef, StoredObject, WriteResult
from shared.validation import validate

KIND = ObjectKind("sessions", Session, "id", "CPO")
PERIODS = "charging_periods"
CAPABLE = "CHARGING_PREFERENCES_CAPABLE"
_FINISHED = {"COMPLETED", "INVALID"}


def _unknown(session_id: str) -> NotFound:
    return NotFound(f"Unknown session {session_id}", http_status=404)


# ------------------------------------------------------------------ storage shape
def period_key(period: dict[str, Any]) -> str:
    """A period's child id: its start in fixed-width sortable form (string order = time order)."""
    return sortable_datetime(parse_datetime(period["start_date_time"]))


def period_children(periods: list[dict[str, Any]], last_updated: Any) -> list[Child]:
    children: list[Child] = []
    seen: dict[str, int] = {}
    for p in periods:
        key = period_key(p)
        n = seen.get(key, 0)
        seen[key] = n + 1
        children.append(Child(key if n == 0 else f"{key}#{n}", p, last_updated))
    return children


def assemble(stored: StoredObject) -> dict[str, Any]:
    """The Session as sent: header plus its periods in time order (none: no `charging_periods`)."""
    body = dict(stored.body)
    body.pop(PERIODS, None)
    if stored.children:
        body[PERIODS] = [c.body for c in stored.children]
    return body


def token_party(body: dict[str, Any]) -> tuple[str, str]:
    token = body["cdr_token"]
    return str(token["country_code"]).upper(), str(token["party_id"]).upper()


# ------------------------------------------------------------------ resolving the URL
def _ref(who: Caller | None, cc: str, pid: str, session_id: str) -> ObjectRef:
    cc, pid = objects.party_from_path(cc, pid)
    session_id = path_id(session_id, "session_id")
    if who is not None:
        objects.check_party(who, KIND, cc, pid)
    elif get_settings().own_party(cc, pid, KIND.owner_role) is None:
        raise InvalidParameters(f"{cc}*{pid} is not one of our own CPO parties")
    return objects.ref_of(KIND, cc, pid, session_id)


def _publish(who: Caller | None, action: str, ref: ObjectRef, payload: dict[str, Any]) -> None:
    if who is not None:
        objects.publish_received(KIND, action, ref, who, payload)
    else:
        objects.publish_own(KIND, action, ref, payload)


# ------------------------------------------------------------------ writes (receiver and own)
def put_session(store: Any, who: Caller | None, cc: str, pid: str, session_id: str, raw: Any) -> Outcome:
    """PUT a whole session: a partner's (``who``) into `rx`, or our own (``who=None``) into the
    collection of its token's eMSP party."""
    ref = _ref(who, cc, pid, session_id)
    session = validate(Session, raw)
    body = session.to_json_dict()
    check_same("country_code", body["country_code"], ref.country_code)
    check_same("party_id", body["party_id"], ref.party_id)
    check_same("id", body["id"], ref.object_id)
    header = {k: v for k, v in body.items() if k != PERIODS}
    children = period_children(body.get(PERIODS) or [], session.last_updated)
    result = store.put(
        ref,
        header,
        session.last_updated,
        collection=RECEIVED if who is not None else objects.to_collection(*token_party(body)),
        children=children,
        meta=objects.received_meta(who) if who is not None else None,
        manifest=False,
    )
    if result is not WriteResult.STALE:
        _publish(who, "put", ref, body)
    return outcome(result)


def patch_session(store: Any, who: Caller | None, cc: str, pid: str, session_id: str, raw: Any) -> Outcome:
    ref = _ref(who, cc, pid, session_id)
    fields = objects.validate_fields(Session, raw)
    for name, expected in (("country_code", ref.country_code), ("party_id", ref.party_id)):
        check_same(name, fields.get(name), expected)
    check_same("id", fields.get("id"), ref.object_id)
    lu = objects.last_updated_of(fields)
    periods = fields.pop(PERIODS, None) or []
    if who is None and "cdr_token" in fields:
        # The token's party decides who may read our session: it cannot move by PATCH.
        found = store.get(ref)
        if found is None:
            raise _unknown(ref.object_id)
        if found.collection != objects.to_collection(*token_party(fields)):
            raise InvalidParameters(
                "The eMSP party of a session's cdr_token cannot change by PATCH: send the whole session"
            )
    try:
        result = store.patch(ref, fields, lu)
    except ObjectMissing as err:
        raise _unknown(ref.object_id) from err
    if result is WriteResult.STALE:
        return outcome(result)
    for child in period_children(periods, lu):
        # No manifest: appending costs the same whatever the number of periods already stored.
        store.put_child(ref, child, manifest=False)
    _publish(who, "patch", ref, {**fields, **({PERIODS: periods} if periods else {})})
    return outcome(WriteResult.UPDATED)


# ------------------------------------------------------------------ reads
def get_received(store: Any, who: Caller, cc: str, pid: str, session_id: str) -> dict[str, Any]:
    ref = _ref(who, cc, pid, session_id)
    found = store.get(ref)
    if found is None or found.collection != RECEIVED:
        raise _unknown(ref.object_id)
    return assemble(found)


def list_own(store: Any, party: tuple[str, str] | None, params: Any) -> tuple[list[dict[str, Any]], Any]:
    """Sender GET: our own sessions whose token belongs to ``party`` (objects.caller_party)."""
    page = objects.list_to(store, KIND, party, params)
    # One Query per listed session (sessions keep no manifest, see the module docstring).
    return [assemble(store.load_children(o)) for o in page.items], page


def get_own(store: Any, session_id: str) -> StoredObject | None:
    """One of our own sessions by id (the sender URL carries no party: try each own CPO party)."""
    session_id = path_id(session_id, "session_id")
    for party in get_settings().own_parties:
        if party.role.upper() != KIND.owner_role:
            continue
        found = store.get(objects.ref_of(KIND, party.country_code, party.party_id, session_id))
        if found is not None and found.collection.startswith("to:"):
            return found
    return None


# ------------------------------------------------------------------ charging preferences
def set_charging_preferences(
    store: Any,
    who: Caller,
    from_party: tuple[str | None, str | None] | None,
    session_id: str,
    raw: Any,
) -> str:
    prefs = validate(ChargingPreferences, raw)
    found = get_own(store, session_id)
    if found is None:
        raise _unknown(session_id)
    emsp = token_party(found.body)
    if from_party and any(from_party):
        if objects.caller_party(who, "EMSP", from_party) != emsp:
            raise _unknown(session_id)
    elif not who.holds_party(*emsp, "EMSP"):
        raise _unknown(session_id)
    session = found.body
    _check_evse_capable(store, found.ref, session)
    if str(session.get("status")) in _FINISHED:
        return ChargingPreferencesResponse.NOT_POSSIBLE.value
    detail = {
        "module": KIND.module,
        "country_code": found.ref.country_code,
        "party_id": found.ref.party_id,
        "id": session["id"],
        "partner_id": who.partner_id,
        "emsp_country_code": emsp[0],
        "emsp_party_id": emsp[1],
        "location_id": session.get("location_id"),
        "evse_uid": session.get("evse_uid"),
        "connector_id": session.get("connector_id"),
        "charging_preferences": prefs.to_json_dict(),
    }
    if not events.publish(events.OWN_CHARGING_PREFERENCES, detail):
        raise ServiceUnavailable("Charging preferences could not be forwarded, retry")
    return ChargingPreferencesResponse.ACCEPTED.value


def _check_evse_capable(store: Any, session_ref: ObjectRef, session: dict[str, Any]) -> None:
    loc_ref = objects.ref_of(
        locations.KIND, session_ref.country_code, session_ref.party_id, str(session.get("location_id"))
    )
    stored = store.get(loc_ref)
    if stored is None or stored.collection != objects.OWN:
        return
    uid = str(session.get("evse_uid", "")).upper()
    evse = next(
        (e for e in locations.assemble(stored).get("evses") or [] if str(e["uid"]).upper() == uid), None
    )
    if evse is not None and CAPABLE not in (evse.get("capabilities") or []):
        # mod_sessions, ChargingPreferencesResponse: "the receiver should respond with an HTTP status
        # of 404 and an OCPI status code of 2001".
        raise InvalidParameters(
            f"EVSE {evse['uid']} does not support charging preferences ({CAPABLE})", http_status=404
        )
