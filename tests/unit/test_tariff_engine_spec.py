"""The tariff engine (``shared.pricing``) against every priced example of the OCPI 2.2.1 text.

Sources (read from the spec checkout, never copied into the project):

* ``mod_tariffs.asciidoc``: the Tariff examples (§ "Examples" under the Tariff object), the
  PriceComponent ``step_size`` notes and the "Example Tariff" with its three step_size scenarios,
  the ``max_power`` / ``max_duration`` restriction examples, the reservation examples (15-18);
* ``mod_cdrs.asciidoc``: § step_size (``mod_cdrs_step_size``) and the CDR example.

The tariffs are the official ``examples/tariff_*.json`` / ``tariffrestriction_example_*.json`` files.
Every CDR is built here from the prose of the example: local times in Europe/Amsterdam on a date
with the weekday the prose states. Amounts the prose gives rounded to cents are asserted exactly
(the engine computes exact Decimals) *and* rounded half-up to the cents the prose prints.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.pricing import PricingError, price_cdr
from tests.unit.test_models_examples import _examples_dir

EXAMPLES = _examples_dir()
AMS = "Europe/Amsterdam"

# Dates with the weekday the prose needs.
MONDAY = "2024-06-03"
TUESDAY = "2024-06-04"
SATURDAY = "2024-06-08"

TOTAL_KEYS = {
    "cost": "total_cost",
    "fixed": "total_fixed_cost",
    "energy": "total_energy_cost",
    "time": "total_time_cost",
    "parking": "total_parking_cost",
    "reservation": "total_reservation_cost",
}

# Money and quantities: the engine is exact; a tolerance only absorbs inputs that are not exact
# decimals themselves (a TIME volume of 13 minutes is 0.21666… hours as a JSON number).
TOL = Decimal("1e-9")


# --------------------------------------------------------------------------------------------
# Loading the official tariffs
# --------------------------------------------------------------------------------------------


@cache
def _load(name: str) -> str:
    return (EXAMPLES / f"{name}.json").read_text(encoding="utf-8")


def tariff(name: str, **changes: Any) -> dict[str, Any]:
    """The official example ``name`` (unwrapped from a response envelope), optionally changed."""
    data = json.loads(_load(name))
    if isinstance(data, dict) and "data" in data and "elements" not in data:
        data = data["data"]
    assert isinstance(data, dict) and "elements" in data, name
    data.update(copy.deepcopy(changes))
    return data


def with_component(t: dict[str, Any], dimension: str, **fields: Any) -> dict[str, Any]:
    """Change every price component of ``dimension`` in tariff ``t`` (in place; returns ``t``)."""
    found = False
    for element in t["elements"]:
        for component in element["price_components"]:
            if component["type"] == dimension:
                component.update(fields)
                found = True
    assert found, dimension
    return t


# --------------------------------------------------------------------------------------------
# Building CDRs from the prose
# --------------------------------------------------------------------------------------------


def iso(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hours(minutes: float) -> float:
    return minutes / 60


def charging(minutes: float, kwh: float | None = None, *, time: bool = True, **extra: float):
    """A charging period of ``minutes``: ENERGY (when given), TIME (unless ``time=False``), extras."""
    dims: dict[str, float] = {}
    if kwh is not None:
        dims["ENERGY"] = kwh
    if time:
        dims["TIME"] = hours(minutes)
    dims.update(extra)
    return (minutes, dims)


def parking(minutes: float):
    return (minutes, {"PARKING_TIME": hours(minutes)})


def reserved(minutes: float):
    return (minutes, {"RESERVATION_TIME": hours(minutes)})


def build_cdr(
    local_start: str,
    segments: list[tuple[Any, ...]],
    *,
    tz: str = AMS,
    currency: str = "EUR",
) -> dict[str, Any]:
    """A CDR whose periods follow each other from ``local_start`` (wall time in ``tz``).

    ``segments``: ``(minutes, {dimension: volume})`` or ``(minutes, dims, tariff_id)``; minutes are
    elapsed (real) minutes, so a segment across a DST change keeps its true length.
    """
    t = datetime.fromisoformat(local_start).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)
    periods = []
    for minutes, dims, *rest in segments:
        period: dict[str, Any] = {
            "start_date_time": iso(t),
            "dimensions": [{"type": k, "volume": v} for k, v in dims.items()],
        }
        if rest:
            period["tariff_id"] = rest[0]
        periods.append(period)
        t += timedelta(minutes=minutes)
    return {
        "currency": currency,
        "start_date_time": periods[0]["start_date_time"] if periods else iso(t),
        "end_date_time": iso(t),
        "charging_periods": periods,
    }


def price(cdr: dict[str, Any], tariffs: Any, tz: str | None = AMS):
    return price_cdr(cdr, tariffs, time_zone=tz)


# --------------------------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------------------------


def near(actual: Any, expected: Any, what: str = "") -> None:
    """``actual`` is a Decimal equal to ``expected`` (str/int/Decimal exact, Fraction within TOL)."""
    if expected is None:
        assert actual is None, f"{what}: expected None, got {actual!r}"
        return
    assert isinstance(actual, Decimal), f"{what}: {actual!r} is not a Decimal"
    if isinstance(expected, Fraction):
        diff = abs(Fraction(actual) - expected)
        assert diff <= Fraction(TOL), f"{what}: expected {float(expected)!r}, got {actual}"
    else:
        assert abs(actual - Decimal(str(expected))) <= TOL, f"{what}: expected {expected}, got {actual}"


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def assert_totals(result: Any, **expected: tuple[Any, Any]) -> None:
    """``cost=("6.75", "7.60"), energy=(...)``…; a total not named must be zero (incl 0 or None)."""
    assert set(expected) <= set(TOTAL_KEYS), expected
    for short, key in TOTAL_KEYS.items():
        total = result.totals[key]
        if short in expected:
            excl, incl = expected[short]
            near(total.excl_vat, excl, f"{key}.excl_vat")
            near(total.incl_vat, incl, f"{key}.incl_vat")
        else:
            near(total.excl_vat, 0, f"{key}.excl_vat")
            assert total.incl_vat is None or total.incl_vat == 0, f"{key}.incl_vat: {total.incl_vat}"


def rows(result: Any) -> dict[tuple[str, bool, Decimal], dict[str, Any]]:
    """Breakdown aggregated like the spec tables: per (dimension, reservation, unit price)."""
    out: dict[tuple[str, bool, Decimal], dict[str, Any]] = {}
    for line in result.lines:
        if line.quantity == 0 and line.cost_excl == 0:
            continue
        key = (line.dimension, bool(line.reservation), Decimal(line.price).normalize())
        row = out.setdefault(
            key, {"quantity": Decimal(0), "step_extra": Decimal(0), "excl": Decimal(0), "incl": None}
        )
        row["quantity"] += line.quantity
        row["step_extra"] += line.step_extra
        row["excl"] += line.cost_excl
        if line.cost_incl is not None:
            row["incl"] = (row["incl"] or Decimal(0)) + line.cost_incl
    return out


def assert_rows(result: Any, *expected: tuple[Any, ...]) -> None:
    """Exactly these table rows: ``(dimension, reservation, price, quantity, excl, incl[, step_extra])``.

    quantity: kWh for ENERGY, seconds for TIME/PARKING_TIME, 1 for FLAT.
    """
    got = rows(result)
    want = {(d, r, Decimal(str(p)).normalize()): rest for d, r, p, *rest in expected}
    assert set(got) == set(want), f"breakdown rows: expected {sorted(want)}, got {sorted(got)}"
    for key, (quantity, excl, incl, *extra) in want.items():
        row = got[key]
        near(row["quantity"], quantity, f"{key} quantity")
        near(row["excl"], excl, f"{key} cost excl")
        near(row["incl"], incl, f"{key} cost incl")
        if extra:
            near(row["step_extra"], extra[0], f"{key} step_extra")


def line_at(result: Any, period_index: int, dimension: str) -> Any:
    found = [ln for ln in result.lines if ln.period_index == period_index and ln.dimension == dimension]
    assert len(found) == 1, f"{dimension} lines of period {period_index}: {found}"
    return found[0]


# ============================================================================================
# mod_tariffs.asciidoc § Tariff object > Examples
# ============================================================================================


# § "Simple Tariff example € 0.25 per kWh": 20 kWh -> € 5.00 excl / € 5.50 incl.
def test_simple_025_per_kwh() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(60, 20)])
    result = price(cdr, tariff("tariff_8_simple_025kwh"))
    assert result.currency == "EUR"
    assert_totals(result, cost=("5.00", "5.50"), energy=("5.00", "5.50"))
    assert_rows(result, ("ENERGY", False, "0.25", "20", "5.00", "5.50", "0"))


# § "Tariff example € 0.25 per kWh + start fee": 20 kWh -> € 5.50 excl / € 6.10 incl.
# The start fee is billed once, however many periods the session has.
@pytest.mark.parametrize(
    "segments",
    [
        [charging(60, 20)],
        [charging(20, 5), charging(25, 10), charging(15, 5)],
    ],
    ids=["one-period", "three-periods"],
)
def test_025_per_kwh_plus_start_fee(segments: list[Any]) -> None:
    result = price(build_cdr(f"{MONDAY}T10:00", segments), tariff("tariff_9_025kwh_start"))
    assert_totals(result, cost=("5.50", "6.10"), fixed=("0.50", "0.60"), energy=("5.00", "5.50"))
    assert_rows(
        result,
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
    )
    assert len([ln for ln in result.lines if ln.dimension == "FLAT"]) == 1


# § "Tariff example € 0.25 per kWh + minimum price": 20 kWh -> € 5.00 / € 5.50; "if less than 2 kWh is
# charged, € 0.50 (excl. VAT) or € 0.55 (incl. VAT) will be billed". min_price clamps total_cost only.
@pytest.mark.parametrize(
    ("kwh", "total", "energy"),
    [
        (20, ("5.00", "5.50"), ("5.00", "5.50")),
        (2, ("0.50", "0.55"), ("0.50", "0.55")),
        (1.999, ("0.50", "0.55"), ("0.49975", "0.549725")),
        (1, ("0.50", "0.55"), ("0.25", "0.275")),
        (0.1, ("0.50", "0.55"), ("0.025", "0.0275")),
    ],
)
def test_025_per_kwh_min_price(kwh: float, total: tuple[str, str], energy: tuple[str, str]) -> None:
    result = price(build_cdr(f"{MONDAY}T10:00", [charging(30, kwh)]), tariff("tariff_12_025kwh_min_price"))
    assert_totals(result, cost=total, energy=energy)


# § "Tariff example € 0.25 per kWh + parking fee + start fee": 20 kWh charged, parked 40 minutes after
# -> € 7.00 excl / € 7.90 incl; "the driver has to pay for 45 minutes of parking".
def test_025_per_kwh_parking_and_start_fee() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(60, 20), parking(40)])
    result = price(cdr, tariff("tariff_10_025kwh_parking_start"))
    assert_totals(
        result,
        cost=("7.00", "7.90"),
        fixed=("0.50", "0.60"),
        energy=("5.00", "5.50"),
        parking=("1.50", "1.80"),
    )
    assert_rows(
        result,
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
        ("PARKING_TIME", False, "2.00", 45 * 60, "1.50", "1.80", 5 * 60),
    )


# § "Tariff example € 0.25 per kWh + start fee + max price + tariff end date": 50 kWh -> € 10.00 / € 11.00
# "due to the price limit"; 30 kWh -> € 8.00 / € 8.85. The session is before the end date (2019-06-30).
@pytest.mark.parametrize(
    ("kwh", "total", "energy"),
    [
        (50, ("10.00", "11.00"), ("12.50", "13.75")),
        (30, ("8.00", "8.85"), ("7.50", "8.25")),
    ],
)
def test_025_per_kwh_start_fee_max_price(kwh: int, total: tuple[str, str], energy: tuple[str, str]) -> None:
    cdr = build_cdr("2019-06-03T10:00", [charging(120, kwh)])
    result = price(cdr, tariff("tariff_6_025kwh_start_max_price"))
    assert_totals(result, cost=total, fixed=("0.50", "0.60"), energy=energy)


# § "Simple Tariff example € 2 per hour": 2.5 hours -> € 5.00 / € 5.50; "the driver will not be billed
# for time they are not charging: PARKING_TIME".
@pytest.mark.parametrize(
    "segments",
    [
        [charging(150, 30)],
        [charging(150, 30, time=False)],  # no TIME dimension: the period's duration is charging time
        [charging(150, 30), parking(30)],
    ],
    ids=["time-dimension", "duration-only", "with-parking"],
)
def test_simple_2_per_hour(segments: list[Any]) -> None:
    result = price(build_cdr(f"{MONDAY}T10:00", segments), tariff("tariff_1_simple_2hour"))
    assert_totals(result, cost=("5.00", "5.50"), time=("5.00", "5.50"))
    assert_rows(result, ("TIME", False, "2.00", 150 * 60, "5.00", "5.50", 0))


# § "Simple Tariff example € 3 per hour, € 5 per hour parking": 150 min charging + 42 min parking
# -> € 11.25 / € 12.75; 45 minutes of parking are paid.
def test_3_per_hour_5_per_hour_parking() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(150, 40), parking(42)])
    result = price(cdr, tariff("tariff_13_simple_3hour_5parking"))
    assert_totals(result, cost=("11.25", "12.75"), time=("7.50", "8.25"), parking=("3.75", "4.50"))
    assert_rows(
        result,
        ("TIME", False, "3.00", 150 * 60, "7.50", "8.25", 0),
        ("PARKING_TIME", False, "5.00", 45 * 60, "3.75", "4.50", 3 * 60),
    )


# § "Ad-Hoc simple Tariff example with multiple languages": 2.5 hours at € 1.90/h, 5.2% VAT
# -> € 4.75 excl / € 5.00 incl (the exact amount is 4.997, the prose rounds to cents).
def test_adhoc_alt_text() -> None:
    result = price(build_cdr(f"{MONDAY}T10:00", [charging(150, 20)]), tariff("tariff_2_alt_text"))
    assert_totals(result, cost=("4.75", "4.997"), time=("4.75", "4.997"))
    assert cents(result.totals["total_cost"].incl_vat) == Decimal("5.00")


# § "Simple Tariff example with alternative URL": 20.45 kWh billed per 100 Wh, i.e. 20.5 kWh:
# start fee 0.50 / 0.60, energy 5.13 / 5.64, total 5.63 / 6.24 (cents; exact 5.125, 5.6375, 5.625,
# 6.2375); with the € 0.22/kWh of the alt_url page: energy 4.51 / 4.96, total 5.01 / 5.56.
# (The table prints the consumed "20.45 kWh" but its cost 5.13 is that of the billed 20.5 kWh.)
@pytest.mark.parametrize(
    ("energy_price", "energy", "total", "printed"),
    [
        (0.25, ("5.125", "5.6375"), ("5.625", "6.2375"), ("5.13", "5.64", "5.63", "6.24")),
        (0.22, ("4.51", "4.961"), ("5.01", "5.561"), ("4.51", "4.96", "5.01", "5.56")),
    ],
    ids=["announced-0.25", "alt-url-0.22"],
)
def test_alt_url_step_100wh(
    energy_price: float, energy: tuple[str, str], total: tuple[str, str], printed: tuple[str, ...]
) -> None:
    t = with_component(tariff("tariff_3_alt_url"), "ENERGY", price=energy_price)
    result = price(build_cdr(f"{MONDAY}T10:00", [charging(90, 20.45)]), t)
    assert_totals(result, cost=total, fixed=("0.50", "0.60"), energy=energy)
    assert_rows(
        result,
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, energy_price, "20.5", *energy, "0.05"),
    )
    e, c = result.totals["total_energy_cost"], result.totals["total_cost"]
    assert tuple(cents(v) for v in (e.excl_vat, e.incl_vat, c.excl_vat, c.incl_vat)) == tuple(
        Decimal(p) for p in printed
    )


# § "Complex Tariff example", Monday: starts 09:30, 165 minutes charging at a maximum of 16 A, 42
# minutes parking -> € 9.00 / € 10.30; table: Flat 2.50/2.875, Charging time 165 min 1.00/h 2.75/3.30,
# Parking 45 min 5.00/h 3.75/4.125. The current is given the ways a CDR can carry it.
@pytest.mark.parametrize(
    "current",
    [{"MAX_CURRENT": 16}, {"CURRENT": 16}, {"MIN_CURRENT": 6, "MAX_CURRENT": 16}],
    ids=["max_current", "current", "min_and_max_current"],
)
def test_complex_monday(current: dict[str, float]) -> None:
    cdr = build_cdr(f"{MONDAY}T09:30", [charging(165, 18, **current), parking(42)])
    result = price(cdr, tariff("tariff_4_complex"))
    assert_totals(
        result,
        cost=("9.00", "10.30"),
        fixed=("2.50", "2.875"),
        time=("2.75", "3.30"),
        parking=("3.75", "4.125"),
    )
    assert_rows(
        result,
        ("FLAT", False, "2.50", 1, "2.50", "2.875"),
        ("TIME", False, "1.00", 165 * 60, "2.75", "3.30", 0),
        ("PARKING_TIME", False, "5.00", 45 * 60, "3.75", "4.125", 3 * 60),
    )


# § "Complex Tariff example", Saturday: starts 13:30, 114 minutes charging at a minimum of 43 A, 71
# minutes parking; table: Flat 2.50/2.875, Charging time "114 minutes | 1.25 per hour | 2.28 | 20% |
# 2.736", Parking 75 min 6.00/h 7.50/8.25, Total 12.28 / 13.861.
# SPEC ARITHMETIC ERROR: 114 min × € 1.25/h = € 2.375 (incl 2.85), not 2.28 (which is 114 min × € 1.20);
# the tariff (element 4: 1.25/h, 20% VAT) and the table's own quantity and price give 2.375, so the
# totals are 12.375 / 13.975. The charging time is not rounded (114 min with a 600 s step) because it
# is followed by parking.
@pytest.mark.parametrize(
    "current",
    [{"MIN_CURRENT": 43}, {"CURRENT": 43}, {"MIN_CURRENT": 43, "MAX_CURRENT": 45}],
    ids=["min_current", "current", "min_and_max_current"],
)
def test_complex_saturday(current: dict[str, float]) -> None:
    cdr = build_cdr(f"{SATURDAY}T13:30", [charging(114, 40, **current), parking(71)])
    result = price(cdr, tariff("tariff_4_complex"))
    assert_totals(
        result,
        cost=("12.375", "13.975"),
        fixed=("2.50", "2.875"),
        time=("2.375", "2.85"),
        parking=("7.50", "8.25"),
    )
    assert_rows(
        result,
        ("FLAT", False, "2.50", 1, "2.50", "2.875"),
        ("TIME", False, "1.25", 114 * 60, "2.375", "2.85", 0),
        ("PARKING_TIME", False, "6.00", 75 * 60, "7.50", "8.25", 4 * 60),
    )


# § "Free of Charge Tariff example": one FLAT component of 0.00 without VAT: nothing to pay, and no
# VAT applicable ("If omitted, no VAT is applicable", PriceComponent.vat).
def test_free_of_charge() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(60, 20), parking(30)])
    result = price(cdr, tariff("tariff_5_free_of_charge"))
    assert_totals(result, cost=("0", None))
    assert result.totals["total_cost"].incl_vat is None
    flat = [ln for ln in result.lines if ln.dimension == "FLAT"]
    assert len(flat) == 1 and flat[0].cost_excl == 0 and flat[0].cost_incl is None


# ============================================================================================
# mod_tariffs.asciidoc § reservation examples (15-18)
# ============================================================================================


# § "Tariff example with reservation price": charging starts 15 minutes after the reservation, 20 kWh
# -> € 6.75 / € 7.60; Flat 0.50/0.60, Energy 20 kWh 5.00/5.50, Reservation 15 min 5.00/h 1.25/1.50.
def test_reservation_price() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(15), charging(60, 20)])
    result = price(cdr, tariff("tariff_15_reservation_5_euro_per_hour"))
    assert_totals(
        result,
        cost=("6.75", "7.60"),
        fixed=("0.50", "0.60"),
        energy=("5.00", "5.50"),
        reservation=("1.25", "1.50"),
    )
    assert_rows(
        result,
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
        ("TIME", True, "5.00", 15 * 60, "1.25", "1.50", 0),
    )


# § "Tariff example with reservation price and fee": charging starts 13 minutes after the reservation,
# 20 kWh -> € 8.75 / € 10.00; 15 minutes of reservation are paid (step 300 s). (The table labels the
# reservation time row "Parking time"; it is the reservation element's TIME component, not parking.)
def test_reservation_price_and_fee() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(13), charging(60, 20)])
    result = price(cdr, tariff("tariff_16_reservation_2_euro_fee_5_euro_per_hour"))
    assert_totals(
        result,
        cost=("8.75", "10.00"),
        fixed=("0.50", "0.60"),
        energy=("5.00", "5.50"),
        reservation=("3.25", "3.90"),
    )
    assert_rows(
        result,
        ("FLAT", True, "2.00", 1, "2.00", "2.40"),
        ("TIME", True, "5.00", 15 * 60, "1.25", "1.50", 2 * 60),
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
    )


# § "Tariff example with reservation price and expire fee":
# * used: charging starts 22 minutes after the reservation, 20 kWh -> € 6.50 / € 7.30, 30 minutes of
#   reservation paid (step 600 s); no expiration fee;
# * expired after the reserved hour, no charging -> € 6.00 / € 7.20: Flat 4.00/4.80 (RESERVATION_EXPIRES)
#   + Time 60 min 2.00/h 2.00/2.40; no start fee as there is no charging session.
def test_reservation_expire_fee_used() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(22), charging(60, 20)])
    result = price(cdr, tariff("tariff_17_reservation_with_expire_fee"))
    assert_totals(
        result,
        cost=("6.50", "7.30"),
        fixed=("0.50", "0.60"),
        energy=("5.00", "5.50"),
        reservation=("1.00", "1.20"),
    )
    assert_rows(
        result,
        ("TIME", True, "2.00", 30 * 60, "1.00", "1.20", 8 * 60),
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
    )


def test_reservation_expire_fee_expired() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(60)])
    result = price(cdr, tariff("tariff_17_reservation_with_expire_fee"))
    assert_totals(result, cost=("6.00", "7.20"), reservation=("6.00", "7.20"))
    assert_rows(
        result,
        ("FLAT", True, "4.00", 1, "4.00", "4.80"),
        ("TIME", True, "2.00", 60 * 60, "2.00", "2.40", 0),
    )


# § "Tariff example with reservation time and expire time":
# * used: charging starts 22 minutes after the reservation, 20 kWh -> € 7.00 / € 7.90; Time 30 min
#   3.00/h 1.50/1.80 (RESERVATION element);
# * expired after 1.5 hours -> € 9.00 / € 10.80: Time 90 min 6.00/h (RESERVATION_EXPIRES element, see
#   the NOTE under ReservationRestrictionType).
def test_reservation_expire_time_used() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(22), charging(60, 20)])
    result = price(cdr, tariff("tariff_18_reservation_with_expire_time"))
    assert_totals(
        result,
        cost=("7.00", "7.90"),
        fixed=("0.50", "0.60"),
        energy=("5.00", "5.50"),
        reservation=("1.50", "1.80"),
    )
    assert_rows(
        result,
        ("TIME", True, "3.00", 30 * 60, "1.50", "1.80", 8 * 60),
        ("FLAT", False, "0.50", 1, "0.50", "0.60"),
        ("ENERGY", False, "0.25", "20", "5.00", "5.50"),
    )


def test_reservation_expire_time_expired() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [reserved(90)])
    result = price(cdr, tariff("tariff_18_reservation_with_expire_time"))
    assert_totals(result, cost=("9.00", "10.80"), reservation=("9.00", "10.80"))
    assert_rows(result, ("TIME", True, "6.00", 90 * 60, "9.00", "10.80", 0))


# ============================================================================================
# mod_tariffs.asciidoc § TariffRestrictions examples
# ============================================================================================


# § "Example: Tariff with max_power Tariff Restrictions": first kWh at 6 kW, next 40 kWh at 48 kW, then
# 0.5 kWh at 4 kW -> € 20.30 excl (0.20 + 20.00 + 0.10). The incl amount (24.36) follows from the 20%
# VAT of every component in the JSON; the prose states only excl. The power is given the ways a CDR
# can carry it, or derived from ENERGY / TIME.
@pytest.mark.parametrize(
    "power_dims",
    [
        lambda kw: {"POWER": kw},
        lambda kw: {"MAX_POWER": kw},
        lambda kw: {"MIN_POWER": kw, "MAX_POWER": kw},
        lambda kw: {},
    ],
    ids=["power", "max_power", "min_and_max_power", "derived"],
)
def test_max_power_restriction(power_dims: Any) -> None:
    cdr = build_cdr(
        f"{MONDAY}T10:00",
        [
            charging(10, 1, **power_dims(6)),
            charging(50, 40, **power_dims(48)),
            charging(7.5, 0.5, **power_dims(4)),
        ],
    )
    result = price(cdr, tariff("tariffrestriction_example_max_power"))
    assert_totals(result, cost=("20.30", "24.36"), energy=("20.30", "24.36"))
    for index, unit, kwh, cost in [
        (0, "0.20", 1, "0.20"),
        (1, "0.50", 40, "20.00"),
        (2, "0.20", "0.5", "0.10"),
    ]:
        line = line_at(result, index, "ENERGY")
        near(line.price, unit, f"period {index} price")
        near(line.quantity, kwh, f"period {index} kWh")
        near(line.cost_excl, cost, f"period {index} cost")


# § "Example: Tariff with max_duration Tariff Restrictions": 40 minutes, 5 kWh in the first 30 minutes
# and 1.2 kWh in the last 10 -> € 0.30 excl (5 kWh free + 1.2 kWh at 0.25). incl 0.36 from the JSON's
# 20% VAT. max_duration is exclusive: the period starting at exactly 1800 s is no longer free.
def test_max_duration_restriction() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(30, 5), charging(10, 1.2)])
    result = price(cdr, tariff("tariffrestriction_example_max_duration"))
    assert_totals(result, cost=("0.30", "0.36"), energy=("0.30", "0.36"))
    first, second = line_at(result, 0, "ENERGY"), line_at(result, 1, "ENERGY")
    near(first.price, "0.00")
    near(first.quantity, "5")
    near(first.cost_excl, "0")
    near(second.price, "0.25")
    near(second.quantity, "1.2")
    near(second.cost_excl, "0.30")
    near(second.cost_incl, "0.36")


# Same tariff, the third clause of the prose ("€ 0.40 per kWh after 60 minutes"), amounts derived:
# 5 kWh free, 6 kWh at 0.25 (30-60 min), 4 kWh at 0.40 (from 60 min) = 1.50 + 1.60.
def test_max_duration_restriction_after_an_hour() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(30, 5), charging(30, 6), charging(20, 4)])
    result = price(cdr, tariff("tariffrestriction_example_max_duration"))
    assert_totals(result, cost=("3.10", "3.72"), energy=("3.10", "3.72"))
    near(line_at(result, 2, "ENERGY").price, "0.40")


# ============================================================================================
# mod_tariffs.asciidoc § PriceComponent step_size notes and § "Example Tariff" (tariff_14)
# ============================================================================================


# NOTE under PriceComponent: 115.2 Wh at € 0.25/kWh: step 1 -> 116 Wh, € 0.029; step 25 -> 125 Wh,
# € 0.031 (exact 0.03125); step 500 -> 500 Wh, € 0.125.
@pytest.mark.parametrize(
    ("step", "billed_kwh", "cost", "printed"),
    [(1, "0.116", "0.029", "0.029"), (25, "0.125", "0.03125", "0.031"), (500, "0.5", "0.125", "0.125")],
)
def test_step_size_energy_note(step: int, billed_kwh: str, cost: str, printed: str) -> None:
    t = with_component(tariff("tariff_8_simple_025kwh"), "ENERGY", step_size=step)
    result = price(build_cdr(f"{MONDAY}T10:00", [charging(5, 0.1152)]), t)
    near(result.totals["total_energy_cost"].excl_vat, cost)
    assert result.totals["total_cost"].excl_vat.quantize(Decimal("0.001"), ROUND_HALF_UP) == Decimal(printed)
    assert_rows(
        result,
        (
            "ENERGY",
            False,
            "0.25",
            billed_kwh,
            cost,
            str(Decimal(cost) * Decimal("1.1")),
            str(Decimal(billed_kwh) - Decimal("0.1152")),
        ),
    )


# PriceComponent.step_size: "if type is TIME and step_size has a value of 300 ... If 6 minutes were
# consumed, 10 minutes (2 blocks of step_size) will be billed" (tariff_put_example: TIME € 2/h, step 300).
def test_step_size_time_description() -> None:
    result = price(build_cdr(f"{MONDAY}T10:00", [charging(6, 1)]), tariff("tariff_put_example"))
    assert_rows(result, ("TIME", False, "2.00", 600, Fraction(1, 3), Fraction(11, 30), 240))


# NOTE under PriceComponent: "PARKING_TIME ... step_size = 300 ... when someone parked for 8 minutes they
# will be billed for 10 minutes" (tariff_13: parking € 5/h, step 300).
def test_step_size_parking_note() -> None:
    cdr = build_cdr(f"{MONDAY}T10:00", [charging(30, 10), parking(8)])
    result = price(cdr, tariff("tariff_13_simple_3hour_5parking"))
    assert_rows(
        result,
        ("TIME", False, "3.00", 30 * 60, "1.50", "1.65", 0),
        ("PARKING_TIME", False, "5.00", 10 * 60, Fraction(5, 6), Fraction(1, 1), 2 * 60),
    )


# § "Example: switching to different Tariff Element #1": plugs in 16:55, charges 10 minutes, parks 2
# -> € 0.55 excl: 5 min at 1.20/h 0.10, 5 min at 2.40/h 0.20, parking rounded to 15 min at 1.00/h 0.25.
# tariff_14 has no VAT: no incl amounts.
def test_step_size_switching_element_1() -> None:
    cdr = build_cdr(f"{TUESDAY}T16:55", [charging(5, 1), charging(5, 1), parking(2)])
    result = price(cdr, tariff("tariff_14_step_size"))
    assert_totals(result, cost=("0.55", None), time=("0.30", None), parking=("0.25", None))
    assert_rows(
        result,
        ("TIME", False, "1.20", 5 * 60, "0.10", None, 0),
        ("TIME", False, "2.40", 5 * 60, "0.20", None, 0),
        ("PARKING_TIME", False, "1.00", 15 * 60, "0.25", None, 13 * 60),
    )


# § "Example: switching to different Tariff Element #2": plugs in 16:35, charges 35 minutes, leaves
# -> € 1.30: total charging time 35 -> 45 minutes (step of the last element, 900 s); 25 min before
# 17:00 at 1.20/h = 0.50 and 20 min after 17:00 at 2.40/h = 0.80.
def test_step_size_switching_element_2() -> None:
    cdr = build_cdr(f"{TUESDAY}T16:35", [charging(25, 4), charging(10, 2)])
    result = price(cdr, tariff("tariff_14_step_size"))
    assert_totals(result, cost=("1.30", None), time=("1.30", None))
    assert_rows(
        result,
        ("TIME", False, "1.20", 25 * 60, "0.50", None, 0),
        ("TIME", False, "2.40", 20 * 60, "0.80", None, 10 * 60),
    )
    near(line_at(result, 1, "TIME").step_extra, 10 * 60)


# § "Example: switching to Free-of-Charge Tariff Element": plugs in 19:40, charges 12 minutes, parks
# 20 minutes (free from 20:00) -> € 0.73: 12 min at 2.40/h 0.48; the 8 billable parking minutes are
# rounded up to 15 and "the extra 7 minutes are then added to the last period with a Price Component
# with a time-based dimension, that is the one from 19:52 to 20:00": 15 min at 1.00/h 0.25.
def test_step_size_switching_to_free_element() -> None:
    cdr = build_cdr(f"{TUESDAY}T19:40", [charging(12, 3), parking(8), parking(12)])
    result = price(cdr, tariff("tariff_14_step_size"))
    assert_totals(result, cost=("0.73", None), time=("0.48", None), parking=("0.25", None))
    assert_rows(
        result,
        ("TIME", False, "2.40", 12 * 60, "0.48", None, 0),
        ("PARKING_TIME", False, "1.00", 15 * 60, "0.25", None, 7 * 60),
    )
    last = line_at(result, 1, "PARKING_TIME")
    near(last.step_extra, 7 * 60)
    assert not [ln for ln in result.lines if ln.period_index == 2 and ln.cost_excl != 0]


# TariffRestrictions.end_time: "To stop at end of the day use: 00:00" (tariff_14's third element is
# 20:00-00:00; its first is 00:00-17:00): 23:30-00:00 at 2.40/h, 00:00-00:30 at 1.20/h.
def test_end_time_midnight() -> None:
    cdr = build_cdr(f"{TUESDAY}T23:30", [charging(30, 5), charging(30, 5)])
    result = price(cdr, tariff("tariff_14_step_size"))
    assert_totals(result, cost=("1.80", None), time=("1.80", None))
    near(line_at(result, 0, "TIME").price, "2.40")
    near(line_at(result, 1, "TIME").price, "1.20")


# ============================================================================================
# mod_cdrs.asciidoc § step_size (mod_cdrs_step_size), tariffs built from the prose
# ============================================================================================


def two_rate_tariff(dimension: str, before: float, after: float, step: int) -> dict[str, Any]:
    """``dimension`` at ``before`` until 17:00 and ``after`` from 17:00, same step, no VAT."""
    return {
        "country_code": "NL",
        "party_id": "TST",
        "id": "cdrs-step",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": dimension, "price": before, "step_size": step}],
                "restrictions": {"start_time": "00:00", "end_time": "17:00"},
            },
            {
                "price_components": [{"type": dimension, "price": after, "step_size": step}],
                "restrictions": {"start_time": "17:00", "end_time": "00:00"},
            },
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }


# "Energy costs € 0.20 per kWh before 17:00 and € 0.27 per kWh after 17:00. Both ... step_size of 500 Wh.
# If a driver charges 4.3 kWh before 17:00 and 1.1 kWh after 17:00, a total of 5.4 kWh is charged. The
# step_size rounds this up to 5.5 kWh total. It does NOT round the energy used after 17:00 to 1.5 kWh."
# Billed: 4.3 kWh × 0.20 + 1.2 kWh × 0.27 = 0.86 + 0.324.
def test_cdrs_step_size_energy_total() -> None:
    cdr = build_cdr(f"{TUESDAY}T16:00", [charging(60, 4.3), charging(30, 1.1)])
    result = price(cdr, two_rate_tariff("ENERGY", 0.20, 0.27, 500))
    assert_totals(result, cost=("1.184", None), energy=("1.184", None))
    assert_rows(
        result,
        ("ENERGY", False, "0.20", "4.3", "0.86", None, 0),
        ("ENERGY", False, "0.27", "1.2", "0.324", None, "0.1"),
    )


# "Time costs € 5 per hour before 17:00 and € 7 per hour after 17:00. Both ... step_size of 10 minutes.
# If a driver charges 6 minutes before 17:00 and 22 minutes after 17:00 ... 28 minutes ... rounds this up
# to 30 minutes total, so 24 minutes after 17:00 will be billed." 6 min × 5/h + 24 min × 7/h = 0.50 + 2.80.
def test_cdrs_step_size_time_total() -> None:
    cdr = build_cdr(f"{TUESDAY}T16:54", [charging(6, 1), charging(22, 4)])
    result = price(cdr, two_rate_tariff("TIME", 5, 7, 600))
    assert_totals(result, cost=("3.30", None), time=("3.30", None))
    assert_rows(
        result,
        ("TIME", False, "5", 6 * 60, "0.50", None, 0),
        ("TIME", False, "7", 24 * 60, "2.80", None, 2 * 60),
    )


def time_and_parking_tariff(time_price: float, parking_price: float, step: int) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "TST",
        "id": "cdrs-step-tp",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [
                    {"type": "TIME", "price": time_price, "step_size": step},
                    {"type": "PARKING_TIME", "price": parking_price, "step_size": step},
                ]
            }
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }


# "Time spent charging costs € 1.00 per hour and time spent parking (not charging) costs € 2.00 per hour.
# Both ... step_size of 10 minutes. If a driver charges 21 minutes, and keeps his EV connected while it is
# full for another 16 minutes, then the step_size rounds the parking duration up to 20 minutes, making it
# a total of 41 minutes. Note that the charging duration is not rounded up".
def test_cdrs_step_size_charging_then_parking() -> None:
    cdr = build_cdr(f"{TUESDAY}T10:00", [charging(21, 5), parking(16)])
    result = price(cdr, time_and_parking_tariff(1.00, 2.00, 600))
    assert_totals(
        result,
        cost=(Fraction(61, 60), None),
        time=("0.35", None),
        parking=(Fraction(2, 3), None),
    )
    assert_rows(
        result,
        ("TIME", False, "1.00", 21 * 60, "0.35", None, 0),
        ("PARKING_TIME", False, "2.00", 20 * 60, Fraction(2, 3), None, 4 * 60),
    )
    assert sum(ln.quantity for ln in result.lines if ln.dimension != "FLAT") == 41 * 60


# "step_size for both charging (TIME) and parking is 5 minutes. After 21 minutes of charging, the EV is
# full but remains connected for 7 more minutes. The cost of charging will be calculated based on 21
# minutes (not 25). The cost of parking will be calculated based on 10 minutes" (prices not given: 1 and 2).
def test_cdrs_step_size_21_plus_7() -> None:
    cdr = build_cdr(f"{TUESDAY}T10:00", [charging(21, 5), parking(7)])
    result = price(cdr, time_and_parking_tariff(1.00, 2.00, 300))
    assert_rows(
        result,
        ("TIME", False, "1.00", 21 * 60, "0.35", None, 0),
        ("PARKING_TIME", False, "2.00", 10 * 60, Fraction(1, 3), None, 3 * 60),
    )


# mod_cdrs § CDR object example (examples/cdr_example.json): its own tariff (TIME € 2/h, step 300, 10%
# VAT) and its single 1.973 h period give total_cost 4.00 / 4.40 (rounded up to 2 hours).
def test_cdr_example() -> None:
    cdr = json.loads((EXAMPLES / "cdr_example.json").read_text(encoding="utf-8"))
    if "data" in cdr and "charging_periods" not in cdr:
        cdr = cdr["data"]
    result = price_cdr(cdr, cdr["tariffs"], time_zone="Europe/Brussels")
    assert_totals(
        result,
        cost=(cdr["total_cost"]["excl_vat"], cdr["total_cost"]["incl_vat"]),
        time=(cdr["total_time_cost"]["excl_vat"], cdr["total_time_cost"]["incl_vat"]),
    )


# ============================================================================================
# Restrictions in local time, DST, dates, energy, duration
# ============================================================================================


def restricted_time_tariff(restrictions: dict[str, Any]) -> dict[str, Any]:
    """TIME € 1/h while ``restrictions`` match, € 2/h otherwise; step 1 s, no VAT."""
    return {
        "country_code": "NL",
        "party_id": "TST",
        "id": "night",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "TIME", "price": 1.00, "step_size": 1}],
                "restrictions": restrictions,
            },
            {"price_components": [{"type": "TIME", "price": 2.00, "step_size": 1}]},
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }


def night_tariff(start: str, end: str) -> dict[str, Any]:
    return restricted_time_tariff({"start_time": start, "end_time": end})


# TariffRestrictions.start_time/end_time are "in local time, the time zone is defined in the time_zone
# field of the Location"; TIME is the elapsed charging time (CdrDimensionType TIME, in hours).
# Window 01:00-04:00 local in Europe/Amsterdam:
# * spring forward, 2024-03-31 (02:00 CET -> 03:00 CEST): 01:00 CET = 00:00Z, 04:00 CEST = 02:00Z: the
#   window lasts 2 real hours. Session 00:00 local (23:00Z) to 03:00Z = 4 hours: 1 h @2 + 2 h @1 + 1 h @2.
# * fall back, 2024-10-27 (03:00 CEST -> 02:00 CET): 01:00 CEST = 23:00Z, 04:00 CET = 03:00Z: 4 real hours.
#   Session 00:00 local (22:00Z) to 04:00Z = 6 hours: 1 h @2 + 4 h @1 (split at 02:30 CEST and at
#   02:30 CET, both inside) + 1 h @2.
# The same CDR priced in UTC (time_zone None) gives other amounts (so the local time is what decides).
@pytest.mark.parametrize("with_time_dimension", [True, False], ids=["TIME-volume", "duration"])
@pytest.mark.parametrize(
    ("local_start", "minutes", "night_minutes", "expected", "expected_utc"),
    [
        ("2024-03-31T00:00", [60, 120, 60], 120, "6.00", "7.00"),
        ("2024-10-27T00:00", [60, 90, 60, 90, 60], 240, "8.00", "9.50"),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_dst_local_wall_time_elapsed_duration(
    local_start: str,
    minutes: list[int],
    night_minutes: int,
    expected: str,
    expected_utc: str,
    with_time_dimension: bool,
) -> None:
    cdr = build_cdr(local_start, [charging(m, 1, time=with_time_dimension) for m in minutes])
    t = night_tariff("01:00", "04:00")
    result = price(cdr, t)
    assert_totals(result, cost=(expected, None), time=(expected, None))
    night = [ln for ln in result.lines if ln.dimension == "TIME" and ln.price == 1]
    assert sum(ln.quantity for ln in night) == night_minutes * 60
    assert sum(ln.quantity for ln in result.lines if ln.dimension == "TIME") == sum(minutes) * 60
    # In UTC the periods start at 23:00, 00:00, 02:00 (spring) / 22:00, 23:00, 00:30, 01:30, 03:00 (fall):
    # spring 1 h@2 + 2 h@2 + 1 h@1 = 7.00; fall 1 h@2 + 1.5 h@2 + 1 h@2 + 1.5 h@1 + 1 h@1 = 9.50.
    near(price(cdr, t, tz=None).totals["total_cost"].excl_vat, expected_utc)


# A 02:30-05:00 window on the spring-forward day, whose start (02:30 local) does not exist on 2024-03-31:
# a period starting at 00:30Z (01:30 CET) does not match; one at 01:00Z (03:00 CEST) does.
def test_dst_nonexistent_wall_time() -> None:
    cdr = build_cdr("2024-03-31T01:30", [charging(30, 1), charging(60, 1)])  # 00:30Z, 01:00Z (=03:00 CEST)
    result = price(cdr, night_tariff("02:30", "05:00"))
    near(line_at(result, 0, "TIME").price, "2.00")
    near(line_at(result, 1, "TIME").price, "1.00")


# end_time < start_time: "the period wraps around to the next day". Window 22:00-06:00; session
# 21:00-07:00 local with periods at 21:00, 22:00, 00:00, 03:00, 06:00: 1 h@2 + 8 h@1 + 1 h@2 = 12.00.
def test_time_window_wraps_past_midnight() -> None:
    cdr = build_cdr(
        f"{TUESDAY}T21:00",
        [charging(60, 1), charging(120, 1), charging(180, 1), charging(180, 1), charging(60, 1)],
    )
    result = price(cdr, night_tariff("22:00", "06:00"))
    assert_totals(result, cost=("12.00", None), time=("12.00", None))
    assert [str(line_at(result, i, "TIME").price.normalize()) for i in range(5)] == ["2", "1", "1", "1", "2"]


# start_date "valid from this day (inclusive)" / end_date "valid until this day (exclusive)", local time:
# window 2024-01-10 .. 2024-01-12. Periods start at local 2024-01-09 23:00, 2024-01-10 00:00
# (= 2024-01-09T23:00Z: the local date decides), 2024-01-11 23:30, 2024-01-12 00:00.
def test_start_and_end_date_local() -> None:
    cdr = build_cdr(
        "2024-01-09T23:00", [charging(60, 1), charging(47 * 60 + 30, 1), charging(30, 1), charging(60, 1)]
    )
    result = price(cdr, restricted_time_tariff({"start_date": "2024-01-10", "end_date": "2024-01-12"}))
    assert [str(line_at(result, i, "TIME").price.normalize()) for i in range(4)] == ["2", "1", "1", "2"]


# day_of_week in local time: a period starting Sunday 00:30 in Amsterdam (Saturday 22:30Z) is a Sunday.
def test_day_of_week_local() -> None:
    t = restricted_time_tariff({"day_of_week": ["SUNDAY"]})
    cdr = build_cdr("2024-06-08T23:30", [charging(60, 1), charging(60, 1)])  # Sat 23:30, Sun 00:30 local
    result = price(cdr, t)
    near(line_at(result, 0, "TIME").price, "2.00")
    near(line_at(result, 1, "TIME").price, "1.00")
    # The same CDR in UTC: both periods start on Saturday (21:30Z, 22:30Z).
    assert all(ln.price == 2 for ln in price(cdr, t, tz=None).lines)


# min_kwh "valid from this amount of energy (inclusive) being used", max_kwh "valid until this amount of
# energy (exclusive)": ENERGY € 0.30 for 10 <= consumed < 20 kWh, else € 0.20. Periods of 10, 10, 5 kWh
# start at 0, 10, 20 kWh consumed: 10×0.20 + 10×0.30 + 5×0.20 = 6.00.
def test_min_max_kwh() -> None:
    t = {
        "country_code": "NL",
        "party_id": "TST",
        "id": "kwh",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "ENERGY", "price": 0.30, "vat": 21, "step_size": 1}],
                "restrictions": {"min_kwh": 10, "max_kwh": 20},
            },
            {"price_components": [{"type": "ENERGY", "price": 0.20, "vat": 21, "step_size": 1}]},
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    cdr = build_cdr(f"{TUESDAY}T10:00", [charging(30, 10), charging(30, 10), charging(30, 5)])
    result = price(cdr, t)
    assert_totals(result, cost=("6.00", "7.26"), energy=("6.00", "7.26"))
    assert [str(line_at(result, i, "ENERGY").price.normalize()) for i in range(3)] == ["0.2", "0.3", "0.2"]


# min_duration "Minimum duration in seconds the Charging Session MUST last (inclusive)": counted from the
# start of charging, not from the start of a preceding reservation. Reservation 20 min, then periods
# starting 0, 20 and 30 minutes into charging: only the last has lasted >= 1800 s.
def test_min_duration_counts_from_charging_start() -> None:
    t = {
        "country_code": "NL",
        "party_id": "TST",
        "id": "dur",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "TIME", "price": 1.00, "step_size": 1}],
                "restrictions": {"reservation": "RESERVATION"},
            },
            {
                "price_components": [{"type": "ENERGY", "price": 0.50, "step_size": 1}],
                "restrictions": {"min_duration": 1800},
            },
            {"price_components": [{"type": "ENERGY", "price": 0.25, "step_size": 1}]},
        ],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    cdr = build_cdr(f"{TUESDAY}T10:00", [reserved(20), charging(20, 4), charging(10, 4), charging(10, 4)])
    result = price(cdr, t)
    assert [str(line_at(result, i, "ENERGY").price.normalize()) for i in (1, 2, 3)] == ["0.25", "0.25", "0.5"]
    assert_totals(
        result,
        cost=(Fraction(1, 3) + Fraction(4), None),
        energy=("4.00", None),
        reservation=(Fraction(1, 3), None),
    )


# ============================================================================================
# VAT, tariff validity, errors, JSON output
# ============================================================================================


def vat_tariff(flat_vat: float | None, energy_vat: float | None) -> dict[str, Any]:
    flat: dict[str, Any] = {"type": "FLAT", "price": 1.00, "step_size": 1}
    energy: dict[str, Any] = {"type": "ENERGY", "price": 0.25, "step_size": 1}
    if flat_vat is not None:
        flat["vat"] = flat_vat
    if energy_vat is not None:
        energy["vat"] = energy_vat
    return {
        "country_code": "NL",
        "party_id": "TST",
        "id": "vat",
        "currency": "EUR",
        "elements": [{"price_components": [flat, energy]}],
        "last_updated": "2024-01-01T00:00:00Z",
    }


# PriceComponent.vat: "If omitted, no VAT is applicable. Not providing a VAT is different from 0% VAT,
# which would be a value of 0.0 here." FLAT € 1.00 + 10 kWh × € 0.25.
@pytest.mark.parametrize(
    ("flat_vat", "energy_vat", "fixed", "energy", "total"),
    [
        (None, None, ("1.00", None), ("2.50", None), ("3.50", None)),
        (0, 0, ("1.00", "1.00"), ("2.50", "2.50"), ("3.50", "3.50")),
        (0, None, ("1.00", "1.00"), ("2.50", None), ("3.50", "3.50")),
        (20, None, ("1.00", "1.20"), ("2.50", None), ("3.50", "3.70")),
        (None, 10, ("1.00", None), ("2.50", "2.75"), ("3.50", "3.75")),
    ],
    ids=["absent", "zero", "zero-and-absent", "20-and-absent", "absent-and-10"],
)
def test_vat_absent_vs_zero(
    flat_vat: float | None,
    energy_vat: float | None,
    fixed: tuple[Any, Any],
    energy: tuple[Any, Any],
    total: tuple[Any, Any],
) -> None:
    result = price(build_cdr(f"{TUESDAY}T10:00", [charging(60, 10)]), vat_tariff(flat_vat, energy_vat))
    assert_totals(result, cost=total, fixed=fixed, energy=energy)
    for line in result.lines:
        component_vat = flat_vat if line.dimension == "FLAT" else energy_vat
        if component_vat is None:
            assert line.vat is None and line.cost_incl is None
        else:
            assert line.vat == Decimal(str(component_vat))
            assert line.cost_incl == line.cost_excl * (1 + Decimal(str(component_vat)) / 100)


# Tariff.start_date_time / end_date_time ("The time when this tariff becomes active" / "The time after
# which this tariff is no longer valid", UTC): an old tariff ending and a new one starting at local
# midnight 2019-07-01 (22:00Z); the session crosses it: 10 kWh at 0.25 + 10 kWh at 0.30. The order of
# the list does not matter.
@pytest.mark.parametrize("reverse", [False, True])
def test_tariff_validity_window(reverse: bool) -> None:
    old = tariff("tariff_8_simple_025kwh", id="old", end_date_time="2019-06-30T22:00:00Z")
    new = with_component(
        tariff("tariff_8_simple_025kwh", id="new", start_date_time="2019-06-30T22:00:00Z"),
        "ENERGY",
        price=0.30,
    )
    tariffs = [new, old] if reverse else [old, new]
    cdr = build_cdr("2019-06-30T23:00", [charging(60, 10), charging(60, 10)])
    result = price(cdr, tariffs)
    assert_totals(result, cost=("5.50", "6.05"), energy=("5.50", "6.05"))
    assert line_at(result, 0, "ENERGY").tariff_id == "old"
    assert line_at(result, 1, "ENERGY").tariff_id == "new"


# ChargingPeriod.tariff_id: "Unique identifier of the Tariff that is relevant for this Charging Period".
def test_period_tariff_id_selects_tariff() -> None:
    a = tariff("tariff_8_simple_025kwh", id="A")
    b = with_component(tariff("tariff_8_simple_025kwh", id="B"), "ENERGY", price=0.40)
    cdr = build_cdr(f"{TUESDAY}T10:00", [(30, {"ENERGY": 10}, "B"), (30, {"ENERGY": 10}, "A")])
    result = price(cdr, [a, b])
    assert_totals(result, cost=("6.50", "7.15"), energy=("6.50", "7.15"))
    assert [line_at(result, i, "ENERGY").tariff_id for i in (0, 1)] == ["B", "A"]


def test_currency_mismatch_raises() -> None:
    cdr = build_cdr(f"{TUESDAY}T10:00", [charging(60, 10)], currency="USD")
    with pytest.raises(PricingError):
        price(cdr, tariff("tariff_8_simple_025kwh"))


@pytest.mark.parametrize(
    ("mutate", "tz"),
    [
        (lambda c: c.update(charging_periods=[]), AMS),
        (lambda c: None, "Mars/Olympus_Mons"),
        (lambda c: c["charging_periods"][0].update(start_date_time="yesterday"), AMS),
        (lambda c: c["charging_periods"][0]["dimensions"][0].update(volume="lots"), AMS),
    ],
    ids=["no-periods", "unknown-time-zone", "bad-datetime", "bad-volume"],
)
def test_unusable_input_raises(mutate: Any, tz: str) -> None:
    cdr = build_cdr(f"{TUESDAY}T10:00", [charging(60, 10)])
    mutate(cdr)
    with pytest.raises(PricingError):
        price(cdr, tariff("tariff_8_simple_025kwh"), tz=tz)


# to_json: totals rounded half-up to 4 places (1 Wh × € 0.25 = 0.00025 -> 0.0003, incl 0.000275 ->
# 0.0003), incl_vat absent when there is no VAT.
def test_to_json_rounding_and_shape() -> None:
    result = price(build_cdr(f"{TUESDAY}T10:00", [charging(60, 0.001)]), tariff("tariff_8_simple_025kwh"))
    out = result.to_json()
    assert out["currency"] == "EUR"
    for key in TOTAL_KEYS.values():
        assert key in out, key
    assert Decimal(str(out["total_cost"]["excl_vat"])) == Decimal("0.0003")
    assert Decimal(str(out["total_cost"]["incl_vat"])) == Decimal("0.0003")
    assert Decimal(str(out["total_energy"])) == Decimal("0.001")
    assert Decimal(str(out["total_time"])) == 1
    assert Decimal(str(out["total_parking_time"])) == 0
    assert isinstance(out["breakdown"], list) and out["breakdown"]
    json.dumps(out, default=str)

    cdr = build_cdr(f"{TUESDAY}T16:35", [charging(25, 1), charging(10, 1)])
    no_vat = price(cdr, tariff("tariff_14_step_size")).to_json()
    assert "incl_vat" not in no_vat["total_cost"]
    assert Decimal(str(no_vat["total_cost"]["excl_vat"])) == Decimal("1.30")
