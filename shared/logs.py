"""Structured JSON logging (Powertools Logger). Never log tokens, token uids or contract ids.

Lambda reads logs from stdout; a command-line tool sets OCPI_LOG_STREAM=stderr so its stdout stays
machine-readable.

Context keys: every line logged while serving one request (or one queue message) carries that
request's keys (request_id, correlation_id, ocpi_module, partner, ...). They live in a ContextVar
holding one mutable dict per request, not in Powertools' ``thread_safe_append_keys``: that one
rebinds its ContextVar on each append, so a key added in FastAPI's worker thread (where the auth
dependency resolves the partner) would be lost when the thread returns. A shared dict is seen by
the request's own task and by every thread or task it starts (they copy the context, not the dict),
and never by another request: the local stack serves concurrent requests in one process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "ocpi"),
    use_rfc3339=True,
    stream=sys.stderr if os.environ.get("OCPI_LOG_STREAM") == "stderr" else sys.stdout,
)

_KEYS: ContextVar[dict[str, Any] | None] = ContextVar("ocpi_log_keys", default=None)


class _ContextKeys(logging.Filter):
    """Adds the current context's keys to each record; a key the call passes in `extra` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        keys = _KEYS.get()
        if keys:
            fields = record.__dict__
            for key, value in list(keys.items()):
                if value is not None and key not in fields:
                    fields[key] = value
        return True


if not any(isinstance(f, _ContextKeys) for f in logger.filters):  # a module reload adds no second one
    logger.addFilter(_ContextKeys())


@contextmanager
def log_context(**keys: Any) -> Iterator[dict[str, Any]]:
    """Keys for every line logged inside (on top of an enclosing context's), gone on exit."""
    token = _KEYS.set({**(_KEYS.get() or {}), **keys})
    try:
        yield _KEYS.get() or {}
    finally:
        _KEYS.reset(token)


def bind(**keys: Any) -> None:
    """Add keys to the current context, for the rest of it (also when called from a worker thread
    of the request). Outside any context: nothing (never a key that outlives its request)."""
    current = _KEYS.get()
    if current is not None:
        current.update(keys)


def context_value(key: str) -> Any:
    """A key of the current context (e.g. the correlation id an outbound call should carry)."""
    return (_KEYS.get() or {}).get(key)


MAX_PARTIES = 5  # a hub may hold dozens: the label stays short (partner_id is always logged too)


def party_label(partner: dict[str, Any] | None, partner_id: str | None = None) -> str | None:
    """How logs name a partner: its parties as "CC*PID" (one per party, in role order; beyond
    MAX_PARTIES "+N more"), else its id. Reads only the roles: never a token."""
    parties: list[str] = []
    for role in (partner or {}).get("roles") or []:
        try:
            label = f"{str(role['country_code']).upper()}*{str(role['party_id']).upper()}"
        except (KeyError, TypeError):
            continue
        if label not in parties:
            parties.append(label)
    if len(parties) > MAX_PARTIES:
        parties = [*parties[:MAX_PARTIES], f"+{len(parties) - MAX_PARTIES} more"]
    return ",".join(parties) if parties else partner_id
