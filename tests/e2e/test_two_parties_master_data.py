"""Locations, tariffs and tokens between two local stacks over real HTTP on loopback: each back
office publishes its own objects on its bus (ingest through EventBridge -> SQS -> ingest function),
the eMSP pulls the CPO's locations and tariffs, the CPO pulls the eMSP's tokens, and a real-time
authorization crosses over from the CPO to the eMSP."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import SPEC_DIR
from tests.e2e.stacks import CPO_PARTIES, EMSP_PARTIES, LocalStack, hdr, wait_for

pytestmark = pytest.mark.e2e
EX = SPEC_DIR / "2.2.1" / "examples"
CPO = CPO_PARTIES
EMSP = EMSP_PARTIES


def own(name: str, cc: str, pid: str, **extra) -> dict:
    obj = json.loads((EX / name).read_text())
    obj.update({"country_code": cc, "party_id": pid, **extra})
    return obj


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("md")
    cpo, emsp = LocalStack("md-cpo", CPO, tmp), LocalStack("md-emsp", EMSP, tmp)
    try:
        cpo.start()
        emsp.start()
        invite = cpo.admin_json("invite", "--name", "emsp")
        at_emsp = emsp.admin_json(
            "register", "--versions-url", invite["versions_url"], f"--token={invite['token']}"
        )
        at_cpo = next(p for p in cpo.admin_json("partners") if p["partner_id"] == invite["partner_id"])
        yield {"cpo": cpo, "emsp": emsp, "tmp": tmp, "cpo_at_emsp": at_emsp, "emsp_at_cpo": at_cpo}
    finally:
        assert (cpo.stop(), emsp.stop()) == (0, 0)


def publish(stack: LocalStack, tmp, module: str, obj: dict, *extra: str) -> None:
    path = tmp / f"{module}-{obj.get('id') or obj.get('uid')}.json"
    path.write_text(json.dumps(obj))
    stack.admin("publish", "--module", module, "--file", str(path), *extra)


def test_emsp_pulls_locations_and_tariffs_of_the_cpo(connected) -> None:
    cpo, emsp, tmp = connected["cpo"], connected["emsp"], connected["tmp"]
    loc = own("location_example.json", "NL", "CPO")
    tariff = own("tariff_1_simple_2hour.json", "NL", "CPO")
    publish(cpo, tmp, "locations", loc)
    publish(cpo, tmp, "tariffs", tariff)
    # The eMSP's token at the CPO reads the CPO's sender interface once ingest has stored them.
    emsp_token = emsp.partner_secrets(connected["cpo_at_emsp"]["partner_id"])["outbound_token"]

    def listed():
        body = httpx.get(
            cpo.base + "/ocpi/2.2.1/sender/locations", headers=hdr(emsp_token), timeout=10
        ).json()
        return body.get("data")

    assert wait_for(listed) == [loc]
    result = emsp.admin("pull", connected["cpo_at_emsp"]["partner_id"], "--json")
    assert result.returncode == 0, result.stderr
    # What the eMSP now holds equals what the CPO published, read through the eMSP's receiver
    # interface with the CPO's own token at the eMSP.
    cpo_token = cpo.partner_secrets(connected["emsp_at_cpo"]["partner_id"])["outbound_token"]
    got = httpx.get(f"{emsp.base}/ocpi/2.2.1/receiver/locations/NL/CPO/{loc['id']}", headers=hdr(cpo_token))
    assert got.json().get("data") == loc, (got.status_code, got.json(), result.stdout)
    got = httpx.get(f"{emsp.base}/ocpi/2.2.1/receiver/tariffs/NL/CPO/{tariff['id']}", headers=hdr(cpo_token))
    assert got.json()["data"] == tariff
    # An EVSE status change from the CPO's back office reaches the CPO's sender interface.
    patch = tmp / "status.json"
    patch.write_text(json.dumps({"status": "CHARGING", "last_updated": "2031-01-01T00:00:00Z"}))
    cpo.admin(
        "publish",
        "--module",
        "locations",
        "--patch",
        "--file",
        str(patch),
        "--country-code",
        "NL",
        "--party-id",
        "CPO",
        "--id",
        loc["id"],
        "--evse-uid",
        loc["evses"][0]["uid"],
    )

    def status():
        url = f"{cpo.base}/ocpi/2.2.1/sender/locations/{loc['id']}/{loc['evses'][0]['uid']}"
        return httpx.get(url, headers=hdr(emsp_token)).json()["data"]["status"] == "CHARGING"

    assert wait_for(status)


def test_cpo_pulls_tokens_and_authorizes_in_real_time(connected) -> None:
    cpo, emsp, tmp = connected["cpo"], connected["emsp"], connected["tmp"]
    realtime = own("token_put_example.json", "DE", "MSP", uid="RT-1", whitelist="NEVER")
    listed = own("token_put_example.json", "DE", "MSP", uid="WL-1", whitelist="ALWAYS", valid=False)
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"allowed_location_ids": ["LOC1"]}))
    publish(emsp, tmp, "tokens", realtime, "--authorization", str(policy))
    publish(emsp, tmp, "tokens", listed)
    cpo_token = cpo.partner_secrets(connected["emsp_at_cpo"]["partner_id"])["outbound_token"]

    def both():
        body = httpx.get(emsp.base + "/ocpi/2.2.1/sender/tokens", headers=hdr(cpo_token)).json()
        return len(body.get("data") or []) == 2

    assert wait_for(both)
    pulled = cpo.admin("pull", connected["emsp_at_cpo"]["partner_id"], "--module", "tokens", "--json")
    assert pulled.returncode == 0, pulled.stderr

    # Whitelisted (ALWAYS) but invalid: decided locally.
    local = cpo.admin("authorize", "--uid", "WL-1", "--json", check=False)
    assert json.loads(local.stdout) == {
        **json.loads(local.stdout),
        "allowed": "BLOCKED",
        "source": "whitelist",
    }
    # NEVER: real-time request to the eMSP, over HTTP, which applies its location policy.
    allowed = json.loads(cpo.admin("authorize", "--uid", "RT-1", "--location-id", "LOC1", "--json").stdout)
    assert allowed["allowed"] == "ALLOWED" and allowed["source"] == "real-time"
    assert allowed["authorization_reference"] and allowed["location"] == {"location_id": "LOC1"}
    refused = cpo.admin("authorize", "--uid", "RT-1", "--location-id", "ELSEWHERE", "--json", check=False)
    assert json.loads(refused.stdout)["allowed"] == "NOT_ALLOWED" and refused.returncode != 0
    unknown = cpo.admin("authorize", "--uid", "NOBODY", "--json", check=False)
    assert json.loads(unknown.stdout)["source"] == "unknown-token"
