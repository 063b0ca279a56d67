"""Pulling a partner's objects (transport_and_format.asciidoc, "Client Owned Object Push/Pull"):
the recovery path for pushes we missed. We GET the partner's Sender interface, page after page
(following its Link headers), and store every object exactly as if the partner had pushed it to our
Receiver interface: same entitlement check (the object's party must be one of the partner's roles in
the owning role), same validation, same "never overwrite newer data" rule, same events.

What we pull, from whom (the partner's role owning the objects -> our receiving role):
- locations, tariffs: from a CPO partner, received by one of our eMSP parties;
- tokens: from an eMSP partner, received by one of our CPO parties;
- sessions, cdrs: from a CPO partner, for each of our eMSP parties in turn (a CPO's sender lists only
  the sessions and CDRs of the calling eMSP party, named in the OCPI-from-* headers). Sessions are
  stored as a receiver PUT would (shared/services/sessions.py), CDRs as a receiver POST would
  (shared/services/cdrs.py): a CDR already stored with identical content counts as `stale` (nothing
  written, no event), one with different content as `rejected`. The sessions sender requires
  `date_from` (mod_sessions): a full pull sends FULL_PULL_DATE_FROM.

An object that is not the partner's to send or fails validation is counted as `rejected` and logged
(its id; for tokens only counts, never uids) and does not stop the pull. A transport or protocol
failure raises ClientApiError (3001); objects stored before it stay stored, but the pull does not
count as successful.

Incremental pulls: the start time of the last successful pull per module is kept in the partner
record (`pulled_at: {module: DateTime}`); `incremental=True` asks for `date_from` = that time minus
INCREMENTAL_OVERLAP, so an object the partner changed while that pull ran, or stamped with a clock
slightly behind ours, is not missed (re-reading a few objects twice is harmless: equal
`last_updated` is an idempotent write).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.auth import KIND_PARTNER, Caller
from shared.client import OcpiClient, OcpiClientError
from shared.config import get_settings
from shared.errors import (
    ClientApiError,
    ClientError,
    InvalidParameters,
    MethodNotAllowed,
    NoMatchingEndpoints,
    NotFound,
)
from shared.logs import logger
from shared.models.types import format_datetime, parse_datetime
from shared.services import cdrs, locations, objects, sessions, tariffs, tokens
from shared.services.credentials import STATUS_REGISTERED, endpoint_url, outbound_token
from shared.versions import convert

#: module -> (the partner's role that owns and sends these objects, our role that receives them)
MODULES: dict[str, tuple[str, str]] = {
    "locations": ("CPO", "EMSP"),
    "tariffs": ("CPO", "EMSP"),
    "tokens": ("EMSP", "CPO"),
    "sessions": ("CPO", "EMSP"),
    "cdrs": ("CPO", "EMSP"),
}
#: Modules whose sender shows each of our parties only its own objects: pulled once per own party.
PER_PARTY = ("sessions", "cdrs")
#: Modules whose sender requires date_from, and what a full pull sends then.
DATE_FROM_REQUIRED = ("sessions",)
FULL_PULL_DATE_FROM = "2000-01-01T00:00:00Z"
COUNTS = ("fetched", "created", "updated", "stale", "rejected")
INCREMENTAL_OVERLAP = timedelta(minutes=5)


# ------------------------------------------------------------------ who and what
def registered_partner(store: Any, partner_id: str) -> dict[str, Any]:
    partner = store.get_partner(partner_id)
    if not partner:
        raise NotFound(f"Unknown partner {partner_id}")
    if partner.get("status") != STATUS_REGISTERED:
        raise MethodNotAllowed(f"Partner {partner_id} is not registered")
    return partner


def _partner_party(partner: dict[str, Any], role: str) -> tuple[str, str] | None:
    for r in partner.get("roles") or []:
        if str(r.get("role", "")).upper() == role:
            return r["country_code"], r["party_id"]
    return None


def _own_party(role: str) -> tuple[str, str] | None:
    parties = _own_parties(role)
    return parties[0] if parties else None


def _own_parties(role: str) -> list[tuple[str, str]]:
    return [(p.country_code, p.party_id) for p in get_settings().own_parties if p.role.upper() == role]


def pullable_modules(partner: dict[str, Any]) -> list[str]:
    """The modules this partner offers as Sender, in a role it holds, that one of our parties
    receives."""
    return [
        module
        for module, (theirs, ours) in MODULES.items()
        if endpoint_url(partner, module, "SENDER") and _partner_party(partner, theirs) and _own_party(ours)
    ]


def _date_from(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        dt = value if isinstance(value, datetime) else parse_datetime(str(value))
    except ValueError as err:
        raise InvalidParameters(f"Invalid date_from {str(value)[:40]!r}") from err
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return format_datetime(dt)


# ------------------------------------------------------------------ storing one object
def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidParameters(f"Invalid or missing parameters: {name}")
    return value


def _store_one(store: Any, module: str, who: Caller, obj: Any) -> objects.Outcome:
    """Store one pulled object through the receiver code path of its module."""
    if not isinstance(obj, dict):
        raise InvalidParameters("Not a JSON object")
    cc = _text(obj.get("country_code"), "country_code")
    pid = _text(obj.get("party_id"), "party_id")
    if module == "locations":
        return locations.put_location(store, who, cc, pid, _text(obj.get("id"), "id"), obj)
    if module == "tariffs":
        return objects.put_received(store, tariffs.KIND, who, cc, pid, _text(obj.get("id"), "id"), obj)
    if module == "sessions":
        return sessions.put_session(store, who, cc, pid, _text(obj.get("id"), "id"), obj)
    if module == "cdrs":
        return cdrs.create_received(store, who, obj, announce_replay=False)
    variant = _text(obj.get("type"), "type")
    return objects.put_received(
        store, tokens.KIND, who, cc, pid, _text(obj.get("uid"), "uid"), obj, variant=variant
    )


def _object_id(module: str, obj: Any) -> str | None:
    """What may be logged to identify a rejected object: its id, except for tokens (uids)."""
    if module == "tokens" or not isinstance(obj, dict):
        return None
    return str(obj.get("id"))[:36]


# The object kind of each module's list (shared/versions KINDS).
_KINDS = {
    "locations": "location",
    "tariffs": "tariff",
    "tokens": "token",
    "sessions": "session",
    "cdrs": "cdr",
}


# ------------------------------------------------------------------ the pull
def _fetch_all(
    partner: dict[str, Any],
    url: str,
    from_parties: list[tuple[str, str]],
    to_party: tuple[str, str],
    since: str | None,
) -> Any:
    """Every object of the partner's sender list, asked for on behalf of each of ``from_parties``."""
    for from_party in from_parties:
        client = OcpiClient(
            outbound_token(partner),  # a KMS failure is an OcpiClientError: the pull fails cleanly
            raw_token=bool(partner.get("raw_token", False)),
            from_party=from_party,
            to_party=to_party,
        )
        yield from client.get_all(url, params={"date_from": since} if since else None)


def pull(
    store: Any,
    partner_id: str,
    module: str,
    *,
    date_from: Any = None,
    incremental: bool = False,
) -> dict[str, int]:
    """Pull one module from a registered partner; returns the counts (fetched, created, updated,
    stale, rejected). ``date_from`` (DateTime) limits the pull to objects changed since; with
    ``incremental=True`` and no ``date_from`` it is the last successful pull's start (see above)."""
    if module not in MODULES:
        raise InvalidParameters(f"Cannot pull {module!r}: one of {', '.join(MODULES)}")
    theirs, ours = MODULES[module]
    partner = registered_partner(store, partner_id)
    url = endpoint_url(partner, module, "SENDER")
    if not url:
        raise NoMatchingEndpoints(f"Partner {partner_id} offers no {module} Sender interface")
    to_party = _partner_party(partner, theirs)
    if to_party is None:
        raise InvalidParameters(f"Partner {partner_id} has no {theirs} role: it owns no {module}")
    from_parties = _own_parties(ours) if module in PER_PARTY else _own_parties(ours)[:1]
    if not from_parties:
        raise InvalidParameters(f"We have no {ours} party to receive {module}")

    since = _date_from(date_from)
    if since is None and incremental:
        last = (partner.get("pulled_at") or {}).get(module)
        if last:
            since = format_datetime(parse_datetime(str(last)) - INCREMENTAL_OVERLAP)
    if since is None and module in DATE_FROM_REQUIRED:
        since = FULL_PULL_DATE_FROM

    started = datetime.now(UTC)
    who = Caller(partner_id=partner_id, kind=KIND_PARTNER, partner=partner)
    counts = dict.fromkeys(COUNTS, 0)
    log = {"partner_id": partner_id, "ocpi_module": module, "date_from": since}
    logger.info("pull started", extra=log)
    try:
        kind = _KINDS[module]
        for obj in _fetch_all(partner, url, from_parties, to_party, since):
            counts["fetched"] += 1
            try:
                # The partner's version -> canonical (shared/versions); a refusal is a rejection.
                try:
                    obj = convert.from_partner(store, partner, kind, obj)
                except (ValueError, KeyError, TypeError, AttributeError, IndexError, ArithmeticError) as err:
                    # Not convertible from the partner's version: this object is rejected, the pull goes on.
                    raise InvalidParameters(
                        f"not a valid OCPI object of its version: {str(err)[:200]}"
                    ) from err
                outcome = _store_one(store, module, who, obj)
            except ClientError as err:  # 2xxx: not the partner's object, or invalid
                counts["rejected"] += 1
                if module != "tokens":  # never token uids (they may appear in the message too)
                    logger.warning(
                        "pulled object rejected",
                        extra={**log, "object_id": _object_id(module, obj), "error": err.message[:300]},
                    )
                continue
            counts[outcome.result.value] += 1
    except OcpiClientError as err:
        logger.warning("pull failed", extra={**log, "counts": dict(counts), "error": err.message[:300]})
        raise ClientApiError(
            f"Pull of {module} from partner {partner_id} failed after {counts['fetched']} objects: "
            f"{err.message[:300]}",
            data=counts,
        ) from err

    fresh = store.get_partner(partner_id) or partner  # re-read: keep concurrent credential updates
    pulled_at = fresh.get("pulled_at") if isinstance(fresh.get("pulled_at"), dict) else {}
    fresh["pulled_at"] = {**pulled_at, module: format_datetime(started)}
    store.put_partner(fresh)
    logger.info("pull done", extra={**log, "counts": counts})
    return counts
