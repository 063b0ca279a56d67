"""Start and stop whole local stacks (`python -m shared.local.stack`) as separate processes, and
run ocpi-admin against one of them, for end-to-end tests over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalStack:
    def __init__(self, name: str, parties: list[dict[str, Any]], tmp: Path, extra_env: dict | None = None):
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.port = free_port()
        self.moto_port = free_port()
        self.parties_file = tmp / f"{self.name}-parties.json"
        self.parties_file.write_text(json.dumps(parties))
        self.log = tmp / f"{self.name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OCPI_") and k != "AWS_ENDPOINT_URL"},
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MOTO_PORT": str(self.moto_port),
            "STACK_NAME": self.name,
            "OCPI_OWN_PARTIES_FILE": str(self.parties_file),
            "LOG_LEVEL": "warning",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def versions_url(self) -> str:
        return f"{self.base}/ocpi/versions"

    @property
    def env_file(self) -> Path:
        return ROOT / ".local" / f"{self.name}.env"

    def start(self, timeout: float = 90) -> LocalStack:
        out = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "shared.local.stack"],
            cwd=ROOT,
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"stack {self.name} exited:\n{self.log.read_text()[-3000:]}")
            if "READY " in self.log.read_text():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"stack {self.name} not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def admin(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "shared.admin.cli", "--env", str(self.env_file), *args],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("OCPI_")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ocpi-admin {' '.join(args)} failed: {result.stderr}\n{result.stdout}")
        return result

    def admin_json(self, *args: str) -> Any:
        return json.loads(self.admin(*args, "--json").stdout)

    def partner_secrets(self, partner_id: str) -> dict[str, Any]:
        """Read a partner record straight from this stack's DynamoDB (moto), secrets included."""
        import boto3

        env = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                k, _, v = line.removeprefix("export ").partition("=")
                env[k] = v.strip("'")
        ddb = boto3.client(
            "dynamodb",
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name=env.get("AWS_DEFAULT_REGION", "eu-west-1"),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        from boto3.dynamodb.types import TypeDeserializer

        item = ddb.get_item(
            TableName=env["OCPI_TABLE_NAME"], Key={"PK": {"S": f"P#{partner_id}"}, "SK": {"S": "P"}}
        )
        return {k: TypeDeserializer().deserialize(v) for k, v in item["Item"].items()}["data"]


# Shared by the two-party tests: one CPO deployment and one eMSP deployment.
CPO_PARTIES = [
    {"country_code": "NL", "party_id": "CPO", "role": "CPO", "business_details": {"name": "Local CPO"}}
]
EMSP_PARTIES = [
    {"country_code": "DE", "party_id": "MSP", "role": "EMSP", "business_details": {"name": "Local eMSP"}}
]


def hdr(token: str) -> dict[str, str]:
    """An OCPI Authorization header (Base64 token)."""
    import base64

    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


def wait_for(fetch: Any, timeout: float = 20.0) -> Any:
    """Poll `fetch()` until it returns something truthy or the timeout passes (bounded waits)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.3)
