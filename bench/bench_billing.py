"""Clearing-job throughput (shared/services/billing.py) on moto with template.yaml's table and
statements bucket: one partner with N CDRs in a month (half ours, half received; 5% credit CDRs,
3% pricing mismatches) and N/100 completed sessions (a third without CDR).

The job's units run one after the other in this process (the queue is a list: SQS is not what this
measures), as the worker would run them. Printed: slices (and splits), wall time of the slices and
of the merge, CDRs per second, DynamoDB requests and consumed capacity per 1000 CDRs, S3 requests.

Moto's own costs dominate unless its hot spots get a fast path (bench/motofast.py; ``--moto-as-is``
leaves them):
moto 5.2 answers an index Query by walking every item of the table, sorting the partition with
Python-level comparisons and sizing every item of it (O(table) per request: ~5 s at 100,000 items),
converts the whole item to
JSON once per path of a ProjectionExpression (~30 ms per CDR), and serialises every attribute value
through its generic botocore-shape serializer (~25 µs per value, ~10 ms per CDR). The fast paths group
the items by index key once (until a write touches an indexed item), sort by the same keys with
native comparisons, size an item once, copy only the projected paths and dump the same response
JSON with ``json.dumps``; requests, answers and moto's capacity figures are
unchanged. Moto reports a constant capacity per
request (0.5 or 1 unit); "estimated RCU" prices what the job reads by item size as DynamoDB would
(eventually consistent: 0.5 unit per 4 KB per Query page).

    python bench/bench_billing.py [--cdrs 100000] [--slice-hours 6] [--slice-max 50000] [--moto-as-is]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import motofast
from common import add_json_option, moto_stack, row, write_json

PARTNER = "bench-partner"
PERIOD = "2026-10"
TZ = "Europe/Amsterdam"


def item_size(value: Any) -> int:
    """DynamoDB's item size of a typed value (approximately: names + values, 3 bytes per map/list)."""
    ((kind, inner),) = value.items()
    if kind in ("S", "B"):
        return len(inner.encode() if isinstance(inner, str) else inner)
    if kind == "N":
        return len(inner.lstrip("-").replace(".", "")) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k) + item_size(v) for k, v in inner.items())
    if kind == "L":
        return 3 + sum(1 + item_size(v) for v in inner)
    return sum(len(v) for v in inner)  # sets


class ListQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, bodies: list[dict[str, Any]]) -> None:
        self.messages.extend(bodies)


class S3Counter:
    def __init__(self, client: Any) -> None:
        self.calls: Counter = Counter()
        client.meta.events.register("before-call.s3.*", lambda model, **_: self.calls.update([model.name]))


def seed(store: Any, n: int) -> tuple[int, int, int]:
    """N CDRs and N/100 sessions written with BatchWriteItem (what the module's create would write)."""
    from shared.services import cdrs
    from shared.services.objects import RECEIVED, to_collection
    from shared.store.base import ObjectRef
    from shared.store.dynamo import _item

    store.put_partner(
        {
            "partner_id": PARTNER,
            "status": "REGISTERED",
            "roles": [
                {"role": "EMSP", "country_code": "DE", "party_id": "MSP"},
                {"role": "CPO", "country_code": "DE", "party_id": "CPO"},
            ],
        }
    )
    start = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)
    step = timedelta(days=31) / n
    requests = []
    credits = sessions = cdr_bytes = 0
    for i in range(n):
        end = start + step * i
        sent = i % 2 == 0
        cc, pid = ("NL", "CPO") if sent else ("DE", "CPO")
        collection = to_collection("DE", "MSP") if sent else RECEIVED
        credit = i % 20 == 19
        cid = f"B{i:07d}" + ("-C" if credit else "")
        amount = Decimal(i % 997) / 100 + 1
        body = {
            "country_code": cc,
            "party_id": pid,
            "id": cid,
            "start_date_time": (end - timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_date_time": end.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "session_id": f"S{i:07d}",
            "cdr_token": {"country_code": "DE", "party_id": "MSP", "uid": f"U{i % 5000}", "type": "RFID"},
            "auth_method": "WHITELIST",
            "currency": "EUR",
            "tariffs": [],
            "charging_periods": [
                {
                    "start_date_time": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "dimensions": [{"type": "ENERGY", "volume": 12}],
                }
            ],
            "total_cost": {
                "excl_vat": -amount if credit else amount,
                "incl_vat": (-amount if credit else amount) * Decimal("1.21"),
            },
            "total_energy": Decimal("12.5"),
            "total_time": Decimal("0.75"),
            "last_updated": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        if credit:
            body.update(credit=True, credit_reference_id=f"B{i - 2:07d}")  # same party
            credits += 1
        meta: dict[str, Any] = {} if sent else {"partner_id": PARTNER}
        if i % 33 == 0:
            meta["pricing"] = {
                "status": "mismatch",
                "expected": {"excl_vat": str(amount - 1), "incl_vat": None},
                "difference": {"excl_vat": "1.00", "incl_vat": None},
                "tariff_ids": ["T1"],
                "reason": "bench",
            }
        ref = ObjectRef("cdrs", cc, pid, cid)
        item = store._header_item(ref, body, end, collection, meta, cdrs._indexes(ref, body, collection))
        typed = _item(item)
        cdr_bytes += sum(len(k) + item_size(v) for k, v in typed.items())
        requests.append({"PutRequest": {"Item": typed}})
        if i % 100 == 0:  # a session, a third of them without CDR (another id)
            sid = f"S{i:07d}" if i % 300 else f"LOST{i:07d}"
            sref = ObjectRef("sessions", cc, pid, sid)
            sbody = {
                "country_code": cc,
                "party_id": pid,
                "id": sid,
                "status": "COMPLETED",
                "end_date_time": body["end_date_time"],
            }
            sitem = store._header_item(sref, sbody, end, collection, None, None)
            requests.append({"PutRequest": {"Item": _item(sitem)}})
            sessions += 1
    store._batch_write(requests)
    return credits, sessions, cdr_bytes


def per_1000(usage: Any, n: int) -> str:
    ops = ", ".join(f"{op} {count * 1000 / n:.1f}" for op, count in sorted(usage.requests.items()))
    return (
        f"{usage.total_requests * 1000 / n:.1f} requests ({ops}); "
        f"{usage.read_units * 1000 / n:.1f} RCU, {usage.write_units * 1000 / n:.1f} WCU"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cdrs", type=int, default=100_000)
    parser.add_argument("--slice-hours", type=int, default=6)
    parser.add_argument("--slice-max", type=int, default=50_000)
    parser.add_argument("--moto-as-is", action="store_true", help="without the two moto fast paths")
    add_json_option(parser)
    args = parser.parse_args()
    if not args.moto_as_is:
        motofast.install()
    with moto_stack() as (store, names):
        import boto3

        from shared.services import billing
        from shared.store.meter import METER

        os.environ.update(
            {
                "OCPI_BILLING_BUCKET": names["StatementsBucket"],
                "OCPI_BILLING_TIMEZONE": TZ,
                "OCPI_BILLING_SLICE_HOURS": str(args.slice_hours),
                "OCPI_BILLING_SLICE_MAX_CDRS": str(args.slice_max),
            }
        )
        settings = billing.BillingSettings.from_env()
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3_calls = S3Counter(s3)
        blobs = billing.S3Blobs(s3, settings.bucket)
        queue = ListQueue()

        t0 = time.perf_counter()
        credits, sessions, cdr_bytes = seed(store, args.cdrs)
        seeded = time.perf_counter() - t0
        print(
            f"seeded {args.cdrs} CDRs ({credits} credits) and {sessions} sessions in "
            f"{time.perf_counter() - t0:.0f} s (BatchWriteItem)",
            flush=True,
        )
        METER.reset()
        job = {
            "kind": "job",
            "partner_id": PARTNER,
            "period": PERIOD,
            "run_id": "bench",
            "as_of": "2026-12-01T00:00:00Z",
        }
        started = time.perf_counter()
        billing.start_job(store, queue, settings, job)
        times: Counter = Counter()
        outcomes: Counter = Counter()
        durations: list[float] = []
        while queue.messages:
            msg = queue.messages.pop(0)
            t = time.perf_counter()
            outcome = billing.process_unit(store, blobs, queue, msg)
            took = time.perf_counter() - t
            times["merge" if outcome == "merged" else "slices"] += took
            outcomes[outcome] += 1
            if outcome != "merged":
                durations.append(took)
        wall = time.perf_counter() - started
        usage = METER.reset()
        record = store.get_statement(PARTNER, PERIOD)
        final = store.billing_job(PARTNER, PERIOD)
        assert record is not None and record["lines"] == args.cdrs, record
        slices = len(final.leaves)
        print(
            f"slices: {slices} (BillingSliceHours {args.slice_hours}; {len(final.split)} split at "
            f"BillingSliceMaxCdrs {args.slice_max}), {args.cdrs / slices:.0f} CDRs per slice; "
            f"outcomes {dict(outcomes)}"
        )
        mean = sum(durations) / len(durations)
        print(
            f"wall {wall:.1f} s: slices {times['slices']:.1f} s (mean {mean:.2f} s, "
            f"max {max(durations):.2f} s), the last slice with the merge {times['merge']:.1f} s"
        )
        print(
            f"throughput: {args.cdrs / times['slices']:.0f} CDRs/s in the slices, "
            f"{args.cdrs / wall:.0f} CDRs/s for the whole job (one worker, one slice at a time)"
        )
        print(f"DynamoDB per 1000 CDRs: {per_1000(usage, args.cdrs)} (moto's constant per request)")
        # A slice reads its CDRs and SESSION_MATCH_MARGIN on both sides, in 4 KB units (0.5 each).
        margin = billing.SESSION_MATCH_MARGIN / timedelta(hours=1)
        factor = (args.slice_hours + 2 * margin) / args.slice_hours
        estimated = factor * cdr_bytes / 4096 * 0.5
        print(
            f"estimated DynamoDB RCU per 1000 CDRs by item size ({cdr_bytes / args.cdrs:.0f} bytes per CDR "
            f"item, read {factor:.2f} times): {estimated * 1000 / args.cdrs:.1f} for the CDR reads"
        )
        print(f"S3 requests: {dict(sorted(s3_calls.calls.items()))}")
        print(f"discrepancies: {record['discrepancies']}")
    n = args.cdrs
    ops = ", ".join(f"{op} {count * 1000 / n:.1f}" for op, count in sorted(usage.requests.items()))
    summary = [
        row(
            "billing slice throughput",
            round(n / times["slices"]),
            "CDRs/s",
            f"{n} CDRs of one partner in a month, {slices} slices, one worker (moto in-process)",
        ),
        row("billing whole job", round(n / wall), "CDRs/s", f"slices and the merge: {wall:.1f} s"),
        row(
            "billing DynamoDB per 1000 CDRs",
            f"{usage.total_requests * 1000 / n:.1f} / {usage.read_units * 1000 / n:.1f} / "
            f"{usage.write_units * 1000 / n:.1f}",
            "req / RCU / WCU",
            f"{ops}; moto's constant capacity per request",
        ),
        row(
            "billing estimated RCU per 1000 CDRs",
            round(estimated * 1000 / n, 1),
            "RCU",
            f"priced by item size as DynamoDB would ({cdr_bytes / n:.0f} B per CDR, read {factor:.2f} times)",
        ),
    ]
    details = {
        "cdrs": n,
        "seed_s": seeded,
        "slices": slices,
        "splits": len(final.split),
        "wall_s": wall,
        "slices_s": times["slices"],
        "merge_s": times["merge"],
        "dynamodb": usage.as_dict(),
        "s3": dict(s3_calls.calls),
        "moto_fast_paths": not args.moto_as_is,
    }
    write_json(args.json, "bench_billing", summary, details)


if __name__ == "__main__":
    main()
