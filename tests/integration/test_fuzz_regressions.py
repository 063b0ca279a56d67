"""Regressions of what the fuzzer (tests/e2e/test_fuzz.py) found, each with the input that broke it,
checked fast in-process (the function's app, the store on moto where the fault was DynamoDB's)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from shared import jsonutil
from shared.models.types import parse_datetime
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import add_partner

RX = "/ocpi/2.2.1/receiver/locations/BE/FZC"


@pytest.fixture
def locations_api(dynamo_store):
    headers = add_partner(dynamo_store, "fuzz", "fuzz-token", [("CPO", "BE", "FZC")])
    return TestClient(load_app("locations"), raise_server_exceptions=False), headers


def test_a_request_id_cut_to_64_characters_is_echoed_without_trailing_whitespace(memory_store) -> None:
    # Fuzzer: `X-Request-ID: 0{63} 000` (101 characters) was cut to 64, which ended in a space; the
    # echoed header was illegal and uvicorn dropped the connection without any answer.
    api = TestClient(load_app("versions"), raise_server_exceptions=False)
    sent = "0" * 63 + " " + "0" * 37
    resp = api.get("/ocpi/versions", headers={"X-Request-ID": sent, "X-Correlation-ID": sent})
    assert resp.status_code == 401 and resp.json()["status_code"] == 2000
    assert resp.headers["x-request-id"] == "0" * 63
    assert resp.headers["x-correlation-id"] == "0" * 63


@pytest.mark.parametrize(
    "number",
    [
        "-5.858995858248091e+135",  # beyond 1E+125 (decimal.Overflow in boto3's serialiser)
        "2.2250738585072014e-308",  # below 1E-130 (Underflow)
        "1" * 39,  # 39 digits (Rounded)
        "0." + "1" * 39,
    ],
)
def test_numbers_dynamodb_cannot_hold_are_refused_with_2001(locations_api, number: str) -> None:
    # Fuzzer: PATCH .../locations/BE/FZC/fGf8 with `{"energy_mix": {...}, "x": [["", <number>, ""]]}`
    # (an unknown field is kept) -> DynamoDB's serialiser raised -> HTTP 500.
    api, headers = locations_api
    raw = '{"name": "x", "extra": [' + number + "]}"
    resp = api.patch(f"{RX}/L1", content=raw, headers={**headers, "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status_code"] == 2001
    assert "Number out of range" in resp.json()["status_message"]


def test_an_integral_number_beyond_38_digits_as_an_int_is_refused(dynamo_store) -> None:
    # Fuzzer: PATCH /ocpi/2.2.1/receiver/sessions/BE/FZC/mlBmK-RiIB with
    # `"total_cost": {"excl_vat": -2.9411725079925333e+43, ...}`: in range for DynamoDB as a
    # Decimal, but the model writes an integral Number as an int (44 digits) -> Rounded -> HTTP 500.
    headers = add_partner(dynamo_store, "fuzz", "fuzz-token", [("CPO", "BE", "FZC")])
    api = TestClient(load_app("sessions"), raise_server_exceptions=False)
    raw = (
        '{"total_cost": {"incl_vat": 1.3927730526754824e+16, "excl_vat": -2.9411725079925333e+43},'
        ' "last_updated": "2084-01-17T22:17:28Z"}'
    )
    resp = api.patch(
        "/ocpi/2.2.1/receiver/sessions/BE/FZC/mlBmK-RiIB",
        content=raw,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert resp.status_code == 200 and resp.json()["status_code"] == 2001, resp.text
    assert "Number out of range" in resp.json()["status_message"]
    assert jsonutil.loads("-9.99e37") == Decimal("-9.99E+37")  # the largest magnitude kept


def test_nan_and_infinity_are_not_json(locations_api) -> None:
    api, headers = locations_api
    for raw in ('{"name": NaN}', '{"name": "x", "extra": -Infinity}'):
        resp = api.patch(f"{RX}/L1", content=raw, headers={**headers, "Content-Type": "application/json"})
        assert resp.status_code == 400 and resp.json()["status_code"] == 2001, resp.text


def test_numbers_inside_dynamodb_range_parse_exactly() -> None:
    data = jsonutil.loads('{"a": 1.50, "b": 12, "c": -5e-3, "d": 9.9E+37, "e": 1e-130, "f": 0.1234}')
    assert json.dumps({k: str(v) for k, v in data.items()}) == json.dumps(
        {"a": "1.50", "b": "12", "c": "-0.005", "d": "9.9E+37", "e": "1E-130", "f": "0.1234"}
    )
    with pytest.raises(jsonutil.NumberOutOfRange):
        jsonutil.loads("[" + "9" * 39 + "]")


def test_a_date_before_year_1_in_utc_is_a_2001(memory_store) -> None:
    # Fuzzer: GET /ocpi/2.1.1/sender/tokens?date_to=0001-01-01T00:00:00+02:02 -> OverflowError in
    # astimezone -> HTTP 500. Same parser for every DateTime, bodies included.
    headers = add_partner(memory_store, "cpo", "cpo-token", [("CPO", "BE", "FZC")])
    api = TestClient(load_app("tokens"), raise_server_exceptions=False)
    for version in ("2.1.1", "2.2.1"):
        resp = api.get(
            f"/ocpi/{version}/sender/tokens",
            params={"date_from": "0001-03-02T02:04:00Z", "date_to": "0001-01-01T00:00:00+02:02"},
            headers=headers,
        )
        assert resp.status_code == 200 and resp.json()["status_code"] == 2001, resp.text
        assert "date_to" in resp.json()["status_message"]
    late = {"date_from": "9999-12-31T23:59:59-01:00"}
    resp = api.get("/ocpi/2.2.1/sender/tokens", params=late, headers=headers)
    assert resp.json()["status_code"] == 2001, resp.text
    with pytest.raises(ValueError, match="out of range"):
        parse_datetime("0001-01-01T00:00:00+02:02")


def test_a_party_in_the_url_shorter_than_2_and_3_characters_is_a_2001(memory_store) -> None:
    # Fuzzer: GET /ocpi/2.2.1/receiver/hubclientinfo/0/0 by a hub -> ObjectRef refused "0"/"0"
    # (ValueError) -> HTTP 500.
    headers = add_partner(memory_store, "hub", "hub-token", [("HUB", "BE", "FZH")])
    api = TestClient(load_app("hubclientinfo"), raise_server_exceptions=False)
    for cc, pid in (("0", "0"), ("B", "FZC"), ("BE", "FZ")):
        for method in ("GET", "PUT"):
            body = {"country_code": cc, "party_id": pid, "role": "CPO", "status": "ONLINE"}
            resp = api.request(
                method,
                f"/ocpi/2.2.1/receiver/hubclientinfo/{cc}/{pid}",
                headers=headers,
                json={**body, "last_updated": "2024-01-01T00:00:00Z"} if method == "PUT" else None,
            )
            assert resp.status_code == 200 and resp.json()["status_code"] == 2001, (
                method,
                cc,
                pid,
                resp.text,
            )
