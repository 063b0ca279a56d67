"""The tariff engine: prices charging periods with OCPI 2.2.1 and 2.3.0 tariffs (mod_tariffs, mod_cdrs).

Pure: no AWS, no web framework, no clock. Input is JSON-like dicts (a CDR or a Session and one or
more Tariffs), output a `PriceResult` with every cost total of the CDR and a breakdown line per
period and dimension that explains each amount. Decimal throughout; the only rounding is in
`PriceResult.to_json` (money to `MONEY_PLACES` decimals, half up), because a JSON number must be
finite while exact quotients (price per hour x seconds / 3600) can be repeating decimals. OCPI itself
leaves rounding to contracts and law (mod_tariffs 11.3.1, NOTE on price rounding).

Rules, each where the spec states it:

- Time volumes are hours in JSON; they are taken to whole seconds (nearest) before anything else,
  the unit of the time dimensions (`_seconds`). Energy stays exact (kWh; step_size rounds up Wh).
- Periods (mod_cdrs ChargingPeriod): a period ends where the next starts, the last at the session's
  end. The CPO starts a new period at every event that can change the active price component, so
  restrictions are evaluated at the period's start. A period with none of TIME, PARKING_TIME,
  RESERVATION_TIME counts its whole duration as charging TIME (a CDR that lists only energy).
- Element choice (mod_tariffs 11.3.1): per period and per dimension, the first element holding a
  component of that dimension whose restrictions all match (logical AND). No match: no cost for
  that dimension in that period.
- Restrictions (mod_tariffs TariffRestrictions): start/end_time, start/end_date and day_of_week
  in the location's local time (IANA zone: daylight saving follows from the instant, durations
  are elapsed time); end_time 00:00 is midnight, end < start wraps past midnight; start_date
  inclusive, end_date exclusive; min_kwh inclusive and max_kwh exclusive against the energy
  charged before the period; min_duration inclusive, max_duration exclusive against the seconds
  since the charging session started; current and power against the period's CURRENT/POWER
  dimension, else MIN_* (for min_) or MAX_* (for max_), else power as ENERGY / TIME. A value the
  period does not give makes that restriction not match.
- Reservations (mod_tariffs ReservationRestrictionType, examples 15-18): periods with a
  RESERVATION_TIME dimension form the reservation; only elements with a `reservation`
  restriction price them (FLAT, and TIME for the reserved time), and such elements price nothing
  else. A reservation is expired when no charging period follows it: RESERVATION_EXPIRES elements
  are then searched first (the NOTE under the enum), then RESERVATION elements.
- FLAT: billed once for the reservation and once for the charging session, at the first period
  of each where a FLAT component is active (example 16 bills both the reservation fee and the
  start fee).
- step_size (mod_cdrs "step_size"): once per session for ENERGY: the billed total (Wh) is rounded
  up to a multiple of the step of the last ENERGY line's component; and once for TIME and
  PARKING_TIME combined: only the kind of the last time-based line (charging TIME, PARKING_TIME,
  or reservation TIME) has its session total rounded up, with that line's step (seconds). The
  extra goes to that last line (mod_tariffs "switching to Free-of-Charge Tariff Element"). For
  charging, parking, then charging again, the charging TIME is rounded: mod_cdrs says the step
  "is only taken into account for the total parking duration" when both are used, but explains it
  by "as it is followed by another time based period"; we follow the explanation (last one wins).
- VAT per component (mod_tariffs PriceComponent.vat): incl = excl x (1 + vat / 100). A component
  without `vat` has no VAT applicable, which is not 0 %: its line has no incl amount; a total has an
  `incl_vat` when at least one of its lines has a VAT (lines without VAT then count their excl).
- min_price / max_price (mod_tariffs Tariff, NOTEs): bound `total_cost`, excl and incl VAT
  separately; the sub-totals are left as computed (the breakdown carries the adjustment). Read as a
  2.2.1 Price `{excl_vat, incl_vat?}` (the canonical form) or a 2.3.0 PriceLimit
  `{before_taxes, after_taxes?}`.
- Taxes (OCPI 2.3.0 `Tariff.tax_included`, docs/versions-2.3.0.md § 17; absent = NO, the 2.2.1
  meaning; `step_size`, restrictions and element choice do not change in 2.3.0). Per line, `a` =
  price x billed quantity: NO: before = a, VAT = a x vat/100 (no vat: no VAT applicable, or the
  caller's `tax_rates` on a); N/A: before = after = a, no taxes, any vat ignored; YES: after = a,
  before = a / (1 + vat/100), VAT = a - before (no vat: before = a / (1 + sum of `tax_rates`),
  each rate's tax on before, the last taking the residual; without rates the before-tax amount is
  unknown: a PricingError unless `allow_unknown_before_taxes`, then `excl_vat` is None). Every
  Price also carries `taxes`, one TaxAmount per (name, percentage): VAT at each component's vat, or
  the `tax_rates`, so `incl_vat = excl_vat + sum(taxes)`. A clamped after-tax total scales the
  taxes to fit. `to_json` writes `taxes` (canonical Price: beside excl/incl_vat) with
  `tax_detail` (default: when a tariff carries `tax_included` or a PriceLimit, or rates are given),
  rounded so that the rounded amounts still add up (the last one takes the residual).
- Validity (Tariff.start_date_time / end_date_time): a tariff prices a period that starts in
  [start_date_time, end_date_time). A period names its tariff with `tariff_id`; when that tariff
  is not given or not valid, the first valid tariff given prices it (noted in `notes`).
- Sub-totals (mod_cdrs CDR object): total_fixed_cost = FLAT outside the reservation;
  total_reservation_cost = everything of the reservation (its FLAT included); total_time_cost =
  charging TIME; total_parking_cost = PARKING_TIME; total_energy_cost = ENERGY.
"""

from __future__ import annotations

import dataclasses
import decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.models.types import parse_datetime

MONEY_PLACES = 4
QUANTITY_PLACES = 6

FLAT = "FLAT"
ENERGY = "ENERGY"
TIME = "TIME"
PARKING_TIME = "PARKING_TIME"
DIMENSIONS = (FLAT, ENERGY, TIME, PARKING_TIME)
RESERVATION_DIMENSIONS = (FLAT, TIME)
RESERVATION = "RESERVATION"
RESERVATION_EXPIRES = "RESERVATION_EXPIRES"
DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
TOTALS = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "total_reservation_cost",
)

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
_HOUR = Decimal(3600)
_THOUSAND = Decimal(1000)
_DAY_SECONDS = 86400
_MILLION = Decimal(1_000_000)
_INF = float("inf")
# Enough digits that a month of per-second quantities times any price stays exact until the last
# division by 3600 (the only inexact step).
_CONTEXT = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)


class PricingError(ValueError):
    """Input the engine cannot price: missing or malformed fields, currency mismatch, unknown zone."""


class TaxAmount(NamedTuple):
    """One tax of a Price (OCPI 2.3.0 types § TaxAmount)."""

    name: str
    percentage: Decimal | None
    amount: Decimal


class Price(NamedTuple):
    """A cost: `excl_vat` is before taxes (None only for a tax-included price whose split is
    unknown), `incl_vat` after taxes (None: no VAT/tax known), `taxes` what makes the difference."""

    excl_vat: Decimal | None
    incl_vat: Decimal | None
    taxes: tuple[TaxAmount, ...] = ()


TAX_INCLUDED = ("YES", "NO", "N/A")


# ----------------------------------------------------------------------------- compiled input
@dataclass(frozen=True, slots=True)
class Component:
    dimension: str
    price: Decimal
    vat: Decimal | None
    step_size: int


@dataclass(frozen=True, slots=True)
class Restrictions:
    start_time: int | None = None  # seconds of the local day
    end_time: int | None = None
    start_date: str | None = None  # YYYY-MM-DD compares as text
    end_date: str | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    days: frozenset[str] | None = None
    reservation: str | None = None
    local: bool = False  # needs the local time


@dataclass(frozen=True, slots=True)
class Element:
    index: int
    components: dict[str, Component]  # the first component of each dimension in the element
    restrictions: Restrictions | None


@dataclass(frozen=True, slots=True)
class CompiledTariff:
    id: str
    currency: str
    elements: tuple[Element, ...]
    min_price: Price | None
    max_price: Price | None
    start: datetime | None
    end: datetime | None
    tax_included: str = "NO"
    v230: bool = False  # written the 2.3.0 way (tax_included, PriceLimit): Prices with tax detail

    def valid_at(self, instant: datetime) -> bool:
        return (self.start is None or instant >= self.start) and (self.end is None or instant < self.end)


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise PricingError(f"{what} must be a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))  # the shortest text that reads back: 0.25, not 0.2500000001
    elif isinstance(value, str):
        try:
            result = Decimal(value)
        except decimal.InvalidOperation:
            raise PricingError(f"{what} must be a number, got {value!r}") from None
    else:
        raise PricingError(f"{what} must be a number")
    if not result.is_finite():
        raise PricingError(f"{what} must be a finite number")
    return result


def _opt_decimal(value: Any, what: str) -> Decimal | None:
    return None if value is None else _decimal(value, what)


def _time_of_day(value: Any, what: str, *, end: bool) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise PricingError(f"{what} must be HH:MM")
    try:
        hours, minutes = int(value[:2]), int(value[3:])
    except ValueError:
        raise PricingError(f"{what} must be HH:MM") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise PricingError(f"{what} must be HH:MM")
    seconds = hours * 3600 + minutes * 60
    # "To stop at end of the day use: 00:00" (TariffRestrictions.end_time).
    return _DAY_SECONDS if end and seconds == 0 else seconds


def _date(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except (TypeError, ValueError):
        raise PricingError(f"{what} must be YYYY-MM-DD") from None
    return value


def _price(value: Any, what: str) -> Price | None:
    """A min/max bound: a 2.2.1 Price (the canonical form) or a 2.3.0 PriceLimit."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise PricingError(f"{what} must be a Price object")
    if "excl_vat" not in value and "before_taxes" in value:
        excl = _decimal(value.get("before_taxes"), f"{what}.before_taxes")
        return Price(excl, _opt_decimal(value.get("after_taxes"), f"{what}.after_taxes"))
    excl = _decimal(value.get("excl_vat"), f"{what}.excl_vat")
    return Price(excl, _opt_decimal(value.get("incl_vat"), f"{what}.incl_vat"))


def _restrictions(raw: Any, where: str) -> Restrictions | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise PricingError(f"{where}.restrictions must be an object")
    days = raw.get("day_of_week")
    if days is not None:
        if not isinstance(days, list) or any(d not in DAYS for d in days):
            raise PricingError(f"{where}.restrictions.day_of_week must list DayOfWeek values")
        days = frozenset(days) if days else None
    reservation = raw.get("reservation")
    if reservation is not None and reservation not in (RESERVATION, RESERVATION_EXPIRES):
        raise PricingError(f"{where}.restrictions.reservation must be RESERVATION or RESERVATION_EXPIRES")

    def num(name: str) -> Decimal | None:
        return _opt_decimal(raw.get(name), f"{where}.restrictions.{name}")

    def seconds(name: str) -> int | None:
        value = num(name)
        return None if value is None else int(value)

    r = Restrictions(
        start_time=_time_of_day(raw.get("start_time"), f"{where}.restrictions.start_time", end=False),
        end_time=_time_of_day(raw.get("end_time"), f"{where}.restrictions.end_time", end=True),
        start_date=_date(raw.get("start_date"), f"{where}.restrictions.start_date"),
        end_date=_date(raw.get("end_date"), f"{where}.restrictions.end_date"),
        min_kwh=num("min_kwh"),
        max_kwh=num("max_kwh"),
        min_current=num("min_current"),
        max_current=num("max_current"),
        min_power=num("min_power"),
        max_power=num("max_power"),
        min_duration=seconds("min_duration"),
        max_duration=seconds("max_duration"),
        days=days,
        reservation=reservation,
    )
    local = r.start_time is not None or r.end_time is not None or r.start_date or r.end_date or r.days
    return dataclasses.replace(r, local=bool(local))


def compile_tariff(raw: Mapping[str, Any] | CompiledTariff) -> CompiledTariff:
    """A tariff (the JSON object of mod_tariffs) in the form the engine walks; a compiled tariff is
    returned as is, so callers pricing many CDRs with one tariff compile it once."""
    if isinstance(raw, CompiledTariff):
        return raw
    if not isinstance(raw, Mapping):
        raise PricingError("a tariff must be a JSON object")
    if isinstance(raw.get("data"), Mapping) and "elements" not in raw:
        raw = raw["data"]  # a response envelope, as the spec's example files are
    elements_raw = raw.get("elements")
    if not isinstance(elements_raw, list) or not elements_raw:
        raise PricingError("tariff.elements must be a non-empty list")
    elements = []
    for i, element in enumerate(elements_raw):
        where = f"tariff.elements[{i}]"
        if not isinstance(element, Mapping) or not isinstance(element.get("price_components"), list):
            raise PricingError(f"{where}.price_components must be a list")
        components: dict[str, Component] = {}
        for j, pc in enumerate(element["price_components"]):
            if not isinstance(pc, Mapping) or pc.get("type") not in DIMENSIONS:
                raise PricingError(f"{where}.price_components[{j}].type must be a TariffDimensionType")
            step = _decimal(pc.get("step_size", 1), f"{where}.price_components[{j}].step_size")
            if step < 0 or step != step.to_integral_value():
                raise PricingError(f"{where}.price_components[{j}].step_size must be a whole number >= 0")
            components.setdefault(
                pc["type"],
                Component(
                    pc["type"],
                    _decimal(pc.get("price"), f"{where}.price_components[{j}].price"),
                    _opt_decimal(pc.get("vat"), f"{where}.price_components[{j}].vat"),
                    int(step),
                ),
            )
        elements.append(Element(i, components, _restrictions(element.get("restrictions"), where)))
    currency = raw.get("currency")
    if not isinstance(currency, str) or not currency:
        raise PricingError("tariff.currency is required")
    tax_included = raw.get("tax_included")
    if tax_included is not None and tax_included not in TAX_INCLUDED:
        raise PricingError("tariff.tax_included must be YES, NO or N/A")
    limits = [raw.get(name) for name in ("min_price", "max_price")]
    return CompiledTariff(
        id=str(raw.get("id") or ""),
        currency=currency.upper(),
        elements=tuple(elements),
        min_price=_price(raw.get("min_price"), "tariff.min_price"),
        max_price=_price(raw.get("max_price"), "tariff.max_price"),
        start=_instant(raw.get("start_date_time"), "tariff.start_date_time", optional=True),
        end=_instant(raw.get("end_date_time"), "tariff.end_date_time", optional=True),
        tax_included=tax_included or "NO",
        v230=tax_included is not None or any(isinstance(v, Mapping) and "before_taxes" in v for v in limits),
    )


def _instant(value: Any, what: str, *, optional: bool = False) -> datetime | None:
    if value is None and optional:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise PricingError(f"{what}: {exc}") from None


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PricingError(f"unknown time zone {name!r}") from None


# ----------------------------------------------------------------------------- periods
@dataclass(slots=True)
class _Period:
    index: int
    start: datetime
    end: datetime
    seconds: Decimal
    dims: dict[str, Decimal]
    tariff_id: str | None
    reservation: bool
    local: datetime | None = None
    energy_before: Decimal = _ZERO
    session_seconds: Decimal = _ZERO


def _periods(raw_periods: Any, end: datetime) -> list[_Period]:
    if not isinstance(raw_periods, list) or not raw_periods:
        raise PricingError("charging_periods must be a non-empty list")
    parsed = []
    for i, raw in enumerate(raw_periods):
        if not isinstance(raw, dict | Mapping):
            raise PricingError(f"charging_periods[{i}] must be an object")
        try:
            start = parse_datetime(raw.get("start_date_time"))
        except ValueError as exc:
            raise PricingError(f"charging_periods[{i}].start_date_time: {exc}") from None
        dims: dict[str, Decimal] = {}
        dimensions = raw.get("dimensions")
        if not isinstance(dimensions, list):
            raise PricingError(f"charging_periods[{i}].dimensions must be a list")
        for j, dim in enumerate(dimensions):
            if not isinstance(dim, dict | Mapping) or not isinstance(dim.get("type"), str):
                raise PricingError(f"charging_periods[{i}].dimensions[{j}] must have a type")
            volume = dim.get("volume")
            kind = type(volume)
            # Fast paths for what JSON parsers hand over; everything else is checked by _decimal.
            if kind is float and volume == volume and volume not in (_INF, -_INF):
                volume = Decimal(repr(volume))
            elif kind is int:
                volume = Decimal(volume)
            elif kind is not Decimal or not volume.is_finite():
                volume = _decimal(volume, f"charging_periods[{i}].dimensions[{j}].volume")
            dims[dim["type"]] = dims[dim["type"]] + volume if dim["type"] in dims else volume
        tariff_id = raw.get("tariff_id")
        parsed.append((start, i, dims, str(tariff_id).upper() if tariff_id else None))
    parsed.sort(key=lambda p: (p[0], p[1]))  # time order; a stable sort keeps equal starts as sent
    periods = []
    for n, (start, i, dims, tariff_id) in enumerate(parsed):
        stop = parsed[n + 1][0] if n + 1 < len(parsed) else end
        if stop < start:
            raise PricingError(f"charging_periods[{i}] starts after the session's end")
        delta = stop - start
        seconds = Decimal(delta.days * _DAY_SECONDS + delta.seconds)
        if delta.microseconds:
            seconds += Decimal(delta.microseconds) / _MILLION
        periods.append(_Period(i, start, stop, seconds, dims, tariff_id, "RESERVATION_TIME" in dims))
    return periods


# ----------------------------------------------------------------------------- matching
def _measure(period: _Period, average: str, bound: str) -> Decimal | None:
    if average in period.dims:
        return period.dims[average]
    if bound in period.dims:
        return period.dims[bound]
    return None


def _power(period: _Period, bound: str) -> Decimal | None:
    value = _measure(period, "POWER", bound)
    if value is not None:
        return value
    hours = period.dims.get(TIME)
    energy = period.dims.get(ENERGY)
    if hours and energy is not None and hours > 0:
        return _CONTEXT.divide(energy, hours)
    return None


def _matches(r: Restrictions | None, p: _Period, expired: bool) -> bool:
    if r is None:
        return not p.reservation
    if r.reservation is None:
        if p.reservation:
            return False
    else:
        if not p.reservation:
            return False
        if r.reservation == RESERVATION_EXPIRES and not expired:
            return False
    if r.local:
        local = p.local
        assert local is not None
        if r.start_time is not None or r.end_time is not None:
            t = local.hour * 3600 + local.minute * 60 + local.second
            lo = r.start_time if r.start_time is not None else 0
            hi = r.end_time if r.end_time is not None else _DAY_SECONDS
            if lo < hi:
                if not lo <= t < hi:
                    return False
            elif lo > hi and not (t >= lo or t < hi):  # wraps past midnight
                return False
        if r.start_date is not None or r.end_date is not None:
            day = f"{local.year:04d}-{local.month:02d}-{local.day:02d}"
            if r.start_date is not None and day < r.start_date:
                return False
            if r.end_date is not None and day >= r.end_date:
                return False
        if r.days is not None and DAYS[local.weekday()] not in r.days:
            return False
    if r.min_kwh is not None and p.energy_before < r.min_kwh:
        return False
    if r.max_kwh is not None and p.energy_before >= r.max_kwh:
        return False
    if r.min_duration is not None and p.session_seconds < r.min_duration:
        return False
    if r.max_duration is not None and p.session_seconds >= r.max_duration:
        return False
    if r.min_current is not None:
        value = _measure(p, "CURRENT", "MIN_CURRENT")
        if value is None or value < r.min_current:
            return False
    if r.max_current is not None:
        value = _measure(p, "CURRENT", "MAX_CURRENT")
        if value is None or value >= r.max_current:
            return False
    if r.min_power is not None:
        value = _power(p, "MIN_POWER")
        if value is None or value < r.min_power:
            return False
    if r.max_power is not None:
        value = _power(p, "MAX_POWER")
        if value is None or value >= r.max_power:
            return False
    return True


def _active(
    tariff: CompiledTariff, p: _Period, dimension: str, expired: bool
) -> tuple[Element, Component] | None:
    elements = tariff.elements
    if p.reservation and expired:
        # NOTE under ReservationRestrictionType: an expired reservation is priced by the
        # RESERVATION_EXPIRES element first.
        expires = [
            e for e in elements if e.restrictions and e.restrictions.reservation == RESERVATION_EXPIRES
        ]
        elements = (*expires, *(e for e in elements if all(e is not x for x in expires)))
    for element in elements:
        component = element.components.get(dimension)
        if component is not None and _matches(element.restrictions, p, expired):
            return element, component
    return None


# ----------------------------------------------------------------------------- result
@dataclass(slots=True)
class Line:
    """One priced quantity: a dimension of a period under one price component."""

    period_index: int
    dimension: str
    reservation: bool
    quantity: Decimal  # kWh for ENERGY, seconds for TIME and PARKING_TIME, 1 for FLAT
    price: Decimal
    vat: Decimal | None
    step_size: int
    tariff_id: str
    element_index: int
    step_extra: Decimal = _ZERO
    cost_excl: Decimal | None = _ZERO  # before taxes (None: a tax-included price, split unknown)
    cost_incl: Decimal | None = None  # after taxes (None: no VAT applicable or tax unknown)
    tax_included: str = "NO"
    taxes: tuple[TaxAmount, ...] = ()

    @property
    def category(self) -> str:
        if self.reservation:
            return "total_reservation_cost"
        return {
            FLAT: "total_fixed_cost",
            ENERGY: "total_energy_cost",
            TIME: "total_time_cost",
            PARKING_TIME: "total_parking_cost",
        }[self.dimension]

    def to_json(self, *, tax_detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "period_index": self.period_index,
            "dimension": self.dimension,
            "reservation": self.reservation,
            "quantity": _text(self.quantity),
            "unit": {FLAT: "1", ENERGY: "kWh", TIME: "s", PARKING_TIME: "s"}[self.dimension],
            "step_extra": _text(self.step_extra),
            "step_size": self.step_size,
            "price": _text(self.price),
            "vat": None if self.vat is None else _text(self.vat),
            "cost_excl_vat": None if self.cost_excl is None else _text(self.cost_excl),
            "cost_incl_vat": None if self.cost_incl is None else _text(self.cost_incl),
            "tariff_id": self.tariff_id,
            "element_index": self.element_index,
        }
        if tax_detail:
            out["tax_included"] = self.tax_included
            out["taxes"] = [_tax_text(t) for t in self.taxes]
        return out


def _tax_text(tax: TaxAmount) -> dict[str, Any]:
    return {
        "name": tax.name,
        "percentage": None if tax.percentage is None else _text(tax.percentage),
        "amount": _text(tax.amount),
    }


def _text(value: Decimal) -> str:
    """Exact text of a Decimal for the breakdown (no exponent, no trailing zeros)."""
    text = format(value.normalize(_CONTEXT), "f")
    return "0" if text in ("-0", "") else text


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_CONTEXT)


def _json_number(value: Decimal, places: int) -> int | Decimal:
    rounded = _round(value, places).normalize(_CONTEXT)
    if rounded == rounded.to_integral_value():
        return int(rounded)
    return rounded


@dataclass(slots=True)
class PriceResult:
    currency: str
    totals: dict[str, Price]
    lines: list[Line]
    total_energy: Decimal
    total_time: Decimal  # hours
    total_parking_time: Decimal  # hours
    adjustment: Price = field(default_factory=lambda: Price(_ZERO, None))  # min/max_price correction
    tariff_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tax_detail: bool = False  # to_json writes each Price's `taxes`

    def to_json(self, *, breakdown: bool = True) -> dict[str, Any]:
        """The CDR fields (same names as the CDR object) as JSON numbers: money rounded half up to
        `MONEY_PLACES` decimals, quantities to `QUANTITY_PLACES` (Decimal or int values: serialise
        with `shared.jsonutil.dumps`, exact for these <= 15 significant digits)."""
        out: dict[str, Any] = {"currency": self.currency}
        for name in TOTALS:
            out[name] = _price_json(self.totals[name], name, taxes=self.tax_detail)
        out["total_energy"] = _json_number(self.total_energy, QUANTITY_PLACES)
        out["total_time"] = _json_number(self.total_time, QUANTITY_PLACES)
        out["total_parking_time"] = _json_number(self.total_parking_time, QUANTITY_PLACES)
        if breakdown:
            out["breakdown"] = [line.to_json(tax_detail=self.tax_detail) for line in self.lines]
            out["min_max_adjustment"] = {
                "excl_vat": None if self.adjustment.excl_vat is None else _text(self.adjustment.excl_vat),
                "incl_vat": None if self.adjustment.incl_vat is None else _text(self.adjustment.incl_vat),
            }
            out["tariff_ids"] = list(self.tariff_ids)
            out["notes"] = list(self.notes)
        return out


def _price_json(price: Price, what: str, *, taxes: bool) -> dict[str, Any]:
    """A canonical Price: `{excl_vat, incl_vat?, taxes?}`, money rounded; with ``taxes`` the rounded
    tax amounts add up to `incl_vat - excl_vat` exactly (the last absorbs the rounding)."""
    if price.excl_vat is None:
        raise PricingError(f"{what}: the amount before taxes is unknown (tax-included price without vat)")
    entry: dict[str, Any] = {"excl_vat": _json_number(price.excl_vat, MONEY_PLACES)}
    if price.incl_vat is None:
        return entry
    entry["incl_vat"] = _json_number(price.incl_vat, MONEY_PLACES)
    if taxes:
        rest = _round(price.incl_vat, MONEY_PLACES) - _round(price.excl_vat, MONEY_PLACES)
        amounts = [_round(t.amount, MONEY_PLACES) for t in price.taxes]
        if amounts:
            amounts[-1] = rest - sum(amounts[:-1], _ZERO)
        entry["taxes"] = []
        for tax, amount in zip(price.taxes, amounts, strict=True):
            item: dict[str, Any] = {"name": tax.name}
            if tax.percentage is not None:
                item["percentage"] = _json_number(tax.percentage, MONEY_PLACES)
            item["amount"] = _json_number(amount, MONEY_PLACES)
            entry["taxes"].append(item)
    return entry


# ----------------------------------------------------------------------------- pricing
def _tariff_list(tariffs: Mapping[str, Any] | CompiledTariff | Sequence[Any]) -> list[CompiledTariff]:
    if isinstance(tariffs, (Mapping, CompiledTariff)):
        tariffs = [tariffs]
    compiled = [compile_tariff(t) for t in tariffs]
    if not compiled:
        raise PricingError("at least one tariff is needed")
    return compiled


def _choose(p: _Period, tariffs: list[CompiledTariff], notes: list[str]) -> CompiledTariff | None:
    if p.tariff_id is not None:
        for tariff in tariffs:
            if tariff.id.upper() == p.tariff_id and tariff.valid_at(p.start):
                return tariff
    for tariff in tariffs:
        if tariff.valid_at(p.start):
            if p.tariff_id is not None:
                notes.append(
                    f"period {p.index}: tariff {p.tariff_id} not given or not valid, priced with {tariff.id}"
                )
            return tariff
    notes.append(f"period {p.index}: no tariff valid at {p.start.isoformat()}, not priced")
    return None


def _with_vat(excl: Decimal, vat: Decimal | None) -> Decimal | None:
    if vat is None:
        return None
    return _CONTEXT.multiply(excl, _ONE + _CONTEXT.divide(vat, _HUNDRED))


TaxRates = tuple[tuple[str, Decimal], ...]


def _cost(line: Line, rates: TaxRates | None) -> None:
    if line.dimension == FLAT:
        amount = line.price
    elif line.dimension == ENERGY:
        amount = _CONTEXT.multiply(line.quantity, line.price)
    else:  # seconds at a price per hour
        amount = _CONTEXT.divide(_CONTEXT.multiply(line.quantity, line.price), _HOUR)
    mode = line.tax_included
    if mode == "N/A":  # "No taxes are applicable to this Tariff": a vat is ignored
        line.cost_excl, line.cost_incl, line.taxes = amount, amount, ()
    elif mode == "YES" and line.vat is not None:
        before = _CONTEXT.divide(amount, _ONE + _CONTEXT.divide(line.vat, _HUNDRED))
        line.cost_excl, line.cost_incl = before, amount
        line.taxes = (TaxAmount("VAT", line.vat, _CONTEXT.subtract(amount, before)),)
    elif mode == "YES":
        line.cost_incl = amount
        if rates:
            share = _ONE + _CONTEXT.divide(sum((p for _, p in rates), _ZERO), _HUNDRED)
            line.cost_excl = _CONTEXT.divide(amount, share)
            line.taxes = _split(line.cost_excl, _CONTEXT.subtract(amount, line.cost_excl), rates)
        else:
            line.cost_excl, line.taxes = None, ()
    elif line.vat is not None:  # NO (the 2.2.1 meaning)
        line.cost_excl = amount
        line.cost_incl = _with_vat(amount, line.vat)
        assert line.cost_incl is not None
        line.taxes = (TaxAmount("VAT", line.vat, _CONTEXT.subtract(line.cost_incl, amount)),)
    elif rates:  # NO without vat, with the location's tax rates
        line.cost_excl = amount
        line.taxes = _split(amount, None, rates)
        line.cost_incl = _CONTEXT.add(amount, _exact_sum(t.amount for t in line.taxes))
    else:
        line.cost_excl, line.cost_incl, line.taxes = amount, None, ()


def _split(base: Decimal, total: Decimal | None, rates: TaxRates) -> tuple[TaxAmount, ...]:
    """Each rate's tax on ``base``; with ``total`` the last takes what is left of it."""
    taxes = [TaxAmount(name, p, _CONTEXT.divide(_CONTEXT.multiply(base, p), _HUNDRED)) for name, p in rates]
    if total is not None and taxes:
        last = taxes[-1]
        taxes[-1] = last._replace(amount=_CONTEXT.subtract(total, _exact_sum(t.amount for t in taxes[:-1])))
    return tuple(taxes)


def _exact_sum(values: Any) -> Decimal:
    total = _ZERO
    for value in values:
        total = _CONTEXT.add(total, value)
    return total


def _round_up(total: Decimal, step: int) -> Decimal:
    if step <= 1:
        step = 1
    blocks = _CONTEXT.divide(total, Decimal(step)).to_integral_value(rounding=ROUND_CEILING)
    return blocks * step


def _apply_step_sizes(lines: list[Line]) -> None:
    # ENERGY: the session's billed energy, in Wh, rounded up with the last ENERGY line's step.
    energy = [line for line in lines if line.dimension == ENERGY and not line.reservation]
    if energy:
        last = energy[-1]
        total_wh = sum((line.quantity for line in energy), _ZERO) * _THOUSAND
        extra = (_round_up(total_wh, last.step_size) - total_wh) / _THOUSAND
        last.quantity += extra
        last.step_extra = extra
    # TIME and PARKING_TIME combined: only the kind of the last time-based line is rounded.
    timed = [line for line in lines if line.dimension in (TIME, PARKING_TIME)]
    if timed:
        last = timed[-1]
        same = (last.dimension, last.reservation)
        kind = [line for line in timed if (line.dimension, line.reservation) == same]
        total_s = sum((line.quantity for line in kind), _ZERO)
        extra = _round_up(total_s, last.step_size) - total_s
        last.quantity += extra
        last.step_extra = extra


def _sum(lines: list[Line]) -> Price:
    excls = [line.cost_excl for line in lines]
    excl = None if any(e is None for e in excls) else sum(excls, _ZERO)  # type: ignore[arg-type]
    if all(line.cost_incl is None for line in lines):
        return Price(excl, None)
    incl = sum((line.cost_excl if line.cost_incl is None else line.cost_incl for line in lines), _ZERO)
    taxes: dict[tuple[str, Decimal | None], Decimal] = {}
    for line in lines:
        for tax in line.taxes:
            key = (tax.name, tax.percentage)
            taxes[key] = _CONTEXT.add(taxes.get(key, _ZERO), tax.amount)
    return Price(excl, incl, tuple(TaxAmount(n, p, a) for (n, p), a in taxes.items()))


def _clamp(total: Price, low: Price | None, high: Price | None) -> Price:
    excl, incl, taxes = total
    if low is not None:
        if excl is not None:
            excl = max(excl, low.excl_vat)  # type: ignore[type-var]
        if incl is not None and low.incl_vat is not None:
            incl = max(incl, low.incl_vat)
    if high is not None:
        if excl is not None:
            excl = min(excl, high.excl_vat)  # type: ignore[type-var]
        if incl is not None and high.incl_vat is not None:
            incl = min(incl, high.incl_vat)
    if incl is None or excl is None or not taxes or (excl, incl) == (total.excl_vat, total.incl_vat):
        return Price(excl, incl, taxes)
    # The taxes are what lies between the clamped totals: scaled, the last taking the residual.
    raw = _exact_sum(t.amount for t in taxes)
    if raw == 0:
        return Price(excl, incl, taxes)
    between = _CONTEXT.subtract(incl, excl)
    factor = _CONTEXT.divide(between, raw)
    scaled = [t._replace(amount=_CONTEXT.multiply(t.amount, factor)) for t in taxes]
    rest = _CONTEXT.subtract(between, _exact_sum(t.amount for t in scaled[:-1]))
    scaled[-1] = scaled[-1]._replace(amount=rest)
    return Price(excl, incl, tuple(scaled))


def price_periods(
    raw_periods: Any,
    tariffs: Mapping[str, Any] | CompiledTariff | Sequence[Any],
    *,
    end: Any,
    currency: str | None = None,
    time_zone: str | None = None,
    reservation_expired: bool | None = None,
    tax_rates: Sequence[tuple[str, Any]] | None = None,
    tax_detail: bool | None = None,
    allow_unknown_before_taxes: bool = False,
) -> PriceResult:
    """Price charging periods that end at ``end`` (the session's end) with the given tariff(s).
    ``reservation_expired`` None: a reservation expired when no charging period follows it.
    ``tax_rates``: ``[(name, percentage)]`` of the location's jurisdiction, applied to the lines of
    components without `vat` (not to `tax_included: N/A` tariffs). ``tax_detail``: whether
    `to_json` writes `taxes` (None: when a tariff is written the 2.3.0 way or rates are given).
    ``allow_unknown_before_taxes``: a tax-included price without vat and without rates gives
    totals with `excl_vat` None instead of a PricingError."""
    compiled = _tariff_list(tariffs)
    rates = _rates(tax_rates)
    session_end = _instant(end, "end_date_time")
    assert session_end is not None
    zone = _zone(time_zone) if time_zone else None
    wanted = (currency or compiled[0].currency).upper()
    periods = _periods(raw_periods, session_end)
    notes: list[str] = []

    charging = [p for p in periods if not p.reservation]
    expired = not charging if reservation_expired is None else reservation_expired
    if zone is None and any(e.restrictions and e.restrictions.local for t in compiled for e in t.elements):
        notes.append("no time zone: local-time restrictions evaluated in UTC")
    session_start = charging[0].start if charging else periods[0].start
    energy = _ZERO
    for p in periods:
        if zone is not None:
            p.local = p.start.astimezone(zone)
        else:
            p.local = p.start
        if not p.reservation:
            delta = p.start - session_start
            p.session_seconds = Decimal(delta.days * _DAY_SECONDS + delta.seconds)
            p.energy_before = energy
            energy += p.dims.get(ENERGY, _ZERO)

    lines: list[Line] = []
    flat_billed = {False: False, True: False}  # per phase: charging session, reservation
    used: list[CompiledTariff] = []
    bounds: CompiledTariff | None = None  # min/max_price: the tariff the charging session started under
    for p in periods:
        tariff = _choose(p, compiled, notes)
        if tariff is None:
            continue
        if bounds is None and not p.reservation:
            bounds = tariff
        if tariff.currency != wanted:
            raise PricingError(f"tariff {tariff.id} is in {tariff.currency}, the session in {wanted}")
        if tariff not in used:
            used.append(tariff)
        for dimension in RESERVATION_DIMENSIONS if p.reservation else DIMENSIONS:
            if dimension == FLAT and flat_billed[p.reservation]:
                continue
            quantity = _quantity(p, dimension)
            if quantity <= 0:
                continue
            found = _active(tariff, p, dimension, expired)
            if found is None:
                continue
            element, component = found
            if dimension == FLAT:
                flat_billed[p.reservation] = True
            lines.append(
                Line(
                    period_index=p.index,
                    dimension=dimension,
                    reservation=p.reservation,
                    quantity=quantity,
                    price=component.price,
                    vat=component.vat,
                    step_size=component.step_size,
                    tariff_id=tariff.id,
                    element_index=element.index,
                    tax_included=tariff.tax_included,
                )
            )
    _apply_step_sizes(lines)
    for line in lines:
        _cost(line, rates)
        if line.cost_excl is None and not allow_unknown_before_taxes:
            raise PricingError(
                f"tariff {line.tariff_id}: tax_included YES without vat: the amount before taxes is"
                " unknown (give tax_rates)"
            )

    by_category: dict[str, list[Line]] = {name: [] for name in TOTALS[1:]}
    for line in lines:
        by_category[line.category].append(line)
    totals = {name: _sum(group) for name, group in by_category.items()}
    raw_total = _sum(lines)
    bounds = bounds or (used[0] if used else None)
    total = _clamp(raw_total, bounds.min_price, bounds.max_price) if bounds else raw_total
    totals = {"total_cost": total, **totals}
    adjustment = Price(
        None if total.excl_vat is None or raw_total.excl_vat is None else total.excl_vat - raw_total.excl_vat,
        None if total.incl_vat is None or raw_total.incl_vat is None else total.incl_vat - raw_total.incl_vat,
    )
    parking = sum((p.dims.get(PARKING_TIME, _ZERO) for p in charging), _ZERO)
    if charging:
        span = session_end - session_start
        hours = _CONTEXT.divide(Decimal(span.days * _DAY_SECONDS + span.seconds), _HOUR)
    else:
        hours = _ZERO
    return PriceResult(
        currency=wanted,
        totals=totals,
        lines=lines,
        total_energy=sum((p.dims.get(ENERGY, _ZERO) for p in charging), _ZERO),
        total_time=hours,
        total_parking_time=parking,
        adjustment=adjustment,
        tariff_ids=[t.id for t in used],
        notes=notes,
        tax_detail=bool(rates) or any(t.v230 for t in compiled) if tax_detail is None else tax_detail,
    )


def _rates(raw: Sequence[tuple[str, Any]] | None) -> TaxRates | None:
    if not raw:
        return None
    try:
        return tuple((str(name), _decimal(p, f"tax rate {name}")) for name, p in raw)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, PricingError):
            raise
        raise PricingError("tax_rates must be (name, percentage) pairs") from None


def _seconds(hours: Decimal) -> Decimal:
    """Hours as sent (a JSON number such as 0.116667 for 7 minutes) to whole seconds, the unit of
    the time dimensions (TariffDimensionType: "step_size multiplier: 1 second"). Rounding to the
    nearest second first keeps a volume that is a hair above a step boundary in the step it
    means: 0.116667 h is 420.0012 s, billed as 420 s, not as the next minute."""
    return (hours * _HOUR).quantize(_ONE, rounding=ROUND_HALF_UP, context=_CONTEXT)


def _quantity(p: _Period, dimension: str) -> Decimal:
    """What the period consumed of a tariff dimension: kWh, whole seconds, or 1 (FLAT)."""
    if dimension == FLAT:
        return _ONE
    if p.reservation:
        return _seconds(p.dims["RESERVATION_TIME"])  # TIME of a reservation element: the reserved time
    if dimension == ENERGY:
        return max(p.dims.get(ENERGY, _ZERO), _ZERO)  # energy fed back is not billed
    if dimension == TIME:
        if TIME in p.dims:
            return _seconds(p.dims[TIME])
        if PARKING_TIME in p.dims:
            return _ZERO
        # A period without time dimensions: charging all along.
        return p.seconds.quantize(_ONE, rounding=ROUND_HALF_UP, context=_CONTEXT)
    return _seconds(p.dims.get(PARKING_TIME, _ZERO))


def price_cdr(
    cdr: Mapping[str, Any],
    tariffs: Mapping[str, Any] | CompiledTariff | Sequence[Any],
    *,
    time_zone: str | None = None,
    tax_rates: Sequence[tuple[str, Any]] | None = None,
    tax_detail: bool | None = None,
    allow_unknown_before_taxes: bool = False,
) -> PriceResult:
    """Price a CDR's charging periods (mod_cdrs) with the tariff(s); the CDR's cost fields are not
    read. The tax options: `price_periods`."""
    if not isinstance(cdr, Mapping):
        raise PricingError("the CDR must be a JSON object")
    if cdr.get("end_date_time") is None:
        raise PricingError("end_date_time is required")
    return price_periods(
        cdr.get("charging_periods"),
        tariffs,
        end=cdr["end_date_time"],
        currency=cdr.get("currency"),
        time_zone=time_zone,
        tax_rates=tax_rates,
        tax_detail=tax_detail,
        allow_unknown_before_taxes=allow_unknown_before_taxes,
    )


def price_session(
    session: Mapping[str, Any],
    tariffs: Mapping[str, Any] | CompiledTariff | Sequence[Any],
    *,
    time_zone: str | None = None,
    now: Any = None,
    tax_rates: Sequence[tuple[str, Any]] | None = None,
    tax_detail: bool | None = None,
    allow_unknown_before_taxes: bool = False,
) -> PriceResult:
    """Price a Session so far: its periods up to `end_date_time`, or up to ``now`` while it runs
    (the last period's start when neither is known). The tax options: `price_periods`."""
    if not isinstance(session, Mapping):
        raise PricingError("the session must be a JSON object")
    periods = session.get("charging_periods")
    end = session.get("end_date_time") or now
    if end is None:
        if not isinstance(periods, list) or not periods or not isinstance(periods[-1], Mapping):
            raise PricingError("charging_periods must be a non-empty list")
        end = max(str(p.get("start_date_time")) for p in periods if isinstance(p, Mapping))
    # A session in status RESERVATION is a reservation still running, not an expired one.
    running = True if session.get("status") == "RESERVATION" else None
    return price_periods(
        periods,
        tariffs,
        end=end,
        currency=session.get("currency"),
        time_zone=time_zone,
        reservation_expired=False if running else None,
        tax_rates=tax_rates,
        tax_detail=tax_detail,
        allow_unknown_before_taxes=allow_unknown_before_taxes,
    )
