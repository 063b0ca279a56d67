"""Credentials module (credentials.asciidoc): registration in both directions, rotation, unregister.

Tokens (credentials.asciidoc, "Registration"):
- token A: made by ops for a new partner (`invite`); single use, expires, opens only the versions
  and credentials modules.
- token B: the token the *initiator* of a registration gives the other side to call it.
- token C: the token the *receiver* of a registration answers with.
We store only HMAC hashes of the tokens partners use to call us (A, C, or our B when we initiated);
the token we use to call a partner is kept with the partner (outbound_token), sealed with AWS KMS
(shared/secrets.py): read it with :func:`outbound_token`, never from the record.

Partner record (PartnerStore, one item): partner_id, name, status (INVITED, REGISTERING,
REGISTERED, UNREGISTERED), initiated_by (partner|us), version, versions_url, endpoints, roles,
outbound_token, raw_token, inbound_token_hash, created_at, updated_at.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from shared import auth, secrets
from shared.auth import KIND_PARTNER, KIND_REGISTRATION, Caller
from shared.client import OcpiClient, OcpiClientError, OcpiHttpError
from shared.config import get_settings
from shared.errors import (
    ClientApiError,
    InvalidParameters,
    MethodNotAllowed,
    NoMatchingEndpoints,
    UnsupportedVersion,
)
from shared.logs import logger
from shared.models.v221.credentials import Credentials
from shared.store.base import TokenRecord
from shared.timeutil import timestamp
from shared.validation import validate
from shared.versions import Context, convert

# How long our token B stays a registration-scope token while we register with a partner.
HANDSHAKE_TTL = 15 * 60

STATUS_INVITED = "INVITED"
STATUS_REGISTERING = "REGISTERING"
STATUS_REGISTERED = "REGISTERED"
STATUS_UNREGISTERED = "UNREGISTERED"


def _version_key(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (-1,)


def our_versions_url(base_url: str) -> str:
    return f"{base_url}/ocpi/versions"


def our_credentials(base_url: str, token: str) -> dict[str, Any]:
    return {
        "token": token,
        "url": our_versions_url(base_url),
        "roles": [p.to_credentials_role() for p in get_settings().own_parties],
    }


# ------------------------------------------------------------------ versions (shared/versions)
def own_role_211(partner: dict[str, Any] | None) -> str:
    """OCPI 2.1.1 credentials carry one party: which of our roles a 2.1.1 partner talks to. Set at
    invitation (`ocpi-admin invite --as EMSP`), else CPO when we have a CPO party, else EMSP."""
    chosen = str((partner or {}).get("own_role_211") or "").upper()
    roles = get_settings().own_roles()
    if chosen in roles:
        return chosen
    return "CPO" if "CPO" in roles else "EMSP"


def version_context(version: str, partner: dict[str, Any] | None) -> Context:
    """The parties a converter needs for the credentials of ``version`` (2.1.1: one each)."""
    if version != "2.1.1":
        return Context()
    role = own_role_211(partner)
    own = next((p for p in get_settings().own_parties if p.role.upper() == role), None)
    theirs = "EMSP" if role == "CPO" else "CPO"
    return Context(
        partner_party=("", "", theirs),
        own_party=(own.country_code, own.party_id, role) if own else None,
    )


def credentials_in(version: str, partner: dict[str, Any] | None, body: Any) -> Any:
    try:
        return convert.inbound(version, "credentials", body, version_context(version, partner))
    except ValueError as err:
        raise InvalidParameters(str(err)) from err


def credentials_out(version: str, partner: dict[str, Any] | None, body: dict[str, Any]) -> dict[str, Any]:
    return convert.outbound(version, "credentials", body, version_context(version, partner))


def required_modules() -> list[str]:
    import os

    raw = os.environ.get("OCPI_REQUIRED_PARTNER_MODULES", "credentials")
    return [m.strip() for m in raw.split(",") if m.strip()]


# ------------------------------------------------------------------ discovery of a partner
@dataclass
class Discovery:
    version: str
    details_url: str
    endpoints: list[dict[str, str]]
    raw_token: bool


def _client(token: str, raw_token: bool) -> OcpiClient:
    return OcpiClient(token, raw_token=raw_token, routing_headers=False, retries=1, timeout=10.0)


def _fetch(token: str, url: str, raw_token: bool | None) -> tuple[Any, bool]:
    """GET an OCPI resource; with raw_token None, try Base64 first and fall back to a raw token on
    401 (transport_and_format: "trial and error" for pre-2.2-d2 partners)."""
    modes = [raw_token] if raw_token is not None else [False, True]
    last: Exception | None = None
    for mode in modes:
        try:
            return _client(token, mode).get(url).data, mode
        except OcpiHttpError as err:
            last = err
            if err.result is None or err.result.http_status != 401:
                break
        except OcpiClientError as err:
            last = err
            break
    raise ClientApiError(f"Unable to use the partner's API at {url}: {_describe(last)}")


def _describe(err: Exception | None) -> str:
    if err is None:
        return "no answer"
    result = getattr(err, "result", None)
    if result is not None:
        return f"HTTP {result.http_status}, OCPI {result.status_code} {result.status_message or ''}".strip()
    return type(err).__name__


def discover(
    token: str, versions_url: str, *, raw_token: bool | None = None, version: str | None = None
) -> Discovery:
    """Read a partner's versions and the details of the highest common (or the given) version."""
    data, raw = _fetch(token, versions_url, raw_token)
    if not isinstance(data, list):
        raise ClientApiError("The partner's versions endpoint did not return a list of versions")
    theirs = {
        str(v.get("version")): str(v.get("url"))
        for v in data
        if isinstance(v, dict) and v.get("version") and v.get("url")
    }
    if version is not None:
        if version not in theirs:
            raise UnsupportedVersion(f"The partner does not offer OCPI {version}")
        chosen = version
    else:
        offered = convert.enabled_versions()
        common = sorted(set(theirs) & set(offered), key=_version_key)
        if not common:
            raise UnsupportedVersion(
                f"No common OCPI version (partner offers {', '.join(sorted(theirs)) or 'none'}; "
                f"we offer {', '.join(offered)})"
            )
        chosen = common[-1]
    details, _ = _fetch(token, theirs[chosen], raw)
    endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(endpoints, list):
        raise ClientApiError("The partner's version details did not contain endpoints")
    clean = [
        {"identifier": str(e["identifier"]), "role": str(e.get("role", "")), "url": str(e["url"])}
        for e in endpoints
        if isinstance(e, dict) and e.get("identifier") and e.get("url")
    ]
    present = {e["identifier"] for e in clean}
    missing = [m for m in required_modules() if m not in present]
    if missing:
        raise NoMatchingEndpoints(f"The partner does not offer the required endpoints: {', '.join(missing)}")
    return Discovery(version=chosen, details_url=theirs[chosen], endpoints=clean, raw_token=raw)


def endpoint_url(partner: dict[str, Any], identifier: str, role: str | None = None) -> str | None:
    for e in partner.get("endpoints") or []:
        if e["identifier"] == identifier and (role is None or e.get("role") in (role, "")):
            return e["url"]
    return None


def _party_keys(roles: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["role"], r["country_code"], r["party_id"]) for r in roles]


def _claim(store: Any, partner_id: str, roles: list[dict[str, Any]]) -> None:
    keys = _party_keys(roles)
    if len({(r.upper(), c.upper(), p.upper()) for r, c, p in keys}) != len(keys):
        raise InvalidParameters("Every role needs a unique combination of role, country_code and party_id")
    own = {p.key for p in get_settings().own_parties}
    if any((r.upper(), c.upper(), p.upper()) in own for r, c, p in keys):
        raise InvalidParameters("A role in these credentials is one of our own parties")
    taken = store.claim_parties(partner_id, keys)
    if taken:
        names = ", ".join(f"{c}*{p} ({r})" for r, c, p in taken)
        raise InvalidParameters(f"Already registered by another partner: {names}")


def _roles(creds: Credentials) -> list[dict[str, Any]]:
    return creds.to_json_dict()["roles"]


def _now() -> str:
    return timestamp()


# ------------------------------------------------------------------ ops: invitations
def invite(store: Any, name: str, ttl: int | None = None, own_role_211: str = "") -> tuple[str, str]:
    """Create a partner invitation: returns (partner_id, token A). ``own_role_211``: which of our
    roles (CPO or EMSP) a partner that registers over OCPI 2.1.1 talks to."""
    partner_id = str(uuid.uuid4())
    token_a = auth.new_token()
    ttl = ttl if ttl is not None else get_settings().registration_ttl
    record = {
        "partner_id": partner_id,
        "name": name,
        "status": STATUS_INVITED,
        "initiated_by": "partner",
        "roles": [],
        "endpoints": [],
        "created_at": _now(),
        "updated_at": _now(),
    }
    if own_role_211:
        record["own_role_211"] = own_role_211.upper()
    store.put_partner(record)
    store.put_token(
        TokenRecord(auth.hash_token(token_a), partner_id, KIND_REGISTRATION, int(time.time()) + ttl)
    )
    return partner_id, token_a


def create_app_client(store: Any, name: str) -> tuple[str, str]:
    """A token for one of our own apps (extension endpoints only). Returns (client_id, token)."""
    client_id = str(uuid.uuid4())
    token = auth.new_token()
    token_hash = auth.hash_token(token)
    store.put_partner(
        {
            "partner_id": client_id,
            "name": name,
            "client": "app",
            "status": STATUS_REGISTERED,
            "roles": [],
            "endpoints": [],
            "inbound_token_hash": token_hash,
            "created_at": _now(),
            "updated_at": _now(),
        }
    )
    store.put_token(TokenRecord(token_hash, client_id, KIND_PARTNER))
    return client_id, token


# ------------------------------------------------------------------ server side: a partner calls us
def get_credentials(
    base_url: str, who: Caller, presented_token: str, version: str = "2.2.1"
) -> dict[str, Any]:
    return credentials_out(version, who.partner, our_credentials(base_url, presented_token))


def _issue_token_c(store: Any, partner_id: str) -> tuple[str, str]:
    token_c = auth.new_token()
    token_hash = auth.hash_token(token_c)
    store.put_token(TokenRecord(token_hash, partner_id, KIND_PARTNER))
    return token_c, token_hash


def register_partner(store: Any, base_url: str, version: str, who: Caller, body: Any) -> dict[str, Any]:
    """POST credentials with token A: call the partner back, store it, answer with token C."""
    if who.kind != KIND_REGISTRATION or who.partner.get("status") != STATUS_INVITED:
        # Registered partners must PUT; a token B we handed out while registering with a partner
        # (registration scope too) cannot be used to register that partner a second way.
        raise MethodNotAllowed("Already registered: use PUT to update or DELETE to unregister")
    creds: Credentials = validate(Credentials, credentials_in(version, who.partner, body))
    # The version of the URL the partner POSTed to is the one it chose.
    found = discover(creds.token, str(creds.url), version=version)
    sealed = secrets.seal(who.partner_id, creds.token)  # before token A is spent: a failure leaves it usable
    # The caller's partner record was just read by authentication (registration-scope lookups are
    # never cached), so no second read.
    partner = dict(who.partner) or {"partner_id": who.partner_id, "created_at": _now()}
    roles = _roles(creds)
    _claim(store, who.partner_id, roles)
    # Token A is single use: whoever consumes it first completes the registration.
    if store.consume_token(who.token_hash) is None:
        store.release_parties(who.partner_id, _party_keys(roles))
        raise MethodNotAllowed("This registration token has already been used")
    auth.forget(who.token_hash)
    token_c, token_hash = _issue_token_c(store, who.partner_id)
    partner.update(
        {
            "status": STATUS_REGISTERED,
            "initiated_by": "partner",
            "version": found.version,
            "versions_url": str(creds.url),
            "endpoints": found.endpoints,
            "roles": roles,
            "outbound_token": sealed,
            "raw_token": found.raw_token,
            "inbound_token_hash": token_hash,
            "updated_at": _now(),
        }
    )
    store.put_partner(partner)
    logger.info("partner registered", extra={"partner_id": who.partner_id, "version": found.version})
    return credentials_out(found.version, partner, our_credentials(base_url, token_c))


def update_partner(store: Any, base_url: str, version: str, who: Caller, body: Any) -> dict[str, Any]:
    """PUT credentials: re-read the partner's endpoints (switching to this version), rotate tokens."""
    partner = store.get_partner(who.partner_id)
    if who.kind != KIND_PARTNER or not partner or partner.get("status") != STATUS_REGISTERED:
        raise MethodNotAllowed("Not registered: use POST to register")
    creds: Credentials = validate(Credentials, credentials_in(version, partner, body))
    found = discover(creds.token, str(creds.url), version=version)
    sealed = secrets.seal(who.partner_id, creds.token)  # before anything changes: a failure changes nothing
    new_roles = _roles(creds)
    _claim(store, who.partner_id, new_roles)
    removed = set(_party_keys(partner.get("roles") or [])) - set(_party_keys(new_roles))
    store.release_parties(who.partner_id, removed)
    token_c, token_hash = _issue_token_c(store, who.partner_id)
    old_hash = who.token_hash
    partner.update(
        {
            "version": found.version,
            "versions_url": str(creds.url),
            "endpoints": found.endpoints,
            "roles": new_roles,
            "outbound_token": sealed,
            "raw_token": found.raw_token,
            "inbound_token_hash": token_hash,
            "updated_at": _now(),
        }
    )
    store.put_partner(partner)
    store.delete_token(old_hash)
    auth.forget(old_hash)
    logger.info("partner credentials updated", extra={"partner_id": who.partner_id})
    return credentials_out(found.version, partner, our_credentials(base_url, token_c))


def unregister_partner(store: Any, who: Caller) -> None:
    """DELETE credentials: the caller's token stops working at once; automated traffic ends."""
    partner = store.get_partner(who.partner_id)
    if who.kind != KIND_PARTNER or not partner or partner.get("status") != STATUS_REGISTERED:
        raise MethodNotAllowed("Not registered")
    _forget_partner(store, partner)


def _forget_partner(store: Any, partner: dict[str, Any]) -> None:
    inbound = partner.get("inbound_token_hash")
    if inbound:
        store.delete_token(inbound)
        auth.forget(inbound)
    store.release_parties(partner["partner_id"], _party_keys(partner.get("roles") or []))
    partner.update(
        {
            "status": STATUS_UNREGISTERED,
            "outbound_token": None,
            "inbound_token_hash": None,
            "updated_at": _now(),
        }
    )
    store.put_partner({k: v for k, v in partner.items() if v is not None})
    logger.info("partner unregistered", extra={"partner_id": partner["partner_id"]})


# ------------------------------------------------------------------ client side: we call a partner
def _post_or_put_credentials(
    partner: dict[str, Any], method: str, header_token: str, token_b: str, base_url: str
) -> Credentials:
    url = endpoint_url(partner, "credentials")
    if not url:
        raise NoMatchingEndpoints("The partner has no credentials endpoint")
    client = _client(header_token, bool(partner.get("raw_token")))
    version = str(partner.get("version") or "2.2.1")
    body = credentials_out(version, partner, our_credentials(base_url, token_b))
    try:
        result = client.request(method, url, json=body)
    except OcpiClientError as err:
        raise ClientApiError(f"The partner refused our credentials: {_describe(err)}") from err
    return validate(Credentials, credentials_in(version, partner, result.data))


def register_with(
    store: Any, base_url: str, versions_url: str, token_a: str, name: str = "", own_role_211: str = ""
) -> dict[str, Any]:
    """We initiate: GET versions/details with token A, POST our credentials with a fresh token B,
    keep the token C we get back. Returns the partner record."""
    secrets.check_configured()  # before the partner takes our token B
    found = discover(token_a, versions_url)
    partner_id = str(uuid.uuid4())
    token_b = auth.new_token()
    b_hash = auth.hash_token(token_b)
    partner = {
        "partner_id": partner_id,
        "name": name or versions_url,
        "status": STATUS_REGISTERING,
        "initiated_by": "us",
        "version": found.version,
        "versions_url": versions_url,
        "endpoints": found.endpoints,
        "roles": [],
        "raw_token": found.raw_token,
        "created_at": _now(),
        "updated_at": _now(),
    }
    if own_role_211:
        partner["own_role_211"] = own_role_211.upper()
    store.put_partner(partner)
    # The partner calls our versions endpoints with token B during our POST: registration scope.
    store.put_token(TokenRecord(b_hash, partner_id, KIND_REGISTRATION, int(time.time()) + HANDSHAKE_TTL))
    try:
        theirs = _post_or_put_credentials(partner, "POST", token_a, token_b, base_url)
        sealed = secrets.seal(partner_id, theirs.token)
        roles = _roles(theirs)
        _claim(store, partner_id, roles)
    except Exception:
        store.delete_token(b_hash)
        partner.update({"status": STATUS_UNREGISTERED, "updated_at": _now()})
        store.put_partner(partner)
        raise
    store.put_token(TokenRecord(b_hash, partner_id, KIND_PARTNER))
    auth.forget(b_hash)
    partner.update(
        {
            "status": STATUS_REGISTERED,
            "roles": roles,
            "outbound_token": sealed,
            "inbound_token_hash": b_hash,
            "updated_at": _now(),
        }
    )
    store.put_partner(partner)
    return partner


def update_with(store: Any, base_url: str, partner_id: str) -> dict[str, Any]:
    """We rotate: PUT our credentials with a new token B', take their new token C', re-read endpoints."""
    partner = store.get_partner(partner_id)
    if not partner or partner.get("status") != STATUS_REGISTERED:
        raise MethodNotAllowed("Partner is not registered")
    current = _usable_token(partner)
    secrets.check_configured()
    new_b = auth.new_token()
    new_hash = auth.hash_token(new_b)
    store.put_token(TokenRecord(new_hash, partner_id, KIND_PARTNER))
    try:
        theirs = _post_or_put_credentials(partner, "PUT", current, new_b, base_url)
        found = discover(theirs.token, str(theirs.url), raw_token=partner.get("raw_token"))
        sealed = secrets.seal(partner_id, theirs.token)
        roles = _roles(theirs)
        _claim(store, partner_id, roles)
    except Exception:
        store.delete_token(new_hash)
        raise
    removed = set(_party_keys(partner.get("roles") or [])) - set(_party_keys(roles))
    store.release_parties(partner_id, removed)
    old_hash = partner.get("inbound_token_hash")
    partner.update(
        {
            "version": found.version,
            "versions_url": str(theirs.url),
            "endpoints": found.endpoints,
            "roles": roles,
            "outbound_token": sealed,
            "inbound_token_hash": new_hash,
            "updated_at": _now(),
        }
    )
    store.put_partner(partner)
    if old_hash and old_hash != new_hash:
        store.delete_token(old_hash)
        auth.forget(old_hash)
    return partner


def unregister_with(store: Any, partner_id: str) -> dict[str, Any]:
    """We unregister: DELETE at the partner, then forget its tokens and parties here."""
    partner = store.get_partner(partner_id)
    if not partner or partner.get("status") != STATUS_REGISTERED:
        raise MethodNotAllowed("Partner is not registered")
    url = endpoint_url(partner, "credentials")
    if url:
        token = _usable_token(partner)  # our failure to open it is no reason to forget the partner
        try:
            _client(token, bool(partner.get("raw_token"))).delete(url)
        except OcpiClientError as err:
            # We stop talking to it either way; the partner may have forgotten us already.
            logger.warning(
                "partner refused DELETE credentials",
                extra={"partner_id": partner_id, "error": _describe(err)},
            )
    _forget_partner(store, partner)
    return store.get_partner(partner_id) or partner


def public_partner(partner: dict[str, Any]) -> dict[str, Any]:
    """A partner record without secrets (not even sealed ones), for listings; ``outbound_token_at_rest``
    says how the token is kept (kms, local, clear, none) so an operator sees what seal-tokens would do."""
    public = {k: v for k, v in partner.items() if k not in ("outbound_token", "inbound_token_hash")}
    public["outbound_token_at_rest"] = secrets.form(partner.get("outbound_token"))
    return public


# ------------------------------------------------------------------ the token we call a partner with
def outbound_token(partner: dict[str, Any]) -> str:
    """The token to call ``partner`` with, opened from its record (KMS Decrypt once per container and
    token, shared/secrets.py). Raises :class:`shared.secrets.TokenUnavailable`, an OcpiClientError,
    so every outbound path treats it like a failed call."""
    return secrets.partner_token(partner)


def _usable_token(partner: dict[str, Any]) -> str:
    try:
        return outbound_token(partner)
    except secrets.TokenUnavailable as err:
        raise ClientApiError(err.message) from err


def seal_partner_tokens(store: Any) -> dict[str, int]:
    """Seal every partner token still stored in clear (records from before sealing), in place.
    Returns counts: sealed, already (sealed before), none (no token), changed (rotated meanwhile:
    left to the rotation, which sealed it). Safe to re-run."""
    counts = {"sealed": 0, "already": 0, "none": 0, "changed": 0}
    for listed in store.list_partners():
        value = listed.get("outbound_token")
        if not value:
            counts["none"] += 1
            continue
        if secrets.is_sealed(value):
            counts["already"] += 1
            continue
        pid = listed["partner_id"]
        sealed = secrets.seal(pid, value)
        partner = store.get_partner(pid)  # consistent re-read: write only over the token we sealed
        if not partner or partner.get("outbound_token") != value:
            counts["changed"] += 1
            continue
        partner["outbound_token"] = sealed
        store.put_partner(partner)
        counts["sealed"] += 1
    logger.info("partner tokens sealed", extra=counts)
    return counts
