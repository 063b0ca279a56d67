"""Push fan-out and delivery cost (shared/services/push.py) on moto with template.yaml's table and
queues, against a receiver on loopback (tests/receiver_stub.py).

1. One own change (an EVSE status PATCH) fanned out to 1, 10 and 50 eMSP partners by the fan-out
   handler: DynamoDB requests and SQS requests per change, for a batch of 1 change and of 10
   changes (the partner list is read once per batch).
2. Deliveries per second of the delivery handler (batches of 10 from the real queue) to one
   partner and to 10 partners, with the DynamoDB requests per delivery.

    python bench/bench_push.py [--deliveries 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from typing import Any

from common import ROOT, add_json_option, moto_stack, row, write_json

PARTNER_COUNTS = (1, 10, 50)
MAX_ROUNDS = 20  # redelivery rounds of the delivery throughput run before it gives up


def load_handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


class Context:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


def location(lid: str) -> dict[str, Any]:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": lid,
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.089444", "longitude": "5.110278"},
        "evses": [
            {
                "uid": "E1",
                "status": "AVAILABLE",
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                        "last_updated": "2024-05-01T09:00:00Z",
                    }
                ],
                "last_updated": "2024-05-01T09:00:00Z",
            }
        ],
        "time_zone": "Europe/Amsterdam",
        "last_updated": "2024-05-01T09:00:00Z",
    }


def changed_event(lid: str, n: int) -> str:
    return json.dumps(
        {
            "detail-type": "ocpi.own.changed",
            "source": "ocpi.endpoint",
            "detail": {
                "module": "locations",
                "action": "patch",
                "country_code": "NL",
                "party_id": "CPO",
                "id": lid,
                "evse_uid": "E1",
                "fields": ["last_updated", "status"],
                "last_updated": f"2024-05-01T10:{n:02d}:00Z",
            },
        }
    )


def sqs_event(bodies: list[tuple[str, str, str]], arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": mid,
                "receiptHandle": handle,
                "body": body,
                # As SQS sends them (the delivery function reports the queue lag from SentTimestamp).
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "eu-west-1",
            }
            for mid, handle, body in bodies
        ]
    }


class SqsCounter:
    def __init__(self, client: Any) -> None:
        self.calls: Counter = Counter()
        client.meta.events.register("before-call.sqs.*", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[model.name] += 1

    def reset(self) -> Counter:
        out, self.calls = self.calls, Counter()
        return out


def drain(sqs: Any, url: str) -> list[tuple[str, str, str]]:
    out = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            return out
        out += [(m["MessageId"], m["ReceiptHandle"], m["Body"]) for m in got]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    add_json_option(parser)
    args = parser.parse_args()
    summary: list[dict] = []
    details: dict[str, Any] = {"fanout": [], "delivery": []}

    import os

    from shared.services import ingest, push
    from shared.store.meter import METER
    from tests.receiver_stub import ReceiverStub

    with moto_stack() as (store, names), ReceiverStub() as stub:
        os.environ["OCPI_PUSH_QUEUE_URL"] = names["PushDeliveryQueue"]
        os.environ["OCPI_PUSH_TIMEOUT"] = "5"
        sqs = push._sqs()
        counter = SqsCounter(sqs)
        fanout = load_handler("push_fanout")
        deliver = load_handler("push_delivery")
        arn = "arn:aws:sqs:eu-west-1:123456789012:bench"

        print("Fan-out of one change (EVSE status PATCH) to N partners")
        head = ("partners", "batch", "ddb req/change", "ddb WCU/change", "sqs req/change")
        print(f"{head[0]:>8} {head[1]:>5} {head[2]:>15} {head[3]:>15} {head[4]:>15}")
        made = 0
        rows = {}
        for n in PARTNER_COUNTS:
            while made < n:
                store.put_partner(
                    {
                        "partner_id": f"p{made:03d}",
                        "status": "REGISTERED",
                        "outbound_token": "t",
                        "roles": [{"role": "EMSP", "country_code": "DE", "party_id": f"P{made:02d}"}],
                        "endpoints": stub.endpoints(),
                    }
                )
                made += 1
            for batch in (1, 10):
                lids = [f"L{n}-{batch}-{i}" for i in range(batch)]
                for lid in lids:
                    ingest.apply(store, "ocpi.own.put", {"module": "locations", "object": location(lid)})
                METER.reset()
                counter.reset()
                event = sqs_event([(f"m{i}", "h", changed_event(lid, i)) for i, lid in enumerate(lids)], arn)
                assert fanout(event, Context()) == {"batchItemFailures": []}
                usage, calls = METER.reset(), counter.reset()
                drain(sqs, names["PushDeliveryQueue"])
                rows[(n, batch)] = usage.total_requests / batch
                details["fanout"].append(
                    {
                        "partners": n,
                        "batch": batch,
                        "ddb_requests_per_change": usage.total_requests / batch,
                        "ddb_wcu_per_change": usage.write_units / batch,
                        "sqs_requests_per_change": sum(calls.values()) / batch,
                    }
                )
                if batch == 1 or n == PARTNER_COUNTS[-1]:
                    summary.append(
                        row(
                            f"push fan-out to {n} partners, batch of {batch}",
                            f"{usage.total_requests / batch:.2f} / {sum(calls.values()) / batch:.2f}",
                            "DynamoDB / SQS req per change",
                            "cost of one own change fanned out (partner list read once per batch)",
                        )
                    )
                print(
                    f"{n:>8} {batch:>5} {usage.total_requests / batch:>15.2f} "
                    f"{usage.write_units / batch:>15.2f} {sum(calls.values()) / batch:>15.2f}"
                )
        print(
            f"ratio of DynamoDB requests per change, 50 vs 1 partners (batch 1): "
            f"{rows[(50, 1)] / rows[(1, 1)]:.2f} (partners x50)"
        )
        summary.append(
            row(
                "push fan-out DynamoDB cost, 50 vs 1 partners",
                round(rows[(50, 1)] / rows[(1, 1)], 2),
                "ratio",
                "requests per change with 50x the partners (1.00 = independent of the partner count)",
            )
        )

        print()
        print("Delivery function throughput against the loopback receiver (batches of 10)")
        print(
            f"{'partners':>8} {'deliveries':>10} {'seconds':>8} {'per second':>10} {'ddb req/delivery':>17}"
        )
        for n_partners in (1, 10):
            per = max(1, args.deliveries // n_partners)
            partners = [store.get_partner(f"p{i:03d}") for i in range(n_partners)]
            for i in range(per):
                lid = f"D{n_partners}-{i}"
                ingest.apply(store, "ocpi.own.put", {"module": "locations", "object": location(lid)})
                change = push.Change("locations", "put", "NL", "CPO", lid)
                push.enqueue(push.fan_out(store, change, partners, push.PushSettings()))
            messages = drain(sqs, names["PushDeliveryQueue"])
            METER.reset()
            started = time.perf_counter()
            retried = 0
            pending = messages
            rounds = 0
            while pending:
                rounds += 1
                if rounds > MAX_ROUNDS:
                    raise SystemExit(f"{len(pending)} deliveries still failing after {MAX_ROUNDS} rounds")
                again = []
                for i in range(0, len(pending), 10):
                    chunk = pending[i : i + 10]
                    failed = {
                        f["itemIdentifier"]
                        for f in deliver(sqs_event(chunk, arn), Context())["batchItemFailures"]
                    }
                    again += [m for m in chunk if m[0] in failed]
                # In-process moto is not thread-safe (a Query can race an UpdateItem of the same
                # item): such a delivery fails and is redelivered, as SQS would.
                retried += len(again)
                pending = again
                if again:
                    print(f"  round {rounds}: {len(again)} to redeliver", file=sys.stderr, flush=True)
            seconds = time.perf_counter() - started
            usage = METER.reset()
            total = len(messages)
            print(
                f"{n_partners:>8} {total:>10} {seconds:>8.2f} {total / seconds:>10.1f} "
                f"{usage.total_requests / total:>17.2f}  (redelivered after a moto race: {retried})"
            )
            details["delivery"].append(
                {
                    "partners": n_partners,
                    "deliveries": total,
                    "seconds": seconds,
                    "ddb_requests_per_delivery": usage.total_requests / total,
                    "redelivered": retried,
                }
            )
            summary.append(
                row(
                    f"push deliveries to {n_partners} partner(s)",
                    f"{total / seconds:.1f} / {usage.total_requests / total:.2f}",
                    "per s / DynamoDB req each",
                    "delivery function to a loopback receiver, batches of 10 (moto in-process)",
                )
            )
        print("(moto in-process: DynamoDB latency is moto's; per-delivery request counts are exact)")
    write_json(args.json, "bench_push", summary, details)


if __name__ == "__main__":
    main()
