"""Start and stop whole local stacks (`python -m shared.local.stack`) as separate processes, and
run ocpi-admin against one of them, for end-to-end tests over real HTTP on loopback. Also: the
stack's AWS (moto) seen from the test (back-office events, queue depths), and a counting proxy
that can play an unreachable partner."""

from __future__ import annotations

import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
        """Read a partner record straight from this stack's DynamoDB (moto), secrets included: the
        outbound token opened with the stack's KMS key (shared/secrets.py), the stored form kept as
        ``outbound_token_stored``."""
        import base64

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
        data = {k: TypeDeserializer().deserialize(v) for k, v in item["Item"].items()}["data"]
        stored = data.get("outbound_token")
        data["outbound_token_stored"] = stored
        if isinstance(stored, str) and stored.startswith("kms:v1:"):
            kms = boto3.client(
                "kms",
                endpoint_url=f"http://127.0.0.1:{self.moto_port}",
                region_name=env.get("AWS_DEFAULT_REGION", "eu-west-1"),
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            opened = kms.decrypt(
                CiphertextBlob=base64.b64decode(stored.removeprefix("kms:v1:")),
                EncryptionContext={"purpose": "ocpi-partner-token", "partner_id": partner_id},
            )
            data["outbound_token"] = opened["Plaintext"].decode()
        return data

    # ------------------------------------------------------------------ the stack's AWS (moto)
    def exports(self) -> dict[str, str]:
        """The variables of the stack's env file (`.local/<name>.env`): table, bus, queue URLs, ..."""
        out: dict[str, str] = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                out[key] = (shlex.split(value) or [""])[0]
        return out

    def aws(self, service: str) -> Any:
        """A boto3 client of this stack's moto (one per service, reused)."""
        import boto3

        clients = self.__dict__.setdefault("_aws_clients", {})
        if service not in clients:
            clients[service] = boto3.client(
                service,
                endpoint_url=f"http://127.0.0.1:{self.moto_port}",
                region_name=self.exports().get("AWS_DEFAULT_REGION", "eu-west-1"),
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
        return clients[service]

    def put_events(self, detail_type: str, details: list[dict[str, Any]]) -> None:
        """Back-office events (source `ocpi.backoffice`) on the stack's bus, 10 per PutEvents."""
        bus = self.exports()["OCPI_EVENT_BUS_NAME"]
        for i in range(0, len(details), 10):
            entries = [
                {
                    "Source": "ocpi.backoffice",
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus,
                }
                for detail in details[i : i + 10]
            ]
            resp = self.aws("events").put_events(Entries=entries)
            if resp.get("FailedEntryCount"):
                raise AssertionError(f"PutEvents failed: {resp['Entries']}")

    def queue_url(self, logical_id: str) -> str:
        """URL of a template queue (local name `<stack name>-<logical id>`)."""
        urls = self.__dict__.setdefault("_queue_urls", {})
        if logical_id not in urls:
            urls[logical_id] = self.aws("sqs").get_queue_url(QueueName=f"{self.name}-{logical_id}")[
                "QueueUrl"
            ]
        return urls[logical_id]

    def queue_depth(self, logical_id: str) -> int:
        """Messages in a template queue: visible + in flight (being handled or backing off) + delayed."""
        attrs = self.aws("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(logical_id),
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def drained(self, *logical_ids: str) -> bool:
        """True when every queue named is empty, checked in the order given (upstream first)."""
        return all(self.queue_depth(q) == 0 for q in logical_ids)

    # ------------------------------------------------------------------ freeze (a dead partner)
    def pause(self) -> None:
        """SIGSTOP: the whole stack (API, pollers, its moto) stops answering."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT (harmless when not paused; call it before stop())."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)


def start_all(*stacks: LocalStack, timeout: float = 90) -> None:
    """Start several stacks at once (each `start()` in its own thread); raises the first failure."""
    with ThreadPoolExecutor(len(stacks)) as pool:
        for future in [pool.submit(stack.start, timeout) for stack in stacks]:
            future.result()


class CountingProxy:
    """An HTTP proxy on 127.0.0.1 in front of one local port (`target_port`, may be set after the
    proxy exists: its URL is what the stack behind it advertises): forwards every request and
    records `(method, path, status)` in `records`. With `down` set it closes each connection without
    answering or forwarding (recorded with status 0): the partner behind it is unreachable. Use as a
    context manager."""

    _HOP = frozenset(
        {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
    )

    def __init__(self, target_port: int | None = None) -> None:
        self.target_port = target_port
        self.down = False
        self.records: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def mark(self) -> int:
        """A position in `records`: `since(mark)` returns what came after it."""
        with self._lock:
            return len(self.records)

    def since(self, mark: int = 0) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self.records[mark:])

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.records.append((method, path, status))

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                self.close_connection = True
                if proxy.down or proxy.target_port is None:
                    proxy._record(self.command, self.path, 0)
                    return  # no answer: the connection closes
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy._HOP}
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:
                    proxy._record(self.command, self.path, 0)
                    return
                finally:
                    conn.close()
                proxy._record(self.command, self.path, resp.status)
                self.send_response(resp.status)
                skip = {*proxy._HOP, "content-length", "date", "server"}
                for key, value in resp.getheaders():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        return Handler


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
