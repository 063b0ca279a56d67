"""Sessions and CDRs cost model on moto (DynamoDB requests and consumed units per operation).

1. Session PATCH (receiver) that appends one charging period to a session that already has 1 vs
   200 periods (goal: equal requests and write units, i.e. independent of the history length).
2. CDR POST (receiver, first time): one conditional PutItem, after the reads of the pricing check
   (pricing.check_cdr: 2 Queries for this CDR).
3. CDR duplicate POST (identical replay) and a POST of different content under a stored id: one
   conditional PutItem that fails and hands back the stored CDR, nothing written (the pricing
   check's reads come first, as on the first POST).
Also shown: GET of a session with 200 periods, and one sender page of sessions (periods loaded with
one Query per listed session).

    .venv/bin/python bench/bench_sessions_cdrs.py [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json

from common import EXAMPLES, add_json_option, moto_stack, row, usage_text, write_json


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def session_with(n: int, sid: str) -> dict:
    s = example("session_example_2_short_finished.json")
    s["id"] = sid
    s["charging_periods"] = [
        {
            "start_date_time": f"2015-06-29T{h:02d}:{m:02d}:00Z",
            "dimensions": [{"type": "ENERGY", "volume": 1.5}, {"type": "MAX_CURRENT", "volume": 30}],
        }
        for h, m in (divmod(i, 60) for i in range(n))
    ]
    return s


def line(label: str, u) -> str:
    return (
        f"  {label}: {u.total_requests} requests ({dict(u.requests)}), "
        f"write units {u.write_units:.1f}, read units {u.read_units:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    add_json_option(parser)
    args = parser.parse_args()
    summary: list[dict] = []

    def record(metric: str, u, meaning: str) -> None:
        summary.append(row(metric, usage_text(u), "req / RCU / WCU", f"{meaning}: {dict(u.requests)}"))

    from shared.auth import Caller
    from shared.errors import InvalidParameters
    from shared.services import cdrs, sessions
    from shared.store.meter import METER

    with moto_stack() as (store, _):
        cpo = Caller(
            partner_id="bench",
            kind="C",
            partner={"roles": [{"role": "CPO", "country_code": "BE", "party_id": "BEC"}]},
        )

        print("Session PATCH appending one charging period (receiver), DynamoDB cost:")
        results = {}
        for n in (1, 200):
            s = session_with(n, f"S{n}")
            sessions.put_session(store, cpo, "BE", "BEC", s["id"], s)
            patch = {
                "kwh": 42,
                "charging_periods": [
                    {
                        "start_date_time": "2015-06-30T06:00:00Z",
                        "dimensions": [{"type": "ENERGY", "volume": 2}],
                    }
                ],
                "last_updated": "2015-06-30T06:00:01Z",
            }
            METER.reset()
            sessions.patch_session(store, cpo, "BE", "BEC", s["id"], patch)
            u = METER.reset()
            results[n] = (u.total_requests, u.write_units)
            print(line(f"{n:>4} periods before", u))
            record(f"session PATCH, +1 period to {n}", u, "receiver PATCH appending one charging period")
            got = sessions.get_received(store, cpo, "BE", "BEC", s["id"])
            assert len(got["charging_periods"]) == n + 1
        same = results[1] == results[200]
        print(f"  independent of history length: {'yes' if same else 'NO'} {results}")
        summary.append(
            row(
                "session PATCH cost, 200 vs 1 periods stored",
                "equal" if same else "DIFFERENT",
                "",
                "requests and WCU of the append must not grow with the session's history",
            )
        )
        METER.reset()
        sessions.get_received(store, cpo, "BE", "BEC", "S200")
        u = METER.reset()
        print(line("GET of the session with 201 periods", u))
        record("session GET, 201 periods", u, "receiver GET of one session with its periods")

        print("CDR POST (receiver), DynamoDB cost:")
        cdr = example("cdr_example.json")
        METER.reset()
        first = cdrs.create_received(store, cpo, cdr)
        assert first.result.value == "created"
        u = METER.reset()
        print(line("first POST (stored)", u))
        record("CDR POST, first", u, "receiver POST storing a CDR")
        dup = cdrs.create_received(store, cpo, json.loads(json.dumps(cdr)))
        assert dup.result.value == "stale"
        METER.reset()
        cdrs.create_received(store, cpo, cdr)
        u = METER.reset()
        print(line("duplicate POST, identical (same answer, nothing written)", u))
        record("CDR POST, identical replay", u, "same answer, nothing written")
        METER.reset()
        with contextlib.suppress(InvalidParameters):
            cdrs.create_received(store, cpo, dict(cdr, remark="changed"))
        u = METER.reset()
        print(line("duplicate POST, different content (2001, nothing written)", u))
        record("CDR POST, changed replay", u, "answered 2001, nothing written")

        print("Sender list page of own sessions (10 sessions x 20 periods), DynamoDB cost:")
        for i in range(10):
            s = session_with(20, f"OWN{i:02d}")
            s.update({"country_code": "NL", "party_id": "CPO"})
            s["cdr_token"].update({"country_code": "DE", "party_id": "MSP"})
            s["last_updated"] = f"2024-01-01T00:00:{i:02d}Z"
            sessions.put_session(store, None, "NL", "CPO", s["id"], s)
        from shared.pagination import parse_params

        params = parse_params({"date_from": "2000-01-01T00:00:00Z", "limit": "10"}, require_date_from=True)
        METER.reset()
        items, _ = sessions.list_own(store, ("DE", "MSP"), params)
        assert len(items) == 10 and all(len(s["charging_periods"]) == 20 for s in items)
        u = METER.reset()
        print(line("one page of 10", u))
        record("sessions sender page of 10 (x 20 periods)", u, "one sender GET page of own sessions")
    write_json(args.json, "bench_sessions_cdrs", summary, {"patch_by_history": results})


if __name__ == "__main__":
    main()
