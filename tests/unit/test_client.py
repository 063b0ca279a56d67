"""shared.client.OcpiClient against a real HTTP server on 127.0.0.1 (a scripted fake partner)."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3

from shared import client as client_mod
from shared.client import (
    OcpiClient,
    OcpiClientError,
    OcpiHttpError,
    OcpiProtocolError,
    OcpiStatusError,
    OcpiTransportError,
    next_link,
    shared_pool,
)
from shared.models.types import OcpiModel

TOKEN = "ebf3b399-779f-4497-9b9d-ac6ad3cc44d2"
B64 = base64.b64encode(TOKEN.encode()).decode()


def envelope(data: Any = None, code: int = 1000, message: str | None = "Success") -> dict[str, Any]:
    out: dict[str, Any] = {"status_code": code, "timestamp": "2024-01-01T00:00:00Z"}
    if message is not None:
        out["status_message"] = message
    if data is not None:
        out["data"] = data
    return out


# ----------------------------------------------------------------------------- the fake partner
@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=envelope)  # dict/list -> JSON, str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    action: str | None = None  # "reset" (RST), "close" (no response), "stream" (no Content-Length)


@dataclass
class Seen:
    method: str
    path: str  # raw request target, query included, exactly as sent
    headers: dict[str, str]
    body: bytes


class Partner:
    def __init__(self) -> None:
        self.queue: deque[Reply] = deque()
        self.routes: dict[str, Reply] = {}
        self.default = Reply()
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self.base = ""

    def reply(self, *replies: Reply) -> None:
        self.queue.extend(replies)

    def url(self, path: str) -> str:
        return self.base + path

    def next_reply(self, path: str) -> Reply:
        with self.lock:
            if path in self.routes:
                return self.routes[path]
            return self.queue.popleft() if self.queue else self.default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        partner = self.server.partner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with partner.lock:
            partner.requests.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
        reply = partner.next_reply(self.path)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.action == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if reply.action == "close":
            self.close_connection = True
            return
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif isinstance(reply.body, str):
            payload = reply.body.encode()
        else:
            payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.action == "stream":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    partner: Partner

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # aborted connections are what several tests are about


@pytest.fixture
def partner() -> Iterator[Partner]:
    server = _Server(("127.0.0.1", 0), Handler)
    server.partner = Partner()
    server.partner.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield server.partner
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    p = urllib3.PoolManager(retries=False)
    yield p
    p.clear()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(pool: urllib3.PoolManager, sleeps: list[float]):
    def factory(**kw: Any) -> OcpiClient:
        kw.setdefault("pool", pool)
        kw.setdefault("sleep", sleeps.append)
        return OcpiClient(kw.pop("token", TOKEN), **kw)

    return factory


# ----------------------------------------------------------------------------- headers
def test_authorization_is_base64_token_and_default_headers(partner: Partner, make) -> None:
    result = make().get(partner.url("/ocpi/2.2.1/locations"))
    assert result.ok and result.http_status == 200 and result.status_code == 1000
    seen = partner.requests[0]
    assert seen.headers["authorization"] == f"Token {B64}"
    assert seen.headers["accept"] == "application/json"
    assert "content-type" not in seen.headers  # no body


def test_authorization_raw_token(partner: Partner, make) -> None:
    make(raw_token=True).get(partner.url("/versions"))
    assert partner.requests[0].headers["authorization"] == f"Token {TOKEN}"


def test_fresh_request_id_per_attempt_and_one_correlation_id(partner: Partner, make, sleeps) -> None:
    partner.reply(Reply(503, "busy"), Reply(503, "busy"))
    make(correlation_id="corr-42").get(partner.url("/x"))
    assert len(partner.requests) == 3
    request_ids = [r.headers["x-request-id"] for r in partner.requests]
    assert len(set(request_ids)) == 3
    for rid in request_ids:
        assert uuid.UUID(rid).version == 4
    assert {r.headers["x-correlation-id"] for r in partner.requests} == {"corr-42"}


def test_generated_correlation_id_is_stable_per_client(partner: Partner, make) -> None:
    c1, c2 = make(), make()
    c1.get(partner.url("/a"))
    c1.get(partner.url("/b"))
    c2.get(partner.url("/c"))
    corr = [r.headers["x-correlation-id"] for r in partner.requests]
    assert corr[0] == corr[1] == c1.correlation_id != corr[2]
    assert uuid.UUID(corr[0]).version == 4
    assert partner.requests[0].headers["x-request-id"] != partner.requests[1].headers["x-request-id"]


@pytest.mark.parametrize("routing", [True, False])
def test_routing_headers_on_and_off(partner: Partner, make, routing: bool) -> None:
    make(from_party=("NL", "EXA"), to_party=("DE", "ABC"), routing_headers=routing).get(partner.url("/x"))
    h = partner.requests[0].headers
    names = {"ocpi-from-country-code", "ocpi-from-party-id", "ocpi-to-country-code", "ocpi-to-party-id"}
    if routing:
        assert (h["ocpi-from-country-code"], h["ocpi-from-party-id"]) == ("NL", "EXA")
        assert (h["ocpi-to-country-code"], h["ocpi-to-party-id"]) == ("DE", "ABC")
    else:
        assert names.isdisjoint(h)


def test_caller_headers_override_but_request_id_stays_fresh(partner: Partner, make) -> None:
    result = make().get(partner.url("/x"), headers={"x-correlation-id": "mine", "X-Request-ID": "fixed"})
    h = partner.requests[0].headers
    assert h["x-correlation-id"] == "mine"
    assert h["x-request-id"] != "fixed"
    assert result.headers["content-length"]  # response header names are lower-cased


# ----------------------------------------------------------------------------- body and params
class _Tariff(OcpiModel):
    id: str
    price: Decimal
    note: str | None = None


def test_json_body_serialises_models_and_decimals(partner: Partner, make) -> None:
    c = make()
    c.put(partner.url("/tariffs/NL/EXA/1"), json=_Tariff(id="1", price=Decimal("0.25")))
    c.post(partner.url("/batch"), json=[_Tariff(id="2", price=Decimal("1.5")), {"x": Decimal("2.10")}])
    put, post = partner.requests
    assert put.method == "PUT" and put.headers["content-type"] == "application/json"
    assert json.loads(put.body) == {"id": "1", "price": "0.25"}  # pydantic's JSON mode, None left out
    assert json.loads(post.body, parse_float=Decimal)[1] == {"x": Decimal("2.1")}
    assert post.method == "POST" and post.headers["content-type"] == "application/json"


def test_response_numbers_are_decimal(partner: Partner, make) -> None:
    partner.reply(Reply(body='{"status_code":1000,"data":{"kwh":0.1,"n":3}}'))
    data = make().get(partner.url("/x")).data
    assert data == {"kwh": Decimal("0.1"), "n": 3} and isinstance(data["kwh"], Decimal)


def test_params_merge_with_existing_query(partner: Partner, make) -> None:
    url = partner.url("/cdrs?date_from=2016-01-01T00:00:00Z&limit=5")
    make().get(url, params={"limit": 10, "offset": 0, "skipped": None})
    assert partner.requests[0].path == "/cdrs?date_from=2016-01-01T00:00:00Z&limit=10&offset=0"


# ----------------------------------------------------------------------------- retry policy
def test_retries_503_then_success(partner: Partner, make, sleeps) -> None:
    partner.reply(Reply(503, envelope(code=3000)), Reply(503, "x"))
    result = make(backoff=0.2).get(partner.url("/x"))
    assert result.ok
    assert len(partner.requests) == 3
    assert len(sleeps) == 2
    assert 0.2 <= sleeps[0] <= 0.22 and 0.4 <= sleeps[1] <= 0.44  # exponential + small jitter


def test_retries_exhausted_raises_retryable_http_error(partner: Partner, make, sleeps) -> None:
    partner.default = Reply(500, envelope(code=3000, message="down"))
    with pytest.raises(OcpiHttpError) as exc:
        make(retries=2).get(partner.url("/x"))
    assert len(partner.requests) == 3 and len(sleeps) == 2
    assert exc.value.retryable and exc.value.result.http_status == 500
    assert exc.value.result.status_code == 3000 and exc.value.result.status_message == "down"


def test_no_retry_on_400_and_envelope_is_parsed(partner: Partner, make, sleeps) -> None:
    partner.reply(Reply(400, envelope(code=2001, message="Missing required field: type")))
    with pytest.raises(OcpiHttpError) as exc:
        make().put(partner.url("/x"), json={"a": 1})
    err = exc.value
    assert not err.retryable and len(partner.requests) == 1 and sleeps == []
    assert err.result.http_status == 400 and err.status_code == 2001
    assert err.result.status_message == "Missing required field: type" and not err.result.ok


def test_no_retry_on_ocpi_2001(partner: Partner, make, sleeps) -> None:
    partner.reply(Reply(200, envelope(code=2001, message="bad")))
    with pytest.raises(OcpiStatusError) as exc:
        make().get(partner.url("/x"))
    assert not exc.value.retryable and len(partner.requests) == 1 and sleeps == []
    assert exc.value.result.status_code == 2001


def test_check_status_false_returns_the_result(partner: Partner, make) -> None:
    partner.reply(Reply(200, envelope(code=2004, message="Unknown token")))
    result = make().get(partner.url("/x"), check_status=False)
    assert result.status_code == 2004 and not result.ok


def test_ocpi_3000_is_retried(partner: Partner, make) -> None:
    partner.reply(Reply(200, envelope(code=3000)))
    assert make().get(partner.url("/x")).ok
    assert len(partner.requests) == 2


def test_retry_on_read_timeout(partner: Partner, make) -> None:
    partner.reply(Reply(delay=0.6))
    start = time.monotonic()
    assert make(timeout=0.2).get(partner.url("/slow")).ok
    assert len(partner.requests) == 2 and time.monotonic() - start < 2


def test_timeouts_exhausted_raise_transport_error(partner: Partner, make) -> None:
    partner.default = Reply(delay=0.5)
    with pytest.raises(OcpiTransportError) as exc:
        make(timeout=0.2, retries=1).get(partner.url("/slow?token=secret"))
    assert exc.value.retryable and exc.value.result is None
    assert "secret" not in str(exc.value)
    assert len(partner.requests) == 2


def test_retry_on_connection_reset(partner: Partner, make) -> None:
    partner.reply(Reply(action="reset"), Reply(action="close"))
    assert make().get(partner.url("/x")).ok
    assert len(partner.requests) == 3


def test_connection_refused_is_retryable_transport_error(make, sleeps) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(OcpiTransportError) as exc:
        make(retries=1).get(f"http://127.0.0.1:{port}/x")
    assert exc.value.retryable and len(sleeps) == 1


@pytest.mark.parametrize(
    "body",
    [b"\x00\xffnot json", '[{"status_code": 1000}]', '{"data": []}', '{"status_code": "1000"}', ""],
    ids=["garbage", "list", "no-status", "string-status", "empty"],
)
def test_protocol_error_on_2xx_garbage_is_retried(partner: Partner, make, body) -> None:
    partner.default = Reply(200, body)
    with pytest.raises(OcpiProtocolError) as exc:
        make(retries=1).get(partner.url("/x"))
    assert exc.value.retryable and exc.value.result.http_status == 200
    assert len(partner.requests) == 2


def test_html_502_then_success(partner: Partner, make) -> None:
    partner.reply(Reply(502, "<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"}))
    assert make().get(partner.url("/x")).ok
    assert len(partner.requests) == 2


def test_html_502_error_has_no_envelope(partner: Partner, make) -> None:
    partner.default = Reply(502, "<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    with pytest.raises(OcpiHttpError) as exc:
        make(retries=0).get(partner.url("/x"))
    assert exc.value.retryable and exc.value.result.status_code is None and exc.value.result.data is None


def test_per_call_retries_override(partner: Partner, make) -> None:
    partner.default = Reply(503, "x")
    with pytest.raises(OcpiHttpError):
        make(retries=2).post(partner.url("/commands/START_SESSION"), json={}, retries=0)
    assert len(partner.requests) == 1


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [(429, "1", 1.0), (503, "60", 5.0), (429, "0", 0.0)],
)
def test_retry_after_is_honoured_and_capped(partner: Partner, make, sleeps, status, value, expected) -> None:
    partner.reply(Reply(status, "slow down", {"Retry-After": value}))
    assert make(backoff=0.2).get(partner.url("/x")).ok
    assert sleeps == [expected]


def test_retry_after_http_date(partner: Partner, make, sleeps) -> None:
    partner.reply(Reply(429, "", {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}))  # in the past
    assert make().get(partner.url("/x")).ok
    assert sleeps == [0.0]


# ----------------------------------------------------------------------------- body size
@pytest.mark.parametrize("action", [None, "stream"], ids=["content-length", "no-content-length"])
def test_oversized_body_is_refused(partner: Partner, make, monkeypatch, action) -> None:
    monkeypatch.setattr(client_mod, "MAX_BODY_BYTES", 1000)
    partner.reply(Reply(body=envelope(data=["x" * 50] * 100), action=action))
    c = make()
    with pytest.raises(OcpiProtocolError) as exc:
        c.get(partner.url("/big"))
    assert not exc.value.retryable and len(partner.requests) == 1
    assert c.get(partner.url("/small")).ok  # the pool is still usable


def test_body_just_under_the_limit_is_read(partner: Partner, make, monkeypatch) -> None:
    body = json.dumps(envelope(data="y" * 500)).encode()
    monkeypatch.setattr(client_mod, "MAX_BODY_BYTES", len(body))
    partner.reply(Reply(body=body, action="stream"))
    assert make().get(partner.url("/x")).data == "y" * 500


# ----------------------------------------------------------------------------- envelope optional
def test_expect_envelope_false(partner: Partner, make) -> None:
    partner.reply(Reply(200, '{"plain": true}'), Reply(204, ""))
    c = make()
    assert c.get(partner.url("/x"), expect_envelope=False).data == {"plain": True}
    result = c.delete(partner.url("/y"), expect_envelope=False)
    assert result.http_status == 204 and result.data is None and result.status_code is None


# ----------------------------------------------------------------------------- pagination
def test_get_all_follows_links_verbatim(partner: Partner, make) -> None:
    page2 = "/cdrs?offset=2&limit=2&date_from=2016-01-01T00:00:00Z&cursor=a%2Bb%3D"
    page3 = "/cdrs?cursor=Zm9v%3D%3D&limit=2&offset=4"
    first = "/cdrs?date_from=2016-01-01T00%3A00%3A00Z&limit=2"
    partner.routes[first] = Reply(
        body=envelope([1, 2]), headers={"Link": f'<{partner.url(page2)}>; rel="next"', "X-Total-Count": "5"}
    )
    partner.routes[page2] = Reply(
        body=envelope([3, 4]),
        headers={"Link": f'<{partner.url("/other")}>; rel="prev", <{partner.url(page3)}>; rel="next"'},
    )
    partner.routes[page3] = Reply(body=envelope([5]))
    items = list(
        make().get_all(partner.url("/cdrs"), params={"date_from": "2016-01-01T00:00:00Z"}, page_limit=2)
    )
    assert items == [1, 2, 3, 4, 5]
    assert [r.path for r in partner.requests] == [first, page2, page3]


def test_get_all_relative_link_and_empty_data(partner: Partner, make) -> None:
    partner.routes["/l"] = Reply(body=envelope([1]), headers={"Link": "</l?offset=1>; rel=next"})
    partner.routes["/l?offset=1"] = Reply(body=envelope(None))
    assert list(make().get_all(partner.url("/l"))) == [1]


def test_get_all_detects_link_loop(partner: Partner, make) -> None:
    link = {"Link": f'<{partner.url("/loop?p=2")}>; rel="next"'}
    partner.routes["/loop"] = Reply(body=envelope(["a"]), headers=link)
    partner.routes["/loop?p=2"] = Reply(body=envelope(["b"]), headers=link)
    got: list[str] = []
    with pytest.raises(OcpiProtocolError) as exc:
        for item in make().get_all(partner.url("/loop")):
            got.append(item)
    assert got == ["a", "b"] and not exc.value.retryable
    assert len(partner.requests) == 2


def test_get_all_refuses_link_to_another_origin(partner: Partner, make) -> None:
    link = {"Link": '<https://evil.test/l?p=2>; rel="next"'}
    partner.routes["/l"] = Reply(body=envelope([1]), headers=link)
    with pytest.raises(OcpiProtocolError):
        list(make().get_all(partner.url("/l")))
    assert len(partner.requests) == 1


def test_get_all_max_pages(partner: Partner, make) -> None:
    partner.routes["/l"] = Reply(body=envelope([1]), headers={"Link": "</l?p=2>; rel=next"})
    with pytest.raises(OcpiProtocolError):
        list(make().get_all(partner.url("/l"), max_pages=1))


def test_next_link_parsing() -> None:
    assert next_link(None) is None
    assert next_link('<https://a/x?p=1>; rel="prev"') is None
    assert next_link('<https://a/x?p=1,2>; rel="prev", <https://a/x?p=3>; rel="next"') == "https://a/x?p=3"
    assert next_link("<https://a/y>;rel=next") == "https://a/y"
    assert next_link('<https://a/z>; title="n"; rel="last next"') == "https://a/z"


# ----------------------------------------------------------------------------- misc
def test_logs_never_contain_token_query_or_token_uid(partner: Partner, make, caplog) -> None:
    caplog.set_level("DEBUG")  # urllib3's own DEBUG request lines must stay silent too
    partner.reply(Reply(503, "x"))
    make().put(partner.url("/ocpi/emsp/2.2.1/tokens/NL/EXA/UID12345?secret=q"), json={"uid": "UID12345"})
    records = [r for r in caplog.records if r.getMessage().startswith("OCPI request")]
    assert len(records) == 2  # one line per attempt
    out = " ".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert partner.requests[0].headers["x-request-id"] in out
    for forbidden in (TOKEN, B64, "secret=q", "UID12345"):
        assert forbidden not in out
    assert "/tokens/NL/EXA/***" in out


def test_redacted_paths() -> None:
    redact = client_mod._redact_path
    assert redact("/ocpi/2.2.1/locations/NL/EXA/L1") == "/ocpi/2.2.1/locations/NL/EXA/L1"
    assert redact("/ocpi/cpo/2.2.1/tokens/NL/EXA/U1") == "/ocpi/cpo/2.2.1/tokens/NL/EXA/***"
    assert redact("/ocpi/emsp/2.2.1/tokens/U1/authorize") == "/ocpi/emsp/2.2.1/tokens/***/authorize"
    assert redact("/ocpi/emsp/2.2.1/tokens") == "/ocpi/emsp/2.2.1/tokens"


def test_invalid_url_is_not_retried(make, sleeps) -> None:
    with pytest.raises(OcpiClientError) as exc:
        make().get("ftp://example.test/x")
    assert not exc.value.retryable and sleeps == []


def test_shared_pool_is_a_lazy_singleton(monkeypatch) -> None:
    monkeypatch.setattr(client_mod, "_POOL", None)
    p = shared_pool()
    assert p is shared_pool()
    assert p.pools._maxsize == 50 and p.connection_pool_kw["maxsize"] == 10
    assert OcpiClient(TOKEN).pool is p
    assert TOKEN not in repr(OcpiClient(TOKEN)) and B64 not in repr(OcpiClient(TOKEN))
