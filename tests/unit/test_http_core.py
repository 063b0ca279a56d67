"""The protocol core over HTTP: envelope, error mapping, auth, headers, pagination.

A small app built with the same factory every function uses (shared.http.create_app) exercises
the parts no module owns yet; module tests exercise the same code through their own routes."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.testclient import TestClient

from shared import auth
from shared.auth import Caller, hash_token
from shared.envelope import OcpiResponse
from shared.http import (
    caller,
    check_routing,
    create_app,
    json_object,
    routing_headers,
    url_without_query,
    validate,
)
from shared.models.v221.tokens import Token
from shared.pagination import page_headers, parse_params
from shared.store import get_store
from shared.store.base import ObjectRef, TokenRecord

router = APIRouter()


@router.put("/t/{uid}")
async def put_token(uid: str, request: Request, who: Caller = Depends(caller)) -> OcpiResponse:
    check_routing(routing_headers(request), who)
    token = validate(Token, await json_object(request))
    return OcpiResponse(token)


@router.get("/list")
def list_objects(request: Request, who: Caller = Depends(caller)) -> OcpiResponse:
    params = parse_params(dict(request.query_params))
    page = get_store().list(params.query("locations", "own"))
    return OcpiResponse(
        [o.body for o in page.items], headers=page_headers(url_without_query(request), params, page)
    )


@router.get("/boom")
def boom(who: Caller = Depends(caller)) -> OcpiResponse:
    raise RuntimeError("secret internals")


TOKEN = "partner-token-C"
TOKEN_A = "registration-token-A"
HDR = {"Authorization": "Token " + base64.b64encode(TOKEN.encode()).decode()}
VALID = {
    "country_code": "DE",
    "party_id": "ABC",
    "uid": "012345678",
    "type": "RFID",
    "contract_id": "DE8ACC12E46L89",
    "issuer": "Issuer",
    "valid": True,
    "whitelist": "ALWAYS",
    "last_updated": "2015-06-29T22:39:09Z",
}


@pytest.fixture
def client(memory_store):
    memory_store.put_partner(
        {
            "partner_id": "p1",
            "status": "REGISTERED",
            "roles": [{"role": "EMSP", "country_code": "DE", "party_id": "ABC"}],
        }
    )
    memory_store.put_token(TokenRecord(hash_token(TOKEN), "p1", "C"))
    memory_store.put_token(TokenRecord(hash_token(TOKEN_A), "p2", "A", expires_at=int(time.time()) + 60))
    return TestClient(create_app("test", [router]), raise_server_exceptions=False)


def assert_envelope(resp, http: int, code: int) -> dict:
    assert resp.status_code == http, resp.text
    body = resp.json()
    assert "detail" not in body
    assert body["status_code"] == code
    assert body["timestamp"].endswith("Z") and len(body["timestamp"]) <= 25
    return body


def test_valid_body_round_trips(client) -> None:
    body = assert_envelope(client.put("/t/012345678", json=VALID, headers=HDR), 200, 1000)
    assert body["data"] == VALID


def test_invalid_json_is_400_2001(client) -> None:
    resp = client.put("/t/x", content=b'{"uid": ', headers={**HDR, "content-type": "application/json"})
    assert "JSON" in assert_envelope(resp, 400, 2001)["status_message"]


def test_non_object_json_is_2001(client) -> None:
    assert_envelope(client.put("/t/x", json=[1, 2], headers=HDR), 200, 2001)


@pytest.mark.parametrize(
    "field,value",
    [
        ("valid", "yes-please"),  # wrong type
        ("whitelist", "SOMETIMES"),  # unknown enum value
        ("uid", "x" * 37),  # over-long CiString(36)
        ("uid", "ünïcode"),  # non-ASCII in a CiString
        ("uid", "tab\there"),  # control character
        ("last_updated", "yesterday"),  # bad DateTime
        ("last_updated", "2015-06-29"),  # date only
        ("party_id", None),  # missing required field
    ],
)
def test_model_violation_is_2001_naming_the_field(client, field: str, value) -> None:
    body = dict(VALID)
    if value is None:
        del body[field]
    else:
        body[field] = value
    resp = client.put("/t/x", json=body, headers=HDR)
    # Valid JSON from an authenticated party has reached the OCPI layer: HTTP 200, OCPI 2001
    # (status_codes.asciidoc: "an HTTP error status code MUST NOT be returned").
    assert field in assert_envelope(resp, 200, 2001)["status_message"]


@pytest.mark.parametrize(
    "header",
    [
        None,  # missing
        "Token " + base64.b64encode(b"unknown").decode(),  # unknown
        "Token !!!not-base64!!!",  # malformed Base64
        "Bearer " + base64.b64encode(TOKEN.encode()).decode(),  # wrong scheme
        "Token ",  # empty
        "Token " + "A" * 5000,  # absurdly long
    ],
)
def test_bad_credentials_are_401_in_the_envelope(client, header) -> None:
    headers = {"Authorization": header} if header is not None else {}
    assert_envelope(client.get("/list", headers=headers), 401, 2000)


def test_raw_token_fallback_is_accepted(client) -> None:
    assert_envelope(client.get("/list", headers={"Authorization": f"Token {TOKEN}"}), 200, 1000)


def test_registration_token_opens_nothing_but_versions_and_credentials(client) -> None:
    hdr = {"Authorization": "Token " + base64.b64encode(TOKEN_A.encode()).decode()}
    assert_envelope(client.get("/list", headers=hdr), 401, 2000)


def test_expired_registration_token_is_refused(client, memory_store) -> None:
    memory_store.put_token(TokenRecord(hash_token("old-A"), "p3", "A", expires_at=int(time.time()) - 1))
    hdr = {"Authorization": "Token " + base64.b64encode(b"old-A").decode()}
    with pytest.raises(Exception) as exc:
        auth.authenticate(memory_store, hdr["Authorization"], allow_registration=True)
    assert exc.value.http_status == 401


def test_unknown_route_and_wrong_method_are_enveloped(client) -> None:
    assert_envelope(client.get("/nope", headers=HDR), 404, 2000)
    assert_envelope(client.delete("/list", headers=HDR), 405, 2000)


def test_unexpected_error_is_500_3000_without_internals(client) -> None:
    body = assert_envelope(client.get("/boom", headers=HDR), 500, 3000)
    assert "secret" not in body["status_message"]


def test_request_and_correlation_ids_are_echoed_or_generated(client) -> None:
    resp = client.get("/list", headers={**HDR, "X-Request-ID": "req-1", "X-Correlation-ID": "cor-1"})
    assert resp.headers["x-request-id"] == "req-1" and resp.headers["x-correlation-id"] == "cor-1"
    resp = client.get("/list", headers=HDR)
    assert len(resp.headers["x-request-id"]) == 36 and len(resp.headers["x-correlation-id"]) == 36
    # Errors carry them too.
    assert client.get("/list").headers["x-request-id"]


def test_routing_headers_are_validated(client) -> None:
    ok = {
        "OCPI-from-country-code": "de",
        "OCPI-from-party-id": "abc",
        "OCPI-to-country-code": "NL",
        "OCPI-to-party-id": "CPO",
    }
    assert_envelope(client.put("/t/x", json=VALID, headers={**HDR, **ok}), 200, 1000)
    foreign = {**ok, "OCPI-from-party-id": "XYZ"}
    assert_envelope(client.put("/t/x", json=VALID, headers={**HDR, **foreign}), 200, 2001)
    not_ours = {**ok, "OCPI-to-party-id": "ZZZ"}
    assert_envelope(client.put("/t/x", json=VALID, headers={**HDR, **not_ours}), 200, 2001)
    malformed = {**ok, "OCPI-from-country-code": "DEU"}
    assert_envelope(client.put("/t/x", json=VALID, headers={**HDR, **malformed}), 200, 2001)


def test_oversized_body_is_refused(client, monkeypatch) -> None:
    from shared import config

    monkeypatch.setenv("OCPI_MAX_BODY_BYTES", "100")
    config.reset_settings()
    assert_envelope(client.put("/t/x", json={"x": "y" * 200}, headers=HDR), 413, 2000)


def test_warm_request_costs_no_store_read_for_auth(client, memory_store, monkeypatch) -> None:
    calls = []
    original = memory_store.get_token
    monkeypatch.setattr(memory_store, "get_token", lambda h: calls.append(h) or original(h))
    for _ in range(5):
        assert client.get("/list", headers=HDR).status_code == 200
    assert len(calls) == 1


def test_revoked_token_is_refused_after_cache_forget(client, memory_store) -> None:
    assert client.get("/list", headers=HDR).status_code == 200
    memory_store.delete_token(hash_token(TOKEN))
    auth.forget(hash_token(TOKEN))
    assert client.get("/list", headers=HDR).status_code == 401


# ------------------------------------------------------------------ pagination over HTTP
def _fill(store, n: int) -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(n):
        store.put(
            ObjectRef("locations", "NL", "CPO", f"L{i:03d}"),
            {"id": f"L{i:03d}"},
            t0 + timedelta(minutes=i),
            collection="own",
        )


def _next_link(resp) -> str | None:
    link = resp.headers.get("link")
    if not link:
        return None
    assert link.endswith('>; rel="next"')
    return link[1 : link.index(">")]


def test_pagination_headers_link_keeps_filters_and_is_absent_on_last_page(client, memory_store) -> None:
    _fill(memory_store, 7)
    url = "/list?date_from=2024-01-01T00:01:00Z&date_to=2024-01-01T00:06:00&limit=2"
    seen, pages = [], 0
    while url:
        resp = client.get(url, headers=HDR)
        assert_envelope(resp, 200, 1000)
        assert resp.headers["x-total-count"] == "5" and resp.headers["x-limit"] == "100"
        seen += [o["id"] for o in resp.json()["data"]]
        pages += 1
        nxt = _next_link(resp)
        if nxt:
            assert nxt.startswith("https://ocpi.test/list?")
            assert "date_from=2024-01-01T00%3A01%3A00Z" in nxt and "date_to=" in nxt and "limit=2" in nxt
            url = nxt.removeprefix("https://ocpi.test")
        else:
            url = None
    assert seen == ["L001", "L002", "L003", "L004", "L005"] and pages == 3


def test_limit_is_capped_by_server_maximum(client, memory_store, monkeypatch) -> None:
    from shared import config

    monkeypatch.setenv("OCPI_PAGE_LIMIT", "3")
    config.reset_settings()
    _fill(memory_store, 5)
    resp = client.get("/list?limit=1000", headers=HDR)
    assert len(resp.json()["data"]) == 3 and resp.headers["x-limit"] == "3"
    assert "limit=3" in resp.headers["link"]


def test_empty_and_exact_multiple_pages(client, memory_store) -> None:
    resp = client.get("/list", headers=HDR)
    assert resp.json()["data"] == [] and resp.headers["x-total-count"] == "0" and "link" not in resp.headers
    _fill(memory_store, 4)
    first = client.get("/list?limit=2", headers=HDR)
    second = client.get(_next_link(first).removeprefix("https://ocpi.test"), headers=HDR)
    assert [o["id"] for o in second.json()["data"]] == ["L002", "L003"] and "link" not in second.headers


@pytest.mark.parametrize(
    "query",
    [
        "limit=-1",
        "offset=abc",
        "date_from=yesterday",
        "cursor=%%%",
        "cursor=eyJvIjowfQ&offset=0",
        "date_from=2024-02-01T00:00:00Z&date_to=2024-01-01T00:00:00Z",
    ],
)
def test_bad_pagination_parameters_are_2001(client, memory_store, query: str) -> None:
    _fill(memory_store, 2)
    assert_envelope(client.get(f"/list?{query}", headers=HDR), 200, 2001)


def test_registration_scope_lookups_are_not_cached(memory_store) -> None:
    """Our token B is registration scope during a handshake and a partner token after it: a
    cached scope would lock the partner out of every module for the cache's lifetime."""
    memory_store.put_partner({"partner_id": "p9", "status": "REGISTERING", "roles": []})
    memory_store.put_token(TokenRecord(hash_token("our-b"), "p9", "A", expires_at=int(time.time()) + 60))
    header = "Token " + base64.b64encode(b"our-b").decode()
    assert auth.authenticate(memory_store, header, allow_registration=True).kind == "A"
    memory_store.put_token(TokenRecord(hash_token("our-b"), "p9", "C"))
    memory_store.put_partner({"partner_id": "p9", "status": "REGISTERED", "roles": []})
    assert auth.authenticate(memory_store, header).kind == "C"


def test_new_tokens_never_start_with_a_dash(monkeypatch) -> None:
    """A token starting with "-" would be read as an option by command-line tools (argparse)."""
    draws = iter(["-looks-like-an-option", "fine-token"])
    monkeypatch.setattr(auth.secrets, "token_urlsafe", lambda n: next(draws))
    assert auth.new_token() == "fine-token"
