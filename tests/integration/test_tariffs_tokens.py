"""Tariffs and tokens over HTTP (their functions' apps) on the memory store and DynamoDB (moto):
official examples through the receivers, PATCH and out-of-order rules, `?type=`, sender lists, and
real-time authorization of our own tokens. Isolation between partners:
tests/integration/test_isolation_matrix.py."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from shared.services import objects, tariffs, tokens
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import EXAMPLES, add_partner

TARIFFS = sorted(p for p in EXAMPLES.glob("tariff*.json") if "last_updated" in json.loads(p.read_text()))
TOKENS = [
    EXAMPLES / n
    for n in ("token_example_1_app_user.json", "token_example_2_full_rfid.json", "token_put_example.json")
]


def ex(path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def env(any_store):
    cpos = {(ex(p)["country_code"], ex(p)["party_id"]) for p in TARIFFS}
    emsps = {(ex(p)["country_code"], ex(p)["party_id"]) for p in TOKENS}
    a = add_partner(
        any_store, "a", "token-a", [("CPO", c, p) for c, p in cpos] + [("EMSP", c, p) for c, p in emsps]
    )
    b = add_partner(any_store, "b", "token-b", [("CPO", "DE", "BBB"), ("EMSP", "DE", "BBB")])
    add_partner(any_store, "e", "token-e", [("EMSP", "FR", "EEE")])
    return {
        "store": any_store,
        "tariffs": TestClient(load_app("tariffs"), raise_server_exceptions=False),
        "tokens": TestClient(load_app("tokens"), raise_server_exceptions=False),
        "a": a,
        "b": b,
    }


def turl(t: dict) -> str:
    return f"/ocpi/2.2.1/receiver/tariffs/{t['country_code']}/{t['party_id']}/{t['id']}"


def kurl(t: dict, typ: str | None = None) -> str:
    url = f"/ocpi/2.2.1/receiver/tokens/{t['country_code']}/{t['party_id']}/{t['uid']}"
    return url + (f"?type={typ}" if typ else "")


def test_every_tariff_example_round_trips(env) -> None:
    assert len(TARIFFS) >= 15
    for i, path in enumerate(TARIFFS):
        t = dict(ex(path), id=f"EX{i}")  # several examples share an id; keep each on its own
        resp = env["tariffs"].put(turl(t), json=t, headers=env["a"])
        assert resp.status_code in (200, 201) and resp.json()["status_code"] == 1000, (path.name, resp.json())
        assert env["tariffs"].get(turl(t), headers=env["a"]).json()["data"] == t, path.name


def test_tariff_put_example_without_last_updated_is_refused(env) -> None:
    t = ex(EXAMPLES / "tariff_put_example.json")  # the spec's example lacks last_updated
    resp = env["tariffs"].put(turl(t), json=t, headers=env["a"])
    assert resp.json()["status_code"] == 2001 and "last_updated" in resp.json()["status_message"]


def test_tariff_delete(env) -> None:
    t = ex(TARIFFS[0])
    env["tariffs"].put(turl(t), json=t, headers=env["a"])
    assert env["tariffs"].delete(turl(t), headers=env["a"]).json()["status_code"] == 1000
    gone = env["tariffs"].get(turl(t), headers=env["a"])
    assert gone.status_code == 404
    assert env["tariffs"].delete(turl(t), headers=env["a"]).status_code == 404
    other = dict(t, id="OTHER")
    assert env["tariffs"].put(turl(t), json=other, headers=env["a"]).json()["status_code"] == 2001


def test_tariff_out_of_order_put(env) -> None:
    t = ex(TARIFFS[0])
    env["tariffs"].put(turl(t), json=dict(t, last_updated="2030-01-01T00:00:00Z"), headers=env["a"])
    late = (
        env["tariffs"]
        .put(turl(t), json=dict(t, currency="USD", last_updated="2029-01-01T00:00:00Z"), headers=env["a"])
        .json()
    )
    assert late["status_code"] == 1000 and "newer" in late["status_message"]
    assert env["tariffs"].get(turl(t), headers=env["a"]).json()["data"]["currency"] == t["currency"]


def test_every_token_example_round_trips_with_type(env) -> None:
    for path in TOKENS:
        t = ex(path)
        typ = None if t["type"] == "RFID" else t["type"]
        resp = env["tokens"].put(kurl(t, typ), json=t, headers=env["a"])
        assert resp.status_code == 201 and resp.json()["status_code"] == 1000, (path.name, resp.json())
        assert env["tokens"].get(kurl(t, typ), headers=env["a"]).json()["data"] == t
    app_user = ex(TOKENS[0])
    # The default type is RFID: without ?type= the APP_USER token is not found.
    assert env["tokens"].get(kurl(app_user), headers=env["a"]).status_code == 404
    assert env["tokens"].get(kurl(app_user, "BOGUS"), headers=env["a"]).json()["status_code"] == 2001
    # Type in the body must match the URL's.
    assert env["tokens"].put(kurl(app_user), json=app_user, headers=env["a"]).json()["status_code"] == 2001


def test_token_patch_example_and_rules(env) -> None:
    t = ex(EXAMPLES / "token_put_example.json")
    env["tokens"].put(kurl(t), json=t, headers=env["a"])
    patch = ex(EXAMPLES / "token_patch_example.json")
    assert env["tokens"].patch(kurl(t), json=patch, headers=env["a"]).json()["status_code"] == 1000
    got = env["tokens"].get(kurl(t), headers=env["a"]).json()["data"]
    assert got == {**t, **patch}
    unknown = dict(t, uid="NOPE")
    resp = env["tokens"].patch(kurl(unknown), json=patch, headers=env["a"])
    assert resp.status_code == 404 and resp.json()["status_code"] == 2004
    assert env["tokens"].patch(kurl(t), json={"valid": False}, headers=env["a"]).json()["status_code"] == 2001


def _own_token(uid: str = "OWN1", **extra) -> dict:
    t = ex(EXAMPLES / "token_put_example.json")
    t.update({"country_code": "NL", "party_id": "MSP", "uid": uid, **extra})
    return t


def test_sender_lists_only_our_own_tokens_and_tariffs(env) -> None:
    env["tokens"].put(kurl(ex(TOKENS[1])), json=ex(TOKENS[1]), headers=env["a"])  # received: not listed
    tokens.put_own_with_policy(env["store"], _own_token("OWN1"))
    tokens.put_own_with_policy(env["store"], _own_token("OWN2", last_updated="2030-01-01T00:00:00Z"))
    resp = env["tokens"].get("/ocpi/2.2.1/sender/tokens?limit=1", headers=env["b"])
    assert [t["uid"] for t in resp.json()["data"]] == ["OWN1"] and resp.headers["x-total-count"] == "2"
    own_tariff = dict(ex(TARIFFS[0]), country_code="NL", party_id="CPO")
    objects.put_own(env["store"], tariffs.KIND, own_tariff)
    assert env["tariffs"].get("/ocpi/2.2.1/sender/tariffs", headers=env["b"]).json()["data"] == [own_tariff]


AUTH = "/ocpi/2.2.1/sender/tokens/{uid}/authorize"


def test_real_time_authorization(env) -> None:
    store = env["store"]
    tokens.put_own_with_policy(store, _own_token("OK"))
    tokens.put_own_with_policy(store, _own_token("BLOCKED", valid=False))
    tokens.put_own_with_policy(store, _own_token("POOR"), {"no_credit": True})
    tokens.put_own_with_policy(store, _own_token("OLD"), {"valid_until": "2020-01-01T00:00:00Z"})
    tokens.put_own_with_policy(store, _own_token("HOME"), {"allowed_location_ids": ["LOC1"]})
    api = env["tokens"]

    def auth(uid: str, body=None, query: str = ""):
        return api.post(AUTH.format(uid=uid) + query, json=body, headers=env["b"])

    ok = auth("OK", {"location_id": "LOC9", "evse_uids": ["E1"]}).json()
    assert ok["data"]["allowed"] == "ALLOWED" and ok["data"]["location"] == {
        "location_id": "LOC9",
        "evse_uids": ["E1"],
    }
    assert ok["data"]["token"]["uid"] == "OK" and len(ok["data"]["authorization_reference"]) <= 36
    assert auth("OK").json()["data"]["allowed"] == "ALLOWED"  # no body at all
    assert auth("BLOCKED").json()["data"]["allowed"] == "BLOCKED"
    assert auth("POOR").json()["data"]["allowed"] == "NO_CREDIT"
    assert auth("OLD").json()["data"]["allowed"] == "EXPIRED"
    assert auth("HOME").json()["status_code"] == 2002
    assert auth("HOME", {"location_id": "LOC2"}).json()["data"]["allowed"] == "NOT_ALLOWED"
    assert auth("HOME", {"location_id": "loc1"}).json()["data"]["allowed"] == "ALLOWED"
    unknown = auth("NOPE")
    assert (
        unknown.status_code == 404 and unknown.json()["status_code"] == 2004 and "data" not in unknown.json()
    )
    assert auth("OK", query="?type=APP_USER").status_code == 404  # same uid, other type: unknown
    assert auth("OK", {"location_id": 5}).json()["status_code"] == 2001
    # Each answer's reference is stored for sessions and CDRs to carry.
    ref = ok["data"]["authorization_reference"]
    from shared.store.base import ObjectRef

    assert store.get(ObjectRef("authorizations", "NL", "MSP", ref)).body["token_uid"] == "OK"


def test_our_tokens_are_shared_with_cpo_partners_only(env) -> None:
    from tests.integration.test_locations import hdr

    tokens.put_own_with_policy(env["store"], _own_token("OWN1"))
    emsp_only = hdr("token-e")
    listed = env["tokens"].get("/ocpi/2.2.1/sender/tokens", headers=emsp_only)
    assert listed.status_code == 404 and "data" not in listed.json()
    assert env["tokens"].post(AUTH.format(uid="OWN1"), headers=emsp_only).status_code == 404
    assert env["tokens"].get("/ocpi/2.2.1/sender/tokens", headers=env["b"]).json()["data"][0]["uid"] == "OWN1"
