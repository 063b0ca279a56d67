"""The local stack's SQS event source poller (Lambda's event source mapping) on moto in-process."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.local.stack import (
    LambdaContext,
    SqsEventSource,
    SqsPoller,
    batch_item_failures,
    build_sqs_event,
    load_function_handler,
    start_pollers,
    stop_pollers,
)
from shared.local.template import FunctionSpec

REGION = "eu-west-1"
ACCOUNT = "123456789012"
MAX_RECEIVE_COUNT = 2


@dataclass
class Queues:
    sqs: Any
    url: str
    arn: str
    dlq_url: str
    fifo_url: str
    fifo_arn: str

    def send(self, *bodies: str, **kwargs: Any) -> list[str]:
        return [
            self.sqs.send_message(QueueUrl=self.url, MessageBody=b, **kwargs)["MessageId"] for b in bodies
        ]

    def counts(self, url: str | None = None) -> tuple[int, int]:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def dlq_bodies(self) -> list[str]:
        messages = self.sqs.receive_message(QueueUrl=self.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        return sorted(m["Body"] for m in messages)


@pytest.fixture
def queues() -> Iterator[Queues]:
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)

        def arn_of(url: str) -> str:
            return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]

        dlq_url = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
        redrive = {"deadLetterTargetArn": arn_of(dlq_url), "maxReceiveCount": MAX_RECEIVE_COUNT}
        url = sqs.create_queue(
            QueueName="work",
            Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)},
        )["QueueUrl"]
        fifo_url = sqs.create_queue(
            QueueName="work.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "1"}
        )["QueueUrl"]
        yield Queues(sqs, url, arn_of(url), dlq_url, fifo_url, arn_of(fifo_url))


def _spec(**environment: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id="WorkerFunction",
        code_uri="functions/worker",
        handler="app.handler",
        environment=environment,
        timeout=5,
        memory_size=256,
        function_name="stk-WorkerFunction",
    )


def _poller(
    queues: Queues,
    handler: Callable[[dict[str, Any], Any], Any],
    *,
    report_failures: bool = True,
    batch_size: int = 10,
    fifo: bool = False,
    **kwargs: Any,
) -> SqsPoller:
    return SqsPoller(
        _spec(),
        queues.fifo_url if fifo else queues.url,
        queues.fifo_arn if fifo else queues.arn,
        handler,
        batch_size,
        report_failures,
        threading.Event(),
        **kwargs,
    )


def _poll_until(poller: SqsPoller, done: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "condition not reached in time"
        poller.poll_once()


class Recorder:
    """A Lambda handler that records what it sees and fails records whose body is in ``fail``."""

    def __init__(self, fail: tuple[str, ...] = ()) -> None:
        self.fail = fail
        self.events: list[dict[str, Any]] = []
        self.contexts: list[Any] = []
        self.environ: list[dict[str, str | None]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        self.contexts.append(context)
        self.environ.append({"WORKER_MODE": os.environ.get("WORKER_MODE")})
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] in self.fail
            ]
        }

    def bodies(self) -> list[str]:
        return [r["body"] for event in self.events for r in event["Records"]]

    def receive_counts(self, body: str) -> list[str]:
        return [
            r["attributes"]["ApproximateReceiveCount"]
            for event in self.events
            for r in event["Records"]
            if r["body"] == body
        ]


# ------------------------------------------------------------------------------------------ event shape


def test_event_and_context_shape(queues: Queues) -> None:
    handler = Recorder()
    queues.send(
        "hello",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "push"},
            "n": {"DataType": "Number", "StringValue": "3"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    poller = _poller(queues, handler, environment={"WORKER_MODE": "poller-test"})
    assert poller.poll_once() == 1

    (event,) = handler.events
    (record,) = event["Records"]
    assert set(record) == {
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfBody",
        "md5OfMessageAttributes",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    }
    assert record["body"] == "hello"
    assert record["md5OfBody"] == hashlib.md5(b"hello").hexdigest()
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.arn == f"arn:aws:sqs:{REGION}:{ACCOUNT}:work"
    assert record["awsRegion"] == REGION
    attributes = record["attributes"]
    assert set(attributes) == {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert attributes["ApproximateReceiveCount"] == "1"
    assert all(isinstance(value, str) for value in attributes.values())
    assert attributes["SentTimestamp"].isdigit()
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "push", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "n": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
        "raw": {
            "binaryValue": base64.b64encode(b"\x00\x01").decode(),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "Binary",
        },
    }
    json.dumps(event)  # JSON-serialisable, as Lambda's events are

    # Powertools' models of Lambda's SQS event accept it.
    from aws_lambda_powertools.utilities.data_classes import SQSEvent
    from aws_lambda_powertools.utilities.parser.models import SqsModel

    SqsModel.model_validate(event)
    parsed = next(SQSEvent(event).records)
    assert parsed.message_attributes["kind"].string_value == "push"
    assert parsed.attributes.approximate_receive_count == "1"

    (context,) = handler.contexts
    assert context.function_name == "stk-WorkerFunction"
    assert context.memory_limit_in_mb == 256
    assert context.invoked_function_arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:stk-WorkerFunction"
    uuid.UUID(context.aws_request_id)
    assert 0 < context.get_remaining_time_in_millis() <= 5000

    # The function's own variables apply while it runs, and only then.
    assert handler.environ == [{"WORKER_MODE": "poller-test"}]
    assert "WORKER_MODE" not in os.environ


def test_fifo_event_attributes(queues: Queues) -> None:
    handler = Recorder()
    for index in range(3):
        queues.sqs.send_message(
            QueueUrl=queues.fifo_url,
            MessageBody=f"m{index}",
            MessageGroupId="cpo-1",
            MessageDeduplicationId=f"d{index}",
        )
    poller = _poller(queues, handler, fifo=True)
    _poll_until(poller, lambda: len(handler.bodies()) == 3)
    assert handler.bodies() == ["m0", "m1", "m2"], "group order kept"
    attributes = handler.events[0]["Records"][0]["attributes"]
    assert attributes["MessageGroupId"] == "cpo-1"
    assert attributes["MessageDeduplicationId"] == "d0"
    assert attributes["SequenceNumber"].isdigit()
    assert handler.events[0]["Records"][0]["eventSourceARN"].endswith(":work.fifo")


def test_batch_size_caps_messages_per_invocation(queues: Queues) -> None:
    handler = Recorder()
    queues.send(*(f"m{i}" for i in range(5)))
    poller = _poller(queues, handler, batch_size=2)
    _poll_until(poller, lambda: len(handler.bodies()) == 5)
    assert all(1 <= len(event["Records"]) <= 2 for event in handler.events)
    assert sorted(handler.bodies()) == [f"m{i}" for i in range(5)]


# ----------------------------------------------------------------------------------- deletes / retries


def test_successful_messages_are_deleted(queues: Queues) -> None:
    handler = Recorder()
    queues.send("a", "b", "c")
    poller = _poller(queues, handler)
    _poll_until(poller, lambda: len(handler.bodies()) == 3)
    assert queues.counts() == (0, 0), "deleted, not just in flight"
    assert sorted(handler.bodies()) == ["a", "b", "c"]


def test_reported_failures_are_redelivered_then_dead_lettered(queues: Queues) -> None:
    handler = Recorder(fail=("bad",))
    queues.send("ok1", "bad", "ok2")
    poller = _poller(queues, handler)
    _poll_until(poller, lambda: queues.dlq_bodies() == ["bad"], timeout=10)
    assert handler.receive_counts("bad") == [str(n) for n in range(1, MAX_RECEIVE_COUNT + 1)]
    assert handler.receive_counts("ok1") == ["1"] and handler.receive_counts("ok2") == ["1"]
    assert queues.counts() == (0, 0)


def test_without_report_batch_item_failures_a_returned_list_is_ignored(queues: Queues) -> None:
    handler = Recorder(fail=("bad",))
    queues.send("ok", "bad")
    poller = _poller(queues, handler, report_failures=False)
    _poll_until(poller, lambda: len(handler.bodies()) == 2)
    assert queues.counts() == (0, 0), "success of the invocation deletes the whole batch"


def test_raising_handler_retries_the_whole_batch(queues: Queues, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[list[tuple[str, str]]] = []

    def handler(event: dict[str, Any], context: Any) -> None:
        calls.append([(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]])
        if len(calls) == 1:
            raise RuntimeError("database down")

    queues.send("x", "y")
    poller = _poller(queues, handler)
    with caplog.at_level(logging.ERROR, logger="ocpi.local"):
        _poll_until(poller, lambda: len(calls) >= 1 and sum(len(c) for c in calls) >= 2)
        assert poller.handler_errors == 1
        assert queues.counts()[0] + queues.counts()[1] == 2, "nothing deleted"
        _poll_until(poller, lambda: sum(len(c) for c in calls) >= 4)
    first = sorted(item for call in calls for item in call if item[1] == "1")
    second = sorted(item for call in calls for item in call if item[1] == "2")
    assert first == [("x", "1"), ("y", "1")]
    assert second == [("x", "2"), ("y", "2")]
    assert queues.counts() == (0, 0)
    failure = next(r for r in caplog.records if "handler failed" in r.getMessage())
    assert failure.exc_info is not None and "database down" in caplog.text


def test_invalid_failure_report_retries_the_whole_batch(queues: Queues) -> None:
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(r["attributes"]["ApproximateReceiveCount"] for r in event["Records"])
        if len(seen) == 1:
            return {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]}
        return {"batchItemFailures": []}

    queues.send("only")
    poller = _poller(queues, handler)
    _poll_until(poller, lambda: seen == ["1", "2"])
    assert queues.counts() == (0, 0)


def test_batch_item_failures_rules() -> None:
    ids = ["m1", "m2"]
    assert batch_item_failures(None, ids) == set()
    assert batch_item_failures({}, ids) == set()
    assert batch_item_failures({"batchItemFailures": None}, ids) == set()
    assert batch_item_failures({"batchItemFailures": [{"itemIdentifier": "m2"}]}, ids) == {"m2"}
    assert batch_item_failures({"batchItemFailures": [{"itemIdentifier": ""}]}, ids) is None
    assert batch_item_failures({"batchItemFailures": [{"id": "m1"}]}, ids) is None
    assert batch_item_failures("ok", ids) is None


# --------------------------------------------------------------------------------------- powertools


def test_powertools_batch_processor_handler(queues: Queues) -> None:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    processor = BatchProcessor(event_type=EventType.SQS)
    processed: list[str] = []
    attempts: list[str] = []

    def record_handler(record: SQSRecord) -> None:
        attempts.append(record.body)
        if record.body == "bad":
            raise ValueError("bad record")
        processed.append(record.body)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    queues.send("good1", "bad", "good2")
    poller = _poller(queues, handler)
    _poll_until(poller, lambda: queues.dlq_bodies() == ["bad"], timeout=10)
    assert sorted(processed) == ["good1", "good2"]
    assert attempts.count("bad") == MAX_RECEIVE_COUNT
    # Alone in its retry batch, "bad" makes Powertools raise ("All records failed processing"): the
    # invocation fails, nothing is deleted, and the redrive policy takes over, as on Lambda.
    assert poller.handler_errors == 1
    assert queues.counts() == (0, 0)


# ------------------------------------------------------------------------------------------ threads


def test_pollers_run_in_threads_and_stop(queues: Queues, capsys: pytest.CaptureFixture[str]) -> None:
    handler = Recorder()
    done = threading.Event()

    def handler_and_signal(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result = handler(event, context)
        if len(handler.bodies()) >= 3:
            done.set()
        return result

    source = SqsEventSource(
        spec=_spec(),
        handler=handler_and_signal,
        queue_name="work",
        queue_url=queues.url,
        queue_arn=queues.arn,
        batch_size=5,
        report_failures=True,
        environment={"WORKER_MODE": "threaded"},
    )
    stop = threading.Event()
    pollers = start_pollers([source], stop)
    try:
        assert "poller: WorkerFunction <- work (batch 5)" in capsys.readouterr().out
        queues.send("t1", "t2", "t3")
        assert done.wait(8), "messages not handled in time"
    finally:
        started = time.monotonic()
        stop_pollers(pollers, stop)
    assert time.monotonic() - started < 3, "pollers stop within about one long poll"
    assert not pollers[0].thread.is_alive()
    assert {e["WORKER_MODE"] for e in handler.environ} == {"threaded"}
    assert "WORKER_MODE" not in os.environ


def test_poller_backs_off_after_errors_talking_to_sqs(
    queues: Queues, caplog: pytest.LogCaptureFixture
) -> None:
    poller = SqsPoller(
        _spec(),
        queues.url.replace("/work", "/no-such-queue"),
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue",
        Recorder(),
        10,
        True,
        threading.Event(),
    )
    with caplog.at_level(logging.WARNING, logger="ocpi.local"):
        poller.start()
        time.sleep(1.5)
        assert poller.thread.is_alive(), "errors do not kill the poller"
        stop_pollers([poller], poller.stop_event, timeout=3)
    assert not poller.thread.is_alive()
    warnings = [r for r in caplog.records if "retrying in 1 s" in r.getMessage()]
    assert 1 <= len(warnings) <= 3, "one attempt per second"


# --------------------------------------------------------------------------------- loading, helpers


def test_load_function_handler_applies_environment_for_the_import_only(tmp_path: Path) -> None:
    code = tmp_path / "worker"
    code.mkdir()
    (code / "app.py").write_text(
        "import os\n"
        "MODE_AT_IMPORT = os.environ['WORKER_MODE']\n"
        "def handler(event, context):\n"
        "    return {'mode': MODE_AT_IMPORT, 'now': os.environ.get('WORKER_MODE')}\n"
    )
    spec = FunctionSpec(logical_id="Worker", code_uri="worker", handler="app.handler")
    handler = load_function_handler(spec, tmp_path, {"WORKER_MODE": "imported"})
    assert "WORKER_MODE" not in os.environ
    assert handler({}, None) == {"mode": "imported", "now": None}


def test_build_sqs_event_without_attributes() -> None:
    event = build_sqs_event(
        [{"MessageId": "m", "ReceiptHandle": "r", "Body": "b", "MD5OfBody": "x"}],
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:q",
        REGION,
    )
    assert event["Records"][0]["messageAttributes"] == {}
    assert "md5OfMessageAttributes" not in event["Records"][0]
    context = LambdaContext("f", timeout_seconds=1)
    assert 0 < context.get_remaining_time_in_millis() <= 1000


def test_conflicting_function_variables_wait_for_each_other() -> None:
    from shared.local.stack import _EnvironmentOverlay

    overlay = _EnvironmentOverlay()
    inside_first = threading.Event()
    release_first = threading.Event()
    seen: list[str | None] = []

    def first() -> None:
        with overlay.applied({"WORKER_MODE": "a"}):
            inside_first.set()
            release_first.wait(5)
            seen.append(os.environ.get("WORKER_MODE"))

    def second() -> None:
        with overlay.applied({"WORKER_MODE": "b"}):
            seen.append(os.environ.get("WORKER_MODE"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert inside_first.wait(5)
    threads[1].start()
    with overlay.applied({"WORKER_MODE": "a"}):  # the same value runs alongside
        assert os.environ["WORKER_MODE"] == "a"
    time.sleep(0.1)
    assert seen == [], "the conflicting invocation waits"
    release_first.set()
    for thread in threads:
        thread.join(5)
    assert seen == ["a", "b"]
    assert "WORKER_MODE" not in os.environ
