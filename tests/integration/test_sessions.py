"""Sessions module over HTTP (the function's FastAPI app), on the memory store and DynamoDB (moto):
every official session example through the receiver, PATCH appending charging periods, out-of-order
updates, the sender list (date_from required, pagination, only the caller's eMSP party), charging
preferences, events, and our own sessions from the back office (ingest). Isolation between partners
(both interfaces): tests/integration/test_isolation_matrix.py."""

from __future__ import annotations

import copy
import json

import pytest
from fastapi.testclient import TestClient

from shared import events
from shared.errors import InvalidParameters, NotFound
from shared.services import ingest, locations, sessions
from shared.store.meter import METER
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import EXAMPLES, add_partner

SESSIONS = sorted(EXAMPLES.glob("session_example_*.json"))
RX = "/ocpi/2.2.1/receiver/sessions"
TX = "/ocpi/2.2.1/sender/sessions"
SINCE = "?date_from=2000-01-01T00:00:00Z"


def ex(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def url(s: dict, cc: str | None = None, pid: str | None = None) -> str:
    return f"{RX}/{cc or s['country_code']}/{pid or s['party_id']}/{s['id']}"


@pytest.fixture
def env(any_store):
    cpos = {
        (json.loads(p.read_text())["country_code"], json.loads(p.read_text())["party_id"]) for p in SESSIONS
    }
    return {
        "store": any_store,
        "api": TestClient(load_app("sessions"), raise_server_exceptions=False),
        # CPO partners pushing into us (we are eMSP).
        "a": add_partner(any_store, "cpo-a", "token-a", [("CPO", c, p) for c, p in cpos]),
        "b": add_partner(any_store, "cpo-b", "token-b", [("CPO", "DE", "BBB")]),
        # An eMSP partner holding A's party ids, but not as CPO.
        "m": add_partner(any_store, "emsp-m", "token-m", [("EMSP", c, p) for c, p in cpos]),
        # eMSP partners reading our own sessions (we are CPO): one party each, and one with two.
        "x": add_partner(any_store, "emsp-x", "token-x", [("EMSP", "DE", "XXX")]),
        "y": add_partner(any_store, "emsp-y", "token-y", [("EMSP", "FR", "YYY")]),
        "xy": add_partner(any_store, "emsp-xy", "token-xy", [("EMSP", "DE", "XX2"), ("EMSP", "FR", "YY2")]),
    }


# ------------------------------------------------------------------ receiver
def test_every_official_session_example_round_trips_through_the_receiver(env) -> None:
    assert len(SESSIONS) >= 2
    for path in SESSIONS:
        s = json.loads(path.read_text())
        resp = env["api"].put(url(s), json=s, headers=env["a"])
        assert resp.status_code == 201 and resp.json()["status_code"] == 1000, (path.name, resp.json())
        got = env["api"].get(url(s), headers=env["a"])
        assert got.status_code == 200 and got.json()["data"] == s, path.name
        assert env["api"].put(url(s), json=s, headers=env["a"]).status_code == 200  # replaced: 200


def test_patch_examples_append_charging_periods_and_change_only_sent_fields(env) -> None:
    api, a = env["api"], env["a"]
    s = ex("session_example_2_short_finished.json")
    api.put(url(s), json=s, headers=a)
    cost = ex("session_patch_example_total_cost.json")
    period = ex("session_patch_example_charging_period.json")
    for patch in (cost, period):
        resp = api.patch(url(s), json=patch, headers=a)
        assert resp.status_code == 200 and resp.json() == {**resp.json(), "status_code": 1000}
        assert "status_message" not in resp.json()
    expected = {
        **s,
        **cost,
        **period,
        "charging_periods": s["charging_periods"] + period["charging_periods"],  # appended, not replaced
    }
    assert api.get(url(s), headers=a).json()["data"] == expected
    # A retried PATCH (same period, same last_updated) does not add the period twice.
    assert api.patch(url(s), json=period, headers=a).json()["status_code"] == 1000
    # No periods, an empty list, or null: the periods stay as they are.
    for extra in ({}, {"charging_periods": []}, {"charging_periods": None}):
        change = {"kwh": 16, "last_updated": "2019-06-23T08:20:00Z", **extra}
        assert api.patch(url(s), json=change, headers=a).json()["status_code"] == 1000
    expected["kwh"], expected["last_updated"] = 16, "2019-06-23T08:20:00Z"
    assert api.get(url(s), headers=a).json()["data"] == expected
    # Periods come back in time order, whatever order they were appended in.
    early = {"start_date_time": "2015-06-29T22:39:30Z", "dimensions": [{"type": "ENERGY", "volume": 1}]}
    api.patch(url(s), json={"charging_periods": [early], "last_updated": "2019-06-23T08:21:00Z"}, headers=a)
    starts = [p["start_date_time"] for p in api.get(url(s), headers=a).json()["data"]["charging_periods"]]
    assert starts == sorted(starts) and "2015-06-29T22:39:30Z" in starts and len(starts) == 5


def test_put_replaces_the_periods(env) -> None:
    api, a = env["api"], env["a"]
    s = ex("session_example_2_short_finished.json")
    api.put(url(s), json=s, headers=a)
    one = dict(s, charging_periods=s["charging_periods"][1:2], last_updated="2015-06-29T23:59:00Z")
    assert api.put(url(s), json=one, headers=a).status_code == 200
    assert api.get(url(s), headers=a).json()["data"] == one
    none = {k: v for k, v in one.items() if k != "charging_periods"} | {
        "last_updated": "2015-06-30T00:00:00Z"
    }
    api.put(url(s), json=dict(none, charging_periods=[]), headers=a)  # [] = no periods (mod_sessions PUT)
    assert api.get(url(s), headers=a).json()["data"] == none
    # Two periods of one PUT with the same start are both kept, in order.
    twice = dict(s, charging_periods=[s["charging_periods"][0]] * 2, last_updated="2015-06-30T00:01:00Z")
    api.put(url(s), json=twice, headers=a)
    assert api.get(url(s), headers=a).json()["data"] == twice


def test_out_of_order_updates_never_overwrite_newer_state(env) -> None:
    api, a = env["api"], env["a"]
    s = ex("session_example_1_simple_start.json")
    api.put(url(s), json=dict(s, status="ACTIVE", last_updated="2020-03-09T10:30:00Z"), headers=a)
    newer = api.get(url(s), headers=a).json()["data"]
    late_put = api.put(url(s), json=dict(s, status="INVALID"), headers=a).json()  # older last_updated
    assert late_put["status_code"] == 1000 and "newer" in late_put["status_message"]
    late_patch = {
        "status": "COMPLETED",
        "charging_periods": [
            {"start_date_time": "2020-03-09T10:17:09Z", "dimensions": [{"type": "TIME", "volume": 1}]}
        ],
        "last_updated": "2020-03-09T10:20:00Z",
    }
    resp = api.patch(url(s), json=late_patch, headers=a).json()
    assert resp["status_code"] == 1000 and "newer" in resp["status_message"]
    assert api.get(url(s), headers=a).json()["data"] == newer  # nor the status, nor the period


def test_patch_rules(env) -> None:
    api, a, store = env["api"], env["a"], env["store"]
    s = ex("session_example_1_simple_start.json")
    api.put(url(s), json=s, headers=a)
    no_lu = api.patch(url(s), json={"status": "ACTIVE"}, headers=a).json()
    assert no_lu["status_code"] == 2001 and "last_updated" in no_lu["status_message"]
    bad_period = {"charging_periods": [{"start_date_time": "2020-03-09T10:20:00Z", "dimensions": []}]}
    resp = api.patch(url(s), json={**bad_period, "last_updated": "2021-01-01T00:00:00Z"}, headers=a).json()
    assert resp["status_code"] == 2001 and "charging_periods" in resp["status_message"]
    assert (
        api.patch(url(s), json={"status": "DONE", "last_updated": "2021-01-01T00:00:00Z"}, headers=a).json()[
            "status_code"
        ]
        == 2001
    )
    other_id = {"id": "999", "last_updated": "2021-01-01T00:00:00Z"}
    assert api.patch(url(s), json=other_id, headers=a).json()["status_code"] == 2001
    ghost = dict(s, id="GHOST")
    unknown = api.patch(
        url(ghost), json={"status": "ACTIVE", "last_updated": "2021-01-01T00:00:00Z"}, headers=a
    )
    assert unknown.status_code == 404 and unknown.json()["status_code"] == 2000
    assert store.get(sessions.objects.ref_of(sessions.KIND, "NL", "STK", "GHOST")) is None
    assert api.get(url(ghost), headers=a).status_code == 404
    assert api.get(url(s), headers=a).json()["data"] == s  # nothing of the refused PATCHes applied
    assert api.delete(url(s), headers=a).status_code == 405  # sessions are never deleted
    mismatch = api.put(url(s), json=dict(s, id="OTHER"), headers=a).json()
    assert mismatch["status_code"] == 2001


# ------------------------------------------------------------------ our own sessions (sender)
def own(i: int, emsp: tuple[str, str], minute: int, **changes) -> dict:
    s = ex("session_example_2_short_finished.json")
    s.update(
        {
            "country_code": "NL",
            "party_id": "CPO",
            "id": f"OWN{i:02d}",
            "cdr_token": dict(s["cdr_token"], country_code=emsp[0], party_id=emsp[1]),
            "last_updated": f"2024-01-01T00:{minute:02d}:00Z",
            **changes,
        }
    )
    return s


def test_sender_lists_only_the_callers_sessions_with_required_date_from(env) -> None:
    api, store = env["api"], env["store"]
    mine = [own(i, ("DE", "XXX"), i) for i in range(5)]
    theirs = [own(10 + i, ("FR", "YYY"), 30 + i) for i in range(2)]
    for s in mine + theirs:
        assert sessions.put_session(store, None, "NL", "CPO", s["id"], s).result.value == "created"
    no_date = api.get(TX, headers=env["x"]).json()
    assert no_date["status_code"] == 2001 and "date_from" in no_date["status_message"]
    resp = api.get(f"{TX}?date_from=2024-01-01T00:01:00Z&limit=2", headers=env["x"])
    assert [s["id"] for s in resp.json()["data"]] == ["OWN01", "OWN02"]
    assert resp.json()["data"][0] == mine[1]  # whole sessions, periods included
    assert resp.headers["x-total-count"] == "4" and "date_from=" in resp.headers["link"]
    nxt = resp.headers["link"].split(">")[0].removeprefix("<https://ocpi.test")
    page2 = api.get(nxt, headers=env["x"])
    assert [s["id"] for s in page2.json()["data"]] == ["OWN03", "OWN04"] and "link" not in page2.headers
    window = api.get(f"{TX}?date_from=2024-01-01T00:00:00Z&date_to=2024-01-01T00:02:00Z", headers=env["x"])
    assert [s["id"] for s in window.json()["data"]] == ["OWN00", "OWN01"]  # date_to exclusive
    assert api.get(TX + SINCE, headers=env["y"]).json()["data"] == theirs
    # Routing headers name the party; a party the caller does not hold (as eMSP) is refused.
    assert api.get(TX + SINCE, headers={**env["x"], **frm("DE", "XXX")}).json()["data"] == mine
    assert api.get(TX + SINCE, headers={**env["x"], **frm("FR", "YYY")}).json()["status_code"] == 2001
    assert (
        api.get(TX + SINCE, headers={**env["x"], "OCPI-from-country-code": "DE"}).json()["status_code"]
        == 2001
    )
    # Several eMSP parties and no routing headers: 2001 asking for them; with them: that party's.
    several = api.get(TX + SINCE, headers=env["xy"]).json()
    assert several["status_code"] == 2001 and "OCPI-from" in several["status_message"]
    store_s = own(20, ("FR", "YY2"), 50)
    sessions.put_session(store, None, "NL", "CPO", store_s["id"], store_s)
    assert api.get(TX + SINCE, headers={**env["xy"], **frm("FR", "YY2")}).json()["data"] == [store_s]
    assert api.get(TX + SINCE, headers={**env["xy"], **frm("DE", "XX2")}).json()["data"] == []
    # A CPO partner holds no eMSP party: it owns no sessions here.
    assert api.get(TX + SINCE, headers=env["a"]).json()["data"] == []


def frm(cc: str, pid: str) -> dict[str, str]:
    return {"OCPI-from-country-code": cc, "OCPI-from-party-id": pid}


def test_own_session_must_belong_to_an_own_cpo_party(env) -> None:
    s = ex("session_example_1_simple_start.json")
    with pytest.raises(InvalidParameters):
        sessions.put_session(env["store"], None, s["country_code"], s["party_id"], s["id"], s)


# ------------------------------------------------------------------ charging preferences
PREFS = {"profile_type": "FAST", "departure_time": "2024-01-01T18:00:00Z", "energy_need": 30}


def _own_location(store, capable: bool) -> dict:
    loc = ex("location_example.json")
    loc.update({"country_code": "NL", "party_id": "CPO", "id": "LOC1"})
    caps = set(loc["evses"][0].get("capabilities") or []) - {sessions.CAPABLE}
    loc["evses"][0]["capabilities"] = sorted(caps | ({sessions.CAPABLE} if capable else set()))
    locations.put_location(store, None, "NL", "CPO", "LOC1", loc)
    return loc


def test_charging_preferences(env, monkeypatch) -> None:
    api, store = env["api"], env["store"]
    published: list[dict] = []
    monkeypatch.setattr(events, "_sink", published.append)
    loc = _own_location(store, capable=True)
    s = own(1, ("DE", "XXX"), 1, status="ACTIVE", location_id="LOC1", evse_uid=loc["evses"][0]["uid"])
    sessions.put_session(store, None, "NL", "CPO", s["id"], s)
    published.clear()
    prefs_url = f"{TX}/{s['id']}/charging_preferences"
    ok = api.put(prefs_url, json=PREFS, headers=env["x"])
    assert ok.status_code == 200 and ok.json()["data"] == "ACCEPTED" and ok.json()["status_code"] == 1000
    assert [e["DetailType"] for e in published] == ["ocpi.own.charging_preferences"]
    detail = json.loads(published[0]["Detail"])
    assert detail["charging_preferences"] == PREFS and detail["id"] == s["id"]
    assert (detail["partner_id"], detail["emsp_country_code"], detail["emsp_party_id"]) == (
        "emsp-x",
        "DE",
        "XXX",
    )
    assert (
        api.put(prefs_url.replace("OWN01", "own01"), json=PREFS, headers=env["x"]).json()["data"]
        == "ACCEPTED"
    )
    # Invalid body: 2001. Unknown session, or one of another eMSP's drivers: 404 + 2000.
    assert api.put(prefs_url, json={"profile_type": "SLOW"}, headers=env["x"]).json()["status_code"] == 2001
    for who, path in (("x", f"{TX}/NOPE/charging_preferences"), ("y", prefs_url), ("a", prefs_url)):
        resp = api.put(path, json=PREFS, headers=env[who])
        assert resp.status_code == 404 and resp.json()["status_code"] == 2000, who
    assert (
        api.put(prefs_url, json=PREFS, headers={**env["x"], **frm("FR", "YYY")}).json()["status_code"] == 2001
    )
    # A received session (from a CPO partner) is not ours to set preferences on.
    rx = ex("session_example_1_simple_start.json")
    api.put(url(rx), json=rx, headers=env["a"])
    assert api.put(f"{TX}/{rx['id']}/charging_preferences", json=PREFS, headers=env["m"]).status_code == 404
    # A finished session: NOT_POSSIBLE, nothing forwarded.
    done = own(2, ("DE", "XXX"), 2, status="COMPLETED", location_id="LOC1")
    sessions.put_session(store, None, "NL", "CPO", done["id"], done)
    published.clear()
    assert (
        api.put(f"{TX}/OWN02/charging_preferences", json=PREFS, headers=env["x"]).json()["data"]
        == "NOT_POSSIBLE"
    )
    assert published == []
    # An EVSE without CHARGING_PREFERENCES_CAPABLE: HTTP 404 + 2001 (mod_sessions).
    _own_location(store, capable=False)
    resp = api.put(prefs_url, json=PREFS, headers=env["x"])
    assert resp.status_code == 404 and resp.json()["status_code"] == 2001
    # No GET or PATCH on the sender's session URLs (only the list and this PUT).
    assert api.get(f"{TX}/{s['id']}", headers=env["x"]).status_code == 404
    assert api.patch(prefs_url, json=PREFS, headers=env["x"]).status_code == 405


def test_charging_preferences_not_forwarded_is_not_accepted(env, monkeypatch) -> None:
    store = env["store"]
    s = own(1, ("DE", "XXX"), 1, status="ACTIVE")
    sessions.put_session(store, None, "NL", "CPO", s["id"], s)
    monkeypatch.setattr(events, "publish", lambda *a, **k: False)
    resp = env["api"].put(f"{TX}/{s['id']}/charging_preferences", json=PREFS, headers=env["x"])
    assert resp.status_code == 503 and resp.json()["status_code"] == 3000


# ------------------------------------------------------------------ events and the back office
def test_received_changes_are_published(memory_store) -> None:
    a = add_partner(memory_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("sessions"), raise_server_exceptions=False)
    s = ex("session_example_2_short_finished.json")
    period = ex("session_patch_example_charging_period.json")
    api.put(url(s), json=s, headers=a)
    api.patch(url(s), json=period, headers=a)
    api.patch(url(s), json={"kwh": 1, "last_updated": "2001-01-01T00:00:00Z"}, headers=a)  # stale: no event
    published = [(e["DetailType"], json.loads(e["Detail"])) for e in memory_store.published]
    assert [t for t, _ in published] == ["ocpi.received.put", "ocpi.received.patch"]
    assert published[0][1]["object"] == s and published[0][1]["partner_id"] == "cpo-a"
    assert published[1][1]["fields"] == period and published[1][1]["module"] == "sessions"


def test_own_sessions_from_the_back_office(memory_store) -> None:
    store = memory_store
    s = own(1, ("DE", "XXX"), 1, status="ACTIVE")
    assert ingest.apply(store, events.OWN_PUT, {"module": "sessions", "object": s}).result.value == "created"
    period = {"start_date_time": "2024-01-01T00:05:00Z", "dimensions": [{"type": "ENERGY", "volume": 2}]}
    patch = {
        "module": "sessions",
        "country_code": "NL",
        "party_id": "CPO",
        "id": s["id"],
        "fields": {"kwh": 43, "charging_periods": [period], "last_updated": "2024-01-01T00:05:00Z"},
    }
    assert ingest.apply(store, events.OWN_PATCH, patch).result.value == "updated"
    got = sessions.assemble(sessions.get_own(store, s["id"]))
    assert got == {
        **s,
        "kwh": 43,
        "last_updated": "2024-01-01T00:05:00Z",
        "charging_periods": s["charging_periods"] + [period],
    }
    kinds = [(e["DetailType"], json.loads(e["Detail"])["action"]) for e in store.published]
    assert kinds == [("ocpi.own.changed", "put"), ("ocpi.own.changed", "patch")]
    # The token's eMSP party decides who reads the session: not movable by PATCH.
    moved = copy.deepcopy(patch)
    moved["fields"] = {
        "cdr_token": dict(s["cdr_token"], party_id="ZZZ"),
        "last_updated": "2024-01-01T00:06:00Z",
    }
    with pytest.raises(InvalidParameters):
        ingest.apply(store, events.OWN_PATCH, moved)
    same = copy.deepcopy(patch)
    same["fields"] = {
        "cdr_token": dict(s["cdr_token"], contract_id="NEW"),
        "last_updated": "2024-01-01T00:06:00Z",
    }
    assert ingest.apply(store, events.OWN_PATCH, same).result.value == "updated"
    # A PATCH before its session arrived is retried (not poison); deleting is not OCPI.
    with pytest.raises(NotFound):
        ingest.apply(store, events.OWN_PATCH, dict(patch, id="LATER"))
    with pytest.raises(InvalidParameters):
        ingest.apply(
            store,
            events.OWN_DELETE,
            {"module": "sessions", "country_code": "NL", "party_id": "CPO", "id": "X"},
        )
    # A session of a party that is not ours is bad data.
    foreign = dict(s, party_id="ZZZ")
    with pytest.raises(InvalidParameters):
        ingest.apply(store, events.OWN_PUT, {"module": "sessions", "object": foreign})


# ------------------------------------------------------------------ cost of appending a period
def test_appending_a_period_costs_the_same_with_1_or_200_periods(dynamo_store) -> None:
    a = add_partner(dynamo_store, "cpo-a", "token-a", [("CPO", "BE", "BEC")])
    api = TestClient(load_app("sessions"), raise_server_exceptions=False)
    costs = []
    for n in (1, 200):
        s = ex("session_example_2_short_finished.json")
        s["id"] = f"S{n}"
        s["charging_periods"] = [
            {
                "start_date_time": f"2015-06-29T{h:02d}:{m:02d}:00Z",
                "dimensions": [{"type": "ENERGY", "volume": 1}],
            }
            for h, m in [divmod(i, 60) for i in range(n)]
        ]
        assert api.put(url(s), json=s, headers=a).status_code == 201
        period = {"start_date_time": "2015-06-30T00:00:00Z", "dimensions": [{"type": "ENERGY", "volume": 2}]}
        METER.reset()
        sessions.patch_session(
            dynamo_store,
            api_caller(dynamo_store, "cpo-a"),
            "BE",
            "BEC",
            s["id"],
            {"charging_periods": [period], "last_updated": "2016-01-01T00:00:00Z"},
        )
        u = METER.reset()
        costs.append((dict(u.requests), u.write_units))
        got = api.get(url(s), headers=a).json()["data"]
        assert len(got["charging_periods"]) == n + 1 and got["charging_periods"][-1] == period
    assert costs[0] == costs[1], costs


def api_caller(store, partner_id: str):
    from shared.auth import Caller

    return Caller(partner_id=partner_id, kind="C", partner=store.get_partner(partner_id))
