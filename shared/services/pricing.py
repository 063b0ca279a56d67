"""Where the tariff engine (shared/pricing/engine.py) is used.

As CPO (our own sessions and CDRs from the back office, shared/services/ingest.py):
- a CDR without `total_cost` is priced with the tariffs it carries (`tariffs`, as they were at the
  start of the session: mod_cdrs CDR object), else with our own tariffs named by its charging
  periods' `tariff_id` or by the connector it used; `total_cost` and every missing sub-total are
  filled in, and `tariffs` when absent. A CDR with `total_cost` is checked: the result goes into
  the stored item's `meta.pricing` (a mismatch is recorded, the back office's amounts are kept:
  it is the one that bills, e.g. a discount the tariff cannot express, mod_tariffs example 11).
  A CDR we cannot price and that has no `total_cost` is refused (bad data: InvalidParameters).
- a session PUT or PATCH without `total_cost` gets it from the periods (for a PATCH: the stored
  ones plus the appended ones; one extra read).

As eMSP (CDRs CPO partners POST or we pull, shared/services/cdrs.py): every new CDR is re-priced
against the tariffs we hold from that CPO (received tariffs, named by `tariff_id` or by the
connector of the received location; the CDR's own `tariffs` only when we hold none) and the result
is stored in `meta.pricing` of the CDR item. A difference above the tolerance
(`OCPI_PRICING_TOLERANCE`, default 0.01 in the CDR's currency, on excl and on incl VAT) is a
`mismatch`: recorded, never a rejection (the billing run lists it, shared/services/billing.py).

`meta.pricing` = {"status": "ok" | "mismatch" | "unpriced", "expected": {"excl_vat", "incl_vat"},
"difference": {"excl_vat", "incl_vat"} (CDR minus expected), "tariff_ids": [...], "reason": str}
with amounts as decimal strings (DynamoDB keeps them exact; they are never floats).

Cost: per CDR one Query of the location (time zone and connector) and one GetItem per tariff id.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.errors import InvalidParameters
from shared.logs import logger as log
from shared.pricing import MONEY_PLACES, TOTALS, Price, PriceResult, PricingError, price_cdr, price_session
from shared.services.objects import OWN, RECEIVED
from shared.store.base import ObjectRef, StoredObject

DEFAULT_TOLERANCE = Decimal("0.01")


def tolerance() -> Decimal:
    raw = os.environ.get("OCPI_PRICING_TOLERANCE", "")
    try:
        value = Decimal(raw) if raw else DEFAULT_TOLERANCE
    except InvalidOperation:
        value = DEFAULT_TOLERANCE
    return value if value.is_finite() and value >= 0 else DEFAULT_TOLERANCE


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-MONEY_PLACES))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


# ------------------------------------------------------------------ lookups
def _location(store: Any, cc: str, pid: str, location_id: Any, collection: str) -> StoredObject | None:
    if not location_id:
        return None
    found = store.get(ObjectRef("locations", cc, pid, str(location_id)))
    return found if found is not None and found.collection == collection else None


def _connector_tariff_ids(location: StoredObject | None, evse_uid: Any, connector_id: Any) -> list[str]:
    if location is None or evse_uid is None:
        return []
    for child in location.children:
        evse = child.body
        if str(evse.get("uid", "")).upper() != str(evse_uid).upper():
            continue
        for connector in evse.get("connectors") or []:
            if connector_id is None or str(connector.get("id", "")).upper() == str(connector_id).upper():
                return [str(t) for t in connector.get("tariff_ids") or []]
    return []


def _tariffs(store: Any, cc: str, pid: str, ids: list[str], collection: str) -> list[dict[str, Any]]:
    out, seen = [], set()
    for tariff_id in ids:
        if tariff_id.upper() in seen:
            continue
        seen.add(tariff_id.upper())
        found = store.get(ObjectRef("tariffs", cc, pid, tariff_id))
        if found is not None and found.collection == collection:
            out.append(found.body)
    return out


def _period_tariff_ids(obj: dict[str, Any]) -> list[str]:
    periods = obj.get("charging_periods") or []
    return [str(p["tariff_id"]) for p in periods if isinstance(p, dict) and p.get("tariff_id")]


def _inputs_for_cdr(
    store: Any, cdr: dict[str, Any], collection: str, *, embedded_first: bool
) -> tuple[list[dict[str, Any]], str | None, str]:
    """(tariffs, time zone, where the tariffs came from) for a CDR."""
    cc, pid = str(cdr.get("country_code", "")), str(cdr.get("party_id", ""))
    where = cdr.get("cdr_location") or {}
    location = _location(store, cc, pid, where.get("id"), collection)
    time_zone = location.body.get("time_zone") if location is not None else None
    embedded = [t for t in cdr.get("tariffs") or [] if isinstance(t, dict)]
    if embedded_first and embedded:
        return embedded, time_zone, "the CDR's tariffs"
    ids = _period_tariff_ids(cdr) + [str(t.get("id")) for t in embedded if t.get("id")]
    ids += _connector_tariff_ids(location, where.get("evse_uid"), where.get("connector_id"))
    held = _tariffs(store, cc, pid, ids, collection)
    if held:
        return held, time_zone, "tariffs we hold"
    return embedded, time_zone, "the CDR's tariffs"


# ------------------------------------------------------------------ checks
def _compare(cdr: dict[str, Any], result: PriceResult, source: str) -> dict[str, Any]:
    expected = result.totals["total_cost"]
    exp_excl = _money(expected.excl_vat)
    exp_incl = None if expected.incl_vat is None else _money(expected.incl_vat)
    sent = cdr.get("total_cost") or {}
    sent_excl = Decimal(str(sent.get("excl_vat")))
    sent_incl = None if sent.get("incl_vat") is None else Decimal(str(sent["incl_vat"]))
    diff_excl = sent_excl - exp_excl
    diff_incl = None if sent_incl is None or exp_incl is None else sent_incl - exp_incl
    limit = tolerance()
    mismatch = abs(diff_excl) > limit or (diff_incl is not None and abs(diff_incl) > limit)
    reason = f"re-priced with {source}"
    if result.notes:
        reason += "; " + "; ".join(result.notes)
    return {
        "status": "mismatch" if mismatch else "ok",
        "expected": {"excl_vat": _text(exp_excl), "incl_vat": _text(exp_incl)},
        "difference": {"excl_vat": _text(diff_excl), "incl_vat": _text(diff_incl)},
        "tariff_ids": list(result.tariff_ids),
        "reason": reason,
    }


def _unpriced(reason: str) -> dict[str, Any]:
    return {"status": "unpriced", "expected": None, "difference": None, "tariff_ids": [], "reason": reason}


def check_cdr(store: Any, cdr: dict[str, Any], *, own: bool) -> dict[str, Any]:
    """`meta.pricing` for a CDR that has its totals: the engine's total against the CDR's. Never
    raises: a CDR is stored whatever its check says."""
    if cdr.get("credit"):
        return _unpriced("Credit CDR: not re-priced (it negates the CDR it credits)")
    try:
        tariffs, time_zone, source = _inputs_for_cdr(
            store, cdr, OWN if own else RECEIVED, embedded_first=own
        )
        if not tariffs:
            return _unpriced("no tariff of this CPO is known for this CDR")
        result = price_cdr(cdr, tariffs, time_zone=time_zone)
        if not result.tariff_ids:
            return _unpriced("no tariff was valid during the CDR's periods")
        return _compare(cdr, result, source)
    except (PricingError, InvalidOperation, TypeError, ValueError) as err:
        return _unpriced(f"cannot price: {err}")
    except Exception:  # a pricing bug must not lose a CDR
        log.exception("pricing check failed")
        return _unpriced("pricing check failed (logged)")


def _price_json(price: Price) -> dict[str, Any]:
    out: dict[str, Any] = {"excl_vat": _money(price.excl_vat)}
    if price.incl_vat is not None:
        out["incl_vat"] = _money(price.incl_vat)
    return out


def complete_own_cdr(store: Any, cdr: Any) -> tuple[Any, dict[str, Any] | None]:
    """Our own CDR from the back office: (the CDR with its totals, `meta.pricing`). Returns the
    input untouched when it is not a JSON object (validation reports that)."""
    if not isinstance(cdr, dict):
        return cdr, None
    if cdr.get("total_cost") is not None:
        return cdr, check_cdr(store, cdr, own=True)
    try:
        tariffs, time_zone, source = _inputs_for_cdr(store, cdr, OWN, embedded_first=True)
        if not tariffs:
            raise PricingError("no tariff: send `tariffs`, `tariff_id` in the periods, or a known connector")
        result = price_cdr(cdr, tariffs, time_zone=time_zone)
    except PricingError as err:
        raise InvalidParameters(f"CDR without total_cost cannot be priced: {err}") from None
    out = dict(cdr)
    for name in TOTALS:
        if out.get(name) is None:
            out[name] = _price_json(result.totals[name])
    if not out.get("tariffs"):
        out["tariffs"] = [t for t in tariffs if str(t.get("id")) in result.tariff_ids]
    meta = {
        "status": "ok",
        "expected": {
            "excl_vat": _text(out["total_cost"]["excl_vat"]),
            "incl_vat": _text(out["total_cost"].get("incl_vat")),
        },
        "difference": {
            "excl_vat": "0",
            "incl_vat": None if out["total_cost"].get("incl_vat") is None else "0",
        },
        "tariff_ids": list(result.tariff_ids),
        "reason": f"priced by us with {source}",
    }
    return out, meta


def _session_inputs(store: Any, session: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
    cc, pid = str(session.get("country_code", "")), str(session.get("party_id", ""))
    location = _location(store, cc, pid, session.get("location_id"), OWN)
    time_zone = location.body.get("time_zone") if location is not None else None
    ids = _period_tariff_ids(session) + _connector_tariff_ids(
        location, session.get("evse_uid"), session.get("connector_id")
    )
    return _tariffs(store, cc, pid, ids, OWN), time_zone


def complete_own_session(store: Any, session: Any, stored: dict[str, Any] | None = None) -> Any:
    """Our own session (PUT, or PATCH fields with ``stored`` the session as stored) with
    `total_cost` filled in from its periods when the back office left it out. A session we cannot
    price is passed on as is (`total_cost` is optional in a Session)."""
    if not isinstance(session, dict) or session.get("total_cost") is not None:
        return session
    whole = dict(stored or {})
    whole.update(session)
    periods = list((stored or {}).get("charging_periods") or []) + list(session.get("charging_periods") or [])
    if not periods:
        return session
    whole["charging_periods"] = periods
    try:
        tariffs, time_zone = _session_inputs(store, whole)
        if not tariffs:
            return session
        result = price_session(whole, tariffs, time_zone=time_zone, now=whole.get("last_updated"))
    except (PricingError, InvalidOperation, TypeError, ValueError) as err:
        log.warning("session not priced", extra={"reason": str(err)})
        return session
    return {**session, "total_cost": _price_json(result.totals["total_cost"])}
