"""Driver authorization as CPO (mod_tokens, "Real-time authorization" and WhitelistType).

The platform (charger back office) calls `authorize_driver` when a driver presents a token:
- the token is looked up among the tokens eMSPs pushed to us (by type and uid across eMSP
  parties, GSI2), or in the given eMSP party;
- whitelist ALWAYS / ALLOWED: decided locally from the cached token (valid -> ALLOWED, else
  BLOCKED; ALLOWED lets the CPO choose and local is cheaper and works offline);
- ALLOWED_OFFLINE: real-time request to the eMSP; if the eMSP cannot be reached, local decision;
- NEVER: real-time only; if the eMSP cannot be reached, NOT_ALLOWED;
- unknown token with a known eMSP party: real-time request; otherwise not allowed.
The answer says where the decision came from (`source`), and carries the eMSP's
`authorization_reference` when there was one.
"""

from __future__ import annotations

from typing import Any

from shared.client import OcpiClient, OcpiClientError
from shared.config import get_settings
from shared.errors import NotEnoughInformation
from shared.logs import logger
from shared.services import objects, tokens
from shared.services.credentials import STATUS_REGISTERED, endpoint_url, outbound_token
from shared.services.objects import RECEIVED
from shared.versions import convert


def _find_token(store: Any, uid: str, type_: str, emsp: tuple[str, str] | None) -> Any:
    if emsp is not None:
        found = store.get(objects.ref_of(tokens.KIND, emsp[0], emsp[1], uid, type_))
        return found if found is not None and found.collection == RECEIVED else None
    hits = [
        o for o in store.query_index("GSI2", tokens.uid_index_key(uid, type_)) if o.collection == RECEIVED
    ]
    if len(hits) > 1:
        raise NotEnoughInformation("Several eMSPs pushed a token with this uid: name the eMSP party")
    return hits[0] if hits else None


def _emsp_partner(store: Any, cc: str, pid: str) -> dict[str, Any] | None:
    for p in store.list_partners():
        if p.get("status") != STATUS_REGISTERED:
            continue
        for r in p.get("roles") or []:
            if (r["role"], r["country_code"].upper(), r["party_id"].upper()) == (
                "EMSP",
                cc.upper(),
                pid.upper(),
            ):
                return p
    return None


def _real_time(
    store: Any, cc: str, pid: str, uid: str, type_: str, location: dict[str, Any] | None
) -> dict[str, Any] | None:
    """POST {tokens}/{uid}/authorize at the eMSP; None when it cannot be reached or answers badly."""
    partner = _emsp_partner(store, cc, pid)
    url = endpoint_url(partner, "tokens", "SENDER") if partner else None
    if not partner or not url:
        return None
    own = next((p for p in get_settings().own_parties if p.role == "CPO"), None)
    try:
        token = outbound_token(partner)
    except OcpiClientError:  # KMS trouble (logged there): real time is unavailable, as when unreachable
        return None
    client = OcpiClient(
        token,
        raw_token=bool(partner.get("raw_token")),
        timeout=5.0,
        retries=0,
        from_party=(own.country_code, own.party_id) if own else None,
        to_party=(cc, pid),
    )
    if location is not None:  # in the partner's version (shared/versions)
        try:
            location = convert.to_partner(store, partner, "location_references", location)
        except ValueError:
            location = None  # not expressible in that version: ask without it
    try:
        result = client.post(f"{url.rstrip('/')}/{uid}/authorize", params={"type": type_}, json=location)
    except OcpiClientError as err:
        status = err.result.status_code if err.result is not None else None
        if status == 2004:
            return {"allowed": "NOT_ALLOWED", "unknown_to_emsp": True}
        logger.warning("real-time authorization unavailable", extra={"partner_id": partner["partner_id"]})
        return None
    if not isinstance(result.data, dict) or not result.data.get("allowed"):
        return None
    try:
        return convert.from_partner(store, partner, "authorization_info", result.data)
    except (ValueError, KeyError, TypeError, AttributeError):  # a malformed answer: unavailable
        logger.warning(
            "real-time authorization answer unreadable", extra={"partner_id": partner["partner_id"]}
        )
        return None


def authorize_driver(
    store: Any,
    uid: str,
    type_: str | None = None,
    *,
    emsp: tuple[str, str] | None = None,
    location: dict[str, Any] | None = None,
) -> dict[str, Any]:
    type_ = tokens.token_type(type_)
    found = _find_token(store, uid, type_, emsp)
    if found is None:
        if emsp is None:
            return {"allowed": "NOT_ALLOWED", "source": "unknown-token"}
        answer = _real_time(store, emsp[0], emsp[1], uid, type_, location)
        if answer is None:
            return {"allowed": "NOT_ALLOWED", "source": "unknown-token"}
        return {**answer, "source": "real-time"}
    token = found.body
    local = "ALLOWED" if token.get("valid") else "BLOCKED"
    whitelist = token.get("whitelist")
    if whitelist in ("ALWAYS", "ALLOWED"):
        return {"allowed": local, "token": token, "source": "whitelist"}
    answer = _real_time(store, found.ref.country_code, found.ref.party_id, uid, type_, location)
    if answer is not None:
        return {**answer, "source": "real-time"}
    if whitelist == "ALLOWED_OFFLINE":
        return {"allowed": local, "token": token, "source": "offline-whitelist"}
    return {"allowed": "NOT_ALLOWED", "token": token, "source": "real-time-unavailable"}
