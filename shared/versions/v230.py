"""OCPI 2.3.0 wire form <-> the canonical form (docs/versions-2.3.0.md is the specification).

The canonical form is the 2.2.1 object (it validates against `shared.models.v221`, whose models keep
unknown keys) plus everything 2.3.0 adds, kept so that a 2.3.0 partner gets it back unchanged:

* 2.3.0-only fields stay in the object under their 2.3.0 names: `Location.parking_places`,
  `help_phone`, `EVSE.parking`, `accepted_service_providers`, `Connector.capabilities`,
  `Tariff.preauthorize_amount`, `Tariff.tax_included` (only `YES` and `N/A`: `NO`, the meaning of
  every 2.2.1 price, is the canonical default and is not stored), `Credentials.hub_party_id`, and
  every extension field, at any depth.
* Price (doc § 15): canonical `{excl_vat, incl_vat?, taxes?}`. `excl_vat = before_taxes`,
  `incl_vat = before_taxes + sum(taxes[].amount)`; `taxes` is kept verbatim unless it is exactly the
  one `{"name": "VAT", "amount": incl - excl}` entry that converting back invents anyway (so a 2.2.1
  Price goes to 2.3.0 and back unchanged); an empty `taxes: []` is kept (the doc would drop it; kept
  so the 2.3.0 object comes back identical). Stored `taxes` that no longer add up to `incl_vat` (the
  2.2.1 fields were changed since) are stale: the VAT entry is derived again.
* PriceLimit (`Tariff.min_price`/`max_price`): canonical is the 2.2.1 Price shape,
  `before_taxes -> excl_vat`, `after_taxes -> incl_vat`; lossless.
* OpenEnum values 2.2.1 does not know (doc § 3.2): the canonical field holds the 2.2.1 fallback (an
  unknown list item dropped; ImageCategory and TokenType -> `OTHER`; ParkingType omitted; an
  EnvironmentalImpact entry dropped; ConnectorType, which is required and has no fallback in the
  doc -> a placeholder, `SAE_J3400 -> TESLA_S`, any other -> `IEC_62196_T2_COMBO`, never sent as
  such), and the 2.3.0 value goes to a sidecar key beside it in the same JSON object:
  `"<field>@2.3.0"` (e.g. `"facilities@2.3.0": ["CAFE", "EV_LOUNGE"]`). One key per field, so a
  PATCH, which replaces top-level fields whole, replaces the sidecar along with its field. A
  sidecar is used only while the 2.2.1 fallback of its value still equals the field (a change
  made through 2.2.1 invalidates it); `from_canonical` and `strip_for_221` never send sidecars.

`strip_for_221(kind, canonical)` is what a 2.2.1 partner is sent: only the fields of the 2.2.1
model (2.3.0-only fields, sidecars, `taxes` and extension fields dropped), ConnectorType values
verbatim (doc § 3.2) and tariff prices as 2.2.1 defines them (doc § 8.3). `sendable_to_221` says
whether a 2.2.1 partner gets the object at all (an EMAID Token does not, doc § 11).

Known loss on 2.3.0 -> canonical -> 2.3.0: none for valid objects, except a 2.3.0 Tariff without
the required `tax_included` (the official `cdr_example.json`), which comes back with `"NO"`.
Credentials: a 2.2.1 `HUB` role becomes `hub_party_id` for 2.3.0 (its business details are lost).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from enum import Enum
from functools import cache
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from shared.errors import InvalidParameters
from shared.models import v221
from shared.versions import Context

VERSION = "2.3.0"
SIDECAR = "@2.3.0"
_MISSING: Any = object()
TAX_INCLUDED = ("YES", "NO", "N/A")


def sidecar(name: str) -> str:
    """The key that holds field ``name``'s 2.3.0 value when 2.2.1 cannot hold it."""
    return name + SIDECAR


# ----------------------------------------------------------------------------- numbers
def _dec(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise InvalidParameters(f"Invalid or missing parameters: {where}: must be a number")
    try:
        result = (
            value
            if isinstance(value, Decimal)
            else Decimal(repr(value) if isinstance(value, float) else value)
        )
    except InvalidOperation:
        raise InvalidParameters(f"Invalid or missing parameters: {where}: must be a number") from None
    if not result.is_finite():
        raise InvalidParameters(f"Invalid or missing parameters: {where}: must be a finite number")
    return result


def _num(value: Decimal) -> int | float:
    """A Decimal as a JSON number (int when integral), as OcpiModel.to_json_dict writes it."""
    return int(value) if value == value.to_integral_value() else float(value)


# ----------------------------------------------------------------------------- field rules
class _Rule:
    """How one field converts. ``to_c``/``from_c`` change ``out``, a copy of the object holding it."""

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        raise NotImplementedError

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        raise NotImplementedError


class _Fallback(_Rule):
    """An OpenEnum field (or a list) whose 2.3.0 value may have no 2.2.1 form: the canonical field
    holds ``reduce(value)`` and the sidecar the value itself."""

    def reduce(self, value: Any) -> Any:
        raise NotImplementedError

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        value = out[name]
        reduced = self.reduce(value)
        if reduced is value:
            return
        out[sidecar(name)] = value
        if reduced is _MISSING:
            del out[name]
        else:
            out[name] = reduced

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        kept = out.pop(sidecar(name), _MISSING)
        if kept is _MISSING or kept is None:
            return
        if self.reduce(kept) == out.get(name, _MISSING):
            out[name] = kept
        else:
            ctx.notes.append(f"{name}: stale 2.3.0 value {kept!r} ignored (the field changed since)")


class _Enum(_Fallback):
    def __init__(self, enum: type[Enum], fallback: str | Callable[[str], str] | None) -> None:
        self.known = frozenset(str(m.value) for m in enum)
        self.fallback = fallback

    def reduce(self, value: Any) -> Any:
        if not isinstance(value, str) or value in self.known:
            return value  # a non-string is left for the model to reject
        if self.fallback is None:
            return _MISSING
        return self.fallback if isinstance(self.fallback, str) else self.fallback(value)


class _EnumList(_Fallback):
    """A list of OpenEnum values: items 2.2.1 does not know are left out."""

    def __init__(self, enum: type[Enum]) -> None:
        self.known = frozenset(str(m.value) for m in enum)

    def reduce(self, value: Any) -> Any:
        if not isinstance(value, list) or all(not isinstance(v, str) or v in self.known for v in value):
            return value
        return [v for v in value if not isinstance(v, str) or v in self.known]


class _EntryList(_Fallback):
    """A list of objects: entries whose ``key`` holds an OpenEnum value 2.2.1 does not know are left
    out (EnergyMix.environ_impact)."""

    def __init__(self, key: str, enum: type[Enum]) -> None:
        self.key = key
        self.known = frozenset(str(m.value) for m in enum)

    def _ok(self, entry: Any) -> bool:
        return (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get(self.key), str)
            or (entry[self.key] in self.known)
        )

    def reduce(self, value: Any) -> Any:
        if not isinstance(value, list) or all(self._ok(e) for e in value):
            return value
        return [e for e in value if self._ok(e)]


class _Obj(_Rule):
    """A nested object (or, with ``many``, a list of them) converted with its own rules."""

    def __init__(self, rules: dict[str, _Rule], many: bool = False) -> None:
        self.rules = rules
        self.many = many

    def _map(self, value: Any, fn: Callable[[dict[str, dict], Any, Context], Any], ctx: Context) -> Any:
        if self.many:
            if not isinstance(value, list):
                return value
            return [fn(self.rules, v, ctx) if isinstance(v, Mapping) else v for v in value]
        return fn(self.rules, value, ctx) if isinstance(value, Mapping) else value

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        out[name] = self._map(out[name], _to_c, ctx)

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        out[name] = self._map(out[name], _from_c, ctx)


class _Price(_Rule):
    """types § Price: 2.3.0 `{before_taxes, taxes[]}` <-> canonical `{excl_vat, incl_vat?, taxes?}`."""

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        price = out[name]
        if not isinstance(price, Mapping) or "before_taxes" not in price:
            return  # not a 2.3.0 Price (a legacy {excl_vat, incl_vat} passes as it is; else invalid)
        before = price["before_taxes"]
        rest = {k: v for k, v in price.items() if k not in ("before_taxes", "taxes", "excl_vat", "incl_vat")}
        c: dict[str, Any] = {"excl_vat": before}
        taxes = price.get("taxes")
        if isinstance(taxes, list) and taxes:
            amounts = []
            for i, tax in enumerate(taxes):
                if not isinstance(tax, Mapping):
                    raise InvalidParameters(
                        f"Invalid or missing parameters: {name}.taxes.{i}: must be a TaxAmount"
                    )
                amounts.append(_dec(tax.get("amount"), f"{name}.taxes.{i}.amount"))
            excl = _dec(before, f"{name}.before_taxes")
            c["incl_vat"] = _num(excl + sum(amounts, Decimal(0)))
            if not _is_derived_vat(taxes):
                c["taxes"] = taxes
        elif taxes is not None:
            c["taxes"] = taxes  # [] is kept, so that it comes back
        out[name] = {**c, **rest}

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        price = out[name]
        if not isinstance(price, Mapping) or "excl_vat" not in price:
            return
        rest = {k: v for k, v in price.items() if k not in ("excl_vat", "incl_vat", "taxes", "before_taxes")}
        w: dict[str, Any] = {"before_taxes": price["excl_vat"]}
        incl = price.get("incl_vat")
        taxes = price.get("taxes", _MISSING)
        if taxes is not _MISSING and taxes is not None:
            if _taxes_add_up(price["excl_vat"], incl, taxes):
                w["taxes"] = taxes
                out[name] = {**w, **rest}
                return
            ctx.notes.append(f"{name}: stored taxes do not add up to incl_vat, derived again")
        if incl is not None:
            amount = _dec(incl, f"{name}.incl_vat") - _dec(price["excl_vat"], f"{name}.excl_vat")
            w["taxes"] = [{"name": "VAT", "amount": _num(amount)}]
        out[name] = {**w, **rest}


def _is_derived_vat(taxes: list[Any]) -> bool:
    """Exactly what `_Price.from_c` derives from a 2.2.1 incl_vat: one `{name: VAT, amount}`."""
    return (
        len(taxes) == 1
        and isinstance(taxes[0], Mapping)
        and set(taxes[0]) == {"name", "amount"}
        and (taxes[0]["name"] == "VAT")
    )


def _taxes_add_up(excl: Any, incl: Any, taxes: Any) -> bool:
    """Stored `taxes` still describe the Price: they add up to incl_vat (none: no incl_vat, or one
    equal to excl_vat, as the engine writes a tariff with `tax_included: N/A`)."""
    if not isinstance(taxes, list) or (taxes and incl is None):
        return False
    if incl is None:
        return True
    try:
        total = sum((_dec(t.get("amount"), "amount") for t in taxes), Decimal(0))
        return _dec(excl, "excl_vat") + total == _dec(incl, "incl_vat")
    except (InvalidParameters, AttributeError):
        return False


class _PriceLimit(_Rule):
    """mod_tariffs § PriceLimit `{before_taxes, after_taxes?}` <-> the 2.2.1 Price shape."""

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        limit = out[name]
        if not isinstance(limit, Mapping) or "before_taxes" not in limit:
            return
        c = {"excl_vat": limit["before_taxes"]}
        if limit.get("after_taxes") is not None:
            c["incl_vat"] = limit["after_taxes"]
        rest = {
            k: v for k, v in limit.items() if k not in ("before_taxes", "after_taxes", "excl_vat", "incl_vat")
        }
        out[name] = {**c, **rest}

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        price = out[name]
        if not isinstance(price, Mapping) or "excl_vat" not in price:
            return
        w = {"before_taxes": price["excl_vat"]}
        if price.get("incl_vat") is not None:
            w["after_taxes"] = price["incl_vat"]
        drop = ("excl_vat", "incl_vat", "taxes", "before_taxes", "after_taxes")
        out[name] = {**w, **{k: v for k, v in price.items() if k not in drop}}


class _TaxIncluded(_Rule):
    """Tariff.tax_included (closed enum, required in 2.3.0): canonical stores YES and N/A only."""

    def to_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        value = out[name]
        if value not in TAX_INCLUDED:
            raise InvalidParameters(f"Invalid or missing parameters: {name}: must be one of YES, NO, N/A")
        if value == "NO":
            del out[name]

    def from_c(self, out: dict[str, Any], name: str, ctx: Context) -> None:
        pass  # absent: `_from_c` adds the default "NO" to every tariff


# ----------------------------------------------------------------------------- object rules
def _connector_placeholder(value: str) -> str:
    # mod_locations ConnectorType (2.3.0): TESLA_S is "Mechanically compatible with SAE J3400".
    return "TESLA_S" if value == "SAE_J3400" else "IEC_62196_T2_COMBO"


_TOKEN_TYPE = _Enum(v221.TokenType, "OTHER")
_CONNECTOR_TYPE = _Enum(v221.ConnectorType, _connector_placeholder)
IMAGE = {"category": _Enum(v221.ImageCategory, "OTHER")}
BUSINESS_DETAILS = {"logo": _Obj(IMAGE)}
ENERGY_MIX = {"environ_impact": _EntryList("category", v221.EnvironmentalImpactCategory)}
CONNECTOR = {"standard": _CONNECTOR_TYPE}
EVSE = {
    "capabilities": _EnumList(v221.Capability),
    "parking_restrictions": _EnumList(v221.ParkingRestriction),
    "images": _Obj(IMAGE, many=True),
    "connectors": _Obj(CONNECTOR, many=True),
}
LOCATION = {
    "publish_allowed_to": _Obj({"type": _TOKEN_TYPE}, many=True),
    "parking_type": _Enum(v221.ParkingType, None),
    "facilities": _EnumList(v221.Facility),
    "images": _Obj(IMAGE, many=True),
    "operator": _Obj(BUSINESS_DETAILS),
    "suboperator": _Obj(BUSINESS_DETAILS),
    "owner": _Obj(BUSINESS_DETAILS),
    "energy_mix": _Obj(ENERGY_MIX),
    "evses": _Obj(EVSE, many=True),
}
TARIFF = {
    "min_price": _PriceLimit(),
    "max_price": _PriceLimit(),
    "tax_included": _TaxIncluded(),
    "energy_mix": _Obj(ENERGY_MIX),
}
TOKEN = {"type": _TOKEN_TYPE}
SESSION = {"cdr_token": _Obj(TOKEN), "total_cost": _Price()}
CDR = {
    "cdr_token": _Obj(TOKEN),
    "cdr_location": _Obj({"connector_standard": _CONNECTOR_TYPE}),
    "tariffs": _Obj(TARIFF, many=True),
    **{name: _Price() for name in (
        "total_cost", "total_fixed_cost", "total_energy_cost", "total_time_cost",
        "total_parking_cost", "total_reservation_cost",
    )},
}  # fmt: skip
CREDENTIALS = {"roles": _Obj({"business_details": _Obj(BUSINESS_DETAILS)}, many=True)}
WITH_TOKEN = {"token": _Obj(TOKEN)}
NOTHING: dict[str, _Rule] = {}

RULES: dict[str, dict[str, _Rule]] = {
    "location": LOCATION,
    "location_patch": LOCATION,
    "evse": EVSE,
    "evse_patch": EVSE,
    "connector": CONNECTOR,
    "connector_patch": CONNECTOR,
    "tariff": TARIFF,
    "token": TOKEN,
    "token_patch": TOKEN,
    "authorization_info": WITH_TOKEN,
    "location_references": NOTHING,
    "session": SESSION,
    "session_patch": SESSION,
    "cdr": CDR,
    "credentials": CREDENTIALS,
    "start_session": WITH_TOKEN,
    "stop_session": NOTHING,
    "reserve_now": WITH_TOKEN,
    "cancel_reservation": NOTHING,
    "unlock_connector": NOTHING,
    "command_response": NOTHING,
    "command_result": NOTHING,
}


def _to_c(rules: dict[str, _Rule], obj: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    # A sidecar key is ours: one sent by a partner is not trusted.
    out = {k: v for k, v in obj.items() if not (isinstance(k, str) and k.endswith(SIDECAR))}
    for name, rule in rules.items():
        if name in out:
            rule.to_c(out, name, ctx)
    return out


def _from_c(rules: dict[str, _Rule], obj: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    out = dict(obj)
    for name, rule in rules.items():
        if name in out or (isinstance(rule, _Fallback) and sidecar(name) in out):
            rule.from_c(out, name, ctx)
    if rules is TARIFF and "tax_included" not in out:
        out["tax_included"] = "NO"  # 2.2.1 prices are "excl. VAT" (doc § 8.1)
    for key in [k for k in out if isinstance(k, str) and k.endswith(SIDECAR)]:
        del out[key]  # orphans (their field has no rule here)
    return out


def _check_kind(kind: str) -> dict[str, _Rule]:
    try:
        return RULES[kind]
    except KeyError:
        raise ValueError(f"unknown object kind {kind!r}") from None


# ----------------------------------------------------------------------------- the contract
def to_canonical(kind: str, obj: dict[str, Any], ctx: Context | None = None) -> dict[str, Any]:
    """A 2.3.0 object (or PATCH body, for ``*_patch`` kinds) -> the canonical form."""
    rules = _check_kind(kind)
    return _to_c(rules, copy.deepcopy(obj), ctx or Context())


def from_canonical(kind: str, obj: dict[str, Any], ctx: Context | None = None) -> dict[str, Any]:
    """A canonical object (or PATCH body) -> the 2.3.0 wire form."""
    rules = _check_kind(kind)
    ctx = ctx or Context()
    out = _from_c(rules, copy.deepcopy(obj), ctx)
    if kind == "credentials":
        _hub_to_230(out, ctx)
    return out


def _hub_to_230(out: dict[str, Any], ctx: Context) -> None:
    """2.3.0 has no HUB role: the hub is `hub_party_id` (credentials § Credentials object)."""
    roles = out.get("roles")
    if not isinstance(roles, list):
        return
    hubs = [r for r in roles if isinstance(r, Mapping) and str(r.get("role", "")).upper() == "HUB"]
    if not hubs:
        return
    others = [r for r in roles if all(r is not h for h in hubs)]
    if not out.get("hub_party_id"):
        hub = hubs[0]
        out["hub_party_id"] = f"{hub.get('country_code', '')}{hub.get('party_id', '')}"
    if others:
        out["roles"] = others
        ctx.notes.append("roles: the HUB role is sent as hub_party_id (its business_details are not)")
    else:
        ctx.notes.append("roles: only a HUB role, kept although 2.3.0 has no HUB role")


# ----------------------------------------------------------------------------- 2.2.1 partners
_MODELS_221: dict[str, type[BaseModel]] = {
    "location": v221.Location,
    "evse": v221.EVSE,
    "connector": v221.Connector,
    "tariff": v221.Tariff,
    "token": v221.Token,
    "authorization_info": v221.AuthorizationInfo,
    "location_references": v221.LocationReferences,
    "session": v221.Session,
    "cdr": v221.CDR,
    "credentials": v221.Credentials,
    "start_session": v221.StartSession,
    "stop_session": v221.StopSession,
    "reserve_now": v221.ReserveNow,
    "cancel_reservation": v221.CancelReservation,
    "unlock_connector": v221.UnlockConnector,
    "command_response": v221.CommandResponse,
    "command_result": v221.CommandResult,
}


def strip_for_221(kind: str, canonical: dict[str, Any]) -> dict[str, Any]:
    """What a 2.2.1 partner is sent: the fields of the 2.2.1 model only, at every depth (no 2.3.0
    fields, sidecars, Price `taxes` or extension fields), a ConnectorType 2.2.1 does not know
    verbatim (doc § 3.2) and tariff prices as 2.2.1 reads them (doc § 8.3: `tax_included` YES ->
    `price / (1 + vat/100)` rounded half up to 4 decimals; N/A -> no `vat`). Works on PATCH bodies
    too (``*_patch`` kinds: only the fields present)."""
    model = _MODELS_221.get(kind.removesuffix("_patch"))
    if model is None:
        raise ValueError(f"unknown object kind {kind!r}")
    return _strip(model, canonical)


def sendable_to_221(kind: str, canonical: Mapping[str, Any]) -> bool:
    """False for an object a 2.2.1 partner must not get at all: a Token of 2.3.0 type EMAID (doc
    § 11, mod_tokens: "The eMSP is RECOMMENDED to not push Tokens with type EMAID at all")."""
    if kind in ("token", "token_patch"):
        return canonical.get(sidecar("type")) != "EMAID"
    return True


def _restore_connector_types(obj: Mapping[str, Any], field: str) -> dict[str, Any]:
    out = dict(obj)
    _CONNECTOR_TYPE.from_c(out, field, Context())
    return out


def _tariff_for_221(tariff: Mapping[str, Any]) -> dict[str, Any]:
    mode = tariff.get("tax_included", "NO")
    elements = tariff.get("elements")
    if mode == "NO" or not isinstance(elements, list):
        return dict(tariff)
    new_elements = []
    for element in elements:
        if not isinstance(element, Mapping) or not isinstance(element.get("price_components"), list):
            new_elements.append(element)
            continue
        components = []
        for pc in element["price_components"]:
            if isinstance(pc, Mapping) and pc.get("vat") is not None:
                pc = dict(pc)
                if mode == "N/A":
                    del pc["vat"]  # "No taxes are applicable": N/A wins over a contradicting vat
                elif mode == "YES":
                    price, vat = _dec(pc.get("price"), "price"), _dec(pc["vat"], "vat")
                    excl = (price / (1 + vat / 100)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
                    pc["price"] = _num(excl)
            components.append(pc)
        new_elements.append({**element, "price_components": components})
    return {**tariff, "elements": new_elements}


_HOOKS_221: dict[type[BaseModel], Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    v221.Connector: lambda c: _restore_connector_types(c, "standard"),
    v221.CdrLocation: lambda c: _restore_connector_types(c, "connector_standard"),
    v221.Tariff: _tariff_for_221,
}


def _models_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (and whether as a list), looking through Optional/Annotated/list."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _models_in(get_args(annotation)[0])
    if origin in (Union, UnionType):
        for arg in get_args(annotation):
            found = _models_in(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner, _ = _models_in(get_args(annotation)[0])
        return inner, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


@cache
def _fields_221(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel] | None, bool]]:
    return {(info.alias or name): _models_in(info.annotation) for name, info in model.model_fields.items()}


def _strip(model: type[BaseModel], obj: Mapping[str, Any]) -> dict[str, Any]:
    hook = _HOOKS_221.get(model)
    if hook is not None:
        obj = hook(obj)
    out: dict[str, Any] = {}
    for key, (sub, many) in _fields_221(model).items():
        if key not in obj:
            continue
        value = obj[key]
        if sub is not None and many and isinstance(value, list):
            value = [_strip(sub, v) if isinstance(v, Mapping) else copy.deepcopy(v) for v in value]
        elif sub is not None and not many and isinstance(value, Mapping):
            value = _strip(sub, value)
        elif isinstance(value, list | dict):
            value = copy.deepcopy(value)  # the result shares nothing with the canonical object
        out[key] = value
    return out
