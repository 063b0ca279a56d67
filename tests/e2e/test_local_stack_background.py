"""A background function (SQS event source, Powertools BatchProcessor) running in the local stack process."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.test_local_stack_process import running_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"

WORKER_APP = '''
"""Test background function: stores each record's body in DynamoDB and appends it to a file."""

import json
import os

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

OUTPUT = os.environ["WORKER_OUTPUT"]
MODULE_AT_IMPORT = os.environ["OCPI_FUNCTION_MODULE"]
table = boto3.resource("dynamodb").Table(os.environ["OCPI_TABLE_NAME"])
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record):
    if record.body == "bad":
        raise ValueError("bad record")
    module = os.environ.get("OCPI_FUNCTION_MODULE")
    table.put_item(Item={"PK": f"WORK#{record.body}", "SK": "W", "module": module})
    with open(OUTPUT, "a", encoding="utf-8") as out:
        line = {"body": record.body, "module": module, "at_import": MODULE_AT_IMPORT}
        out.write(json.dumps(line) + "\\n")


def handler(event, context):
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
'''

BACKGROUND_RESOURCES = """
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDlq.Arn
        maxReceiveCount: 2

  WorkDlq:
    Type: AWS::SQS::Queue

  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code_dir}
      Handler: app.handler
      Timeout: 10
      Environment:
        Variables:
          OCPI_FUNCTION_MODULE: worker
          WORKER_OUTPUT: {output}
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 5
            FunctionResponseTypes:
              - ReportBatchItemFailures
"""


def _template_with_worker(tmp_path: Path, output: Path) -> Path:
    code_dir = tmp_path / "worker"
    code_dir.mkdir()
    (code_dir / "app.py").write_text(WORKER_APP, encoding="utf-8")
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    # The copy lives in tmp: point the API functions' CodeUri at the repository's code.
    text = re.sub(r"(CodeUri:\s*)(?:\./)?functions/", rf"\g<1>{ROOT}/functions/", text)
    resources = BACKGROUND_RESOURCES.format(
        code_dir=json.dumps(str(code_dir)), output=json.dumps(str(output))
    )
    assert "\nResources:\n" in text
    template = tmp_path / "template.yaml"
    template.write_text(text.replace("\nResources:\n", "\nResources:" + resources, 1), encoding="utf-8")
    return template


def _client(service: str, moto_port: int) -> Any:
    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _wait_for(condition: Callable[[], Any], timeout: float, what: str, output: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout}s:\n{output()}")
        time.sleep(0.2)


def test_background_function_processes_queue_messages(tmp_path: Path) -> None:
    output = tmp_path / "worker-output.jsonl"
    template = _template_with_worker(tmp_path, output)
    with running_stack(TEMPLATE=str(template)) as stack:
        stack.wait_ready()
        queue_name = f"{stack.stack_name}-WorkQueue"
        assert f"poller: WorkerFunction <- {queue_name} (batch 5)" in stack.output

        sqs = _client("sqs", stack.moto_port)
        queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        dlq_url = sqs.get_queue_url(QueueName=f"{stack.stack_name}-WorkDlq")["QueueUrl"]
        for body in ("one", "two", "bad"):
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        def processed() -> list[dict[str, Any]]:
            if not output.exists():
                return []
            lines = [json.loads(line) for line in output.read_text().splitlines() if line]
            return lines if len(lines) >= 2 else []

        lines = _wait_for(processed, 10, "processing of the messages", lambda: stack.output)
        assert sorted(line["body"] for line in lines) == ["one", "two"]
        # The function's own environment applied at import and while it ran.
        assert {(line["module"], line["at_import"]) for line in lines} == {("worker", "worker")}

        # Globals applied too: it wrote to the stack's table (in moto).
        ddb = _client("dynamodb", stack.moto_port)
        table = f"{stack.stack_name}-OcpiTable"
        item = ddb.get_item(TableName=table, Key={"PK": {"S": "WORK#one"}, "SK": {"S": "W"}})["Item"]
        assert item["module"] == {"S": "worker"}

        # The failing record is retried, then dead-lettered by the queue's redrive policy.
        def dead_lettered() -> list[str]:
            messages = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=1).get("Messages", [])
            return [m["Body"] for m in messages]

        assert _wait_for(dead_lettered, 10, "dead-lettering of 'bad'", lambda: stack.output) == ["bad"]
        attrs = sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert attrs == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
        assert "handler failed" in stack.output, "the whole-batch failure is logged"
        assert "Traceback" in stack.output

        started = time.monotonic()
        assert stack.stop(signal.SIGTERM) == 0, stack.output
        assert time.monotonic() - started < 10, "pollers stop quickly"
        assert "stopped" in stack.output
