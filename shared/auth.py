"""Credentials-token authentication (transport_and_format.asciidoc, "Authorization header").

- Header: `Authorization: Token <base64(token)>`. Partners that send the raw token (common in
  2.1.1/2.2 implementations) are accepted too: we look up the Base64-decoded value first, then the
  raw value. Anything else (missing header, other scheme, unknown token) is a 401.
- Tokens are never stored: only HMAC-SHA256(key, token), the key coming from Secrets Manager (or
  OCPI_TOKEN_KEY locally). Lookups go by hash; the final comparison is constant-time.
- A warm container caches lookups for OCPI_AUTH_CACHE_TTL seconds (bounded size), so a warm
  request costs no DynamoDB read for auth. A revoked token is refused at once by the container
  that revoked it and by every other container within that TTL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from shared.config import get_settings
from shared.errors import Unauthorized
from shared.store.base import TokenRecord

KIND_REGISTRATION = "A"
KIND_PARTNER = "C"


@lru_cache(maxsize=1)
def _hash_key() -> bytes:
    settings = get_settings()
    if settings.token_key:
        return settings.token_key.encode()
    if settings.token_key_secret_arn:
        import boto3

        sm = boto3.client(
            "secretsmanager",
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
        )
        return sm.get_secret_value(SecretId=settings.token_key_secret_arn)["SecretString"].encode()
    raise RuntimeError("No token hash key: set OCPI_TOKEN_KEY or OCPI_TOKEN_KEY_SECRET_ARN")


def hash_token(token: str) -> str:
    return hmac.new(_hash_key(), token.encode("utf-8"), hashlib.sha256).hexdigest()


def new_token() -> str:
    """A fresh credentials token: 256 bits, URL-safe printable ASCII (fits string(64)). Never
    starting with "-", so it can be passed to command-line tools as an option value."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def encode_header_token(token: str) -> str:
    return base64.b64encode(token.encode("utf-8")).decode("ascii")


def token_candidates(header: str | None) -> list[str]:
    """The tokens an Authorization header may carry, most likely first."""
    if not header:
        return []
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value or len(value) > 512:
        return []
    out: list[str] = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
        if decoded and decoded.isprintable():
            out.append(decoded)
        elif decoded.rstrip("\n").isprintable() and decoded.rstrip("\n"):
            # The spec's own sample token was encoded with a trailing newline.
            out.append(decoded.rstrip("\n"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    if value not in out:
        out.append(value)
    return out


@dataclass
class Caller:
    """The authenticated party of a request."""

    partner_id: str
    kind: str
    partner: dict[str, Any] = field(default_factory=dict)
    token_hash: str = ""

    @property
    def registered(self) -> bool:
        return self.kind == KIND_PARTNER

    @property
    def is_app(self) -> bool:
        """Our own apps (extension endpoints only), not an OCPI partner."""
        return self.partner.get("client") == "app"

    def roles(self) -> list[dict[str, Any]]:
        return list(self.partner.get("roles") or [])

    def holds_party(self, country_code: str, party_id: str, role: str | None = None) -> bool:
        return any(
            r["country_code"].upper() == country_code.upper()
            and r["party_id"].upper() == party_id.upper()
            and (role is None or r["role"].upper() == role.upper())
            for r in self.roles()
        )


class _TtlCache:
    def __init__(self, max_size: int = 2048) -> None:
        self._data: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_size = max_size

    def get(self, key: str) -> Any:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return hit[1]

    def put(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.max_size:
                self._data.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_CACHE = _TtlCache()
_MISS = object()


def forget(token_hash: str) -> None:
    """Drop a token from this container's cache (called when we revoke or rotate it)."""
    _CACHE.pop(token_hash)


def clear_cache() -> None:
    _CACHE.clear()
    _hash_key.cache_clear()


def _lookup(store: Any, token_hash: str) -> Caller | None:
    ttl = get_settings().auth_cache_ttl
    cached = _CACHE.get(token_hash)
    if cached is _MISS:
        return None
    if cached is not None:
        record, caller = cached
        if record.expires_at is not None and record.expires_at < time.time():
            return None
        return caller
    record: TokenRecord | None = store.get_token(token_hash)
    if record is None or not hmac.compare_digest(record.token_hash, token_hash):
        _CACHE.put(token_hash, _MISS, min(ttl, 5.0))
        return None
    partner = store.get_partner(record.partner_id) or {}
    caller = Caller(partner_id=record.partner_id, kind=record.kind, partner=partner)
    if record.kind == KIND_PARTNER:
        # Registration-scope tokens are not cached: they are used a few times during a handshake
        # and then change scope (our token B becomes a partner token when the handshake ends).
        _CACHE.put(token_hash, (record, caller), ttl)
    if record.expires_at is not None and record.expires_at < time.time():
        return None
    return caller


def authenticate(store: Any, header: str | None, *, allow_registration: bool = False) -> Caller:
    """Resolve the caller of a request or raise Unauthorized (HTTP 401)."""
    for candidate in token_candidates(header):
        caller = _lookup(store, hash_token(candidate))
        if caller is None:
            continue
        if caller.kind == KIND_REGISTRATION and not allow_registration:
            # Token A opens only versions and credentials (transport_and_format, Authorization header).
            raise Unauthorized("A registration token only opens the versions and credentials modules")
        if caller.kind == KIND_PARTNER and caller.partner.get("status") not in (None, "REGISTERED"):
            continue
        return replace(caller, token_hash=hash_token(candidate))
    raise Unauthorized("Missing or unknown credentials token")


def presented_token(header: str | None, token_hash: str) -> str:
    """The clear token of an authenticated request (the candidate whose hash matched)."""
    candidates = token_candidates(header)
    for candidate in candidates:
        if hmac.compare_digest(hash_token(candidate), token_hash):
            return candidate
    raise Unauthorized("Missing or unknown credentials token")
