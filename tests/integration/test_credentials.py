"""Credentials and versions modules: every rule of credentials.asciidoc against a partner that
answers over real HTTP on loopback (tests/partner_stub.py); the store is memory and DynamoDB (moto)."""

from __future__ import annotations

import base64
import importlib.util
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shared.services import credentials as svc
from tests.partner_stub import PartnerStub

ROOT = Path(__file__).resolve().parents[2]


def load_app(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


def hdr(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


@pytest.fixture
def partner():
    with PartnerStub() as stub:
        yield stub


@pytest.fixture
def api(any_store, monkeypatch):
    monkeypatch.setenv("OCPI_MODULES", "credentials")
    return {
        "store": any_store,
        "creds": TestClient(load_app("credentials"), raise_server_exceptions=False),
        "versions": TestClient(load_app("versions"), raise_server_exceptions=False),
    }


def creds_body(partner: PartnerStub, token: str = "token-b", roles=None) -> dict:
    return {
        "token": token,
        "url": partner.versions_url,
        "roles": roles
        or [
            {"role": "EMSP", "country_code": "DE", "party_id": "PRT", "business_details": {"name": "Partner"}}
        ],
    }


def register(api, partner, name="p") -> tuple[str, str, dict]:
    partner_id, token_a = svc.invite(api["store"], name)
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    return partner_id, token_a, resp.json()


def test_versions_and_details_with_registration_token(api) -> None:
    _, token_a = svc.invite(api["store"], "p")
    body = api["versions"].get("/ocpi/versions", headers=hdr(token_a)).json()
    assert body["status_code"] == 1000
    assert body["data"] == [
        {"version": v, "url": f"https://ocpi.test/ocpi/{v}"} for v in ("2.1.1", "2.2.1", "2.3.0")
    ]
    details = api["versions"].get("/ocpi/2.2.1", headers=hdr(token_a)).json()["data"]
    assert details["version"] == "2.2.1"
    assert details["endpoints"] == [
        {"identifier": "credentials", "role": "SENDER", "url": "https://ocpi.test/ocpi/2.2.1/credentials"}
    ]
    assert api["versions"].get("/ocpi/9.9", headers=hdr(token_a)).status_code == 404
    assert api["versions"].get("/ocpi/versions").status_code == 401


def test_version_details_follow_deployed_modules_and_own_roles(api, monkeypatch) -> None:
    from shared import config

    monkeypatch.setenv("OCPI_MODULES", "credentials,locations,tokens,nonsense")
    config.reset_settings()
    _, token_a = svc.invite(api["store"], "p")
    eps = api["versions"].get("/ocpi/2.2.1", headers=hdr(token_a)).json()["data"]["endpoints"]
    pairs = {(e["identifier"], e["role"]) for e in eps}
    # Default own parties: one CPO and one eMSP, so both interfaces of each module.
    assert pairs == {
        ("credentials", "SENDER"),
        ("locations", "SENDER"),
        ("locations", "RECEIVER"),
        ("tokens", "SENDER"),
        ("tokens", "RECEIVER"),
    }
    assert "https://ocpi.test/ocpi/2.2.1/receiver/locations" in {e["url"] for e in eps}


def test_registration_by_a_partner(api, partner) -> None:
    partner_id, token_a, body = register(api, partner)
    assert body["status_code"] == 1000, body
    ours = body["data"]
    assert ours["url"] == "https://ocpi.test/ocpi/versions"
    assert {(r["role"], r["party_id"]) for r in ours["roles"]} == {("CPO", "CPO"), ("EMSP", "MSP")}
    token_c = ours["token"]
    assert token_c not in (token_a, "token-b") and len(token_c) <= 64
    # We called the partner back with its token B: versions, then details.
    assert [(r["method"], r["path"], r["token"]) for r in partner.requests] == [
        ("GET", "/versions", "token-b"),
        ("GET", "/2.2.1", "token-b"),
    ]
    stored = api["store"].get_partner(partner_id)
    assert stored["status"] == "REGISTERED" and stored["version"] == "2.2.1"
    assert svc.outbound_token(stored) == "token-b" and stored["outbound_token"] != "token-b"
    assert {e["identifier"] for e in stored["endpoints"]} == {"credentials", "locations"}
    assert "token_c" not in str(stored) and token_c not in str(stored)  # only the hash is kept
    # Token A is dead; token C works; GET returns our credentials with the caller's token.
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(token_a)).status_code == 401
    got = api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(token_c)).json()
    assert got["data"]["token"] == token_c


def test_post_when_registered_is_405_and_put_delete_when_not_are_405(api, partner) -> None:
    _, _, body = register(api, partner)
    token_c = body["data"]["token"]
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_c))
    assert resp.status_code == 405 and resp.json()["status_code"] == 2000
    _, fresh_a = svc.invite(api["store"], "q")
    for method in ("put", "delete"):
        kwargs = {"json": creds_body(partner)} if method == "put" else {}
        resp = getattr(api["creds"], method)("/ocpi/2.2.1/credentials", headers=hdr(fresh_a), **kwargs)
        assert resp.status_code == 405, method
        assert resp.json()["status_code"] == 2000


def test_token_a_cannot_be_reused(api, partner) -> None:
    _, token_a, _ = register(api, partner)
    again = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert again.status_code == 401


def test_expired_token_a_is_refused(api, partner) -> None:
    _, token_a = svc.invite(api["store"], "p", ttl=-1)
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert resp.status_code == 401
    assert partner.requests == []


def test_partner_callback_failure_is_3001_and_token_a_survives(api, partner) -> None:
    partner.fail_all = True
    partner_id, token_a = svc.invite(api["store"], "p")
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert resp.json()["status_code"] == 3001
    assert api["store"].get_partner(partner_id)["status"] == "INVITED"
    partner.fail_all = False
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert resp.json()["status_code"] == 1000


def test_wrong_token_b_is_3001(api, partner) -> None:
    _, token_a = svc.invite(api["store"], "p")
    resp = api["creds"].post(
        "/ocpi/2.2.1/credentials", json=creds_body(partner, token="not-accepted"), headers=hdr(token_a)
    )
    assert resp.json()["status_code"] == 3001


def test_missing_required_endpoints_is_3003(api, partner) -> None:
    partner.modules = [("locations", "RECEIVER")]
    _, token_a = svc.invite(api["store"], "p")
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert resp.json()["status_code"] == 3003


def test_no_common_version_is_3002(api, partner) -> None:
    partner.versions = ["2.0"]
    _, token_a = svc.invite(api["store"], "p")
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a))
    assert resp.json()["status_code"] == 3002


def test_highest_common_version_is_chosen(api, partner) -> None:
    partner.versions = ["2.1.1", "2.2.1"]
    partner_id, _, body = register(api, partner)
    assert body["status_code"] == 1000
    assert api["store"].get_partner(partner_id)["version"] == "2.2.1"


def test_bad_credentials_body_is_2001_and_nothing_stored(api, partner) -> None:
    partner_id, token_a = svc.invite(api["store"], "p")
    bad = creds_body(partner)
    bad["roles"][0]["party_id"] = "TOOLONG"
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=bad, headers=hdr(token_a))
    assert resp.json()["status_code"] == 2001 and "party_id" in resp.json()["status_message"]
    resp = api["creds"].post("/ocpi/2.2.1/credentials", content=b"{nope", headers=hdr(token_a))
    assert resp.status_code == 400 and resp.json()["status_code"] == 2001
    assert api["store"].get_partner(partner_id)["status"] == "INVITED"


def test_party_collision_is_refused(api, partner) -> None:
    register(api, partner, "first")
    second_id, token_a2 = svc.invite(api["store"], "second")
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr(token_a2))
    body = resp.json()
    assert body["status_code"] == 2001 and "DE*PRT" in body["status_message"]
    assert api["store"].get_partner(second_id)["status"] == "INVITED"
    # Same party id under another role is a different key: allowed.
    other_role = creds_body(
        partner,
        roles=[{"role": "CPO", "country_code": "DE", "party_id": "PRT", "business_details": {"name": "P"}}],
    )
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=other_role, headers=hdr(token_a2))
    assert resp.json()["status_code"] == 1000


def test_claiming_one_of_our_own_parties_is_refused(api, partner) -> None:
    _, token_a = svc.invite(api["store"], "p")
    ours = creds_body(
        partner,
        roles=[
            {"role": "CPO", "country_code": "NL", "party_id": "CPO", "business_details": {"name": "Imposter"}}
        ],
    )
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=ours, headers=hdr(token_a))
    assert resp.json()["status_code"] == 2001


def test_rotation_by_put(api, partner) -> None:
    partner_id, _, body = register(api, partner)
    token_c = body["data"]["token"]
    partner.accepted_tokens.add("token-b2")
    resp = api["creds"].put(
        "/ocpi/2.2.1/credentials", json=creds_body(partner, token="token-b2"), headers=hdr(token_c)
    )
    assert resp.json()["status_code"] == 1000, resp.json()
    new_c = resp.json()["data"]["token"]
    assert new_c != token_c
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(token_c)).status_code == 401
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(new_c)).status_code == 200
    assert svc.outbound_token(api["store"].get_partner(partner_id)) == "token-b2"
    assert partner.requests[-1]["token"] == "token-b2"  # endpoints re-read with the new token


def test_put_to_unsupported_version_path_is_404(api, partner) -> None:
    _, _, body = register(api, partner)
    resp = api["creds"].put(
        "/ocpi/2.0/credentials", json=creds_body(partner), headers=hdr(body["data"]["token"])
    )
    assert resp.status_code == 404


def test_unregister_by_delete(api, partner) -> None:
    partner_id, _, body = register(api, partner)
    token_c = body["data"]["token"]
    resp = api["creds"].delete("/ocpi/2.2.1/credentials", headers=hdr(token_c))
    assert resp.json()["status_code"] == 1000
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(token_c)).status_code == 401
    assert api["store"].get_partner(partner_id)["status"] == "UNREGISTERED"
    # Its parties are free again.
    register(api, partner, "successor")


# ------------------------------------------------------------------ we initiate
def test_register_update_unregister_with_a_partner(api, partner) -> None:
    partner.accepted_tokens = {"their-token-a"}
    p = svc.register_with(api["store"], "https://ocpi.test", partner.versions_url, "their-token-a", "X")
    assert p["status"] == "REGISTERED" and svc.outbound_token(p) == "token-c-0"
    sent = partner.received_credentials[0]
    assert sent["url"] == "https://ocpi.test/ocpi/versions" and len(sent["token"]) >= 32
    # The partner can use our token B for every module now.
    got = api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(sent["token"]))
    assert got.status_code == 200
    assert {(r["role"], r["party_id"]) for r in p["roles"]} == {("EMSP", "PRT")}

    p2 = svc.update_with(api["store"], "https://ocpi.test", p["partner_id"])
    assert svc.outbound_token(p2) == "token-c-1"
    new_b = partner.received_credentials[1]["token"]
    assert partner.requests[-3]["method"] == "PUT" and partner.requests[-3]["token"] == "token-c-0"
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(sent["token"])).status_code == 401
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(new_b)).status_code == 200

    p3 = svc.unregister_with(api["store"], p["partner_id"])
    assert p3["status"] == "UNREGISTERED" and partner.requests[-1]["method"] == "DELETE"
    assert api["creds"].get("/ocpi/2.2.1/credentials", headers=hdr(new_b)).status_code == 401


def test_register_with_unreachable_partner_fails_cleanly(api) -> None:
    from shared.errors import ClientApiError

    with pytest.raises(ClientApiError):
        svc.register_with(api["store"], "https://ocpi.test", "http://127.0.0.1:9/versions", "a")
    assert api["store"].list_partners() == []


def test_registration_token_expiry_is_bounded(api) -> None:
    _, token_a = svc.invite(api["store"], "p", ttl=60)
    from shared.auth import hash_token

    rec = api["store"].get_token(hash_token(token_a))
    assert rec.kind == "A" and 0 < rec.expires_at - time.time() <= 61


def test_our_handshake_token_b_cannot_register_the_partner_twice(api, partner) -> None:
    """While we register with a partner, our token B opens versions/credentials for it; it must not
    open a second registration through POST."""
    from shared.store.base import TokenRecord

    api["store"].put_partner({"partner_id": "px", "status": "REGISTERING", "roles": []})
    from shared.auth import hash_token

    api["store"].put_token(TokenRecord(hash_token("our-b"), "px", "A", int(time.time()) + 60))
    assert api["versions"].get("/ocpi/versions", headers=hdr("our-b")).status_code == 200
    resp = api["creds"].post("/ocpi/2.2.1/credentials", json=creds_body(partner), headers=hdr("our-b"))
    assert resp.status_code == 405


def test_put_credentials_under_another_version_switches_the_partner(api, partner) -> None:
    """A partner registered over 2.2.1 PUTs its credentials under /ocpi/2.1.1 (single party, raw
    token): it now speaks 2.1.1 with us, and our answer is a 2.1.1 credentials object."""
    partner.versions = ["2.1.1", "2.2.1"]
    partner_id, _, body = register(api, partner)
    assert api["store"].get_partner(partner_id)["version"] == "2.2.1"
    token_c = body["data"]["token"]
    flat = {
        "token": "token-b",
        "url": partner.versions_url,
        "party_id": "PRT",
        "country_code": "DE",
        "business_details": {"name": "Partner"},
    }
    resp = api["creds"].put(
        "/ocpi/2.1.1/credentials", json=flat, headers={"Authorization": f"Token {token_c}"}
    )
    answer = resp.json()
    assert answer["status_code"] == 1000, answer
    assert "roles" not in answer["data"] and answer["data"]["party_id"] == "CPO"  # our CPO party
    stored = api["store"].get_partner(partner_id)
    assert stored["version"] == "2.1.1"
    assert [(r["role"], r["country_code"], r["party_id"]) for r in stored["roles"]] == [("EMSP", "DE", "PRT")]
