"""An OCPI receiver on 127.0.0.1 for push tests: stores what it is sent under the URL path
(PUT replaces unless older, PATCH merges into a stored object or answers 404/2003, POST stores a
CDR, DELETE removes), records every request, and can be told to misbehave: `mode` = "ok" |
"500" | "garbage" (200 with a body that is no envelope) | "ocpi_error" (200 with status 2001) |
"slow" (sleeps `delay` seconds first) | "reset" (closes the connection without answering)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OK = {"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z"}


class ReceiverStub:
    def __init__(
        self, modules: tuple[str, ...] = ("locations", "tariffs", "tokens", "sessions", "cdrs")
    ) -> None:
        self.modules = modules
        self.requests: list[dict[str, Any]] = []
        self.objects: dict[str, Any] = {}  # path without query -> object
        self.mode = "ok"
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/ocpi/2.2.1"

    def endpoints(self) -> list[dict[str, str]]:
        return [{"identifier": m, "role": "RECEIVER", "url": f"{self.base}/{m}"} for m in self.modules]

    def __enter__(self) -> ReceiverStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if method is None or r["method"] == method]

    def get(self, path: str) -> Any:
        return self.objects.get(f"/ocpi/2.2.1/{path}")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                path = self.path.split("?", 1)[0]
                record = {
                    "method": method,
                    "path": self.path,
                    "body": body,
                    "headers": dict(self.headers),
                    "at": time.monotonic(),
                }
                with stub._lock:
                    stub.requests.append(record)
                mode = stub.mode
                if mode == "slow" or (stub.delay and mode == "ok"):
                    time.sleep(stub.delay)
                if mode == "reset":
                    self.close_connection = True
                    self.connection.close()
                    return
                if mode == "500":
                    return self._send(500, {"status_code": 3000, "timestamp": OK["timestamp"]})
                if mode == "garbage":
                    return self._send(200, None, raw=b"<html>not json</html>")
                if mode == "ocpi_error":
                    return self._send(
                        200, {"status_code": 2001, "status_message": "No", "timestamp": OK["timestamp"]}
                    )
                with stub._lock:
                    return self._apply(method, path, body)

            def _apply(self, method: str, path: str, body: Any) -> None:
                objects = stub.objects
                if method == "PUT":
                    old = objects.get(path)
                    if old is None or old.get("last_updated", "") <= body.get("last_updated", ""):
                        objects[path] = body
                    return self._send(200, OK)
                if method == "PATCH":
                    # The object a PATCH names: a location, or an EVSE/connector inside the location.
                    parts = path.split("/")
                    module_at = parts.index("2.2.1") + 1
                    root = "/".join(parts[: module_at + 4])
                    target = objects.get(root)
                    if target is None:
                        return self._send(404, {"status_code": 2003, "timestamp": OK["timestamp"]})
                    for seg, key, idk in zip(
                        parts[module_at + 4 :], ("evses", "connectors"), ("uid", "id"), strict=False
                    ):
                        target = next((x for x in target.get(key) or [] if x[idk] == seg), None)
                        if target is None:
                            return self._send(404, {"status_code": 2003, "timestamp": OK["timestamp"]})
                    if target.get("last_updated", "") <= body.get("last_updated", ""):
                        target.update(body)
                    return self._send(200, OK)
                if method == "POST":
                    ids = [body.get(k) for k in ("country_code", "party_id", "id")]
                    objects[f"{path}/{'/'.join(ids)}" if all(ids) else path] = (
                        body  # a CDR, or a command result
                    )
                    return self._send(201, OK)
                if method == "DELETE":
                    objects.pop(path, None)
                    return self._send(200, OK)
                if method == "GET":
                    return self._send(200, {**OK, "data": objects.get(path)})
                return self._send(405, {"status_code": 2000, "timestamp": OK["timestamp"]})

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_GET(self) -> None:
                self._handle("GET")

        return Handler
