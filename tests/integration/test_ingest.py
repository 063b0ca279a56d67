"""Ingest of our own objects from the back office (shared/services/ingest.py, functions/ingest):
every branch of `apply` on both stores, the Lambda handler with SQS batches (stored, poison,
transient), the real path bus -> rule -> queue -> handler on moto, and `ocpi-admin publish`."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared import events, jsonutil
from shared.errors import (
    InvalidParameters,
    NotEnoughInformation,
    ServiceUnavailable,
    UnknownLocation,
    UnknownToken,
)
from shared.pagination import PageParams
from shared.services import ingest, locations, objects, tariffs, tokens
from shared.store.base import WriteResult

ROOT = Path(__file__).resolve().parents[2]
PUT, PATCH, DELETE = events.OWN_PUT, events.OWN_PATCH, events.OWN_DELETE
SECRET_UID = "SECRETUID0042"
SECRET_CONTRACT = "NL-MSP-SECRETCONTRACT"
PAGE = PageParams(0, 10, None, None, None, None, None)

# Our tokens are shared with CPO partners only (shared.services.tokens.require_cpo).
CPO_CALLER = __import__("shared.auth", fromlist=["Caller"]).Caller(
    "cpo-partner", "C", {"roles": [{"role": "CPO", "country_code": "NL", "party_id": "XYZ"}]}
)


# ------------------------------------------------------------------ objects (our own parties: NL*CPO, NL*MSP)
def connector(cid: str = "1", lu: str = "2024-05-01T09:00:00Z") -> dict:
    return {
        "id": cid,
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "tariff_ids": ["T1"],
        "last_updated": lu,
    }


def evse(uid: str = "3256", lu: str = "2024-05-01T09:00:00Z") -> dict:
    return {
        "uid": uid,
        "evse_id": f"NL*CPO*E{uid}",
        "status": "AVAILABLE",
        "connectors": [connector(lu=lu)],
        "last_updated": lu,
    }


def location(lid: str = "LOC1", lu: str = "2024-05-01T09:00:00Z", cc: str = "NL", pid: str = "CPO") -> dict:
    return {
        "country_code": cc,
        "party_id": pid,
        "id": lid,
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.089444", "longitude": "5.110278"},
        "evses": [evse(lu=lu)],
        "time_zone": "Europe/Amsterdam",
        "last_updated": lu,
    }


def tariff(tid: str = "T1", lu: str = "2024-05-01T09:00:00Z") -> dict:
    return {
        "country_code": "NL",
        "party_id": "CPO",
        "id": tid,
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": Decimal("0.35"), "step_size": 1}]}],
        "last_updated": lu,
    }


def token(uid: str = SECRET_UID, lu: str = "2024-05-01T09:00:00Z") -> dict:
    return {
        "country_code": "NL",
        "party_id": "MSP",
        "uid": uid,
        "type": "RFID",
        "contract_id": SECRET_CONTRACT,
        "issuer": "Example eMSP",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": lu,
    }


def loc_patch(lid: str = "LOC1", **extra: Any) -> dict:
    return {"module": "locations", "country_code": "NL", "party_id": "CPO", "id": lid, **extra}


def own_changed(store) -> list[dict]:
    return [json.loads(e["Detail"]) for e in store.published if e["DetailType"] == events.OWN_CHANGED]


def rejected(store) -> list[dict]:
    return [json.loads(e["Detail"]) for e in store.published if e["DetailType"] == ingest.REJECTED]


# ------------------------------------------------------------------ apply: locations
def test_location_put_then_evse_patch_then_connector_put(any_store) -> None:
    out = ingest.apply(any_store, PUT, {"module": "locations", "object": location()})
    assert out.result is WriteResult.CREATED
    items, _ = locations.list_own(any_store, PAGE)
    assert [i["id"] for i in items] == ["LOC1"] and items[0]["evses"][0]["uid"] == "3256"

    fields = {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}
    out = ingest.apply(any_store, PATCH, loc_patch(evse_uid="3256", fields=fields))
    assert out.result is WriteResult.UPDATED
    assert locations.get_own(any_store, "LOC1", "3256")["status"] == "CHARGING"
    # mod_locations: a child change moves the parent's last_updated too.
    assert locations.get_own(any_store, "LOC1")["last_updated"] == "2024-05-01T10:00:00Z"

    detail = {
        "module": "locations",
        "country_code": "NL",
        "party_id": "CPO",
        "location_id": "LOC1",
        "evse_uid": "3256",
        "object": connector("2", "2024-05-01T11:00:00Z"),
    }
    assert ingest.apply(any_store, PUT, detail).result is WriteResult.CREATED
    conns = locations.get_own(any_store, "LOC1", "3256")["connectors"]
    assert [c["id"] for c in conns] == ["1", "2"]

    # A second EVSE, a connector patch, a location patch.
    detail = {k: v for k, v in detail.items() if k != "evse_uid"} | {"object": evse("3257")}
    assert ingest.apply(any_store, PUT, detail).result is WriteResult.CREATED
    fields = {"max_amperage": 16, "last_updated": "2024-05-01T12:00:00Z"}
    out = ingest.apply(any_store, PATCH, loc_patch(evse_uid="3256", connector_id="2", fields=fields))
    assert out.result is WriteResult.UPDATED
    assert locations.get_own(any_store, "LOC1", "3256", "2")["max_amperage"] == 16
    fields = {"name": "Utrecht Centraal", "last_updated": "2024-05-01T13:00:00Z"}
    assert ingest.apply(any_store, PATCH, loc_patch(fields=fields)).result is WriteResult.UPDATED
    got = locations.get_own(any_store, "LOC1")
    assert got["name"] == "Utrecht Centraal" and [e["uid"] for e in got["evses"]] == ["3256", "3257"]


def test_location_events_on_the_bus(memory_store) -> None:
    ingest.apply(memory_store, PUT, {"module": "locations", "object": location()})
    fields = {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}
    ingest.apply(memory_store, PATCH, loc_patch(evse_uid="3256", fields=fields))
    changed = own_changed(memory_store)
    assert [(c["action"], c["id"], c.get("evse_uid")) for c in changed] == [
        ("put", "LOC1", None),
        ("patch", "LOC1", "3256"),
    ]
    assert all(e["Source"] == events.SOURCE_ENDPOINT for e in memory_store.published)
    assert changed[1]["last_updated"] == "2024-05-01T10:00:00Z"


def test_stale_updates_are_not_applied(any_store) -> None:
    new, old = "2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z"
    assert ingest.apply(any_store, PUT, {"module": "locations", "object": location(lu=new)}).result is (
        WriteResult.CREATED
    )
    out = ingest.apply(any_store, PUT, {"module": "locations", "object": location(lu=old) | {"name": "x"}})
    assert out.result is WriteResult.STALE and out.message == objects.STALE_MESSAGE
    assert "name" not in locations.get_own(any_store, "LOC1")
    out = ingest.apply(
        any_store, PATCH, loc_patch(evse_uid="3256", fields={"status": "BLOCKED", "last_updated": old})
    )
    assert out.result is WriteResult.STALE
    assert locations.get_own(any_store, "LOC1", "3256")["status"] == "AVAILABLE"
    detail = loc_patch(evse_uid="3256", connector_id="1", fields={"max_voltage": 1, "last_updated": old})
    assert ingest.apply(any_store, PATCH, detail).result is WriteResult.STALE

    assert ingest.apply(any_store, PUT, {"module": "tariffs", "object": tariff(lu=new)}).result is (
        WriteResult.CREATED
    )
    assert ingest.apply(any_store, PUT, {"module": "tariffs", "object": tariff(lu=old)}).result is (
        WriteResult.STALE
    )
    assert ingest.apply(any_store, PUT, {"module": "tokens", "object": token(lu=new)}).result is (
        WriteResult.CREATED
    )
    out = ingest.apply(any_store, PUT, {"module": "tokens", "object": token(lu=old) | {"valid": False}})
    assert out.result is WriteResult.STALE
    assert objects.get_own(any_store, tokens.KIND, SECRET_UID, "RFID").body["valid"] is True


def test_stale_tariff_put_publishes_nothing(memory_store) -> None:
    ingest.apply(memory_store, PUT, {"module": "tariffs", "object": tariff(lu="2024-05-02T00:00:00Z")})
    ingest.apply(memory_store, PUT, {"module": "tariffs", "object": tariff(lu="2024-05-01T00:00:00Z")})
    assert [c["action"] for c in own_changed(memory_store)] == ["put"]


# ------------------------------------------------------------------ apply: tariffs
def test_tariff_put_and_delete(any_store) -> None:
    assert (
        ingest.apply(any_store, PUT, {"module": "tariffs", "object": tariff()}).result is WriteResult.CREATED
    )
    assert (
        ingest.apply(any_store, PUT, {"module": "tariffs", "object": tariff()}).result is WriteResult.UPDATED
    )
    items, _ = tariffs.list_own(any_store, PAGE)
    assert [t["id"] for t in items] == ["T1"]
    assert str(items[0]["elements"][0]["price_components"][0]["price"]) == "0.35"

    delete = {"module": "tariffs", "country_code": "NL", "party_id": "CPO", "id": "T1"}
    out = ingest.apply(any_store, DELETE, delete)
    assert out.result is WriteResult.UPDATED and ingest.outcome_label(out) == "deleted"
    assert tariffs.list_own(any_store, PAGE)[0] == []
    # Delivered twice (at-least-once): a no-op, not an error.
    out = ingest.apply(any_store, DELETE, delete)
    assert out.result is WriteResult.STALE and ingest.outcome_label(out) == "stale"

    # A delete older than the stored tariff (re-created since) keeps it.
    ingest.apply(any_store, PUT, {"module": "tariffs", "object": tariff(lu="2024-06-01T00:00:00Z")})
    out = ingest.apply(any_store, DELETE, delete | {"last_updated": "2024-05-15T00:00:00Z"})
    assert out.result is WriteResult.STALE
    assert objects.get_own(any_store, tariffs.KIND, "T1").body["id"] == "T1"
    out = ingest.apply(any_store, DELETE, delete | {"last_updated": "2024-06-02T00:00:00Z"})
    assert ingest.outcome_label(out) == "deleted"


def test_tariff_delete_publishes_own_changed_delete(memory_store) -> None:
    ingest.apply(memory_store, PUT, {"module": "tariffs", "object": tariff()})
    delete = {"module": "tariffs", "country_code": "NL", "party_id": "CPO", "id": "T1"}
    ingest.apply(memory_store, DELETE, delete)
    ingest.apply(memory_store, DELETE, delete)  # unknown now: nothing published
    changed = own_changed(memory_store)
    assert [(c["module"], c["action"], c["id"]) for c in changed] == [
        ("tariffs", "put", "T1"),
        ("tariffs", "delete", "T1"),
    ]
    assert changed[1]["last_updated"] == "2024-05-01T09:00:00Z"


def test_tariff_delete_does_not_touch_received_tariffs(memory_store) -> None:
    # A partner's tariff (rx collection) under a party that is not ours: refused as bad data.
    from shared.services.objects import RECEIVED

    ref = objects.ref_of(tariffs.KIND, "DE", "ABC", "T1")
    memory_store.put(
        ref,
        tariff() | {"country_code": "DE", "party_id": "ABC"},
        objects.last_updated_of(tariff()),
        collection=RECEIVED,
    )
    with pytest.raises(InvalidParameters):
        ingest.apply(
            memory_store, DELETE, {"module": "tariffs", "country_code": "DE", "party_id": "ABC", "id": "T1"}
        )
    assert memory_store.get(ref) is not None


# ------------------------------------------------------------------ apply: tokens
def test_token_put_with_authorization_policy_then_patch(any_store) -> None:
    detail = {"module": "tokens", "object": token(), "authorization": {"allowed_location_ids": ["LOC1"]}}
    assert ingest.apply(any_store, PUT, detail).result is WriteResult.CREATED
    items, _ = tokens.list_own(any_store, CPO_CALLER, PAGE)
    assert [t["uid"] for t in items] == [SECRET_UID]

    assert (
        tokens.authorize(any_store, CPO_CALLER, SECRET_UID, None, {"location_id": "LOC1"})["allowed"]
        == "ALLOWED"
    )
    assert (
        tokens.authorize(any_store, CPO_CALLER, SECRET_UID, "RFID", {"location_id": "LOC2"})["allowed"]
        == "NOT_ALLOWED"
    )
    with pytest.raises(NotEnoughInformation):
        tokens.authorize(any_store, CPO_CALLER, SECRET_UID, None, None)

    patch = {
        "module": "tokens",
        "country_code": "NL",
        "party_id": "MSP",
        "id": SECRET_UID,
        "fields": {"valid": False, "last_updated": "2024-05-02T00:00:00Z"},
    }
    assert ingest.apply(any_store, PATCH, patch).result is WriteResult.UPDATED  # type defaults to RFID
    assert (
        tokens.authorize(any_store, CPO_CALLER, SECRET_UID, None, {"location_id": "LOC1"})["allowed"]
        == "BLOCKED"
    )

    # A policy change is a new PUT of the token (the policy is metadata of the stored token).
    detail = {
        "module": "tokens",
        "object": token(lu="2024-05-03T00:00:00Z"),
        "authorization": {"no_credit": True},
    }
    ingest.apply(any_store, PUT, detail)
    assert tokens.authorize(any_store, CPO_CALLER, SECRET_UID, None, None)["allowed"] == "NO_CREDIT"


def test_token_of_another_type_is_another_token(any_store) -> None:
    ingest.apply(any_store, PUT, {"module": "tokens", "object": token()})
    app_user = token() | {"type": "APP_USER"}
    assert (
        ingest.apply(any_store, PUT, {"module": "tokens", "object": app_user}).result is WriteResult.CREATED
    )
    patch = {
        "module": "tokens",
        "country_code": "NL",
        "party_id": "MSP",
        "id": SECRET_UID,
        "type": "APP_USER",
        "fields": {"valid": False, "last_updated": "2024-05-02T00:00:00Z"},
    }
    ingest.apply(any_store, PATCH, patch)
    assert objects.get_own(any_store, tokens.KIND, SECRET_UID, "APP_USER").body["valid"] is False
    assert objects.get_own(any_store, tokens.KIND, SECRET_UID, "RFID").body["valid"] is True


# ------------------------------------------------------------------ apply: rejections
def _token_patch(**changes: Any) -> dict:
    base = {
        "module": "tokens",
        "country_code": "NL",
        "party_id": "MSP",
        "id": SECRET_UID,
        "fields": {"valid": False, "last_updated": "2024-05-02T00:00:00Z"},
    }
    return base | changes


BAD = {
    "unknown detail-type": ("ocpi.own.upsert", {"module": "tariffs", "object": tariff()}),
    "detail not an object": (PUT, ["tariffs"]),
    "detail missing": (PUT, None),
    "unknown module": (PUT, {"module": "commands", "object": {"id": "S1"}}),
    "module missing": (PUT, {"object": tariff()}),
    "object missing": (PUT, {"module": "tariffs"}),
    "object not an object": (PUT, {"module": "tariffs", "object": "T1"}),
    "model violation": (PUT, {"module": "tariffs", "object": tariff() | {"currency": 42}}),
    "location without coordinates": (
        PUT,
        {"module": "locations", "object": {k: v for k, v in location().items() if k != "coordinates"}},
    ),
    "not our party": (PUT, {"module": "locations", "object": location(cc="DE", pid="ABC")}),
    "token of our CPO party": (PUT, {"module": "tokens", "object": token() | {"party_id": "CPO"}}),
    "tariff of our eMSP party": (PUT, {"module": "tariffs", "object": tariff() | {"party_id": "MSP"}}),
    "event party differs from object": (PUT, {"module": "tariffs", "country_code": "BE", "object": tariff()}),
    "EVSE put without party": (PUT, {"module": "locations", "location_id": "LOC1", "object": evse()}),
    "evse_uid without location_id": (PUT, {"module": "locations", "evse_uid": "1", "object": connector()}),
    "authorization not an object": (PUT, {"module": "tokens", "object": token(), "authorization": "x"}),
    "tariff patch": (
        PATCH,
        {"module": "tariffs", "country_code": "NL", "party_id": "CPO", "id": "T1", "fields": {}},
    ),
    "patch without id": (
        PATCH,
        {"module": "locations", "country_code": "NL", "party_id": "CPO", "fields": {}},
    ),
    "patch without fields": (PATCH, loc_patch()),
    "patch without last_updated": (PATCH, loc_patch(fields={"name": "x"})),
    "connector patch without evse_uid": (
        PATCH,
        loc_patch(connector_id="1", fields={"max_voltage": 1, "last_updated": "2024-05-02T00:00:00Z"}),
    ),
    "unknown token type": (PATCH, _token_patch(type="BADGE")),
    "token patch changes the uid": (
        PATCH,
        _token_patch(fields={"uid": "OTHER", "last_updated": "2024-05-02T00:00:00Z"}),
    ),
    "location delete": (DELETE, loc_patch()),
    "token delete": (DELETE, _token_patch()),
    "tariff delete without id": (DELETE, {"module": "tariffs", "country_code": "NL", "party_id": "CPO"}),
    "tariff delete with a bad last_updated": (
        DELETE,
        {"module": "tariffs", "country_code": "NL", "party_id": "CPO", "id": "T1", "last_updated": "soon"},
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_is_invalid_parameters(case: str, memory_store) -> None:
    detail_type, detail = BAD[case]
    ingest.apply(memory_store, PUT, {"module": "tariffs", "object": tariff()})
    ingest.apply(memory_store, PUT, {"module": "locations", "object": location()})
    before = copy.deepcopy(memory_store.objects)
    with pytest.raises(InvalidParameters) as err:
        ingest.apply(memory_store, detail_type, detail)
    assert SECRET_UID not in ingest.redact(err.value.message, detail)
    assert memory_store.objects == before


def test_bad_data_on_dynamodb(dynamo_store) -> None:
    with pytest.raises(InvalidParameters):
        ingest.apply(dynamo_store, PUT, {"module": "locations", "object": location(cc="DE", pid="ABC")})
    assert locations.list_own(dynamo_store, PAGE)[0] == []


def test_changes_to_objects_not_yet_stored_are_retryable_not_poison(any_store) -> None:
    # SQS does not keep order: the PUT may come after its PATCH. Not InvalidParameters: retried.
    fields = {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}
    with pytest.raises(UnknownLocation):
        ingest.apply(any_store, PATCH, loc_patch(evse_uid="3256", fields=fields))
    with pytest.raises(UnknownLocation):
        ingest.apply(any_store, PATCH, loc_patch(fields=fields))
    detail = {
        "module": "locations",
        "country_code": "NL",
        "party_id": "CPO",
        "location_id": "LOC9",
        "object": evse(),
    }
    with pytest.raises(UnknownLocation):
        ingest.apply(any_store, PUT, detail)
    with pytest.raises(UnknownToken):
        ingest.apply(any_store, PATCH, _token_patch())
    assert not issubclass(UnknownLocation, InvalidParameters) and not issubclass(
        UnknownToken, InvalidParameters
    )


def test_unwrap_checks_the_eventbridge_envelope() -> None:
    body = json.dumps({"source": "ocpi.backoffice", "detail-type": PUT, "detail": {"x": 1.5}})
    detail_type, detail = ingest.unwrap(body)
    assert detail_type == PUT and str(detail["x"]) == "1.5" and type(detail["x"]).__name__ == "Decimal"
    for bad in ("not json", "[]", json.dumps({"source": "ocpi.endpoint", "detail-type": PUT, "detail": {}})):
        with pytest.raises(InvalidParameters):
            ingest.unwrap(bad)
    with pytest.raises(InvalidParameters):
        ingest.unwrap(json.dumps({"source": "ocpi.backoffice", "detail": {}}))


def test_rejected_detail_and_redaction() -> None:
    detail = {"module": "tokens", "object": token()}
    out = ingest.rejected_detail(PUT, detail, f"bad token {SECRET_UID} of contract {SECRET_CONTRACT}")
    assert out["detail_type"] == PUT and out["module"] == "tokens" and out["id"] == SECRET_UID
    assert SECRET_UID not in out["error"] and SECRET_CONTRACT not in out["error"]
    assert "uid" not in json.dumps(ingest.safe_fields(PUT, detail)).lower()
    assert SECRET_UID not in json.dumps(ingest.safe_fields(PUT, detail))
    assert ingest.safe_fields(PUT, {"module": "locations", "object": location()})["id"] == "LOC1"
    cmd = ingest.parse(PATCH, _token_patch())
    assert SECRET_UID not in json.dumps(cmd.log_fields())
    assert ingest.parse(PATCH, loc_patch(evse_uid="E1", fields={})).log_fields()["evse_uid"] == "E1"


def test_check_validates_the_model_without_storing(memory_store) -> None:
    assert ingest.check(PUT, {"module": "tariffs", "object": tariff()}).object_id == "T1"
    with pytest.raises(InvalidParameters):
        ingest.check(PUT, {"module": "tariffs", "object": tariff() | {"currency": 42}})
    with pytest.raises(InvalidParameters):
        ingest.check(
            PATCH,
            loc_patch(evse_uid="3256", fields={"status": "BROKEN", "last_updated": "2024-05-01T10:00:00Z"}),
        )
    assert memory_store.objects == {}


# ------------------------------------------------------------------ the Lambda handler
class Context:
    function_name = "ingest"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ingest"
    aws_request_id = "req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60000


def load_handler():
    spec = importlib.util.spec_from_file_location(
        "lambda_ingest_test", ROOT / "functions" / "ingest" / "app.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


def sqs_record(n: int, detail_type: str, detail: Any, source: str = events.SOURCE_BACKOFFICE) -> dict:
    body = {"version": "0", "id": f"ev-{n}", "detail-type": detail_type, "source": source, "detail": detail}
    return {
        "messageId": f"msg-{n}",
        "receiptHandle": f"rh-{n}",
        "body": jsonutil.dumps(body),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1714557600000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:test-IngestQueue",
        "awsRegion": "eu-west-1",
    }


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(json.dumps(r.__dict__, default=str) for r in self.records)


@pytest.fixture
def log_records():
    from shared.logs import logger

    handler = Records()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_handler_stores_rejects_and_retries(memory_store, monkeypatch, log_records) -> None:
    handler = load_handler()
    fields = {"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}
    event = {
        "Records": [
            sqs_record(1, PUT, {"module": "locations", "object": location()}),
            sqs_record(2, PUT, {"module": "tokens", "object": token() | {"whitelist": "SOMETIMES"}}),
            sqs_record(3, PATCH, loc_patch(evse_uid="3256", fields=fields)),
            sqs_record(4, PUT, {"module": "tariffs", "object": tariff()}),
            sqs_record(5, PATCH, _token_patch()),  # unknown token: retried (its PUT may follow)
            sqs_record(6, "not json at all", None),
        ]
    }
    event["Records"][5]["body"] = "{not json"

    real_patch_child = memory_store.patch_child

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable("Storage is busy, retry later")

    monkeypatch.setattr(memory_store, "patch_child", throttled)
    result = handler(event, Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-3"}, {"itemIdentifier": "msg-5"}]}

    assert locations.get_own(memory_store, "LOC1")["id"] == "LOC1"
    assert objects.get_own(memory_store, tariffs.KIND, "T1").body["id"] == "T1"
    with pytest.raises(UnknownToken):
        objects.get_own(memory_store, tokens.KIND, SECRET_UID, "RFID")

    bad = rejected(memory_store)
    assert [(r["detail_type"], r.get("module")) for r in bad] == [(PUT, "tokens"), ("", None)]
    assert bad[0]["id"] == SECRET_UID and "whitelist" in bad[0]["error"]
    assert SECRET_CONTRACT not in json.dumps(bad)
    assert [e["Source"] for e in memory_store.published if e["DetailType"] == ingest.REJECTED] == [
        events.SOURCE_ENDPOINT
    ] * 2
    assert [(c["module"], c["action"]) for c in own_changed(memory_store)] == [
        ("locations", "put"),
        ("tariffs", "put"),
    ]

    # Never a token uid or contract id in the logs; locations and tariffs are named.
    logs = log_records.text()
    assert SECRET_UID not in logs and SECRET_CONTRACT not in logs
    messages = [(r.levelname, r.getMessage()) for r in log_records.records]
    assert ("ERROR", "back-office event rejected") in messages
    assert ("WARNING", "back-office event not stored, will be retried") in messages
    applied = [r for r in log_records.records if r.getMessage() == "back-office event applied"]
    assert [(r.ocpi_module, r.id) for r in applied] == [("locations", "LOC1"), ("tariffs", "T1")]
    retried = [r for r in log_records.records if r.levelname == "WARNING"]
    assert {r.error_type for r in retried} == {"ServiceUnavailable", "UnknownToken"}

    # The retry succeeds once the store is back.
    monkeypatch.setattr(memory_store, "patch_child", real_patch_child)
    assert handler({"Records": [event["Records"][2]]}, Context()) == {"batchItemFailures": []}
    assert locations.get_own(memory_store, "LOC1", "3256")["status"] == "CHARGING"


def test_handler_reports_a_batch_that_failed_entirely(memory_store, monkeypatch) -> None:
    handler = load_handler()

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise ServiceUnavailable()

    monkeypatch.setattr(memory_store, "put", throttled)
    event = {"Records": [sqs_record(1, PUT, {"module": "tariffs", "object": tariff()})]}
    assert handler(event, Context()) == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}


def test_handler_and_service_import_no_web_framework() -> None:
    import ast

    for path in (ROOT / "functions" / "ingest" / "app.py", ROOT / "shared" / "services" / "ingest.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
        assert not {m for m in imported if m.split(".")[0] in ("fastapi", "starlette", "mangum")}, path
    assert not any(m.startswith("aws_lambda_powertools") for m in imported), "the service is pure logic"


# ------------------------------------------------------------------ moto: bus -> rule -> queue -> handler
def _drain(queue_url: str) -> list[dict]:
    import boto3

    sqs = boto3.client("sqs", region_name="eu-west-1")
    out: list[dict] = []
    while True:
        msgs = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not msgs:
            return out
        out.extend(msgs)
        for m in msgs:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def _as_lambda_event(messages: list[dict], queue_arn: str) -> dict:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {k: str(v) for k, v in (m.get("Attributes") or {}).items()},
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "eu-west-1",
            }
            for m in messages
        ]
    }


def _probe(aws: dict, pattern: dict) -> str:
    import boto3

    sqs = boto3.client("sqs", region_name="eu-west-1")
    bus = boto3.client("events", region_name="eu-west-1")
    url = sqs.create_queue(QueueName="probe")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus.put_rule(Name="probe", EventBusName=aws["OcpiBus"], EventPattern=json.dumps(pattern))
    bus.put_targets(Rule="probe", EventBusName=aws["OcpiBus"], Targets=[{"Id": "q", "Arn": arn}])
    return url


def test_back_office_events_reach_the_handler_through_the_rule(dynamo_store, aws) -> None:
    import boto3

    queue = aws["IngestQueue"]
    arn = boto3.client("sqs", region_name="eu-west-1").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    probe = _probe(aws, {"source": ["ocpi.endpoint"]})

    src = events.SOURCE_BACKOFFICE
    assert events.publish(PUT, {"module": "locations", "object": location()}, source=src)
    assert events.publish(PUT, {"module": "tariffs", "object": tariff()}, source=src)
    assert events.publish(PUT, {"module": "sessions", "object": {}}, source=src)  # poison
    # Not for the ingest queue: other sources and other detail-types.
    assert events.publish(PUT, {"module": "tariffs", "object": tariff("T2")})
    assert events.publish("ocpi.own.something", {"module": "tariffs"}, source=src)

    messages = _drain(queue)
    assert len(messages) == 3
    result = load_handler()(_as_lambda_event(messages, arn), Context())
    assert result == {"batchItemFailures": []}

    items, _ = locations.list_own(dynamo_store, PAGE)
    assert [i["id"] for i in items] == ["LOC1"] and items[0]["evses"][0]["connectors"][0]["id"] == "1"
    assert [t["id"] for t in tariffs.list_own(dynamo_store, PAGE)[0]] == ["T1"]
    price = objects.get_own(dynamo_store, tariffs.KIND, "T1").body["elements"][0]["price_components"][0][
        "price"
    ]
    assert str(price) == "0.35"

    out = [json.loads(m["Body"]) for m in _drain(probe)]
    kinds = sorted((e["detail-type"], e["detail"].get("module")) for e in out)
    assert kinds == [
        ("ocpi.own.changed", "locations"),
        ("ocpi.own.changed", "tariffs"),
        ("ocpi.own.put", "tariffs"),  # the probe's own catch of the event from another source
        ("ocpi.own.rejected", "sessions"),
    ]
    # What the handler published does not loop back into the ingest queue.
    assert _drain(queue) == []


def test_ingest_queue_is_dead_lettered(aws) -> None:
    import boto3

    sqs = boto3.client("sqs", region_name="eu-west-1")
    attrs = sqs.get_queue_attributes(QueueUrl=aws["IngestQueue"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    dlq = sqs.get_queue_attributes(QueueUrl=aws["IngestDeadLetterQueue"], AttributeNames=["QueueArn"])
    assert (
        redrive["deadLetterTargetArn"] == dlq["Attributes"]["QueueArn"]
        and int(redrive["maxReceiveCount"]) == 5
    )
    assert attrs["VisibilityTimeout"] == "60"


# ------------------------------------------------------------------ ocpi-admin publish
def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    from shared.admin.cli import main

    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_publish_put_patch_delete(dynamo_store, aws, tmp_path, capsys) -> None:
    import boto3

    queue = aws["IngestQueue"]
    arn = boto3.client("sqs", region_name="eu-west-1").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    loc = tmp_path / "loc.json"
    loc.write_text(jsonutil.dumps(location()))
    code, out, err = _cli(["publish", "--module", "locations", "--file", str(loc)], capsys)
    assert code == 0, err
    event_id = out.strip()
    assert event_id

    conn = tmp_path / "conn.json"
    conn.write_text(jsonutil.dumps(connector("2")))
    argv = ["publish", "--module", "locations", "--file", str(conn), "--country-code", "NL"]
    argv += ["--party-id", "CPO", "--location-id", "LOC1", "--evse-uid", "3256", "--json"]
    code, out, err = _cli(argv, capsys)
    assert code == 0, err and json.loads(out)["detail_type"] == PUT

    fields = tmp_path / "fields.json"
    fields.write_text(jsonutil.dumps({"status": "CHARGING", "last_updated": "2024-05-01T10:00:00Z"}))
    argv = ["publish", "--patch", "--module", "locations", "--file", str(fields), "--country-code", "NL"]
    argv += ["--party-id", "CPO", "--id", "LOC1", "--evse-uid", "3256"]
    assert _cli(argv, capsys)[0] == 0

    tok, policy = tmp_path / "token.json", tmp_path / "policy.json"
    tok.write_text(jsonutil.dumps(token()))
    policy.write_text(jsonutil.dumps({"allowed_location_ids": ["LOC1"]}))
    argv = ["publish", "--module", "tokens", "--file", str(tok), "--authorization", str(policy)]
    assert _cli(argv, capsys)[0] == 0

    tar = tmp_path / "tariff.json"
    tar.write_text(jsonutil.dumps(tariff()))
    assert _cli(["publish", "--module", "tariffs", "--file", str(tar)], capsys)[0] == 0
    argv = ["publish", "--delete", "--module", "tariffs", "--country-code", "NL", "--party-id", "CPO"]
    assert _cli([*argv, "--id", "T1"], capsys)[0] == 0

    messages = _drain(queue)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert {b["source"] for b in bodies} == {events.SOURCE_BACKOFFICE}
    assert event_id in {b["id"] for b in bodies}
    assert [b["detail-type"] for b in bodies] == [PUT, PUT, PATCH, PUT, PUT, DELETE]
    assert bodies[1]["detail"] == {
        "module": "locations",
        "country_code": "NL",
        "party_id": "CPO",
        "location_id": "LOC1",
        "evse_uid": "3256",
        "object": connector("2"),
    }
    assert bodies[3]["detail"]["authorization"] == {"allowed_location_ids": ["LOC1"]}

    # In order, one at a time (SQS does not promise order; the handler retries what came early).
    handler = load_handler()
    for m in messages:
        assert handler(_as_lambda_event([m], arn), Context()) == {"batchItemFailures": []}
    got = locations.get_own(dynamo_store, "LOC1", "3256")
    assert got["status"] == "CHARGING" and [c["id"] for c in got["connectors"]] == ["1", "2"]
    assert (
        tokens.authorize(dynamo_store, CPO_CALLER, SECRET_UID, None, {"location_id": "LOC2"})["allowed"]
        == "NOT_ALLOWED"
    )
    assert tariffs.list_own(dynamo_store, PAGE)[0] == []


def test_cli_publish_errors(aws, monkeypatch, tmp_path, capsys) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(jsonutil.dumps(tariff() | {"currency": 42}))
    good = tmp_path / "good.json"
    good.write_text(jsonutil.dumps(tariff()))

    monkeypatch.delenv("OCPI_EVENT_BUS_NAME", raising=False)
    with pytest.raises(SystemExit) as exit_:
        _cli(["publish", "--module", "tariffs", "--file", str(good)], capsys)
    assert "error: OCPI_EVENT_BUS_NAME" in str(exit_.value.code)

    monkeypatch.setenv("OCPI_EVENT_BUS_NAME", aws["OcpiBus"])
    from shared import config

    config.reset_settings()
    cases = [
        (["--module", "tariffs", "--file", str(bad)], "not valid JSON"),
        (["--module", "tariffs", "--file", str(tmp_path / "missing.json")], "cannot read"),
        (["--module", "tariffs", "--file", str(wrong)], "2001"),
        (["--module", "tariffs"], "--file is required"),
        (["--module", "tariffs", "--file", str(good), "--id", "T1"], "--id goes with"),
        (["--patch", "--module", "locations", "--file", str(good)], "--patch needs"),
        (["--delete", "--module", "tariffs", "--id", "T1"], "--delete needs"),
        (
            [
                "--patch",
                "--module",
                "tariffs",
                "--file",
                str(good),
                "--country-code",
                "NL",
                "--party-id",
                "CPO",
                "--id",
                "T1",
            ],
            "no PATCH",
        ),
        (
            ["--delete", "--module", "tokens", "--country-code", "NL", "--party-id", "MSP", "--id", "X"],
            "not deleted",
        ),
    ]
    for argv, expected in cases:
        code, out, err = _cli(["publish", *argv], capsys)
        assert code != 0 and out == "", argv
        assert err.startswith("error:") and expected in err, (argv, err)

    monkeypatch.setenv("OCPI_EVENT_BUS_NAME", "no-such-bus")
    config.reset_settings()
    code, _, err = _cli(["publish", "--module", "tariffs", "--file", str(good)], capsys)
    assert code != 0 and err.startswith("error:")
    assert _drain(aws["IngestQueue"]) == []
