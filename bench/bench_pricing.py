"""Tariff engine throughput: CDRs priced per second on a realistic mix, against a naive baseline.

The mix (seeded, the same on every run): 2,000 CDRs with 1 to 50 charging periods (ENERGY, TIME or
PARKING_TIME, MAX_CURRENT, MAX_POWER dimensions), priced with tariffs of 1 to 4 elements carrying
restrictions (time of day, day of week, max_current, max_power, min/max_kwh, max_duration), step
sizes, VAT and min/max prices, in Europe/Amsterdam local time. Each tariff is compiled once
(`compile_tariff`), as a caller pricing many CDRs does.

Baseline: what a "sum quantity x price" pricer does over the same CDRs in Decimal: per period, the
first element's price per dimension times the volume; no restrictions, no step_size, no VAT rules,
no min/max. Printed as a ratio: the cost of being exact.

    .venv/bin/python bench/bench_pricing.py [--cdrs 2000] [--rounds 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common import add_json_option, row, write_json  # (also: sys.path and a quiet environment)

from shared.pricing import compile_tariff, price_cdr

N_CDRS = 2000
ROUNDS = 3


def tariffs(rng: random.Random) -> list[dict]:
    out = []
    for i in range(20):
        elements = []
        for _ in range(rng.randint(1, 4) - 1):
            restrictions = rng.choice(
                [
                    {"start_time": "17:00", "end_time": "23:00"},
                    {"start_time": "22:00", "end_time": "06:00"},
                    {"day_of_week": ["SATURDAY", "SUNDAY"]},
                    {"max_current": 32},
                    {"max_power": 22},
                    {"min_kwh": 20, "max_kwh": 60},
                    {"max_duration": 3600},
                ]
            )
            components = [
                {"type": "ENERGY", "price": rng.choice([0.25, 0.39, 0.59]), "vat": 21, "step_size": 1},
                {"type": "TIME", "price": rng.choice([0.5, 1.2, 2.4]), "vat": 21, "step_size": 60},
            ]
            elements.append(
                {"price_components": rng.sample(components, rng.randint(1, 2)), "restrictions": restrictions}
            )
        elements.append(
            {
                "price_components": [
                    {"type": "FLAT", "price": 0.35, "vat": 21, "step_size": 1},
                    {"type": "ENERGY", "price": 0.45, "vat": 21, "step_size": 100},
                    {"type": "PARKING_TIME", "price": 6, "vat": 21, "step_size": 300},
                ]
            }
        )
        tariff = {
            "country_code": "NL",
            "party_id": "CPO",
            "id": f"T{i}",
            "currency": "EUR",
            "elements": elements,
        }
        if i % 3 == 0:
            tariff["max_price"] = {"excl_vat": 40, "incl_vat": 48.4}
        if i % 5 == 0:
            tariff["min_price"] = {"excl_vat": 1, "incl_vat": 1.21}
        out.append(tariff)
    return out


def cdrs(rng: random.Random, n: int = N_CDRS) -> list[dict]:
    out = []
    base = datetime(2026, 3, 1, tzinfo=UTC)
    for i in range(n):
        start = base + timedelta(minutes=rng.randrange(60 * 24 * 60))
        at = start
        periods = []
        for _ in range(rng.randint(1, 50)):
            minutes = rng.randint(1, 30)
            if rng.random() < 0.85:
                dims = [
                    {"type": "ENERGY", "volume": round(rng.uniform(0.1, 8), 3)},
                    {"type": "TIME", "volume": round(minutes / 60, 6)},
                    {"type": "MAX_CURRENT", "volume": rng.choice([16, 32, 63, 125])},
                    {"type": "MAX_POWER", "volume": rng.choice([11, 22, 50, 150])},
                ]
            else:
                dims = [{"type": "PARKING_TIME", "volume": round(minutes / 60, 6)}]
            periods.append({"start_date_time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "dimensions": dims})
            at += timedelta(minutes=minutes)
        out.append(
            {
                "id": f"C{i}",
                "currency": "EUR",
                "start_date_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_date_time": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "charging_periods": periods,
            }
        )
    return out


def naive(cdr: dict, tariff: dict) -> Decimal:
    """Sum quantity x price per period in Decimal: the first component per dimension, no rules."""
    prices: dict[str, Decimal] = {}
    for element in tariff["elements"]:
        for pc in element["price_components"]:
            prices.setdefault(pc["type"], Decimal(repr(pc["price"])))
    total = prices.get("FLAT", Decimal(0))
    for period in cdr["charging_periods"]:
        for dim in period["dimensions"]:
            price = prices.get(dim["type"])
            if price is not None:
                total += Decimal(repr(dim["volume"])) * price
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cdrs", type=int, default=N_CDRS)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="the best of this many rounds counts")
    add_json_option(parser)
    args = parser.parse_args()
    rng = random.Random(8)
    raw_tariffs = tariffs(rng)
    compiled = [compile_tariff(t) for t in raw_tariffs]
    mix = [(cdr, i % len(raw_tariffs)) for i, cdr in enumerate(cdrs(rng, args.cdrs))]
    periods = sum(len(c["charging_periods"]) for c, _ in mix)

    best_exact = best_naive = float("inf")
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for cdr, t in mix:
            price_cdr(cdr, compiled[t], time_zone="Europe/Amsterdam")
        best_exact = min(best_exact, time.perf_counter() - t0)
        t0 = time.perf_counter()
        for cdr, t in mix:
            naive(cdr, raw_tariffs[t])
        best_naive = min(best_naive, time.perf_counter() - t0)

    print(
        f"CDRs: {len(mix)}, charging periods: {periods} "
        f"(mean {periods / len(mix):.1f} per CDR), best of {args.rounds}"
    )
    print(f"{'pricer':<34} {'CDRs/s':>10} {'periods/s':>12} {'us/CDR':>8}")
    for label, seconds in (
        ("engine (every rule, exact)", best_exact),
        ("naive sum quantity x price", best_naive),
    ):
        print(
            f"{label:<34} {len(mix) / seconds:>10,.0f} {periods / seconds:>12,.0f}"
            f" {seconds / len(mix) * 1e6:>8.0f}"
        )
    print(f"ratio engine / naive time: {best_exact / best_naive:.2f}x (the cost of being exact)")
    mix_text = f"{len(mix)} CDRs, mean {periods / len(mix):.1f} periods, 1-4 restricted elements"
    summary = [
        row(
            "pricing engine throughput",
            round(len(mix) / best_exact),
            "CDRs/s",
            f"every rule, exact; {mix_text}",
        ),
        row(
            "naive pricer throughput",
            round(len(mix) / best_naive),
            "CDRs/s",
            "sum quantity x price, no rules",
        ),
        row(
            "pricing engine / naive time",
            round(best_exact / best_naive, 2),
            "ratio",
            "the cost of being exact (lower is better)",
        ),
    ]
    details = {"cdrs": len(mix), "periods": periods, "engine_s": best_exact, "naive_s": best_naive}
    write_json(args.json, "bench_pricing", summary, details)


if __name__ == "__main__":
    main()
