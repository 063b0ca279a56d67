"""Billing runs (shared/services/billing.py) on moto with template.yaml's table, clearing queue and
statements bucket, driven through the billing worker's Lambda handler the way SQS would (the local
stack's poller: receive, invoke, delete what succeeded): totals per currency with credits netted,
every kind of discrepancy, byte-identical re-runs, redelivered and chunked slices, retries into the
dead-letter queue, and ocpi-admin billing."""

from __future__ import annotations

import copy
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from shared import events
from shared.local.template import load_template
from shared.services import billing, cdrs
from shared.services.objects import RECEIVED, to_collection
from shared.store.base import ObjectRef
from tests.integration.test_lambda_events import Context, handler_for

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
PARTNER = "partner-a"
PERIOD = "2026-10-05"  # a day in Europe/Amsterdam: [2026-10-04T22:00Z, 2026-10-05T22:00Z)
AS_OF = "2026-10-20T00:00:00Z"  # long after the grace time: a final statement


class Harness:
    """The clearing queue drained through the billing worker's handler (what Lambda's SQS event
    source mapping does), plus S3 and the store."""

    def __init__(self, store: Any, aws: dict, published: list) -> None:
        self.store = store
        self.aws = aws
        self.published = published
        self.sqs = boto3.client("sqs", region_name="eu-west-1")
        self.s3 = boto3.client("s3", region_name="eu-west-1")
        self.queue_url = aws["ClearingQueue"]
        self.dlq_url = aws["ClearingDeadLetterQueue"]
        self.bucket = aws["StatementsBucket"]
        self.handler = handler_for("billing_worker")

    def send(self, body: dict) -> None:
        self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(body))

    def run(self, period: str = PERIOD, as_of: str = AS_OF, **extra: Any) -> None:
        self.send({"kind": "run", "period": period, "as_of": as_of, **extra})
        self.drain()

    def receive(self) -> list[dict]:
        return self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=1, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])

    def drain(self, limit: int | None = None) -> int:
        """Process messages until the queue is empty (or ``limit`` messages were processed)."""
        from shared.local.stack import build_sqs_event

        count = 0
        while count < (limit or 5000):
            messages = self.receive()
            if not messages:
                return count
            event = build_sqs_event(
                messages, "arn:aws:sqs:eu-west-1:123456789012:test-ClearingQueue", "eu-west-1"
            )
            result = self.handler(event, Context())
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for m in messages:
                if m["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            count += 1
        if limit is None:
            raise AssertionError("the clearing queue did not drain")
        return count

    def obj(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def statement(self, partner: str = PARTNER, period: str = PERIOD) -> dict:
        return json.loads(self.obj(billing.statement_key(partner, period)))

    def lines(self, partner: str = PARTNER, period: str = PERIOD) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.obj(billing.lines_key(partner, period)).decode())))

    def files(self, partner: str = PARTNER, period: str = PERIOD) -> tuple[bytes, bytes]:
        return self.obj(billing.statement_key(partner, period)), self.obj(billing.lines_key(partner, period))


@pytest.fixture
def h(dynamo_store, aws, monkeypatch) -> Harness:
    monkeypatch.setenv("OCPI_BILLING_QUEUE_URL", aws["ClearingQueue"])
    monkeypatch.setenv("OCPI_BILLING_BUCKET", aws["StatementsBucket"])
    monkeypatch.setenv("OCPI_BILLING_TIMEZONE", "Europe/Amsterdam")
    monkeypatch.setenv("OCPI_BILLING_GRACE_HOURS", "24")
    monkeypatch.setenv("OCPI_BILLING_SLICE_HOURS", "6")
    monkeypatch.setenv("OCPI_BILLING_RETRY_BASE", "0")
    monkeypatch.setenv(
        "OCPI_BILLING_MAX_ATTEMPTS", str(TEMPLATE["Parameters"]["BillingMaxAttempts"]["Default"])
    )
    published: list = []
    events.set_sink(published.append)
    dynamo_store.put_partner(
        {
            "partner_id": PARTNER,
            "status": "REGISTERED",
            "roles": [
                {"role": "EMSP", "country_code": "DE", "party_id": "MSP"},  # our CDRs go to it
                {"role": "CPO", "country_code": "DE", "party_id": "CPO"},  # it sends us CDRs
            ],
        }
    )
    return Harness(dynamo_store, aws, published)


# ------------------------------------------------------------------ data
def cdr(
    cid: str,
    end: str,
    excl: str,
    incl: str | None,
    energy: str = "10",
    *,
    direction: str = "sent",
    currency: str = "EUR",
    session_id: str | None = None,
    credit_of: str | None = None,
) -> tuple[dict, str]:
    """A CDR body (the fields billing reads) and its collection."""
    cc, pid = ("NL", "CPO") if direction == "sent" else ("DE", "CPO")
    body: dict[str, Any] = {
        "country_code": cc,
        "party_id": pid,
        "id": cid,
        "start_date_time": end,
        "end_date_time": end,
        "session_id": session_id or f"S-{cid}",
        "cdr_token": {"country_code": "DE", "party_id": "MSP", "uid": "TOKEN1", "type": "RFID"},
        "currency": currency,
        "total_cost": {"excl_vat": Decimal(excl), **({"incl_vat": Decimal(incl)} if incl else {})},
        "total_energy": Decimal(energy),
        "last_updated": end,
    }
    if credit_of:
        body.update(credit=True, credit_reference_id=credit_of)
    collection = to_collection("DE", "MSP") if direction == "sent" else RECEIVED
    return body, collection


def store_cdr(store: Any, body_and_col: tuple[dict, str], pricing: dict | None = None) -> None:
    """As cdrs._create stores it (same indexes), with the pricing check the engine would attach."""
    body, collection = body_and_col
    ref = ObjectRef("cdrs", body["country_code"], body["party_id"], body["id"])
    meta = {"partner_id": PARTNER} if collection == RECEIVED else {}
    if pricing is not None:
        meta["pricing"] = pricing
    lu = datetime.fromisoformat(body["last_updated"].replace("Z", "+00:00"))
    store.create(ref, body, lu, collection=collection, meta=meta, index=cdrs._indexes(ref, body, collection))


def store_session(store: Any, sid: str, end: str, status: str = "COMPLETED", direction: str = "sent") -> None:
    cc, pid = ("NL", "CPO") if direction == "sent" else ("DE", "CPO")
    collection = to_collection("DE", "MSP") if direction == "sent" else RECEIVED
    body = {"country_code": cc, "party_id": pid, "id": sid, "status": status, "end_date_time": end}
    lu = datetime.fromisoformat(end.replace("Z", "+00:00"))
    store.put(ObjectRef("sessions", cc, pid, sid), body, lu, collection=collection, manifest=False)


def totals_of(statement: dict) -> dict:
    return {(t["direction"], t["currency"]): t for t in statement["totals"]}


# ------------------------------------------------------------------ periods (pure)
def test_period_boundaries_follow_the_time_zone_and_the_grace_time() -> None:
    start, end = billing.period_bounds("2026-10", "Europe/Amsterdam")
    assert (start.isoformat(), end.isoformat()) == ("2026-09-30T22:00:00+00:00", "2026-10-31T23:00:00+00:00")
    start, end = billing.period_bounds("2026-10-25", "Europe/Amsterdam")  # summer time ends: 25 hours
    assert end - start == billing.timedelta(hours=25)
    assert len(billing.slice_ranges(start, end, 6)) == 5
    at = datetime(2026, 10, 5, 2, 0, tzinfo=UTC)  # 04:00 in Amsterdam
    assert billing.latest_period("daily", at, "Europe/Amsterdam", 24) == "2026-10-03"
    assert billing.latest_period(
        "monthly", datetime(2026, 11, 2, 3, 0, tzinfo=UTC), "Europe/Amsterdam", 24
    ) == ("2026-10")
    assert billing.latest_period("monthly", datetime(2026, 1, 2, 3, 0, tzinfo=UTC), "UTC", 24) == "2025-12"
    for bad in ("2026-13", "2026-10-32", "10-2026", ""):
        with pytest.raises(ValueError):
            billing.parse_period(bad)
    assert billing.fmt(Decimal("-0.00")) == "0.0000" and billing.fmt(Decimal("1.23456")) == "1.23456"


# ------------------------------------------------------------------ totals
def test_totals_per_currency_with_credits_netted(h: Harness) -> None:
    s = h.store
    store_cdr(s, cdr("A1", "2026-10-05T10:00:00Z", "10.00", "12.10", "5.5"))
    store_cdr(s, cdr("A2", "2026-10-05T11:30:00Z", "7.5", "9.075", "3"))
    store_cdr(s, cdr("A1-C", "2026-10-05T10:00:00Z", "-10.00", "-12.10", "5.5", credit_of="A1"))
    store_cdr(s, cdr("A3", "2026-10-04T22:00:00Z", "1", "1.21", "1"))  # local midnight: in
    store_cdr(s, cdr("A4", "2026-10-05T22:00:00Z", "100", "121", "1"))  # next local midnight: out
    store_cdr(s, cdr("R1", "2026-10-05T09:00:00Z", "4", "4.84", "2", direction="received"))
    store_cdr(
        s, cdr("R2", "2026-10-05T09:00:00.5Z", "3.3333", None, "1.25", direction="received", currency="CHF")
    )
    # Another party's CDRs are not this partner's.
    other = cdr("X1", "2026-10-05T12:00:00Z", "50", "60")
    other[0]["cdr_token"] = {"country_code": "FR", "party_id": "XYZ", "uid": "T", "type": "RFID"}
    store_cdr(s, (other[0], to_collection("FR", "XYZ")))
    h.run()
    st = h.statement()
    assert st["final"] is True and st["period_start"] == "2026-10-04T22:00:00Z"
    assert st["parties"] == {"sent_to": ["DE*MSP"], "received_from": ["DE*CPO"]}
    t = totals_of(st)
    assert t[("sent", "EUR")] == {
        "direction": "sent",
        "currency": "EUR",
        "cdrs": 3,
        "credit_cdrs": 1,
        "total_cost_excl_vat": "8.5000",  # 10 + 7.5 + 1 - 10
        "total_cost_incl_vat": "10.2850",
        "incl_vat_missing": 0,
        "total_energy_kwh": "4.0000",  # 5.5 + 3 + 1 - 5.5: the credit's energy is netted too
    }
    assert t[("received", "EUR")]["total_cost_excl_vat"] == "4.0000"
    chf = t[("received", "CHF")]
    assert (chf["total_cost_excl_vat"], chf["incl_vat_missing"], chf["total_cost_incl_vat"]) == (
        "3.3333",
        1,
        "0.0000",
    )
    assert st["balance"] == [
        {"currency": "CHF", "net_excl_vat": "-3.3333", "net_incl_vat": "0.0000"},
        {"currency": "EUR", "net_excl_vat": "4.5000", "net_incl_vat": "5.4450"},
    ]
    lines = h.lines()
    assert [row["cdr_id"] for row in lines] == ["A3", "R1", "R2", "A1", "A1-C", "A2"]  # by end, then key
    assert lines[4]["total_cost_excl_vat"] == "-10.0000" and lines[4]["credit"] == "true"
    assert st["lines"]["count"] == 6
    record = h.store.get_statement(PARTNER, PERIOD)
    assert record["statement_key"] == f"statements/{PARTNER}/{PERIOD}/statement.json"
    assert record["lines"] == 6 and record["final"] is True
    (event,) = [e for e in h.published if e["DetailType"] == events.BILLING_STATEMENT]
    detail = json.loads(event["Detail"])
    assert event["Source"] == events.SOURCE_ENDPOINT
    assert detail["partner_id"] == PARTNER and detail["changed"] is True
    assert [r["period"] for r in h.store.list_statements(PARTNER)] == [PERIOD]


# ------------------------------------------------------------------ discrepancies
def test_discrepancies_of_each_kind(h: Harness) -> None:
    s = h.store
    mismatch = {
        "status": "mismatch",
        "expected": {"excl_vat": "9.50", "incl_vat": "11.495"},
        "difference": {"excl_vat": "0.50", "incl_vat": "0.605"},
        "tariff_ids": ["T2", "T1"],
        "reason": "re-priced total differs",
    }
    store_cdr(s, cdr("R1", "2026-10-05T09:00:00Z", "10", "12.10", direction="received"), mismatch)
    store_cdr(s, cdr("R2", "2026-10-05T09:10:00Z", "1", "1.21", direction="received"), {"status": "ok"})
    unpriced = {"status": "unpriced", "expected": None, "difference": None, "reason": "no tariff held"}
    store_cdr(s, cdr("R3", "2026-10-05T09:20:00Z", "1", "1.21", direction="received"), unpriced)
    # Two credits for R1 (a duplicate), one credit for a CDR we never got (an orphan).
    store_cdr(s, cdr("R1-C", "2026-10-05T09:00:00Z", "-10", "-12.10", direction="received", credit_of="R1"))
    store_cdr(s, cdr("R1-D", "2026-10-05T09:00:00Z", "-10", "-12.10", direction="received", credit_of="R1"))
    store_cdr(s, cdr("Q-C", "2026-10-05T13:00:00Z", "-2", "-2.42", direction="received", credit_of="Q"))
    # Sessions: one with its CDR, one COMPLETED without, one still ACTIVE, one of the partner's
    # (received) without, one ended outside the period.
    store_cdr(s, cdr("A1", "2026-10-05T15:00:30Z", "5", "6.05", session_id="SES-1"))
    store_session(s, "SES-1", "2026-10-05T15:00:00Z")
    store_session(s, "SES-2", "2026-10-05T16:00:00Z")
    store_session(s, "SES-3", "2026-10-05T16:00:00Z", status="ACTIVE")
    store_session(s, "SES-4", "2026-10-05T05:00:00Z", direction="received")
    store_session(s, "SES-5", "2026-10-06T05:00:00Z")
    h.run()
    st = h.statement()
    d = st["discrepancies"]
    assert {k: v["count"] for k, v in d.items()} == {
        "repriced_difference": 1,
        "session_without_cdr": 2,
        "duplicate_credit": 1,
        "orphan_credit": 1,
    }
    assert d["repriced_difference"]["items"] == [
        {
            "direction": "received",
            "cdr": "DE*CPO*R1",
            "end_date_time": "2026-10-05T09:00:00Z",
            "currency": "EUR",
            "charged_excl_vat": "10.0000",
            "charged_incl_vat": "12.1000",
            "expected_excl_vat": "9.5000",
            "expected_incl_vat": "11.4950",
            "difference_excl_vat": "0.5000",
            "difference_incl_vat": "0.6050",
            "tariff_ids": ["T1", "T2"],
        }
    ]
    assert [i["session"] for i in d["session_without_cdr"]["items"]] == ["DE*CPO*SES-4", "NL*CPO*SES-2"]
    assert d["duplicate_credit"]["items"] == [
        {
            "direction": "received",
            "cdr": "DE*CPO*R1",
            "credits": ["DE*CPO*R1-C", "DE*CPO*R1-D"],
            "end_date_time": "2026-10-05T09:00:00Z",
        }
    ]
    assert d["orphan_credit"]["items"][0]["credit"] == "DE*CPO*Q-C"
    assert st["info"]["unpriced"]["items"][0]["cdr"] == "DE*CPO*R3"
    assert st["pricing_checks"] == {"ok": 1, "mismatch": 1, "unpriced": 1, "not_checked": 4}
    assert st["info"]["sessions_checked"] == 3
    row = next(r for r in h.lines() if r["cdr_id"] == "R1")
    assert (row["pricing_status"], row["pricing_difference_excl_vat"]) == ("mismatch", "0.5000")


def test_a_run_before_the_grace_time_is_not_final(h: Harness) -> None:
    store_session(h.store, "SES-EARLY", "2026-10-05T08:00:00Z")
    store_session(h.store, "SES-LATE", "2026-10-05T21:00:00Z")
    h.run(as_of="2026-10-06T10:00:00Z")  # grace 24 h: sessions after 2026-10-05T10:00Z may wait
    st = h.statement()
    assert st["final"] is False and st["grace_cutoff"] == "2026-10-05T10:00:00Z"
    assert [i["session"] for i in st["discrepancies"]["session_without_cdr"]["items"]] == ["NL*CPO*SES-EARLY"]
    assert st["info"]["sessions_in_grace"] == 1


# ------------------------------------------------------------------ determinism and idempotency
def _end(i: int) -> str:
    at = datetime(2026, 10, 4, 22, 3, tzinfo=UTC) + timedelta(minutes=47 * i)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _some_cdrs(store: Any, n: int = 24) -> None:
    """n CDRs spread over the day, every 5th with a received one at the same instant (EUR or CHF,
    a pricing mismatch), a credit, a session without CDR."""
    for i in range(n):
        end = _end(i)
        store_cdr(store, cdr(f"C{i:03d}", end, f"{i}.25", f"{Decimal(i) * Decimal('1.21'):.4f}", f"{i}.5"))
        if i % 5 == 0:
            store_cdr(
                store,
                cdr(f"R{i:03d}", end, "2", "2.42", direction="received", currency="EUR" if i % 2 else "CHF"),
                {"status": "mismatch", "expected": {"excl_vat": "1.9"}, "difference": {"excl_vat": "0.1"}},
            )
    store_cdr(store, cdr("C001-C", _end(1), "-1.25", "-1.21", "1.5", credit_of="C001"))
    store_session(store, "LOST", "2026-10-05T12:00:00Z")


def test_rerun_is_byte_identical_and_never_double_counts(h: Harness) -> None:
    _some_cdrs(h.store)
    h.run()
    first = h.files()
    h.run(as_of="2026-10-21T00:00:00Z")  # another run of the same period, later
    assert h.files() == first
    versions = h.s3.list_object_versions(Bucket=h.bucket, Prefix=billing.statement_key(PARTNER, PERIOD))
    assert len(versions["Versions"]) == 2  # the bucket keeps both (identical) versions
    changed = [
        json.loads(e["Detail"])["changed"] for e in h.published if e["DetailType"] == "ocpi.billing.statement"
    ]
    assert changed == [True, False]
    assert totals_of(json.loads(first[0]))[("sent", "EUR")]["cdrs"] == 24


def test_a_redelivered_slice_is_counted_once(h: Harness) -> None:
    _some_cdrs(h.store)
    h.run()
    expected = h.files()
    # The same run again, with every unit message delivered twice (SQS at-least-once), one of them
    # after the job was merged.
    h.send({"kind": "run", "period": PERIOD, "as_of": "2026-10-22T00:00:00Z", "run_id": "20261022T000000Z-r"})
    h.drain(limit=1)  # run -> job
    h.drain(limit=1)  # job -> 10 unit messages
    units = []
    while messages := h.receive():
        units.append(messages[0]["Body"])
        h.sqs.delete_message(QueueUrl=h.queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    assert len(units) == 4  # 4 slices of 6 hours
    for body in units + units[:3]:
        h.sqs.send_message(QueueUrl=h.queue_url, MessageBody=body)
    h.drain()
    for body in units[:2]:
        h.sqs.send_message(QueueUrl=h.queue_url, MessageBody=body)
    h.drain()
    assert h.files() == expected
    job = h.store.billing_job(PARTNER, PERIOD)
    assert job.run_id == "20261022T000000Z-r" and job.status == "merged"


def test_a_chunked_run_equals_an_unchunked_one(h: Harness, monkeypatch) -> None:
    _some_cdrs(h.store, n=16)
    monkeypatch.setenv("OCPI_BILLING_SLICE_HOURS", "48")  # one slice of the whole day
    h.run()
    whole = h.files()
    monkeypatch.setenv("OCPI_BILLING_SLICE_MAX_CDRS", "2")  # every slice with 3+ CDRs halves
    h.run(as_of="2026-10-21T00:00:00Z")
    job = h.store.billing_job(PARTNER, PERIOD)
    assert len(job.split) > 4 and len(job.leaves) > 8
    assert h.files() == whole


def test_a_newer_run_supersedes_an_older_one(h: Harness) -> None:
    _some_cdrs(h.store, n=4)
    h.send({"kind": "run", "period": PERIOD, "as_of": AS_OF, "run_id": "20261020T000000Z-old"})
    h.drain(limit=2)  # run, then job: the old run's units are queued
    settings = billing.BillingSettings.from_env()
    new = {"kind": "job", "partner_id": PARTNER, "period": PERIOD, "as_of": AS_OF}
    queue = billing.SqsQueue(h.sqs, h.queue_url)
    assert billing.start_job(h.store, queue, settings, {**new, "run_id": "20261021T000000Z-new"}) == "started"
    h.drain()  # the old run's units find a newer run: they stop; the new run completes
    job = h.store.billing_job(PARTNER, PERIOD)
    assert job.run_id == "20261021T000000Z-new" and job.status == "merged"
    assert h.store.get_statement(PARTNER, PERIOD)["run_id"] == "20261021T000000Z-new"
    # An old job message coming late changes nothing either.
    h.send(
        {
            "kind": "job",
            "partner_id": PARTNER,
            "period": PERIOD,
            "run_id": "20261020T000000Z-old",
            "as_of": AS_OF,
        }
    )
    h.drain()
    assert h.store.billing_job(PARTNER, PERIOD).run_id == "20261021T000000Z-new"


# ------------------------------------------------------------------ failures
def test_a_failing_message_is_retried_then_dead_lettered(h: Harness, monkeypatch) -> None:
    max_receives = int(TEMPLATE["Parameters"]["BillingMaxAttempts"]["Default"])
    redrive = TEMPLATE["Resources"]["ClearingQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "BillingMaxAttempts"}
    calls = []

    def broken(*args: Any, **kwargs: Any) -> str:
        calls.append(1)
        raise RuntimeError("storage trouble")

    monkeypatch.setattr(billing, "start_job", broken)
    h.send({"kind": "job", "partner_id": PARTNER, "period": PERIOD, "run_id": "r1", "as_of": AS_OF})
    h.drain()
    assert len(calls) == max_receives
    dead = h.sqs.receive_message(QueueUrl=h.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    assert [json.loads(m["Body"])["run_id"] for m in dead] == ["r1"]
    # A malformed message, or a run for a partner we cannot bill, is dropped at once, not retried.
    h.send({"kind": "unit", "job": {}})
    h.send({"kind": "run", "period": PERIOD, "as_of": AS_OF, "partner_id": "nobody"})
    assert h.drain() == 2
    assert (
        len(
            h.sqs.receive_message(QueueUrl=h.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
        )
        == 1
    )


# ------------------------------------------------------------------ CDR creation writes the index
def test_cdrs_created_by_the_module_are_in_the_billing_index(h: Harness, monkeypatch) -> None:
    monkeypatch.setenv(
        "OCPI_OWN_PARTIES", json.dumps([{"country_code": "NL", "party_id": "CPO", "role": "CPO"}])
    )
    from shared import config

    config.reset_settings()
    example = json.loads((ROOT.parent / "shared/ocpi-spec/2.2.1/examples/cdr_example.json").read_text())
    own = copy.deepcopy(example)
    own.update(country_code="NL", party_id="CPO", id="OWN-1", end_date_time="2026-10-05T10:00:00Z")
    own["cdr_token"].update(country_code="DE", party_id="MSP")
    cdrs.create_own(h.store, own)
    page = h.store.query_range("GSI3", "BL#sent#DE*MSP", "2026-10-05", "2026-10-06")
    assert [o.ref.object_id for o in page.items] == ["OWN-1"]


# ------------------------------------------------------------------ ocpi-admin billing
def test_ocpi_admin_billing_commands(h: Harness, tmp_path, capsys) -> None:
    from shared.admin import cli

    _some_cdrs(h.store, n=6)
    assert cli.main(["billing", "run", "--period", PERIOD, "--partner", PARTNER, "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    assert started["partners"] == [PARTNER] and started["period"] == PERIOD
    h.drain()
    capsys.readouterr()  # the worker's logs and metrics
    assert cli.main(["billing", "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["run_id"] == started["run_id"] and listed["lines"] == h.statement()["lines"]["count"] == 9
    assert cli.main(["billing", "list", "--partner", "nobody", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert cli.main(["billing", "show", PARTNER, PERIOD, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == h.statement()
    assert cli.main(["billing", "download", PARTNER, PERIOD, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert ((tmp_path / "statement.json").read_bytes(), (tmp_path / "lines.csv").read_bytes()) == h.files()
    with pytest.raises(SystemExit, match="no statement"):
        cli.main(["billing", "show", PARTNER, "2026-09"])
    assert cli.main(["billing", "run", "--period", "2026-10", "--partner", "nobody"]) == 1
    assert cli.main(["billing", "run", "--period", "October"]) == 1
