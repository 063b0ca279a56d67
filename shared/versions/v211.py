"""OCPI 2.1.1 wire form <-> canonical (OCPI 2.2.1) form: the field mapping of docs/versions-2.1.1.md.

`to_canonical(kind, obj, ctx)` reads a 2.1.1 object, `from_canonical(kind, obj, ctx)` writes one; the
section numbers below (§4.1, §8.2, ...) are those of the doc. Both work on a deep copy (the input is
never mutated), use the store only through `ctx.load_location` / `ctx.find_token`, and leave a line in
`ctx.notes` for everything they derive or drop that a reader could miss.

Rules applied everywhere:
- G2: →C, fields this module does not map are kept as they are (nested ones too; the canonical
  models keep unknown keys). →W, the canonical object is first reduced to what a 2.2.1 partner gets
  (`v230.strip_for_221`: no 2.3.0 fields, `@2.3.0` sidecars or extension fields, tax-included
  tariff prices made net), so 2.1.1 never receives a field 2.1.1 and 2.2.1 do not define.
- G1: in whole objects `null` and `[]` are the same as absent (dropped both ways); `*_patch` bodies are
  mapped field by field and keep explicit `null`s (a PATCH may clear a field).
- G3: 2.1.1 objects carry no owner; `country_code`/`party_id` come from `ctx.partner_party` (the caller
  puts the URL's or the partner's credentials party there) unless the body already has them, and
  they are dropped on the way out.
- DateTimes stay strings: as received →C; `YYYY-MM-DDTHH:MM:SSZ` (fractions truncated) →W (§1.5).
- Numbers: 2.1.1 numeric strings such as the CDR example's `"price": "2.00"` become numbers →C (§12 #18).

Objects the doc says are never sent to a 2.1.1 partner (a Location with `publish=false`, a Credit
CDR, a Tariff whose `type` is not REGULAR, a connector/EVSE/tariff with nothing left that 2.1.1 can
express, a non-numeric `reservation_id`) and the kind `cancel_reservation` raise
`UnsupportedInVersion` in `from_canonical`; `sendable()` tells a list builder beforehand.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any

from shared.geo import haversine_m
from shared.models.types import parse_datetime
from shared.timeutil import timestamp
from shared.versions import Context

__all__ = ["VERSION", "UnsupportedInVersion", "derived_token", "from_canonical", "sendable", "to_canonical"]

VERSION = "2.1.1"
NA = "#NA"

Obj = dict[str, Any]


class UnsupportedInVersion(ValueError):
    """The object (or the whole kind) cannot be expressed in OCPI 2.1.1, or must not be sent to a
    2.1.1 partner (docs/versions-2.1.1.md §10/§11). The caller skips it, answers 404 or NOT_SUPPORTED."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"OCPI 2.1.1 cannot carry this {kind}: {reason}")
        self.kind = kind
        self.reason = reason


# ------------------------------------------------------------------------------------------ enums (§4.4 ...)

_PARKING_SHARED = {"ON_STREET", "PARKING_GARAGE", "UNDERGROUND_GARAGE", "PARKING_LOT"}
_CAPABILITIES_211 = {
    "CHARGING_PROFILE_CAPABLE",
    "CREDIT_CARD_PAYABLE",
    "REMOTE_START_STOP_CAPABLE",
    "RESERVABLE",
    "RFID_READER",
    "UNLOCK_CAPABLE",
}
_FACILITIES_NEW = {"BIKE_SHARING", "TRAM_STOP", "METRO_STATION", "PARKING_LOT"}
_CONNECTORS_211 = {  # L11 §4.4: the 25 values; any other (2.2.1 or 2.3.0) standard cannot be sent
    "CHADEMO", "DOMESTIC_A", "DOMESTIC_B", "DOMESTIC_C", "DOMESTIC_D", "DOMESTIC_E", "DOMESTIC_F",
    "DOMESTIC_G", "DOMESTIC_H", "DOMESTIC_I", "DOMESTIC_J", "DOMESTIC_K", "DOMESTIC_L",
    "IEC_60309_2_single_16", "IEC_60309_2_three_16", "IEC_60309_2_three_32", "IEC_60309_2_three_64",
    "IEC_62196_T1", "IEC_62196_T1_COMBO", "IEC_62196_T2", "IEC_62196_T2_COMBO", "IEC_62196_T3A",
    "IEC_62196_T3C", "TESLA_R", "TESLA_S",
}  # fmt: skip
_POWER_W = {"AC_2_PHASE": "AC_1_PHASE", "AC_2_PHASE_SPLIT": "AC_1_PHASE"}
_TOKEN_TYPE_W = {"APP_USER": "OTHER", "AD_HOC_USER": "OTHER"}
_DIMENSIONS_211 = {"ENERGY", "MAX_CURRENT", "MIN_CURRENT", "PARKING_TIME", "TIME"}  # FLAT: →C drop
_RESPONSE_TYPES = {"NOT_SUPPORTED", "REJECTED", "ACCEPTED", "UNKNOWN_SESSION"}
_RESULT_TYPES_211 = {"ACCEPTED", "REJECTED", "NOT_SUPPORTED", "TIMEOUT"}

# ------------------------------------------------------------------------------------------ small helpers


def _note(ctx: Context, text: str) -> None:
    ctx.notes.append(f"2.1.1: {text}")


def _prune(d: Obj) -> Obj:
    """G1 for whole objects: a `null` or `[]` value is the same as an absent field."""
    for key in [k for k, v in d.items() if v is None or (isinstance(v, list) and not v)]:
        del d[key]
    return d


def _rename(d: Obj, old: str, new: str) -> None:
    if old in d:
        d[new] = d.pop(old)


def _drop(d: Obj, *keys: str) -> None:
    for key in keys:
        d.pop(key, None)


def _each(d: Obj, key: str, fn: Callable[[Obj], Obj | None]) -> None:
    """Map the dict items of list `d[key]`; items mapped to None are left out."""
    items = d.get(key)
    if isinstance(items, list):
        d[key] = [m for m in (fn(x) if isinstance(x, dict) else x for x in items) if m is not None]


_NUMERIC = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _num(value: Any) -> Any:
    """2.1.1 examples write some numbers as strings ("2.00"); read those as JSON numbers (§12 #18)."""
    if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
        dec = Decimal(value.strip())
        return int(dec) if dec == dec.to_integral_value() else float(dec)
    return value


def _nums(d: Obj, *keys: str) -> None:
    for key in keys:
        if key in d:
            d[key] = _num(d[key])


def _dt(value: Any) -> Any:
    """→W DateTime: `YYYY-MM-DDTHH:MM:SSZ` in UTC, fractional seconds truncated (§1.5)."""
    if not isinstance(value, str):
        return value
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return value
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _dts(d: Obj, *keys: str) -> None:
    for key in keys:
        if key in d:
            d[key] = _dt(d[key])


def _coord6(value: Any) -> Any:
    """→W coordinate: exactly 6 decimals (pad 5, round 7 half-up) (§1.6)."""
    if not isinstance(value, str):
        return value
    try:
        return str(Decimal(value).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))
    except InvalidOperation:
        return value


def _geo_w(g: Any) -> Any:
    if isinstance(g, dict):
        for key in ("latitude", "longitude"):
            if key in g:
                g[key] = _coord6(g[key])
    return g


def _owner(d: Obj, ctx: Context, owner: tuple[str, str] | None = None) -> None:
    """G3: `country_code`/`party_id` of an owned object (the body wins when it already has them)."""
    if owner is None and ctx.partner_party is not None:
        owner = (ctx.partner_party[0], ctx.partner_party[1])
    if owner is None:
        if "country_code" not in d or "party_id" not in d:
            _note(ctx, "owner unknown (no ctx.partner_party): country_code/party_id left out")
        return
    d.setdefault("country_code", owner[0])
    d.setdefault("party_id", owner[1])


def _price_c(value: Any) -> Any:
    """2.1.1 `total_cost` (excl. VAT) → Price."""
    value = _num(value)
    # Decimal too: request bodies are parsed with parse_float=Decimal (shared/jsonutil.py).
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return {"excl_vat": value}
    return value


def _price_w(value: Any) -> Any:
    """Price → plain number (`excl_vat`); `incl_vat` is lost."""
    if isinstance(value, dict):
        return value.get("excl_vat")
    return value


# ------------------------------------------------------------------------------------------ time_zone (§4.1)

_ALPHA3 = (
    "ABWAW AFGAF AGOAO AIAAI ALAAX ALBAL ANDAD AREAE ARGAR ARMAM ASMAS ATAAQ ATFTF ATGAG AUSAU AUTAT "
    "AZEAZ BDIBI BELBE BENBJ BESBQ BFABF BGDBD BGRBG BHRBH BHSBS BIHBA BLMBL BLRBY BLZBZ BMUBM BOLBO "
    "BRABR BRBBB BRNBN BTNBT BVTBV BWABW CAFCF CANCA CCKCC CHECH CHLCL CHNCN CIVCI CMRCM CODCD COGCG "
    "COKCK COLCO COMKM CPVCV CRICR CUBCU CUWCW CXRCX CYMKY CYPCY CZECZ DEUDE DJIDJ DMADM DNKDK DOMDO "
    "DZADZ ECUEC EGYEG ERIER ESHEH ESPES ESTEE ETHET FINFI FJIFJ FLKFK FRAFR FROFO FSMFM GABGA GBRGB "
    "GEOGE GGYGG GHAGH GIBGI GINGN GLPGP GMBGM GNBGW GNQGQ GRCGR GRDGD GRLGL GTMGT GUFGF GUMGU GUYGY "
    "HKGHK HMDHM HNDHN HRVHR HTIHT HUNHU IDNID IMNIM INDIN IOTIO IRLIE IRNIR IRQIQ ISLIS ISRIL ITAIT "
    "JAMJM JEYJE JORJO JPNJP KAZKZ KENKE KGZKG KHMKH KIRKI KNAKN KORKR KWTKW LAOLA LBNLB LBRLR LBYLY "
    "LCALC LIELI LKALK LSOLS LTULT LUXLU LVALV MACMO MAFMF MARMA MCOMC MDAMD MDGMG MDVMV MEXMX MHLMH "
    "MKDMK MLIML MLTMT MMRMM MNEME MNGMN MNPMP MOZMZ MRTMR MSRMS MTQMQ MUSMU MWIMW MYSMY MYTYT NAMNA "
    "NCLNC NERNE NFKNF NGANG NICNI NIUNU NLDNL NORNO NPLNP NRUNR NZLNZ OMNOM PAKPK PANPA PCNPN PERPE "
    "PHLPH PLWPW PNGPG POLPL PRIPR PRKKP PRTPT PRYPY PSEPS PYFPF QATQA REURE ROURO RUSRU RWARW SAUSA "
    "SDNSD SENSN SGPSG SGSGS SHNSH SJMSJ SLBSB SLESL SLVSV SMRSM SOMSO SPMPM SRBRS SSDSS STPST SURSR "
    "SVKSK SVNSI SWESE SWZSZ SXMSX SYCSC SYRSY TCATC TCDTD TGOTG THATH TJKTJ TKLTK TKMTM TLSTL TONTO "
    "TTOTT TUNTN TURTR TUVTV TWNTW TZATZ UGAUG UKRUA UMIUM URYUY USAUS UZBUZ VATVA VCTVC VENVE VGBVG "
    "VIRVI VNMVN VUTVU WLFWF WSMWS YEMYE ZAFZA ZMBZM ZWEZW"
)
_ALPHA2 = {item[:3]: item[3:] for item in _ALPHA3.split()}  # ISO 3166-1 alpha-3 -> alpha-2


def _zone_tab_text() -> str:
    try:
        from importlib.resources import files

        return files("tzdata").joinpath("zoneinfo", "zone1970.tab").read_text(encoding="utf-8")
    except (ImportError, OSError, ModuleNotFoundError):
        return Path("/usr/share/zoneinfo/zone1970.tab").read_text(encoding="utf-8")


def _iso6709(text: str, degree_digits: int) -> float:
    sign = -1.0 if text[0] == "-" else 1.0
    digits = text[1:]
    deg, rest = int(digits[:degree_digits]), digits[degree_digits:]
    minutes, seconds = int(rest[:2]), int(rest[2:4] or 0)
    return sign * (deg + minutes / 60 + seconds / 3600)


@cache
def _zones() -> dict[str, list[tuple[str, float, float]]]:
    """alpha-2 country -> [(zone, latitude, longitude of its principal city)] from zone1970.tab."""
    out: dict[str, list[tuple[str, float, float]]] = {}
    for line in _zone_tab_text().splitlines():
        if not line or line.startswith("#"):
            continue
        codes, coords, zone = line.split("\t")[:3]
        split = max(coords.rfind("+"), coords.rfind("-"))
        lat_text, lon_text = coords[:split], coords[split:]
        lat, lon = _iso6709(lat_text, 2), _iso6709(lon_text, 3)
        for code in codes.split(","):
            out.setdefault(code, []).append((zone, lat, lon))
    return out


def _derive_time_zone(d: Obj, ctx: Context) -> str:
    """§4.1 `time_zone` absent: stored previous version, single zone of the country, nearest zone of
    the country, else UTC."""
    cc, pid, loc_id = d.get("country_code"), d.get("party_id"), d.get("id")
    if ctx.load_location is not None and cc and pid and loc_id:
        stored = ctx.load_location(cc, pid, loc_id)
        if stored and stored.get("time_zone"):
            _note(ctx, f"location {loc_id}: time_zone taken from the stored version")
            return str(stored["time_zone"])
    country = str(d.get("country") or "").upper()
    alpha2 = country if len(country) == 2 else _ALPHA2.get(country, "")
    zones = _zones().get(alpha2, [])
    zone = "UTC"
    if len(zones) == 1:
        zone = zones[0][0]
    elif zones:
        try:
            lat = float(d["coordinates"]["latitude"])
            lon = float(d["coordinates"]["longitude"])
            zone = min(zones, key=lambda z: haversine_m(lat, lon, z[1], z[2]))[0]
        except (KeyError, TypeError, ValueError):
            zone = "UTC"
    _note(ctx, f"location {loc_id}: time_zone missing, derived {zone}")
    return zone


# ------------------------------------------------------------------------------------------ locations (§4)


def _hours_c(h: Any) -> Any:
    """§4.5: 2.1.1 Hours (choice of `regular_hours` or `twentyfourseven`) → canonical."""
    if not isinstance(h, dict):
        return h
    if h.get("twentyfourseven") is not None:
        if h["twentyfourseven"] is True:
            h.pop("regular_hours", None)
    else:
        h["twentyfourseven"] = not h.get("regular_hours")
    return _prune(h)


def _hours_w(h: Any) -> Any:
    if not isinstance(h, dict):
        return h
    for key in ("exceptional_openings", "exceptional_closings"):
        for period in h.get(key) or []:
            if isinstance(period, dict):
                _dts(period, "period_begin", "period_end")
    if h.get("twentyfourseven") is True:
        h.pop("regular_hours", None)
    elif h.get("regular_hours"):
        h.pop("twentyfourseven", None)
    return _prune(h)


def _energy_mix_c(m: Any) -> Any:
    if isinstance(m, dict):
        for item in m.get("environ_impact") or []:
            if isinstance(item, dict):
                _rename(item, "source", "category")
                _nums(item, "amount")
        for item in m.get("energy_sources") or []:
            if isinstance(item, dict):
                _nums(item, "percentage")
        _prune(m)
    return m


def _energy_mix_w(m: Any) -> Any:
    if isinstance(m, dict):
        for item in m.get("environ_impact") or []:
            if isinstance(item, dict):
                _rename(item, "category", "source")
        _prune(m)
    return m


def _connector_c(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    _rename(d, "voltage", "max_voltage")
    _rename(d, "amperage", "max_amperage")
    if "tariff_id" in d:
        tariff_id = d.pop("tariff_id")
        d["tariff_ids"] = [tariff_id] if tariff_id else None
    return d if patch else _prune(d)


def _connector_w(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    if "standard" in d and d["standard"] not in _CONNECTORS_211:
        raise UnsupportedInVersion("connector", f"standard {d['standard']} does not exist in 2.1.1")
    if d.get("power_type") in _POWER_W:
        d["power_type"] = _POWER_W[d["power_type"]]
    _rename(d, "max_voltage", "voltage")
    _rename(d, "max_amperage", "amperage")
    if "max_electric_power" in d:
        del d["max_electric_power"]
    if "tariff_ids" in d:
        ids = d.pop("tariff_ids") or []
        if ids:
            d["tariff_id"] = ids[0]
        elif patch:
            d["tariff_id"] = None
        if len(ids) > 1:
            _note(ctx, f"connector {d.get('id')}: tariff_ids {ids} sent as tariff_id {ids[0]}")
    _dts(d, "last_updated")
    return d if patch else _prune(d)


def _evse_c(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    _each(d, "connectors", lambda c: _connector_c(c, ctx))
    return d if patch else _prune(d)


def _connectors_w(d: Obj, ctx: Context) -> None:
    kept = []
    for c in d.get("connectors") or []:
        try:
            kept.append(_connector_w(c, ctx) if isinstance(c, dict) else c)
        except UnsupportedInVersion as exc:
            _note(ctx, f"evse {d.get('uid')}: connector {c.get('id')} left out ({exc.reason})")
    d["connectors"] = kept


def _evse_w(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    if "capabilities" in d and isinstance(d["capabilities"], list):
        d["capabilities"] = [c for c in d["capabilities"] if c in _CAPABILITIES_211]
    if "connectors" in d and d["connectors"] is not None:
        _connectors_w(d, ctx)
        if not d["connectors"]:
            raise UnsupportedInVersion("evse", f"EVSE {d.get('uid')} has no connector 2.1.1 can express")
    _geo_w(d.get("coordinates"))
    for item in d.get("status_schedule") or []:
        if isinstance(item, dict):
            _dts(item, "period_begin", "period_end")
    _dts(d, "last_updated")
    return d if patch else _prune(d)


def _location_c(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    if not patch:
        _owner(d, ctx)
    if "type" in d:
        parking = d.pop("type")
        if parking not in ("OTHER", "UNKNOWN", None):
            d["parking_type"] = parking  # the 4 shared values (anything else fails validation)
        elif patch:
            d["parking_type"] = None  # OTHER / UNKNOWN: no parking_type
    if d.get("postal_code") == "":
        d["postal_code"] = None
    _each(d, "evses", lambda e: _evse_c(e, ctx))
    if "opening_times" in d:
        d["opening_times"] = _hours_c(d["opening_times"])
    if "energy_mix" in d:
        d["energy_mix"] = _energy_mix_c(d["energy_mix"])
    if patch:
        return d
    d.setdefault("publish", True)
    _prune(d)
    if not d.get("time_zone"):
        d["time_zone"] = _derive_time_zone(d, ctx)
    return d


def _location_w(d: Obj, ctx: Context, patch: bool = False, embedded: bool = False) -> Obj:
    if d.get("publish") is False:
        if not patch and not embedded:
            raise UnsupportedInVersion("location", f"location {d.get('id')} has publish=false")
        if patch:
            _note(ctx, "location PATCH publish=false cannot be expressed in 2.1.1: dropped")
    _drop(d, "country_code", "party_id", "publish", "publish_allowed_to", "state")
    if "parking_type" in d or not patch:
        parking = d.pop("parking_type", None)
        d["type"] = parking if parking in _PARKING_SHARED else ("OTHER" if parking else "UNKNOWN")
    if isinstance(d.get("address"), str) and len(d["address"]) > 45:
        _note(ctx, f"location {d.get('id')}: address truncated to 45 characters")
        d["address"] = d["address"][:45]
    if d.get("postal_code") is None and ("postal_code" in d or not patch):
        d["postal_code"] = ""
    _geo_w(d.get("coordinates"))
    for item in d.get("related_locations") or []:
        _geo_w(item)
    if isinstance(d.get("facilities"), list):
        d["facilities"] = [f for f in d["facilities"] if f not in _FACILITIES_NEW]
    if d.get("evses") is not None:
        kept = []
        for e in d["evses"]:
            try:
                kept.append(_evse_w(e, ctx) if isinstance(e, dict) else e)
            except UnsupportedInVersion as exc:
                _note(ctx, f"location {d.get('id')}: EVSE {e.get('uid')} left out ({exc.reason})")
        d["evses"] = kept
    if "opening_times" in d:
        d["opening_times"] = _hours_w(d["opening_times"])
    if "energy_mix" in d:
        d["energy_mix"] = _energy_mix_w(d["energy_mix"])
    _dts(d, "last_updated")
    return d if patch else _prune(d)


# ------------------------------------------------------------------------------------------ tariffs (§5)

_RESTRICTION_NUMBERS = ("min_kwh", "max_kwh", "min_power", "max_power")
_RESTRICTIONS_NEW = ("min_current", "max_current", "reservation")


def _tariff_c(d: Obj, ctx: Context, owner: tuple[str, str] | None = None) -> Obj:
    _owner(d, ctx, owner)
    for element in d.get("elements") or []:
        if not isinstance(element, dict):
            continue
        for component in element.get("price_components") or []:
            if isinstance(component, dict):
                _nums(component, "price")
        if isinstance(element.get("restrictions"), dict):
            _nums(element["restrictions"], *_RESTRICTION_NUMBERS)
            _prune(element["restrictions"])
        _prune(element)
    if "energy_mix" in d:
        d["energy_mix"] = _energy_mix_c(d["energy_mix"])
    return _prune(d)


def _tariff_w(d: Obj, ctx: Context, embedded: bool = False) -> Obj:
    tariff_type = d.pop("type", None)
    if tariff_type not in (None, "REGULAR") and not embedded:
        raise UnsupportedInVersion("tariff", f"tariff {d.get('id')} has type {tariff_type}")
    _drop(d, "country_code", "party_id", "min_price", "max_price", "start_date_time", "end_date_time")
    elements = []
    for element in d.get("elements") or []:
        restrictions = element.get("restrictions") if isinstance(element, dict) else None
        if isinstance(restrictions, dict) and any(restrictions.get(k) is not None for k in _RESTRICTIONS_NEW):
            _note(ctx, f"tariff {d.get('id')}: element with current/reservation restriction left out")
            continue
        if isinstance(element, dict):
            for component in element.get("price_components") or []:
                if isinstance(component, dict):
                    component.pop("vat", None)
            if isinstance(restrictions, dict):
                _drop(restrictions, *_RESTRICTIONS_NEW)
                _prune(restrictions)
            _prune(element)
        elements.append(element)
    if not elements:
        raise UnsupportedInVersion("tariff", f"tariff {d.get('id')} has no element 2.1.1 can express")
    d["elements"] = elements
    if "energy_mix" in d:
        d["energy_mix"] = _energy_mix_w(d["energy_mix"])
    _dts(d, "last_updated")
    return _prune(d)


# ------------------------------------------------------------------------------------------ tokens (§6)


def _token_c(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    if not patch:
        _owner(d, ctx)
    _rename(d, "auth_id", "contract_id")
    return d if patch else _prune(d)


def _token_w(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    _drop(d, "country_code", "party_id", "group_id", "default_profile_type", "energy_contract")
    if d.get("type") in _TOKEN_TYPE_W:
        d["type"] = _TOKEN_TYPE_W[d["type"]]
    _rename(d, "contract_id", "auth_id")
    _dts(d, "last_updated")
    return d if patch else _prune(d)


def _location_references_c(d: Obj, ctx: Context) -> Obj:
    if d.pop("connector_ids", None):
        _note(ctx, "LocationReferences connector_ids dropped (not in 2.2.1)")
    return _prune(d)


def _location_references_w(d: Obj, ctx: Context) -> Obj:
    return _prune(d)


def _authorization_info_c(d: Obj, ctx: Context) -> Obj:
    if isinstance(d.get("location"), dict):
        d["location"] = _location_references_c(d["location"], ctx)
    token = d.get("token")
    if isinstance(token, dict):
        d["token"] = _token_c(token, ctx)
    else:
        _note(ctx, "AuthorizationInfo has no token in 2.1.1: the caller adds the Token it asked about "
                   "(cached, or derived_token())")  # fmt: skip
    return _prune(d)


def _authorization_info_w(d: Obj, ctx: Context) -> Obj:
    _drop(d, "token", "authorization_reference")
    if isinstance(d.get("location"), dict):
        d["location"] = _location_references_w(d["location"], ctx)
    return _prune(d)


def derived_token(
    uid: str, token_type: str, allowed: str, issuer: str, country_code: str, party_id: str
) -> Obj:
    """§6.2 proposal: the Token of a 2.1.1 AuthorizationInfo when none is cached for (party, uid, type)."""
    return {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "type": token_type,
        "contract_id": uid,
        "issuer": issuer,
        "valid": allowed == "ALLOWED",
        "whitelist": "NEVER",
        "last_updated": timestamp(),
    }


# ------------------------------------------------------------------------------------------ cdr_token (§8.2)


def _cdr_token(auth_id: Any, ctx: Context) -> Obj:
    """2.1.1 `auth_id` → CdrToken: our Token with that contract id, else uid := auth_id, type OTHER."""
    token = ctx.find_token(str(auth_id)) if ctx.find_token is not None else None
    if token:
        return {
            "country_code": token.get("country_code"),
            "party_id": token.get("party_id"),
            "uid": token.get("uid"),
            "type": token.get("type"),
            "contract_id": auth_id,
        }
    why = "no token with that contract_id" if ctx.find_token is not None else "no ctx.find_token"
    _note(ctx, f"cdr_token derived from auth_id {auth_id} ({why}): uid := auth_id, type := OTHER")
    cdr_token: Obj = {"uid": auth_id, "type": "OTHER", "contract_id": auth_id}
    if ctx.own_party is not None:
        cdr_token = {"country_code": ctx.own_party[0], "party_id": ctx.own_party[1], **cdr_token}
    else:
        _note(ctx, "cdr_token owner unknown (no ctx.own_party)")
    return cdr_token


def _auth_id_w(d: Obj) -> None:
    if "cdr_token" in d:
        token = d.pop("cdr_token")
        d["auth_id"] = token.get("contract_id") if isinstance(token, dict) else token
    if d.get("auth_method") == "COMMAND":
        d["auth_method"] = "AUTH_REQUEST"
    d.pop("authorization_reference", None)


# ------------------------------------------------------------------------------ charging periods (§8.4)


def _periods_c(d: Obj, ctx: Context) -> None:
    periods = []
    for period in d.get("charging_periods") or []:
        if not isinstance(period, dict):
            periods.append(period)
            continue
        dims = []
        for dim in period.get("dimensions") or []:
            if isinstance(dim, dict):
                if dim.get("type") == "FLAT":
                    _note(ctx, "CdrDimension FLAT dropped (not in 2.2.1)")
                    continue
                _nums(dim, "volume")
            dims.append(dim)
        if dims:
            periods.append({**period, "dimensions": dims})
    if "charging_periods" in d:
        d["charging_periods"] = periods


def _periods_w(d: Obj, ctx: Context) -> None:
    periods = []
    for period in d.get("charging_periods") or []:
        if not isinstance(period, dict):
            periods.append(period)
            continue
        period.pop("tariff_id", None)
        dims = [x for x in period.get("dimensions") or [] if not isinstance(x, dict) or x.get("type") in
                _DIMENSIONS_211]  # fmt: skip
        if dims:
            period["dimensions"] = dims
            _dts(period, "start_date_time")
            periods.append(period)
    if "charging_periods" in d:
        d["charging_periods"] = periods


def _synth_period(d: Obj, ctx: Context, start_key: str) -> None:
    """A CDR needs a period (`+`): synthesize ENERGY = total_energy when none is left (§8.4)."""
    if not d.get("charging_periods"):
        _note(ctx, f"cdr {d.get('id')}: no charging period left, one ENERGY period synthesized")
        d["charging_periods"] = [
            {
                "start_date_time": d.get(start_key),
                "dimensions": [{"type": "ENERGY", "volume": d.get("total_energy")}],
            }
        ]


# ------------------------------------------------------------------------------------------ sessions (§7)


def _first_evse_connector(location: Obj) -> tuple[Obj, Obj]:
    """`E = location.evses[0]`, `C = E.connectors[0]` ({} when absent) of an embedded 2.1.1 Location."""
    evses = location.get("evses") or []
    evse = evses[0] if evses and isinstance(evses[0], dict) else {}
    connectors = evse.get("connectors") or []
    connector = connectors[0] if connectors and isinstance(connectors[0], dict) else {}
    return evse, connector


def _location_ids_c(location: Any, ctx: Context) -> Obj:
    """The embedded 2.1.1 Location of a Session → `location_id`, `evse_uid`, `connector_id`."""
    if not isinstance(location, dict):
        return {"location_id": location}
    evse, connector = _first_evse_connector(location)
    if not evse or not connector:
        _note(ctx, f"location {location.get('id')}: embedded EVSE/connector missing, #NA used")
    return {
        "location_id": location.get("id"),
        "evse_uid": evse.get("uid", NA),
        "connector_id": connector.get("id", NA),
    }


def _stored_location(ctx: Context, owner: tuple[Any, Any], location_id: Any) -> Obj | None:
    if ctx.load_location is None or not owner[0] or not owner[1] or not location_id:
        return None
    stored = ctx.load_location(str(owner[0]), str(owner[1]), str(location_id))
    return copy.deepcopy(stored) if stored else None


def _find(items: Any, key: str, value: Any) -> Obj | None:
    for item in items or []:
        if isinstance(item, dict) and str(item.get(key, "")).upper() == str(value).upper():
            return item
    return None


def _session_location_w(d: Obj, ctx: Context, owner: tuple[Any, Any]) -> Obj:
    """§7 `location` →W: the stored Location reduced to the session's EVSE and connector."""
    location_id, evse_uid, connector_id = (
        d.pop("location_id", None),
        d.pop("evse_uid", None),
        d.pop("connector_id", None),
    )
    stored = _stored_location(ctx, owner, location_id)
    if stored is None:
        _note(ctx, f"session {d.get('id')}: location {location_id} not known, embedded location incomplete")
        location: Obj = {"id": location_id}
    else:
        stored = copy.deepcopy(_as_221("location", stored))
        evse = _find(stored.get("evses"), "uid", evse_uid)
        connector = _find(evse.get("connectors") if evse else None, "id", connector_id)
        if evse is not None:
            evse["connectors"] = [connector] if connector is not None else []
        stored["evses"] = [evse] if evse is not None and connector is not None else []
        location = _location_w(stored, ctx, embedded=True)
    if evse_uid in (None, NA):
        location.pop("evses", None)
    elif not location.get("evses"):
        _note(
            ctx,
            f"session {d.get('id')}: EVSE {evse_uid} / connector {connector_id} not in the stored location",
        )
        location["evses"] = [{"uid": evse_uid, "connectors": [{"id": connector_id}]}]
    return location


def _session_c(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    if not patch:
        _owner(d, ctx)
    _rename(d, "start_datetime", "start_date_time")
    _rename(d, "end_datetime", "end_date_time")
    _nums(d, "kwh")
    if "auth_id" in d:
        d["cdr_token"] = _cdr_token(d.pop("auth_id"), ctx)
    if "location" in d:
        d.update(_location_ids_c(d.pop("location"), ctx))
    if "total_cost" in d:
        d["total_cost"] = _price_c(d["total_cost"])
    _periods_c(d, ctx)
    return d if patch else _prune(d)


def _session_w(d: Obj, ctx: Context, patch: bool = False) -> Obj:
    own = ctx.own_party
    owner = (d.pop("country_code", own[0] if own else None), d.pop("party_id", own[1] if own else None))
    _rename(d, "start_date_time", "start_datetime")
    _rename(d, "end_date_time", "end_datetime")
    _auth_id_w(d)
    if any(k in d for k in ("location_id", "evse_uid", "connector_id")):
        d["location"] = _session_location_w(d, ctx, owner)
    if "total_cost" in d:
        d["total_cost"] = _price_w(d["total_cost"])
    if d.get("status") == "RESERVATION":
        d["status"] = "PENDING"
    _periods_w(d, ctx)
    _dts(d, "start_datetime", "end_datetime", "last_updated")
    return d if patch else _prune(d)


# ------------------------------------------------------------------------------------------ CDRs (§8)


def _cdr_location_c(location: Any, ctx: Context) -> Any:
    """§8.3 →C: the embedded 2.1.1 Location → CdrLocation (everything else is dropped)."""
    if not isinstance(location, dict):
        return location
    ids = _location_ids_c(location, ctx)
    evse, connector = _first_evse_connector(location)
    if evse and not evse.get("evse_id"):
        _note(ctx, f"cdr location {location.get('id')}: evse_id missing, #NA used")
    out = {
        "id": location.get("id"),
        "name": location.get("name"),
        "address": location.get("address"),
        "city": location.get("city"),
        "postal_code": location.get("postal_code") or None,
        "country": location.get("country"),
        "coordinates": location.get("coordinates"),
        "evse_uid": ids["evse_uid"],
        "evse_id": evse.get("evse_id") or NA,
        "connector_id": ids["connector_id"],
        "connector_standard": connector.get("standard", "IEC_62196_T2"),
        "connector_format": connector.get("format", "SOCKET"),
        "connector_power_type": connector.get("power_type", "AC_3_PHASE"),
    }
    return _prune(out)


def _cdr_location_w(d: Obj, ctx: Context, owner: tuple[Any, Any]) -> Any:
    """§8.3 →W: CdrLocation → a 2.1.1 Location with one EVSE and one connector."""
    cdr_location = d.pop("cdr_location")
    if not isinstance(cdr_location, dict):
        return cdr_location
    cl = dict(cdr_location)
    stored = _stored_location(ctx, owner, cl.get("id"))
    stored_evse = _find(stored.get("evses"), "uid", cl.get("evse_uid")) if stored else None
    stored_conn = _find(stored_evse.get("connectors"), "id", cl.get("connector_id")) if stored_evse else None
    if stored is None:
        _note(ctx, f"cdr {d.get('id')}: location {cl.get('id')} not stored; type UNKNOWN, voltage/amperage 0")
    stamp = _dt(d.get("start_date_time"))
    parking = stored.get("parking_type") if stored else None
    tariff_id = next(
        (p.get("tariff_id") for p in d.get("charging_periods") or [] if isinstance(p, dict)), None
    )
    if tariff_id is None and d.get("tariffs") and isinstance(d["tariffs"][0], dict):
        tariff_id = d["tariffs"][0].get("id")
    power_type = cl.pop("connector_power_type", None)
    connector = {
        "id": cl.pop("connector_id", None),
        "standard": cl.pop("connector_standard", None),
        "format": cl.pop("connector_format", None),
        "power_type": _POWER_W.get(power_type, power_type),
        "voltage": stored_conn.get("max_voltage", 0) if stored_conn else 0,
        "amperage": stored_conn.get("max_amperage", 0) if stored_conn else 0,
        "tariff_id": tariff_id,
        "last_updated": stamp,
    }
    evse_uid, evse_id = cl.pop("evse_uid", None), cl.pop("evse_id", None)
    evse = {
        "uid": evse_uid,
        "evse_id": None if evse_id == NA else evse_id,
        "status": "UNKNOWN",
        "connectors": [_prune(connector)],
        "last_updated": stamp,
    }
    cl.pop("state", None)
    location = {
        **cl,
        "type": parking if parking in _PARKING_SHARED else ("OTHER" if parking else "UNKNOWN"),
        "postal_code": cl.get("postal_code") or "",
        "coordinates": _geo_w(cl.get("coordinates")),
        "evses": [] if evse_uid in (None, NA) else [_prune(evse)],
        "last_updated": stamp,
    }
    return _prune(location)


_CDR_DROPPED = (
    "session_id", "signed_data", "total_fixed_cost", "total_energy_cost", "total_time_cost",
    "total_parking_cost", "total_reservation_cost", "invoice_reference_id", "credit", "credit_reference_id",
    "home_charging_compensation",
)  # fmt: skip


def _cdr_c(d: Obj, ctx: Context) -> Obj:
    _owner(d, ctx)
    _rename(d, "stop_date_time", "end_date_time")
    if "auth_id" in d:
        d["cdr_token"] = _cdr_token(d.pop("auth_id"), ctx)
    if "location" in d:
        d["cdr_location"] = _cdr_location_c(d.pop("location"), ctx)
    owner = (d.get("country_code"), d.get("party_id"))
    _each(d, "tariffs", lambda t: _tariff_c(t, ctx, owner if owner[0] and owner[1] else None))
    _nums(d, "total_energy", "total_time", "total_parking_time")
    if "total_cost" in d:
        d["total_cost"] = _price_c(d["total_cost"])
    _periods_c(d, ctx)
    _synth_period(d, ctx, "start_date_time")
    return _prune(d)


def _cdr_w(d: Obj, ctx: Context) -> Obj:
    if d.get("credit"):
        raise UnsupportedInVersion("cdr", f"CDR {d.get('id')} is a Credit CDR")
    own = ctx.own_party
    owner = (d.pop("country_code", own[0] if own else None), d.pop("party_id", own[1] if own else None))
    _drop(d, *_CDR_DROPPED)
    _auth_id_w(d)
    if "cdr_location" in d:
        d["location"] = _cdr_location_w(d, ctx, owner)

    def tariff(t: Obj) -> Obj | None:
        try:
            return _tariff_w(t, ctx, embedded=True)
        except UnsupportedInVersion as exc:
            _note(ctx, f"cdr {d.get('id')}: tariff {t.get('id')} left out ({exc.reason})")
            return None

    _each(d, "tariffs", tariff)
    if "total_cost" in d:
        d["total_cost"] = _price_w(d["total_cost"])
    _periods_w(d, ctx)
    _synth_period(d, ctx, "start_date_time")
    _rename(d, "end_date_time", "stop_date_time")
    _dts(d, "start_date_time", "stop_date_time", "last_updated")
    return _prune(d)


# ------------------------------------------------------------------------------------------ credentials (§3)


def _credentials_c(d: Obj, ctx: Context) -> Obj:
    hint = d.pop("role", None)
    if "roles" in d and not any(k in d for k in ("business_details", "party_id", "country_code")):
        return _prune(d)  # already in the 2.2.1 shape
    role = ctx.partner_party[2] if ctx.partner_party is not None else hint
    if not role:
        _note(ctx, "credentials: role unknown (no ctx.partner_party, no role hint)")
    entry = {
        "role": str(role).upper() if role else None,
        "business_details": d.pop("business_details", None),
        "party_id": d.pop("party_id", None),
        "country_code": d.pop("country_code", None),
    }
    d["roles"] = [_prune(entry)]
    return _prune(d)


def _credentials_w(d: Obj, ctx: Context) -> Obj:
    roles = [r for r in d.pop("roles", None) or [] if isinstance(r, dict)]
    chosen = roles[0] if roles else {}
    if ctx.own_party is not None:
        cc, pid, role = (str(x).upper() for x in ctx.own_party)
        exact = [r for r in roles if (str(r.get("country_code")).upper(), str(r.get("party_id")).upper(),
                                      str(r.get("role")).upper()) == (cc, pid, role)]  # fmt: skip
        same_role = [r for r in roles if str(r.get("role")).upper() == role]
        chosen = (exact or same_role or [chosen])[0]
    if len(roles) > 1:
        _note(ctx, f"credentials: {len(roles) - 1} role(s) dropped, sent {chosen.get('role')} only")
    for key in ("business_details", "party_id", "country_code"):
        if key in chosen:
            d[key] = chosen[key]
    return _prune(d)


# ------------------------------------------------------------------------------------------ commands (§9)


def _command_token_c(d: Obj, ctx: Context) -> Obj:
    if isinstance(d.get("token"), dict):
        d["token"] = _token_c(d["token"], ctx)
    return _prune(d)


def _command_token_w(d: Obj, ctx: Context) -> Obj:
    if isinstance(d.get("token"), dict):
        d["token"] = _token_w(d["token"], ctx)
    d.pop("authorization_reference", None)
    return _prune(d)


def _reserve_now_c(d: Obj, ctx: Context) -> Obj:
    if isinstance(d.get("reservation_id"), int) and not isinstance(d["reservation_id"], bool):
        d["reservation_id"] = str(d["reservation_id"])
    return _command_token_c(d, ctx)


def _reserve_now_w(d: Obj, ctx: Context) -> Obj:
    rid = d.get("reservation_id")
    text = str(rid).strip() if isinstance(rid, str | int) and not isinstance(rid, bool) else ""
    if not re.fullmatch(r"-?[0-9]{1,10}", text) or not -(2**31) <= int(text) < 2**31:
        raise UnsupportedInVersion("reserve_now", f"reservation_id {rid!r} is not a 32-bit integer")
    d["reservation_id"] = int(text)
    _dts(d, "expiry_date")
    return _command_token_w(d, ctx)


def _start_session_w(d: Obj, ctx: Context) -> Obj:
    if d.pop("connector_id", None) is not None:
        _note(ctx, "StartSession connector_id dropped (not in 2.1.1)")
    return _command_token_w(d, ctx)


def _command_timeout() -> int:
    try:
        return int(os.environ.get("OCPI_COMMAND_TIMEOUT_V211", "60"))
    except ValueError:
        return 60


def _command_response_c(d: Obj, ctx: Context) -> Obj:
    result = d.get("result")
    if result == "TIMEOUT":
        _note(ctx, "CommandResponse TIMEOUT read as REJECTED; record a final CommandResult TIMEOUT")
        d["result"] = "REJECTED"
        d["message"] = [{"language": "en", "text": "TIMEOUT"}]
    elif result not in _RESPONSE_TYPES:
        _note(ctx, f"CommandResponse result {result!r} unknown, read as REJECTED")
        d["result"] = "REJECTED"
    d.setdefault("timeout", _command_timeout())
    return _prune(d)


def _command_response_w(d: Obj, ctx: Context) -> Obj:
    _drop(d, "timeout", "message")
    return _prune(d)


def _command_result_c(d: Obj, ctx: Context) -> Obj:
    result = d.get("result")
    if result == "UNKNOWN_SESSION":
        d["result"] = "REJECTED"
        d["message"] = [{"language": "en", "text": "UNKNOWN_SESSION"}]
    elif result not in _RESULT_TYPES_211:
        _note(ctx, f"command result {result!r} unknown, read as REJECTED")
        d["result"] = "REJECTED"
    return _prune(d)


def _command_result_w(d: Obj, ctx: Context) -> Obj:
    if d.get("result") not in _RESULT_TYPES_211:
        _note(ctx, f"CommandResult {d.get('result')} sent as REJECTED")
        d["result"] = "REJECTED"
    d.pop("message", None)
    return _prune(d)


# ------------------------------------------------------------------------------------------ dispatch


def _patch_stamp(fn: Callable[[Obj, Context, bool], Obj]) -> Callable[[Obj, Context], Obj]:
    """A 2.1.1 PATCH body need not have `last_updated`; the canonical one must (§1.8, proposal)."""

    def convert(d: Obj, ctx: Context) -> Obj:
        out = fn(d, ctx, True)
        if "last_updated" not in out:
            out["last_updated"] = timestamp()
            _note(ctx, "PATCH without last_updated: set to the time of receipt")
        return out

    return convert


def _unsupported(kind: str) -> Callable[[Obj, Context], Obj]:
    def convert(d: Obj, ctx: Context) -> Obj:
        raise UnsupportedInVersion(kind, f"there is no {kind} in OCPI 2.1.1 (docs/versions-2.1.1.md §9.1)")

    return convert


def _identity(d: Obj, ctx: Context) -> Obj:
    return _prune(d)


_TO: dict[str, Callable[[Obj, Context], Obj]] = {
    "location": lambda d, c: _location_c(d, c),
    "location_patch": _patch_stamp(_location_c),
    "evse": lambda d, c: _evse_c(d, c),
    "evse_patch": _patch_stamp(_evse_c),
    "connector": lambda d, c: _connector_c(d, c),
    "connector_patch": _patch_stamp(_connector_c),
    "tariff": lambda d, c: _tariff_c(d, c),
    "token": lambda d, c: _token_c(d, c),
    "token_patch": _patch_stamp(_token_c),
    "authorization_info": _authorization_info_c,
    "location_references": _location_references_c,
    "session": lambda d, c: _session_c(d, c),
    "session_patch": _patch_stamp(_session_c),
    "cdr": _cdr_c,
    "credentials": _credentials_c,
    "start_session": _command_token_c,
    "stop_session": _identity,
    "reserve_now": _reserve_now_c,
    "cancel_reservation": _unsupported("cancel_reservation"),
    "unlock_connector": _identity,
    "command_response": _command_response_c,
    "command_result": _command_result_c,
}

_FROM: dict[str, Callable[[Obj, Context], Obj]] = {
    "location": lambda d, c: _location_w(d, c),
    "location_patch": lambda d, c: _location_w(d, c, patch=True),
    "evse": lambda d, c: _evse_w(d, c),
    "evse_patch": lambda d, c: _evse_w(d, c, patch=True),
    "connector": lambda d, c: _connector_w(d, c),
    "connector_patch": lambda d, c: _connector_w(d, c, patch=True),
    "tariff": lambda d, c: _tariff_w(d, c),
    "token": lambda d, c: _token_w(d, c),
    "token_patch": lambda d, c: _token_w(d, c, patch=True),
    "authorization_info": _authorization_info_w,
    "location_references": _location_references_w,
    "session": lambda d, c: _session_w(d, c),
    "session_patch": lambda d, c: _session_w(d, c, patch=True),
    "cdr": _cdr_w,
    "credentials": _credentials_w,
    "start_session": _start_session_w,
    "stop_session": _identity,
    "reserve_now": _reserve_now_w,
    "cancel_reservation": _unsupported("cancel_reservation"),
    "unlock_connector": _identity,
    "command_response": _command_response_w,
    "command_result": _command_result_w,
}


def _convert(
    table: dict[str, Callable[[Obj, Context], Obj]], kind: str, obj: Obj, ctx: Context | None
) -> Obj:
    fn = table.get(kind)
    if fn is None:
        raise ValueError(f"unknown object kind {kind!r}")
    if not isinstance(obj, dict):
        raise TypeError(f"{kind}: expected a JSON object, got {type(obj).__name__}")
    return fn(copy.deepcopy(obj), ctx if ctx is not None else Context())


def to_canonical(kind: str, obj: Obj, ctx: Context) -> Obj:
    """2.1.1 wire form → canonical (2.2.1) form."""
    return _convert(_TO, kind, obj, ctx)


def _as_221(kind: str, obj: Obj) -> Obj:
    """What a 2.2.1 partner would get (`v230.strip_for_221`): only 2.2.1 fields, no 2.3.0 fields,
    sidecars or extension fields (G2), tax-included tariff prices as net prices. 2.1.1 is mapped
    from that, so it never gets more than 2.2.1 does."""
    try:
        from shared.versions import v230
    except ImportError:  # pragma: no cover - before 2.3.0 support exists
        return obj
    if kind in _FROM and kind != "cancel_reservation" and isinstance(obj, dict):
        if not v230.sendable_to_221(kind, obj):
            raise UnsupportedInVersion(kind, "a 2.3.0 EMAID token is not sent to 2.1.1/2.2.1 partners")
        return v230.strip_for_221(kind, obj)
    return obj


def from_canonical(kind: str, obj: Obj, ctx: Context) -> Obj:
    """Canonical (2.2.1) form → 2.1.1 wire form. Raises `UnsupportedInVersion` for what 2.1.1 cannot
    carry or must not receive."""
    return _convert(_FROM, kind, _as_221(kind, obj), ctx)


def sendable(kind: str, obj: Obj, now: datetime | None = None) -> bool:
    """Whether a canonical object may be sent to a 2.1.1 partner at all (filter lists with it before
    `from_canonical`). With `now`, a Tariff whose `end_date_time` has passed is not sent (§5)."""
    if kind == "tariff" and now is not None and obj.get("end_date_time"):
        try:
            if parse_datetime(str(obj["end_date_time"])) <= now:
                return False
        except ValueError:
            pass
    try:
        from_canonical(kind, obj, Context())
    except UnsupportedInVersion:
        return False
    return True
