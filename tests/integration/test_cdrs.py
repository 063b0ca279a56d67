"""CDRs module over HTTP (the function's FastAPI app), on the memory store and DynamoDB (moto): the
official example through the receiver (POST -> 201 + Location -> GET), idempotent duplicate POSTs,
Credit CDRs, the 405 verbs, the sender list, durability when a step after
the write fails, and our own CDRs from the back office."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from shared import events, jsonutil
from shared.errors import InvalidParameters
from shared.services import cdrs, ingest, objects
from shared.store.base import ListQuery
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import EXAMPLES, add_partner

RX = "/ocpi/2.2.1/receiver/cdrs"
TX = "/ocpi/2.2.1/sender/cdrs"
BASE = "https://ocpi.test"


def example() -> dict:
    return json.loads((EXAMPLES / "cdr_example.json").read_text())


def as_json(obj):
    """A stored body as a JSON client sees it (DynamoDB hands numbers back as Decimals)."""
    return json.loads(jsonutil.dumps(obj))


def path_of(resp) -> str:
    location = resp.headers["location"]
    assert location.startswith(BASE + RX + "/")
    return location.removeprefix(BASE)


def stored_count(store, collection: str = "rx") -> int:
    return store.list(ListQuery(collection, "cdrs")).total


@pytest.fixture
def env(any_store):
    cdr = example()
    return {
        "store": any_store,
        "api": TestClient(load_app("cdrs"), raise_server_exceptions=False),
        "a": add_partner(any_store, "cpo-a", "token-a", [("CPO", cdr["country_code"], cdr["party_id"])]),
        "b": add_partner(any_store, "cpo-b", "token-b", [("CPO", "DE", "BBB")]),
        "m": add_partner(any_store, "emsp-m", "token-m", [("EMSP", cdr["country_code"], cdr["party_id"])]),
        "x": add_partner(any_store, "emsp-x", "token-x", [("EMSP", "DE", "XXX")]),
        "y": add_partner(any_store, "emsp-y", "token-y", [("EMSP", "FR", "YYY")]),
    }


# ------------------------------------------------------------------ receiver
def test_official_example_round_trips_post_location_get(env) -> None:
    api, a = env["api"], env["a"]
    cdr = example()
    resp = api.post(RX, json=cdr, headers=a)
    assert resp.status_code == 201 and resp.json()["status_code"] == 1000, resp.json()
    where = path_of(resp)
    assert where == f"{RX}/BE/BEC/12345"
    got = api.get(where, headers=a)
    assert got.status_code == 200 and got.json()["data"] == cdr


def test_duplicate_post_is_idempotent_and_different_content_is_refused(env) -> None:
    api, a, store = env["api"], env["a"], env["store"]
    cdr = example()
    first = api.post(RX, json=cdr, headers=a)
    # The same CDR again (a retry after a lost answer), even with other number formatting and key
    # order: the same answer, no second CDR.
    same = json.loads(json.dumps(cdr))
    same["total_cost"] = {"incl_vat": 4.4, "excl_vat": 4}
    again = api.post(RX, content=json.dumps(dict(reversed(list(same.items())))), headers=a)
    assert (again.status_code, again.json()["status_code"]) == (first.status_code, 1000)
    assert again.headers["location"] == first.headers["location"]
    assert "status_message" not in again.json() and "data" not in again.json()
    assert stored_count(store) == 1
    # Different content under the same id: 2001, the stored CDR untouched.
    for change in ({"total_cost": {"excl_vat": 5.0, "incl_vat": 5.5}}, {"remark": "changed"}):
        resp = api.post(RX, json={**cdr, **change}, headers=a)
        assert resp.status_code == 200 and resp.json()["status_code"] == 2001
        assert resp.json()["status_message"] == "CDR 12345 already exists with different content"
        assert "location" not in resp.headers
    assert api.get(path_of(first), headers=a).json()["data"] == cdr
    assert stored_count(store) == 1
    # The id is a CiString: another case is the same CDR.
    lower = dict(cdr, id="abc-1")
    assert api.post(RX, json=lower, headers=a).status_code == 201
    assert api.post(RX, json=dict(lower, id="ABC-1", remark="x"), headers=a).json()["status_code"] == 2001
    assert api.get(f"{RX}/be/bec/ABC-1", headers=a).json()["data"] == lower


def test_credit_cdr_is_accepted_and_linked_to_the_cdr_it_credits(env) -> None:
    api, a, store = env["api"], env["a"], env["store"]
    cdr = example()
    api.post(RX, json=cdr, headers=a)
    credit = copy.deepcopy(cdr)
    negative = {k: -v for k, v in cdr["total_cost"].items()}
    credit.update(
        {
            "id": "12345-C",
            "credit": True,
            "credit_reference_id": "12345",
            "total_cost": negative,
            "last_updated": "2015-07-01T10:00:00Z",
        }
    )
    resp = api.post(RX, json=credit, headers=a)
    assert resp.status_code == 201 and resp.json()["status_code"] == 1000
    assert api.get(path_of(resp), headers=a).json()["data"] == credit
    # The new CDR that replaces the credited one (credit fields omitted).
    fixed = dict(
        cdr, id="12345-2", total_cost={"excl_vat": 3.0, "incl_vat": 3.3}, last_updated="2015-07-01T10:01:00Z"
    )
    assert api.post(RX, json=fixed, headers=a).status_code == 201
    credits = cdrs.credits_of(store, "be", "bec", "12345")
    assert [as_json(c.body) for c in credits] == [credit]
    assert cdrs.credits_of(store, "BE", "BEC", "12345-2") == []
    # A credit CDR must say which CDR it credits.
    no_ref = {k: v for k, v in credit.items() if k != "credit_reference_id"} | {"id": "12345-D"}
    bad = api.post(RX, json=no_ref, headers=a).json()
    assert bad["status_code"] == 2001 and "credit_reference_id" in bad["status_message"]
    # A credit may arrive before (or without) the CDR it credits: still stored and linked.
    early = dict(credit, id="999-C", credit_reference_id="999")
    assert api.post(RX, json=early, headers=a).status_code == 201
    assert [c.body["id"] for c in cdrs.credits_of(store, "BE", "BEC", "999")] == ["999-C"]


def test_bad_input(env) -> None:
    api, a = env["api"], env["a"]
    cdr = example()
    del cdr["total_cost"]
    resp = api.post(RX, json=cdr, headers=a).json()
    assert resp["status_code"] == 2001 and "total_cost" in resp["status_message"]
    assert api.post(RX, content=b"{not json", headers=a).status_code == 400
    assert api.post(RX, json=dict(example(), charging_periods=[]), headers=a).json()["status_code"] == 2001
    assert stored_count(env["store"]) == 0


def test_a_cdr_is_never_replaced_changed_or_deleted(env) -> None:
    """mod_cdrs: no PUT, PATCH or DELETE on the receiver. (Isolation between partners, both
    interfaces: tests/integration/test_isolation_matrix.py.)"""
    api = env["api"]
    cdr = example()
    where = path_of(api.post(RX, json=cdr, headers=env["a"]))
    for method in ("put", "patch", "delete"):
        kwargs = {"json": dict(cdr, remark="x")} if method != "delete" else {}
        assert getattr(api, method)(where, headers=env["a"], **kwargs).status_code == 405
    assert api.get(where, headers=env["a"]).json()["data"] == cdr


# ------------------------------------------------------------------ our own CDRs (sender)
def own(i: int, emsp: tuple[str, str], minute: int) -> dict:
    cdr = example()
    cdr.update(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": f"OWN{i:02d}",
            "cdr_token": dict(cdr["cdr_token"], country_code=emsp[0], party_id=emsp[1]),
            "last_updated": f"2024-01-01T00:{minute:02d}:00Z",
        }
    )
    return cdr


def test_sender_lists_only_the_callers_cdrs(env) -> None:
    api, store = env["api"], env["store"]
    mine = [own(i, ("DE", "XXX"), i) for i in range(3)]
    theirs = [own(10, ("FR", "YYY"), 30)]
    for cdr in mine + theirs:
        assert cdrs.create_own(store, cdr).result.value == "created"
    resp = api.get(f"{TX}?limit=2", headers=env["x"])  # date_from is optional for CDRs
    assert resp.json()["data"] == mine[:2] and resp.headers["x-total-count"] == "3"
    nxt = resp.headers["link"].split(">")[0].removeprefix("<" + BASE)
    assert api.get(nxt, headers=env["x"]).json()["data"] == mine[2:]
    since = api.get(f"{TX}?date_from=2024-01-01T00:01:00Z", headers=env["x"]).json()["data"]
    assert since == mine[1:]
    assert api.get(TX, headers=env["y"]).json()["data"] == theirs
    assert (
        api.get(TX, headers={**env["x"], "OCPI-from-country-code": "FR", "OCPI-from-party-id": "YYY"}).json()[
            "status_code"
        ]
        == 2001
    )
    for who in ("a", "b"):  # CPO partners: no eMSP party, no CDRs
        assert api.get(TX, headers=env[who]).json()["data"] == []
    # No GET by id on the sender interface (only the list).
    assert api.get(f"{TX}/OWN00", headers=env["x"]).status_code == 404


def test_own_cdrs_from_the_back_office(memory_store) -> None:
    store = memory_store
    cdr = own(1, ("DE", "XXX"), 1)
    put = {"module": "cdrs", "object": cdr}
    assert ingest.apply(store, events.OWN_PUT, put).result.value == "created"
    # SQS delivers at least once: the same CDR again is no change, nothing written or announced.
    assert ingest.apply(store, events.OWN_PUT, copy.deepcopy(put)).result.value == "stale"
    assert [json.loads(e["Detail"])["action"] for e in store.published] == ["put"]
    changed = {"module": "cdrs", "object": dict(cdr, remark="changed")}
    with pytest.raises(InvalidParameters, match="already exists with different content"):
        ingest.apply(store, events.OWN_PUT, changed)
    assert store.get(objects.ref_of(cdrs.KIND, "NL", "CPO", "OWN01")).body == cdr
    ids = {"module": "cdrs", "country_code": "NL", "party_id": "CPO", "id": "OWN01"}
    with pytest.raises(InvalidParameters, match="Credit CDR"):
        ingest.apply(
            store,
            events.OWN_PATCH,
            {**ids, "fields": {"remark": "x", "last_updated": "2030-01-01T00:00:00Z"}},
        )
    with pytest.raises(InvalidParameters, match="Credit CDR"):
        ingest.apply(store, events.OWN_DELETE, ids)
    with pytest.raises(InvalidParameters):  # not our party
        ingest.apply(store, events.OWN_PUT, {"module": "cdrs", "object": example()})


def test_received_cdr_is_published(memory_store) -> None:
    cdr = example()
    a = add_partner(memory_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("cdrs"), raise_server_exceptions=False)
    api.post(RX, json=cdr, headers=a)
    api.post(RX, json=dict(cdr, remark="other"), headers=a)  # refused: no event
    published = [(e["DetailType"], json.loads(e["Detail"])) for e in memory_store.published]
    assert [t for t, _ in published] == ["ocpi.received.put"]
    detail = published[0][1]
    assert detail["module"] == "cdrs" and detail["object"] == cdr and detail["partner_id"] == "cpo-a"
    assert (detail["country_code"], detail["party_id"], detail["id"]) == ("BE", "BEC", "12345")


# ------------------------------------------------------------------ durability
def test_a_failing_publish_after_the_write_loses_nothing_and_a_retry_never_duplicates(
    env, monkeypatch
) -> None:
    api, a, store = env["api"], env["a"], env["store"]
    cdr = example()

    def broken(*args, **kwargs):
        raise RuntimeError("EventBridge is down")

    broken.cache_clear = lambda: None  # stands in for the lru_cache'd events._client

    # 1. The publish step itself blows up after the write: the POST fails (500 + 3000) ...
    monkeypatch.setattr(events, "publish", broken)
    failed = api.post(RX, json=cdr, headers=a)
    assert failed.status_code == 500 and failed.json()["status_code"] == 3000
    # ... but the CDR is stored, and the retry answers success without a second CDR,
    # announcing the CDR this time.
    assert as_json(store.get(objects.ref_of(cdrs.KIND, "BE", "BEC", "12345")).body) == cdr
    sent: list[dict] = []
    monkeypatch.setattr(
        events, "publish", lambda dt, detail, source=events.SOURCE_ENDPOINT: sent.append(detail) or True
    )
    retry = api.post(RX, json=cdr, headers=a)
    assert retry.status_code == 201 and path_of(retry) == f"{RX}/BE/BEC/12345"
    assert stored_count(store) == 1 and [d["id"] for d in sent] == ["12345"]

    # 2. EventBridge itself fails (publish logs and reports False): 201, stored, retry idempotent.
    monkeypatch.undo()
    events.set_sink(None)
    monkeypatch.setattr(events, "_client", broken)
    second = dict(cdr, id="67890")
    first = api.post(RX, json=second, headers=a)
    assert first.status_code == 201
    assert api.post(RX, json=second, headers=a).status_code == 201
    assert stored_count(store) == 2
    assert api.get(path_of(first), headers=a).json()["data"] == second

    # 3. The store wrote but the answer never came back (a lost response, a crash before replying):
    # the caller's retry finds the identical CDR and gets the same success.
    real_create = store.create

    def write_then_die(*args, **kwargs):
        real_create(*args, **kwargs)
        raise ConnectionError("connection reset after the write")

    monkeypatch.setattr(store, "create", write_then_die)
    third = dict(cdr, id="24680")
    assert api.post(RX, json=third, headers=a).status_code == 500
    monkeypatch.setattr(store, "create", real_create)
    assert api.post(RX, json=third, headers=a).status_code == 201
    assert stored_count(store) == 3
    # Nothing in the module deletes a CDR: no delete route, and the service has no delete.
    assert not any(name.startswith("delete") for name in dir(cdrs))
