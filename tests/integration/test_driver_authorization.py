"""CPO-side driver authorization (mod_tokens WhitelistType) when the eMSP cannot be reached, and
token lookup by uid across eMSP parties. The online real-time path runs end to end in
tests/e2e/test_two_parties_master_data.py."""

from __future__ import annotations

import json

import pytest

from shared.auth import Caller
from shared.errors import NotEnoughInformation
from shared.services import objects, tokens
from shared.services.authorization import authorize_driver
from tests.integration.test_locations import EXAMPLES


def token(uid: str, whitelist: str, cc: str = "DE", pid: str = "MSP", valid: bool = True) -> dict:
    t = json.loads((EXAMPLES / "token_put_example.json").read_text())
    t.update({"uid": uid, "whitelist": whitelist, "valid": valid, "country_code": cc, "party_id": pid})
    return t


@pytest.fixture
def cpo(any_store):
    partner = {
        "partner_id": "emsp",
        "status": "REGISTERED",
        "roles": [
            {"role": "EMSP", "country_code": "DE", "party_id": "MSP"},
            {"role": "EMSP", "country_code": "DE", "party_id": "TWO"},
        ],
        # The eMSP is down: nothing listens on port 9.
        "endpoints": [{"identifier": "tokens", "role": "SENDER", "url": "http://127.0.0.1:9/tokens"}],
        "outbound_token": "t",
    }
    any_store.put_partner(partner)
    who = Caller("emsp", "C", partner)
    for t in (
        token("A1", "ALWAYS"),
        token("A2", "ALWAYS", valid=False),
        token("OFF", "ALLOWED_OFFLINE"),
        token("NV", "NEVER"),
        token("AL", "ALLOWED"),
        token("DUP", "ALWAYS"),
        token("DUP", "ALWAYS", pid="TWO"),
    ):
        objects.put_received(
            any_store, tokens.KIND, who, t["country_code"], t["party_id"], t["uid"], t, "RFID"
        )
    return any_store


@pytest.mark.parametrize(
    "uid,allowed,source",
    [
        ("A1", "ALLOWED", "whitelist"),
        ("a1", "ALLOWED", "whitelist"),  # uids are case-insensitive CiStrings
        ("A2", "BLOCKED", "whitelist"),
        ("AL", "ALLOWED", "whitelist"),
        ("OFF", "ALLOWED", "offline-whitelist"),
        ("NV", "NOT_ALLOWED", "real-time-unavailable"),
        ("NOBODY", "NOT_ALLOWED", "unknown-token"),
    ],
)
def test_decisions_without_the_emsp(cpo, uid: str, allowed: str, source: str) -> None:
    decision = authorize_driver(cpo, uid, "RFID")
    assert (decision["allowed"], decision["source"]) == (allowed, source)


def test_same_uid_at_two_emsp_parties_needs_the_party(cpo) -> None:
    with pytest.raises(NotEnoughInformation):
        authorize_driver(cpo, "DUP")
    assert authorize_driver(cpo, "DUP", emsp=("DE", "TWO"))["allowed"] == "ALLOWED"


def test_other_type_is_another_token(cpo) -> None:
    assert authorize_driver(cpo, "A1", "APP_USER")["source"] == "unknown-token"
