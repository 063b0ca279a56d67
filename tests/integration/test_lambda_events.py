"""Each API function's Lambda handler (Mangum) answers every sample event in events/, on DynamoDB
(moto): the path through API Gateway's event format, not just the ASGI app."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shared.auth import hash_token
from shared.store.base import TokenRecord

ROOT = Path(__file__).resolve().parents[2]
EVENTS = sorted((ROOT / "events").glob("*/*.json"))


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
def test_sample_event(event_file: Path, dynamo_store, monkeypatch) -> None:
    from shared import config

    monkeypatch.delenv("OCPI_PUBLIC_URL")  # derive the URL from API Gateway's request context
    config.reset_settings()
    dynamo_store.put_partner(
        {
            "partner_id": "p1",
            "status": "REGISTERED",
            "roles": [{"role": "CPO", "country_code": "NL", "party_id": "TNM"}],
        }
    )
    dynamo_store.put_token(TokenRecord(hash_token("event-sample-token"), "p1", "C"))
    event = json.loads(event_file.read_text())
    result = handler_for(event_file.parent.name)(event, Context())
    body = json.loads(result["body"])
    assert "status_code" in body and "timestamp" in body
    headers = {k.lower(): v for k, v in result.get("headers", {}).items()}
    assert headers["x-request-id"] == "sample-request-1"
    if "invalid_json" in event_file.name:
        assert result["statusCode"] == 400 and body["status_code"] == 2001
    elif "unknown_location" in event_file.name:
        assert result["statusCode"] == 404 and body["status_code"] == 2003
    elif "unknown_token" in event_file.name:
        assert result["statusCode"] == 404 and body["status_code"] == 2004
    elif "unknown_tariff" in event_file.name:
        assert result["statusCode"] == 404 and body["status_code"] == 2000
    else:
        assert result["statusCode"] == 200 and body["status_code"] == 1000, body
        text = json.dumps(body)
        if "/ocpi/" in text:
            # URLs point at the public stage URL of API Gateway.
            assert "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/ocpi/" in text
