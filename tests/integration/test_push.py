"""Push of our own objects to partners (shared/services/push.py) on both stores, against a real
HTTP receiver on loopback (tests/receiver_stub.py): who gets what, PATCH-or-PUT, coalescing after an
outage, order, no loss (every failure kind raises PushFailed; the last attempt releases the mark),
skipping unregistered / OFFLINE partners, CDRs posted once, tariff deletes, resync."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import events, jsonutil
from shared.services import ingest, push
from shared.store.base import ObjectRef
from tests.integration.test_ingest import evse, location, tariff, token
from tests.receiver_stub import ReceiverStub

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "ocpi-spec" / "2.2.1" / "examples"
EMSP, EMSP2, CPO = "emsp-partner", "emsp-partner-2", "cpo-partner"
FAST = push.PushSettings(timeout=1.0, breaker_seconds=0.0)


def partner(pid: str, role: str, cc: str, party: str, stub: ReceiverStub, **extra: Any) -> dict:
    return {
        "partner_id": pid,
        "status": "REGISTERED",
        "outbound_token": f"token-for-{pid}",
        "roles": [{"role": role, "country_code": cc, "party_id": party}],
        "endpoints": stub.endpoints(),
        **extra,
    }


class Pipeline:
    """The push pipeline without SQS: own changes (events captured from the bus) -> fan_out ->
    a FIFO list of deliveries -> deliver. Failed deliveries stay queued (SQS would retry them)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.bus: list[dict] = []
        self.queue: list[push.Delivery] = []
        self.results: list[tuple[push.Delivery, str]] = []
        events.set_sink(self.bus.append)
        push.set_queue_sink(self.queue.append)

    def own(self, detail_type: str, detail: dict) -> None:
        ingest.apply(self.store, detail_type, copy.deepcopy(detail))

    def fan_out(self) -> int:
        partners = self.store.list_partners()  # once per batch, as the function does
        changes = [e for e in self.bus if e["DetailType"] == events.OWN_CHANGED]
        self.bus.clear()
        before = len(self.queue)
        for e in changes:
            change = push.Change.from_event(
                {"detail-type": e["DetailType"], "detail": json.loads(e["Detail"])}
            )
            self.queue.extend(push.fan_out(self.store, change, partners, FAST))
        return len(self.queue) - before

    def deliver_all(self, settings: push.PushSettings = FAST) -> list[push.PushFailed]:
        """One attempt for every queued delivery (follow-ups included); failures stay queued."""
        failures: list[push.PushFailed] = []
        retry: list[push.Delivery] = []
        while self.queue:
            d = self.queue.pop(0)  # follow-ups queued by deliver() land at the end of self.queue
            try:
                label = push.deliver(self.store, d, self.store.get_partner(d.partner_id), settings)
            except push.PushFailed as err:
                failures.append(err)
                retry.append(d)
                continue
            self.results.append((d, label))
        self.queue.extend(retry)
        return failures

    def run(self) -> list[push.PushFailed]:
        self.fan_out()
        return self.deliver_all()


@pytest.fixture
def stub() -> Iterator[ReceiverStub]:
    with ReceiverStub() as s:
        yield s


@pytest.fixture
def pipe(any_store) -> Pipeline:
    return Pipeline(any_store)


def put_location(p: Pipeline, lid: str = "LOC1", lu: str = "2024-05-01T09:00:00Z", **detail: Any) -> None:
    p.own(events.OWN_PUT, {"module": "locations", "object": location(lid, lu), **detail})


def evse_status(p: Pipeline, status: str, lu: str, lid: str = "LOC1") -> None:
    p.own(
        events.OWN_PATCH,
        {
            "module": "locations",
            "country_code": "NL",
            "party_id": "CPO",
            "id": lid,
            "evse_uid": "3256",
            "fields": {"status": status, "last_updated": lu},
        },
    )


LOC_PATH = "locations/NL/CPO/LOC1"


# ------------------------------------------------------------------ who gets what
def test_locations_go_to_every_entitled_emsp_only(pipe: Pipeline, stub: ReceiverStub) -> None:
    s = pipe.store
    s.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    s.put_partner(partner(EMSP2, "EMSP", "BE", "XYZ", stub))
    s.put_partner(partner(CPO, "CPO", "DE", "CPX", stub))  # a CPO gets no locations
    s.put_partner({**partner("gone", "EMSP", "FR", "GON", stub), "status": "UNREGISTERED"})
    s.put_partner({**partner("no-receiver", "EMSP", "FR", "NOR", stub), "endpoints": []})
    s.put_partner({**partner("app", "EMSP", "FR", "APP", stub), "client": "app"})
    s.put_partner(
        partner("offline", "EMSP", "FR", "OFF", stub, client_info={"FR*OFF": {"status": "OFFLINE"}})
    )
    s.put_partner(
        partner("suspended", "EMSP", "FR", "SUS", stub, client_info={"FR*SUS": {"status": "SUSPENDED"}})
    )
    s.put_partner(
        partner("planned", "EMSP", "FR", "PLA", stub, client_info={"FR*PLA": {"status": "PLANNED"}})
    )
    put_location(pipe)
    assert pipe.fan_out() == 3
    assert sorted(d.partner_id for d in pipe.queue) == sorted([EMSP, EMSP2, "planned"])
    assert pipe.deliver_all() == []
    puts = stub.calls("PUT")
    assert len(puts) == 3 and {r["path"] for r in puts} == {f"/ocpi/2.2.1/{LOC_PATH}"}
    assert {(r["headers"]["OCPI-to-country-code"], r["headers"]["OCPI-to-party-id"]) for r in puts} == {
        ("DE", "ABC"),
        ("BE", "XYZ"),
        ("FR", "PLA"),
    }
    assert {r["headers"]["OCPI-from-party-id"] for r in puts} == {"CPO"}
    sent = stub.get(LOC_PATH)
    assert sent["id"] == "LOC1" and sent["evses"][0]["uid"] == "3256"


def test_push_to_limits_a_location_to_named_parties(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    pipe.store.put_partner(partner(EMSP2, "EMSP", "BE", "XYZ", stub))
    put_location(pipe, push_to=["de*abc"])
    assert pipe.run() == []
    assert [d.partner_id for d, label in pipe.results if label == "put"] == [EMSP]
    assert [d.partner_id for d, label in pipe.results if label == "filtered"] == [EMSP2]
    # The next whole PUT without push_to lifts the limit.
    put_location(pipe, lu="2024-05-01T10:00:00Z")
    assert pipe.run() == []
    assert sorted(r["headers"]["OCPI-to-party-id"] for r in stub.calls("PUT")) == ["ABC", "ABC", "XYZ"]


def test_bad_push_to_is_refused_by_ingest(memory_store) -> None:
    from shared.errors import InvalidParameters

    with pytest.raises(InvalidParameters, match="push_to"):
        ingest.parse(events.OWN_PUT, {"module": "locations", "object": location(), "push_to": ["NLCPO"]})
    with pytest.raises(InvalidParameters, match="push_to"):
        ingest.parse(events.OWN_PUT, {"module": "tariffs", "object": tariff(), "push_to": "DE*ABC"})


def test_tokens_go_to_cpo_partners(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(CPO, "CPO", "DE", "CPX", stub))
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    pipe.own(events.OWN_PUT, {"module": "tokens", "object": token()})
    assert pipe.run() == []
    (put,) = stub.calls("PUT")
    assert put["path"] == "/ocpi/2.2.1/tokens/NL/MSP/SECRETUID0042?type=RFID"
    assert put["headers"]["OCPI-to-party-id"] == "CPX"
    # A PATCH while the partner is current is a PATCH of the changed fields.
    pipe.own(
        events.OWN_PATCH,
        {
            "module": "tokens",
            "country_code": "NL",
            "party_id": "MSP",
            "id": "SECRETUID0042",
            "fields": {"valid": False, "last_updated": "2024-05-02T00:00:00Z"},
        },
    )
    assert pipe.run() == []
    (patch,) = stub.calls("PATCH")
    assert patch["path"] == "/ocpi/2.2.1/tokens/NL/MSP/SECRETUID0042?type=RFID"
    assert patch["body"] == {"valid": False, "last_updated": "2024-05-02T00:00:00Z"}


def session(sid: str, emsp: tuple[str, str], lu: str, **changes: Any) -> dict:
    s = json.loads((SPEC / "session_example_2_short_finished.json").read_text())
    s.update(
        country_code="NL",
        party_id="CPO",
        id=sid,
        cdr_token=dict(s["cdr_token"], country_code=emsp[0], party_id=emsp[1]),
        last_updated=lu,
        **changes,
    )
    return s


def cdr(cid: str, emsp: tuple[str, str]) -> dict:
    c = json.loads((SPEC / "cdr_example.json").read_text())
    c.update(
        country_code="NL",
        party_id="CPO",
        id=cid,
        cdr_token=dict(c["cdr_token"], country_code=emsp[0], party_id=emsp[1]),
    )
    return c


def test_sessions_and_cdrs_go_only_to_the_tokens_emsp(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    pipe.store.put_partner(partner(EMSP2, "EMSP", "BE", "XYZ", stub))
    pipe.own(
        events.OWN_PUT, {"module": "sessions", "object": session("S1", ("DE", "ABC"), "2024-05-01T09:00:00Z")}
    )
    pipe.own(events.OWN_PUT, {"module": "cdrs", "object": cdr("C1", ("BE", "XYZ"))})
    assert pipe.run() == []
    calls = [(r["method"], r["path"], r["headers"]["OCPI-to-party-id"]) for r in stub.calls()]
    assert calls == [
        ("PUT", "/ocpi/2.2.1/sessions/NL/CPO/S1", "ABC"),
        ("POST", "/ocpi/2.2.1/cdrs", "XYZ"),
    ]
    # A session PATCH (no cdr_token in the event): the addressee comes from the stored header.
    pipe.own(
        events.OWN_PATCH,
        {
            "module": "sessions",
            "country_code": "NL",
            "party_id": "CPO",
            "id": "S1",
            "fields": {"kwh": 12, "last_updated": "2024-05-01T09:30:00Z"},
        },
    )
    assert pipe.run() == []
    last = stub.calls()[-1]
    assert (last["method"], last["path"], last["headers"]["OCPI-to-party-id"]) == (
        "PATCH",
        "/ocpi/2.2.1/sessions/NL/CPO/S1",
        "ABC",
    )
    assert last["body"] == {"kwh": 12, "last_updated": "2024-05-01T09:30:00Z"}
    # Appended charging periods are never a PATCH: the whole session goes.
    period = {"start_date_time": "2024-05-01T09:40:00Z", "dimensions": [{"type": "ENERGY", "volume": 1}]}
    pipe.own(
        events.OWN_PATCH,
        {
            "module": "sessions",
            "country_code": "NL",
            "party_id": "CPO",
            "id": "S1",
            "fields": {"charging_periods": [period], "last_updated": "2024-05-01T09:45:00Z"},
        },
    )
    assert pipe.run() == []
    assert stub.calls()[-1]["method"] == "PUT"
    assert stub.get("sessions/NL/CPO/S1")["last_updated"] == "2024-05-01T09:45:00Z"


def test_a_cdr_is_posted_once(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    pipe.own(events.OWN_PUT, {"module": "cdrs", "object": cdr("C1", ("DE", "ABC"))})
    assert pipe.run() == []
    d = pipe.results[0][0]
    # A redelivered message (SQS delivers at least once) does not post it again.
    assert push.deliver(pipe.store, d, pipe.store.get_partner(EMSP), FAST) == "already"
    assert len(stub.calls("POST")) == 1


def test_deleted_tariff_is_deleted_at_the_partner(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    pipe.own(events.OWN_PUT, {"module": "tariffs", "object": tariff()})
    assert pipe.run() == []
    assert stub.get("tariffs/NL/CPO/T1") is not None
    pipe.own(events.OWN_DELETE, {"module": "tariffs", "country_code": "NL", "party_id": "CPO", "id": "T1"})
    assert pipe.run() == []
    assert stub.calls()[-1]["method"] == "DELETE" and stub.get("tariffs/NL/CPO/T1") is None


# ------------------------------------------------------------------ PATCH or PUT
def test_evse_status_is_a_patch_when_the_partner_is_current(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    assert pipe.run() == []
    evse_status(pipe, "CHARGING", "2024-05-01T10:00:00Z")
    assert pipe.run() == []
    patch = stub.calls()[-1]
    assert patch["method"] == "PATCH" and patch["path"] == f"/ocpi/2.2.1/{LOC_PATH}/3256"
    assert patch["body"] == {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}
    assert stub.get(LOC_PATH)["evses"][0]["status"] == "CHARGING"


def test_a_partner_that_lost_the_object_gets_a_put_after_its_404(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    assert pipe.run() == []
    stub.objects.clear()  # the partner wiped its database
    evse_status(pipe, "CHARGING", "2024-05-01T10:00:00Z")
    assert pipe.run() == []
    assert [r["method"] for r in stub.calls()] == ["PUT", "PATCH", "PUT"]
    assert stub.get(LOC_PATH)["evses"][0]["status"] == "CHARGING"


# ------------------------------------------------------------------ coalescing, order
def test_outage_backlog_costs_one_delivery_per_changed_object(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    for i in range(3):
        put_location(pipe, f"LOC{i}")
    assert pipe.run() == []
    stub.mode = "500"
    # 3 locations x 4 changes each, plus a location created during the outage.
    for n, status in enumerate(["CHARGING", "AVAILABLE", "BLOCKED", "CHARGING"]):
        for i in range(3):
            evse_status(pipe, status, f"2024-05-01T10:0{n}:00Z", lid=f"LOC{i}")
    put_location(pipe, "LOC9", "2024-05-01T10:05:00Z")
    assert pipe.fan_out() == 4  # one message per changed object, not per change
    before = len(stub.calls())
    for _ in range(3):  # the partner keeps failing: every attempt fails, nothing is lost
        assert len(pipe.deliver_all()) == 4
    stub.mode = "ok"
    assert pipe.deliver_all() == []
    ok = [r for r in stub.calls()[before:] if r["method"] in ("PUT", "PATCH")][-4:]
    # Back from the outage: exactly one call per changed object, each a PUT of the current state
    # (the partner missed more than one change, so a PATCH would not do).
    assert sorted(r["path"] for r in ok) == sorted(
        f"/ocpi/2.2.1/locations/NL/CPO/LOC{i}" for i in (0, 1, 2, 9)
    )
    assert {r["method"] for r in ok} == {"PUT"}
    for i in range(3):
        assert stub.get(f"locations/NL/CPO/LOC{i}")["evses"][0]["status"] == "CHARGING"
    assert pipe.queue == []


def test_change_during_a_delivery_gets_a_follow_up_and_order_holds(
    pipe: Pipeline, stub: ReceiverStub
) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    assert pipe.fan_out() == 1
    (d,) = pipe.queue
    pipe.queue.clear()
    real_get = pipe.store.get

    # The object changes between our read of the push state and the send.
    def get_then_change(ref: ObjectRef, **kw: Any):
        found = real_get(ref, **kw)
        pipe.store.get = real_get
        evse_status(pipe, "CHARGING", "2024-05-01T10:00:00Z")
        assert pipe.fan_out() == 0  # a delivery is in flight: the change is only counted
        return found

    pipe.store.get = get_then_change
    assert push.deliver(pipe.store, d, pipe.store.get_partner(EMSP), FAST) == "put"
    assert len(pipe.queue) == 1  # the follow-up
    assert pipe.deliver_all() == []
    assert stub.get(LOC_PATH)["evses"][0]["status"] == "CHARGING"
    sent = [r["body"]["last_updated"] for r in stub.calls()]
    assert sent == sorted(sent)  # never an older state after a newer one
    assert pipe.store.push_state(d.ref).inflight == {}


def test_duplicate_messages_never_send_an_older_state(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    pipe.fan_out()
    (d,) = pipe.queue
    evse_status(pipe, "CHARGING", "2024-05-01T10:00:00Z")
    pipe.fan_out()
    # SQS may deliver the same message twice, even after a newer change: each reads the current state.
    for _ in range(2):
        push.deliver(pipe.store, d, pipe.store.get_partner(EMSP), FAST)
    statuses = [json.dumps(r["body"]) for r in stub.calls()]
    assert all("CHARGING" in s for s in statuses)


# ------------------------------------------------------------------ failures
@pytest.mark.parametrize("mode", ["500", "garbage", "ocpi_error", "slow", "reset", "down"])
def test_every_failure_kind_is_push_failed_and_keeps_the_mark(
    pipe: Pipeline, stub: ReceiverStub, mode: str
) -> None:
    p = partner(EMSP, "EMSP", "DE", "ABC", stub)
    if mode == "down":  # nobody listens there
        p["endpoints"] = [
            {"identifier": "locations", "role": "RECEIVER", "url": "http://127.0.0.1:9/ocpi/locations"}
        ]
    pipe.store.put_partner(p)
    stub.mode, stub.delay = mode, 2.0
    put_location(pipe)
    failures = pipe.run()
    assert len(failures) == 1 and isinstance(failures[0], push.PushFailed)
    assert failures[0].partner_down == (mode in ("500", "slow", "reset", "down"))
    (d,) = pipe.queue
    assert EMSP in pipe.store.push_state(d.ref).inflight  # not given up: SQS retries it
    # The last attempt gives up the mark so the next change queues a fresh delivery.
    push.give_up(pipe.store, d)
    evse_status(pipe, "CHARGING", "2024-05-01T10:00:00Z")
    pipe.queue.clear()
    assert pipe.fan_out() == 1


def test_breaker_spares_a_dead_partner_further_calls(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    stub.mode = "500"
    for i in range(3):
        put_location(pipe, f"LOC{i}")
    pipe.fan_out()
    settings = push.PushSettings(timeout=1.0, breaker_seconds=30.0)
    failures = pipe.deliver_all(settings)
    assert len(failures) == 3 and all(f.partner_down for f in failures)
    assert len(stub.calls()) == 1  # the first failure opened the breaker: the others were not sent


def test_unregistered_partner_is_skipped_and_released(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    pipe.fan_out()
    p = pipe.store.get_partner(EMSP)
    pipe.store.put_partner({**p, "status": "UNREGISTERED"})
    assert pipe.deliver_all() == []
    assert pipe.results[-1][1] == "skipped" and stub.calls() == []
    assert pipe.store.push_state(pipe.results[-1][0].ref).inflight == {}
    # Unknown partner (deleted): the same.
    d = push.Delivery("nobody", "locations", "NL", "CPO", "LOC1")
    assert push.deliver(pipe.store, d, None, FAST) == "skipped"


def test_expired_mark_is_presumed_lost_and_requeued(any_store) -> None:
    ref = ObjectRef("locations", "NL", "CPO", "LOC1")
    assert any_store.push_mark(ref, ["a", "b"], {"action": "put"}, now=1000, lease=100) == (1, ["a", "b"])
    assert any_store.push_mark(ref, ["a", "b"], {"action": "patch"}, now=1050, lease=100) == (2, [])
    assert any_store.push_mark(ref, ["a", "b", "c"], {"action": "patch"}, now=1200, lease=100) == (
        3,
        ["a", "b", "c"],
    )
    state = any_store.push_state(ref)
    assert state.seq == 3 and state.change == {"action": "patch"} and set(state.inflight) == {"a", "b", "c"}
    assert any_store.push_ack(ref, "a", 2) is False  # read at 2, now at 3: the mark stays
    assert any_store.push_ack(ref, "b", 3) is True
    state = any_store.push_state(ref)
    assert state.acked == {"a": 2, "b": 3} and set(state.inflight) == {"a", "c"}
    any_store.push_release(ref, "c")
    assert set(any_store.push_state(ref).inflight) == {"a"}


def test_fan_out_to_many_partners_is_one_state_write(dynamo_store) -> None:
    from shared.store.meter import METER

    with ReceiverStub() as stub:
        for i in range(150):
            dynamo_store.put_partner(partner(f"p{i:03d}", "EMSP", "DE", f"A{i:02d}"[:3], stub))
    ref = ObjectRef("locations", "NL", "CPO", "LOC1")
    change = push.Change("locations", "patch", "NL", "CPO", "LOC1", evse_uid="1", fields=("status",))
    partners = dynamo_store.list_partners()
    METER.reset()
    out = push.fan_out(dynamo_store, change, partners, FAST)
    usage = METER.reset()
    assert len(out) == 150
    assert usage.requests["UpdateItem"] == 3  # 60 partners per UpdateItem
    assert dynamo_store.push_state(ref).seq == 1


def test_resync_queues_every_entitled_object(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    for i in range(3):
        put_location(pipe, f"LOC{i}")
    pipe.own(events.OWN_PUT, {"module": "tariffs", "object": tariff()})
    pipe.own(
        events.OWN_PUT, {"module": "sessions", "object": session("S1", ("DE", "ABC"), "2024-05-01T09:00:00Z")}
    )
    pipe.own(
        events.OWN_PUT, {"module": "sessions", "object": session("S2", ("BE", "XYZ"), "2024-05-01T09:00:00Z")}
    )
    pipe.bus.clear()  # as if the partner had missed all of it
    counts = push.resync(pipe.store, pipe.store.get_partner(EMSP))
    assert counts == {"locations": 3, "tariffs": 1, "tokens": 0, "sessions": 1, "cdrs": 0}
    assert pipe.deliver_all() == []
    assert len(stub.calls("PUT")) == 5


def test_change_event_parsing() -> None:
    with pytest.raises(ValueError):
        push.Change.from_event({"detail-type": "ocpi.own.put", "detail": {}})
    with pytest.raises(ValueError):
        push.Change.from_event({"detail-type": "ocpi.own.changed", "detail": {"module": "locations"}})
    with pytest.raises(ValueError):
        push.Change.from_event(
            {
                "detail-type": "ocpi.own.changed",
                "detail": {
                    "module": "x",
                    "action": "put",
                    "country_code": "NL",
                    "party_id": "CPO",
                    "id": "1",
                },
            }
        )
    with pytest.raises(ValueError):
        push.Delivery.from_message(
            '{"partner_id": "p", "module": "locations", "country_code": "NLX", "party_id": "CPO", "id": "1"}'
        )
    d = push.Delivery("p", "tokens", "NL", "MSP", "UID1", "RFID")
    assert push.Delivery.from_message(d.to_message()) == d
    assert "UID1" not in json.dumps(d.log_fields())
    assert jsonutil.loads(d.to_message())["type"] == "RFID"
    assert push.PushSettings(retry_base=30, retry_cap=3600).backoff(1) == 30
    assert push.PushSettings(retry_base=30, retry_cap=3600).backoff(5) == 480
    assert push.PushSettings(retry_base=30, retry_cap=3600).backoff(12) == 3600


def test_evse_patch_event_names_the_fields(memory_store) -> None:
    ingest.apply(memory_store, events.OWN_PUT, {"module": "locations", "object": location()})
    ingest.apply(
        memory_store,
        events.OWN_PATCH,
        {
            "module": "locations",
            "country_code": "NL",
            "party_id": "CPO",
            "id": "LOC1",
            "evse_uid": "3256",
            "fields": {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"},
        },
    )
    detail = json.loads(memory_store.published[-1]["Detail"])
    assert detail["fields"] == ["last_updated", "status"] and detail["evse_uid"] == "3256"
    assert evse()["uid"] == "3256"


def test_push_state_outlives_a_deleted_object(any_store) -> None:
    from shared.store.base import ObjectRef as Ref

    ref = Ref("tariffs", "NL", "CPO", "T1")
    ingest.apply(any_store, events.OWN_PUT, {"module": "tariffs", "object": tariff()})
    any_store.push_mark(ref, ["p"], {"action": "put"}, now=1000, lease=100)
    assert any_store.delete(ref) is True and any_store.get(ref) is None
    assert any_store.delete(ref) is False
    state = any_store.push_state(ref)  # seq and marks go on: a late ack of the old delivery cannot
    assert state.seq == 1 and "p" in state.inflight  # be taken for the delete's
    assert any_store.push_mark(ref, ["p"], {"action": "delete"}, now=1001, lease=100) == (2, [])


def test_redelivered_fan_out_requeues_whatever_the_marks(pipe: Pipeline, stub: ReceiverStub) -> None:
    pipe.store.put_partner(partner(EMSP, "EMSP", "DE", "ABC", stub))
    put_location(pipe)
    change = push.Change("locations", "put", "NL", "CPO", "LOC1")
    partners = pipe.store.list_partners()
    assert len(push.fan_out(pipe.store, change, partners, FAST)) == 1
    # The first attempt died after marking, before queueing: its retry queues anyway.
    assert push.fan_out(pipe.store, change, partners, FAST) == []
    assert len(push.fan_out(pipe.store, change, partners, FAST, redelivered=True)) == 1
