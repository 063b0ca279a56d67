"""CDRs module (mod_cdrs.asciidoc): CPO-owned, immutable. As CPO we are the Sender (partners list the
CDRs of their drivers), as eMSP the Receiver (a CPO partner POSTs each CDR once; it can GET it back
at the URL we answer in `Location`).

Immutability and durability:
- a CDR is stored with one conditional write (`store.create`, `attribute_not_exists`) *before* we
  answer 2xx (no write-behind); nothing in this module updates or deletes a stored CDR;
- a second POST of the same CDR (same party and id) with the same content (compared as normalised
  JSON) is idempotent: the same answer as the first (HTTP 201, the same `Location`, no duplicate),
  and the `ocpi.received.put` event is published again: a replay means the CPO missed our answer,
  so the steps after our write (the event) may not have happened either;
- with different content: 2001 "CDR {id} already exists with different content" (HTTP 200, as
  every OCPI-layer error), the stored CDR untouched. Corrections are Credit CDRs (mod_cdrs).
- Credit CDRs (`credit: true`, `credit_reference_id` required by the model, negative totals) are
  accepted like any CDR and linked to the CDR they credit: their header item carries
  `GSI2PK = CR#{CC}#{PID}#{credited id}` (`credits_of` lists them; the credited CDR need not have
  arrived first).

Ownership: the CDR's country_code/party_id (POST has no party in the URL) must be a CPO party of the
caller's credentials, else HTTP 404 and nothing stored; GET by URL needs the same.

Our own CDRs (as CPO) come from the back office (ingest `ocpi.own.put`, create-only) into the
collection `to:{CC}*{PID}` of their token's eMSP party; the sender list shows a partner only its own
party's collection (objects.caller_party). `date_from` is optional for CDRs (mod_cdrs).
"""

from __future__ import annotations

import json
from typing import Any

from shared.auth import Caller
from shared.errors import InvalidParameters
from shared.models.v221.cdrs import CDR
from shared.services import objects, pricing
from shared.services.objects import RECEIVED, ObjectKind, Outcome
from shared.store import keys
from shared.store.base import ObjectRef, StoredObject, WriteResult
from shared.validation import validate

KIND = ObjectKind("cdrs", CDR, "id", "CPO", id_length=39)
CREDIT_INDEX = "GSI2"
IDENTICAL_MESSAGE = "CDR {id} was already stored with identical content: not stored again"


def credit_key(country_code: str, party_id: str, credited_id: str) -> str:
    """GSI2 partition of the Credit CDRs of one CDR."""
    return f"CR#{country_code.upper()}#{party_id.upper()}#{credited_id.upper()}"


def _credit_index(ref: ObjectRef, body: dict[str, Any]) -> dict[str, str] | None:
    if not body.get("credit") or not body.get("credit_reference_id"):
        return None
    return {
        f"{CREDIT_INDEX}PK": credit_key(ref.country_code, ref.party_id, str(body["credit_reference_id"])),
        f"{CREDIT_INDEX}SK": keys.object_pk(ref),
    }


BILLING_INDEX = "GSI3"


def billing_key(direction: str, party: str) -> str:
    """GSI3 partition of one partner party's CDRs for billing runs (shared/services/billing.py):
    `sent` = our own CDRs to an eMSP party (`CC*PID` of their cdr_token), `received` = the CDRs a
    CPO party POSTed to us (`CC*PID` of the CDR)."""
    return f"BL#{direction}#{party.upper()}"


def billing_index(ref: ObjectRef, body: dict[str, Any], collection: str) -> dict[str, str] | None:
    """GSI3 attributes of a CDR: its partner party's partition, sorted by `end_date_time` (UTC,
    fixed width) then the item's PK."""
    from shared.models.types import parse_datetime, sortable_datetime

    if collection == RECEIVED:
        key = billing_key("received", ref.owner)
    elif collection.startswith("to:"):
        key = billing_key("sent", collection[3:])
    else:
        return None
    end = sortable_datetime(parse_datetime(str(body["end_date_time"])))
    return {f"{BILLING_INDEX}PK": key, f"{BILLING_INDEX}SK": f"{end}#{keys.object_pk(ref)}"}


def _indexes(ref: ObjectRef, body: dict[str, Any], collection: str) -> dict[str, str] | None:
    return {**(_credit_index(ref, body) or {}), **(billing_index(ref, body, collection) or {})} or None


def canonical(body: dict[str, Any]) -> str:
    """Normalised JSON of a CDR (numbers and timestamps in one form, keys sorted) for comparing a
    replay with what is stored."""
    normal = validate(CDR, body).to_json_dict()
    return json.dumps(normal, sort_keys=True, separators=(",", ":"))


def _create(
    store: Any,
    who: Caller | None,
    ref: ObjectRef,
    body: dict[str, Any],
    last_updated: Any,
    collection: str,
    *,
    announce_replay: bool,
    check: dict[str, Any] | None = None,
) -> Outcome:
    meta = objects.received_meta(who) if who is not None else {}
    if check is not None:
        meta["pricing"] = check  # shared/services/pricing.py: the re-priced check
    result, existing = store.create(
        ref,
        body,
        last_updated,
        collection=collection,
        meta=meta or None,
        index=_indexes(ref, body, collection),
    )
    if result is WriteResult.CREATED:
        _publish(who, ref, body)
        return Outcome(WriteResult.CREATED, extra={"ref": ref})
    if existing is None or existing.collection != collection or canonical(existing.body) != canonical(body):
        raise InvalidParameters(f"CDR {body['id']} already exists with different content")
    if announce_replay:
        _publish(who, existing.ref, body)
    return Outcome(WriteResult.STALE, IDENTICAL_MESSAGE.format(id=body["id"]), extra={"ref": ref})


def _publish(who: Caller | None, ref: ObjectRef, body: dict[str, Any]) -> None:
    if who is not None:
        objects.publish_received(KIND, "put", ref, who, body)
    else:
        objects.publish_own(KIND, "put", ref, body)


# ------------------------------------------------------------------ receiver (as eMSP)
def create_received(store: Any, who: Caller, raw: Any, *, announce_replay: bool = True) -> Outcome:
    """A CDR a CPO partner POSTs (or that we pulled from it: ``announce_replay=False``, re-reading
    an identical CDR is no news). ``extra["ref"]`` is the stored CDR's ref (for `Location`)."""
    cdr = validate(CDR, raw)
    body = cdr.to_json_dict()
    objects.check_party(who, KIND, body["country_code"], body["party_id"])
    ref = objects.ref_of(KIND, body["country_code"], body["party_id"], body["id"])
    check = pricing.check_cdr(store, body, own=False)
    return _create(
        store, who, ref, body, cdr.last_updated, RECEIVED, announce_replay=announce_replay, check=check
    )


def get_received(store: Any, who: Caller, cc: str, pid: str, cdr_id: str) -> dict[str, Any]:
    return objects.get_received(store, KIND, who, cc, pid, cdr_id).body


def credits_of(store: Any, country_code: str, party_id: str, cdr_id: str) -> list[StoredObject]:
    """The Credit CDRs stored for one CDR (received or own), in key order."""
    return store.query_index(CREDIT_INDEX, credit_key(country_code, party_id, cdr_id))


# ------------------------------------------------------------------ our own (as CPO)
def create_own(store: Any, raw: Any) -> Outcome:
    """One of our own CDRs from the back office: created once; an identical redelivery is STALE
    (nothing written), different content under the same id is refused (2001). Without
    `total_cost` it is priced by us, with it checked (shared/services/pricing.py)."""
    raw, check = pricing.complete_own_cdr(store, raw)
    cdr = validate(CDR, raw)
    body = cdr.to_json_dict()
    cc, pid = objects.own_party_of(KIND, body)
    ref = objects.ref_of(KIND, cc, pid, body["id"])
    token = body["cdr_token"]
    collection = objects.to_collection(token["country_code"], token["party_id"])
    return _create(store, None, ref, body, cdr.last_updated, collection, announce_replay=False, check=check)


def list_own(store: Any, party: tuple[str, str] | None, params: Any) -> tuple[list[dict[str, Any]], Any]:
    page = objects.list_to(store, KIND, party, params)
    return [o.body for o in page.items], page
