"""Three local stacks over real HTTP on loopback, three OCPI versions: a CPO that offers 2.1.1,
2.2.1 and 2.3.0, an eMSP that speaks only 2.1.1 and one that speaks only 2.3.0. Each eMSP completes
the credentials handshake with the CPO (the highest common version is negotiated: 2.1.1 and
2.3.0), then locations and tariffs (CPO -> eMSP), tokens (eMSP -> CPO) and CDRs (CPO -> eMSP) are
pushed through the push pipeline in each partner's own version, and each side reads back what the
other sent, in its own version (docs/versions-2.1.1.md, docs/versions-2.3.0.md for the mappings)."""

from __future__ import annotations

import base64
import copy
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import SPEC_DIR
from tests.e2e.stacks import CPO_PARTIES, LocalStack, start_all, wait_for

pytestmark = pytest.mark.e2e
EX = SPEC_DIR / "2.2.1" / "examples"
FAST = {"OCPI_PUSH_TIMEOUT": "3", "OCPI_PUSH_RETRY_CAP": "5"}
EMSP_211 = [
    {"country_code": "DE", "party_id": "AAA", "role": "EMSP", "business_details": {"name": "Old eMSP"}}
]
EMSP_230 = [
    {"country_code": "DE", "party_id": "BBB", "role": "EMSP", "business_details": {"name": "New eMSP"}}
]


def raw(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


def b64(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


def example(name: str, **changes: Any) -> dict[str, Any]:
    obj = json.loads((EX / name).read_text())
    obj.update(changes)
    return obj


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("versions")
    cpo = LocalStack("v-cpo", CPO_PARTIES, tmp, extra_env={"OCPI_VERSIONS": "2.1.1,2.2.1,2.3.0", **FAST})
    old = LocalStack("v-emsp211", EMSP_211, tmp, extra_env={"OCPI_VERSIONS": "2.1.1", **FAST})
    new = LocalStack("v-emsp230", EMSP_230, tmp, extra_env={"OCPI_VERSIONS": "2.3.0", **FAST})
    try:
        start_all(cpo, old, new)
        out: dict[str, Any] = {"cpo": cpo, "old": old, "new": new, "http": httpx.Client(timeout=10)}
        for name, stack in (("old", old), ("new", new)):
            invite = cpo.admin_json("invite", "--name", name)
            at_emsp = stack.admin_json(
                "register", "--versions-url", invite["versions_url"], f"--token={invite['token']}"
            )
            out[f"{name}_at_emsp"] = at_emsp  # the CPO as the eMSP knows it
            out[f"{name}_at_cpo"] = next(
                p for p in cpo.admin_json("partners") if p["partner_id"] == invite["partner_id"]
            )
            # the CPO's token at the eMSP (reads the eMSP's receiver), the eMSP's token at the CPO
            out[f"cpo_token_{name}"] = cpo.partner_secrets(invite["partner_id"])["outbound_token"]
            out[f"{name}_token"] = stack.partner_secrets(at_emsp["partner_id"])["outbound_token"]
        yield out
    finally:
        if "out" in locals():
            out["http"].close()
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(LocalStack.stop, (cpo, old, new))) == [0, 0, 0]


def get(trio, stack: LocalStack, path: str, headers: dict[str, str]) -> dict[str, Any] | None:
    resp = trio["http"].get(stack.base + path, headers=headers)
    return (
        resp.json().get("data")
        if resp.status_code == 200 and resp.json().get("status_code") == 1000
        else None
    )


def test_the_highest_common_version_is_negotiated(trio) -> None:
    assert trio["old_at_emsp"]["version"] == "2.1.1" and trio["old_at_cpo"]["version"] == "2.1.1"
    assert trio["new_at_emsp"]["version"] == "2.3.0" and trio["new_at_cpo"]["version"] == "2.3.0"
    # The 2.1.1 partner's single party became one role on our side, and ours one on its side.
    assert [(r["role"], r["country_code"], r["party_id"]) for r in trio["old_at_cpo"]["roles"]] == [
        ("EMSP", "DE", "AAA")
    ]
    assert [(r["role"], r["party_id"]) for r in trio["old_at_emsp"]["roles"]] == [("CPO", "CPO")]


def test_locations_and_tariffs_reach_each_emsp_in_its_version(trio) -> None:
    cpo = trio["cpo"]
    loc = example("location_example.json", country_code="NL", party_id="CPO", id="VLOC1")
    tariff = example("tariff_1_simple_2hour.json", country_code="NL", party_id="CPO", id="13")
    cpo.put_events(
        "ocpi.own.put", [{"module": "tariffs", "object": tariff}, {"module": "locations", "object": loc}]
    )
    old_path = "/ocpi/2.1.1/receiver/locations/NL/CPO/VLOC1"
    new_path = "/ocpi/2.3.0/receiver/locations/NL/CPO/VLOC1"
    assert wait_for(lambda: get(trio, trio["old"], old_path, raw(trio["cpo_token_old"])), timeout=30)
    assert wait_for(lambda: get(trio, trio["new"], new_path, b64(trio["cpo_token_new"])), timeout=30)
    at_old = get(trio, trio["old"], old_path, raw(trio["cpo_token_old"]))
    at_new = get(trio, trio["new"], new_path, b64(trio["cpo_token_new"]))
    # 2.1.1 shape at the old eMSP: no publish, one tariff_id per connector, voltage/amperage.
    assert "publish" not in at_old and "country_code" not in at_old
    conn_old = at_old["evses"][0]["connectors"][0]
    assert conn_old["tariff_id"] == loc["evses"][0]["connectors"][0]["tariff_ids"][0]
    assert conn_old["voltage"] == loc["evses"][0]["connectors"][0]["max_voltage"]
    # 2.3.0 at the new eMSP: the same location as the CPO's own, field for field.
    mine = get(trio, cpo, "/ocpi/2.2.1/sender/locations/VLOC1", b64(trio["new_token"]))
    assert mine is not None
    for key in ("id", "name", "address", "city", "coordinates", "time_zone", "last_updated"):
        assert at_new[key] == mine[key], key
    assert [e["uid"] for e in at_new["evses"]] == [e["uid"] for e in mine["evses"]]
    # The tariff too: 2.3.0 says whether prices include taxes; 2.1.1 has neither owner nor VAT field.
    tariff_new = get(trio, trio["new"], "/ocpi/2.3.0/receiver/tariffs/NL/CPO/13", b64(trio["cpo_token_new"]))
    tariff_old = get(trio, trio["old"], "/ocpi/2.1.1/receiver/tariffs/NL/CPO/13", raw(trio["cpo_token_old"]))
    assert wait_for(
        lambda: (
            tariff_new
            or get(trio, trio["new"], "/ocpi/2.3.0/receiver/tariffs/NL/CPO/13", b64(trio["cpo_token_new"]))
        ),
        timeout=10,
    )
    assert tariff_old is not None and "country_code" not in tariff_old
    assert tariff_old["elements"][0]["price_components"][0]["price"] == 2


def test_tokens_of_each_emsp_reach_the_cpo(trio) -> None:
    cpo = trio["cpo"]
    for name, party in (("old", "AAA"), ("new", "BBB")):
        token = example(
            "token_example_2_full_rfid.json", country_code="DE", party_id=party, uid=f"UID-{party}"
        )
        trio[name].put_events("ocpi.own.put", [{"module": "tokens", "object": token}])
    for name, party, version in (("old", "AAA", "2.1.1"), ("new", "BBB", "2.3.0")):
        path = f"/ocpi/2.2.1/receiver/tokens/DE/{party}/UID-{party}"
        headers = b64(trio[f"{name}_token"])
        assert wait_for(lambda p=path, h=headers: get(trio, cpo, p, h), timeout=30), (name, version)
        held = get(trio, cpo, path, headers)
        assert held["uid"] == f"UID-{party}" and held["valid"] is True
        assert held["contract_id"] == example("token_example_2_full_rfid.json")["contract_id"]


def test_cdrs_reach_each_emsp_in_its_version(trio) -> None:
    cpo = trio["cpo"]
    details = []
    for party in ("AAA", "BBB"):
        cdr = example("cdr_example.json", country_code="NL", party_id="CPO", id=f"CDR-{party}")
        cdr["cdr_token"] = dict(cdr["cdr_token"], country_code="DE", party_id=party)
        cdr["cdr_location"] = dict(cdr["cdr_location"], id="VLOC1")
        for t in cdr["tariffs"]:
            t.update(country_code="NL", party_id="CPO")
        details.append({"module": "cdrs", "object": copy.deepcopy(cdr)})
    cpo.put_events("ocpi.own.put", details)
    old_path = "/ocpi/2.1.1/receiver/cdrs/NL/CPO/CDR-AAA"
    new_path = "/ocpi/2.3.0/receiver/cdrs/NL/CPO/CDR-BBB"
    assert wait_for(lambda: get(trio, trio["old"], old_path, raw(trio["cpo_token_old"])), timeout=30)
    assert wait_for(lambda: get(trio, trio["new"], new_path, b64(trio["cpo_token_new"])), timeout=30)
    at_old = get(trio, trio["old"], old_path, raw(trio["cpo_token_old"]))
    at_new = get(trio, trio["new"], new_path, b64(trio["cpo_token_new"]))
    # 2.1.1: stop_date_time, total_cost as a plain number, auth_id, an embedded location.
    assert at_old["stop_date_time"] == "2015-06-29T23:37:32Z"
    assert at_old["total_cost"] == 4 and at_old["auth_id"] == details[0]["object"]["cdr_token"]["contract_id"]
    assert at_old["location"]["id"] == "VLOC1"
    # 2.3.0: end_date_time, a Price with its tax detail.
    assert at_new["end_date_time"] == "2015-06-29T23:37:32Z"
    assert at_new["total_cost"]["before_taxes"] == 4
