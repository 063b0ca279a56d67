"""Locations cost model on moto (DynamoDB requests and consumed units per operation).

1. EVSE status PATCH on a location with 1 EVSE vs 500 EVSEs (goal: equal).
2. GET of one location by id (goal: 1 query).
3. Full crawl through our Link headers (sender GET, limit 100) of N1 vs N2 locations: read
   requests, read units and wall time, each as a ratio (goal: linear, i.e. ratio ~ N2/N1).

    .venv/bin/python bench/bench_locations.py [--small 1000 --large 4000] [--json PATH]
"""

from __future__ import annotations

import argparse
import base64
import copy
import importlib.util
import json
import time
from datetime import UTC, datetime, timedelta

from common import EXAMPLES, ROOT, add_json_option, moto_stack, row, usage_text, write_json

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def location(i: int, evses: int) -> dict:
    base = json.loads((EXAMPLES / "location_example.json").read_text())
    template = base["evses"][0]
    loc = {k: v for k, v in base.items() if k != "evses"}
    loc.update(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": f"L{i:07d}",
            "last_updated": (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    loc["evses"] = []
    for e in range(evses):
        ev = copy.deepcopy(template)
        ev["uid"] = f"E{e:04d}"
        ev.pop("evse_id", None)
        loc["evses"].append(ev)
    return loc


def main() -> None:
    parser = argparse.ArgumentParser()
    # moto's Query is O(items in the table), so on moto the crawl's wall time grows faster than
    # our request count; the defaults keep the run to a few minutes.
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=4000)
    add_json_option(parser)
    args = parser.parse_args()
    summary: list[dict] = []

    from fastapi.testclient import TestClient

    from shared.auth import hash_token
    from shared.services import locations
    from shared.store.base import TokenRecord
    from shared.store.meter import METER

    with moto_stack() as (store, _):
        print("EVSE status PATCH (one EVSE of a location), DynamoDB cost:")
        for n in (1, 500):
            loc = location(900000 + n, n)
            locations.put_location(store, None, "NL", "CPO", loc["id"], loc)
            METER.reset()
            locations.patch_evse(
                store,
                None,
                "NL",
                "CPO",
                loc["id"],
                "E0000",
                {"status": "CHARGING", "last_updated": "2030-01-01T00:00:00Z"},
            )
            u = METER.reset()
            print(
                f"  {n:>4} EVSEs: {u.total_requests} requests ({dict(u.requests)}), "
                f"write units {u.write_units:.1f}, read units {u.read_units:.1f}"
            )
            summary.append(
                row(
                    f"EVSE status PATCH, location of {n} EVSEs",
                    usage_text(u),
                    "req / RCU / WCU",
                    f"one EVSE's status; must not grow with the location's size: {dict(u.requests)}",
                )
            )
            METER.reset()
            locations.get_own(store, loc["id"])
            u = METER.reset()
            print(
                f"        GET location by id: {u.total_requests} request(s) ({dict(u.requests)}), "
                f"read units {u.read_units:.1f}"
            )
            summary.append(
                row(
                    f"GET location by id, {n} EVSEs",
                    usage_text(u),
                    "req / RCU / WCU",
                    f"the whole location with its EVSEs: {dict(u.requests)}",
                )
            )
            store.delete(locations.objects.ref_of(locations.KIND, "NL", "CPO", loc["id"]))

        store.put_partner({"partner_id": "bench", "status": "REGISTERED", "roles": []})
        store.put_token(TokenRecord(hash_token("bench-token"), "bench", "C"))
        spec = importlib.util.spec_from_file_location("loc_app", ROOT / "functions/locations/app.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        api = TestClient(mod.app)
        hdr = {"Authorization": "Token " + base64.b64encode(b"bench-token").decode()}

        results = {}
        loaded = 0
        for n in (args.small, args.large):
            t = time.perf_counter()
            for i in range(loaded, n):
                loc = location(i, 1)
                locations.put_location(store, None, "NL", "CPO", loc["id"], loc)
            loaded = n
            seed = time.perf_counter() - t
            METER.reset()
            t = time.perf_counter()
            url, seen = "/ocpi/2.2.1/sender/locations?limit=100", 0
            while url:
                resp = api.get(url, headers=hdr)
                seen += len(resp.json()["data"])
                link = resp.headers.get("link")
                url = link[1 : link.index(">")].removeprefix("https://ocpi.bench") if link else None
            wall = time.perf_counter() - t
            u = METER.reset()
            results[n] = (u.total_requests, u.read_units, wall, seen)
            print(
                f"crawl of {seen} locations: {u.total_requests} requests, {u.read_units:.0f} read units, "
                f"{wall:.1f} s (seeded in {seed:.0f} s)"
            )
        (r1, u1, w1, s1), (r2, u2, w2, s2) = results[args.small], results[args.large]
        print(
            f"ratios large/small: objects {s2 / s1:.2f}, requests {r2 / r1:.2f}, "
            f"read units {u2 / u1:.2f}, wall time {w2 / w1:.2f}"
        )
        linear = f"linear when equal to the objects ratio {s2 / s1:.2f} ({s1} -> {s2} locations)"
        summary += [
            row(
                "crawl requests, large/small", round(r2 / r1, 2), "ratio", f"{r1} -> {r2} requests; {linear}"
            ),
            row(
                "crawl read units, large/small",
                round(u2 / u1, 2),
                "ratio",
                f"{u1:.0f} -> {u2:.0f} RCU; {linear}",
            ),
            row(
                "crawl wall time, large/small",
                round(w2 / w1, 2),
                "ratio",
                f"{w1:.1f} -> {w2:.1f} s on moto, whose Query also walks the whole table",
            ),
        ]
    write_json(
        args.json,
        "bench_locations",
        summary,
        {
            str(n): dict(zip(("requests", "read_units", "wall_s", "seen"), v, strict=True))
            for n, v in results.items()
        },
    )


if __name__ == "__main__":
    main()
