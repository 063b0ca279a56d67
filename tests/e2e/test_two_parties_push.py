"""Push of the CPO's own locations to its partners, end to end over real HTTP on loopback: the
back office puts events on the CPO stack's bus (EventBridge -> ingest -> `ocpi.own.changed` ->
PushFanoutQueue -> fan-out -> PushDeliveryQueue -> delivery) and the partner's receiver interface
ends up holding the CPO's current state.

- a location, then an EVSE status change, reach the eMSP stack; the status change as a PATCH;
- the eMSP is unreachable (stack frozen, proxy refusing) while 100 locations change (30 of them
  three times): once it is back it holds the final state of each, received with one call each;
- a partner that fails every attempt: the delivery lands in the push dead-letter queue; replayed
  once the partner is healthy, it brings the partner the location's current state.

The eMSP stack sits behind a counting proxy (tests/e2e/stacks.py CountingProxy) and advertises the
proxy's URL (OCPI_PUBLIC_URL), so every call the CPO makes to it is seen and can be refused.

Timing. A delivery is tried PushMaxAttempts (8) times, 1, 2, 4, 8, 10, 10, 10 s apart: 45 s in
all. The outage has to outlast the ingest of 160 back-office events and stay well inside those
45 s: ingest and fan-out take about 25 s on a 2-CPU machine (the whole stack is one Python process
with moto in it; a location takes about 0.25 s from back office to partner). The partner of the
dead-letter test fails from the start of the outage test on (fixture `failing_partner`), so its
45 s of attempts run beside the outage rather than after it.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import SPEC_DIR
from tests.e2e.stacks import (
    CPO_PARTIES,
    EMSP_PARTIES,
    CountingProxy,
    LocalStack,
    hdr,
    start_all,
    wait_for,
)
from tests.partner_stub import PartnerStub

pytestmark = pytest.mark.e2e

LOCATION = json.loads((SPEC_DIR / "2.2.1" / "examples" / "location_example.json").read_text())
# The eMSP's, as the CPO calls it (through the proxy), in the version both stacks negotiated (the highest).
RECEIVER = "/ocpi/2.3.0/receiver/locations/NL/CPO"
MAX_ATTEMPTS = 8
CPO_ENV = {
    "OCPI_PUSH_TIMEOUT": "1",
    "OCPI_PUSH_RETRY_CAP": "10",
    "OCPI_PUSH_BREAKER_SECONDS": "0.5",
    "PARAMETER_OVERRIDES": f"PushRetryBaseSeconds=1 PushMaxAttempts={MAX_ATTEMPTS}",
}
OBJECTS, CHANGED_THRICE = 100, 30  # the outage test's locations; those changed three times
EMSP_KEY, STUB_KEY = "DE*MSP", "DE*PRT"  # EMSP_PARTIES; PartnerStub's role


def location(loc_id: str, name: str, last_updated: str) -> dict[str, Any]:
    """The spec's example location as one of ours (NL*CPO), every timestamp = `last_updated`."""
    loc = copy.deepcopy(LOCATION)
    loc.update({"country_code": "NL", "party_id": "CPO", "id": loc_id, "name": name})
    loc["last_updated"] = last_updated
    for evse in loc["evses"]:
        evse["last_updated"] = last_updated
        for connector in evse["connectors"]:
            connector["last_updated"] = last_updated
    return loc


def put(loc: dict[str, Any], push_to: str | None = None) -> dict[str, Any]:
    """An `ocpi.own.put` detail; `push_to`: the one partner party that may receive it by push."""
    return {"module": "locations", "object": loc, **({"push_to": [push_to]} if push_to else {})}


def evse_status(loc_id: str, evse_uid: str, status: str, last_updated: str) -> dict[str, Any]:
    """An `ocpi.own.patch` detail: an EVSE status change."""
    return {
        "module": "locations",
        "country_code": "NL",
        "party_id": "CPO",
        "id": loc_id,
        "evse_uid": evse_uid,
        "fields": {"status": status, "last_updated": last_updated},
    }


def ok(status: int) -> bool:
    return 200 <= status < 300


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A CPO stack and an eMSP stack behind a counting proxy; the CPO registered with the eMSP
    through the proxy's versions URL."""
    tmp = tmp_path_factory.mktemp("push")
    cpo = LocalStack("push-cpo", CPO_PARTIES, tmp, extra_env=CPO_ENV)
    with CountingProxy() as proxy:
        emsp = LocalStack("push-emsp", EMSP_PARTIES, tmp, extra_env={"OCPI_PUBLIC_URL": proxy.base})
        proxy.target_port = emsp.port
        try:
            start_all(cpo, emsp)
            http = httpx.Client(timeout=10)
            invite = emsp.admin_json("invite", "--name", "cpo")
            assert invite["versions_url"].startswith(proxy.base), invite
            emsp_at_cpo = cpo.admin_json(
                "register", "--versions-url", invite["versions_url"], f"--token={invite['token']}"
            )
            yield {
                "cpo": cpo,
                "emsp": emsp,
                "proxy": proxy,
                "http": http,
                # the CPO's token at the eMSP: reads the eMSP's receiver interface (straight, not counted)
                "cpo_token": cpo.partner_secrets(emsp_at_cpo["partner_id"])["outbound_token"],
                # the eMSP's token at the CPO: reads the CPO's sender interface
                "emsp_token": emsp.partner_secrets(invite["partner_id"])["outbound_token"],
            }
        finally:
            proxy.down = False
            if "http" in locals():
                http.close()
            emsp.resume()  # never leave a stack frozen: SIGTERM would wait for SIGCONT
            with ThreadPoolExecutor(2) as pool:
                assert list(pool.map(LocalStack.stop, (cpo, emsp))) == [0, 0]


def held_by_emsp(pair: dict[str, Any], loc_id: str) -> dict[str, Any] | None:
    """The location as the eMSP holds it (its receiver GET, straight to the stack, not through the proxy)."""
    resp = pair["http"].get(f"{pair['emsp'].base}{RECEIVER}/{loc_id}", headers=hdr(pair["cpo_token"]))
    return resp.json().get("data") if resp.status_code == 200 else None


def held_by_cpo(pair: dict[str, Any], loc_id: str) -> dict[str, Any] | None:
    """The location as the CPO itself serves it (its sender GET): the state partners must reach."""
    url = f"{pair['cpo'].base}/ocpi/2.2.1/sender/locations/{loc_id}"
    resp = pair["http"].get(url, headers=hdr(pair["emsp_token"]))
    return resp.json().get("data") if resp.status_code == 200 else None


def listed_by_cpo(pair: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every location the CPO serves (its sender list, following the Link headers), by id."""
    out: dict[str, dict[str, Any]] = {}
    url: str | None = f"{pair['cpo'].base}/ocpi/2.2.1/sender/locations"
    while url:
        resp = pair["http"].get(url, headers=hdr(pair["emsp_token"]))
        assert resp.status_code == 200, resp.text
        out.update((loc["id"], loc) for loc in resp.json()["data"])
        url = resp.links.get("next", {}).get("url")
    return out


def drained(stack: LocalStack, *queues: str) -> bool:
    """Empty twice in a row: a batch handed from one poller to the next is not missed."""
    return stack.drained(*queues) and stack.drained(*queues)


def test_location_then_evse_status_reach_the_emsp(pair) -> None:
    cpo, proxy = pair["cpo"], pair["proxy"]
    mark = proxy.mark()
    loc = location("PUSH-1", "Pushed", "2030-01-01T00:00:00Z")
    cpo.put_events("ocpi.own.put", [put(loc)])
    # Whole: the eMSP writes the location and its EVSEs separately.
    assert wait_for(lambda: held_by_emsp(pair, "PUSH-1") == loc, timeout=10), held_by_emsp(pair, "PUSH-1")
    # A PUT of the whole location (201: new at the eMSP).
    assert [r for r in proxy.since(mark) if r[0] != "GET"] == [("PUT", f"{RECEIVER}/PUSH-1", 201)]

    mark = proxy.mark()
    uid = loc["evses"][0]["uid"]
    changed = "2030-01-01T00:05:00Z"
    cpo.put_events("ocpi.own.patch", [evse_status("PUSH-1", uid, "CHARGING", changed)])

    def charging() -> dict | None:
        # The EVSE, then its parent's last_updated (mod_locations: two writes at the eMSP).
        got = held_by_emsp(pair, "PUSH-1")
        done = got and got["evses"][0]["status"] == "CHARGING" and got["last_updated"] == changed
        return got if done else None

    got = wait_for(charging, timeout=10)
    assert got, held_by_emsp(pair, "PUSH-1")
    assert got["evses"][0]["last_updated"] == changed
    assert got == held_by_cpo(pair, "PUSH-1")  # the same on both sides, every last_updated included
    # The cheap call: a PATCH of the EVSE's changed fields, not a PUT of the whole location.
    assert [r for r in proxy.since(mark) if r[0] != "GET"] == [("PATCH", f"{RECEIVER}/PUSH-1/{uid}", 200)]


class HandshakeReceiverStub(PartnerStub):
    """tests/partner_stub.py (versions and credentials: the CPO registers with it) plus a locations
    Receiver (PUT and PATCH under `<base>/2.2.1/locations/`) that answers 500 while `fail_all` is
    set; `answered` keeps (method, path, status, body). Unlike tests/receiver_stub.py it takes part
    in the credentials handshake."""

    def __init__(self) -> None:
        self.answered: list[tuple[str, str, int, Any]] = []
        super().__init__()

    def _handler(self) -> type:
        stub = self
        base = super()._handler()

        class Handler(base):  # type: ignore[valid-type, misc]
            def _handle(self, method: str) -> None:
                if "/locations/" not in self.path:
                    super()._handle(method)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                token = self._token()
                stub.requests.append({"method": method, "path": self.path, "token": token, "body": body})
                ts = "2024-01-01T00:00:00Z"
                if stub.fail_all:
                    status, answer = 500, {"status_code": 3000, "timestamp": ts}
                elif token not in stub.accepted_tokens:
                    status, answer = 401, {"status_code": 2000, "timestamp": ts}
                else:
                    status, answer = 200, {"status_code": 1000, "timestamp": ts}
                stub.answered.append((method, self.path, status, body))
                self._send(status, answer)

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        return Handler


@pytest.fixture(scope="module")
def failing_partner(pair):
    """A third partner (EMSP DE*PRT, a locations Receiver) that answers 500 to everything, and
    location DLQ-1 (push_to: only that partner) put, then changed while its delivery fails."""
    cpo = pair["cpo"]
    with HandshakeReceiverStub() as stub:
        at_cpo = cpo.admin_json("register", "--versions-url", stub.versions_url, "--token=token-b")
        stub.fail_all = True
        loc = location("DLQ-1", "Dead letter", "2030-03-01T00:00:00Z")
        cpo.put_events("ocpi.own.put", [put(loc, push_to=STUB_KEY)])
        path = f"/2.2.1/locations/NL/CPO/{loc['id']}"
        assert wait_for(lambda: any(a[1] == path for a in stub.answered), timeout=10)
        # Changed while its delivery is failing: the same message will bring the change.
        uid = loc["evses"][0]["uid"]
        changed = "2030-03-01T00:10:00Z"
        cpo.put_events("ocpi.own.patch", [evse_status("DLQ-1", uid, "BLOCKED", changed)])

        def blocked() -> dict | None:
            # Both writes done: the EVSE's, then its parent's last_updated (mod_locations).
            got = held_by_cpo(pair, "DLQ-1")
            done = got and got["evses"][0]["status"] == "BLOCKED" and got["last_updated"] == changed
            return got if done else None

        current = wait_for(blocked, timeout=10)
        assert current, held_by_cpo(pair, "DLQ-1")
        yield {"stub": stub, "partner_id": at_cpo["partner_id"], "path": path, "current": current}


def only_failing_partner_left(cpo: LocalStack) -> bool:
    """Nothing left to deliver but the failing partner's one message (still retried, or already
    dead-lettered): the delivery queue and its DLQ hold one message together."""
    return cpo.queue_depth("PushDeliveryQueue") + cpo.queue_depth("PushDeliveryDeadLetterQueue") == 1


def test_outage_backlog_is_coalesced_to_one_call_per_object(pair, failing_partner) -> None:
    cpo, emsp, proxy = pair["cpo"], pair["emsp"], pair["proxy"]
    ids = [f"BULK-{n:03d}" for n in range(OBJECTS)]
    again = ids[:CHANGED_THRICE]
    uid = LOCATION["evses"][0]["uid"]
    t1, t2, t3 = "2030-02-01T00:00:00Z", "2030-02-01T00:01:00Z", "2030-02-01T00:02:00Z"
    on_the_way = ("IngestQueue", "PushFanoutQueue")  # upstream first
    outage = proxy.mark()
    proxy.down = True
    emsp.pause()
    try:
        # 160 changes of 100 locations (push_to: the eMSP only, not the failing partner). The v2
        # PUTs may be stored before the v1 PUTs (SQS keeps no order): v1 is then stale, not applied.
        # The EVSE PATCHes go after both are stored: a PUT older than a stored PATCH is not applied.
        cpo.put_events("ocpi.own.put", [put(location(i, f"{i} v1", t1), EMSP_KEY) for i in ids])
        cpo.put_events("ocpi.own.put", [put(location(i, f"{i} v2", t2), EMSP_KEY) for i in again])
        # Bounds for a loaded 2-core machine; a quiet one drains in a fraction of that.
        assert wait_for(lambda: drained(cpo, *on_the_way), timeout=90)
        cpo.put_events("ocpi.own.patch", [evse_status(i, uid, "OUTOFORDER", t3) for i in again])
        assert wait_for(lambda: drained(cpo, *on_the_way), timeout=45)
        refused = proxy.since(outage)
        # The CPO kept trying during the outage; nothing got through.
        assert refused and all(status == 0 for _, _, status in refused), refused[:5]
    finally:
        back = proxy.mark()
        emsp.resume()
        proxy.down = False
    assert cpo.queue_depth("IngestDeadLetterQueue") == 0

    final = {i: location(i, f"{i} v1", t1) for i in ids}
    for i in again:  # v2, then the EVSE PATCH, which also moved the location's last_updated
        final[i] = location(i, f"{i} v2", t2)
        final[i]["evses"][0].update(status="OUTOFORDER", last_updated=t3)
        final[i]["last_updated"] = t3
    pending = sorted(ids)

    def converged() -> bool:
        # In order, stopping at the first one not there yet (spares the busy eMSP stack).
        while pending and held_by_emsp(pair, pending[0]) == final[pending[0]]:
            pending.pop(0)
        return not pending

    assert wait_for(converged, timeout=90), f"{len(pending)} not at the eMSP, e.g. {pending[:5]}"
    assert wait_for(lambda: only_failing_partner_left(cpo), timeout=20)
    # ... which is the CPO's own state.
    listed = listed_by_cpo(pair)
    assert {i: listed.get(i) for i in ids} == final

    # One successful call per changed object after the outage (not one per change): a PUT of the
    # whole location, the eMSP not being known to hold any earlier state.
    calls = [r for r in proxy.since(back) if r[1].startswith(f"{RECEIVER}/BULK-") and ok(r[2])]
    per_object = Counter(path.split("/")[7] for _, path, _ in calls)
    assert per_object == dict.fromkeys(ids, 1), {k: v for k, v in per_object.items() if v != 1}
    assert {method for method, _, _ in calls} == {"PUT"}
    # Meanwhile the failing partner kept failing (its deliveries did not hold up the eMSP's).
    assert {status for _, _, status, _ in failing_partner["stub"].answered} == {500}


def test_dead_lettered_delivery_is_replayed_with_the_current_state(pair, failing_partner) -> None:
    cpo, proxy = pair["cpo"], pair["proxy"]
    stub, path, current = failing_partner["stub"], failing_partner["path"], failing_partner["current"]
    partner_id = failing_partner["partner_id"]
    assert wait_for(lambda: cpo.queue_depth("PushDeliveryDeadLetterQueue"), timeout=75), (
        stub.answered,
        cpo.queue_depth("PushDeliveryQueue"),
    )
    # Every attempt reached the partner (the breaker's 0.5 s are over before each retry); each
    # sent the location as it was then: the last ones the changed EVSE status.
    assert [(m, p, s) for m, p, s, _ in stub.answered] == [("PUT", path, 500)] * MAX_ATTEMPTS
    assert stub.answered[-1][3] == current
    # push_to kept the eMSP out, the PATCH included.
    assert not [r for r in proxy.since() if "/DLQ-1" in r[1]]

    # The partner is healthy again: the operator replays its dead-lettered deliveries. What was
    # replayed: which object for which partner (a delivery message never holds the object).
    stub.fail_all = False
    failed = len(stub.answered)
    what = ("partner_id", "ocpi_module", "party", "object_id")
    listed = cpo.admin_json("push", "dlq")  # the operator looks first (a listing hides nothing after)
    assert [{k: row.get(k) for k in what} for row in listed] == [
        {"partner_id": partner_id, "ocpi_module": "locations", "party": "NL*CPO", "object_id": "DLQ-1"}
    ]
    replayed = cpo.admin_json("push", "replay", "--partner", partner_id)
    assert [{k: row.get(k) for k in what} for row in replayed] == [
        {"partner_id": partner_id, "ocpi_module": "locations", "party": "NL*CPO", "object_id": "DLQ-1"}
    ]
    assert replayed[0]["receive_count"] == MAX_ATTEMPTS + 2  # + the listing's and the replay's receive

    assert wait_for(lambda: len(stub.answered) > failed and drained(cpo, "PushDeliveryQueue"), timeout=20)
    sent = stub.answered[failed:]
    assert [(m, p, s) for m, p, s, _ in sent] == [("PUT", path, 200)]
    assert sent[0][3] == current == held_by_cpo(pair, "DLQ-1")  # the location as it is now
    assert cpo.queue_depth("PushDeliveryDeadLetterQueue") == 0
    assert cpo.admin_json("push", "dlq") == []
