"""Locations module (mod_locations.asciidoc): the Location -> EVSE -> Connector tree.

Storage: the Location without its EVSEs is one item; each EVSE (with its connectors) is a child
item, so an EVSE status PATCH is one small write whatever the number of EVSEs, and a GET of the
Location is one query. A PUT/PATCH of an EVSE or Connector also moves the parents' last_updated
(mod_locations, PUT/PATCH: "the Receiver SHALL also set the new last_updated value on the parent").
EVSEs are never deleted: status REMOVED (mod_locations, Flow and Lifecycle).

Geo index (extension, README "Extensions"): the header item of every location with coordinates
carries GSI2PK = `G#{geohash of precision GEO_PRECISION}` and GSI2SK = its PK; a PUT writes them, a
PATCH that sends `coordinates` moves the location to its new cell. shared/services/geo.py queries it.

The same code serves the receiver interface (a CPO partner pushes its locations into us, stored
in the `rx` collection) and our own locations (from the back office, `own`, listed by the sender
interface); `who` is None for our own.
"""

from __future__ import annotations

import time
from typing import Any

from shared import geo
from shared.auth import Caller
from shared.config import get_settings
from shared.errors import InvalidParameters, ServiceUnavailable, UnknownLocation
from shared.models.v221.locations import EVSE, Connector, Location
from shared.services import objects
from shared.services.objects import OWN, RECEIVED, ObjectKind, Outcome, check_same, outcome, path_id
from shared.store import keys
from shared.store.base import Child, ConcurrentUpdate, ObjectMissing, ObjectRef, StoredObject, WriteResult
from shared.validation import validate

KIND = ObjectKind("locations", Location, "id", "CPO", unknown=UnknownLocation)
_RETRIES = 5

# Geo index: 4 geohash characters = cells of 0.35° x 0.18° (39 km x 19.5 km at the equator,
# 24 km x 19.5 km at 52° N): a radius query of up to ~35 km reads at most 25 cells.
GEO_INDEX = "GSI2"
GEO_PRECISION = 4


def geo_cell_pk(cell: str) -> str:
    """The GSI2 partition of a geohash cell."""
    return f"G#{cell}"


def geo_index(ref: ObjectRef, coordinates: Any) -> dict[str, str] | None:
    """The geo index attributes of a location header, from its (validated) coordinates; None when
    there are none usable."""
    if not isinstance(coordinates, dict):
        return None
    try:
        cell = geo.encode(float(coordinates["latitude"]), float(coordinates["longitude"]), GEO_PRECISION)
    except (KeyError, TypeError, ValueError):
        return None
    return {f"{GEO_INDEX}PK": geo_cell_pk(cell), f"{GEO_INDEX}SK": keys.object_pk(ref)}


# ------------------------------------------------------------------ assembling
def assemble(stored: StoredObject) -> dict[str, Any]:
    body = dict(stored.body)
    if stored.children or stored.meta.get("evses"):
        body["evses"] = [c.body for c in stored.children]
    return body


def _split(body: dict[str, Any]) -> tuple[dict[str, Any], list[Child], bool]:
    evses = body.get("evses")
    header = {k: v for k, v in body.items() if k != "evses"}
    children = [Child(e["uid"], e, objects.last_updated_of(e), order=i) for i, e in enumerate(evses or [])]
    if len({c.child_id.upper() for c in children}) != len(children):
        raise InvalidParameters("EVSE uids must be unique within a location")
    return header, children, evses is not None


def _unknown(what: str) -> UnknownLocation:
    return UnknownLocation(f"Unknown {what}", http_status=404)


# ------------------------------------------------------------------ resolving the URL
def _ref(who: Caller | None, cc: str, pid: str, location_id: str) -> tuple[ObjectRef, str]:
    cc, pid = objects.party_from_path(cc, pid)
    location_id = path_id(location_id, "location_id")
    if who is not None:
        objects.check_party(who, KIND, cc, pid)
        return objects.ref_of(KIND, cc, pid, location_id), RECEIVED
    if get_settings().own_party(cc, pid, "CPO") is None:
        raise InvalidParameters(f"{cc}*{pid} is not one of our own CPO parties")
    return objects.ref_of(KIND, cc, pid, location_id), OWN


# ------------------------------------------------------------------ writes
def put_location(
    store: Any,
    who: Caller | None,
    cc: str,
    pid: str,
    location_id: str,
    raw: Any,
    meta: dict[str, Any] | None = None,
) -> Outcome:
    """PUT a whole location; ``meta``: extra metadata of our own (e.g. `push_to`, ingest)."""
    ref, collection = _ref(who, cc, pid, location_id)
    loc = validate(Location, raw)
    body = loc.to_json_dict()
    check_same("country_code", body["country_code"], ref.country_code)
    check_same("party_id", body["party_id"], ref.party_id)
    check_same("id", body["id"], ref.object_id)
    header, children, has_evses = _split(body)
    meta = {**(meta or {}), "evses": has_evses, **(objects.received_meta(who) if who else {})}
    result = store.put(
        ref,
        header,
        loc.last_updated,
        collection=collection,
        children=children,
        meta=meta,
        index=geo_index(ref, header.get("coordinates")),
    )
    if result is not WriteResult.STALE:  # a stale PUT changed nothing: nothing to announce
        _publish(who, "put", ref, body)
    return outcome(result)


def _evse_ref(
    who: Caller | None, cc: str, pid: str, location_id: str, evse_uid: str
) -> tuple[ObjectRef, str]:
    # Parties of partners and our own never overlap (credentials refuses such claims), so the
    # party check of _ref also keeps received and own trees apart.
    ref, _ = _ref(who, cc, pid, location_id)
    return ref, path_id(evse_uid, "evse_uid")


def put_evse(
    store: Any, who: Caller | None, cc: str, pid: str, location_id: str, evse_uid: str, raw: Any
) -> Outcome:
    ref, evse_uid = _evse_ref(who, cc, pid, location_id, evse_uid)
    evse = validate(EVSE, raw)
    body = evse.to_json_dict()
    check_same("uid", body["uid"], evse_uid)
    for _ in range(_RETRIES):
        current = store.get_child(ref, evse_uid)
        if current is not None and objects.last_updated_of(current.body) > evse.last_updated:
            return outcome(WriteResult.STALE)
        order = current.order if current else time.time_ns()
        child = Child(body["uid"], body, evse.last_updated, order=order)
        try:
            result = store.put_child(ref, child, expected_version=current.version if current else "")
        except ConcurrentUpdate:
            continue
        except ObjectMissing as err:
            raise _unknown(f"location {ref.object_id}") from err
        _publish(who, "put", ref, body, evse_uid=evse_uid)
        return outcome(result)
    raise ServiceUnavailable("EVSE is being changed concurrently, retry")


def _with_evse(
    store: Any, ref: ObjectRef, evse_uid: str, change: Any
) -> tuple[WriteResult, dict[str, Any] | None]:
    """Read-modify-write of one EVSE item with optimistic concurrency. `change(evse_body)` returns
    the new body and its last_updated, or None when the change is stale."""
    for _ in range(_RETRIES):
        current = store.get_child(ref, evse_uid)
        if current is None:
            raise _unknown(f"EVSE {evse_uid}")
        changed = change(dict(current.body))
        if changed is None:
            return WriteResult.STALE, None
        new_body, lu = changed
        child = Child(current.child_id, new_body, max(lu, current.last_updated), order=current.order)
        try:
            store.put_child(ref, child, expected_version=current.version)
        except ConcurrentUpdate:
            continue
        except ObjectMissing as err:
            raise _unknown(f"location {ref.object_id}") from err
        return WriteResult.UPDATED, new_body
    raise ServiceUnavailable("EVSE is being changed concurrently, retry")


def _set_connector_lu(evse: dict[str, Any], lu: Any, raw_lu: str) -> None:
    """A connector change also moves its EVSE's last_updated (if newer)."""
    if objects.last_updated_of(evse) < lu:
        evse["last_updated"] = raw_lu


def _connector_ref(
    who: Caller | None, cc: str, pid: str, location_id: str, evse_uid: str, connector_id: str
) -> tuple[ObjectRef, str, str]:
    ref, _ = _ref(who, cc, pid, location_id)
    return ref, path_id(evse_uid, "evse_uid"), path_id(connector_id, "connector_id")


def put_connector(
    store: Any,
    who: Caller | None,
    cc: str,
    pid: str,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    raw: Any,
) -> Outcome:
    ref, evse_uid, connector_id = _connector_ref(who, cc, pid, location_id, evse_uid, connector_id)
    conn = validate(Connector, raw)
    body = conn.to_json_dict()
    check_same("id", body["id"], connector_id)
    created = {"new": False}

    def change(evse: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        connectors = list(evse.get("connectors") or [])
        for i, c in enumerate(connectors):
            if str(c["id"]).upper() == connector_id.upper():
                if objects.last_updated_of(c) > conn.last_updated:
                    return None
                connectors[i] = body
                break
        else:
            connectors.append(body)
            created["new"] = True
        evse["connectors"] = connectors
        _set_connector_lu(evse, conn.last_updated, body["last_updated"])
        return evse, conn.last_updated

    result, _ = _with_evse(store, ref, evse_uid, change)
    if result is WriteResult.STALE:
        return outcome(result)
    _publish(who, "put", ref, body, evse_uid=evse_uid, connector_id=connector_id)
    return outcome(WriteResult.CREATED if created["new"] else WriteResult.UPDATED)


def patch_location(store: Any, who: Caller | None, cc: str, pid: str, location_id: str, raw: Any) -> Outcome:
    ref, _ = _ref(who, cc, pid, location_id)
    fields = objects.validate_fields(Location, raw)
    for name in ("country_code", "party_id", "id"):
        check_same(name, fields.get(name), getattr(ref, {"id": "object_id"}.get(name, name)))
    lu = objects.last_updated_of(fields)
    evses = fields.pop("evses", None)
    index = geo_index(ref, fields.get("coordinates")) if "coordinates" in fields else None
    try:
        result = store.patch(ref, fields, lu, index=index)
    except ObjectMissing as err:
        raise _unknown(f"location {ref.object_id}") from err
    if result is not WriteResult.STALE and evses is not None:
        _, children, _ = _split({"evses": evses})
        store.replace_children(ref, children)
    if result is not WriteResult.STALE:
        _publish(who, "patch", ref, {**fields, **({"evses": evses} if evses is not None else {})})
    return outcome(result)


def patch_evse(
    store: Any, who: Caller | None, cc: str, pid: str, location_id: str, evse_uid: str, raw: Any
) -> Outcome:
    ref, evse_uid = _evse_ref(who, cc, pid, location_id, evse_uid)
    fields = objects.validate_fields(EVSE, raw)
    check_same("uid", fields.get("uid"), evse_uid)
    try:
        # One conditional UpdateItem on the EVSE item (+ the parent's last_updated): the cost does
        # not depend on how many EVSEs the location has.
        result = store.patch_child(ref, evse_uid, fields, objects.last_updated_of(fields))
    except ObjectMissing as err:
        raise _unknown(f"EVSE {evse_uid}") from err
    if result is not WriteResult.STALE:
        _publish(who, "patch", ref, fields, evse_uid=evse_uid)
    return outcome(result)


def patch_connector(
    store: Any,
    who: Caller | None,
    cc: str,
    pid: str,
    location_id: str,
    evse_uid: str,
    connector_id: str,
    raw: Any,
) -> Outcome:
    ref, evse_uid, connector_id = _connector_ref(who, cc, pid, location_id, evse_uid, connector_id)
    fields = objects.validate_fields(Connector, raw)
    check_same("id", fields.get("id"), connector_id)
    lu = objects.last_updated_of(fields)

    def change(evse: dict[str, Any]) -> tuple[dict[str, Any], Any] | None:
        connectors = list(evse.get("connectors") or [])
        for i, c in enumerate(connectors):
            if str(c["id"]).upper() == connector_id.upper():
                if objects.last_updated_of(c) > lu:
                    return None
                merged = {**c, **{k: v for k, v in fields.items() if v is not None}}
                for k in [k for k, v in fields.items() if v is None]:
                    merged.pop(k, None)
                connectors[i] = merged
                evse["connectors"] = connectors
                _set_connector_lu(evse, lu, fields["last_updated"])
                return evse, lu
        raise _unknown(f"connector {connector_id}")

    result, _ = _with_evse(store, ref, evse_uid, change)
    if result is not WriteResult.STALE:
        _publish(who, "patch", ref, fields, evse_uid=evse_uid, connector_id=connector_id)
    return outcome(result)


def _publish(who: Caller | None, action: str, ref: ObjectRef, payload: dict[str, Any], **ids: str) -> None:
    if who is None:
        objects.publish_own(KIND, action, ref, payload, **ids)
    else:
        objects.publish_received(KIND, action, ref, who, payload, **ids)


# ------------------------------------------------------------------ reads
def _pick(stored: StoredObject, evse_uid: str | None, connector_id: str | None) -> dict[str, Any]:
    location = assemble(stored)
    if evse_uid is None:
        return location
    evse_uid = path_id(evse_uid, "evse_uid")
    evse = next((e for e in location.get("evses") or [] if str(e["uid"]).upper() == evse_uid.upper()), None)
    if evse is None:
        raise _unknown(f"EVSE {evse_uid}")
    if connector_id is None:
        return evse
    connector_id = path_id(connector_id, "connector_id")
    conn = next(
        (c for c in evse.get("connectors") or [] if str(c["id"]).upper() == connector_id.upper()), None
    )
    if conn is None:
        raise _unknown(f"connector {connector_id}")
    return conn


def get_received(
    store: Any,
    who: Caller,
    cc: str,
    pid: str,
    location_id: str,
    evse_uid: str | None = None,
    connector_id: str | None = None,
) -> dict[str, Any]:
    ref, collection = _ref(who, cc, pid, location_id)
    found = store.get(ref)
    if found is None or found.collection != collection:
        raise _unknown(f"location {ref.object_id}")
    return _pick(found, evse_uid, connector_id)


def get_own(
    store: Any, location_id: str, evse_uid: str | None = None, connector_id: str | None = None
) -> dict:
    return _pick(objects.get_own(store, KIND, location_id), evse_uid, connector_id)


def list_own(store: Any, params: Any) -> tuple[list[dict[str, Any]], Any]:
    page = objects.list_own(store, KIND, params)
    return [assemble(o) for o in store.load_children_many(page.items)], page
