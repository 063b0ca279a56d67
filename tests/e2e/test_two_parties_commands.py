"""Commands end to end over real HTTP on loopback: the eMSP stack sends START_SESSION (then
RESERVE_NOW and CANCEL_RESERVATION) to the CPO stack with `ocpi-admin command`; the CPO's back office
(a test double: an EventBridge rule on the CPO's bus to a queue the test reads) sees
`ocpi.command.requested` and answers `ocpi.command.result`; the CPO's push pipeline POSTs the
CommandResult to the eMSP's response_url, where the eMSP stack stores it once."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import SPEC_DIR
from tests.e2e.stacks import CPO_PARTIES, EMSP_PARTIES, LocalStack, start_all, wait_for

pytestmark = pytest.mark.e2e
LOCATION = json.loads((SPEC_DIR / "2.2.1" / "examples" / "location_example.json").read_text())
TOKEN = {
    "country_code": "DE",
    "party_id": "MSP",
    "uid": "APP-USER-1",
    "type": "APP_USER",
    "contract_id": "DE-MSP-C00001",
    "issuer": "Local eMSP",
    "valid": True,
    "whitelist": "ALLOWED",
    "last_updated": "2030-01-01T00:00:00Z",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("commands")
    cpo = LocalStack("cmd-cpo", CPO_PARTIES, tmp, extra_env={"OCPI_COMMAND_TIMEOUT": "30"})
    emsp = LocalStack("cmd-emsp", EMSP_PARTIES, tmp)
    try:
        start_all(cpo, emsp)
        invite = cpo.admin_json("invite", "--name", "emsp")
        emsp.admin_json("register", "--versions-url", invite["versions_url"], f"--token={invite['token']}")
        cpo_at_emsp = next(p for p in emsp.admin_json("partners") if p.get("status") == "REGISTERED")
        # The back-office double: every ocpi.command.requested of the CPO's bus lands in a queue.
        sqs, bus = cpo.aws("sqs"), cpo.exports()["OCPI_EVENT_BUS_NAME"]
        url = sqs.create_queue(QueueName=f"{cpo.name}-backoffice")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = cpo.aws("events")
        events.put_rule(
            Name="backoffice-commands",
            EventBusName=bus,
            EventPattern=json.dumps({"detail-type": ["ocpi.command.requested"]}),
        )
        events.put_targets(Rule="backoffice-commands", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
        loc = copy.deepcopy(LOCATION)
        loc.update(country_code="NL", party_id="CPO", id="CMD-1", last_updated="2030-01-01T00:00:00Z")
        for evse in loc["evses"]:
            evse["capabilities"] = ["REMOTE_START_STOP_CAPABLE", "RESERVABLE"]
        cpo.put_events("ocpi.own.put", [{"module": "locations", "object": loc}])
        yield {
            "cpo": cpo,
            "emsp": emsp,
            "partner": cpo_at_emsp["partner_id"],
            "backoffice": url,
            "tmp": tmp,
            "evse": loc["evses"][0]["uid"],
        }
    finally:
        cpo.stop()
        emsp.stop()


def backoffice_requests(pair: dict) -> list[dict[str, Any]]:
    sqs = pair["cpo"].aws("sqs")
    msgs = sqs.receive_message(QueueUrl=pair["backoffice"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    )
    for m in msgs:
        sqs.delete_message(QueueUrl=pair["backoffice"], ReceiptHandle=m["ReceiptHandle"])
    return [json.loads(m["Body"])["detail"] for m in msgs]


def send(pair: dict, command: str, request: dict[str, Any]) -> dict[str, Any]:
    """`ocpi-admin command` on the eMSP stack (exit code 1 unless ACCEPTED; the JSON either way)."""
    path = pair["tmp"] / f"{command}.json"
    path.write_text(json.dumps(request))
    done = pair["emsp"].admin("command", pair["partner"], command, "--file", str(path), "--json", check=False)
    out = json.loads(done.stdout)
    assert done.returncode == (0 if out["response"]["result"] == "ACCEPTED" else 1)
    return out


def roundtrip(pair: dict, command: str, request: dict[str, Any], result: str) -> dict[str, Any]:
    """Send a command from the eMSP, answer it from the CPO's back office, wait for the eMSP to hold
    the result; returns the eMSP's record of the command."""
    sent = send(pair, command, request)
    assert sent["response"]["result"] == "ACCEPTED", sent
    got: list[dict] = []
    assert wait_for(lambda: got.extend(backoffice_requests(pair)) or got, timeout=20)
    (req,) = got
    assert req["type"] == command and (req["emsp_country_code"], req["emsp_party_id"]) == ("DE", "MSP")
    pair["cpo"].put_events("ocpi.command.result", [{"command_id": req["command_id"], "result": result}])

    def status() -> dict[str, Any] | None:
        found = pair["emsp"].admin_json("command-status", sent["command_id"])
        return found if found.get("result") else None

    found = wait_for(status, timeout=20)
    assert found, f"no result at the eMSP for {command}"
    return found


def test_start_session_accepted_by_the_charger(pair) -> None:
    # The location must be stored at the CPO before the eMSP can command it.
    assert wait_for(lambda: pair["cpo"].drained("IngestQueue"), timeout=20)
    found = roundtrip(
        pair,
        "START_SESSION",
        {"token": TOKEN, "location_id": "CMD-1", "evse_uid": pair["evse"]},
        "ACCEPTED",
    )
    assert found["result"]["result"] == "ACCEPTED" and found["type"] == "START_SESSION"
    # Both stacks offer 2.1.1, 2.2.1 and 2.3.0: the highest, 2.3.0, was negotiated.
    assert "/ocpi/2.3.0/sender/commands/START_SESSION/" in found["request"]["response_url"]


def test_reserve_then_cancel(pair) -> None:
    assert wait_for(lambda: pair["cpo"].drained("IngestQueue"), timeout=20)
    reserve = {
        "token": TOKEN,
        "expiry_date": "2030-01-01T01:00:00Z",
        "reservation_id": "RES-1",
        "location_id": "CMD-1",
        "evse_uid": pair["evse"],
    }
    assert roundtrip(pair, "RESERVE_NOW", reserve, "ACCEPTED")["result"]["result"] == "ACCEPTED"
    cancel = {"reservation_id": "RES-1"}
    assert roundtrip(pair, "CANCEL_RESERVATION", cancel, "ACCEPTED")["result"]["result"] == "ACCEPTED"
    # An unknown reservation is refused at once (the CPO holds none by that id for this eMSP).
    refused = send(pair, "CANCEL_RESERVATION", {"reservation_id": "RES-404"})
    assert refused["response"]["result"] == "REJECTED"


def test_charging_profile_set_and_its_result(pair) -> None:
    """The eMSP's SetChargingProfile on one of the CPO's sessions; the CPO's back office answers;
    the ChargingProfileResult arrives at the response_url (a receiver on loopback standing in for the
    eMSP's callback)."""
    import httpx

    from tests.e2e.stacks import hdr
    from tests.receiver_stub import ReceiverStub

    cpo = pair["cpo"]
    session = json.loads(
        (SPEC_DIR / "2.2.1" / "examples" / "session_example_1_simple_start.json").read_text()
    )
    session.update(
        country_code="NL",
        party_id="CPO",
        id="CP-SESSION-1",
        location_id="CMD-1",
        evse_uid=pair["evse"],
        status="ACTIVE",
        last_updated="2030-01-01T00:00:00Z",
        cdr_token={
            "country_code": "DE",
            "party_id": "MSP",
            "uid": "APP-USER-1",
            "type": "APP_USER",
            "contract_id": "DE-MSP-C00001",
        },
    )
    cpo.put_events("ocpi.own.put", [{"module": "sessions", "object": session}])
    assert wait_for(lambda: cpo.drained("IngestQueue"), timeout=20)
    token = pair["emsp"].partner_secrets(pair["partner"])["outbound_token"]  # the eMSP's token at the CPO
    with ReceiverStub() as callback:
        body = {
            "charging_profile": {
                "charging_rate_unit": "W",
                "charging_profile_period": [{"start_period": 0, "limit": 7400}],
            },
            "response_url": f"{callback.base}/chargingprofiles/result/42",
        }
        resp = httpx.put(
            f"{cpo.base}/ocpi/2.2.1/receiver/chargingprofiles/CP-SESSION-1",
            json=body,
            headers=hdr(token),
            timeout=10,
        ).json()
        assert resp["status_code"] == 1000 and resp["data"]["result"] == "ACCEPTED", resp
        got: list[dict] = []
        assert wait_for(lambda: got.extend(backoffice_requests(pair)) or got, timeout=20)
        (req,) = got
        assert req["type"] == "SET_PROFILE" and req["request"]["session_id"] == "CP-SESSION-1"
        cpo.put_events("ocpi.command.result", [{"command_id": req["command_id"], "result": "ACCEPTED"}])
        assert wait_for(lambda: callback.calls("POST"), timeout=20)
        (post,) = callback.calls("POST")
        assert post["path"] == "/ocpi/2.2.1/chargingprofiles/result/42" and post["body"] == {
            "result": "ACCEPTED"
        }
