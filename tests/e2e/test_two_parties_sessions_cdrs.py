"""Sessions and CDRs between two local stacks over real HTTP on loopback: the CPO's back office
records a session (then a PATCH adding a charging period) and a CDR through `ocpi-admin publish`
(EventBridge -> SQS -> ingest), the CPO's sender interface lists them for the eMSP, the eMSP pulls
them (`ocpi-admin pull --module sessions|cdrs`) and returns through its receiver interface exactly
the objects the CPO published."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from tests.conftest import SPEC_DIR
from tests.e2e.stacks import CPO_PARTIES, EMSP_PARTIES, LocalStack, hdr, wait_for

pytestmark = pytest.mark.e2e
EX = SPEC_DIR / "2.2.1" / "examples"
CPO = CPO_PARTIES
EMSP = EMSP_PARTIES
OURS = {"country_code": "NL", "party_id": "CPO"}
TOKEN_PARTY = {"country_code": "DE", "party_id": "MSP"}  # the eMSP's drivers


@pytest.fixture(scope="module")
def connected(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sc")
    cpo, emsp = LocalStack("sc-cpo", CPO, tmp), LocalStack("sc-emsp", EMSP, tmp)
    try:
        cpo.start()
        emsp.start()
        invite = cpo.admin_json("invite", "--name", "emsp")
        at_emsp = emsp.admin_json(
            # `--token=` form: a token may start with "-", which argparse would take for an option.
            "register",
            "--versions-url",
            invite["versions_url"],
            f"--token={invite['token']}",
        )
        at_cpo = next(p for p in cpo.admin_json("partners") if p["partner_id"] == invite["partner_id"])
        yield {"cpo": cpo, "emsp": emsp, "tmp": tmp, "cpo_at_emsp": at_emsp, "emsp_at_cpo": at_cpo}
    finally:
        assert (cpo.stop(), emsp.stop()) == (0, 0)


def write(tmp, name: str, obj: dict) -> str:
    path = tmp / name
    path.write_text(json.dumps(obj))
    return str(path)


def test_emsp_pulls_exactly_the_sessions_and_cdrs_the_cpo_recorded(connected) -> None:
    cpo, emsp, tmp = connected["cpo"], connected["emsp"], connected["tmp"]
    session = json.loads((EX / "session_example_2_short_finished.json").read_text())
    session.update({**OURS, "id": "E2E-S1", "status": "ACTIVE"})
    session["cdr_token"].update(TOKEN_PARTY)
    session.pop("end_date_time")
    patch = json.loads((EX / "session_patch_example_charging_period.json").read_text())
    patch.update(
        {
            "status": "COMPLETED",
            "end_date_time": "2015-06-30T00:05:00Z",
            "last_updated": "2015-06-30T00:10:00Z",
        }
    )
    patch["charging_periods"][0]["start_date_time"] = "2015-06-29T23:40:00Z"
    cdr = json.loads((EX / "cdr_example.json").read_text())
    cdr.update({**OURS, "id": "E2E-CDR1", "session_id": session["id"]})
    cdr["cdr_token"].update(TOKEN_PARTY)

    cpo.admin("publish", "--module", "sessions", "--file", write(tmp, "session.json", session))
    cpo.admin("publish", "--module", "cdrs", "--file", write(tmp, "cdr.json", cdr))
    expected = copy.deepcopy(session)
    expected.update({k: v for k, v in patch.items() if k != "charging_periods"})
    expected["charging_periods"] = session["charging_periods"] + patch["charging_periods"]

    emsp_token = emsp.partner_secrets(connected["cpo_at_emsp"]["partner_id"])["outbound_token"]

    def sender_list(module: str, query: str = ""):
        resp = httpx.get(f"{cpo.base}/ocpi/2.2.1/sender/{module}{query}", headers=hdr(emsp_token), timeout=10)
        return resp.json().get("data")

    since = "?date_from=2000-01-01T00:00:00Z"
    # The PATCH goes out once the session is stored (SQS does not keep order: a PATCH before its
    # session would be retried, but waiting keeps this test fast).
    assert wait_for(lambda: sender_list("sessions", since)) == [session]
    cpo.admin(
        "publish",
        "--module",
        "sessions",
        "--patch",
        "--file",
        write(tmp, "patch.json", patch),
        "--country-code",
        "NL",
        "--party-id",
        "CPO",
        "--id",
        session["id"],
    )
    assert wait_for(lambda: sender_list("sessions", since) == [expected]), sender_list("sessions", since)
    assert wait_for(lambda: sender_list("cdrs")) == [cdr]
    # The sender needs date_from for sessions (mod_sessions).
    assert (
        httpx.get(f"{cpo.base}/ocpi/2.2.1/sender/sessions", headers=hdr(emsp_token)).json()["status_code"]
        == 2001
    )

    # The CPO pushed both to the eMSP (shared/services/push.py): read through the eMSP's receiver
    # interface with the CPO's token there.
    cpo_token = cpo.partner_secrets(connected["emsp_at_cpo"]["partner_id"])["outbound_token"]

    def held(path: str):
        return httpx.get(f"{emsp.base}/ocpi/2.2.1/receiver/{path}", headers=hdr(cpo_token)).json().get("data")

    assert wait_for(lambda: held(f"sessions/NL/CPO/{session['id']}") == expected), held(
        f"sessions/NL/CPO/{session['id']}"
    )
    assert wait_for(lambda: held(f"cdrs/NL/CPO/{cdr['id']}") == cdr), held(f"cdrs/NL/CPO/{cdr['id']}")

    # The pull (recovery path) then finds exactly what the push delivered: nothing new.
    partner = connected["cpo_at_emsp"]["partner_id"]
    for module in ("sessions", "cdrs"):
        result = emsp.admin("pull", partner, "--module", module, "--json")
        counts = json.loads(result.stdout)
        assert counts["fetched"] == 1 and counts["created"] == 0 and counts["rejected"] == 0, counts
    assert held(f"sessions/NL/CPO/{session['id']}") == expected

    # Pulling the CDR again changes nothing (identical: not stored twice).
    again = json.loads(emsp.admin("pull", partner, "--module", "cdrs", "--full", "--json").stdout)
    assert again["created"] == 0 and again["stale"] == 1 and again["rejected"] == 0

    # Billing runs on both sides (ocpi-admin billing run -> ClearingQueue -> the billing worker in
    # the stack's SQS poller): the day of the CDR in Europe/Amsterdam (the template's default).
    emsp_id = connected["emsp_at_cpo"]["partner_id"]
    for stack, partner_id, direction in ((cpo, emsp_id, "sent"), (emsp, partner, "received")):
        run = stack.admin_json(
            "billing", "run", "--period", "2015-06-30", "--partner", partner_id, "--wait", "60"
        )
        assert run["waiting_for"] == [], run
        statement = stack.admin_json("billing", "show", partner_id, "2015-06-30")
        assert [
            (t["direction"], t["currency"], t["cdrs"], t["total_cost_excl_vat"]) for t in statement["totals"]
        ] == [(direction, "EUR", 1, "4.0000")]
        assert statement["discrepancies"]["session_without_cdr"]["count"] == 0
        got = stack.admin_json("billing", "download", partner_id, "2015-06-30", "--out", str(tmp / direction))
        assert "E2E-CDR1" in (tmp / direction / "lines.csv").read_text() and got["statement"].endswith(
            ".json"
        )
