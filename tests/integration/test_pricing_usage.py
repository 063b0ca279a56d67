"""Where the tariff engine is used (shared/services/pricing.py), on the memory store and DynamoDB
(moto): as eMSP every received CDR is re-priced against the tariff we hold from that CPO and the
result is stored with the CDR (a mismatch is recorded, the CDR still stored); as CPO our own CDRs
and sessions from the back office get their costs computed when they come without."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from shared import events, jsonutil
from shared.errors import InvalidParameters
from shared.services import cdrs, ingest, objects, sessions
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import EXAMPLES, add_partner

RX_CDRS = "/ocpi/2.2.1/receiver/cdrs"


def spec(name: str) -> dict:
    data = json.loads((EXAMPLES / name).read_text())
    return data.get("data", data) if "status_code" in data else data


def as_json(obj):
    return json.loads(jsonutil.dumps(obj))


@pytest.fixture
def emsp(any_store):
    """We are the eMSP; partner BE*BEC (the official CDR example's CPO) pushed its location LOC1
    (Europe/Brussels) and tariff 12 (EUR 2.00 per hour, 10 % VAT, per 5 minutes)."""
    headers = add_partner(any_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    clients = {
        m: TestClient(load_app(m), raise_server_exceptions=False) for m in ("cdrs", "tariffs", "locations")
    }
    location = spec("location_example.json")
    resp = clients["locations"].put(
        "/ocpi/2.2.1/receiver/locations/BE/BEC/LOC1", json=location, headers=headers
    )
    assert resp.json()["status_code"] == 1000, resp.json()
    tariff = spec("cdr_example.json")["tariffs"][0]
    resp = clients["tariffs"].put("/ocpi/2.2.1/receiver/tariffs/BE/BEC/12", json=tariff, headers=headers)
    assert resp.json()["status_code"] == 1000, resp.json()
    return {"store": any_store, "headers": headers, "api": clients}


def stored_pricing(store, cc: str, pid: str, cdr_id: str) -> dict:
    found = store.get(objects.ref_of(cdrs.KIND, cc, pid, cdr_id))
    assert found is not None
    return found.meta["pricing"]


def test_received_cdr_that_matches_the_tariff_we_hold_is_ok(emsp) -> None:
    cdr = spec("cdr_example.json")
    resp = emsp["api"]["cdrs"].post(RX_CDRS, json=cdr, headers=emsp["headers"])
    assert resp.status_code == 201, resp.json()
    check = stored_pricing(emsp["store"], "BE", "BEC", "12345")
    assert check["status"] == "ok", check
    # 1.973 h at EUR 2.00/h billed per 5 minutes: 120 minutes -> 4.00 excl, 4.40 incl.
    assert Decimal(check["expected"]["excl_vat"]) == Decimal("4.00")
    assert Decimal(check["expected"]["incl_vat"]) == Decimal("4.40")
    assert check["tariff_ids"] == ["12"]
    assert "tariffs we hold" in check["reason"]


def test_received_cdr_with_other_totals_is_stored_and_flagged(emsp) -> None:
    cdr = spec("cdr_example.json")
    cdr["id"] = "12346"
    cdr["total_cost"] = {"excl_vat": 5.00, "incl_vat": 5.50}
    resp = emsp["api"]["cdrs"].post(RX_CDRS, json=cdr, headers=emsp["headers"])
    assert resp.status_code == 201 and resp.json()["status_code"] == 1000  # never a rejection
    check = stored_pricing(emsp["store"], "BE", "BEC", "12346")
    assert check["status"] == "mismatch"
    assert Decimal(check["difference"]["excl_vat"]) == Decimal("1.00")
    assert Decimal(check["difference"]["incl_vat"]) == Decimal("1.10")
    # The CDR is kept exactly as the CPO sent it.
    got = emsp["api"]["cdrs"].get(f"{RX_CDRS}/BE/BEC/12346", headers=emsp["headers"]).json()["data"]
    assert got["total_cost"] == {"excl_vat": 5.0, "incl_vat": 5.5}


def test_difference_within_the_tolerance_is_ok(emsp, monkeypatch) -> None:
    monkeypatch.setenv("OCPI_PRICING_TOLERANCE", "0.05")
    cdr = spec("cdr_example.json")
    cdr["id"] = "12347"
    cdr["total_cost"] = {"excl_vat": 4.04, "incl_vat": 4.44}
    emsp["api"]["cdrs"].post(RX_CDRS, json=cdr, headers=emsp["headers"])
    assert stored_pricing(emsp["store"], "BE", "BEC", "12347")["status"] == "ok"


def test_tariff_found_through_the_connector_and_priced_in_the_locations_time_zone(emsp) -> None:
    """No tariff_id in the periods: the connector (LOC1 / 3256 / 1) names tariff 11, an evening
    tariff in local time (Europe/Brussels, UTC+2 in summer): 19:00-23:00 local costs EUR 6/h."""
    tariff = {
        "country_code": "BE",
        "party_id": "BEC",
        "id": "11",
        "currency": "EUR",
        "elements": [
            {
                "price_components": [{"type": "TIME", "price": 6, "vat": 21, "step_size": 1}],
                "restrictions": {"start_time": "19:00", "end_time": "23:00"},
            },
            {"price_components": [{"type": "TIME", "price": 1, "vat": 21, "step_size": 1}]},
        ],
        "last_updated": "2015-06-01T00:00:00Z",
    }
    emsp["api"]["tariffs"].put("/ocpi/2.2.1/receiver/tariffs/BE/BEC/11", json=tariff, headers=emsp["headers"])
    cdr = spec("cdr_example.json")
    cdr.update(id="EVENING", tariffs=[])
    cdr["charging_periods"] = [
        # 17:30Z = 19:30 local: the evening element; 21:00Z = 23:00 local: the default.
        {"start_date_time": "2015-06-29T17:30:00Z", "dimensions": [{"type": "TIME", "volume": 3.5}]},
        {"start_date_time": "2015-06-29T21:00:00Z", "dimensions": [{"type": "TIME", "volume": 1}]},
    ]
    cdr.update(start_date_time="2015-06-29T17:30:00Z", end_date_time="2015-06-29T22:00:00Z")
    cdr["total_cost"] = {"excl_vat": 22.00, "incl_vat": 26.62}  # 3.5 h x 6 + 1 h x 1, +21 %
    resp = emsp["api"]["cdrs"].post(RX_CDRS, json=cdr, headers=emsp["headers"])
    assert resp.status_code == 201, resp.json()
    check = stored_pricing(emsp["store"], "BE", "BEC", "EVENING")
    assert check["status"] == "ok", check
    assert check["tariff_ids"] == ["11"]


def test_no_tariff_held_falls_back_to_the_cdrs_own_tariffs_or_is_unpriced(any_store) -> None:
    headers = add_partner(any_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("cdrs"), raise_server_exceptions=False)
    cdr = spec("cdr_example.json")
    api.post(RX_CDRS, json=cdr, headers=headers)
    check = stored_pricing(any_store, "BE", "BEC", "12345")
    assert check["status"] == "ok" and "the CDR's tariffs" in check["reason"]
    bare = dict(copy.deepcopy(cdr), id="BARE")
    bare.pop("tariffs")
    bare["charging_periods"][0].pop("tariff_id")
    api.post(RX_CDRS, json=bare, headers=headers)
    assert stored_pricing(any_store, "BE", "BEC", "BARE")["status"] == "unpriced"


def test_credit_cdrs_are_not_repriced(emsp) -> None:
    cdr = spec("cdr_example.json")
    credit = dict(cdr, id="12345-C", credit=True, credit_reference_id="12345")
    credit["total_cost"] = {"excl_vat": -4.00, "incl_vat": -4.40}
    resp = emsp["api"]["cdrs"].post(RX_CDRS, json=credit, headers=emsp["headers"])
    assert resp.status_code == 201
    assert stored_pricing(emsp["store"], "BE", "BEC", "12345-C")["status"] == "unpriced"


# ------------------------------------------------------------------ as CPO
def own_cdr(cdr_id: str) -> dict:
    cdr = spec("cdr_example.json")
    cdr.update(
        country_code="NL",
        party_id="CPO",
        id=cdr_id,
        cdr_token=dict(cdr["cdr_token"], country_code="DE", party_id="XXX"),
    )
    for t in cdr["tariffs"]:
        t.update(country_code="NL", party_id="CPO")
    for name in ("total_cost", "total_time_cost"):
        cdr.pop(name)
    return cdr


def test_own_cdr_without_costs_is_priced_from_its_tariffs(any_store) -> None:
    out = ingest.apply(any_store, events.OWN_PUT, {"module": "cdrs", "object": own_cdr("OWN1")})
    assert out.result.value == "created"
    stored = any_store.get(objects.ref_of(cdrs.KIND, "NL", "CPO", "OWN1"))
    body = as_json(stored.body)
    assert body["total_cost"] == {"excl_vat": 4, "incl_vat": 4.4}
    assert body["total_time_cost"] == {"excl_vat": 4, "incl_vat": 4.4}
    assert body["total_fixed_cost"] == {"excl_vat": 0}  # no FLAT component, and no VAT on nothing
    assert body["total_parking_cost"] == {"excl_vat": 0}
    assert stored.meta["pricing"]["status"] == "ok"
    assert "priced by us" in stored.meta["pricing"]["reason"]


def test_own_cdr_without_costs_uses_our_tariff_named_by_the_periods(any_store) -> None:
    tariff = spec("tariff_13_simple_3hour_5parking.json")  # EUR 3/h charging, 5/h parking per 5 min
    tariff.update(country_code="NL", party_id="CPO", id="T13")
    ingest.apply(any_store, events.OWN_PUT, {"module": "tariffs", "object": tariff})
    cdr = own_cdr("OWN2")
    cdr.pop("tariffs")
    cdr.update(start_date_time="2024-03-04T10:00:00Z", end_date_time="2024-03-04T13:12:00Z")
    cdr["charging_periods"] = [
        {
            "start_date_time": "2024-03-04T10:00:00Z",
            "dimensions": [{"type": "TIME", "volume": 2.5}],
            "tariff_id": "T13",
        },
        {
            "start_date_time": "2024-03-04T12:30:00Z",
            "dimensions": [{"type": "PARKING_TIME", "volume": 0.7}],
            "tariff_id": "T13",
        },
    ]
    ingest.apply(any_store, events.OWN_PUT, {"module": "cdrs", "object": cdr})
    body = as_json(any_store.get(objects.ref_of(cdrs.KIND, "NL", "CPO", "OWN2")).body)
    # mod_tariffs "Simple Tariff example EUR 3 per hour, EUR 5 per hour parking": 11.25 / 12.75.
    assert body["total_cost"] == {"excl_vat": 11.25, "incl_vat": 12.75}
    assert body["total_parking_cost"] == {"excl_vat": 3.75, "incl_vat": 4.5}
    assert [t["id"] for t in body["tariffs"]] == ["T13"]  # the tariff that applied is sealed in


def test_own_cdr_without_costs_and_without_tariff_is_refused(any_store) -> None:
    cdr = own_cdr("OWN3")
    cdr.pop("tariffs")
    with pytest.raises(InvalidParameters, match="cannot be priced"):
        ingest.apply(any_store, events.OWN_PUT, {"module": "cdrs", "object": cdr})
    assert any_store.get(objects.ref_of(cdrs.KIND, "NL", "CPO", "OWN3")) is None


def test_own_cdr_with_other_totals_is_kept_and_flagged(any_store) -> None:
    cdr = own_cdr("OWN4")
    cdr["total_cost"] = {"excl_vat": 3.50, "incl_vat": 3.85}  # e.g. a discount the back office gave
    ingest.apply(any_store, events.OWN_PUT, {"module": "cdrs", "object": cdr})
    stored = any_store.get(objects.ref_of(cdrs.KIND, "NL", "CPO", "OWN4"))
    assert as_json(stored.body)["total_cost"] == {"excl_vat": 3.5, "incl_vat": 3.85}
    assert stored.meta["pricing"]["status"] == "mismatch"
    assert Decimal(stored.meta["pricing"]["difference"]["excl_vat"]) == Decimal("-0.50")


def own_session(periods: list[dict]) -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": "S1",
        "start_date_time": "2024-03-04T10:00:00Z",
        "kwh": 10,
        "cdr_token": {
            "country_code": "DE",
            "party_id": "XXX",
            "uid": "012345678",
            "type": "RFID",
            "contract_id": "DE8ACC12E46L89",
        },
        "auth_method": "WHITELIST",
        "location_id": "LOC1",
        "evse_uid": "3256",
        "connector_id": "1",
        "currency": "EUR",
        "charging_periods": periods,
        "status": "ACTIVE",
        "last_updated": "2024-03-04T11:00:00Z",
    }


def test_own_session_without_costs_gets_them_on_put_and_patch(any_store) -> None:
    tariff = spec("tariff_8_simple_025kwh.json")  # EUR 0.25/kWh, 10 % VAT, per Wh
    tariff.update(country_code="NL", party_id="CPO", id="T8")
    ingest.apply(any_store, events.OWN_PUT, {"module": "tariffs", "object": tariff})
    first = {
        "start_date_time": "2024-03-04T10:00:00Z",
        "dimensions": [{"type": "ENERGY", "volume": 10}],
        "tariff_id": "T8",
    }
    ingest.apply(any_store, events.OWN_PUT, {"module": "sessions", "object": own_session([first])})
    ref = objects.ref_of(sessions.KIND, "NL", "CPO", "S1")
    body = as_json(sessions.assemble(any_store.get(ref)))
    assert body["total_cost"] == {"excl_vat": 2.5, "incl_vat": 2.75}
    second = {
        "start_date_time": "2024-03-04T11:00:00Z",
        "dimensions": [{"type": "ENERGY", "volume": 10}],
        "tariff_id": "T8",
    }
    patch = {
        "module": "sessions",
        "country_code": "NL",
        "party_id": "CPO",
        "id": "S1",
        "fields": {"kwh": 20, "charging_periods": [second], "last_updated": "2024-03-04T12:00:00Z"},
    }
    ingest.apply(any_store, events.OWN_PATCH, patch)
    body = as_json(sessions.assemble(any_store.get(ref)))
    assert body["total_cost"] == {"excl_vat": 5, "incl_vat": 5.5}
    assert len(body["charging_periods"]) == 2
