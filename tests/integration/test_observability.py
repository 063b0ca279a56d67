"""Logs and metrics of a realistic flow, captured in full: a credentials handshake (token A, B, C),
a token PUT by an eMSP partner, real-time authorization, a session PUT and a CDR POST by a CPO
partner, bad requests, our own session and CDR pushed by the delivery function, and an API
function's Lambda handler on an API Gateway event.

Every line our logger writes must be JSON; no token, token uid, contract id or visual number may
appear in any log output (ours, any library's, stdout); every request line names the request, the
correlation, the module, the OCPI status and, once authenticated, the partner; the Lambda handler
prints the `Requests` metric (EMF) with its dimensions; the delivery function `PushDelivered` by
outcome and `PushLagSeconds`."""

from __future__ import annotations

import base64
import copy
import importlib.util
import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import events
from shared.auth import hash_token
from shared.logs import logger
from shared.services import credentials as svc
from shared.services import ingest, push, tokens
from shared.store.base import TokenRecord
from tests.integration.test_credentials import load_app
from tests.integration.test_lambda_events import Context
from tests.integration.test_locations import EXAMPLES
from tests.integration.test_push import partner as push_partner
from tests.partner_stub import PartnerStub
from tests.receiver_stub import ReceiverStub

ROOT = Path(__file__).resolve().parents[2]
RX_SESSIONS = "/ocpi/2.2.1/receiver/sessions"
REQUEST_KEYS = ("request_id", "correlation_id", "ocpi_module", "ocpi_status", "http_status")


def secret(prefix: str) -> str:
    """A value that can only appear in a log if we logged it."""
    return f"{prefix}{secrets.token_hex(6).upper()}"


def b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


class Capture:
    """Everything logged: our logger's lines as written (its own formatter), and every record of
    every logger (root, at DEBUG) with its extra fields."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.stream = io.StringIO()
        self.caplog = caplog

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def text(self) -> str:
        # httpx is the tests' own client (TestClient): it logs the URLs it calls. We call out with urllib3.
        records = "\n".join(str(r.__dict__) for r in self.caplog.records if r.name != "httpx")
        return self.stream.getvalue() + "\n" + records


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[Capture]:
    out = Capture(caplog)
    handler = logging.StreamHandler(out.stream)
    handler.setFormatter(logger.registered_formatter)
    ours = logging.getLogger(logger.service)
    level = ours.level
    ours.addHandler(handler)
    ours.setLevel(logging.DEBUG)  # what LogLevel=DEBUG would log must be clean too
    caplog.set_level(logging.DEBUG)
    yield out
    ours.removeHandler(handler)
    ours.setLevel(level)


class Api:
    """The functions' apps; every call names its request and correlation ids, and remembers which
    of our log lines it caused (TestClient returns once the app finished the request)."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.clients = {
            m: TestClient(load_app(m), raise_server_exceptions=False)
            for m in ("versions", "credentials", "tokens", "sessions", "cdrs")
        }
        self.expected: dict[str, dict[str, Any]] = {}  # request id -> what its request line must say
        self.during: dict[str, list[dict[str, Any]]] = {}

    def call(
        self, module: str, method: str, path: str, token: str | None, partner: str | None, **kwargs: Any
    ) -> Any:
        n = len(self.expected)
        rid, cid = f"obs-req-{n}", f"obs-corr-{n}"
        headers = {"X-Request-ID": rid, "X-Correlation-ID": cid, **kwargs.pop("headers", {})}
        if token is not None:
            headers["Authorization"] = "Token " + b64(token)
        before = len(self.capture.stream.getvalue().splitlines())
        resp = self.clients[module].request(method, path, headers=headers, **kwargs)
        self.during[rid] = self.capture.lines()[before:]
        self.expected[rid] = {
            "correlation_id": cid,
            "ocpi_module": module,
            "http_status": resp.status_code,
            "ocpi_status": resp.json()["status_code"],
            "partner": partner,
        }
        return resp


def test_logs_and_metrics_of_a_realistic_flow(memory_store, capture: Capture, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OCPI_MODULES", "credentials,tokens,sessions,cdrs")
    store = memory_store
    api = Api(capture)
    token_b, garbage = secret("TOKB"), secret("NOTATOKEN")
    uid, contract, visual = secret("UIDRX"), secret("NL-TNM-C"), secret("VIS-")
    own_uid, own_contract, own_visual = secret("UIDOWN"), secret("NL-MSP-C"), secret("VISOWN-")
    unknown_uid = secret("UIDNOPE")
    forbidden = [token_b, garbage, uid, contract, visual, own_uid, own_contract, own_visual, unknown_uid]

    with PartnerStub() as stub:
        stub.accepted_tokens = {token_b}
        # Registration: versions with token A, then POST credentials (we call the partner with B).
        partner_id, token_a = svc.invite(store, "Observed partner")
        assert api.call("versions", "GET", "/ocpi/versions", token_a, partner_id).status_code == 200
        roles = [
            {"role": r, "country_code": "DE", "party_id": "PRT", "business_details": {"name": "P"}}
            for r in ("CPO", "EMSP")
        ]
        body = {"token": token_b, "url": stub.versions_url, "roles": roles}
        resp = api.call("credentials", "POST", "/ocpi/2.2.1/credentials", token_a, partner_id, json=body)
        assert resp.json()["status_code"] == 1000, resp.json()
        token_c = resp.json()["data"]["token"]
    forbidden += [token_a, token_c]
    who = "DE*PRT"  # the partner's party (both roles), as logs name it

    # As CPO: the partner (as eMSP) pushes a token to us.
    t = dict(example("token_put_example.json"), country_code="DE", party_id="PRT", uid=uid)
    t.update(contract_id=contract, visual_number=visual)
    url = f"/ocpi/2.2.1/receiver/tokens/DE/PRT/{uid}"
    assert api.call("tokens", "PUT", url, token_c, who, json=t).json()["status_code"] == 1000
    # As eMSP: real-time authorization of our own token by the partner (as CPO); an unknown one.
    own = dict(example("token_put_example.json"), country_code="NL", party_id="MSP", uid=own_uid)
    own.update(contract_id=own_contract, visual_number=own_visual)
    tokens.put_own_with_policy(store, own)
    auth = f"/ocpi/2.2.1/sender/tokens/{own_uid}/authorize"
    ok = api.call("tokens", "POST", auth, token_c, who, json={"location_id": "LOC1"})
    assert ok.json()["data"]["allowed"] == "ALLOWED"
    nope = api.call("tokens", "POST", f"/ocpi/2.2.1/sender/tokens/{unknown_uid}/authorize", token_c, who)
    assert (nope.status_code, nope.json()["status_code"]) == (404, 2004)
    assert api.call("tokens", "GET", "/ocpi/2.2.1/sender/tokens", token_c, who).json()["data"]
    # The partner (as CPO) pushes a session and POSTs a CDR for our driver.
    cdr_token = {"country_code": "NL", "party_id": "MSP", "uid": own_uid, "type": "RFID"}
    cdr_token["contract_id"] = own_contract
    s = example("session_example_2_short_finished.json")
    s.update(country_code="DE", party_id="PRT", id="OBS-S1", cdr_token=cdr_token)
    resp = api.call("sessions", "PUT", f"{RX_SESSIONS}/DE/PRT/OBS-S1", token_c, who, json=s)
    assert resp.status_code == 201, resp.json()
    c = example("cdr_example.json")
    c.update(country_code="DE", party_id="PRT", id="OBS-C1", cdr_token=cdr_token)
    resp = api.call("cdrs", "POST", "/ocpi/2.2.1/receiver/cdrs", token_c, who, json=c)
    assert resp.status_code == 201, resp.json()
    # Bad requests: invalid JSON, a missing field, a foreign party, no or an unknown token,
    # token A after the handshake, an unknown route, a wrong verb.
    bad = api.call("tokens", "PUT", url, token_c, who, content=b'{"uid": "' + uid.encode() + b'",')
    assert (bad.status_code, bad.json()["status_code"]) == (400, 2001)
    partial = {k: v for k, v in t.items() if k != "contract_id"}
    assert api.call("tokens", "PUT", url, token_c, who, json=partial).json()["status_code"] == 2001
    foreign = f"/ocpi/2.2.1/receiver/tokens/FR/XXX/{uid}"
    assert api.call("tokens", "PUT", foreign, token_c, who, json=t).status_code == 404
    assert api.call("tokens", "PUT", url, garbage, None, json=t).status_code == 401
    assert api.call("tokens", "PUT", url, None, None, json=t).status_code == 401
    assert api.call("credentials", "GET", "/ocpi/2.2.1/credentials", token_a, None).status_code == 401
    assert api.call("tokens", "GET", f"/ocpi/2.2.1/nowhere/{uid}", token_c, None).status_code == 404
    assert api.call("sessions", "DELETE", f"{RX_SESSIONS}/DE/PRT/OBS-S1", token_c, None).status_code == 405

    # Our own session and CDR for the partner's eMSP party, pushed by the delivery function.
    queued: list[push.Delivery] = []
    push.set_queue_sink(queued.append)
    with ReceiverStub() as receiver:
        store.put_partner(push_partner("emsp-obs", "EMSP", "DE", "ABC", receiver))
        forbidden.append("token-for-emsp-obs")
        mine = dict(cdr_token, country_code="DE", party_id="ABC")
        session = dict(copy.deepcopy(s), country_code="NL", party_id="CPO", id="OWN-S1", cdr_token=mine)
        cdr = dict(copy.deepcopy(c), country_code="NL", party_id="CPO", id="OWN-C1", cdr_token=mine)
        for module, obj in (("sessions", session), ("cdrs", cdr)):
            ingest.apply(store, events.OWN_PUT, {"module": module, "object": obj})
            change = push.Change(module, "put", "NL", "CPO", obj["id"])
            push.enqueue(push.fan_out(store, change, store.list_partners(), push.PushSettings()))
        assert [d.partner_id for d in queued] == ["emsp-obs", "emsp-obs"]
        capsys.readouterr()
        sent_ms = int(time.time() * 1000) - 2500  # queued 2.5 s ago
        result = delivery_handler()(sqs_event(queued, sent_ms), Context())
        assert result == {"batchItemFailures": []}
        assert [r["method"] for r in receiver.calls()] == ["PUT", "POST"]
        assert receiver.calls()[0]["body"]["cdr_token"]["uid"] == own_uid  # the partner got it all
    emf = emf_lines(capsys.readouterr().out)
    delivered = {e["outcome"]: e["PushDelivered"] for e in emf if "PushDelivered" in e}
    assert delivered == {"put": [1.0], "post": [1.0]}
    assert all(dims(e) == {"outcome", "service"} for e in emf if "PushDelivered" in e)
    lag = next(e["PushLagSeconds"] for e in emf if "PushLagSeconds" in e)
    assert len(lag) == 2 and all(2.5 <= v < 60 for v in lag), lag
    done = [line for line in capture.lines() if line["message"] == "push delivered"]
    assert {(d["outcome"], d["object_id"], d["partner_id"], d["ocpi_module"]) for d in done} == {
        ("put", "OWN-S1", "emsp-obs", "sessions"),
        ("post", "OWN-C1", "emsp-obs", "cdrs"),
    }
    assert all(d["message_id"].startswith("msg-") for d in done)

    # An API function's Lambda handler on an API Gateway event: the request line and the metric.
    store.put_partner(
        {
            "partner_id": "p1",
            "status": "REGISTERED",
            "roles": [{"role": "CPO", "country_code": "NL", "party_id": "TNM"}],
        }
    )
    store.put_token(TokenRecord(hash_token("event-sample-token"), "p1", "C"))
    forbidden += ["event-sample-token", b64("event-sample-token"), "012345678"]  # the event's token, uid
    event = json.loads((ROOT / "events" / "tokens" / "authorize_unknown_token.json").read_text())
    result = lambda_handler("tokens")(event, Context())
    assert result["statusCode"] == 404
    requests = [e for e in emf_lines(capsys.readouterr().out) if "Requests" in e]
    assert len(requests) == 1
    metric = requests[0]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "OCPI"
    assert metric["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "Requests", "Unit": "Count"}]
    assert dims(metric) == {"module", "ocpi_status", "service"}
    assert (metric["module"], metric["ocpi_status"], metric["service"]) == ("tokens", "2004", "ocpi")
    assert metric["Requests"] == [1.0]
    # Metadata, not dimensions: the partner and the request id.
    assert (metric["partner"], metric["request_id"]) == ("NL*TNM", "sample-request-1")
    line = [x for x in capture.lines() if x["message"] == "request"][-1]
    assert line["request_id"] == "sample-request-1" and line["correlation_id"] == "sample-correlation-1"
    assert line["apigw_request_id"] == event["requestContext"]["requestId"]
    assert line["function_request_id"] == Context.aws_request_id and "cold_start" in line
    assert (line["partner"], line["ocpi_status"], line["http_status"]) == ("NL*TNM", 2004, 404)

    # Every line of ours is JSON (lines() parses each); no secret anywhere, in any form.
    everything = capture.text() + capsys.readouterr().out
    for value in forbidden:
        assert value not in everything, value
        assert b64(value) not in everything, value
    # Each request's own lines carry its ids and module; its request line says how it ended.
    request_lines = {x["request_id"]: x for x in capture.lines() if x["message"] == "request"}
    for rid, want in api.expected.items():
        got = request_lines[rid]
        assert all(k in got for k in REQUEST_KEYS), got
        expected = {k: v for k, v in want.items() if k != "partner"}
        assert {k: got[k] for k in expected} == expected, got
        assert got.get("partner") == want["partner"], got
        if want["partner"] is not None:
            assert got["partner_id"] == partner_id
        for x in api.during[rid]:
            assert (x["correlation_id"], x["ocpi_module"]) == (want["correlation_id"], want["ocpi_module"]), x
            if "ocpi_path" not in x:  # a call we made to the partner has its own request id
                assert x["request_id"] == rid, x
    outbound = [x for x in capture.lines() if x.get("ocpi_path") == "/versions"]
    assert outbound and outbound[0]["correlation_id"] == "obs-corr-1"  # the handshake's callback


def test_concurrent_requests_keep_their_own_keys(memory_store, capture: Capture) -> None:
    """The local stack serves requests concurrently in one process: each request's lines (also
    those logged in FastAPI's worker threads, before and after other requests ran) carry its own
    ids and partner, and nothing is left behind once it is done."""
    import asyncio

    import httpx
    from fastapi import APIRouter, Depends

    from shared.auth import Caller
    from shared.http import create_app, partner_request
    from tests.integration.test_locations import add_partner

    router = APIRouter()

    @router.get("/ocpi/{version}/sender/probe")
    def probe(who: Caller = Depends(partner_request)) -> dict:
        logger.info("probe start")
        time.sleep(0.05)  # the other requests run meanwhile
        logger.info("probe end")
        return {}

    app = create_app("probe", [router])
    parties = {f"p{i}": f"DE*P{i:02d}" for i in range(6)}
    auth = {
        pid: add_partner(memory_store, pid, secret("TOK"), [("CPO", "DE", party[3:])])
        for pid, party in parties.items()
    }

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            calls = [
                client.get("/ocpi/2.2.1/sender/probe", headers={**auth[pid], "X-Request-ID": f"rq-{pid}"})
                for pid in parties
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [200] * len(parties)
    lines = [x for x in capture.lines() if x["message"] in ("probe start", "probe end", "request")]
    assert len(lines) == 3 * len(parties)
    for x in lines:
        pid = x["request_id"].removeprefix("rq-")
        assert (x["partner_id"], x["partner"], x["ocpi_module"]) == (pid, parties[pid], "probe"), x
    logger.info("after the requests")
    assert not {"request_id", "partner", "ocpi_status"} & set(capture.lines()[-1])


# ------------------------------------------------------------------ helpers
def _module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lambda_handler(function: str) -> Any:
    return _module(ROOT / "functions" / function / "app.py", f"obs_{function}").handler


def delivery_handler() -> Any:
    return lambda_handler("push_delivery")


def sqs_event(deliveries: list[push.Delivery], sent_ms: int) -> dict:
    return {
        "Records": [
            {
                "messageId": f"msg-{n}",
                "receiptHandle": f"handle-{n}",
                "body": d.to_message(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(sent_ms)},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:test-PushDeliveryQueue",
                "awsRegion": "eu-west-1",
            }
            for n, d in enumerate(deliveries)
        ]
    }


def emf_lines(stdout: str) -> list[dict[str, Any]]:
    out = []
    for line in stdout.splitlines():
        if line.startswith('{"_aws"'):
            out.append(json.loads(line))
    return out


def dims(blob: dict[str, Any]) -> set[str]:
    (dimension_set,) = blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    return set(dimension_set)
