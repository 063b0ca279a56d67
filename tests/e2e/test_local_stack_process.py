"""`python -m shared.local.stack` as a real process: READY line, HTTP answers, clean stop, two at once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60
STOP_TIMEOUT = 15


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(_free_port())
    return sorted(ports)


class StackProcess:
    """One local stack subprocess; its output (stdout and stderr merged) is drained by a thread."""

    def __init__(self, port: int, moto_port: int, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OCPI_", "AWS_"))}
        env.update(
            {
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "MOTO_PORT": str(moto_port),
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "info",
                **extra_env,
            }
        )
        self.port = port
        self.moto_port = moto_port
        self.stack_name = env.get("STACK_NAME") or f"ocpi-local-{port}"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.ready_url: str | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.local.stack"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("READY "):
                self.ready_url = line.split(" ", 1)[1].strip()
                self.ready.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines[-200:])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None:
                self._reader.join(2)
                pytest.fail(f"stack exited with {self.proc.returncode} before READY:\n{self.output}")
            if time.monotonic() > deadline:
                pytest.fail(f"no READY within {timeout}s:\n{self.output}")
        assert self.ready_url is not None
        return self.ready_url

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"stack did not stop within {timeout}s after signal {sig}:\n{self.output}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(5)
        env_file = ROOT / ".local" / f"{self.stack_name}.env"
        env_file.unlink(missing_ok=True)


@contextmanager
def running_stack(**extra_env: str) -> Iterator[StackProcess]:
    port, moto_port = _free_ports(2)
    stack = StackProcess(port, moto_port, **extra_env)
    try:
        yield stack
    finally:
        stack.kill()


def _assert_envelope(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert "status_code" in body, body
    assert "timestamp" in body, body
    return body


def test_stack_serves_and_stops_on_sigterm() -> None:
    with running_stack() as stack:
        url = stack.wait_ready()
        assert url == f"{stack.base_url}/ocpi/versions"
        # The banner told how to reach moto and how to make a registration token.
        assert f"moto endpoint: http://127.0.0.1:{stack.moto_port}" in stack.output
        assert "ocpi-admin invite" in stack.output
        assert "export OCPI_TABLE_NAME=" in stack.output
        env_file = ROOT / ".local" / f"{stack.stack_name}.env"
        env_text = env_file.read_text()
        for name in (
            "AWS_ENDPOINT_URL",
            "OCPI_TABLE_NAME",
            "OCPI_EVENT_BUS_NAME",
            "OCPI_TOKEN_KEY_SECRET_ARN",
        ):
            assert f"export {name}=" in env_text

        with httpx.Client(timeout=10) as client:
            response = client.get(url)
            assert response.status_code in (200, 401), response.text
            _assert_envelope(response)

            response = client.get(f"{stack.base_url}/definitely/not/here")
            assert response.status_code == 404
            body = _assert_envelope(response)
            assert body["status_code"] == 2000
            assert body["status_message"] == "Not found"

            response = client.post(url)
            assert response.status_code == 405
            assert _assert_envelope(response)["status_message"] == "Method not allowed"

        assert stack.stop(signal.SIGTERM) == 0, stack.output
        assert "stopped" in stack.output
        assert not env_file.exists(), "the env file of a stopped stack is removed"


def test_stack_stops_on_ctrl_c() -> None:
    with running_stack() as stack:
        stack.wait_ready()
        assert stack.stop(signal.SIGINT) == 0, stack.output


def test_two_stacks_side_by_side() -> None:
    with running_stack() as first, running_stack() as second:
        urls = [first.wait_ready(), second.wait_ready()]
        assert urls[0] != urls[1]
        with httpx.Client(timeout=10) as client:
            for url in urls:
                response = client.get(url)
                assert response.status_code in (200, 401), response.text
                _assert_envelope(response)
        assert first.stop() == 0, first.output
        # The second one keeps serving after the first stopped.
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{second.base_url}/nope").status_code == 404
        assert second.stop() == 0, second.output


@pytest.mark.parametrize("busy_one", ["PORT", "MOTO_PORT"])
def test_busy_port_fails_fast(busy_one: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port, other = busy.getsockname()[1], _free_port()
        ports = (busy_port, other) if busy_one == "PORT" else (other, busy_port)
        stack = StackProcess(*ports)
        try:
            code = stack.proc.wait(timeout=READY_TIMEOUT)
            assert code != 0
            assert not stack.ready.is_set()
            stack._reader.join(5)
            assert f"{busy_one} port 127.0.0.1:{busy_port} is not available" in stack.output
        finally:
            stack.kill()
