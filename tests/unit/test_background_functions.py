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
