"""Background functions (no API events in template.yaml) must not import FastAPI: a fresh
interpreter imports each one's app.py and we look at what got loaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
BACKGROUND = [
    (name, ROOT / res["Properties"]["CodeUri"] / "app.py")
    for name, res in TEMPLATE["Resources"].items()
    if res["Type"] == "AWS::Serverless::Function"
    and not any(e.get("Type") == "Api" for e in (res["Properties"].get("Events") or {}).values())
]
PROBE = (
    "import importlib.util, json, sys; s = importlib.util.spec_from_file_location('fn', sys.argv[1]); "
    "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); assert callable(m.handler); "
    "web = ('fastapi', 'starlette', 'uvicorn', 'mangum'); "
    "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] in web)))"
)


def test_there_are_background_functions() -> None:
    assert BACKGROUND, "expected background functions in template.yaml"


@pytest.mark.parametrize("name,path", BACKGROUND, ids=[b[0] for b in BACKGROUND])
def test_background_function_does_not_import_fastapi(name: str, path: Path) -> None:
    env = {**os.environ, "AWS_DEFAULT_REGION": "eu-west-1", "OCPI_TOKEN_KEY": "x"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], name


def test_push_lag_is_none_for_a_record_without_sent_timestamp() -> None:
    """A delivered record without SentTimestamp (sample events, replays) is still a delivery: the lag
    is unknown, not an error that would redeliver it forever."""
    import importlib.util
    import time

    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    path = ROOT / "functions/push_delivery/app.py"
    spec = importlib.util.spec_from_file_location("push_delivery_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module._lag_seconds(SQSRecord({"messageId": "m", "body": "{}", "attributes": {}})) is None
    sent = str(int(time.time() * 1000) - 5000)
    record = SQSRecord({"messageId": "m", "body": "{}", "attributes": {"SentTimestamp": sent}})
    lag = module._lag_seconds(record)
    assert lag is not None and 4.0 <= lag < 60
