"""Hub client info receiver over HTTP (functions/hubclientinfo) on the memory store and DynamoDB
(moto): the spec's example (read from the chapter), only a HUB may call, ids, stale PUTs, 404 and
405 envelopes, the `client_info` mirror in the hub's partner record and its effect on push.targets,
the `ocpi.received.put` event and its `reconnected` flag."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from shared import events
from shared.services import credentials, hubclientinfo, push
from shared.store.base import ObjectRef
from tests.conftest import SPEC_DIR
from tests.integration.test_credentials import load_app
from tests.integration.test_locations import add_partner, hdr

CHAPTER = SPEC_DIR / "2.2.1" / "mod_hub_client_info.asciidoc"
RX = "/ocpi/2.2.1/receiver/hubclientinfo"
HUB_ID, HUB2_ID, EMSP_ID = "hub-a", "hub-b", "emsp-c"


def spec_example() -> tuple[str, str]:
    """The chapter's "Example: put a new ClientInfo object": (URL path tail "CC/PID", JSON text)."""
    text = CHAPTER.read_text(encoding="utf-8")
    section = text[text.index("Example: put a new ClientInfo object") :]
    block = re.search(r"^----\n(.*?)^----$", section, re.S | re.M).group(1)
    url = re.search(r"PUT To URL: (\S+)", block).group(1)
    return "/".join(url.rstrip("/").split("/")[-2:]), block[block.index("{") :]


def info(
    cc: str = "DE", pid: str = "ABC", status: str = "CONNECTED", lu: str = "2024-05-01T10:00:00Z"
) -> dict:
    return {"country_code": cc, "party_id": pid, "role": "EMSP", "status": status, "last_updated": lu}


@pytest.fixture
def env(any_store):
    bus: list[dict] = []
    events.set_sink(bus.append)
    a = add_partner(any_store, HUB_ID, "token-hub-a", [("HUB", "NL", "HBA"), ("EMSP", "DE", "ABC")])
    b = add_partner(any_store, HUB2_ID, "token-hub-b", [("HUB", "BE", "HBB")])
    c = add_partner(any_store, EMSP_ID, "token-emsp", [("EMSP", "FR", "EEE")])
    return {
        "store": any_store,
        "api": TestClient(load_app("hubclientinfo"), raise_server_exceptions=False),
        "a": a,
        "b": b,
        "c": c,
        "bus": bus,
    }


def url(cc: str = "DE", pid: str = "ABC") -> str:
    return f"{RX}/{cc}/{pid}"


def put(env, body: dict, who: str = "a", path: str | None = None):
    return env["api"].put(path or url(body["country_code"], body["party_id"]), json=body, headers=env[who])


def received(env) -> list[dict]:
    out = [json.loads(e["Detail"]) for e in env["bus"] if e["DetailType"] == "ocpi.received.put"]
    env["bus"].clear()
    return out


def mirror_of(env, partner_id: str = HUB_ID) -> dict:
    return env["store"].get_partner(partner_id).get("client_info") or {}


def test_spec_example_put_and_get(env) -> None:
    tail, text = spec_example()
    assert tail == "NL/ALL"
    raw = env["api"].put(
        f"{RX}/{tail}", content=text, headers={**env["a"], "Content-Type": "application/json"}
    )
    assert raw.status_code == 400 and raw.json()["status_code"] == 2001  # the example has a trailing comma
    example = json.loads(re.sub(r",\s*}", "}", text))
    lacking = put(env, example, path=f"{RX}/{tail}").json()
    assert (
        lacking["status_code"] == 2001 and "last_updated" in lacking["status_message"]
    )  # not in the example
    body = {**example, "last_updated": "2024-05-01T10:00:00Z"}
    resp = put(env, body, path=f"{RX}/{tail}")
    assert resp.status_code == 201 and resp.json()["status_code"] == 1000, resp.json()
    got = env["api"].get(f"{RX}/{tail}", headers=env["a"])
    assert got.status_code == 200 and got.json()["data"] == body
    assert mirror_of(env) == {
        "NL*ALL": {"status": "PLANNED", "role": "CPO", "last_updated": "2024-05-01T10:00:00Z"}
    }
    [event] = received(env)
    assert event["module"] == "hubclientinfo" and event["partner_id"] == HUB_ID
    assert (event["country_code"], event["party_id"], event["object"]) == ("NL", "ALL", body)
    assert event["status"] == "PLANNED" and event["previous_status"] is None and "reconnected" not in event
    # A second PUT replaces it (200) and mirrors the new status.
    again = put(
        env, {**body, "status": "CONNECTED", "last_updated": "2024-05-02T10:00:00Z"}, path=f"{RX}/{tail}"
    )
    assert again.status_code == 200 and again.json()["status_code"] == 1000
    assert mirror_of(env)["NL*ALL"]["status"] == "CONNECTED"


def test_only_a_hub_may_put_or_get(env) -> None:
    resp = put(env, info(), who="c")
    assert resp.status_code == 404 and resp.json()["status_code"] == 2000
    assert "HUB" in resp.json()["status_message"]
    assert env["api"].get(url(), headers=env["c"]).status_code == 404
    assert "client_info" not in env["store"].get_partner(EMSP_ID)
    assert received(env) == []
    assert env["api"].get(url(), headers={"Authorization": "Token bm9wZQ=="}).status_code == 401
    # Hubs are isolated from each other: hub B neither sees nor changes hub A's ClientInfo.
    assert put(env, info(status="OFFLINE")).status_code == 201
    assert env["api"].get(url(), headers=env["b"]).status_code == 404
    assert put(env, info(status="CONNECTED", lu="2030-01-01T00:00:00Z"), who="b").status_code == 201
    assert env["api"].get(url(), headers=env["a"]).json()["data"]["status"] == "OFFLINE"
    assert env["api"].get(url(), headers=env["b"]).json()["data"]["status"] == "CONNECTED"
    assert mirror_of(env)["DE*ABC"]["status"] == "OFFLINE"
    assert mirror_of(env, HUB2_ID)["DE*ABC"]["status"] == "CONNECTED"


def test_any_party_may_be_described_but_ids_must_match_the_url(env) -> None:
    # Not among the hub's own roles: accepted, a hub describes the parties behind it.
    assert put(env, info("FR", "ZZZ")).json()["status_code"] == 1000
    for body, path in (
        (info(pid="XYZ"), url()),
        (info(cc="BE"), url()),
        (info(status="ONLINE"), url()),
        (info(), f"{RX}/DEU/ABC"),
        ({k: v for k, v in info().items() if k != "role"}, url()),
    ):
        resp = put(env, body, path=path)
        assert resp.status_code == 200 and resp.json()["status_code"] == 2001, (body, resp.json())
    assert env["api"].get(url(), headers=env["a"]).status_code == 404
    # CiString: case-insensitive ids.
    assert put(env, info(cc="de", pid="abc"), path=url("de", "abc")).status_code == 201
    assert env["api"].get(url(), headers=env["a"]).json()["data"]["party_id"] == "abc"
    assert "DE*ABC" in mirror_of(env)


def test_stale_put_is_not_applied(env) -> None:
    put(env, info(status="OFFLINE", lu="2030-01-01T00:00:00Z"))
    received(env)
    late = put(env, info(status="CONNECTED", lu="2029-01-01T00:00:00Z"))
    assert late.status_code == 200
    assert late.json()["status_code"] == 1000 and "newer" in late.json()["status_message"]
    assert env["api"].get(url(), headers=env["a"]).json()["data"]["status"] == "OFFLINE"
    assert mirror_of(env)["DE*ABC"] == {
        "status": "OFFLINE",
        "role": "EMSP",
        "last_updated": "2030-01-01T00:00:00Z",
    }
    assert received(env) == []
    # Same last_updated: an idempotent retry is applied.
    assert put(env, info(status="OFFLINE", lu="2030-01-01T00:00:00Z")).json().get("status_message") is None


def test_get_unknown_and_other_verbs(env) -> None:
    resp = env["api"].get(url("NL", "NOP"), headers=env["a"])
    body = resp.json()
    assert resp.status_code == 404 and body["status_code"] == 2000 and "timestamp" in body
    assert ("NL*NOP" in body["status_message"] and "data" not in body) or body.get("data") is None
    for method in ("POST", "PATCH", "DELETE"):
        other = env["api"].request(method, url(), json=info(), headers=env["a"])
        assert other.status_code == 405 and "status_code" in other.json(), method
    assert env["api"].get("/ocpi/9.9/receiver/hubclientinfo/DE/ABC", headers=env["a"]).status_code == 404


def test_statuses_feed_push_targets(env) -> None:
    """A party the hub marks OFFLINE through the HTTP PUT is skipped by push.targets; CONNECTED
    again it is included, and the event says it reconnected (the operator resyncs)."""
    store = env["store"]
    hub = store.get_partner(HUB_ID)
    hub["endpoints"] = [{"identifier": "locations", "role": "RECEIVER", "url": "https://hub.test/locations"}]
    store.put_partner(hub)
    change = push.Change("locations", "put", "NL", "CPO", "LOC1")
    assert push.targets(change, store.list_partners()) == [HUB_ID]

    assert put(env, info(status="OFFLINE", lu="2024-05-01T10:00:00Z")).status_code == 201
    assert push.targets(change, store.list_partners()) == []
    assert store.get_partner(HUB_ID)["endpoints"] == hub["endpoints"]  # the rest of the record is kept
    assert received(env)[0]["previous_status"] is None

    assert put(env, info(status="CONNECTED", lu="2024-05-01T11:00:00Z")).status_code == 200
    assert push.targets(change, store.list_partners()) == [HUB_ID]
    [event] = received(env)
    assert event["reconnected"] is True and event["previous_status"] == "OFFLINE"

    put(env, info(status="SUSPENDED", lu="2024-05-01T12:00:00Z"))
    assert push.targets(change, store.list_partners()) == []
    put(env, info(status="CONNECTED", lu="2024-05-01T13:00:00Z"))
    assert push.targets(change, store.list_partners()) == [HUB_ID]
    assert [e.get("reconnected") for e in received(env)] == [None, True]

    # CONNECTED again, or from PLANNED / unknown: push never skipped it, nothing to resync.
    put(env, info(status="CONNECTED", lu="2024-05-01T14:00:00Z"))
    put(env, info(status="PLANNED", lu="2024-05-01T15:00:00Z"))
    assert push.targets(change, store.list_partners()) == [HUB_ID]
    put(env, info(status="CONNECTED", lu="2024-05-01T16:00:00Z"))
    put(env, info("FR", "NEW", status="CONNECTED"))
    assert [e.get("reconnected") for e in received(env)] == [None, None, None, None]


def test_mirror_never_goes_back_in_time(env) -> None:
    store = env["store"]
    put(env, info(status="OFFLINE", lu="2024-05-02T10:00:00Z"))
    older = info(status="CONNECTED", lu="2024-05-01T10:00:00Z")
    ref = ObjectRef(hubclientinfo.MODULE, "DE", "ABC", HUB_ID)
    assert not hubclientinfo.mirror(store, HUB_ID, ref, older, datetime(2024, 5, 1, 10, tzinfo=UTC))
    assert mirror_of(env)["DE*ABC"]["status"] == "OFFLINE"


def test_skipped_statuses_are_push_unreachable() -> None:
    assert hubclientinfo.SKIPPED_BY_PUSH == push.UNREACHABLE


def test_version_details_offer_the_receiver_for_every_role(any_store, monkeypatch) -> None:
    from shared import config

    monkeypatch.setenv("OCPI_MODULES", "credentials,hubclientinfo")
    config.reset_settings()
    _, token_a = credentials.invite(any_store, "hub")
    api = TestClient(load_app("versions"), raise_server_exceptions=False)
    eps = api.get("/ocpi/2.2.1", headers=hdr(token_a)).json()["data"]["endpoints"]
    assert {
        "identifier": "hubclientinfo",
        "role": "RECEIVER",
        "url": "https://ocpi.test/ocpi/2.2.1/receiver/hubclientinfo",
    } in eps
