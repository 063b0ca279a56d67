"""Tariff engine rules that are ours where the spec is silent (shared/pricing/engine.py docstring):
time volumes to whole seconds, a running reservation is not an expired one, min/max price from
the tariff the charging session started under, and a note when local time is unknown."""

from __future__ import annotations

from decimal import Decimal

from shared.pricing import price_cdr, price_session


def tariff(elements, **extra) -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": extra.pop("id", "T"),
        "currency": "EUR",
        "elements": elements,
        **extra,
    }


def period(start: str, **dims) -> dict:
    return {"start_date_time": start, "dimensions": [{"type": k, "volume": v} for k, v in dims.items()]}


def cdr(periods, end: str) -> dict:
    return {
        "currency": "EUR",
        "start_date_time": periods[0]["start_date_time"],
        "end_date_time": end,
        "charging_periods": periods,
    }


def test_hours_that_are_a_hair_above_a_step_boundary_stay_in_their_step() -> None:
    """7 minutes sent as 0.116667 h is 420.0012 s: billed as 7 minutes with a 60 s step, not 8."""
    t = tariff([{"price_components": [{"type": "PARKING_TIME", "price": 6, "step_size": 60}]}])
    for volume in (0.116667, 7 / 60, 0.1166666):
        result = price_cdr(
            cdr([period("2026-01-05T10:00:00Z", PARKING_TIME=volume)], "2026-01-05T10:07:00Z"), t
        )
        (line,) = result.lines
        assert line.quantity == 420 and line.step_extra == 0, volume
        assert result.totals["total_parking_cost"].excl_vat == Decimal("0.7")


def test_a_running_reservation_is_not_priced_as_expired() -> None:
    t = tariff(
        [
            {
                "price_components": [{"type": "FLAT", "price": 4, "step_size": 1}],
                "restrictions": {"reservation": "RESERVATION_EXPIRES"},
            },
            {
                "price_components": [{"type": "TIME", "price": 2, "step_size": 1}],
                "restrictions": {"reservation": "RESERVATION"},
            },
        ]
    )
    periods = [period("2026-01-05T10:00:00Z", RESERVATION_TIME=0.5)]
    session = {
        "currency": "EUR",
        "status": "RESERVATION",
        "charging_periods": periods,
        "end_date_time": None,
        "start_date_time": "2026-01-05T10:00:00Z",
    }
    running = price_session(session, t, now="2026-01-05T10:30:00Z")
    assert running.totals["total_cost"].excl_vat == 1  # 30 min at 2/h, no expiry fee
    expired = price_cdr(cdr(periods, "2026-01-05T10:30:00Z"), t)
    assert expired.totals["total_cost"].excl_vat == 5  # the expiry fee too


def test_min_max_price_come_from_the_tariff_the_session_started_under() -> None:
    early = tariff(
        [{"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}]}],
        id="A",
        max_price={"excl_vat": 5},
        end_date_time="2026-01-05T11:00:00Z",
    )
    late = tariff(
        [{"price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}]}],
        id="B",
        max_price={"excl_vat": 100},
        start_date_time="2026-01-05T11:00:00Z",
    )
    periods = [period("2026-01-05T10:00:00Z", ENERGY=4), period("2026-01-05T11:00:00Z", ENERGY=4)]
    result = price_cdr(cdr(periods, "2026-01-05T12:00:00Z"), [late, early])
    assert result.tariff_ids == ["A", "B"]
    assert result.totals["total_energy_cost"].excl_vat == 8
    assert result.totals["total_cost"].excl_vat == 5  # A's max_price
    assert result.adjustment.excl_vat == -3


def test_local_time_restrictions_without_a_time_zone_are_noted() -> None:
    t = tariff(
        [
            {
                "price_components": [{"type": "ENERGY", "price": 1, "step_size": 1}],
                "restrictions": {"start_time": "18:00", "end_time": "22:00"},
            }
        ]
    )
    result = price_cdr(cdr([period("2026-01-05T18:30:00Z", ENERGY=1)], "2026-01-05T19:00:00Z"), t)
    assert result.totals["total_cost"].excl_vat == 1
    assert any("no time zone" in note for note in result.notes)
    assert not price_cdr(
        cdr([period("2026-01-05T18:30:00Z", ENERGY=1)], "2026-01-05T19:00:00Z"), t, time_zone="UTC"
    ).notes
