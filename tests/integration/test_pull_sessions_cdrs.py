"""Pulling sessions and CDRs from a CPO partner's sender interface (shared/services/pull.py) over
real HTTP: stored exactly as the receiver's PUT / POST would store them, `date_from` always sent for
sessions, one pass per own eMSP party (the CPO shows each party only its own), identical CDRs
counted as unchanged (`stale`), changed ones rejected."""

from __future__ import annotations

import copy
import json

import pytest

from shared import config
from shared.services import pull
from tests.integration.test_pull import SenderStub, add_partner, as_json, example, receiver_get


@pytest.fixture
def stub():
    with SenderStub() as s:
        yield s


def session(i: int) -> dict:
    s = example("session_example_2_short_finished.json")
    s.update({"id": f"S{i}", "last_updated": f"2015-06-29T23:50:1{i}Z"})
    return s


def test_pull_sessions_and_cdrs(any_store, stub, monkeypatch) -> None:
    add_partner(any_store, stub, modules=("sessions", "cdrs"))
    stub.objects["sessions"] = [session(i) for i in range(3)]
    cdr = example("cdr_example.json")
    stub.objects["cdrs"] = [cdr]
    published: list = []
    monkeypatch.setattr("shared.events._sink", published.append)

    assert pull.pull(any_store, "p1", "sessions") == {
        "fetched": 3,
        "created": 3,
        "updated": 0,
        "stale": 0,
        "rejected": 0,
    }
    first = stub.pages("sessions")[0]
    assert first["query"]["date_from"] == pull.FULL_PULL_DATE_FROM  # required by mod_sessions
    assert (first["headers"]["ocpi-from-country-code"], first["headers"]["ocpi-from-party-id"]) == (
        "NL",
        "MSP",
    )
    for s in stub.objects["sessions"]:
        assert receiver_get("sessions", f"BE/BEC/{s['id']}") == as_json(s)

    assert pull.pull(any_store, "p1", "cdrs")["created"] == 1
    assert receiver_get("cdrs", "BE/BEC/12345") == as_json(cdr)
    assert "date_from" not in stub.pages("cdrs")[0]["query"]  # optional for CDRs
    published.clear()
    # Pulled again: the identical CDR is no change (no event); a changed one is refused, not stored.
    assert pull.pull(any_store, "p1", "cdrs")["stale"] == 1 and published == []
    stub.objects["cdrs"] = [dict(copy.deepcopy(cdr), remark="changed")]
    assert pull.pull(any_store, "p1", "cdrs")["rejected"] == 1
    assert receiver_get("cdrs", "BE/BEC/12345") == as_json(cdr)


def test_sessions_are_pulled_for_each_own_emsp_party(memory_store, stub, monkeypatch) -> None:
    parties = [
        {"country_code": "NL", "party_id": "CPO", "role": "CPO", "business_details": {"name": "c"}},
        {"country_code": "NL", "party_id": "MSP", "role": "EMSP", "business_details": {"name": "m"}},
        {"country_code": "BE", "party_id": "MS2", "role": "EMSP", "business_details": {"name": "m2"}},
    ]
    monkeypatch.setenv("OCPI_OWN_PARTIES", json.dumps(parties))
    config.reset_settings()
    add_partner(memory_store, stub, modules=("sessions",))
    stub.objects["sessions"] = [session(1)]
    counts = pull.pull(memory_store, "p1", "sessions", date_from="2015-01-01T00:00:00Z")
    # The stub shows every party the same session: fetched twice, stored once.
    assert counts["fetched"] == 2 and counts["created"] == 1 and counts["updated"] == 1
    froms = [
        (r["headers"]["ocpi-from-country-code"], r["headers"]["ocpi-from-party-id"]) for r in stub.requests
    ]
    assert froms == [("NL", "MSP"), ("BE", "MS2")]
    assert {r["query"]["date_from"] for r in stub.requests} == {"2015-01-01T00:00:00Z"}
