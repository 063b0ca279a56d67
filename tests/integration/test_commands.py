"""Commands as CPO (shared/services/commands.py, functions/commands) on both stores: every command's
accepted and rejected paths, isolation between eMSPs, the back office's result POSTed to the
response_url by the push pipeline (once), the TIMEOUT path, duplicate / late / foreign results, and
concurrent commands kept apart by their ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import events
from shared.errors import InvalidParameters
from shared.services import commands, ingest, push
from tests.integration.test_credentials import load_app
from tests.integration.test_ingest import location
from tests.integration.test_locations import add_partner
from tests.integration.test_push import FAST, Pipeline, session
from tests.receiver_stub import ReceiverStub

URL = "/ocpi/2.2.1/receiver/commands"


def token(cc: str = "DE", pid: str = "ABC", uid: str = "UID1") -> dict:
    return {
        "country_code": cc,
        "party_id": pid,
        "uid": uid,
        "type": "APP_USER",
        "contract_id": f"{cc}-{pid}-C0001",
        "issuer": "eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2024-05-01T09:00:00Z",
    }


def our_location(lid: str, **evse_changes: Any) -> dict:
    loc = location(lid)
    loc["evses"][0].update(
        {"capabilities": ["REMOTE_START_STOP_CAPABLE", "RESERVABLE", "UNLOCK_CAPABLE"], **evse_changes}
    )
    return loc


@pytest.fixture
def env(any_store) -> Iterator[dict]:
    with ReceiverStub() as stub:
        pipe = Pipeline(any_store)
        a = add_partner(any_store, "emsp-a", "token-a", [("EMSP", "DE", "ABC")])
        b = add_partner(any_store, "emsp-b", "token-b", [("EMSP", "BE", "XYZ")])
        c = add_partner(any_store, "cpo-c", "token-c", [("CPO", "FR", "CPC")])
        for pid in ("emsp-a", "emsp-b"):
            any_store.put_partner({**any_store.get_partner(pid), "outbound_token": f"out-{pid}"})
        pipe.own(events.OWN_PUT, {"module": "locations", "object": our_location("LOC1")})
        pipe.own(
            events.OWN_PUT,
            {
                "module": "locations",
                "object": our_location(
                    "LOC2", capabilities=["REMOTE_START_STOP_CAPABLE", "START_SESSION_CONNECTOR_REQUIRED"]
                ),
            },
        )
        pipe.own(
            events.OWN_PUT, {"module": "locations", "object": our_location("LOC3", status="INOPERATIVE")}
        )
        pipe.own(events.OWN_PUT, {"module": "locations", "object": our_location("LOC4", capabilities=[])})
        pipe.bus.clear()
        yield {
            "store": any_store,
            "api": TestClient(load_app("commands"), raise_server_exceptions=False),
            "a": a,
            "b": b,
            "c": c,
            "stub": stub,
            "pipe": pipe,
        }


def post(env: dict, command: str, body: dict, who: str = "a") -> tuple[int, dict]:
    resp = env["api"].post(f"{URL}/{command}", json=body, headers=env[who])
    return resp.status_code, resp.json()


def start(env: dict, tag: str, **extra: Any) -> dict:
    return {
        "response_url": f"{env['stub'].base}/commands/START_SESSION/{tag}",
        "token": token(),
        "location_id": "LOC1",
        "evse_uid": "3256",
        **extra,
    }


def requested(env: dict) -> list[dict]:
    return [json.loads(e["Detail"]) for e in env["pipe"].bus if e["DetailType"] == commands.REQUESTED]


def answer(code: int, body: dict) -> tuple[int, int, str | None]:
    data = body.get("data") or {}
    return code, body["status_code"], data.get("result")


# ------------------------------------------------------------------ accepted / rejected
def test_start_session_accepted_stored_announced_and_timeout_queued(env) -> None:
    code, body = post(env, "START_SESSION", start(env, "s1"))
    assert (
        answer(code, body) == (200, 1000, "ACCEPTED") and body["data"]["timeout"] == commands.DEFAULT_TIMEOUT
    )
    (req,) = requested(env)
    assert req["type"] == "START_SESSION" and (req["emsp_country_code"], req["emsp_party_id"]) == (
        "DE",
        "ABC",
    )
    assert "response_url" not in req["request"] and req["request"]["location_id"] == "LOC1"
    assert len(req["command_id"]) == 32  # unguessable: 128 random bits
    stored = commands.get_command(env["store"], req["command_id"])
    assert stored.body["response_url"].endswith("/s1") and stored.body["partner_id"] == "emsp-a"
    # The delayed timeout check is queued for the same command.
    (check,) = env["pipe"].queue
    assert (check.module, check.object_id, check.partner_id) == ("commands", req["command_id"], "emsp-a")


@pytest.mark.parametrize(
    ("case", "command", "body", "expected"),
    [
        ("foreign token", "START_SESSION", {"token": token("BE", "XYZ")}, (200, 1000, "REJECTED")),
        ("unknown location", "START_SESSION", {"location_id": "NOPE"}, (404, 2003, None)),
        ("unknown evse", "START_SESSION", {"evse_uid": "NOPE"}, (404, 2003, None)),
        ("connector required", "START_SESSION", {"location_id": "LOC2"}, (200, 1000, "REJECTED")),
        (
            "connector given",
            "START_SESSION",
            {"location_id": "LOC2", "connector_id": "1"},
            (200, 1000, "ACCEPTED"),
        ),
        ("unknown connector", "START_SESSION", {"connector_id": "9"}, (404, 2003, None)),
        ("inoperative evse", "START_SESSION", {"location_id": "LOC3"}, (200, 1000, "REJECTED")),
        ("not remote capable", "START_SESSION", {"location_id": "LOC4"}, (200, 1000, "REJECTED")),
        (
            "connector without evse",
            "START_SESSION",
            {"evse_uid": None, "connector_id": "1"},
            (200, 2001, None),
        ),
        ("no token", "START_SESSION", {"token": None}, (200, 2001, None)),
        ("unsupported", "SELF_DESTRUCT", {}, (200, 1000, "NOT_SUPPORTED")),
    ],
)
def test_start_session_checks(env, case: str, command: str, body: dict, expected: tuple) -> None:
    raw = {k: v for k, v in {**start(env, case.replace(" ", "-")), **body}.items() if v is not None}
    assert answer(*post(env, command, raw)) == expected, case
    assert len(requested(env)) == (1 if expected[2] == "ACCEPTED" else 0)


def test_only_an_emsp_can_command(env) -> None:
    code, body = post(env, "START_SESSION", start(env, "x"), who="c")
    assert (code, body["status_code"]) == (200, 2001) and "EMSP" in body["status_message"]


def test_stop_session_only_for_the_sessions_emsp(env) -> None:
    store, pipe = env["store"], env["pipe"]
    pipe.own(
        events.OWN_PUT,
        {
            "module": "sessions",
            "object": session("S1", ("DE", "ABC"), "2024-05-01T09:00:00Z", status="ACTIVE"),
        },
    )
    pipe.own(
        events.OWN_PUT, {"module": "sessions", "object": session("S2", ("DE", "ABC"), "2024-05-01T09:00:00Z")}
    )
    stop = {"response_url": f"{env['stub'].base}/commands/STOP_SESSION/1", "session_id": "S1"}
    assert answer(*post(env, "STOP_SESSION", stop, who="b")) == (200, 1000, "UNKNOWN_SESSION")  # not B's
    assert answer(*post(env, "STOP_SESSION", {**stop, "session_id": "NOPE"})) == (
        200,
        1000,
        "UNKNOWN_SESSION",
    )
    assert answer(*post(env, "STOP_SESSION", {**stop, "session_id": "S2"})) == (
        200,
        1000,
        "REJECTED",
    )  # ended
    assert answer(*post(env, "STOP_SESSION", stop)) == (200, 1000, "ACCEPTED")
    assert [r["request"]["session_id"] for r in requested(env)] == ["S1"]
    assert store is not None


def test_reserve_then_cancel_only_by_the_reserving_emsp(env) -> None:
    reserve = {
        "response_url": f"{env['stub'].base}/commands/RESERVE_NOW/1",
        "token": token(),
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": "R1",
        "location_id": "LOC1",
        "evse_uid": "3256",
    }
    assert answer(*post(env, "RESERVE_NOW", {**reserve, "location_id": "LOC4"})) == (200, 1000, "REJECTED")
    assert answer(*post(env, "RESERVE_NOW", reserve)) == (200, 1000, "ACCEPTED")
    cancel = {"response_url": f"{env['stub'].base}/commands/CANCEL_RESERVATION/1", "reservation_id": "R1"}
    assert answer(*post(env, "CANCEL_RESERVATION", cancel, who="b")) == (
        200,
        1000,
        "REJECTED",
    )  # B's own R1? none
    assert answer(*post(env, "CANCEL_RESERVATION", {**cancel, "reservation_id": "R9"})) == (
        200,
        1000,
        "REJECTED",
    )
    assert answer(*post(env, "CANCEL_RESERVATION", cancel)) == (200, 1000, "ACCEPTED")
    assert [r["type"] for r in requested(env)] == ["RESERVE_NOW", "CANCEL_RESERVATION"]
    assert requested(env)[0]["request"]["reservation_id"] == "R1"


def test_unlock_connector(env) -> None:
    unlock = {
        "response_url": f"{env['stub'].base}/commands/UNLOCK/1",
        "location_id": "LOC1",
        "evse_uid": "3256",
        "connector_id": "1",
    }
    assert answer(*post(env, "UNLOCK_CONNECTOR", {**unlock, "connector_id": "7"})) == (404, 2003, None)
    assert answer(*post(env, "UNLOCK_CONNECTOR", {**unlock, "location_id": "LOC2"})) == (
        200,
        1000,
        "REJECTED",
    )
    assert answer(*post(env, "UNLOCK_CONNECTOR", unlock)) == (200, 1000, "ACCEPTED")


# ------------------------------------------------------------------ results
def test_back_office_result_is_posted_once_to_the_response_url(env) -> None:
    store, pipe, stub = env["store"], env["pipe"], env["stub"]
    post(env, "START_SESSION", start(env, "one"))
    post(env, "START_SESSION", start(env, "two"))  # same token, same EVSE: kept apart by id
    first, second = (r["command_id"] for r in requested(env))
    timeout_checks = list(pipe.queue)
    pipe.queue.clear()
    assert commands.record_result(store, {"command_id": second, "result": "EVSE_OCCUPIED"}) == "applied"
    assert commands.record_result(store, {"command_id": first, "result": "ACCEPTED"}) == "applied"
    assert commands.record_result(store, {"command_id": first, "result": "FAILED"}) == "late"  # duplicate
    late = [json.loads(e["Detail"]) for e in pipe.bus if e["DetailType"] == commands.LATE]
    assert late == [{"command_id": first, "result": "FAILED"}]
    assert pipe.run() == []
    posts = {r["path"]: r["body"] for r in stub.calls("POST")}
    assert posts == {
        "/ocpi/2.2.1/commands/START_SESSION/one": {"result": "ACCEPTED"},
        "/ocpi/2.2.1/commands/START_SESSION/two": {"result": "EVSE_OCCUPIED"},
    }
    assert {r["headers"]["OCPI-to-party-id"] for r in stub.calls("POST")} == {"ABC"}
    # The delayed timeout checks find the results delivered: nothing more is sent.
    for d in timeout_checks:
        assert push.deliver(store, d, store.get_partner(d.partner_id), FAST) == "already"
    assert len(stub.calls("POST")) == 2


def test_timeout_when_the_back_office_never_answers(env, monkeypatch) -> None:
    store, pipe, stub = env["store"], env["pipe"], env["stub"]
    post(env, "START_SESSION", start(env, "slow"))
    (check,) = pipe.queue
    pipe.queue.clear()
    # Too early: the check waits again (a delayed copy), nothing is sent.
    assert push.deliver(store, check, store.get_partner("emsp-a"), FAST) == "waiting"
    assert pipe.queue == [check] and stub.calls() == []
    pipe.queue.clear()
    monkeypatch.setattr(commands, "ensure_result", _expired(commands.ensure_result))
    assert push.deliver(store, check, store.get_partner("emsp-a"), FAST) == "post"
    assert [r["body"] for r in stub.calls("POST")] == [{"result": "TIMEOUT"}]
    # The charger answers after all: too late, not sent.
    assert commands.record_result(store, {"command_id": check.object_id, "result": "ACCEPTED"}) == "late"
    assert pipe.run() == []
    assert len(stub.calls("POST")) == 1


def _expired(real):
    from datetime import UTC, datetime, timedelta

    def ensure(store, ref, now=None):
        return real(store, ref, datetime.now(UTC) + timedelta(seconds=commands.DEFAULT_TIMEOUT + 1))

    return ensure


def test_results_for_unknown_commands_are_refused(env) -> None:
    with pytest.raises(InvalidParameters):
        commands.record_result(env["store"], {"command_id": "f" * 32, "result": "ACCEPTED"})
    post(env, "START_SESSION", start(env, "x"))
    (req,) = requested(env)
    with pytest.raises(InvalidParameters):
        commands.record_result(env["store"], {"command_id": req["command_id"], "result": "MAYBE"})


def test_a_result_is_sent_only_to_the_partner_that_sent_the_command(env) -> None:
    post(env, "START_SESSION", start(env, "mine"))
    (req,) = requested(env)
    forged = push.Delivery("emsp-b", "commands", req["country_code"], req["party_id"], req["command_id"])
    store = env["store"]
    assert push.deliver(store, forged, store.get_partner("emsp-b"), FAST) == "gone"
    assert env["stub"].calls() == []


def test_ingest_function_handles_command_results(env) -> None:
    post(env, "START_SESSION", start(env, "via-ingest"))
    (req,) = requested(env)
    body = json.dumps(
        {
            "source": "ocpi.backoffice",
            "detail-type": commands.RESULT,
            "detail": {"command_id": req["command_id"], "result": "ACCEPTED"},
        }
    )
    from tests.integration.test_lambda_events import Context, handler_for

    event = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "h",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q",
                "awsRegion": "eu-west-1",
            }
        ]
    }
    assert handler_for("ingest")(event, Context()) == {"batchItemFailures": []}
    changed = [json.loads(e["Detail"]) for e in env["pipe"].bus if e["DetailType"] == events.OWN_CHANGED]
    assert changed[-1]["module"] == "commands" and changed[-1]["partner_id"] == "emsp-a"
    assert ingest is not None


# ------------------------------------------------------------------ as eMSP: commands we send
def test_sent_command_result_accepted_once_from_the_right_partner_only(env) -> None:
    store, stub = env["store"], env["stub"]
    add_partner(store, "cpo-c2", "token-c2", [("CPO", "FR", "CP2")])
    store.put_partner(
        {
            **store.get_partner("cpo-c2"),
            "outbound_token": "out-c2",
            "endpoints": [{"identifier": "commands", "role": "RECEIVER", "url": f"{stub.base}/commands"}],
        }
    )
    sent = commands.send(
        store,
        "https://ocpi.test",
        "cpo-c2",
        "START_SESSION",
        {"token": token("NL", "MSP"), "location_id": "L1"},
    )
    (call,) = stub.calls("POST")
    assert call["path"] == "/ocpi/2.2.1/commands/START_SESSION"
    url = call["body"]["response_url"]
    assert url == f"https://ocpi.test/ocpi/2.2.1/sender/commands/START_SESSION/{sent['command_id']}"
    path = url.removeprefix("https://ocpi.test")
    api = env["api"]
    # Another partner, another command type, an unknown id: the same 404, nothing stored.
    assert api.post(path, json={"result": "ACCEPTED"}, headers=env["a"]).status_code == 404
    wrong_type = path.replace("START_SESSION", "STOP_SESSION")
    assert api.post(wrong_type, json={"result": "ACCEPTED"}, headers=env["c"]).status_code == 404
    assert api.post(path[:-4] + "0000", json={"result": "ACCEPTED"}, headers=env["c"]).status_code == 404
    assert commands.sent_command(store, sent["command_id"])["result"] is None
    c2 = add_partner(store, "cpo-c2", "token-c2", [("CPO", "FR", "CP2")])
    store.put_partner({**store.get_partner("cpo-c2"), "outbound_token": "out-c2"})
    env["pipe"].bus.clear()
    bad = api.post(path, json={"result": "PERHAPS"}, headers=c2)
    assert (bad.status_code, bad.json()["status_code"]) == (200, 2001)
    ok = api.post(path, json={"result": "ACCEPTED"}, headers=c2)
    assert (ok.status_code, ok.json()["status_code"]) == (200, 1000)
    again = api.post(path, json={"result": "FAILED"}, headers=c2)  # a repeat is acknowledged, not applied
    assert again.json()["status_code"] == 1000
    assert commands.sent_command(store, sent["command_id"])["result"]["result"] == "ACCEPTED"
    got = [json.loads(e["Detail"]) for e in env["pipe"].bus if e["DetailType"] == commands.RESULT_RECEIVED]
    assert [(g["command_id"], g["result"]) for g in got] == [(sent["command_id"], "ACCEPTED")]


# ------------------------------------------------------------------ charging profiles (as CPO)
PROFILE = {"charging_rate_unit": "W", "charging_profile_period": [{"start_period": 0, "limit": 11000}]}


def test_charging_profiles_set_get_clear_and_results(env, monkeypatch) -> None:
    store, pipe, stub = env["store"], env["pipe"], env["stub"]
    api = TestClient(load_app("chargingprofiles"), raise_server_exceptions=False)
    pipe.own(
        events.OWN_PUT,
        {
            "module": "sessions",
            "object": session("S1", ("DE", "ABC"), "2024-05-01T09:00:00Z", status="ACTIVE"),
        },
    )
    pipe.own(
        events.OWN_PUT, {"module": "sessions", "object": session("S2", ("DE", "ABC"), "2024-05-01T09:00:00Z")}
    )
    pipe.bus.clear()
    url = "/ocpi/2.2.1/receiver/chargingprofiles"
    cb = f"{stub.base}/chargingprofiles/cb"

    def data(resp) -> tuple[int, int, str | None]:
        body = resp.json()
        return resp.status_code, body["status_code"], (body.get("data") or {}).get("result")

    set_body = {"charging_profile": PROFILE, "response_url": f"{cb}/set"}
    assert data(api.put(f"{url}/S1", json=set_body, headers=env["b"])) == (200, 1000, "UNKNOWN_SESSION")
    assert data(api.put(f"{url}/NOPE", json=set_body, headers=env["a"])) == (200, 1000, "UNKNOWN_SESSION")
    assert data(api.put(f"{url}/S2", json=set_body, headers=env["a"])) == (200, 1000, "REJECTED")  # ended
    assert data(api.put(f"{url}/S1", json={"charging_profile": PROFILE}, headers=env["a"]))[:2] == (200, 2001)
    assert data(api.get(f"{url}/S1?duration=900", headers=env["a"]))[:2] == (200, 2001)  # no response_url
    assert data(api.get(f"{url}/S1?duration=soon&response_url={cb}/get", headers=env["a"]))[:2] == (200, 2001)
    assert data(api.put(f"{url}/S1", json=set_body, headers=env["a"])) == (200, 1000, "ACCEPTED")
    assert data(api.get(f"{url}/S1?duration=900&response_url={cb}/get", headers=env["a"])) == (
        200,
        1000,
        "ACCEPTED",
    )
    assert data(api.delete(f"{url}/S1?response_url={cb}/clear", headers=env["a"])) == (200, 1000, "ACCEPTED")
    reqs = requested(env)
    assert [r["type"] for r in reqs] == ["SET_PROFILE", "GET_PROFILE", "CLEAR_PROFILE"]
    assert reqs[0]["request"]["charging_profile"]["charging_rate_unit"] == "W"
    assert reqs[1]["request"] == {"duration": 900, "session_id": "S1"}
    active = {"start_date_time": "2024-05-01T09:05:00Z", "charging_profile": PROFILE}
    pipe.queue.clear()  # the timeout checks
    assert (
        commands.record_result(store, {"command_id": reqs[0]["command_id"], "result": "ACCEPTED"})
        == "applied"
    )
    assert (
        commands.record_result(
            store, {"command_id": reqs[1]["command_id"], "result": "ACCEPTED", "profile": active}
        )
        == "applied"
    )
    with pytest.raises(InvalidParameters):  # TIMEOUT is no ChargingProfileResultType
        commands.record_result(store, {"command_id": reqs[2]["command_id"], "result": "TIMEOUT"})
    assert pipe.run() == []
    posts = {r["path"].rsplit("/", 1)[1]: r["body"] for r in stub.calls("POST")}
    assert posts["set"] == {"result": "ACCEPTED"}
    assert (
        posts["get"]["result"] == "ACCEPTED"
        and posts["get"]["profile"]["start_date_time"] == "2024-05-01T09:05:00Z"
    )
    # The clear request is never answered: no ClearProfileResult has a TIMEOUT value, nothing is sent.
    clear = push.Delivery(
        "emsp-a", "commands", reqs[2]["country_code"], reqs[2]["party_id"], reqs[2]["command_id"]
    )
    monkeypatch.setattr(commands, "ensure_result", _expired(commands.ensure_result))
    assert push.deliver(store, clear, store.get_partner("emsp-a"), FAST) == "expired"
    assert "clear" not in {r["path"].rsplit("/", 1)[1] for r in stub.calls("POST")}


def test_sent_profile_requests_results_and_active_profiles(env) -> None:
    store, stub = env["store"], env["stub"]
    c2 = add_partner(store, "cpo-c2", "token-c2", [("CPO", "FR", "CP2")])
    store.put_partner(
        {
            **store.get_partner("cpo-c2"),
            "outbound_token": "out-c2",
            "endpoints": [{"identifier": "chargingprofiles", "role": "RECEIVER", "url": f"{stub.base}/cp"}],
        }
    )
    base = "https://ocpi.test"
    set_ = commands.send(store, base, "cpo-c2", "SET_PROFILE", {"charging_profile": PROFILE}, session_id="S9")
    get = commands.send(store, base, "cpo-c2", "GET_PROFILE", session_id="S9", duration=600)
    clear = commands.send(store, base, "cpo-c2", "CLEAR_PROFILE", session_id="S9")
    calls = stub.calls()
    assert [(c["method"], c["path"].split("?")[0]) for c in calls] == [
        ("PUT", "/ocpi/2.2.1/cp/S9"),
        ("GET", "/ocpi/2.2.1/cp/S9"),
        ("DELETE", "/ocpi/2.2.1/cp/S9"),
    ]
    assert (
        calls[0]["body"]["response_url"]
        == f"{base}/ocpi/2.2.1/sender/chargingprofiles/SET_PROFILE/{set_['command_id']}"
    )
    assert "duration=600" in calls[1]["path"] and get["command_id"] in calls[1]["path"]
    with pytest.raises(InvalidParameters):
        commands.send(store, base, "cpo-c2", "GET_PROFILE", session_id="S9", duration=0)
    api = TestClient(load_app("chargingprofiles"), raise_server_exceptions=False)
    path = f"/ocpi/2.2.1/sender/chargingprofiles/GET_PROFILE/{get['command_id']}"
    active = {"start_date_time": "2024-05-01T09:05:00Z", "charging_profile": PROFILE}
    assert api.post(path, json={"result": "ACCEPTED", "profile": active}, headers=env["a"]).status_code == 404
    assert api.post(path, json={"result": "TIMEOUT"}, headers=c2).json()["status_code"] == 2001
    assert (
        api.post(path, json={"result": "ACCEPTED", "profile": active}, headers=c2).json()["status_code"]
        == 1000
    )
    assert (
        commands.sent_command(store, get["command_id"])["result"]["profile"]["charging_profile"][
            "charging_rate_unit"
        ]
        == "W"
    )
    assert commands.sent_command(store, clear["command_id"])["result"] is None
    # The CPO keeps us updated with the ActiveChargingProfile of the session.
    env["pipe"].bus.clear()
    resp = api.put("/ocpi/2.2.1/sender/chargingprofiles/S9", json=active, headers=c2)
    assert resp.json()["status_code"] == 1000
    (event,) = [
        json.loads(e["Detail"])
        for e in env["pipe"].bus
        if e["DetailType"] == "ocpi.received.active_charging_profile"
    ]
    assert (event["country_code"], event["party_id"], event["session_id"]) == ("FR", "CP2", "S9")
    assert (
        api.put("/ocpi/2.2.1/sender/chargingprofiles/S9", json=active, headers=env["a"]).json()["status_code"]
        == 2001
    )
    assert (
        api.put("/ocpi/2.2.1/sender/chargingprofiles/S9", json={"x": 1}, headers=c2).json()["status_code"]
        == 2001
    )


def test_back_office_sends_commands_never_twice(env) -> None:
    store, stub, pipe = env["store"], env["stub"], env["pipe"]
    add_partner(store, "cpo-c2", "token-c2", [("CPO", "FR", "CP2")])
    store.put_partner(
        {
            **store.get_partner("cpo-c2"),
            "outbound_token": "out-c2",
            "endpoints": [{"identifier": "commands", "role": "RECEIVER", "url": f"{stub.base}/commands"}],
        }
    )
    pipe.bus.clear()
    detail = {
        "partner_id": "cpo-c2",
        "type": "STOP_SESSION",
        "request": {"session_id": "S1"},
        "reference": "app-42",
    }
    assert commands.send_from_backoffice(store, detail) == "sent"
    (sent,) = [json.loads(e["Detail"]) for e in pipe.bus if e["DetailType"] == commands.SENT_EVENT]
    assert sent["reference"] == "app-42" and len(sent["command_id"]) == 32
    stub.mode = "500"
    assert commands.send_from_backoffice(store, detail) == "failed"
    (failed,) = [json.loads(e["Detail"]) for e in pipe.bus if e["DetailType"] == commands.SEND_FAILED]
    assert failed["reference"] == "app-42" and "500" in failed["error"]
    assert len(stub.calls("POST")) == 2  # one attempt each: a command is never resent by us
    assert commands.send_from_backoffice(store, {**detail, "type": "LAUNCH"}) == "failed"
    with pytest.raises(InvalidParameters):
        commands.send_from_backoffice(store, {"type": "STOP_SESSION"})


def test_active_profile_updates_go_only_to_partners_that_set_a_profile(env) -> None:
    from shared.services import charging_profiles

    store, pipe, stub = env["store"], env["pipe"], env["stub"]
    api = TestClient(load_app("chargingprofiles"), raise_server_exceptions=False)
    store.put_partner(
        {
            **store.get_partner("emsp-a"),
            "endpoints": [
                {"identifier": "chargingprofiles", "role": "SENDER", "url": f"{stub.base}/emsp-cp"}
            ],
        }
    )
    for sid in ("S1", "S3"):
        pipe.own(
            events.OWN_PUT,
            {
                "module": "sessions",
                "object": session(sid, ("DE", "ABC"), "2024-05-01T09:00:00Z", status="ACTIVE"),
            },
        )
    active = {"start_date_time": "2024-05-01T09:05:00Z", "charging_profile": PROFILE}
    # Nobody set a profile on S1 yet: the CPO SHALL NOT call the Sender interface.
    assert (
        charging_profiles.own_active_profile(store, {"session_id": "S1", "active_charging_profile": active})
        == 0
    )
    set_body = {"charging_profile": PROFILE, "response_url": f"{stub.base}/cb/set"}
    assert (
        api.put("/ocpi/2.2.1/receiver/chargingprofiles/S1", json=set_body, headers=env["a"]).json()["data"][
            "result"
        ]
        == "ACCEPTED"
    )
    pipe.queue.clear()
    pipe.bus.clear()
    assert (
        charging_profiles.own_active_profile(store, {"session_id": "S1", "active_charging_profile": active})
        == 1
    )
    assert pipe.run() == []
    (put,) = stub.calls("PUT")
    assert (
        put["path"] == "/ocpi/2.2.1/emsp-cp/S1" and put["body"]["start_date_time"] == "2024-05-01T09:05:00Z"
    )
    assert put["headers"]["OCPI-to-party-id"] == "ABC"
    with pytest.raises(InvalidParameters):
        charging_profiles.own_active_profile(store, {"session_id": "NOPE", "active_charging_profile": active})
    with pytest.raises(InvalidParameters):
        charging_profiles.own_active_profile(store, {"session_id": "S1", "active_charging_profile": {"x": 1}})


def test_response_url_must_be_on_the_callers_platform(env) -> None:
    store = env["store"]
    store.put_partner(
        {
            **store.get_partner("emsp-a"),
            "endpoints": [
                {"identifier": "commands", "role": "SENDER", "url": f"{env['stub'].base}/commands"}
            ],
        }
    )
    elsewhere = {**start(env, "x"), "response_url": "http://169.254.169.254/latest/meta-data"}
    code, body = post(env, "START_SESSION", elsewhere)
    assert (code, body["status_code"]) == (200, 2001) and "response_url" in body["status_message"]
    assert answer(*post(env, "START_SESSION", start(env, "ok"))) == (200, 1000, "ACCEPTED")


def test_answer_and_timeout_crossing_post_the_result_once(env, monkeypatch) -> None:
    store, pipe, stub = env["store"], env["pipe"], env["stub"]
    post(env, "START_SESSION", start(env, "cross"))
    (check,) = pipe.queue
    assert check.timeout_check and push.Delivery.from_message(check.to_message()) == check
    pipe.queue.clear()
    assert commands.record_result(store, {"command_id": check.object_id, "result": "ACCEPTED"}) == "applied"
    # The timeout check runs first (after the timeout, before the result's own delivery): not its job.
    monkeypatch.setattr(commands, "ensure_result", _expired(commands.ensure_result))
    assert push.deliver(store, check, store.get_partner("emsp-a"), FAST) == "answered"
    assert stub.calls() == []
    assert pipe.run() == []
    assert [r["body"] for r in stub.calls("POST")] == [{"result": "ACCEPTED"}]
