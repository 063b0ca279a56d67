"""OCPI versions at the edge: one canonical stored form (OCPI 2.2.1, plus what newer versions add,
kept), and one converter per version that maps the wire form of that version to and from it.

Modules are written once against the canonical form. A request under `/ocpi/{version}/...` is
converted on the way in (`inbound`) and its answer on the way out (`outbound`); the outbound
client and the push pipeline convert what they send with the partner's negotiated version.

A converter module (`v211`, `v221`, `v230`) exposes:

    to_canonical(kind: str, obj: dict, ctx: Context) -> dict     # wire form of that version -> canonical
    from_canonical(kind: str, obj: dict, ctx: Context) -> dict   # canonical -> wire form of that version

`kind` is one of `KINDS`. `*_patch` kinds are partial objects (a PATCH body): map the fields that
are present, add nothing. Whole objects may get the defaults the target version requires (each
documented in docs/versions-2.1.1.md / docs/versions-2.3.0.md). Converters are pure: whatever
they need from the store comes through `Context` callables, which may be None (then the converter
does its best without, documented).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SUPPORTED_VERSIONS = ("2.1.1", "2.2.1", "2.3.0")  # ascending
CANONICAL = "2.2.1"

KINDS = (
    "location",
    "location_patch",
    "evse",
    "evse_patch",
    "connector",
    "connector_patch",
    "tariff",
    "token",
    "token_patch",
    "authorization_info",
    "location_references",
    "session",
    "session_patch",
    "cdr",
    "credentials",
    "start_session",
    "stop_session",
    "reserve_now",
    "cancel_reservation",
    "unlock_connector",
    "command_response",
    "command_result",
)


@dataclass
class Context:
    """What a converter may need beyond the object itself."""

    # The party on the other side, when known: (country_code, party_id, role).
    partner_party: tuple[str, str, str] | None = None
    # Our own party in this exchange: (country_code, party_id, role).
    own_party: tuple[str, str, str] | None = None
    # (country_code, party_id, location_id) -> the canonical Location (with EVSEs) or None.
    load_location: Callable[[str, str, str], dict[str, Any] | None] | None = None
    # (auth_id / contract_id) -> the canonical Token we know under that contract id, or None.
    find_token: Callable[[str], dict[str, Any] | None] | None = None
    # Free-form notes a converter leaves about what it derived or dropped (for logs and tests).
    notes: list[str] = field(default_factory=list)
