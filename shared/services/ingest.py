"""Ingest of our own objects from the operator's back office (EventBridge events, see shared/events.py).

As CPO our locations, tariffs, sessions and CDRs, as eMSP our tokens, enter as events with source
`ocpi.backoffice` on the project's bus; a rule sends them to an SQS queue the ingest function reads.
Detail schema:

- `ocpi.own.put`:
  - `{"module": "locations", "object": Location}` -> the whole location (with its EVSEs);
  - `{"module": "locations", "country_code", "party_id", "location_id", "object": EVSE}` -> one EVSE
    (its uid from the object);
  - the same with `"evse_uid"` too, the object being a Connector -> one connector (its id from the
    object);
  - `{"module": "tariffs", "object": Tariff}`;
  - a whole location or a tariff may carry `"push_to": ["CC*PID", ...]`: only these eMSP parties
    of our partners receive it by push (shared/services/push.py; absent = every entitled partner;
    the next PUT without it lifts the limit);
  - `{"module": "tokens", "object": Token, ["authorization": {...}]}`: the authorization policy
    metadata of shared/services/tokens.py (valid_until, no_credit, allowed_location_ids);
  - `{"module": "sessions", "object": Session}` -> the whole session (its `charging_periods`
    replace the stored ones), addressed to the eMSP party of its `cdr_token`;
  - `{"module": "cdrs", "object": CDR}` -> created once (shared/services/cdrs.py): a redelivery with
    the same content is `stale` (nothing written), different content under a stored id is bad data.
    A CDR without `total_cost` is priced by us (shared/services/pricing.py), one with it is checked;
    sessions without `total_cost` get it on PUT and on a PATCH that appends periods.
- `ocpi.own.patch`: `{"module", "country_code", "party_id", "id", ["evse_uid", "connector_id",
  "type"], "fields": {..., "last_updated"}}`: for locations `id` is the location id and the level
  (location, EVSE, connector) follows from `evse_uid` / `connector_id`; for tokens `id` is the uid
  and `type` the token type (RFID when absent); for sessions `id` is the session id and the
  `charging_periods` sent are appended (mod_sessions, PATCH). Tariffs and CDRs have no PATCH.
- `ocpi.own.delete`: `{"module": "tariffs", "country_code", "party_id", "id", ["last_updated"]}`
  deletes one of our own tariffs (mod_tariffs: the Sender deletes, EVSEs and tokens are never
  deleted: EVSE status REMOVED, token `valid: false`). With `last_updated`, a stored tariff newer
  than that is kept (an out-of-order delete of a re-created tariff). Deleting an unknown tariff is
  a no-op (EventBridge and SQS deliver at least once).

The same rules as for partners' pushes apply (shared/services/objects.py): validation against the
OCPI models, stale updates (older `last_updated`) are not applied, and `ocpi.own.changed` is
published for what was stored.

Errors: bad data (unknown module or detail-type, malformed detail, a model violation, a party
that is not ours) raise `InvalidParameters`: a poison message, retrying cannot help; the function
drops it and publishes `ocpi.own.rejected` (REJECTED) for the operator. A PATCH or a child PUT of
an object we do not have raises the module's "unknown" error (UnknownLocation, UnknownToken): not a
poison message, because SQS does not keep order and the PUT may still arrive; it is retried, then
dead-lettered. Everything else (throttling: ServiceUnavailable) is retried too.

Pure logic: no Powertools, no FastAPI (beyond what the shared services import).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared import events, jsonutil
from shared.config import get_settings
from shared.errors import InvalidParameters
from shared.services import cdrs, locations, objects, pricing, sessions, tariffs, tokens
from shared.services.objects import OWN, Outcome
from shared.store.base import WriteResult

#: Published (source `ocpi.endpoint`) for a back-office event that was dropped as bad data. Detail:
#: `{"detail_type", "module", ["id", "country_code", "party_id", "evse_uid", "connector_id"],
#: "error"}`.
REJECTED = "ocpi.own.rejected"

MODULES = ("locations", "tariffs", "tokens", "sessions", "cdrs")
_ACTIONS = {events.OWN_PUT: "put", events.OWN_PATCH: "patch", events.OWN_DELETE: "delete"}
_REDACTED = "***"


@dataclass(frozen=True)
class Command:
    """One back-office event, checked for shape (not yet against the OCPI models)."""

    action: str  # put | patch | delete
    module: str
    country_code: str | None = None
    party_id: str | None = None
    object_id: str | None = None  # location id, tariff id or token uid
    evse_uid: str | None = None
    connector_id: str | None = None
    token_type: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)  # the object (put) or the fields (patch)
    authorization: dict[str, Any] | None = None
    last_updated: str | None = None  # delete only
    push_to: tuple[str, ...] | None = None  # whole locations and tariffs only

    @property
    def level(self) -> str:
        if self.module != "locations":
            return self.module[:-1]
        if self.connector_id is not None:
            return "connector"
        return "evse" if self.evse_uid is not None else "location"

    def log_fields(self) -> dict[str, Any]:
        """What may be logged (keys that are no LogRecord attributes): never a token uid or contract
        id (only the token's party)."""
        out: dict[str, Any] = {
            "ocpi_module": self.module,
            "action": self.action,
            "object_level": self.level,
            "country_code": self.country_code,
            "party_id": self.party_id,
        }
        if self.module != "tokens":
            out.update(id=self.object_id, evse_uid=self.evse_uid, connector_id=self.connector_id)
        return {k: v for k, v in out.items() if v is not None}


# ------------------------------------------------------------------ parsing
def unwrap(body: str | bytes) -> tuple[str, dict[str, Any]]:
    """An SQS message body that EventBridge wrote: the event JSON. Returns (detail-type, detail);
    numbers are Decimals (money and energy are never floats)."""
    try:
        event = jsonutil.loads(body)
    except (ValueError, TypeError) as err:
        raise InvalidParameters("Message body is not JSON") from err
    if not isinstance(event, dict):
        raise InvalidParameters("Message body is not an EventBridge event")
    if event.get("source") != events.SOURCE_BACKOFFICE:
        # The rule only routes ocpi.backoffice; anything else on the queue is not for us.
        raise InvalidParameters(f"Unexpected event source {str(event.get('source'))[:64]!r}")
    detail_type = event.get("detail-type")
    if not isinstance(detail_type, str):
        raise InvalidParameters("Event without detail-type")
    return detail_type, event.get("detail")


def _text(detail: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = detail.get(key)
    if value is None or value == "":
        if required:
            raise InvalidParameters(f"Invalid or missing parameters: {key} is required")
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidParameters(f"Invalid or missing parameters: {key} must be a string")
    return str(value)


def _object(detail: dict[str, Any], key: str) -> dict[str, Any]:
    value = detail.get(key)
    if not isinstance(value, dict):
        raise InvalidParameters(f"Invalid or missing parameters: {key} must be a JSON object")
    return value


def parse(detail_type: str, detail: Any) -> Command:
    """Check an event's shape and say what it asks for; InvalidParameters when it makes no sense."""
    action = _ACTIONS.get(detail_type)
    if action is None:
        raise InvalidParameters(f"Unknown detail-type {str(detail_type)[:64]!r}")
    if not isinstance(detail, dict):
        raise InvalidParameters("Event detail must be a JSON object")
    module = detail.get("module")
    if module not in MODULES:
        raise InvalidParameters(f"Unsupported module {str(module)[:32]!r} (one of {', '.join(MODULES)})")
    if action == "put":
        return _parse_put(module, detail)
    if action == "patch":
        return _parse_patch(module, detail)
    return _parse_delete(module, detail)


def _parse_put(module: str, detail: dict[str, Any]) -> Command:
    obj = _object(detail, "object")
    if module == "locations" and detail.get("location_id") not in (None, ""):
        location_id = _text(detail, "location_id")
        cc, pid = _text(detail, "country_code"), _text(detail, "party_id")
        evse_uid = _text(detail, "evse_uid", required=False)
        if evse_uid is None:  # an EVSE: its uid from the object
            return Command("put", module, cc, pid, location_id, _text(obj, "uid"), payload=obj)
        return Command("put", module, cc, pid, location_id, evse_uid, _text(obj, "id"), payload=obj)
    if module == "locations" and detail.get("evse_uid") not in (None, ""):
        raise InvalidParameters("Invalid or missing parameters: evse_uid needs location_id")
    push_to = _push_to(detail) if module in ("locations", "tariffs") else None
    kind = _kind(module)
    authorization = detail.get("authorization")
    if module == "tokens" and authorization is not None and not isinstance(authorization, dict):
        raise InvalidParameters("Invalid or missing parameters: authorization must be a JSON object")
    cc, pid = _text(obj, "country_code"), _text(obj, "party_id")
    for key, own in (("country_code", cc), ("party_id", pid)):
        sent = _text(detail, key, required=False)
        if sent is not None and sent.upper() != str(own).upper():
            raise InvalidParameters(f"{key} of the event ({sent}) differs from the object's ({own})")
    return Command(
        "put",
        module,
        cc,
        pid,
        _text(obj, kind.id_field),
        token_type=_text(obj, "type", required=False) if module == "tokens" else None,
        payload=obj,
        authorization=authorization if module == "tokens" else None,
        push_to=push_to,
    )


_PARTY_KEY = re.compile(r"^[A-Z]{2}\*[A-Z0-9]{3}$")


def _push_to(detail: dict[str, Any]) -> tuple[str, ...] | None:
    value = detail.get("push_to")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameters('Invalid or missing parameters: push_to must be a list of "CC*PID" strings')
    keys_ = tuple(dict.fromkeys(v.strip().upper() for v in value))
    bad = [k for k in keys_ if not _PARTY_KEY.match(k)]
    if bad:
        raise InvalidParameters(f"Invalid or missing parameters: push_to entry {bad[0][:16]!r} is not CC*PID")
    return keys_


def _parse_patch(module: str, detail: dict[str, Any]) -> Command:
    if module == "tariffs":
        raise InvalidParameters("Tariffs have no PATCH in OCPI: send the whole tariff (ocpi.own.put)")
    if module == "cdrs":
        raise InvalidParameters("CDRs are never changed in OCPI: send a Credit CDR (ocpi.own.put)")
    cc, pid, oid = _text(detail, "country_code"), _text(detail, "party_id"), _text(detail, "id")
    fields = _object(detail, "fields")
    if module == "tokens":
        return Command("patch", module, cc, pid, oid, token_type=_token_type(detail), payload=fields)
    if module == "sessions":
        return Command("patch", module, cc, pid, oid, payload=fields)
    evse_uid = _text(detail, "evse_uid", required=False)
    connector_id = _text(detail, "connector_id", required=False)
    if connector_id is not None and evse_uid is None:
        raise InvalidParameters("Invalid or missing parameters: connector_id needs evse_uid")
    return Command("patch", module, cc, pid, oid, evse_uid, connector_id, payload=fields)


def _parse_delete(module: str, detail: dict[str, Any]) -> Command:
    if module != "tariffs":
        hint = {
            "locations": "set the EVSE status REMOVED",
            "tokens": "set valid to false",
            "sessions": "a session ends with status COMPLETED or INVALID",
            "cdrs": "send a Credit CDR",
        }[module]
        raise InvalidParameters(f"Own {module} are not deleted in OCPI: {hint}")
    return Command(
        "delete",
        module,
        _text(detail, "country_code"),
        _text(detail, "party_id"),
        _text(detail, "id"),
        last_updated=_text(detail, "last_updated", required=False),
    )


def _token_type(detail: dict[str, Any]) -> str:
    raw = detail.get("type")
    if raw is not None and not isinstance(raw, str):
        raise InvalidParameters("Invalid or missing parameters: type must be a string")
    return tokens.token_type(raw)


def _kind(module: str) -> objects.ObjectKind:
    return {
        "locations": locations.KIND,
        "tariffs": tariffs.KIND,
        "tokens": tokens.KIND,
        "sessions": sessions.KIND,
        "cdrs": cdrs.KIND,
    }[module]


def check(detail_type: str, detail: Any) -> Command:
    """`parse` plus validation of the object/fields against the OCPI model, without storing: what
    the CLI checks before it publishes."""
    from shared.models.v221.locations import EVSE, Connector, Location
    from shared.validation import validate

    cmd = parse(detail_type, detail)
    models = {"location": Location, "evse": EVSE, "connector": Connector}
    model = models.get(cmd.level) or _kind(cmd.module).model
    if cmd.action == "put":
        validate(model, cmd.payload)
    elif cmd.action == "patch":
        objects.validate_fields(model, cmd.payload)
    return cmd


# ------------------------------------------------------------------ applying
def apply(store: Any, detail_type: str, detail: Any) -> Outcome:
    """Store what one back-office event says; see the module docstring for errors."""
    return execute(store, parse(detail_type, detail))


def _priced_session_patch(store: Any, cmd: Command) -> Any:
    """A session PATCH that appends periods without `total_cost`: the cost of all periods (the
    stored ones read once) goes into the same PATCH (shared/services/pricing.py)."""
    fields = cmd.payload
    if not isinstance(fields, dict) or not fields.get("charging_periods") or "total_cost" in fields:
        return fields
    stored = store.get(objects.ref_of(sessions.KIND, cmd.country_code, cmd.party_id, cmd.object_id))
    if stored is None:
        return fields  # the PATCH reports the unknown session
    return pricing.complete_own_session(store, fields, stored=sessions.assemble(stored))


def execute(store: Any, cmd: Command) -> Outcome:
    if cmd.module == "locations":
        # A lost optimistic-concurrency race surfaces as ServiceUnavailable: retried, not dropped.
        return _locations(store, cmd)
    if cmd.module == "tariffs":
        if cmd.action == "delete":
            return _delete_tariff(store, cmd)
        return objects.put_own(store, tariffs.KIND, cmd.payload, meta=_push_meta(cmd))
    if cmd.module == "sessions":
        cc, pid, sid = cmd.country_code, cmd.party_id, cmd.object_id
        if cmd.action == "put":
            priced = pricing.complete_own_session(store, cmd.payload)
            return sessions.put_session(store, None, cc, pid, sid, priced)
        return sessions.patch_session(store, None, cc, pid, sid, _priced_session_patch(store, cmd))
    if cmd.module == "cdrs":
        return cdrs.create_own(store, cmd.payload)
    if cmd.action == "put":
        return tokens.put_own_with_policy(store, cmd.payload, cmd.authorization)
    return _patch_token(store, cmd)


def _push_meta(cmd: Command) -> dict[str, Any] | None:
    return {"push_to": list(cmd.push_to)} if cmd.push_to is not None else None


def _locations(store: Any, cmd: Command) -> Outcome:
    cc, pid, lid, e, c = cmd.country_code, cmd.party_id, cmd.object_id, cmd.evse_uid, cmd.connector_id
    level = cmd.level
    if cmd.action == "put":
        if level == "location":
            return locations.put_location(store, None, cc, pid, lid, cmd.payload, meta=_push_meta(cmd))
        if level == "evse":
            return locations.put_evse(store, None, cc, pid, lid, e, cmd.payload)
        return locations.put_connector(store, None, cc, pid, lid, e, c, cmd.payload)
    if level == "location":
        return locations.patch_location(store, None, cc, pid, lid, cmd.payload)
    if level == "evse":
        return locations.patch_evse(store, None, cc, pid, lid, e, cmd.payload)
    return locations.patch_connector(store, None, cc, pid, lid, e, c, cmd.payload)


def _patch_token(store: Any, cmd: Command) -> Outcome:
    kind = tokens.KIND
    cc, pid = objects.party_from_path(cmd.country_code, cmd.party_id)
    uid = objects.path_id(cmd.object_id, "id", kind.id_length)
    variant = cmd.token_type or tokens.token_type(None)
    for name, expected in (("country_code", cc), ("party_id", pid), ("uid", uid), ("type", variant)):
        sent = cmd.payload.get(name)
        if sent is not None and str(sent).upper() != expected.upper():
            # No values in the message: a token uid is never logged.
            raise InvalidParameters(f"fields.{name} differs from the event's {name}")
    return objects.patch_own(store, kind, cc, pid, uid, cmd.payload, variant)


def _delete_tariff(store: Any, cmd: Command) -> Outcome:
    kind = tariffs.KIND
    cc, pid = objects.party_from_path(cmd.country_code, cmd.party_id)
    oid = objects.path_id(cmd.object_id, "id", kind.id_length)
    if get_settings().own_party(cc, pid, kind.owner_role) is None:
        raise InvalidParameters(f"{cc}*{pid} is not one of our own {kind.owner_role} parties")
    sent_lu = objects.last_updated_of({"last_updated": cmd.last_updated}) if cmd.last_updated else None
    found = store.get(objects.ref_of(kind, cc, pid, oid))
    if found is None or found.collection != OWN:
        return Outcome(WriteResult.STALE, "Not deleted: no such own tariff", extra={"action": "delete"})
    if sent_lu is not None and objects.last_updated_of(found.body) > sent_lu:
        return Outcome(WriteResult.STALE, objects.STALE_MESSAGE, extra={"action": "delete"})
    store.delete(found.ref)
    last_updated = cmd.last_updated or found.body.get("last_updated")
    objects.publish_own(kind, "delete", found.ref, {"last_updated": last_updated})
    return Outcome(WriteResult.UPDATED, "Deleted", extra={"action": "delete"})


def outcome_label(outcome: Outcome) -> str:
    """created | updated | deleted | stale: for metrics and logs."""
    if outcome.extra.get("action") == "delete" and outcome.result is WriteResult.UPDATED:
        return "deleted"
    return outcome.result.value


# ------------------------------------------------------------------ rejections
def safe_fields(detail_type: str, detail: Any) -> dict[str, Any]:
    """Loggable identification of an event that may not even parse (never token uids)."""
    out: dict[str, Any] = {"detail_type": str(detail_type)[:64]}
    if not isinstance(detail, dict):
        return out
    module = detail.get("module")
    out["ocpi_module"] = str(module)[:32] if module is not None else None
    if module == "tokens":
        obj = detail.get("object") if isinstance(detail.get("object"), dict) else {}
        out["country_code"] = detail.get("country_code") or obj.get("country_code")
        out["party_id"] = detail.get("party_id") or obj.get("party_id")
    else:
        out.update(_ids(detail))
    return {k: v for k, v in out.items() if v is not None}


def _ids(detail: dict[str, Any]) -> dict[str, Any]:
    obj = detail.get("object") if isinstance(detail.get("object"), dict) else {}
    ids = {
        "id": detail.get("id") or detail.get("location_id") or obj.get("id") or obj.get("uid"),
        "country_code": detail.get("country_code") or obj.get("country_code"),
        "party_id": detail.get("party_id") or obj.get("party_id"),
        "evse_uid": detail.get("evse_uid"),
        "connector_id": detail.get("connector_id"),
    }
    return {k: str(v)[:64] for k, v in ids.items() if v is not None and not isinstance(v, dict | list)}


def redact(message: str, detail: Any) -> str:
    """Take token uids and contract ids out of a message before it is logged or published."""
    if not isinstance(detail, dict) or detail.get("module") != "tokens":
        return message
    secrets: set[str] = set()
    for source in (detail, detail.get("object"), detail.get("fields")):
        if isinstance(source, dict):
            for key in ("id", "uid", "contract_id"):
                if isinstance(source.get(key), str | int) and len(str(source[key])) >= 3:
                    secrets.add(str(source[key]))
            energy = source.get("energy_contract")
            if isinstance(energy, dict) and isinstance(energy.get("contract_id"), str):
                secrets.add(energy["contract_id"])
    for value in sorted(secrets, key=len, reverse=True):
        message = message.replace(value, _REDACTED)
    return message


def rejected_detail(detail_type: str, detail: Any, error: str) -> dict[str, Any]:
    """Detail of REJECTED: enough for the operator to find the object (the token uid included:
    the bus is the operator's own, as for `ocpi.own.changed`), the error without secrets."""
    out: dict[str, Any] = {"detail_type": str(detail_type)[:64]}
    if isinstance(detail, dict):
        if detail.get("module") is not None:
            out["module"] = str(detail["module"])[:32]
        out.update(_ids(detail))
    out["error"] = redact(error, detail)[:1000]
    return out


def publish_rejected(detail_type: str, detail: Any, error: str) -> bool:
    return events.publish(REJECTED, rejected_detail(detail_type, detail, error))
