"""A programmable OCPI partner on 127.0.0.1 for tests: serves versions, version details and a
credentials endpoint over real HTTP, records every request, and can be told to misbehave."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PartnerStub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.accepted_tokens: set[str] = {"token-b"}
        self.versions: list[str] = ["2.2.1"]
        self.modules: list[tuple[str, str]] = [("credentials", "SENDER"), ("locations", "RECEIVER")]
        self.fail_all = False
        self.roles = [
            {"role": "EMSP", "country_code": "DE", "party_id": "PRT", "business_details": {"name": "Partner"}}
        ]
        self.issued: list[str] = []
        self.received_credentials: list[dict] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def versions_url(self) -> str:
        return f"{self.base}/versions"

    def __enter__(self) -> PartnerStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def _token(self) -> str | None:
                value = self.headers.get("Authorization", "").removeprefix("Token ").strip()
                try:
                    return base64.b64decode(value, validate=True).decode()
                except Exception:
                    return value

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                stub.requests.append(
                    {"method": method, "path": self.path, "token": self._token(), "body": body}
                )
                if stub.fail_all:
                    self._send(500, {"status_code": 3000, "timestamp": "2024-01-01T00:00:00Z"})
                    return
                if self._token() not in stub.accepted_tokens:
                    self._send(
                        401,
                        {
                            "status_code": 2000,
                            "status_message": "Unauthorized",
                            "timestamp": "2024-01-01T00:00:00Z",
                        },
                    )
                    return
                ok = {"status_code": 1000, "timestamp": "2024-01-01T00:00:00Z"}
                if self.path == "/versions":
                    self._send(
                        200,
                        {**ok, "data": [{"version": v, "url": f"{stub.base}/{v}"} for v in stub.versions]},
                    )
                elif self.path in {f"/{v}" for v in stub.versions}:
                    v = self.path[1:]
                    eps = [
                        {"identifier": m, "role": r, "url": f"{stub.base}/{v}/{m}"} for m, r in stub.modules
                    ]
                    self._send(200, {**ok, "data": {"version": v, "endpoints": eps}})
                elif self.path.endswith("/credentials") and method in ("POST", "PUT"):
                    stub.received_credentials.append(body)
                    token_c = f"token-c-{len(stub.issued)}"
                    stub.issued.append(token_c)
                    stub.accepted_tokens.add(token_c)
                    self._send(
                        200, {**ok, "data": {"token": token_c, "url": stub.versions_url, "roles": stub.roles}}
                    )
                elif self.path.endswith("/credentials") and method == "DELETE":
                    self._send(200, ok)
                else:
                    self._send(404, {"status_code": 2000, "timestamp": "2024-01-01T00:00:00Z"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler
