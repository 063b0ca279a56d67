"""Hub client info, Receiver interface (mod_hub_client_info.asciidoc): a hub tells us the
connection status of the parties behind it. Implemented for every own role.

- Only a registered partner whose credentials hold the HUB role may GET or PUT ClientInfo. Any
  other caller is refused like a party that is not among its roles elsewhere
  (objects.check_party, transport_and_format "Errors"): HTTP 404 + 2000, nothing written.
- The URL's country_code/party_id name the described party, any party (a hub's connected parties
  are not the hub's own credentials roles); the body's must equal them, else 2001.
- Stored per hub: module ``hubclientinfo``, owner party = the described party, object id = the
  hub's partner id (two hubs describing the same party keep separate objects), collection
  ``hub:{partner_id}``. A PUT older than the stored object is not applied (1000 + message, as in
  every module: objects.STALE_MESSAGE).
- Every applied PUT is mirrored into the hub's partner record, ``client_info["CC*PID"] =
  {"status", "role", "last_updated"}``: the push pipeline (push.reachable) reads that field and
  skips parties a hub marks OFFLINE or SUSPENDED. The partner record is re-read right before the
  write (concurrent credential updates are kept) and a mirror entry never goes back in time.
- Every applied PUT is announced as ``ocpi.received.put`` (source ``ocpi.endpoint``) with
  ``previous_status``; a party going from OFFLINE/SUSPENDED (which push skipped) to CONNECTED
  carries ``"reconnected": true``. We do not resync from here: pushes to that party were skipped
  while it was away (the spec: "When the other party comes back online, it is their
  responsibility to do a GET to get back in sync"), and a resync (push.resync) re-sends every
  object the whole hub partner is entitled to, from the push function's queue. The operator runs
  ``ocpi-admin push resync PARTNER_ID [--module M]`` when the event asks for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.auth import Caller
from shared.errors import NotFound
from shared.logs import logger
from shared.models.types import DateTime
from shared.models.v221.hub_client_info import ClientInfo
from shared.services import objects
from shared.services.objects import ObjectKind, Outcome
from shared.store.base import ObjectRef, StoredObject, WriteResult
from shared.validation import validate

MODULE = "hubclientinfo"
HUB = "HUB"
KIND = ObjectKind(MODULE, ClientInfo, "party_id", HUB)
#: ConnectionStatus values push.reachable skips (= push.UNREACHABLE; a unit test keeps them equal:
#: importing the push module here would load the outbound client on this function's cold start).
SKIPPED_BY_PUSH = frozenset({"OFFLINE", "SUSPENDED"})
CONNECTED = "CONNECTED"

_DT = TypeAdapter(DateTime)


def collection(partner_id: str) -> str:
    return f"hub:{partner_id}"


def party_key(country_code: str, party_id: str) -> str:
    return f"{country_code.upper()}*{party_id.upper()}"


def check_hub(who: Caller) -> None:
    if not any(str(r.get("role", "")).upper() == HUB for r in who.roles()):
        raise NotFound("Your credentials hold no HUB role: only a hub sends ClientInfo")


def ref_for(who: Caller, country_code: str, party_id: str) -> ObjectRef:
    """The ClientInfo a receiver URL names, after checking the URL and that the caller is a hub."""
    cc, pid = objects.party_from_path(country_code, party_id)
    check_hub(who)
    return ObjectRef(MODULE, cc, pid, who.partner_id)


def get(store: Any, who: Caller, country_code: str, party_id: str) -> StoredObject:
    ref = ref_for(who, country_code, party_id)
    found = store.get(ref)
    if found is None or found.collection != collection(who.partner_id):
        raise NotFound(f"Unknown client info {ref.owner}", http_status=404)
    return found


def is_reconnect(previous: str | None, status: str) -> bool:
    """A party push skipped (OFFLINE, SUSPENDED) is CONNECTED again. Unknown or PLANNED before:
    push never skipped it, nothing was missed."""
    return status == CONNECTED and previous in SKIPPED_BY_PUSH


def put(store: Any, who: Caller, country_code: str, party_id: str, raw: Any) -> Outcome:
    ref = ref_for(who, country_code, party_id)
    info = validate(ClientInfo, raw)
    body = info.to_json_dict()
    objects.check_same("country_code", body.get("country_code"), ref.country_code)
    objects.check_same("party_id", body.get("party_id"), ref.party_id)
    before = store.get(ref)
    previous = str(before.body.get("status")) if before is not None else None
    result = store.put(
        ref,
        body,
        info.last_updated,
        collection=collection(who.partner_id),
        meta=objects.received_meta(who),
    )
    if result is WriteResult.STALE:
        return objects.outcome(result)
    status = str(body["status"])
    mirror(store, who.partner_id, ref, body, info.last_updated)
    reconnected = is_reconnect(previous, status)
    extra: dict[str, Any] = {"previous_status": previous, "status": status}
    if reconnected:
        extra["reconnected"] = True
        logger.info(
            "hub client info: party reconnected, run `ocpi-admin push resync` for this partner",
            extra={"partner_id": who.partner_id, "party": ref.owner, "previous_status": previous},
        )
    objects.publish_received(KIND, "put", ref, who, body, **extra)
    return objects.outcome(result)


def _parse(value: Any) -> datetime | None:
    try:
        return _DT.validate_python(value)
    except ValidationError:
        return None


def mirror(store: Any, partner_id: str, ref: ObjectRef, body: dict[str, Any], last_updated: datetime) -> bool:
    """Write the status into the hub's partner record (what push.reachable reads). Re-reads the
    record first; an entry with a newer ``last_updated`` (a concurrent newer PUT) is kept.
    Returns whether it wrote."""
    partner = store.get_partner(partner_id)
    if not partner:
        return False
    current = partner.get("client_info") if isinstance(partner.get("client_info"), dict) else {}
    key = party_key(ref.country_code, ref.party_id)
    entry = current.get(key)
    if isinstance(entry, dict):
        seen = _parse(entry.get("last_updated"))
        if seen is not None and seen > last_updated:
            return False
    partner["client_info"] = {
        **current,
        key: {"status": body["status"], "role": body["role"], "last_updated": body["last_updated"]},
    }
    store.put_partner(partner)
    return True
