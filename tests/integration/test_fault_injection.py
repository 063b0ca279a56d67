"""Fault injection on loopback: partners that are down, slow, answer 500, answer garbage or reset the
connection, and DynamoDB throttling. Nothing is lost: every failure ends retried, delivered, or in a
dead-letter queue, and nothing is half stored.

Faults (a real HTTP server on 127.0.0.1 per partner, :class:`FaultPartner`): ``refused`` (a closed
port), ``slow`` (answers after our timeout), ``http500``, ``html`` (200 with a body that is not JSON),
``not_envelope`` (200 with JSON that is no OCPI envelope), ``status3000`` (200 with an envelope
carrying 3000), ``reset`` (the connection closed with SO_LINGER 0: a TCP RST). Paths driven through
the real code (handlers on moto, FastAPI apps in process):

- push delivery (PushDeliveryFunction on SQS, with moto's redrive to the DLQ): a location PUT and a
  command result POST per partner; each failure is in ``batchItemFailures`` with a backoff
  visibility, after PushMaxAttempts receives it is in the DLQ, a replay after recovery delivers it;
  messages in == delivered + still queued + dead-lettered;
- pull (PullFunction): a failed pull leaves our data and the partner's watermark as they were (a
  failure on the second page keeps what the first stored), the next run gets everything;
- real-time authorization: the whitelist's fallback (ALLOWED_OFFLINE decides locally, NEVER is
  NOT_ALLOWED);
- credentials: a partner registering with us whose API fails gets 3001 and can retry with the same
  token A; our registration with a failing partner stores nothing registered, no party claimed;
- commands we send (as eMSP): refused with ``ocpi.command.send_failed``, never retried;
- DynamoDB throttling (a before-call hook on the real moto client answering
  ProvisionedThroughputExceededException): API requests answer 503 + 3000 in the envelope with
  nothing (half) written, background functions report the record as failed for SQS to retry.

Timeouts and backoffs are tiny (TIMEOUT, PushRetryBaseSeconds=1, PushMaxAttempts=3) to keep the
file fast; the modules' clients get the short timeout through a wrapper of OcpiClient (the push
delivery through its own OCPI_PUSH_TIMEOUT).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from fastapi.testclient import TestClient

from shared import auth, config, events
from shared import client as client_module
from shared.auth import hash_token
from shared.errors import ClientApiError
from shared.services import authorization, commands, credentials, ingest, pull, push
from shared.store.base import ObjectRef, TokenRecord
from tests.conftest import TEMPLATE
from tests.integration.test_commands import token as token_of
from tests.integration.test_credentials import load_app
from tests.integration.test_ingest import location
from tests.integration.test_isolation_matrix import attach_write_recorder
from tests.integration.test_locations import hdr

ROOT = Path(__file__).resolve().parents[2]


class Context:
    """A Lambda context (tests.integration.test_lambda_events has one too, but importing that
    module parses template.yaml)."""

    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


class LongContext(Context):
    """The pull function's whole 15 minutes left."""

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


FAULTS = ("refused", "slow", "http500", "html", "not_envelope", "status3000", "reset")
TIMEOUT = 0.3  # our read timeout towards partners in this file
SLOW = 1.0  # how long the slow partner takes to answer
MAX_ATTEMPTS = 3  # PushMaxAttempts (template parameter) = maxReceiveCount of the delivery queue
V = "/ocpi/2.2.1"
LU = "2024-05-01T09:00:00Z"
ENVELOPE_TS = "2024-01-01T00:00:00Z"
BASE_URL = "https://ocpi.test"  # our public URL (conftest: OCPI_PUBLIC_URL)


# ------------------------------------------------------------------ a partner that misbehaves on demand
class FaultPartner:
    """A small OCPI partner on 127.0.0.1. Healthy, it answers versions, version details, credentials,
    its locations Sender list (one object per page, Link headers) and real-time authorization, and
    keeps whatever is PUT/PATCH/POSTed to it. Failing (``fail()``, the default), the requests that
    ``fault_on(method, path_with_query)`` selects (all by default) fail as ``fault`` says;
    ``fail_times`` limits that to the first n of them. ``recover()`` ends it."""

    def __init__(
        self, fault: str, *, failing: bool = True, party: tuple[str, str] = ("ZZ", "ZZZ"), role: str = "EMSP"
    ) -> None:
        self.fault = fault
        self.failing = failing and fault in FAULTS
        self.fail_times: int | None = None
        self.fault_on: Callable[[str, str], bool] = lambda method, target: True
        self.party, self.role = party, role
        self.requests: list[dict[str, Any]] = []
        self.received: dict[str, Any] = {}  # path -> body of what it took
        self.locations: list[dict[str, Any]] = []  # its Sender list
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = self._new_server(0)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def _new_server(self, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        server.daemon_threads = True
        server.handle_error = lambda request, address: None  # resets and timeouts are the point here
        return server

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def versions_url(self) -> str:
        return f"{self.base}/versions"

    def endpoints(self) -> list[dict[str, str]]:
        return [
            {"identifier": "credentials", "role": "RECEIVER", "url": f"{self.base}{V}/credentials"},
            {"identifier": "locations", "role": "SENDER", "url": f"{self.base}{V}/sender/locations"},
            {"identifier": "locations", "role": "RECEIVER", "url": f"{self.base}{V}/locations"},
            {"identifier": "tokens", "role": "SENDER", "url": f"{self.base}{V}/sender/tokens"},
            {"identifier": "commands", "role": "RECEIVER", "url": f"{self.base}{V}/commands"},
        ]

    def _listen(self, on: bool) -> None:
        if on and self._thread is None:
            if self._server is None:
                self._server = self._new_server(self.port)
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
            self._thread.start()
        elif not on and self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()  # nothing listens on the port: connection refused
            self._server, self._thread = None, None

    def __enter__(self) -> FaultPartner:
        self._listen(not (self.failing and self.fault == "refused"))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._listen(False)

    def fail(self) -> None:
        self.failing = self.fault in FAULTS
        if self.failing and self.fault == "refused":
            self._listen(False)

    def recover(self) -> None:
        self.failing = False
        self._listen(True)

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if method in (None, r["method"])]

    def _faulty(self, method: str, target: str) -> bool:
        with self._lock:
            if not self.failing or not self.fault_on(method, target):
                return False
            if self.fail_times is not None:
                if self.fail_times <= 0:
                    return False
                self.fail_times -= 1
            return True

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any, dict]:
        ok = {"status_code": 1000, "timestamp": ENVELOPE_TS}
        if path == "/versions":
            return 200, {**ok, "data": [{"version": "2.2.1", "url": f"{self.base}{V}"}]}, {}
        if path == V:
            return 200, {**ok, "data": {"version": "2.2.1", "endpoints": self.endpoints()}}, {}
        if path.endswith("/credentials") and method in ("POST", "PUT"):
            roles = [{"role": self.role, "country_code": self.party[0], "party_id": self.party[1],
                      "business_details": {"name": "fault partner"}}]  # fmt: skip
            data = {"token": f"token-c-{self.port}", "url": self.versions_url, "roles": roles}
            return 200, {**ok, "data": data}, {}
        if path == f"{V}/sender/locations" and method == "GET":
            offset = int(query.get("offset", ["0"])[0])
            page = self.locations[offset : offset + 1]
            headers = {"X-Total-Count": str(len(self.locations))}
            if offset + 1 < len(self.locations):
                headers["Link"] = f'<{self.base}{V}/sender/locations?offset={offset + 1}>; rel="next"'
            return 200, {**ok, "data": page}, headers
        if path.startswith(f"{V}/sender/tokens/") and path.endswith("/authorize"):
            uid = path.split("/")[-2]
            token = token_of(self.party[0], self.party[1], uid)
            token["type"] = "RFID"
            info = {"allowed": "ALLOWED", "token": token, "authorization_reference": f"RT-{uid}"}
            return 200, {**ok, "data": info}, {}
        with self._lock:
            self.received[path] = body
        return (201 if method == "POST" else 200), ok, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        partner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, raw: bytes, headers: dict | None = None, kind: str = "json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if kind == "json" else "text/html")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                with partner._lock:
                    partner.requests.append(
                        {"method": method, "path": self.path, "at": time.monotonic(), "query": parts.query}
                    )
                if partner._faulty(method, self.path):
                    return self._fail(partner.fault)
                status, body, headers = partner._answer(
                    method, parts.path, parse_qs(parts.query), json.loads(raw) if raw else None
                )
                self._send(status, json.dumps(body).encode(), headers)

            def _fail(self, mode: str) -> None:
                if mode == "slow":
                    time.sleep(SLOW)
                    return self._send(
                        200, json.dumps({"status_code": 1000, "timestamp": ENVELOPE_TS}).encode()
                    )
                if mode == "http500":
                    body = {"status_code": 3000, "status_message": "down", "timestamp": ENVELOPE_TS}
                    return self._send(500, json.dumps(body).encode())
                if mode == "html":
                    return self._send(200, b"<html><body>Bad gateway</body></html>", kind="html")
                if mode == "not_envelope":
                    return self._send(200, json.dumps({"result": "ACCEPTED", "ok": True}).encode())
                if mode == "status3000":
                    body = {"status_code": 3000, "status_message": "backend error", "timestamp": ENVELOPE_TS}
                    return self._send(200, json.dumps(body).encode())
                if mode == "reset":  # an RST instead of an answer
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return None
                raise AssertionError(mode)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler


@contextmanager
def fault_partners(modes: tuple[str, ...], **kw: Any) -> Iterator[dict[str, FaultPartner]]:
    """One partner per mode: a fault of FAULTS, or "ok" (never fails)."""
    servers = {m: FaultPartner(m if m in FAULTS else "ok", **kw) for m in modes}
    for s in servers.values():
        s.__enter__()
    try:
        yield servers
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)


# ------------------------------------------------------------------ DynamoDB throttling
@contextmanager
def throttled(client: Any, operations: set[str], times: int | None = None) -> Iterator[dict[str, int]]:
    """Every call of ``operations`` (the first ``times`` ones) on this botocore client fails with
    ProvisionedThroughputExceededException, as DynamoDB answers once botocore's own retries are spent."""
    state = {"left": times if times is not None else 10**9, "throttled": 0}

    def hook(model: Any, **_: Any) -> Any:
        if model.name in operations and state["left"] > 0:
            state["left"] -= 1
            state["throttled"] += 1
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeded"}
            return AWSResponse("https://dynamodb.eu-west-1.amazonaws.com", 400, {}, None), {
                "Error": error,
                "ResponseMetadata": {"HTTPStatusCode": 400},
            }
        return None

    client.meta.events.register_first("before-call.dynamodb", hook)
    try:
        yield state
    finally:
        client.meta.events.unregister("before-call.dynamodb", hook)


# ------------------------------------------------------------------ moto, once for the file
@lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    from shared.local.template import load_template

    return load_template(TEMPLATE)  # parsing it costs about a second: once per file


def _provision(only: set[str] | None, overrides: dict[str, str]) -> dict[str, str]:
    """template.yaml's resources (or ``only`` those) on moto."""
    from shared.local.template import Resolver, provision

    template = _template()
    if only is not None:
        template = {**template, "Resources": {k: r for k, r in template["Resources"].items() if k in only}}
    resolver = Resolver(
        template,
        stack_name="fault",
        region="eu-west-1",
        account_id="123456789012",
        parameter_overrides=overrides,
    )
    return provision(template, resolver)


@pytest.fixture(scope="module")
def moto_stack() -> Iterator[dict[str, str]]:
    from moto import mock_aws

    with mock_aws():
        names = _provision(None, {"PushMaxAttempts": str(MAX_ATTEMPTS), "PushRetryBaseSeconds": "1"})
        if "OcpiKey" not in names:  # partner tokens are sealed with KMS whenever DynamoDB is the store
            names["OcpiKey"] = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
        yield names


@pytest.fixture
def stack(moto_stack, monkeypatch) -> Iterator[dict[str, Any]]:
    """The module's moto stack (queues, bus, key) plugged in for one test, with an empty table."""
    from shared.store import dynamodb_client, set_store
    from shared.store.dynamo import DynamoStore

    env = {
        "OCPI_TABLE_NAME": moto_stack["OcpiTable"],
        "OCPI_EVENT_BUS_NAME": moto_stack["OcpiBus"],
        "OCPI_KMS_KEY_ID": moto_stack["OcpiKey"],
        "OCPI_PUSH_QUEUE_URL": moto_stack["PushDeliveryQueue"],
        "OCPI_PUSH_DLQ_URL": moto_stack["PushDeliveryDeadLetterQueue"],
        "OCPI_PUSH_TIMEOUT": str(TIMEOUT),
        "OCPI_PUSH_BREAKER_SECONDS": "0",
        "OCPI_PUSH_RETRY_BASE": "1",
        "OCPI_PUSH_RETRY_CAP": "1",
        "OCPI_PUSH_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "OCPI_COMMAND_TIMEOUT": "900",  # the TIMEOUT check stays delayed in the queue during the test
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    config.reset_settings()
    store = DynamoStore(dynamodb_client(), moto_stack["OcpiTable"])
    set_store(store)
    yield {"store": store, "names": moto_stack, "sqs": boto3.client("sqs", region_name="eu-west-1")}
    # A fresh table for the next test (moto reads the whole table for every index query).
    store.client.delete_table(TableName=moto_stack["OcpiTable"])
    _provision({"OcpiTable", "OcpiKey"}, {})  # the table refers to the key


@pytest.fixture
def short_timeouts(monkeypatch) -> None:
    """The modules' OCPI clients with this file's timeout and a tiny backoff (their retry counts kept)."""
    real = client_module.OcpiClient

    def short(*args: Any, **kw: Any) -> Any:
        return real(*args, **{**kw, "timeout": TIMEOUT, "connect_timeout": TIMEOUT, "backoff": 0.01})

    for module in (pull, authorization, credentials, client_module):
        monkeypatch.setattr(module, "OcpiClient", short)


def load_handler(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"fault_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


def register(store: Any, partner_id: str, server: FaultPartner, role: str, party: tuple[str, str]) -> dict:
    token = f"tok-{partner_id}"
    store.put_partner(
        {
            "partner_id": partner_id,
            "status": "REGISTERED",
            "version": "2.2.1",
            "roles": [{"role": role, "country_code": party[0], "party_id": party[1]}],
            "endpoints": server.endpoints(),
            "outbound_token": f"outbound-{partner_id}",
        }
    )
    store.put_token(TokenRecord(hash_token(token), partner_id, "C"))
    return hdr(token)


# ------------------------------------------------------------------ SQS, as Lambda's event source mapping
def sqs_event(messages: list[dict], arn: str) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m["Attributes"],
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


def receive_all(sqs: Any, url: str) -> list[dict]:
    out: list[dict] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get(
            "Messages", []
        )
        if not got:
            return out
        out.extend(got)


def run_batches(sqs: Any, url: str, handler: Any, messages: list[dict]) -> set[str]:
    """Invoke ``handler`` with batches of 10, delete what succeeded (the event source mapping
    does); returns the ids of the failed records."""
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    failed: set[str] = set()
    for i in range(0, len(messages), 10):
        batch = messages[i : i + 10]
        result = handler(sqs_event(batch, arn), Context())
        ids = {f["itemIdentifier"] for f in result["batchItemFailures"]}
        failed |= ids
        done = [m for m in batch if m["MessageId"] not in ids]
        for j in range(0, len(done), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done[j : j + 10])
            ]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
    return failed


def queue_counts(sqs: Any, url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return {
        k: int(attrs[f"ApproximateNumberOf{k}"])
        for k in ("Messages", "MessagesNotVisible", "MessagesDelayed")
    }


def count_sends(sqs_client: Any, url: str) -> dict[str, int]:
    """Count the messages SQS accepted onto ``url`` through this client."""
    counter = {"sent": 0}

    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["fault_queue"] = params.get("QueueUrl")

    def after(
        http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if context.get("fault_queue") != url or http_response.status_code >= 300:
            return
        counter["sent"] += len(parsed.get("Successful", [])) if model.name == "SendMessageBatch" else 1

    for op in ("SendMessage", "SendMessageBatch"):
        sqs_client.meta.events.register(f"before-parameter-build.sqs.{op}", before)
        sqs_client.meta.events.register(f"after-call.sqs.{op}", after)
    return counter


# ------------------------------------------------------------------ push delivery
def test_push_deliveries_are_retried_dead_lettered_and_replayed(stack, monkeypatch) -> None:
    """A location PUT and a command result POST to each partner; faults x 2 paths."""
    store, sqs, names = stack["store"], stack["sqs"], stack["names"]
    queue, dlq = names["PushDeliveryQueue"], names["PushDeliveryDeadLetterQueue"]
    sent = count_sends(push._sqs(), queue)
    delivery = load_handler("push_delivery")
    # moto is not thread safe and the function delivers a batch concurrently: a rare moto error
    # then fails a record with no backoff (SQS retries it after the queue's visibility timeout,
    # 2 s here). Such errors are counted, never hidden: they are attempts that called nobody.
    unexpected: dict[str, int] = {}
    real_deliver = push.deliver

    def counting(store: Any, d: push.Delivery, partner: Any, settings: Any, **kw: Any) -> str:
        try:
            return real_deliver(store, d, partner, settings, **kw)
        except push.PushFailed:
            raise
        except Exception as err:
            unexpected[d.partner_id] = unexpected.get(d.partner_id, 0) + 1
            print(f"unexpected delivery error (retried by SQS): {type(err).__name__}: {str(err)[:200]}")
            raise

    monkeypatch.setattr(push, "deliver", counting)
    visibility = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["VisibilityTimeout"])["Attributes"]
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "2"})
    try:
        _push_under_faults(store, sqs, names, queue, dlq, sent, delivery, unexpected)
    finally:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes=visibility)


def _push_under_faults(
    store: Any,
    sqs: Any,
    names: dict[str, str],
    queue: str,
    dlq: str,
    sent: dict[str, int],
    delivery: Any,
    unexpected: dict[str, int],
) -> None:
    modes = (*FAULTS, "ok", "flaky")
    with fault_partners(modes) as servers:
        flaky = servers["flaky"]
        flaky.fault, flaky.failing, flaky.fail_times = "http500", True, 1  # one failure, then fine
        own = location("FLOC1", LU)
        own["evses"][0]["capabilities"] = ["REMOTE_START_STOP_CAPABLE"]
        ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": own})
        api = TestClient(load_app("commands"), raise_server_exceptions=False)
        command_of: dict[str, str] = {}
        for i, mode in enumerate(modes):
            party = ("FI", f"E{i:02d}")
            h = register(store, f"push-{mode}", servers[mode], "EMSP", party)
            start = {
                "response_url": f"{servers[mode].base}{V}/commands/START_SESSION/{mode}",
                "token": token_of(*party, f"UID{i}"),
                "location_id": "FLOC1",
                "evse_uid": "3256",
            }
            resp = api.post(f"{V}/receiver/commands/START_SESSION", json=start, headers=h).json()
            assert resp["data"]["result"] == "ACCEPTED", resp
            ids = [c for c in _stored_commands(store) if c.body["partner_id"] == f"push-{mode}"]
            command_of[mode] = ids[0].ref.object_id
        for mode in modes:
            assert (
                commands.record_result(store, {"command_id": command_of[mode], "result": "ACCEPTED"})
                == "applied"
            )
        # The bus (moto) routed every own change to the fan-out queue: the fan-out function queues
        # one delivery per partner for the location, and one per command result.
        fanout = receive_all(sqs, names["PushFanoutQueue"])
        assert run_batches(sqs, names["PushFanoutQueue"], load_handler("push_fanout"), fanout) == set()
        queued_in = sent["sent"]  # deliveries + the delayed TIMEOUT checks of the commands
        assert queued_in == 3 * len(modes), queued_in

        failures: dict[str, list[float]] = {}  # message id -> when each attempt failed
        receipts: dict[str, list[float]] = {}  # message id -> when it was received
        bodies: dict[str, dict] = {}
        delivered: set[str] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msgs = receive_all(sqs, queue)
            if not msgs:
                if queue_counts(sqs, queue)["MessagesNotVisible"] == 0:
                    break
                time.sleep(0.1)
                continue
            now = time.monotonic()
            for m in msgs:
                receipts.setdefault(m["MessageId"], []).append(now)
                bodies[m["MessageId"]] = json.loads(m["Body"])
            failed = run_batches(sqs, queue, delivery, msgs)
            for m in msgs:
                if m["MessageId"] in failed:
                    failures.setdefault(m["MessageId"], []).append(time.monotonic())
                else:
                    delivered.add(m["MessageId"])
        dead = receive_all(sqs, dlq)
        dead_ids = {m["MessageId"] for m in dead}

        by_partner: dict[str, set[str]] = {}
        for mid, body in bodies.items():
            by_partner.setdefault(body["partner_id"], set()).add(mid)
        for mode in modes:
            mids = by_partner[f"push-{mode}"]
            assert {bodies[m]["module"] for m in mids} == {"locations", "commands"}, mode
            server = servers[mode]
            if mode in FAULTS:
                # Every attempt failed, each retried after the backoff, the last one dead-lettered.
                assert mids <= dead_ids and not mids & delivered, mode
                for mid in mids:
                    assert len(failures[mid]) == len(receipts[mid]) == MAX_ATTEMPTS, (mode, failures[mid])
                    # Invisible for the backoff (1 s) after each failure: receipts at least that far apart.
                    gaps = [b - a for a, b in zip(receipts[mid], receipts[mid][1:], strict=False)]
                    assert min(gaps) >= 0.95, (mode, "retried before its backoff", gaps)
                expected_calls = (
                    0 if mode == "refused" else 2 * MAX_ATTEMPTS - unexpected.get(f"push-{mode}", 0)
                )
                assert len(server.requests) == expected_calls, (mode, len(server.requests))
                assert (
                    store.push_state(ObjectRef("locations", "NL", "CPO", "FLOC1")).inflight.get(
                        f"push-{mode}"
                    )
                    is None
                ), "the in-flight mark is dropped with the last attempt"
            else:
                assert mids <= delivered and not mids & dead_ids, mode
                assert server.received[f"{V}/locations/NL/CPO/FLOC1"]["id"] == "FLOC1"
                assert server.received[f"{V}/commands/START_SESSION/{mode}"] == {"result": "ACCEPTED"}
        # The flaky partner's one failure (and any moto error counted above) before delivery.
        retried = sum(len(f) for m, f in failures.items() if m in delivered)
        assert retried == 1 + sum(n for p, n in unexpected.items() if p in ("push-ok", "push-flaky")), retried
        # Nothing lost: every message queued is delivered, still queued (the delayed TIMEOUT checks)
        # or dead-lettered.
        left = queue_counts(sqs, queue)
        assert left["MessagesDelayed"] == len(modes) and left["Messages"] == left["MessagesNotVisible"] == 0
        assert queued_in == len(delivered) + left["MessagesDelayed"] + len(dead), (queued_in, left, len(dead))
        assert len(dead) == 2 * len(FAULTS)
        print(
            f"push under faults: {queued_in} messages in = {len(delivered)} delivered + "
            f"{left['MessagesDelayed']} queued (TIMEOUT checks) + {len(dead)} dead-lettered; "
            f"{sum(len(f) for f in failures.values())} failed attempts; moto errors {unexpected or 0}"
        )

        # The partners recover; the operator replays the DLQ: every dead-lettered delivery arrives.
        for s in dead:  # make them visible again for the replay (our receive above hid them)
            sqs.change_message_visibility(QueueUrl=dlq, ReceiptHandle=s["ReceiptHandle"], VisibilityTimeout=0)
        for mode in FAULTS:
            servers[mode].recover()
        assert len(push.dlq_replay()) == len(dead)
        replayed = 0
        deadline = time.monotonic() + 10
        while replayed < len(dead) and time.monotonic() < deadline:
            again = receive_all(sqs, queue)
            failed = run_batches(sqs, queue, delivery, again) if again else set()
            replayed += len(again) - len(failed)
            time.sleep(0 if again else 0.2)
        assert replayed == len(dead), (replayed, len(dead))
        for mode in FAULTS:
            received = servers[mode].received
            assert received[f"{V}/locations/NL/CPO/FLOC1"]["id"] == "FLOC1", mode
            assert received[f"{V}/commands/START_SESSION/{mode}"] == {"result": "ACCEPTED"}, mode
        assert queue_counts(sqs, dlq)["Messages"] == 0


def _stored_commands(store: Any) -> list[Any]:
    from shared.store.base import ListQuery

    return store.list(ListQuery(commands.COLLECTION, commands.MODULE, limit=100)).items


# ------------------------------------------------------------------ pull
def _pulled_location(i: int, version: int, party: tuple[str, str]) -> dict[str, Any]:
    loc = location(f"PL{i}", f"2024-05-0{version}T09:00:00Z", *party)
    loc["name"] = f"version {version}"
    loc["evses"][0]["last_updated"] = loc["last_updated"]
    return loc


def test_a_failed_pull_changes_nothing_and_the_next_run_gets_everything(stack, short_timeouts) -> None:
    store = stack["store"]
    run = load_handler("pull")
    modes = (*FAULTS, "page2", "ok")
    with fault_partners(modes, role="CPO", failing=False) as servers:
        party = {m: ("FI", f"C{i:02d}") for i, m in enumerate(modes)}
        for m in modes:
            register(store, f"pull-{m}", servers[m], "CPO", party[m])
            servers[m].party = party[m]
            servers[m].locations = [_pulled_location(1, 1, party[m])]
        servers["page2"].locations.append(_pulled_location(2, 1, party["page2"]))
        servers["page2"].fault = "http500"
        servers["page2"].fault_on = lambda method, target: "offset=1" in target  # its second page
        # A first pull, every partner healthy: version 1 stored, each partner's watermark set.
        first = run({"incremental": True}, LongContext())
        assert not first["failed"], first["failed"]
        assert {f"pull-{m}" for m in modes} <= {p["partner_id"] for p in first["pulled"]}

        def stored(m: str, i: int = 1) -> str:
            found = store.get(ObjectRef("locations", *party[m], f"PL{i}"), consistent=True)
            return json.dumps([found.body, [c.body for c in found.children]], sort_keys=True, default=str)

        before = {m: (stored(m), store.get_partner(f"pull-{m}")["pulled_at"]) for m in modes}
        # The partners change their locations (version 2), then fail: each pull fails.
        for m in modes:
            count = len(servers[m].locations)
            servers[m].locations = [_pulled_location(i + 1, 2, party[m]) for i in range(count)]
            servers[m].requests.clear()
            servers[m].fail()
        second = run({"incremental": True}, LongContext())
        failed = {f["partner_id"]: f for f in second["failed"]}
        assert set(failed) == {f"pull-{m}" for m in (*FAULTS, "page2")}, second
        assert "pull-ok" in {p["partner_id"] for p in second["pulled"]}  # the others went on
        for m in FAULTS:
            assert "failed after 0 objects" in failed[f"pull-{m}"]["error"], failed[f"pull-{m}"]
            # Our copy and the watermark are as they were: the next run asks from the same date_from.
            assert (stored(m), store.get_partner(f"pull-{m}")["pulled_at"]) == before[m], m
        # A failure on the second page: the first page's object is stored (the partner's current
        # data), the second is not, the watermark does not move.
        assert (failed["pull-page2"]["fetched"], failed["pull-page2"]["updated"]) == (1, 1)
        assert '"version 2"' in stored("page2", 1) and '"version 1"' in stored("page2", 2)
        assert store.get_partner("pull-page2")["pulled_at"] == before["page2"][1]
        asked = {m: [r["query"] for r in servers[m].calls("GET")][:1] for m in modes}
        # The partners recover: the next scheduled run pulls everything, from the same watermark.
        for m in modes:
            servers[m].requests.clear()
            servers[m].recover()
        third = run({"incremental": True}, LongContext())
        assert not [f for f in third["failed"] if f["partner_id"].startswith("pull-")], third["failed"]
        for m in modes:
            assert all('"version 2"' in stored(m, i + 1) for i in range(len(servers[m].locations))), m
            if m != "ok" and asked[m]:  # a refused partner saw no request to compare with
                assert [r["query"] for r in servers[m].calls("GET")][:1] == asked[m], m
            assert store.get_partner(f"pull-{m}")["pulled_at"] != before[m][1], m


# ------------------------------------------------------------------ real-time authorization
def test_real_time_authorization_falls_back_when_the_emsp_fails(stack, short_timeouts) -> None:
    """ALLOWED_OFFLINE: the local decision; NEVER: NOT_ALLOWED (mod_tokens WhitelistType)."""
    store = stack["store"]
    api = TestClient(load_app("tokens"), raise_server_exceptions=False)
    modes = (*FAULTS, "ok")
    with fault_partners(modes) as servers:
        for i, m in enumerate(modes):
            party = ("FI", f"M{i:02d}")
            servers[m].party = party
            h = register(store, f"rta-{m}", servers[m], "EMSP", party)
            for whitelist in ("ALLOWED_OFFLINE", "NEVER"):
                t = {**token_of(*party, f"RT{i}{whitelist[0]}"), "type": "RFID", "whitelist": whitelist}
                resp = api.put(f"{V}/receiver/tokens/{party[0]}/{party[1]}/{t['uid']}", json=t, headers=h)
                assert resp.status_code == 201, resp.json()
        for i, m in enumerate(modes):
            offline = authorization.authorize_driver(store, f"RT{i}A", "RFID")
            never = authorization.authorize_driver(store, f"RT{i}N", "RFID")
            if m == "ok":
                assert (offline["allowed"], offline["source"]) == ("ALLOWED", "real-time")
                assert offline["authorization_reference"] == f"RT-RT{i}A"
                continue
            assert (offline["allowed"], offline["source"]) == ("ALLOWED", "offline-whitelist"), m
            assert (never["allowed"], never["source"]) == ("NOT_ALLOWED", "real-time-unavailable"), m
            assert "authorization_reference" not in offline and "authorization_reference" not in never
            # One try each (a driver is waiting at the charger), none for a partner that refuses.
            assert len(servers[m].calls("POST")) == (0 if m == "refused" else 2), m


# ------------------------------------------------------------------ credentials handshake
def _creds(server: FaultPartner, token: str) -> dict[str, Any]:
    role = {"role": "EMSP", "country_code": server.party[0], "party_id": server.party[1]}
    return {
        "token": token,
        "url": server.versions_url,
        "roles": [{**role, "business_details": {"name": "x"}}],
    }


def _claimed(store: Any, server: FaultPartner) -> bool:
    """Whether another partner holds the server's party (probed by claiming it, then releasing)."""
    key = [("EMSP", *server.party)]
    taken = store.claim_parties("probe", key)
    if not taken:
        store.release_parties("probe", key)
    return bool(taken)


def test_credentials_handshake_with_a_failing_partner_stores_nothing_half(stack, short_timeouts) -> None:
    store = stack["store"]
    writes: list[tuple[str, list[str]]] = []
    attach_write_recorder(store.client, writes)
    creds_api = TestClient(load_app("credentials"), raise_server_exceptions=False)
    versions_api = TestClient(load_app("versions"), raise_server_exceptions=False)
    with fault_partners(FAULTS) as servers:
        for i, m in enumerate(FAULTS):
            server = servers[m]
            server.party = ("FI", f"R{i:02d}")
            # 1. A partner registers with us; calling its versions endpoint back fails.
            partner_id, token_a = credentials.invite(store, f"cred-{m}")
            resp = creds_api.post(f"{V}/credentials", json=_creds(server, f"tok-b-{m}"), headers=hdr(token_a))
            body = resp.json()
            assert (resp.status_code, body["status_code"]) == (200, 3001), (m, body)
            assert "Unable to use the partner's API" in body["status_message"], m
            partner = store.get_partner(partner_id)
            assert (partner["status"], partner["roles"]) == ("INVITED", []), m
            assert not _claimed(store, server), m
            assert (
                versions_api.get("/ocpi/versions", headers=hdr(token_a)).status_code == 200
            )  # token A lives
            # 2. We register with it: its versions endpoint fails, nothing is stored.
            writes.clear()
            with pytest.raises(ClientApiError):
                credentials.register_with(store, BASE_URL, server.versions_url, f"their-token-a-{m}")
            assert writes == [], (m, writes)
            # 3. We register with it: versions answer, our POST of credentials fails (a refused
            # partner refuses everything: that was 2). Its record says UNREGISTERED, no token, no party.
            if m != "refused":
                writes.clear()
                server.recover()
                server.fault_on = lambda method, target: method == "POST" and target.endswith("/credentials")
                server.fail()
                with pytest.raises(ClientApiError):
                    credentials.register_with(store, BASE_URL, server.versions_url, f"their-token-a-{m}")
                written = {k.split("|")[0] for _, keys in writes for k in keys if k.startswith("P#")}
                mine = [store.get_partner(k.removeprefix("P#")) for k in written]
                assert [p["status"] for p in mine] == ["UNREGISTERED"], m
                assert not mine[0].get("outbound_token") and not mine[0].get("inbound_token_hash"), m
                assert not _claimed(store, server), m
            # The partner recovers: the same token A completes the registration, and so does ours.
            server.recover()
            ok = creds_api.post(f"{V}/credentials", json=_creds(server, f"tok-b-{m}"), headers=hdr(token_a))
            assert ok.json()["status_code"] == 1000, (m, ok.json())
            assert store.get_partner(partner_id)["status"] == "REGISTERED"


# ------------------------------------------------------------------ commands we send (as eMSP)
def test_a_command_to_a_failing_cpo_is_reported_failed_and_never_retried(stack, short_timeouts) -> None:
    store = stack["store"]
    published: list[dict] = []
    events.set_sink(published.append)
    with fault_partners(FAULTS, role="CPO") as servers:
        for i, m in enumerate(FAULTS):
            register(store, f"cmd-{m}", servers[m], "CPO", ("FI", f"K{i:02d}"))
            detail = {
                "partner_id": f"cmd-{m}",
                "type": "START_SESSION",
                "request": {"token": token_of("NL", "MSP", "OWNUID"), "location_id": "L1"},
                "reference": f"ref-{m}",
            }
            assert commands.send_from_backoffice(store, detail) == "failed", m
            [event] = [json.loads(e["Detail"]) for e in published if e["DetailType"] == commands.SEND_FAILED][
                -1:
            ]
            assert (event["partner_id"], event["reference"]) == (f"cmd-{m}", f"ref-{m}"), event
            # Sent once, never again by us (the partner may have taken it: the operator decides).
            assert len(servers[m].calls("POST")) == (0 if m == "refused" else 1), m


# ------------------------------------------------------------------ DynamoDB throttling
def _sqs_record(message_id: str, body: dict[str, Any], count: int) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": json.dumps(body),
        "attributes": {"ApproximateReceiveCount": str(count)},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:fault",
        "awsRegion": "eu-west-1",
    }


def test_dynamodb_throttling_answers_503_writes_nothing_half_and_background_records_retry(stack) -> None:
    store, sqs, names = stack["store"], stack["sqs"], stack["names"]
    client = store.client
    published: list[dict] = []
    events.set_sink(published.append)
    with fault_partners(("ok",), role="EMSP") as servers:
        h = register(store, "thr-cpo", servers["ok"], "CPO", ("FI", "THR"))
        tariffs_api = TestClient(load_app("tariffs"), raise_server_exceptions=False)
        locations_api = TestClient(load_app("locations"), raise_server_exceptions=False)
        tariff = {
            "country_code": "FI",
            "party_id": "THR",
            "id": "T1",
            "currency": "EUR",
            "elements": [{"price_components": [{"type": "ENERGY", "price": 0.3, "step_size": 1}]}],
            "last_updated": LU,
        }
        url = f"{V}/receiver/tariffs/FI/THR/T1"
        # 1. A receiver PUT whose write is throttled: 503 + 3000 in the envelope, nothing stored or
        # announced; the partner's retry succeeds.
        with throttled(client, {"PutItem"}) as t:
            resp = tariffs_api.put(url, json=tariff, headers=h)
        assert t["throttled"] == 1 and (resp.status_code, resp.json()["status_code"]) == (503, 3000)
        assert "retry" in resp.json()["status_message"] and "Throttl" not in resp.text
        assert store.get(ObjectRef("tariffs", "FI", "THR", "T1")) is None and published == []
        assert tariffs_api.put(url, json=tariff, headers=h).status_code == 201
        # 2. The token lookup itself throttled (a cold container): 503, not 401 (the token is
        # fine), and no "unknown token" remembered for the next request.
        auth.clear_cache()
        with throttled(client, {"GetItem", "Query"}, times=1):
            resp = tariffs_api.get(url, headers=h)
        assert (resp.status_code, resp.json()["status_code"]) == (503, 3000)
        assert tariffs_api.get(url, headers=h).json()["data"]["id"] == "T1"
        # 3. A location PUT (a header and its EVSEs): throttled reading the EVSEs or writing them,
        # the stored location stays as it was (header and EVSEs), never half replaced.
        loc = location("L1", LU, "FI", "THR")
        lurl = f"{V}/receiver/locations/FI/THR/L1"
        assert locations_api.put(lurl, json=loc, headers=h).status_code == 201

        def stored_location() -> str:
            found = store.get(ObjectRef("locations", "FI", "THR", "L1"), consistent=True)
            return json.dumps([found.body, [c.body for c in found.children]], sort_keys=True, default=str)

        before = stored_location()
        newer = {**loc, "name": "renamed", "last_updated": "2024-06-01T00:00:00Z"}
        newer["evses"] = [{**loc["evses"][0], "status": "CHARGING", "last_updated": "2024-06-01T00:00:00Z"}]
        for operation in ("Query", "BatchWriteItem"):
            with throttled(client, {operation}, times=1) as t:
                resp = locations_api.put(lurl, json=newer, headers=h)
            assert t["throttled"] == 1, operation
            assert (resp.status_code, resp.json()["status_code"]) == (503, 3000), (operation, resp.json())
            assert stored_location() == before, f"half written after a throttled {operation}"
        assert locations_api.put(lurl, json=newer, headers=h).status_code == 200
        assert '"renamed"' in stored_location() and '"CHARGING"' in stored_location()

        # 4. The ingest function (SQS): a throttled write fails the record for SQS to retry; the
        # retry stores it.
        ingest_handler = load_handler("ingest")
        own = {**tariff, "country_code": "NL", "party_id": "CPO", "id": "OWN-T"}
        body = {
            "source": "ocpi.backoffice",
            "detail-type": events.OWN_PUT,
            "detail": {"module": "tariffs", "object": own},
        }
        with throttled(client, {"PutItem"}):
            result = ingest_handler({"Records": [_sqs_record("m1", body, 1)]}, Context())
        assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
        assert store.get(ObjectRef("tariffs", "NL", "CPO", "OWN-T")) is None
        assert ingest_handler({"Records": [_sqs_record("m1", body, 2)]}, Context()) == {
            "batchItemFailures": []
        }
        assert store.get(ObjectRef("tariffs", "NL", "CPO", "OWN-T")) is not None

        # 5. The push delivery function (SQS, moto): throttled reading the push state, the record
        # fails and stays on the queue (in flight, not dead-lettered, the partner not called);
        # when it comes back, it is delivered.
        store.put_partner(
            {
                **store.get_partner("thr-cpo"),
                "roles": [{"role": "EMSP", "country_code": "FI", "party_id": "THR"}],
            }
        )
        queue = names["PushDeliveryQueue"]
        for m in receive_all(sqs, queue):  # nothing else of this test on the queue
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        own_loc = location("THR-LOC", LU)
        ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": own_loc})
        change = push.Change("locations", "put", "NL", "CPO", "THR-LOC")
        assert push.enqueue(push.fan_out(store, change, store.list_partners(), push.PushSettings())) == []
        delivery = load_handler("push_delivery")
        [msg] = receive_all(sqs, queue)
        with throttled(client, {"GetItem", "Query"}):
            assert run_batches(sqs, queue, delivery, [msg]) == {msg["MessageId"]}
        assert servers["ok"].calls() == []
        assert queue_counts(sqs, queue)["MessagesNotVisible"] == 1
        assert queue_counts(sqs, names["PushDeliveryDeadLetterQueue"])["Messages"] == 0
        # (SQS brings it back after the queue's visibility timeout: here at once.)
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"], VisibilityTimeout=0)
        [again] = receive_all(sqs, queue)
        assert again["MessageId"] == msg["MessageId"] and run_batches(sqs, queue, delivery, [again]) == set()
        assert servers["ok"].received[f"{V}/locations/NL/CPO/THR-LOC"]["id"] == "THR-LOC"
