"""Malformed bodies under every version's routes: the conversion layer (shared/versions) must
answer bad input with an OCPI error in the envelope, never a 5xx, and store nothing."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from shared.store.base import ListQuery
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import add_partner

BAD_BODIES = [
    None,
    [],
    "text",
    42,
    {},
    {"id": None},
    {"evses": "x", "coordinates": 5, "last_updated": "2030-01-01T00:00:00Z"},
    {"evses": [None, 1, {"connectors": "x"}], "last_updated": "2030-01-01T00:00:00Z"},
    {"elements": [{"price_components": "x"}], "min_price": 3, "last_updated": "2030-01-01T00:00:00Z"},
    {"total_cost": {"before_taxes": "x", "taxes": [None]}, "charging_periods": [{"dimensions": 1}]},
    {"location": "x", "auth_id": 5, "total_cost": [], "stop_date_time": 1},
    {"tariff_id": [], "voltage": "x", "amperage": None, "standard": 7},
    {"cdr_token": "x", "start_datetime": 3, "kwh": "many"},
    {"uid": [], "type": {}, "auth_id": 1, "whitelist": 3},
]

ROUTES = [
    ("locations", "PUT", "receiver/locations/BE/BEC/L1"),
    ("locations", "PATCH", "receiver/locations/BE/BEC/L1"),
    ("locations", "PUT", "receiver/locations/BE/BEC/L1/E1"),
    ("locations", "PUT", "receiver/locations/BE/BEC/L1/E1/C1"),
    ("tariffs", "PUT", "receiver/tariffs/BE/BEC/T1"),
    ("tokens", "PUT", "receiver/tokens/DE/XXX/U1"),
    ("tokens", "PATCH", "receiver/tokens/DE/XXX/U1"),
    ("sessions", "PUT", "receiver/sessions/BE/BEC/S1"),
    ("sessions", "PATCH", "receiver/sessions/BE/BEC/S1"),
    ("cdrs", "POST", "receiver/cdrs"),
    ("commands", "POST", "receiver/commands/START_SESSION"),
    ("credentials", "PUT", "credentials"),
]


def auth(version: str, token: str) -> dict[str, str]:
    if version == "2.1.1":
        return {"Authorization": f"Token {token}"}
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


@pytest.mark.parametrize("version", ["2.1.1", "2.3.0"])
def test_no_malformed_body_gets_a_5xx_or_is_stored(memory_store, version) -> None:
    add_partner(memory_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    add_partner(memory_store, "emsp-x", "token-x", [("EMSP", "DE", "XXX")])
    apps = {m: TestClient(load_app(m), raise_server_exceptions=False) for m, _, _ in ROUTES}
    answers = 0
    for module, method, path in ROUTES:
        token = "token-x" if module in ("tokens", "commands") else "token-a"
        for body in BAD_BODIES:
            resp = apps[module].request(
                method, f"/ocpi/{version}/{path}", json=body, headers=auth(version, token)
            )
            answers += 1
            assert resp.status_code < 500, (version, method, path, body, resp.text)
            envelope = resp.json()
            assert envelope["status_code"] >= 2000 and "timestamp" in envelope, (path, body, envelope)
    assert answers == len(ROUTES) * len(BAD_BODIES)
    for module in ("locations", "tariffs", "tokens", "sessions", "cdrs"):
        assert memory_store.list(ListQuery("rx", module)).total == 0
