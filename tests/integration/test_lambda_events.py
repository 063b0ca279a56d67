"""Each function's Lambda handler answers every sample event in events/, on DynamoDB (moto): API
functions (Mangum) get API Gateway events, the path through API Gateway's event format, not just the
ASGI app; background functions (no Api events in template.yaml) get their own events: SQS batches
answer with a partial batch response (ReportBatchItemFailures), other events (schedules, direct
invokes) must be handled without an exception."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shared.auth import hash_token
from shared.store.base import TokenRecord

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*/*.json"))


def _background_dirs() -> set[str]:
    """Code folders of functions without Api events (SQS, schedules, ...)."""
    from shared.local.template import load_template

    out = set()
    for resource in load_template(ROOT / "template.yaml")["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        if not any(e.get("Type") == "Api" for e in (props.get("Events") or {}).values()):
            out.add(Path(props["CodeUri"]).name)
    return out


BACKGROUND = _background_dirs()


class Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:test"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30000


def handler_for(function_dir: str):
    spec = importlib.util.spec_from_file_location(
        f"lambda_{function_dir}", ROOT / "functions" / function_dir / "app.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


@pytest.mark.parametrize("event_file", EVENTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_event(event_file: Path, dynamo_store, aws, monkeypatch) -> None:
    from shared import config

    event = json.loads(event_file.read_text())
    if event_file.parent.name.startswith("push_"):
        check_push_event(event_file, event, dynamo_store, aws, monkeypatch)
        return
    if event_file.parent.name.startswith("billing_"):
        check_billing_event(event_file, event, dynamo_store, aws, monkeypatch)
        return
    if event_file.parent.name in BACKGROUND or "Records" in event:
        check_background_event(event_file, event, dynamo_store)
        return
    monkeypatch.delenv("OCPI_PUBLIC_URL")  # derive the URL from API Gateway's request context
    config.reset_settings()
    dynamo_store.put_partner(
        {
            "partner_id": "p1",
            "status": "REGISTERED",
            "roles": [
                {"role": "CPO", "country_code": "NL", "party_id": "TNM"},
                {"role": "EMSP", "country_code": "NL", "party_id": "TNM"},  # commands are an eMSP's
                {"role": "HUB", "country_code": "NL", "party_id": "HUB"},  # only a hub sends ClientInfo
            ],
        }
    )
    dynamo_store.put_token(TokenRecord(hash_token("event-sample-token"), "p1", "C"))
    result = handler_for(event_file.parent.name)(event, Context())
    body = json.loads(result["body"])
    assert "status_code" in body and "timestamp" in body
    headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
    assert headers["x-request-id"] == "sample-request-1"
    if "invalid_json" in event_file.name:
        assert result["statusCode"] == 400 and body["status_code"] == 2001
    elif "missing_" in event_file.name:  # a required parameter left out: 2001 naming it
        assert result["statusCode"] == 200 and body["status_code"] == 2001, body
    elif "unknown_location" in event_file.name:
        assert result["statusCode"] == 404 and body["status_code"] == 2003
    elif "unknown_token" in event_file.name:
        assert result["statusCode"] == 404 and body["status_code"] == 2004
    elif any(
        k in event_file.name
        for k in ("unknown_tariff", "unknown_session", "unknown_cdr", "unknown_client_info")
    ):
        assert result["statusCode"] == 404 and body["status_code"] == 2000
    elif "invalid_parameters" in event_file.name:
        assert result["statusCode"] == 200 and body["status_code"] == 2001, body
    elif "put_new" in event_file.name:
        assert result["statusCode"] == 201 and body["status_code"] == 1000, body
    elif "post_cdr" in event_file.name:
        assert result["statusCode"] == 201 and body["status_code"] == 1000, body
        assert headers["location"].startswith(
            "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/ocpi/2.2.1/receiver/cdrs/NL/TNM/"
        )
    else:
        assert result["statusCode"] == 200 and body["status_code"] == 1000, body
        text = json.dumps(body)
        if "/ocpi/" in text:
            # URLs point at the public stage URL of API Gateway.
            assert "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/ocpi/" in text


def check_background_event(event_file: Path, event: dict, store) -> None:
    """Not an SQS batch: handled without an exception. An SQS batch: the answer is a partial
    batch response naming only records of the batch. File names say what to expect: `unknown` ->
    every record is reported for a retry (a PATCH before its object arrived); `poison` -> bad
    data, dropped, not retried; otherwise everything is stored and each object put is readable
    from our own collection."""
    from shared.errors import OcpiError
    from shared.services import cdrs, ingest, locations, objects, sessions, tariffs, tokens

    result = handler_for(event_file.parent.name)(event, Context())
    if "Records" not in event:  # a scheduled or direct invocation: its answer is JSON for Lambda
        json.dumps(result)
        return
    assert isinstance(result, dict) and set(result) == {"batchItemFailures"}, result
    ids = [r["messageId"] for r in event["Records"]]
    failed = [item["itemIdentifier"] for item in result["batchItemFailures"]]
    assert set(failed) <= set(ids)
    if "unknown" in event_file.name:
        assert failed == ids
        return
    assert failed == []
    for record in event["Records"]:
        detail_type, detail = ingest.unwrap(record["body"])
        if "poison" in event_file.name:
            with pytest.raises(OcpiError):
                ingest.parse(detail_type, detail)
            continue
        cmd = ingest.parse(detail_type, detail)
        if cmd.action != "put":
            continue
        if cmd.module == "locations":
            got = locations.get_own(store, cmd.object_id, cmd.evse_uid, cmd.connector_id)
        elif cmd.module == "sessions":
            got = sessions.assemble(sessions.get_own(store, cmd.object_id))
            assert got == cmd.payload
        elif cmd.module == "cdrs":
            got = store.get(objects.ref_of(cdrs.KIND, cmd.country_code, cmd.party_id, cmd.object_id)).body
            assert got == cmd.payload
        else:
            kind = {"tariffs": tariffs.KIND, "tokens": tokens.KIND}[cmd.module]
            got = objects.get_own(store, kind, cmd.object_id, cmd.token_type or "").body
        assert got["last_updated"] == cmd.payload["last_updated"]


PUSH_PARTNER = "9b2f6a4e-0c1d-4e2f-8a3b-4c5d6e7f8091"


def check_push_event(event_file: Path, event: dict, store, aws: dict, monkeypatch) -> None:
    """Push functions: a partial batch response with no failures; the fan-out queues one delivery per
    record for a registered eMSP partner entitled to it (poison: none); a delivery for a partner we
    do not know is skipped, not retried."""
    import boto3

    monkeypatch.setenv("OCPI_PUSH_QUEUE_URL", aws["PushDeliveryQueue"])
    sqs = boto3.client("sqs", region_name="eu-west-1")
    if event_file.parent.name == "push_fanout":
        eps = [
            {"identifier": m, "role": "RECEIVER", "url": f"https://emsp.test/ocpi/2.2.1/{m}"}
            for m in ("locations", "sessions", "cdrs")
        ]
        store.put_partner(
            {
                "partner_id": PUSH_PARTNER,
                "status": "REGISTERED",
                "outbound_token": "token-for-partner",
                "roles": [{"role": "EMSP", "country_code": "DE", "party_id": "MSP"}],
                "endpoints": eps,
            }
        )
    result = handler_for(event_file.parent.name)(event, Context())
    assert result == {"batchItemFailures": []}, result
    got = sqs.receive_message(QueueUrl=aws["PushDeliveryQueue"], MaxNumberOfMessages=10).get("Messages", [])
    if event_file.parent.name == "push_delivery" or "poison" in event_file.name:
        assert got == []
        return
    bodies = [json.loads(m["Body"]) for m in got]
    assert len(bodies) == len(event["Records"])
    assert {b["partner_id"] for b in bodies} == {PUSH_PARTNER}


def check_billing_event(event_file: Path, event: dict, store, aws: dict, monkeypatch) -> None:
    """Billing worker: a partial batch response with no failures (a malformed message or a job for a
    partner we do not know is dropped, not retried); a run queues one job per billable partner."""
    import boto3

    monkeypatch.setenv("OCPI_BILLING_QUEUE_URL", aws["ClearingQueue"])
    monkeypatch.setenv("OCPI_BILLING_BUCKET", aws["StatementsBucket"])
    store.put_partner(
        {
            "partner_id": "p1",
            "status": "REGISTERED",
            "roles": [{"role": "CPO", "country_code": "NL", "party_id": "TNM"}],
        }
    )
    store.put_partner({"partner_id": "p2", "status": "PENDING", "roles": []})  # not billable
    result = handler_for(event_file.parent.name)(event, Context())
    assert result == {"batchItemFailures": []}, result
    sqs = boto3.client("sqs", region_name="eu-west-1")
    got = sqs.receive_message(QueueUrl=aws["ClearingQueue"], MaxNumberOfMessages=10).get("Messages", [])
    bodies = [json.loads(m["Body"]) for m in got]
    if "run" in event_file.stem.split("_"):
        assert [(b["kind"], b["partner_id"]) for b in bodies] == [("job", "p1")]
    else:
        assert bodies == []
