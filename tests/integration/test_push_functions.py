"""The push functions on moto: the real path bus -> PushRule -> PushFanoutQueue -> fan-out handler
-> PushDeliveryQueue -> delivery handler -> a receiver on loopback; retries with backoff
(visibility), the dead-letter queue after PushMaxAttempts receives, and isolation (a slow partner
does not hold up the others in the same batch)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared import events
from shared.services import ingest, push
from tests.integration.test_ingest import location
from tests.integration.test_lambda_events import Context
from tests.integration.test_push import partner
from tests.receiver_stub import ReceiverStub

ROOT = Path(__file__).resolve().parents[2]


def handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"lambda_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


def receive(sqs: Any, url: str, wait: int = 0) -> list[dict]:
    out = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=wait
    ).get("Messages", [])
    return out


def sqs_event(messages: list[dict], arn: str) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {"ApproximateReceiveCount": "1"}),
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


@pytest.fixture
def env(dynamo_store, aws, monkeypatch) -> dict:
    monkeypatch.setenv("OCPI_PUSH_QUEUE_URL", aws["PushDeliveryQueue"])
    monkeypatch.setenv("OCPI_PUSH_TIMEOUT", "1")
    monkeypatch.setenv("OCPI_PUSH_BREAKER_SECONDS", "0")
    sqs = boto3.client("sqs", region_name="eu-west-1")

    def arn(url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    return {"store": dynamo_store, "aws": aws, "sqs": sqs, "arn": arn}


def test_bus_to_partner_through_both_functions(env) -> None:
    store, aws, sqs = env["store"], env["aws"], env["sqs"]
    with ReceiverStub() as stub:
        store.put_partner(partner("emsp", "EMSP", "DE", "ABC", stub))
        # Ingest publishes ocpi.own.changed on the real (moto) bus; PushRule routes it to the fan-out queue.
        ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": location()})
        changes = receive(sqs, aws["PushFanoutQueue"])
        assert len(changes) == 1 and json.loads(changes[0]["Body"])["detail-type"] == "ocpi.own.changed"
        fanout_arn = env["arn"](aws["PushFanoutQueue"])
        assert handler("push_fanout")(sqs_event(changes, fanout_arn), Context()) == {"batchItemFailures": []}
        deliveries = receive(sqs, aws["PushDeliveryQueue"])
        assert [json.loads(m["Body"])["partner_id"] for m in deliveries] == ["emsp"]
        delivery_arn = env["arn"](aws["PushDeliveryQueue"])
        assert handler("push_delivery")(sqs_event(deliveries, delivery_arn), Context()) == {
            "batchItemFailures": []
        }
        assert stub.get("locations/NL/CPO/LOC1")["id"] == "LOC1"


def test_failed_delivery_backs_off_then_dead_letters(env, monkeypatch) -> None:
    store, aws, sqs = env["store"], env["aws"], env["sqs"]
    monkeypatch.setenv("OCPI_PUSH_RETRY_BASE", "1")
    monkeypatch.setenv("OCPI_PUSH_RETRY_CAP", "1")
    attempts = int(
        json.loads(
            sqs.get_queue_attributes(QueueUrl=aws["PushDeliveryQueue"], AttributeNames=["RedrivePolicy"])[
                "Attributes"
            ]["RedrivePolicy"]
        )["maxReceiveCount"]
    )
    monkeypatch.setenv("OCPI_PUSH_MAX_ATTEMPTS", str(attempts))
    delivery_arn = env["arn"](aws["PushDeliveryQueue"])
    run = handler("push_delivery")
    with ReceiverStub() as stub:
        stub.mode = "500"
        store.put_partner(partner("emsp", "EMSP", "DE", "ABC", stub))
        ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": location()})
        change = push.Change("locations", "put", "NL", "CPO", "LOC1")
        assert push.enqueue(push.fan_out(store, change, store.list_partners(), push.PushSettings())) == []
        seen = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            msgs = receive(sqs, aws["PushDeliveryQueue"], wait=1)
            if not msgs:
                if receive(sqs, aws["PushDeliveryDeadLetterQueue"]):
                    break
                continue
            seen += 1
            assert int(msgs[0]["Attributes"]["ApproximateReceiveCount"]) == seen
            result = run(sqs_event(msgs, delivery_arn), Context())
            assert result == {"batchItemFailures": [{"itemIdentifier": msgs[0]["MessageId"]}]}
            # The backoff (1 s) was set as the message's visibility: not visible right away.
            assert receive(sqs, aws["PushDeliveryQueue"]) == []
        assert (seen, len(stub.calls())) == (attempts, attempts), time.monotonic() - deadline
        # The last attempt dropped the in-flight mark: the next change queues a fresh delivery.
        assert store.push_state(change.ref).inflight == {}


def test_a_slow_partner_does_not_hold_up_the_others(env) -> None:
    store, aws, sqs = env["store"], env["aws"], env["sqs"]
    with ReceiverStub() as slow, ReceiverStub() as fast:
        slow.mode, slow.delay = "slow", 3.0  # beyond our 1 s timeout
        store.put_partner(partner("a-slow", "EMSP", "DE", "SLO", slow))
        store.put_partner(partner("b-fast", "EMSP", "DE", "FST", fast))
        for i in range(4):
            ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": location(f"LOC{i}")})
            change = push.Change("locations", "put", "NL", "CPO", f"LOC{i}")
            push.enqueue(push.fan_out(store, change, store.list_partners(), push.PushSettings()))
        msgs = receive(sqs, aws["PushDeliveryQueue"]) + receive(sqs, aws["PushDeliveryQueue"])
        assert len(msgs) == 8
        started = time.monotonic()
        result = handler("push_delivery")(sqs_event(msgs, env["arn"](aws["PushDeliveryQueue"])), Context())
        elapsed = time.monotonic() - started
        slow_ids = {m["MessageId"] for m in msgs if json.loads(m["Body"])["partner_id"] == "a-slow"}
        assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == slow_ids
        assert len(fast.calls("PUT")) == 4
        # The fast partner's 4 deliveries all arrived while the slow partner's first call was still
        # waiting for its 1 s timeout (they run beside it, not after it).
        first_slow = min(r["at"] for r in slow.calls())
        assert max(r["at"] for r in fast.calls()) < first_slow + 1.0
        assert elapsed < 4 * 1.0 + 2  # the slow partner's 4 timeouts run one after another, at most


def test_admin_lists_and_replays_the_dead_letter_queue(env, monkeypatch, capsys) -> None:
    from shared.admin import cli

    store, aws, sqs = env["store"], env["aws"], env["sqs"]
    monkeypatch.setenv("OCPI_PUSH_DLQ_URL", aws["PushDeliveryDeadLetterQueue"])
    with ReceiverStub() as stub:
        store.put_partner(partner("emsp", "EMSP", "DE", "ABC", stub))
        ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": location()})
        token = push.Delivery("emsp", "tokens", "NL", "MSP", "SECRETUID0042", "RFID")
        loc = push.Delivery("emsp", "locations", "NL", "CPO", "LOC1")
        for d in (loc, token):  # as SQS moves them after the last attempt
            sqs.send_message(QueueUrl=aws["PushDeliveryDeadLetterQueue"], MessageBody=d.to_message())
        assert cli.main(["push", "dlq", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert sorted(r["ocpi_module"] for r in rows) == ["locations", "tokens"]
        assert "SECRETUID0042" not in json.dumps(rows)  # never a token uid
        assert (
            cli.main(
                [
                    "push",
                    "replay",
                    "--message-id",
                    next(r["message_id"] for r in rows if r["ocpi_module"] == "locations"),
                    "--json",
                ]
            )
            == 0
        )
        assert len(json.loads(capsys.readouterr().out)) == 1
        assert cli.main(["push", "dlq", "--json"]) == 0  # the other one is still there, visible
        assert [r["ocpi_module"] for r in json.loads(capsys.readouterr().out)] == ["tokens"]
        msgs = receive(sqs, aws["PushDeliveryQueue"])
        assert [json.loads(m["Body"])["id"] for m in msgs] == ["LOC1"]
        result = handler("push_delivery")(sqs_event(msgs, env["arn"](aws["PushDeliveryQueue"])), Context())
        assert result == {"batchItemFailures": []}
        assert stub.get("locations/NL/CPO/LOC1")["id"] == "LOC1"
        # resync: everything the partner is entitled to, queued again
        capsys.readouterr()  # the handler's own log lines
        assert cli.main(["push", "resync", "emsp", "--json"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["locations"] == 1
