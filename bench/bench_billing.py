"""Clearing-job throughput (shared/services/billing.py) on moto with template.yaml's table and
statements bucket: one partner with N CDRs in a month (half ours, half received; 5% credit CDRs,
3% pricing mismatches) and N/100 completed sessions (a third without CDR).

The job's units run one after the other in this process (the queue is a list: SQS is not what this
measures), as the worker would run them. Printed: slices (and splits), wall time of the slices and
of the merge, CDRs per second, DynamoDB requests and consumed capacity per 1000 CDRs, S3 requests.

Moto's own costs dominate unless its hot spots get a fast path (``--moto-as-is`` leaves them):
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
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from common import moto_stack

PARTNER = "bench-partner"
PERIOD = "2026-10"
TZ = "Europe/Amsterdam"


def speed_up_moto() -> None:
    """The two fast paths described in the module docstring (same results, native speed)."""
    from moto.dynamodb import responses
    from moto.dynamodb.models import table

    def sorted_items(self: Any, hash_key_attrs: list, range_key_attrs: list, items: list) -> list:
        attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)

        def key(item: Any) -> tuple:
            out = []
            for name in attrs:
                value = item.attrs.get(name)
                out.append(
                    (0, "") if value is None else (1, value.cast_value if value.type == "N" else value.value)
                )
            return tuple(out)

        items.sort(key=key)
        return items

    table.Table.sorted_items = sorted_items

    from moto.dynamodb.models import dynamo_type

    def size(self: Any) -> int:  # every Query sizes every item of the partition: once per item here
        cached = self.__dict__.get("_bench_size")
        if cached is None:
            cached = self.__dict__["_bench_size"] = sum(
                dynamo_type.bytesize(k) + v.size() for k, v in self.attrs.items()
            )
        return cached

    original_project = dynamo_type.Item.project

    def project(self: Any, projection_expressions: list) -> Any:  # walk the paths, copy the leaves
        if any(
            not isinstance(part, str) or part.startswith("[") for e in projection_expressions for part in e
        ):
            return original_project(self, projection_expressions)
        result: dict[str, Any] = {}
        for expr in projection_expressions:
            node = self.attrs.get(expr[0])
            for part in expr[1:]:
                node = node.value.get(part) if node is not None and node.type == "M" else None
            if node is None:
                continue
            target = result
            for part in expr[:-1]:
                target = target.setdefault(part, {"M": {}})["M"]
            target[expr[-1]] = node.to_regular_json()
        return dynamo_type.Item(hash_key=self.hash_key, range_key=self.range_key, attrs=result)

    dynamo_type.Item.size = size
    dynamo_type.Item.project = project

    # An index Query walks every item of the table to find its partition: group the items by index
    # key once, until a write touches an indexed item.
    from moto.dynamodb.models import DynamoDBBackend

    def indexed(attrs: Any) -> bool:
        return any(name.startswith("GSI") and name.endswith("PK") for name in attrs)

    def bump(tbl: Any) -> None:
        tbl.__dict__["_bench_version"] = tbl.__dict__.get("_bench_version", 0) + 1

    original_put, original_delete = table.Table.put_item, table.Table.delete_item

    def put_item(self: Any, item_attrs: dict, *args: Any, **kwargs: Any) -> Any:
        if indexed(item_attrs):
            bump(self)
        return original_put(self, item_attrs, *args, **kwargs)

    def delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(self)
        return original_delete(self, *args, **kwargs)

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = original_update(self, table_name, *args, **kwargs)
        if indexed(item.attrs):
            bump(self.get_table(table_name))
        return item

    original_query = table.Table.query
    original_all_items = table.Table.all_items

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        conditions = kwargs.get("hash_key_conditions") or []
        index_name = kwargs.get("index_name", args[7] if len(args) > 7 else None)
        if not index_name or len(conditions) != 1:
            return original_query(self, *args, **kwargs)
        attr, value = conditions[0]
        index = self.get_index(index_name)
        range_attr = next((k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"), None)
        cache = self.__dict__.setdefault("_bench_partitions", {})
        version = self.__dict__.get("_bench_version", 0)
        if cache.get(("version", index_name)) != version:
            groups: dict[Any, list] = {}
            for item in original_all_items(self):
                v = item.attrs.get(attr)
                if v is not None and (range_attr is None or range_attr in item.attrs):
                    groups.setdefault(v.value, []).append(item)
            for items in groups.values():
                sorted_items(self, [attr, self.hash_key_attr], [range_attr, self.range_key_attr], items)
            cache[("version", index_name)] = version
            cache[("groups", index_name)] = {
                k: (items, [i.attrs[range_attr].value if range_attr else "" for i in items])
                for k, items in groups.items()
            }
        items, range_values = cache[("groups", index_name)].get(value.value, ([], []))
        comparison, objs = (args[1], args[2]) if len(args) > 2 else (None, None)
        if comparison == "BETWEEN" and range_attr and objs:
            low = bisect.bisect_left(range_values, objs[0].value)
            high = bisect.bisect_right(range_values, objs[1].value)
            items = items[low:high]
        self.all_items = lambda: list(items)
        self.sorted_items = lambda hash_attrs, range_attrs, found: found  # already in index order
        try:
            return original_query(self, *args, **kwargs)
        finally:
            del self.all_items
            del self.sorted_items

    table.Table.put_item = put_item
    table.Table.delete_item = delete_item
    DynamoDBBackend.update_item = update_item
    table.Table.query = query
    original = responses.DynamoResult.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        body = self.result
        if not isinstance(body, dict) or not ({"Items", "Item", "Attributes", "Responses"} & set(body)):
            return original(self, context)

        def default(value: Any) -> Any:
            if isinstance(value, bytes):
                return base64.b64encode(value).decode()
            raise TypeError(type(value).__name__)

        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body, default=default)

    responses.DynamoResult.execute_result = execute_result


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
    args = parser.parse_args()
    if not args.moto_as_is:
        speed_up_moto()
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


if __name__ == "__main__":
    main()
