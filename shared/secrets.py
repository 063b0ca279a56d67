"""Partner tokens at rest: the token we use to call a partner (a partner record's ``outbound_token``)
is never stored in clear. It is a bearer credential to the partner's whole API; a table export, a
backup or a read-only IAM principal must not be enough to impersonate us.

Stored forms (the prefix says which; anything else is a legacy clear token, read as is, sealed at
its next credentials write or by ``ocpi-admin partners seal-tokens``):

- ``kms:v1:<base64 CiphertextBlob>``: AWS KMS Encrypt under ``OCPI_KMS_KEY_ID`` (template.yaml
  ``OcpiKey``), called directly (a token is far below KMS's 4 KB plaintext limit, so no data key).
  The encryption context ``{"purpose": "ocpi-partner-token", "partner_id": <id>}`` binds a ciphertext
  to its partner: copied into another partner's record it does not open, and the IAM grants are
  conditioned on ``purpose`` so the functions' role decrypts nothing else with this key.
- ``local:v1:<base64 nonce|ciphertext>``: AES-256-GCM with a key derived from ``OCPI_TOKEN_KEY`` and
  the same context as associated data. For the in-memory store only (unit tests, tools): without
  ``OCPI_KMS_KEY_ID`` and with the DynamoDB store in use, sealing refuses (:class:`SealingNotConfigured`)
  rather than silently keep a weaker form in the table. Needs ``cryptography`` (dev only, imported lazily).

Opened tokens are cached in-process (bounded, keyed by partner and sealed value): a warm container
calls KMS Decrypt once per partner token, not once per push delivery or pull page. The KMS client is
created at first use, never at import (cold start, SnapStart). Neither a token nor a sealed value is
ever logged or put in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

from shared.client import OcpiClientError
from shared.logs import logger

PURPOSE = "ocpi-partner-token"
KMS_PREFIX = "kms:v1:"
LOCAL_PREFIX = "local:v1:"
_CACHE_SIZE = 1024
# KMS errors that a later attempt may get past (throttling, outage); the others (a disabled or
# deleted key, access denied, a ciphertext of another partner) need an operator.
_TRANSIENT = {
    "ThrottlingException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "LimitExceededException",
}


class TokenUnavailable(OcpiClientError):
    """A partner's token could not be sealed or opened (KMS unreachable, denied, key disabled, a
    ciphertext that is not this partner's). An :class:`OcpiClientError`: every outbound path already
    turns one into its failure (push: retried with backoff, then the DLQ; pull and commands: an OCPI
    error; real-time authorization: unavailable). The partner record is left as it was."""


class SealingNotConfigured(RuntimeError):
    """No KMS key while the DynamoDB store is in use: a deployment (or local stack) without OcpiKey."""


def _key_id() -> str:
    return os.environ.get("OCPI_KMS_KEY_ID", "").strip()


def _context(partner_id: str) -> dict[str, str]:
    return {"purpose": PURPOSE, "partner_id": str(partner_id)}


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith((KMS_PREFIX, LOCAL_PREFIX))


def form(value: Any) -> str:
    """How a stored token is kept: kms, local, clear or none (for listings; never the value)."""
    if not value:
        return "none"
    if isinstance(value, str) and value.startswith(KMS_PREFIX):
        return "kms"
    if isinstance(value, str) and value.startswith(LOCAL_PREFIX):
        return "local"
    return "clear"


# ------------------------------------------------------------------ cache of opened tokens
_cache: OrderedDict[tuple[str, str], str] = OrderedDict()
_cache_lock = threading.Lock()
_warned_clear: set[str] = set()


def _cached(key: tuple[str, str]) -> str | None:
    with _cache_lock:
        token = _cache.get(key)
        if token is not None:
            _cache.move_to_end(key)
        return token


def _remember(key: tuple[str, str], token: str) -> None:
    with _cache_lock:
        _cache[key] = token
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def reset() -> None:
    """Forget opened tokens and the KMS client (tests switch moto instances and settings)."""
    with _cache_lock:
        _cache.clear()
        _warned_clear.clear()
    _kms.cache_clear()


# ------------------------------------------------------------------ KMS
@lru_cache(maxsize=1)
def _kms() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "kms",
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=2, read_timeout=5),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )


def _kms_failure(action: str, partner_id: str, err: Exception) -> TokenUnavailable:
    response = getattr(err, "response", None)  # botocore ClientError; BotoCoreError has none
    code = (response.get("Error") or {}).get("Code") if isinstance(response, dict) else None
    what = code or type(err).__name__
    logger.warning(
        "partner token: KMS call failed", extra={"partner_id": partner_id, "action": action, "error": what}
    )
    verb = "sealed" if action == "Encrypt" else "opened"
    return TokenUnavailable(
        f"The partner token could not be {verb} (KMS {action}: {what})",
        retryable=code is None or code in _TRANSIENT,
    )


def _kms_seal(partner_id: str, token: str, key_id: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        blob = _kms().encrypt(
            KeyId=key_id, Plaintext=token.encode("utf-8"), EncryptionContext=_context(partner_id)
        )
    except (ClientError, BotoCoreError) as err:
        raise _kms_failure("Encrypt", partner_id, err) from None
    return KMS_PREFIX + base64.b64encode(blob["CiphertextBlob"]).decode("ascii")


def _kms_open(partner_id: str, sealed: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        blob = base64.b64decode(sealed[len(KMS_PREFIX) :], validate=True)
    except ValueError:
        raise TokenUnavailable("The stored partner token is damaged (not base64)", retryable=False) from None
    kwargs: dict[str, Any] = {"CiphertextBlob": blob, "EncryptionContext": _context(partner_id)}
    if _key_id():  # only our key may have made it (a ciphertext of another key is refused)
        kwargs["KeyId"] = _key_id()
    try:
        plain = _kms().decrypt(**kwargs)["Plaintext"]
    except (ClientError, BotoCoreError) as err:
        raise _kms_failure("Decrypt", partner_id, err) from None
    return plain.decode("utf-8")


# ------------------------------------------------------------------ local sealer (in-memory store only)
def _local_allowed() -> bool:
    from shared.store import get_store
    from shared.store.memory import MemoryStore

    return isinstance(get_store(), MemoryStore)


def _local_cipher() -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from shared.config import get_settings

    secret = get_settings().token_key
    if not secret:
        raise SealingNotConfigured("The local token sealer needs OCPI_TOKEN_KEY")
    key = hmac.new(secret.encode("utf-8"), b"ocpi-partner-token-seal/v1", hashlib.sha256).digest()
    return AESGCM(key)


def _aad(partner_id: str) -> bytes:
    return json.dumps(_context(partner_id), sort_keys=True, separators=(",", ":")).encode("utf-8")


def _local_seal(partner_id: str, token: str) -> str:
    nonce = os.urandom(12)
    data = _local_cipher().encrypt(nonce, token.encode("utf-8"), _aad(partner_id))
    return LOCAL_PREFIX + base64.b64encode(nonce + data).decode("ascii")


def _local_open(partner_id: str, sealed: str) -> str:
    from cryptography.exceptions import InvalidTag

    try:
        raw = base64.b64decode(sealed[len(LOCAL_PREFIX) :], validate=True)
        return _local_cipher().decrypt(raw[:12], raw[12:], _aad(partner_id)).decode("utf-8")
    except (ValueError, InvalidTag):
        raise TokenUnavailable(
            "The stored partner token does not open for this partner", retryable=False
        ) from None


def _refuse() -> SealingNotConfigured:
    return SealingNotConfigured(
        "OCPI_KMS_KEY_ID is not set: partner tokens are sealed with AWS KMS whenever the DynamoDB store "
        "is in use (template.yaml OcpiKey); the local sealer serves the in-memory store only"
    )


# ------------------------------------------------------------------ the interface
def check_configured() -> None:
    """Raise :class:`SealingNotConfigured` now if :func:`seal` would: before we hand a partner
    credentials whose answer we could not keep."""
    if not _key_id() and not _local_allowed():
        raise _refuse()


def seal(partner_id: str, token: str) -> str:
    """The form of ``token`` to store in ``partner_id``'s record (KMS when configured)."""
    if not token:
        raise ValueError("No token to seal")
    key_id = _key_id()
    if key_id:
        sealed = _kms_seal(partner_id, token, key_id)
    elif _local_allowed():
        sealed = _local_seal(partner_id, token)
    else:
        raise _refuse()
    _remember((str(partner_id), sealed), token)  # this container needs no Decrypt for it
    return sealed


def unseal(partner_id: str, stored: str) -> str:
    """The token from its stored form; a legacy clear token is returned as is."""
    if not stored:
        raise TokenUnavailable("No token stored for this partner", retryable=False)
    if not is_sealed(stored):
        if partner_id not in _warned_clear:
            _warned_clear.add(partner_id)
            logger.warning(
                "partner token stored in clear: run `ocpi-admin partners seal-tokens`",
                extra={"partner_id": partner_id},
            )
        return stored
    key = (str(partner_id), stored)
    token = _cached(key)
    if token is not None:
        return token
    if stored.startswith(KMS_PREFIX):
        token = _kms_open(partner_id, stored)
    elif _key_id() or not _local_allowed():
        raise TokenUnavailable(
            "A token sealed by the local sealer (in-memory store only) cannot be opened here", retryable=False
        )
    else:
        token = _local_open(partner_id, stored)
    _remember(key, token)
    return token


def partner_token(partner: dict[str, Any]) -> str:
    """The token to call ``partner`` with (its record's ``outbound_token``, opened)."""
    return unseal(str(partner.get("partner_id") or ""), partner.get("outbound_token") or "")
