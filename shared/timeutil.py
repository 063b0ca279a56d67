"""Clock helpers (no web framework imports: background functions use them)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    return datetime.now(UTC)


def timestamp() -> str:
    """Now as an OCPI DateTime in whole seconds (fits the spec's string(25))."""
    return now_utc().strftime("%Y-%m-%dT%H:%M:%SZ")
