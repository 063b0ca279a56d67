"""Two local stacks — a CPO deployment and an eMSP deployment, each with its own moto — connect
over real HTTP on loopback with ocpi-admin: each side initiates once, rotates and unregisters."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.e2e.stacks import CPO_PARTIES, EMSP_PARTIES, LocalStack

pytestmark = pytest.mark.e2e

CPO = CPO_PARTIES
EMSP = EMSP_PARTIES


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacks")
    # Warm containers trust a token lookup for OCPI_AUTH_CACHE_TTL seconds: a token revoked by
    # another process (ocpi-admin) dies within that bound. One second keeps this test quick.
    env = {"OCPI_AUTH_CACHE_TTL": "1"}
    cpo = LocalStack("e2e-cpo", CPO, tmp, env)
    emsp = LocalStack("e2e-emsp", EMSP, tmp, env)
    try:
        cpo.start()
        emsp.start()
        yield cpo, emsp
    finally:
        codes = (cpo.stop(), emsp.stop())
        assert codes == (0, 0), codes


def call(stack: LocalStack, token: str, path: str = "/ocpi/2.2.1/credentials") -> httpx.Response:
    hdr = {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}
    return httpx.get(stack.base + path, headers=hdr, timeout=10)


def by_id(stack: LocalStack, partner_id: str) -> dict:
    return next(p for p in stack.admin_json("partners") if p["partner_id"] == partner_id)


def only_registered(stack: LocalStack) -> dict:
    regs = [p for p in stack.admin_json("partners") if p["status"] == "REGISTERED"]
    assert len(regs) == 1, regs
    return regs[0]


def handshake(initiator: LocalStack, receiver: LocalStack) -> tuple[dict, dict]:
    invite = receiver.admin_json("invite", "--name", initiator.name)
    assert invite["versions_url"] == receiver.versions_url
    # Token A opens the versions module only.
    assert call(receiver, invite["token"], "/ocpi/versions").json()["status_code"] == 1000
    mine = initiator.admin_json(
        "register", "--versions-url", invite["versions_url"], f"--token={invite['token']}"
    )
    # Both stacks offer 2.1.1, 2.2.1 and 2.3.0: the highest common one is negotiated.
    assert mine["status"] == "REGISTERED" and mine["version"] == "2.3.0"
    theirs = by_id(receiver, invite["partner_id"])
    assert theirs["status"] == "REGISTERED"
    # Token A is dead now.
    assert call(receiver, invite["token"], "/ocpi/versions").status_code == 401
    return mine, theirs


def test_both_directions_rotate_and_unregister(stacks) -> None:
    cpo, emsp = stacks
    for initiator, receiver in ((emsp, cpo), (cpo, emsp)):
        mine, theirs = handshake(initiator, receiver)
        # Each side knows the other's parties and endpoints.
        assert {(r["country_code"], r["party_id"]) for r in mine["roles"]} == {
            (p["country_code"], p["party_id"]) for p in (CPO if receiver is cpo else EMSP)
        }
        assert {(r["country_code"], r["party_id"]) for r in theirs["roles"]} == {
            (p["country_code"], p["party_id"]) for p in (EMSP if receiver is cpo else CPO)
        }
        assert any(e["identifier"] == "credentials" for e in mine["endpoints"])

        # Both tokens work across the wire.
        to_receiver = initiator.partner_secrets(mine["partner_id"])["outbound_token"]
        to_initiator = receiver.partner_secrets(theirs["partner_id"])["outbound_token"]
        # At rest both are sealed with each stack's KMS key (the template's OcpiKey, in moto).
        for stack, pid in ((initiator, mine["partner_id"]), (receiver, theirs["partner_id"])):
            assert stack.partner_secrets(pid)["outbound_token_stored"].startswith("kms:v1:")
        assert call(receiver, to_receiver).json()["data"]["token"] == to_receiver
        assert call(initiator, to_initiator).json()["status_code"] == 1000

        # Rotation: both old tokens die, the new ones work.
        initiator.admin_json("update", mine["partner_id"])
        new_to_receiver = initiator.partner_secrets(mine["partner_id"])["outbound_token"]
        new_to_initiator = receiver.partner_secrets(theirs["partner_id"])["outbound_token"]
        assert new_to_receiver != to_receiver and new_to_initiator != to_initiator
        time.sleep(1.1)  # the initiator's server process may still trust its cached lookup
        assert call(receiver, to_receiver).status_code == 401
        assert call(initiator, to_initiator).status_code == 401
        assert call(receiver, new_to_receiver).status_code == 200
        assert call(initiator, new_to_initiator).status_code == 200

        # Unregister: both sides stop, tokens dead at once.
        gone = initiator.admin_json("unregister", mine["partner_id"])
        assert gone["status"] == "UNREGISTERED"
        assert by_id(receiver, theirs["partner_id"])["status"] == "UNREGISTERED"
        time.sleep(1.1)
        assert call(receiver, new_to_receiver).status_code == 401
        assert call(initiator, new_to_initiator).status_code == 401


def test_cli_reports_failures_with_nonzero_exit(stacks) -> None:
    cpo, emsp = stacks
    bad = emsp.admin("register", "--versions-url", cpo.versions_url, "--token", "wrong", check=False)
    assert bad.returncode != 0 and "3001" in bad.stderr
    down = emsp.admin(
        "register", "--versions-url", "http://127.0.0.1:9/ocpi/versions", "--token", "x", check=False
    )
    assert down.returncode != 0 and "error:" in down.stderr
    missing = emsp.admin("update", "no-such-partner", check=False)
    assert missing.returncode != 0
