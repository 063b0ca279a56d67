"""One deployment, three OCPI versions over HTTP (the functions' FastAPI apps, memory store and
DynamoDB): the versions endpoint lists 2.1.1, 2.2.1 and 2.3.0; a CPO partner pushes a location in
its 2.1.1 form and it is read back equal (modulo the mappings of docs/versions-2.1.1.md) over
2.1.1, 2.2.1 and 2.3.0; our own objects are served to each version in its own form; a 2.3.0 price
keeps its taxes for 2.3.0 and reaches 2.2.1 as excl/incl VAT."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from shared import events
from shared.services import ingest
from shared.versions import Context, v211
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import EXAMPLES, add_partner

ALL = "2.1.1,2.2.1,2.3.0"


def spec(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def raw(token: str) -> dict[str, str]:
    """OCPI 2.1.1 sends the token as is (no Base64)."""
    return {"Authorization": f"Token {token}"}


def b64(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


@pytest.fixture
def env(any_store, monkeypatch):
    monkeypatch.setenv("OCPI_VERSIONS", ALL)
    add_partner(any_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    add_partner(any_store, "emsp-x", "token-x", [("EMSP", "DE", "XXX")])
    apps = {
        m: TestClient(load_app(m), raise_server_exceptions=False)
        for m in ("versions", "locations", "tariffs")
    }
    return {"store": any_store, "api": apps}


def test_versions_endpoint_lists_the_three_versions(env) -> None:
    got = env["api"]["versions"].get("/ocpi/versions", headers=b64("token-a")).json()["data"]
    assert [v["version"] for v in got] == ["2.1.1", "2.2.1", "2.3.0"]
    details = env["api"]["versions"].get("/ocpi/2.1.1", headers=raw("token-a")).json()["data"]
    assert details["version"] == "2.1.1"
    assert all("role" not in e for e in details["endpoints"])  # 2.1.1 endpoints carry no role
    details = env["api"]["versions"].get("/ocpi/2.3.0", headers=b64("token-a")).json()["data"]
    assert {e["role"] for e in details["endpoints"]} <= {"SENDER", "RECEIVER"}


def test_a_location_pushed_in_211_is_read_equal_over_every_version(env) -> None:
    api = env["api"]["locations"]
    canonical = spec("location_example.json")
    canonical.update(country_code="BE", party_id="BEC")
    in_211 = v211.from_canonical("location", canonical, Context(partner_party=("BE", "BEC", "CPO")))
    assert "country_code" not in in_211 and "publish" not in in_211  # really the 2.1.1 shape
    url = "/ocpi/{v}/receiver/locations/BE/BEC/LOC1"
    resp = api.put(url.format(v="2.1.1"), json=in_211, headers=raw("token-a"))
    assert resp.json()["status_code"] == 1000, resp.json()
    as_221 = api.get(url.format(v="2.2.1"), headers=b64("token-a")).json()["data"]
    as_230 = api.get(url.format(v="2.3.0"), headers=b64("token-a")).json()["data"]
    as_211 = api.get(url.format(v="2.1.1"), headers=raw("token-a")).json()["data"]
    # 2.1.1 -> canonical -> 2.1.1 gives back what was sent.
    assert as_211 == json.loads(json.dumps(in_211))
    # 2.2.1 reads the canonical location; the fields 2.1.1 cannot carry are the documented losses.
    lost = {"publish_allowed_to", "parking_type"}  # docs/versions-2.1.1.md section 11.1
    for key in set(canonical) - lost - {"evses"}:
        if key in ("publish", "time_zone", "last_updated", "country_code", "party_id"):
            assert key in as_221
            continue
        assert as_221.get(key) == json.loads(json.dumps(canonical[key])), key
    assert [e["uid"] for e in as_221["evses"]] == [e["uid"] for e in canonical["evses"]]
    assert [c["tariff_ids"] for e in as_221["evses"] for c in e["connectors"]] == [
        c["tariff_ids"][:1] for e in canonical["evses"] for c in e["connectors"]
    ]
    # 2.3.0 reads the same object as 2.2.1 (no 2.3.0-only data in it).
    assert as_230["id"] == as_221["id"] and as_230["evses"] == as_221["evses"]


def test_our_location_is_served_in_each_version(env) -> None:
    loc = spec("location_example.json")
    loc.update(country_code="NL", party_id="CPO")
    ingest.apply(env["store"], events.OWN_PUT, {"module": "locations", "object": loc})
    api = env["api"]["locations"]
    v211_list = api.get("/ocpi/2.1.1/sender/locations", headers=raw("token-x")).json()["data"]
    v221_list = api.get("/ocpi/2.2.1/sender/locations", headers=b64("token-x")).json()["data"]
    assert [x["id"] for x in v211_list] == [x["id"] for x in v221_list] == ["LOC1"]
    assert "publish" not in v211_list[0] and v221_list[0]["publish"] is True
    connector_211 = v211_list[0]["evses"][0]["connectors"][0]
    assert "tariff_id" in connector_211 and "tariff_ids" not in connector_211
    one = api.get("/ocpi/2.3.0/sender/locations/LOC1", headers=b64("token-x")).json()
    assert one["status_code"] == 1000 and one["data"]["id"] == "LOC1"


def test_an_unpublished_location_does_not_exist_for_211(env) -> None:
    loc = spec("location_example.json")
    loc.update(country_code="NL", party_id="CPO", id="HIDDEN", publish=False)
    ingest.apply(env["store"], events.OWN_PUT, {"module": "locations", "object": loc})
    api = env["api"]["locations"]
    assert api.get("/ocpi/2.1.1/sender/locations", headers=raw("token-x")).json()["data"] == []
    resp = api.get("/ocpi/2.1.1/sender/locations/HIDDEN", headers=raw("token-x"))
    assert resp.status_code == 404 and resp.json()["status_code"] >= 2000
    assert (
        api.get("/ocpi/2.2.1/sender/locations/HIDDEN", headers=b64("token-x")).json()["status_code"] == 1000
    )


def test_a_230_tariff_keeps_its_taxes_and_reaches_221_as_vat(env) -> None:
    api = env["api"]["tariffs"]
    tariff_230 = json.loads(
        (EXAMPLES.parent.parent / "2.3.0" / "examples" / "tariff_12_025kwh_min_price.json").read_text()
    )
    tariff_230 = tariff_230.get("data", tariff_230)
    tariff_230.update(country_code="BE", party_id="BEC", id="T12", last_updated="2024-01-01T00:00:00Z")
    url = "/ocpi/{v}/receiver/tariffs/BE/BEC/T12"
    resp = api.put(url.format(v="2.3.0"), json=tariff_230, headers=b64("token-a"))
    assert resp.json()["status_code"] == 1000, resp.json()
    back = api.get(url.format(v="2.3.0"), headers=b64("token-a")).json()["data"]
    assert back == json.loads(json.dumps(tariff_230))  # nothing of 2.3.0 lost
    as_221 = api.get(url.format(v="2.2.1"), headers=b64("token-a")).json()["data"]
    assert "tax_included" not in as_221
    assert set(as_221["min_price"]) <= {"excl_vat", "incl_vat"}


def test_a_230_field_sent_in_a_patch_is_kept_for_230_and_not_shown_to_221(env) -> None:
    api = env["api"]["locations"]
    loc = spec("location_example.json")
    loc.update(country_code="BE", party_id="BEC")
    url = "/ocpi/{v}/receiver/locations/BE/BEC/LOC1"
    assert api.put(url.format(v="2.3.0"), json=loc, headers=b64("token-a")).json()["status_code"] == 1000
    patch = {"help_phone": "+31201234567", "last_updated": "2030-01-01T00:00:00Z"}
    assert api.patch(url.format(v="2.3.0"), json=patch, headers=b64("token-a")).json()["status_code"] == 1000
    assert (
        api.get(url.format(v="2.3.0"), headers=b64("token-a")).json()["data"]["help_phone"] == "+31201234567"
    )
    assert "help_phone" not in api.get(url.format(v="2.2.1"), headers=b64("token-a")).json()["data"]


def test_a_211_cdr_with_a_decimal_total_cost_is_stored_as_a_price(env) -> None:
    add_partner(env["store"], "cpo-b", "token-b", [("CPO", "BE", "BED")])
    api = TestClient(load_app("cdrs"), raise_server_exceptions=False)
    cdr = spec("cdr_example.json")
    cdr.update(country_code="BE", party_id="BED", id="C211")
    in_211 = v211.from_canonical("cdr", cdr, Context(partner_party=("BE", "BED", "CPO")))
    assert isinstance(in_211["total_cost"], int | float)
    in_211["total_cost"] = 4.25  # parsed by us as Decimal('4.25')
    resp = api.post("/ocpi/2.1.1/receiver/cdrs", json=in_211, headers=raw("token-b"))
    assert resp.status_code == 201, resp.json()
    got = api.get("/ocpi/2.2.1/receiver/cdrs/BE/BED/C211", headers=b64("token-b")).json()["data"]
    assert got["total_cost"]["excl_vat"] == 4.25


def test_an_emaid_token_never_reaches_221() -> None:
    from shared.versions import convert

    token = spec("token_example_2_full_rfid.json")
    as_230 = dict(token, type="EMAID")
    canonical = convert.inbound("2.3.0", "token", as_230)
    assert convert.outbound("2.3.0", "token", [canonical])[0]["type"] == "EMAID"
    assert convert.outbound("2.2.1", "token", [canonical]) == []  # left out of 2.2.1 lists
    assert convert.outbound("2.2.1", "token", [token]) != []
