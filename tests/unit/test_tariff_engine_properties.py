"""Properties of the tariff engine (``shared.pricing.price_cdr``), checked with hypothesis.

(a) Splitting a charging period at any instant (its ENERGY / TIME / PARKING_TIME / RESERVATION_TIME
    volumes divided in proportion) never changes the totals, as long as no restriction boundary lies
    inside the session: the generated restrictions are either always or never true during it (time
    windows around or away from the session, dates, weekdays, kWh and duration bounds outside the
    session's range) or depend only on the period's own power, which a proportional split keeps.
    This is what mod_cdrs § ChargingPeriod allows: "The CPO is allowed to add more in-between Charging
    Periods to a CDR" - they must not change the price.
(b) Multiplying every price component's price by k multiplies every total by k (no min/max price).
(c) With min_price / max_price, total_cost.excl_vat lies in [min, max], and incl_vat too when both it
    and the bound have one; the sub-totals are not clamped.
(d) The totals are the sums of the breakdown lines per category (before clamping); each line costs
    price × quantity, with VAT as the component says.

Sessions are built from 36-second units (0.01 h) and Wh, so every volume is an exact decimal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.pricing import price_cdr

AMS = "Europe/Amsterdam"
ZONE = ZoneInfo(AMS)
UNIT = 36  # seconds: 0.01 hour
TOL = Decimal("1e-15")
TOTALS = (
    "total_cost",
    "total_fixed_cost",
    "total_energy_cost",
    "total_time_cost",
    "total_parking_cost",
    "total_reservation_cost",
)
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
ENERGY_STEPS = [1, 10, 100, 250, 500, 1000]
TIME_STEPS = [1, 60, 300, 600, 900, 1800]
VATS = [None, 0, 5.2, 10, 20, 21]

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------------------------
# Sessions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    kind: str  # "charge" (ENERGY + TIME), "charge_energy_only", "park", "reserve"
    units: int  # length in 36 s units
    rate: int = 0  # Wh per unit (charging kinds)

    def dimensions(self) -> dict[str, float]:
        hours = float(Decimal(self.units) / 100)
        kwh = float(Decimal(self.units * self.rate) / 1000)
        if self.kind == "charge":
            return {"ENERGY": kwh, "TIME": hours}
        if self.kind == "charge_energy_only":
            return {"ENERGY": kwh}
        if self.kind == "park":
            return {"PARKING_TIME": hours}
        return {"RESERVATION_TIME": hours}


@dataclass(frozen=True)
class Session:
    start: datetime  # aware, local
    segments: tuple[Segment, ...]

    @property
    def seconds(self) -> int:
        return sum(s.units for s in self.segments) * UNIT

    @property
    def kwh(self) -> Decimal:
        return sum((Decimal(s.units * s.rate) / 1000 for s in self.segments), Decimal(0))

    def cdr(self) -> dict[str, Any]:
        t = self.start.astimezone(UTC)
        periods = []
        for segment in self.segments:
            periods.append(
                {
                    "start_date_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "dimensions": [{"type": k, "volume": v} for k, v in segment.dimensions().items()],
                }
            )
            t += timedelta(seconds=segment.units * UNIT)
        return {
            "currency": "EUR",
            "start_date_time": periods[0]["start_date_time"],
            "end_date_time": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "charging_periods": periods,
        }

    def split(self, index: int, at_units: int) -> Session:
        s = self.segments[index]
        assert 0 < at_units < s.units
        first = Segment(s.kind, at_units, s.rate)
        second = Segment(s.kind, s.units - at_units, s.rate)
        return Session(self.start, (*self.segments[:index], first, second, *self.segments[index + 1 :]))


@st.composite
def sessions(draw: Any) -> Session:
    """A session within one local day, between 08:00 and 17:00 in Amsterdam (a random weekday)."""
    day = date(2024, 6, 3) + timedelta(days=draw(st.integers(0, 6)))
    start = datetime(day.year, day.month, day.day, 8, 0, tzinfo=ZONE) + timedelta(
        seconds=UNIT * draw(st.integers(0, 100))
    )
    segments: list[Segment] = []
    if draw(st.booleans()):
        segments.append(Segment("reserve", draw(st.integers(1, 60))))
    expired = bool(segments) and draw(st.integers(0, 4)) == 0
    if not expired:
        for kind in draw(
            st.lists(
                st.sampled_from(["charge", "charge", "charge_energy_only", "park"]), min_size=1, max_size=5
            )
        ):
            rate = draw(st.integers(0, 300)) if kind.startswith("charge") else 0
            segments.append(Segment(kind, draw(st.integers(1, 120)), rate))
    return Session(start, tuple(segments))


# --------------------------------------------------------------------------------------------
# Tariffs
# --------------------------------------------------------------------------------------------


@st.composite
def components(draw: Any, dimensions: list[str]) -> list[dict[str, Any]]:
    out = []
    for dimension in draw(
        st.lists(st.sampled_from(dimensions), min_size=1, max_size=len(dimensions), unique=True)
    ):
        component: dict[str, Any] = {
            "type": dimension,
            "price": float(Decimal(draw(st.integers(0, 500))) / 100),
            "step_size": 1
            if dimension == "FLAT"
            else draw(st.sampled_from(ENERGY_STEPS if dimension == "ENERGY" else TIME_STEPS)),
        }
        vat = draw(st.sampled_from(VATS))
        if vat is not None:
            component["vat"] = vat
        out.append(component)
    return out


@st.composite
def constant_restrictions(draw: Any, session: Session) -> dict[str, Any] | None:
    """Restrictions whose outcome cannot change inside ``session`` (or depends only on the period's power)."""
    kinds = draw(st.sets(st.sampled_from(["time", "day", "date", "kwh", "duration", "power"]), max_size=3))
    if not kinds:
        return None
    r: dict[str, Any] = {}
    total_kwh = float(session.kwh)
    if "time" in kinds:  # the session is within 08:00-17:00 local
        r["start_time"], r["end_time"] = draw(
            st.sampled_from(
                [
                    ("07:00", "21:00"),
                    ("06:00", "00:00"),
                    ("05:00", "04:00"),
                    ("00:00", "07:30"),
                    ("21:00", "23:00"),
                    ("22:00", "06:00"),
                ]
            )
        )
    if "day" in kinds:
        r["day_of_week"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
    if "date" in kinds:
        day = session.start.date()
        a = draw(st.integers(-3, 1))
        b = draw(st.integers(a + 1, a + 4))
        r["start_date"] = (day + timedelta(days=a)).isoformat()
        r["end_date"] = (day + timedelta(days=b)).isoformat()
    if "kwh" in kinds:
        r[draw(st.sampled_from(["min_kwh", "max_kwh"]))] = draw(st.sampled_from([0, total_kwh + 1]))
    if "duration" in kinds:
        r[draw(st.sampled_from(["min_duration", "max_duration"]))] = draw(
            st.sampled_from([0, session.seconds + 1])
        )
    if "power" in kinds:
        r[draw(st.sampled_from(["min_power", "max_power"]))] = draw(st.integers(0, 40))
    return r


@st.composite
def scenarios(draw: Any) -> tuple[Session, dict[str, Any]]:
    session = draw(sessions())
    elements: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        element: dict[str, Any] = {
            "price_components": draw(components(["FLAT", "ENERGY", "TIME", "PARKING_TIME"]))
        }
        restrictions = draw(constant_restrictions(session))
        if restrictions:
            element["restrictions"] = restrictions
        elements.append(element)
    for _ in range(draw(st.integers(0, 2))):
        reservation = {
            "price_components": draw(components(["FLAT", "TIME"])),
            "restrictions": {"reservation": draw(st.sampled_from(["RESERVATION", "RESERVATION_EXPIRES"]))},
        }
        elements.insert(draw(st.integers(0, len(elements))), reservation)
    tariff = {
        "country_code": "NL",
        "party_id": "TST",
        "id": "prop",
        "currency": "EUR",
        "elements": elements,
        "last_updated": "2024-01-01T00:00:00Z",
    }
    return session, tariff


def price(session: Session, tariff: dict[str, Any]) -> Any:
    return price_cdr(session.cdr(), tariff, time_zone=AMS)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def close(a: Decimal | None, b: Decimal | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= TOL


def assert_same_totals(got: Any, want: Any) -> None:
    for key in TOTALS:
        g, w = got.totals[key], want.totals[key]
        assert close(g.excl_vat, w.excl_vat), f"{key}.excl_vat: {g.excl_vat} != {w.excl_vat}"
        assert close(g.incl_vat, w.incl_vat), f"{key}.incl_vat: {g.incl_vat} != {w.incl_vat}"


def category(line: Any) -> str:
    if line.reservation:
        return "total_reservation_cost"
    return {
        "FLAT": "total_fixed_cost",
        "ENERGY": "total_energy_cost",
        "TIME": "total_time_cost",
        "PARKING_TIME": "total_parking_cost",
    }[line.dimension]


def line_sum(lines: list[Any]) -> tuple[Decimal, Decimal | None]:
    excl = sum((ln.cost_excl for ln in lines), Decimal(0))
    if all(ln.cost_incl is None for ln in lines):
        return excl, None
    incl = sum((ln.cost_excl if ln.cost_incl is None else ln.cost_incl for ln in lines), Decimal(0))
    return excl, incl


def clamp(value: Decimal | None, low: Any, high: Any) -> Decimal | None:
    if value is None:
        return None
    if low is not None and value < Decimal(str(low)):
        value = Decimal(str(low))
    if high is not None and value > Decimal(str(high)):
        value = Decimal(str(high))
    return value


# --------------------------------------------------------------------------------------------
# (a) splitting a period
# --------------------------------------------------------------------------------------------


@FAST
@given(data=st.data(), scenario=scenarios())
def test_splitting_a_period_keeps_the_totals(data: Any, scenario: tuple[Session, dict[str, Any]]) -> None:
    session, tariff = scenario
    splittable = [i for i, s in enumerate(session.segments) if s.units >= 2]
    assume(splittable)
    index = data.draw(st.sampled_from(splittable), label="index")
    at = data.draw(st.integers(1, session.segments[index].units - 1), label="at")
    assert_same_totals(price(session.split(index, at), tariff), price(session, tariff))


# --------------------------------------------------------------------------------------------
# (b) scaling the prices
# --------------------------------------------------------------------------------------------


@FAST
@given(scenario=scenarios(), k=st.sampled_from(["0", "0.1", "0.5", "1.5", "2", "3", "10"]))
def test_scaling_prices_scales_totals(scenario: tuple[Session, dict[str, Any]], k: str) -> None:
    session, tariff = scenario
    factor = Decimal(k)
    scaled = {
        **tariff,
        "elements": [
            {
                **element,
                "price_components": [
                    {**c, "price": float(Decimal(repr(c["price"])) * factor)}
                    for c in element["price_components"]
                ],
            }
            for element in tariff["elements"]
        ],
    }
    base, result = price(session, tariff), price(session, scaled)
    for key in TOTALS:
        b, r = base.totals[key], result.totals[key]
        assert close(r.excl_vat, b.excl_vat * factor), f"{key}.excl_vat: {r.excl_vat} != {k} × {b.excl_vat}"
        expected_incl = None if b.incl_vat is None else b.incl_vat * factor
        assert close(r.incl_vat, expected_incl), f"{key}.incl_vat: {r.incl_vat} != {k} × {b.incl_vat}"


# --------------------------------------------------------------------------------------------
# (c) min_price / max_price
# --------------------------------------------------------------------------------------------


@st.composite
def price_bounds(draw: Any) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    which = draw(st.sampled_from(["min", "max", "both"]))
    low_excl = Decimal(draw(st.integers(0, 3000))) / 100
    high_excl = low_excl + Decimal(draw(st.integers(0, 3000))) / 100
    low_incl = Decimal(draw(st.integers(0, 3600))) / 100
    high_incl = low_incl + Decimal(draw(st.integers(0, 3600))) / 100
    with_incl = draw(st.booleans())
    low: dict[str, float] = {"excl_vat": float(low_excl)}
    high: dict[str, float] = {"excl_vat": float(high_excl)}
    if with_incl:
        low["incl_vat"] = float(low_incl)
        high["incl_vat"] = float(high_incl)
    return (low if which != "max" else None, high if which != "min" else None)


@FAST
@given(scenario=scenarios(), bounds=price_bounds())
def test_min_max_price_bound_total_cost(scenario: tuple[Session, dict[str, Any]], bounds: Any) -> None:
    session, tariff = scenario
    low, high = bounds
    bounded = dict(tariff)
    if low is not None:
        bounded["min_price"] = low
    if high is not None:
        bounded["max_price"] = high
    raw, result = price(session, tariff), price(session, bounded)
    total = result.totals["total_cost"]

    if low is not None:
        assert total.excl_vat >= Decimal(str(low["excl_vat"]))
    if high is not None:
        assert total.excl_vat <= Decimal(str(high["excl_vat"]))
    if total.incl_vat is not None:
        if low is not None and "incl_vat" in low:
            assert total.incl_vat >= Decimal(str(low["incl_vat"]))
        if high is not None and "incl_vat" in high:
            assert total.incl_vat <= Decimal(str(high["incl_vat"]))

    # Exactly the clamp of the unbounded total; the sub-totals are untouched.
    raw_total = raw.totals["total_cost"]
    assert close(
        total.excl_vat,
        clamp(raw_total.excl_vat, low and low["excl_vat"], high and high["excl_vat"]),
    )
    assert close(
        total.incl_vat,
        clamp(raw_total.incl_vat, low and low.get("incl_vat"), high and high.get("incl_vat")),
    )
    for key in TOTALS[1:]:
        assert result.totals[key] == raw.totals[key], key


# --------------------------------------------------------------------------------------------
# (d) totals are the sums of the lines
# --------------------------------------------------------------------------------------------


@FAST
@given(scenario=scenarios(), bounds=st.one_of(st.just((None, None)), price_bounds()))
def test_totals_are_sums_of_lines(scenario: tuple[Session, dict[str, Any]], bounds: Any) -> None:
    session, tariff = scenario
    low, high = bounds
    if low is not None:
        tariff = {**tariff, "min_price": low}
    if high is not None:
        tariff = {**tariff, "max_price": high}
    result = price(session, tariff)

    for key in TOTALS[1:]:
        excl, incl = line_sum([ln for ln in result.lines if category(ln) == key])
        total = result.totals[key]
        assert close(total.excl_vat, excl), f"{key}.excl_vat: {total.excl_vat} != lines {excl}"
        assert close(total.incl_vat, incl), f"{key}.incl_vat: {total.incl_vat} != lines {incl}"

    excl, incl = line_sum(result.lines)
    total = result.totals["total_cost"]
    assert close(total.excl_vat, clamp(excl, low and low["excl_vat"], high and high["excl_vat"]))
    assert close(total.incl_vat, clamp(incl, low and low.get("incl_vat"), high and high.get("incl_vat")))

    for line in result.lines:
        assert 0 <= line.step_extra <= line.quantity, line
        per_unit = {
            "FLAT": Decimal(1),
            "ENERGY": Decimal(1),
            "TIME": Decimal(3600),
            "PARKING_TIME": Decimal(3600),
        }
        if line.dimension == "FLAT":
            assert line.quantity == 1, line
        assert close(line.cost_excl, line.price * line.quantity / per_unit[line.dimension]), line
        if line.vat is None:
            assert line.cost_incl is None, line
        else:
            assert close(line.cost_incl, line.cost_excl * (1 + line.vat / 100)), line
