"""Client-owned objects (transport_and_format.asciidoc, "Client Owned Object Push/Pull"): the rules
every module shares, written once.

Receiver side (a partner pushes its objects into us):
- the URL's country_code/party_id must be a party the caller's credentials hold in the owning
  role; otherwise HTTP 404 (the spec allows it) and nothing is written;
- the object's own country_code/party_id/id must equal the URL, else 2001;
- PUT stores the whole object (201 when new, 200 when replaced); PATCH changes only the fields
  sent, requires `last_updated`, and is refused for an unknown object (never an upsert);
- an update older than the stored object (by `last_updated`) is not applied. We answer success
  (1000, HTTP 200) with a status_message saying the newer stored data was kept: the sender's copy
  is outdated, retrying cannot help, and an error would make push pipelines retry forever.

Sender side (partners read our own objects): lists of the `own` collection, paginated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from shared import events
from shared.auth import Caller
from shared.config import get_settings
from shared.errors import InvalidParameters, NotFound, OcpiError
from shared.models.types import CiString, DateTime
from shared.pagination import PageParams
from shared.store.base import ObjectMissing, ObjectRef, Page, StoredObject, WriteResult
from shared.validation import describe_validation, validate

OWN = "own"  # collection of our own objects: what sender interfaces list
RECEIVED = "rx"  # collection of objects partners pushed to us

STALE_MESSAGE = "Not applied: the stored object has a newer last_updated"


@dataclass(frozen=True)
class ObjectKind:
    module: str
    model: type[BaseModel]
    id_field: str
    owner_role: str  # the role of the party that owns these objects (CPO, EMSP)
    unknown: type[OcpiError] = NotFound  # error for an unknown object of this kind
    variant_field: str | None = None  # tokens: (uid, type) identify a token
    id_length: int = 36
    # Extra index attributes of a received object (e.g. tokens by uid across eMSP parties).
    index_of: Callable[[dict[str, Any]], dict[str, str]] | None = None


@dataclass
class Outcome:
    result: WriteResult
    message: str | None = None
    data: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def http_status(self) -> int:
        return 201 if self.result is WriteResult.CREATED else 200


def outcome(result: WriteResult) -> Outcome:
    return Outcome(result, STALE_MESSAGE if result is WriteResult.STALE else None)


@lru_cache(maxsize=16)
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


_DT = TypeAdapter(DateTime)


def path_id(value: str, name: str, length: int = 36) -> str:
    """A CiString(n) taken from the URL; anything else is 2001."""
    try:
        return str(_adapter(CiString(length)).validate_python(value))
    except ValidationError as err:
        raise InvalidParameters(f"Invalid {name} in the URL") from err


def party_from_path(country_code: str, party_id: str) -> tuple[str, str]:
    cc, pid = path_id(country_code, "country_code", 2), path_id(party_id, "party_id", 3)
    if len(cc) != 2 or len(pid) != 3:  # a party is always exactly 2 + 3 characters
        raise InvalidParameters("Invalid country_code or party_id in the URL: 2 and 3 characters")
    return cc, pid


def check_party(who: Caller, kind: ObjectKind, country_code: str, party_id: str) -> None:
    if not who.holds_party(country_code, party_id, kind.owner_role):
        # transport_and_format, Errors: 404 for a party that is not among the caller's roles.
        raise NotFound(f"{country_code}*{party_id} is not a {kind.owner_role} party of your credentials")


def check_same(label: str, sent: Any, expected: str) -> None:
    if sent is not None and str(sent).upper() != expected.upper():
        raise InvalidParameters(f"{label} in the body ({sent}) differs from the URL ({expected})")


def validate_fields(
    model: type[BaseModel], fields: Any, *, require_last_updated: bool = True
) -> dict[str, Any]:
    """Validate a PATCH body field by field against the model; returns the fields in their
    normalised JSON form. Unknown fields are kept as sent, as unknown fields of a PUT are (OCPI
    2.3.0: unknown fields SHALL NOT be rejected; they are not lost either)."""
    if not isinstance(fields, dict):
        raise InvalidParameters("PATCH body must be a JSON object")
    if require_last_updated and "last_updated" not in fields:
        # mod_locations/mod_tokens/...: "Any request to the PATCH method SHALL contain the last_updated field"
        raise InvalidParameters("Invalid or missing parameters: last_updated is required in a PATCH")
    out: dict[str, Any] = {}
    errors: list[str] = []
    for name, value in fields.items():
        info = model.model_fields.get(name)
        if info is None:
            out[name] = value
            continue
        if value is None:
            if info.is_required():
                errors.append(f"{name}: required field cannot be removed")
            else:
                out[name] = None
            continue
        # The whole annotation: a required field's constraints (CiString length, Number, DateTime)
        # live in its metadata, not in `annotation`.
        adapter = _adapter(info.rebuild_annotation())
        try:
            out[name] = adapter.dump_python(adapter.validate_python(value), mode="json", exclude_none=True)
        except ValidationError as err:
            errors.append(
                describe_validation(err, prefix=f"{name}.").removeprefix("Invalid or missing parameters: ")
            )
    if errors:
        raise InvalidParameters("Invalid or missing parameters: " + "; ".join(errors))
    return out


def last_updated_of(data: dict[str, Any]) -> datetime:
    try:
        return _DT.validate_python(data["last_updated"])
    except (KeyError, ValidationError) as err:
        raise InvalidParameters("Invalid or missing parameters: last_updated") from err


def ref_of(
    kind: ObjectKind, country_code: str, party_id: str, object_id: str, variant: str = ""
) -> ObjectRef:
    return ObjectRef(kind.module, country_code, party_id, object_id, variant)


def received_meta(who: Caller) -> dict[str, Any]:
    return {"partner_id": who.partner_id}


def publish_received(
    kind: ObjectKind, action: str, ref: ObjectRef, who: Caller, payload: dict[str, Any], **ids: str
) -> None:
    detail = {
        "module": kind.module,
        "action": action,
        "country_code": ref.country_code,
        "party_id": ref.party_id,
        "id": ref.object_id,
        **({"type": ref.variant} if ref.variant else {}),
        **ids,
        "partner_id": who.partner_id,
        "last_updated": payload.get("last_updated"),
        ("object" if action == "put" else "fields"): payload,
    }
    events.publish(events.RECEIVED.format(action=action), detail)


def publish_own(kind: ObjectKind, action: str, ref: ObjectRef, payload: dict[str, Any], **ids: str) -> None:
    """`ocpi.own.changed` (shared/events.py): a patch names the fields it changed (`fields`, names
    only), an object that carries a `cdr_token` names its eMSP party (`to_country_code`,
    `to_party_id`): what the push fan-out needs without reading the object."""
    detail = {
        "module": kind.module,
        "action": action,
        "country_code": ref.country_code,
        "party_id": ref.party_id,
        "id": ref.object_id,
        **({"type": ref.variant} if ref.variant else {}),
        **ids,
        "last_updated": payload.get("last_updated"),
    }
    if action == "patch":
        detail["fields"] = sorted(payload)
    token = payload.get("cdr_token")
    if isinstance(token, dict) and token.get("country_code") and token.get("party_id"):
        detail["to_country_code"] = str(token["country_code"]).upper()
        detail["to_party_id"] = str(token["party_id"]).upper()
    events.publish(events.OWN_CHANGED, detail)


# ------------------------------------------------------------------ flat objects (tariffs, tokens, ...)
def received_ref(kind: ObjectKind, who: Caller, cc: str, pid: str, oid: str, variant: str = "") -> ObjectRef:
    """The object a receiver URL names, after checking it and the caller's right to the party."""
    cc, pid = party_from_path(cc, pid)
    oid = path_id(oid, kind.id_field, kind.id_length)
    check_party(who, kind, cc, pid)
    return ref_of(kind, cc, pid, oid, variant)


def check_body_ids(kind: ObjectKind, data: dict[str, Any], ref: ObjectRef) -> None:
    """Ids in a PUT/PATCH body must equal the URL's (transport_and_format, Errors: 2001)."""
    check_same("country_code", data.get("country_code"), ref.country_code)
    check_same("party_id", data.get("party_id"), ref.party_id)
    check_same(kind.id_field, data.get(kind.id_field), ref.object_id)
    if kind.variant_field:
        check_same(kind.variant_field, data.get(kind.variant_field), ref.variant)


def put_received(
    store: Any, kind: ObjectKind, who: Caller, cc: str, pid: str, oid: str, raw: Any, variant: str = ""
) -> Outcome:
    ref = received_ref(kind, who, cc, pid, oid, variant)
    obj = validate(kind.model, raw)
    body = obj.to_json_dict()
    check_body_ids(kind, body, ref)
    index = kind.index_of(body) if kind.index_of else None
    result = store.put(ref, body, obj.last_updated, collection=RECEIVED, meta=received_meta(who), index=index)
    if result is not WriteResult.STALE:
        publish_received(kind, "put", ref, who, body)
    return outcome(result)


def patch_received(
    store: Any, kind: ObjectKind, who: Caller, cc: str, pid: str, oid: str, raw: Any, variant: str = ""
) -> Outcome:
    ref = received_ref(kind, who, cc, pid, oid, variant)
    fields = validate_fields(kind.model, raw)
    check_body_ids(kind, fields, ref)
    try:
        result = store.patch(ref, fields, last_updated_of(fields))
    except ObjectMissing as err:
        raise kind.unknown(f"Unknown {kind.module[:-1]} {oid}", http_status=404) from err
    if result is not WriteResult.STALE:
        publish_received(kind, "patch", ref, who, fields)
    return outcome(result)


def get_received(
    store: Any, kind: ObjectKind, who: Caller, cc: str, pid: str, oid: str, variant: str = ""
) -> StoredObject:
    ref = received_ref(kind, who, cc, pid, oid, variant)
    found = store.get(ref)
    if found is None or found.collection != RECEIVED:
        raise kind.unknown(f"Unknown {kind.module[:-1]} {ref.object_id}", http_status=404)
    return found


def delete_received(store: Any, kind: ObjectKind, who: Caller, cc: str, pid: str, oid: str) -> Outcome:
    found = get_received(store, kind, who, cc, pid, oid)
    store.delete(found.ref)
    publish_received(kind, "delete", found.ref, who, {"last_updated": found.body.get("last_updated")})
    return Outcome(WriteResult.UPDATED)


# ------------------------------------------------------------------ our own objects
def own_party_of(kind: ObjectKind, body: dict[str, Any]) -> tuple[str, str]:
    cc, pid = body.get("country_code"), body.get("party_id")
    if not cc or not pid or get_settings().own_party(cc, pid, kind.owner_role) is None:
        raise InvalidParameters(f"{cc}*{pid} is not one of our own {kind.owner_role} parties")
    return cc, pid


def put_own(store: Any, kind: ObjectKind, raw: Any, meta: dict[str, Any] | None = None) -> Outcome:
    obj = validate(kind.model, raw)
    body = obj.to_json_dict()
    cc, pid = own_party_of(kind, body)
    variant = str(body.get(kind.variant_field, "")) if kind.variant_field else ""
    ref = ref_of(kind, cc, pid, body[kind.id_field], variant)
    result = store.put(ref, body, obj.last_updated, collection=OWN, meta=meta)
    if result is not WriteResult.STALE:
        publish_own(kind, "put", ref, body)
    return outcome(result)


def patch_own(
    store: Any, kind: ObjectKind, cc: str, pid: str, oid: str, raw: Any, variant: str = ""
) -> Outcome:
    if get_settings().own_party(cc, pid, kind.owner_role) is None:
        raise InvalidParameters(f"{cc}*{pid} is not one of our own {kind.owner_role} parties")
    fields = validate_fields(kind.model, raw)
    ref = ref_of(kind, cc, pid, oid, variant)
    try:
        result = store.patch(ref, fields, last_updated_of(fields))
    except ObjectMissing as err:
        raise kind.unknown(f"Unknown {kind.module[:-1]} {oid}", http_status=404) from err
    if result is not WriteResult.STALE:
        publish_own(kind, "patch", ref, fields)
    return outcome(result)


def list_own(store: Any, kind: ObjectKind, params: PageParams) -> Page:
    return store.list(params.query(kind.module, OWN))


def get_own(store: Any, kind: ObjectKind, oid: str, variant: str = "") -> StoredObject:
    """Sender GET by id: the URL carries no party, so look in each own party of the owning role."""
    oid = path_id(oid, kind.id_field, kind.id_length)
    for party in get_settings().own_parties:
        if party.role.upper() != kind.owner_role:
            continue
        found = store.get(ref_of(kind, party.country_code, party.party_id, oid, variant))
        if found is not None and found.collection == OWN:
            return found
    raise kind.unknown(f"Unknown {kind.module[:-1]} {oid}", http_status=404)


# ------------------------------------------------------------------ objects addressed to one partner party
def to_collection(country_code: str, party_id: str) -> str:
    """Collection of our own objects meant for one partner party (sessions and CDRs: the eMSP of
    the `cdr_token`): the sender interface lists only the caller's own collection."""
    return f"to:{country_code.upper()}*{party_id.upper()}"


def caller_party(
    who: Caller, role: str, from_party: tuple[str | None, str | None] | None
) -> tuple[str, str] | None:
    """The party (of `role`) a sender request is made for: the OCPI-from-* routing headers when
    sent (a party the caller holds in that role, else 2001), else the caller's only party of that
    role; None when it holds none (it owns nothing here); 2001 when it holds several and did not
    say which."""
    cc, pid = from_party or (None, None)
    if cc or pid:
        if not (cc and pid):
            raise InvalidParameters("Send both OCPI-from-country-code and OCPI-from-party-id")
        if not who.holds_party(cc, pid, role):
            raise InvalidParameters(f"OCPI-from-* headers name no {role} party of your credentials")
        return cc.upper(), pid.upper()
    parties = {
        (r["country_code"].upper(), r["party_id"].upper())
        for r in who.roles()
        if str(r.get("role", "")).upper() == role
    }
    if len(parties) > 1:
        raise InvalidParameters(
            f"Your credentials hold several {role} parties: say which with the OCPI-from-country-code "
            "and OCPI-from-party-id headers"
        )
    return next(iter(parties), None)


def list_to(store: Any, kind: ObjectKind, party: tuple[str, str] | None, params: PageParams) -> Page:
    """Sender list of our own objects addressed to one party (an empty page for no party)."""
    if party is None:
        return Page(items=[], total=0, next_offset=None, next_cursor=None)
    return store.list(params.query(kind.module, to_collection(*party)))
