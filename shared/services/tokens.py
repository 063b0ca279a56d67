"""Tokens module (mod_tokens.asciidoc): eMSP-owned; identified by (uid, type), type RFID by default.

As eMSP (Sender) we answer real-time authorization (`POST {uid}/authorize[?type=]`) for our own
tokens; as CPO (Receiver) we store the tokens eMSPs push and authorize drivers locally from them
(whitelist), asking the eMSP in real time when the whitelist says so.

Authorization policy for our own tokens (mod_tokens, AuthorizationInfo):
- unknown token -> 2004 with HTTP 404;
- `valid: false` -> BLOCKED;
- back-office metadata (ingest event `authorization`): `valid_until` past -> EXPIRED,
  `no_credit` -> NO_CREDIT, `allowed_location_ids` -> only those locations (no
  LocationReferences in the request -> 2002, another location -> NOT_ALLOWED);
- otherwise ALLOWED, echoing the requested location.
Every answer carries a fresh `authorization_reference`, stored so sessions and CDRs can be matched.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from shared.errors import InvalidParameters, NotEnoughInformation, NotFound, UnknownToken
from shared.models.types import format_datetime
from shared.models.v221.tokens import LocationReferences, Token, TokenType
from shared.services import objects
from shared.services.objects import OWN, ObjectKind
from shared.store.base import ObjectRef
from shared.validation import validate


def uid_index_key(uid: str, type_: str) -> str:
    return f"TK#{type_}#{uid.upper()}"


def _uid_index(body: dict[str, Any]) -> dict[str, str]:
    # GSI2: a CPO finds a driver's token by (type, uid) alone, whichever eMSP pushed it.
    return {
        "GSI2PK": uid_index_key(body["uid"], body["type"]),
        "GSI2SK": f"{body['country_code']}*{body['party_id']}",
    }


KIND = ObjectKind(
    "tokens", Token, "uid", "EMSP", unknown=UnknownToken, variant_field="type", index_of=_uid_index
)
AUTHORIZATIONS = "authorizations"


def token_type(raw: str | None) -> str:
    """The `type` query parameter: RFID when absent (mod_tokens, Request Parameters)."""
    if raw is None or raw == "":
        return TokenType.RFID.value
    try:
        return TokenType(raw).value
    except ValueError as err:
        raise InvalidParameters(f"Unknown token type {raw[:20]!r}") from err


def require_cpo(who: Any) -> None:
    """Our tokens (contract ids, validity) are shared with CPO partners only: an eMSP partner
    (a competitor) reading them through the sender interface gets a 404 (transport_and_format)."""
    if not any(r.get("role") == "CPO" for r in who.roles()):
        raise NotFound("The tokens sender interface is for CPO partners")


def list_own(store: Any, who: Any, params: Any) -> tuple[list[dict[str, Any]], Any]:
    require_cpo(who)
    page = objects.list_own(store, KIND, params)
    return [o.body for o in page.items], page


def put_own_with_policy(store: Any, raw: Any, authorization: dict[str, Any] | None = None) -> objects.Outcome:
    """Our own token from the back office, with optional authorization metadata (see above)."""
    return objects.put_own(store, KIND, raw, meta={"authorization": authorization} if authorization else None)


def authorize(store: Any, who: Any, uid: str, type_: str | None, raw_body: Any) -> dict[str, Any]:
    """Real-time authorization of one of our own tokens (eMSP Sender interface)."""
    require_cpo(who)
    variant = token_type(type_)
    found = objects.get_own(store, KIND, uid, variant)
    location = validate(LocationReferences, raw_body) if raw_body not in (None, {}, b"") else None
    token = found.body
    policy = found.meta.get("authorization") or {}
    allowed = "ALLOWED"
    if not token.get("valid", False):
        allowed = "BLOCKED"
    elif policy.get("valid_until") and str(policy["valid_until"]) < format_datetime(datetime.now(UTC)):
        allowed = "EXPIRED"
    elif policy.get("no_credit"):
        allowed = "NO_CREDIT"
    elif policy.get("allowed_location_ids"):
        if location is None:
            # mod_tokens: too little information to decide -> 2002
            raise NotEnoughInformation(
                "This token is restricted to certain locations: send LocationReferences"
            )
        allowed_ids = {str(x).upper() for x in policy["allowed_location_ids"]}
        if str(location.location_id).upper() not in allowed_ids:
            allowed = "NOT_ALLOWED"
    reference = secrets.token_hex(16)
    info: dict[str, Any] = {"allowed": allowed, "token": token, "authorization_reference": reference}
    if location is not None and allowed == "ALLOWED":
        info["location"] = location.to_json_dict()
    now = datetime.now(UTC)
    store.put(
        ObjectRef(AUTHORIZATIONS, found.ref.country_code, found.ref.party_id, reference),
        {
            "authorization_reference": reference,
            "allowed": allowed,
            "token_uid": token["uid"],
            "token_type": token["type"],
            "location": info.get("location"),
            "last_updated": format_datetime(now),
        },
        now,
        collection=OWN,
    )
    return info
