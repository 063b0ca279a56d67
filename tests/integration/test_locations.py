"""Locations module over HTTP (the function's FastAPI app), on the memory store and on DynamoDB
(moto): receiver interface with every official example, EVSE/connector levels, PATCH rules,
out-of-order updates, and the sender interface with pagination. Isolation between partners:
tests/integration/test_isolation_matrix.py."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from fastapi.testclient import TestClient

from shared.auth import hash_token
from shared.services import locations as svc
from shared.store.base import TokenRecord
from tests.conftest import SPEC_DIR
from tests.integration.test_credentials import load_app

EXAMPLES = SPEC_DIR / "2.2.1" / "examples"
FULL_LOCATIONS = sorted(p for p in EXAMPLES.glob("location_example*.json"))
RX = "/ocpi/2.2.1/receiver/locations"
TX = "/ocpi/2.2.1/sender/locations"


def hdr(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


def example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def add_partner(store, partner_id: str, token: str, parties: list[tuple[str, str, str]]) -> dict:
    roles = [{"role": r, "country_code": c, "party_id": p} for r, c, p in parties]
    store.put_partner({"partner_id": partner_id, "status": "REGISTERED", "roles": roles})
    store.put_token(TokenRecord(hash_token(token), partner_id, "C"))
    return hdr(token)


@pytest.fixture
def env(any_store):
    parties = {
        (json.loads(p.read_text())["country_code"], json.loads(p.read_text())["party_id"])
        for p in FULL_LOCATIONS
    }
    a = add_partner(any_store, "cpo-a", "token-a", [("CPO", c, p) for c, p in parties])
    b = add_partner(any_store, "cpo-b", "token-b", [("CPO", "DE", "BBB")])
    return {
        "store": any_store,
        "api": TestClient(load_app("locations"), raise_server_exceptions=False),
        "a": a,
        "b": b,
    }


def put(env, loc: dict, who: str = "a"):
    return env["api"].put(
        f"{RX}/{loc['country_code']}/{loc['party_id']}/{loc['id']}", json=loc, headers=env[who]
    )


def test_every_official_location_example_round_trips_through_the_receiver(env) -> None:
    assert len(FULL_LOCATIONS) >= 6
    assert put(env, json.loads(FULL_LOCATIONS[0].read_text())).status_code == 201
    for path in FULL_LOCATIONS:
        loc = json.loads(path.read_text())
        resp = put(env, loc)
        # Some examples share an id (uc2/uc3): the second of those replaces the first (200).
        assert resp.status_code in (200, 201) and resp.json()["status_code"] == 1000, (path.name, resp.json())
        got = env["api"].get(f"{RX}/{loc['country_code']}/{loc['party_id']}/{loc['id']}", headers=env["a"])
        assert got.json()["data"] == loc, path.name
        assert put(env, loc).status_code == 200  # replacing: 200, not 201


def _loc() -> dict:
    return example("location_example.json")


def _url(loc: dict, *rest: str) -> str:
    return "/".join([RX, loc["country_code"], loc["party_id"], loc["id"], *rest])


def test_evse_and_connector_put_get_and_parent_last_updated(env) -> None:
    loc = _loc()
    put(env, loc)
    evse = copy.deepcopy(loc["evses"][0])
    evse.update({"uid": "NEW-EVSE", "last_updated": "2030-01-01T00:00:00Z"})
    resp = env["api"].put(_url(loc, "NEW-EVSE"), json=evse, headers=env["a"])
    assert resp.status_code == 201, resp.json()
    got = env["api"].get(_url(loc), headers=env["a"]).json()["data"]
    assert got["evses"][-1]["uid"] == "NEW-EVSE" and got["last_updated"] == "2030-01-01T00:00:00Z"
    assert [e["uid"] for e in got["evses"][:-1]] == [e["uid"] for e in loc["evses"]]  # order kept

    conn = copy.deepcopy(evse["connectors"][0])
    conn.update({"id": "9", "last_updated": "2030-01-02T00:00:00Z"})
    assert env["api"].put(_url(loc, "NEW-EVSE", "9"), json=conn, headers=env["a"]).status_code == 201
    assert env["api"].get(_url(loc, "new-evse", "9"), headers=env["a"]).json()["data"] == conn
    got = env["api"].get(_url(loc), headers=env["a"]).json()["data"]
    assert got["last_updated"] == "2030-01-02T00:00:00Z"
    assert got["evses"][-1]["last_updated"] == "2030-01-02T00:00:00Z"
    # The spec's own "add an EVSE" example lacks required connector fields: refused with 2001.
    bad = env["api"].put(
        _url(loc, "3256"), json=example("location_put_example_add_evse.json"), headers=env["a"]
    )
    assert bad.json()["status_code"] == 2001


def test_patch_examples(env) -> None:
    loc = _loc()
    put(env, loc)
    uid = loc["evses"][0]["uid"]
    conn = loc["evses"][0]["connectors"][0]["id"]
    status = example("location_patch_example_status.json")
    assert env["api"].patch(_url(loc, uid), json=status, headers=env["a"]).json()["status_code"] == 1000
    name = example("location_patch_example_location.json")
    assert env["api"].patch(_url(loc), json=name, headers=env["a"]).json()["status_code"] == 1000
    tariff = example("location_patch_example_tariff.json")
    assert env["api"].patch(_url(loc, uid, conn), json=tariff, headers=env["a"]).json()["status_code"] == 1000
    got = env["api"].get(_url(loc), headers=env["a"]).json()["data"]
    assert got["evses"][0]["status"] == status["status"]
    assert got["name"] == name["name"]
    assert got["evses"][0]["connectors"][0]["tariff_ids"] == tariff["tariff_ids"]
    # Untouched fields stay as they were.
    assert got["address"] == loc["address"] and got["evses"][1] == loc["evses"][1]
    removed = example("location_patch_example_remove_evse.json")
    env["api"].patch(
        _url(loc, uid), json={**removed, "last_updated": "2030-01-01T00:00:00Z"}, headers=env["a"]
    )
    assert env["api"].get(_url(loc, uid), headers=env["a"]).json()["data"]["status"] == "REMOVED"


def test_patch_rules(env) -> None:
    loc = _loc()
    put(env, loc)
    uid = loc["evses"][0]["uid"]
    no_lu = env["api"].patch(_url(loc, uid), json={"status": "CHARGING"}, headers=env["a"]).json()
    assert no_lu["status_code"] == 2001 and "last_updated" in no_lu["status_message"]
    bad = (
        env["api"]
        .patch(
            _url(loc, uid),
            json={"status": "ON_FIRE", "last_updated": "2030-01-01T00:00:00Z"},
            headers=env["a"],
        )
        .json()
    )
    assert bad["status_code"] == 2001 and "status" in bad["status_message"]
    unknown = env["api"].patch(
        _url(loc, "NOPE"),
        json={"status": "CHARGING", "last_updated": "2030-01-01T00:00:00Z"},
        headers=env["a"],
    )
    assert unknown.status_code == 404 and unknown.json()["status_code"] == 2003
    ghost = dict(loc, id="GHOST")
    resp = env["api"].patch(
        _url(ghost), json={"name": "x", "last_updated": "2030-01-01T00:00:00Z"}, headers=env["a"]
    )
    assert (
        resp.status_code == 404
        and env["store"].get(svc.objects.ref_of(svc.KIND, "NL", "TNM", "GHOST")) is None
    )


def test_out_of_order_updates_never_overwrite_newer_data(env) -> None:
    loc = _loc()
    put(env, loc)
    uid = loc["evses"][0]["uid"]
    new = {"status": "CHARGING", "last_updated": "2031-01-01T00:00:00Z"}
    old = {"status": "AVAILABLE", "last_updated": "2030-01-01T00:00:00Z"}
    assert env["api"].patch(_url(loc, uid), json=new, headers=env["a"]).json()["status_code"] == 1000
    late = env["api"].patch(_url(loc, uid), json=old, headers=env["a"]).json()
    assert late["status_code"] == 1000 and "newer" in late["status_message"]
    assert env["api"].get(_url(loc, uid), headers=env["a"]).json()["data"]["status"] == "CHARGING"
    older_put = dict(loc, name="old name", last_updated="2000-01-01T00:00:00Z")
    assert "newer" in put(env, older_put).json()["status_message"]
    assert env["api"].get(_url(loc), headers=env["a"]).json()["data"]["name"] == loc["name"]


def _own(i: int, minute: int) -> dict:
    loc = _loc()
    loc.update(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": f"OWN{i:02d}",
            "last_updated": f"2024-01-01T00:{minute:02d}:00Z",
        }
    )
    return loc


def test_sender_interface_lists_and_gets_our_own_locations(env) -> None:
    for i in range(5):
        assert (
            svc.put_location(env["store"], None, "NL", "CPO", f"OWN{i:02d}", _own(i, i)).result.value
            == "created"
        )
    resp = env["api"].get(f"{TX}?limit=2&date_from=2024-01-01T00:01:00Z", headers=env["b"])
    body = resp.json()
    assert [loc["id"] for loc in body["data"]] == ["OWN01", "OWN02"]
    assert resp.headers["x-total-count"] == "4" and "date_from=" in resp.headers["link"]
    assert body["data"][0]["evses"] == _own(1, 1)["evses"]
    own = _own(3, 3)
    assert env["api"].get(f"{TX}/OWN03", headers=env["b"]).json()["data"] == own
    evse = own["evses"][0]
    assert env["api"].get(f"{TX}/own03/{evse['uid']}", headers=env["b"]).json()["data"] == evse
    conn = evse["connectors"][0]
    assert env["api"].get(f"{TX}/OWN03/{evse['uid']}/{conn['id']}", headers=env["b"]).json()["data"] == conn
    missing = env["api"].get(f"{TX}/NOPE", headers=env["b"])
    assert missing.status_code == 404 and missing.json()["status_code"] == 2003
    assert env["api"].get(f"{TX}/OWN03/NOPE", headers=env["b"]).status_code == 404


def test_own_location_must_belong_to_an_own_cpo_party(env) -> None:
    from shared.errors import InvalidParameters

    loc = _loc()
    with pytest.raises(InvalidParameters):
        svc.put_location(env["store"], None, loc["country_code"], loc["party_id"], loc["id"], loc)


def test_received_changes_are_published_on_the_bus(memory_store) -> None:
    add_partner(memory_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("locations"), raise_server_exceptions=False)
    loc = _loc()
    api.put(_url(loc), json=loc, headers=hdr("token-a"))
    api.patch(
        _url(loc, "3256"),
        json={"status": "CHARGING", "last_updated": "2031-01-01T00:00:00Z"},
        headers=hdr("token-a"),
    )
    api.patch(
        _url(loc, "3256"),
        json={"status": "AVAILABLE", "last_updated": "2001-01-01T00:00:00Z"},
        headers=hdr("token-a"),
    )  # stale: not applied, not published
    kinds = [(e["DetailType"], json.loads(e["Detail"]).get("evse_uid")) for e in memory_store.published]
    assert kinds == [("ocpi.received.put", None), ("ocpi.received.patch", "3256")]
    detail = json.loads(memory_store.published[1]["Detail"])
    assert detail["partner_id"] == "cpo-a" and detail["fields"]["status"] == "CHARGING"
    assert memory_store.published[0]["Source"] == "ocpi.endpoint"


def test_events_reach_the_bus_on_moto(dynamo_store, aws) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name="eu-west-1")
    events = boto3.client("events", region_name="eu-west-1")
    q = sqs.create_queue(QueueName="probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(
        Name="probe", EventBusName=aws["OcpiBus"], EventPattern=json.dumps({"source": ["ocpi.endpoint"]})
    )
    events.put_targets(Rule="probe", EventBusName=aws["OcpiBus"], Targets=[{"Id": "q", "Arn": arn}])
    add_partner(dynamo_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    loc = _loc()
    TestClient(load_app("locations")).put(_url(loc), json=loc, headers=hdr("token-a"))
    msgs = sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["detail-type"] for m in msgs] == ["ocpi.received.put"]


def test_stale_put_is_not_announced(memory_store) -> None:
    add_partner(memory_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("locations"), raise_server_exceptions=False)
    loc = _loc()
    api.put(_url(loc), json=loc, headers=hdr("token-a"))
    old = dict(loc, name="old", last_updated="2000-01-01T00:00:00Z")
    assert "newer" in api.put(_url(loc), json=old, headers=hdr("token-a")).json()["status_message"]
    assert [e["DetailType"] for e in memory_store.published] == ["ocpi.received.put"]
