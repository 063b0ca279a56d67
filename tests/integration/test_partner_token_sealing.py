"""The token we use to call a partner is sealed at rest (shared/secrets.py): AWS KMS on the DynamoDB
store (moto, the key from template.yaml's OcpiKey), bound to its partner by the encryption context,
opened once per container and token, never in clear in the table, in listings or in logs. Legacy
clear tokens keep working and `ocpi-admin partners seal-tokens` seals them. A KMS failure is an
outbound failure the push and pull paths already handle: nothing is lost. Partners register over
real HTTP on loopback (tests/partner_stub.py, tests/receiver_stub.py)."""

from __future__ import annotations

import base64
import json
import logging
import secrets as random_tokens
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from fastapi.testclient import TestClient

from shared import secrets
from shared.admin import cli
from shared.errors import ClientApiError
from shared.services import credentials as svc
from shared.services import pull
from shared.store import keys
from tests.conftest import TEMPLATE
from tests.integration.test_credentials import creds_body, hdr, load_app
from tests.integration.test_push import Pipeline, put_location
from tests.integration.test_push import partner as push_partner
from tests.partner_stub import PartnerStub
from tests.receiver_stub import ReceiverStub

BASE = "https://ocpi.test"


@pytest.fixture(scope="module")
def moto_kms() -> Iterator[tuple[dict, dict[str, str]]]:
    """moto for the whole module with the bus of template.yaml (provisioning the whole template per
    test costs over a second of CPU each); every test gets its own table and KMS key."""
    from moto import mock_aws

    from shared.local.template import load_template

    with mock_aws():
        template = load_template(TEMPLATE)
        yield template, _provision(template, {"OcpiBus"}, "seal")


def _provision(template: dict, wanted: set[str], stack_name: str) -> dict[str, str]:
    from shared.local.template import Resolver, provision

    subset = {**template, "Resources": {k: r for k, r in template["Resources"].items() if k in wanted}}
    resolver = Resolver(
        subset, stack_name=stack_name, region="eu-west-1", account_id="123456789012", parameter_overrides={}
    )
    return provision(subset, resolver)


@pytest.fixture
def aws(moto_kms, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Logical id -> name, as conftest's ``aws``, with the DynamoDB store of a fresh table plugged in
    and OCPI_KMS_KEY_ID set as the template sets it for every function."""
    from shared import config
    from shared.store import dynamodb_client, set_store
    from shared.store.dynamo import DynamoStore

    template, names = moto_kms
    names = {**names, **_provision(template, {"OcpiTable", "OcpiKey"}, f"seal-{random_tokens.token_hex(4)}")}
    monkeypatch.setenv("OCPI_TABLE_NAME", names["OcpiTable"])
    monkeypatch.setenv("OCPI_EVENT_BUS_NAME", names["OcpiBus"])
    monkeypatch.setenv("OCPI_KMS_KEY_ID", names["OcpiKey"])
    config.reset_settings()
    set_store(DynamoStore(dynamodb_client(), names["OcpiTable"]))
    return names


@pytest.fixture
def kms_store(aws) -> Any:
    from shared.store import get_store

    return get_store()


@pytest.fixture
def partner() -> Iterator[PartnerStub]:
    with PartnerStub() as stub:
        stub.token = "tok-" + random_tokens.token_urlsafe(24)  # unmistakable in any dump
        stub.accepted_tokens = {stub.token}
        yield stub


@pytest.fixture
def receiver() -> Iterator[ReceiverStub]:
    with ReceiverStub() as stub:
        yield stub


@pytest.fixture
def creds_api(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("OCPI_MODULES", "credentials")
    return TestClient(load_app("credentials"), raise_server_exceptions=False)


def raw_item(aws: dict, partner_id: str) -> dict:
    """The partner's item as DynamoDB holds it (no store code in between)."""
    key = {"PK": {"S": keys.partner_pk(partner_id)}, "SK": {"S": "P"}}
    return boto3.client("dynamodb").get_item(TableName=aws["OcpiTable"], Key=key)["Item"]


def stored_token(aws: dict, partner_id: str) -> str | None:
    data = raw_item(aws, partner_id)["data"]["M"]
    return data["outbound_token"]["S"] if "outbound_token" in data else None


def kms_open(sealed: str, partner_id: str) -> str:
    """Decrypt with KMS directly, as an auditor with kms:Decrypt would."""
    blob = base64.b64decode(sealed.removeprefix("kms:v1:"))
    context = {"purpose": "ocpi-partner-token", "partner_id": partner_id}
    return boto3.client("kms").decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"].decode()


def register_partner(store: Any, api: TestClient, stub: PartnerStub) -> tuple[str, str]:
    """The partner registers with us (POST credentials with token A); returns (partner_id, token C)."""
    partner_id, token_a = svc.invite(store, "sealed")
    body = api.post(
        "/ocpi/2.2.1/credentials", json=creds_body(stub, token=stub.token), headers=hdr(token_a)
    ).json()
    assert body["status_code"] == 1000, body
    return partner_id, body["data"]["token"]


def count_kms(counter: Counter) -> None:
    """Count every KMS request this container sends (its one client), by operation."""

    def on_send(request: Any, **_: Any) -> None:
        counter[request.headers["X-Amz-Target"].decode().split(".")[-1]] += 1

    secrets._kms().meta.events.register("before-send.kms", on_send)


# ------------------------------------------------------------------ at rest
def test_handshake_stores_a_kms_sealed_token_bound_to_its_partner(
    kms_store, aws, partner, creds_api, caplog, capsys
) -> None:
    caplog.set_level(logging.INFO)
    partner_id, _ = register_partner(kms_store, creds_api, partner)
    item = raw_item(aws, partner_id)
    dump = json.dumps(item)
    assert partner.token not in dump
    assert base64.b64encode(partner.token.encode()).decode() not in dump
    sealed = stored_token(aws, partner_id)
    assert sealed.startswith("kms:v1:") and len(sealed) > 60

    # It opens with its partner's context only: copied to another partner, it is useless.
    assert kms_open(sealed, partner_id) == partner.token
    with pytest.raises(ClientError) as denied:
        kms_open(sealed, "another-partner")
    assert denied.value.response["Error"]["Code"] == "InvalidCiphertextException"
    secrets.reset()  # a fresh container: no cached opening
    with pytest.raises(secrets.TokenUnavailable):
        secrets.unseal("another-partner", sealed)
    assert svc.outbound_token(kms_store.get_partner(partner_id)) == partner.token

    # Listings show how it is kept, never the value (sealed or not).
    listed = svc.public_partner(kms_store.get_partner(partner_id))
    assert listed["outbound_token_at_rest"] == "kms" and "kms:v1:" not in json.dumps(listed)
    assert cli.main(["partners", "--json"]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["outbound_token_at_rest"] == "kms" and "outbound_token" not in printed

    # Our outbound calls carry the opened token: a rotation we start PUTs with it.
    partner.requests.clear()
    svc.update_with(kms_store, BASE, partner_id)
    assert (partner.requests[0]["method"], partner.requests[0]["token"]) == ("PUT", partner.token)
    rotated = stored_token(aws, partner_id)
    assert rotated.startswith("kms:v1:") and kms_open(rotated, partner_id) == "token-c-0"
    assert "token-c-0" not in json.dumps(raw_item(aws, partner_id))

    # We unregister: the DELETE carries the rotated token, then the token leaves the item.
    svc.unregister_with(kms_store, partner_id)
    assert (partner.requests[-1]["method"], partner.requests[-1]["token"]) == ("DELETE", "token-c-0")
    assert stored_token(aws, partner_id) is None

    logged = "\n".join(str(r.__dict__) for r in caplog.records)
    assert "partner registered" in logged
    for secret in (partner.token, "token-c-0", sealed, rotated, sealed[7:40]):
        assert secret not in logged


def test_partner_put_reseals_and_delete_clears(kms_store, aws, partner, creds_api) -> None:
    partner_id, token_c = register_partner(kms_store, creds_api, partner)
    before = stored_token(aws, partner_id)
    partner.accepted_tokens.add("token-b2")
    resp = creds_api.put(
        "/ocpi/2.2.1/credentials", json=creds_body(partner, token="token-b2"), headers=hdr(token_c)
    ).json()
    assert resp["status_code"] == 1000, resp
    after = stored_token(aws, partner_id)
    assert after.startswith("kms:v1:") and after != before
    assert kms_open(after, partner_id) == "token-b2"
    assert "token-b2" not in json.dumps(raw_item(aws, partner_id))

    resp = creds_api.delete("/ocpi/2.2.1/credentials", headers=hdr(resp["data"]["token"])).json()
    assert resp["status_code"] == 1000
    assert stored_token(aws, partner_id) is None
    assert kms_store.get_partner(partner_id)["status"] == "UNREGISTERED"


def test_we_register_with_a_partner_and_seal_its_token(kms_store, aws, partner) -> None:
    registered = svc.register_with(kms_store, BASE, partner.versions_url, partner.token, "X")
    sealed = stored_token(aws, registered["partner_id"])
    assert sealed.startswith("kms:v1:") and registered["outbound_token"] == sealed
    assert kms_open(sealed, registered["partner_id"]) == "token-c-0"


# ------------------------------------------------------------------ cost
def test_one_kms_decrypt_per_container_and_token_for_20_push_deliveries(kms_store, receiver) -> None:
    sealed = secrets.seal("emsp-1", "token-for-emsp-1")
    kms_store.put_partner({**push_partner("emsp-1", "EMSP", "DE", "ABC", receiver), "outbound_token": sealed})
    secrets.reset()  # a container that did not seal it: it has to open it once
    kms = Counter()
    count_kms(kms)
    pipe = Pipeline(kms_store)
    for i in range(20):
        put_location(pipe, f"LOC{i}")
    assert pipe.fan_out() == 20
    assert pipe.deliver_all() == []
    assert [label for _, label in pipe.results] == ["put"] * 20
    auth = {r["headers"]["Authorization"] for r in receiver.calls("PUT")}
    assert auth == {"Token " + base64.b64encode(b"token-for-emsp-1").decode()}
    assert kms == {"Decrypt": 1}  # every delivery read the partner record afresh


# ------------------------------------------------------------------ legacy records
def test_seal_tokens_command_seals_legacy_clear_tokens_in_place(kms_store, aws, receiver, capsys) -> None:
    for pid in ("old-1", "old-2"):
        kms_store.put_partner(push_partner(pid, "EMSP", "DE", pid[-1] * 3, receiver))  # clear token
    kms_store.put_partner(
        {**push_partner("new", "EMSP", "FR", "NEW", receiver), "outbound_token": secrets.seal("new", "t-new")}
    )
    kms_store.put_partner({"partner_id": "invited", "status": "INVITED", "roles": [], "endpoints": []})
    # A clear token still works (read as is) and shows up as such in listings.
    assert svc.outbound_token(kms_store.get_partner("old-1")) == "token-for-old-1"
    assert svc.public_partner(kms_store.get_partner("old-1"))["outbound_token_at_rest"] == "clear"

    assert cli.main(["partners", "seal-tokens"]) == 0
    assert capsys.readouterr().out.strip() == "sealed=2 already=1 none=1 changed=0"
    for pid in ("old-1", "old-2"):
        sealed = stored_token(aws, pid)
        assert sealed.startswith("kms:v1:") and kms_open(sealed, pid) == f"token-for-{pid}"
        assert f"token-for-{pid}" not in json.dumps(raw_item(aws, pid))
        assert svc.outbound_token(kms_store.get_partner(pid)) == f"token-for-{pid}"
    assert kms_open(stored_token(aws, "new"), "new") == "t-new"  # untouched

    assert cli.main(["partners", "seal-tokens", "--json"]) == 0  # idempotent
    assert json.loads(capsys.readouterr().out) == {"sealed": 0, "already": 3, "none": 1, "changed": 0}


# ------------------------------------------------------------------ failures
def add_sender(store: Any, partner_id: str = "cpo-1") -> None:
    """A CPO partner we pull locations from (the pull fails before any call: the URL is never used)."""
    store.put_partner(
        {
            "partner_id": partner_id,
            "status": "REGISTERED",
            "version": "2.2.1",
            "roles": [{"role": "CPO", "country_code": "DE", "party_id": "CPX"}],
            "endpoints": [{"identifier": "locations", "role": "SENDER", "url": "http://127.0.0.1:9/loc"}],
            "outbound_token": secrets.seal(partner_id, f"token-for-{partner_id}"),
        }
    )


def test_kms_failure_fails_push_and_pull_cleanly_and_loses_nothing(kms_store, aws, receiver) -> None:
    sealed = secrets.seal("emsp-1", "token-for-emsp-1")
    kms_store.put_partner({**push_partner("emsp-1", "EMSP", "DE", "ABC", receiver), "outbound_token": sealed})
    add_sender(kms_store)
    pipe = Pipeline(kms_store)
    put_location(pipe)
    pipe.fan_out()
    secrets.reset()  # a fresh container, and KMS refuses: the key was disabled
    stub = Stubber(secrets._kms())
    for _ in range(2):
        stub.add_client_error("decrypt", service_error_code="DisabledException", http_status_code=400)
    with stub:
        failures = pipe.deliver_all()
        with pytest.raises(ClientApiError) as pulled:
            pull.pull(kms_store, "cpo-1", "locations")
    stub.assert_no_pending_responses()
    assert len(failures) == 1 and "KMS Decrypt: DisabledException" in failures[0].message
    assert not failures[0].partner_down  # our trouble, not the partner's: no circuit breaker
    assert receiver.calls() == [] and len(pipe.queue) == 1  # not sent, still queued (SQS retries it)
    assert "KMS Decrypt: DisabledException" in pulled.value.message
    assert "pulled_at" not in kms_store.get_partner("cpo-1")  # not recorded as a successful pull
    assert stored_token(aws, "emsp-1") == sealed  # the record is as it was

    # KMS is back: the retried delivery goes through with the right token.
    assert pipe.deliver_all() == []
    assert [label for _, label in pipe.results] == ["put"]
    expected = "Token " + base64.b64encode(b"token-for-emsp-1").decode()
    assert receiver.calls("PUT")[0]["headers"]["Authorization"] == expected


def test_a_token_copied_from_another_partner_does_not_open(kms_store, receiver) -> None:
    kms_store.put_partner(
        {
            **push_partner("emsp-1", "EMSP", "DE", "ABC", receiver),
            "outbound_token": secrets.seal("emsp-2", "token-for-emsp-2"),  # emsp-2's ciphertext
        }
    )
    secrets.reset()
    pipe = Pipeline(kms_store)
    put_location(pipe)
    pipe.fan_out()
    failures = pipe.deliver_all()
    assert len(failures) == 1 and "InvalidCiphertextException" in failures[0].message
    assert receiver.calls() == []


def test_without_a_kms_key_the_dynamodb_store_refuses_to_seal(
    kms_store, partner, creds_api, monkeypatch
) -> None:
    monkeypatch.delenv("OCPI_KMS_KEY_ID")
    with pytest.raises(secrets.SealingNotConfigured, match="OCPI_KMS_KEY_ID"):
        secrets.seal("p", "t")
    partner_id, token_a = svc.invite(kms_store, "p")
    resp = creds_api.post(
        "/ocpi/2.2.1/credentials", json=creds_body(partner, token=partner.token), headers=hdr(token_a)
    )
    assert resp.status_code == 500 and resp.json()["status_code"] == 3000
    assert kms_store.get_partner(partner_id)["status"] == "INVITED"  # token A was not spent
    # Nor do we start a registration whose answer we could not keep.
    partner.requests.clear()
    with pytest.raises(secrets.SealingNotConfigured):
        svc.register_with(kms_store, BASE, partner.versions_url, partner.token)
    assert partner.requests == [] and len(kms_store.list_partners()) == 1


# ------------------------------------------------------------------ the in-memory store
def test_memory_store_seals_locally(memory_store) -> None:
    sealed = secrets.seal("p1", "token-x")
    assert sealed.startswith("local:v1:") and "token-x" not in sealed
    secrets.reset()
    assert secrets.unseal("p1", sealed) == "token-x"
    with pytest.raises(secrets.TokenUnavailable):
        secrets.unseal("p2", sealed)
    assert secrets.seal("p1", "token-x") != sealed  # a fresh nonce each time


# ------------------------------------------------------------------ the local stack's KMS key
def test_local_stack_provisions_kms_keys_but_not_aliases_or_policies(moto_kms) -> None:
    from shared.local.template import Resolver, provision

    template = {
        "Resources": {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "Description": "partner tokens",
                    "EnableKeyRotation": True,
                    "Tags": [{"Key": "app", "Value": "ocpi"}],
                    # Names a role that exists nowhere locally: neither resolved nor applied.
                    "KeyPolicy": {"Statement": [{"Principal": {"AWS": {"Fn::GetAtt": ["NoRole", "Arn"]}}}]},
                },
            },
            "KeyAlias": {
                "Type": "AWS::KMS::Alias",
                "Properties": {"AliasName": "alias/ocpi", "TargetKeyId": {"Ref": "Key"}},
            },
        }
    }
    resolver = Resolver(template, "kms-test", "eu-west-1", "123456789012", {})
    created = provision(template, resolver)
    assert set(created) == {"Key"}
    kms = boto3.client("kms")
    meta = kms.describe_key(KeyId=created["Key"])["KeyMetadata"]
    assert meta["Description"] == "partner tokens" and meta["KeyState"] == "Enabled"
    assert resolver.ref("Key") == meta["KeyId"] and resolver.get_att("Key", "Arn") == meta["Arn"]
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is True
    assert kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"] == [{"TagKey": "app", "TagValue": "ocpi"}]
    assert "alias/ocpi" not in {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
