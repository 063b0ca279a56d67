"""Shared fixtures: a clean environment per test, a MemoryStore, and a DynamoStore on moto whose
table is created from template.yaml (never from a hand-written schema)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = Path(os.environ.get("OCPI_SPEC_DIR") or ROOT.parent / "shared" / "ocpi-spec")
TEMPLATE = ROOT / "template.yaml"

# Never reach real AWS from tests.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from shared import auth, config, events, secrets, store
    from shared.services import push

    for var in list(os.environ):
        if var.startswith("OCPI_") and var != "OCPI_SPEC_DIR":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("OCPI_TOKEN_KEY", "unit-test-hmac-key")
    monkeypatch.setenv("OCPI_PUBLIC_URL", "https://ocpi.test")
    config.reset_settings()
    auth.clear_cache()
    store.reset_store()
    events.reset()
    push.reset()
    secrets.reset()
    yield
    config.reset_settings()
    auth.clear_cache()
    store.reset_store()
    events.reset()
    push.reset()
    secrets.reset()


@pytest.fixture
def memory_store() -> Iterator:
    from shared import events
    from shared.store import set_store
    from shared.store.memory import MemoryStore

    s = MemoryStore()
    set_store(s)
    s.published = []  # events go to this list: no AWS in memory-store tests
    events.set_sink(s.published.append)
    yield s


@pytest.fixture
def aws() -> Iterator[dict]:
    """moto in-process with every resource of template.yaml provisioned; yields logical id -> name."""
    from moto import mock_aws

    from shared.local.template import Resolver, load_template, provision

    with mock_aws():
        template = load_template(TEMPLATE)
        resolver = Resolver(
            template, stack_name="test", region="eu-west-1", account_id="123456789012", parameter_overrides={}
        )
        yield provision(template, resolver)


@pytest.fixture
def dynamo_store(aws: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    from shared import config
    from shared.store import dynamodb_client, set_store
    from shared.store.dynamo import DynamoStore

    monkeypatch.setenv("OCPI_TABLE_NAME", aws["OcpiTable"])
    monkeypatch.setenv("OCPI_EVENT_BUS_NAME", aws["OcpiBus"])
    # Partner tokens are sealed with KMS whenever DynamoDB is the store (shared/secrets.py), as the
    # template's Globals set it for every function.
    monkeypatch.setenv("OCPI_KMS_KEY_ID", aws["OcpiKey"])
    config.reset_settings()
    s = DynamoStore(dynamodb_client(), aws["OcpiTable"])
    set_store(s)
    yield s


@pytest.fixture(params=["memory", "dynamo"])
def any_store(request: pytest.FixtureRequest) -> Iterator:
    """Runs a test against both store implementations (the same contract)."""
    yield request.getfixturevalue(f"{request.param}_store")
