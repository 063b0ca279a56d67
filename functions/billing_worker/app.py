"""Billing worker: the clearing queue's consumer (shared/services/billing.py).

Path: EventBridge Scheduler (daily and monthly, template.yaml `BillingDailyRun`/`BillingMonthlyRun`)
or `ocpi-admin billing run` -> SQS ClearingQueue -> this function (BatchSize 1, ReportBatchItemFailures):

- ``run``: queues one job per partner holding a CPO or EMSP party;
- ``job``: records the job of (partner, period) and queues its time slices;
- ``unit``: one time slice (CDRs or sessions) -> a partial result in S3; the last one merges the
  statement (S3 statement.json + lines.csv, a DynamoDB record, `ocpi.billing.statement`).

A failed message is reported in `batchItemFailures` with its visibility set to a backoff
(OCPI_BILLING_RETRY_BASE seconds, doubling); after OCPI_BILLING_MAX_ATTEMPTS receives
(= maxReceiveCount) SQS moves it to ClearingDeadLetterQueue (alarmed). Every step is idempotent, so
a retried or redelivered message never counts twice. A malformed message cannot get better: logged at
error, dropped; so is a run for a partner we cannot bill.

A background function: no FastAPI app, no HTTP server.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.logs import log_context, logger
from shared.metrics import metrics
from shared.services import billing
from shared.store import get_store


@lru_cache(maxsize=1)
def _clients() -> tuple[Any, Any]:
    return billing.aws_client("s3"), billing.aws_client("sqs")


class _Invocation:
    def __init__(self, context: Any) -> None:
        self.context = context
        self.settings = billing.BillingSettings.from_env()
        s3, sqs = _clients()
        self.store = get_store()
        self.blobs = billing.S3Blobs(s3, self.settings.bucket)
        self.queue = billing.SqsQueue(sqs, self.settings.queue_url)

    def time_left(self) -> float:
        getter = getattr(self.context, "get_remaining_time_in_millis", None)
        return getter() / 1000 if callable(getter) else float("inf")


def _metric(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def record_handler(record: SQSRecord, inv: _Invocation) -> str:
    try:
        msg = billing.parse_message(record.body)
    except billing.Rejected as err:
        logger.error(
            "billing: malformed message dropped", extra={"message_id": record.message_id, "error": str(err)}
        )
        _metric("BillingRejected")
        return "rejected"
    attempt = int(record.attributes.approximate_receive_count or 1)
    ids = {k: msg.get(k) or (msg.get("job") or {}).get(k) for k in ("partner_id", "period")}
    fields = {"kind": msg["kind"], "unit": msg.get("unit"), **ids, "attempt": attempt}
    try:
        outcome = billing.handle(
            inv.store,
            inv.blobs,
            inv.queue,
            inv.settings,
            msg,
            message_id=record.message_id,
            time_left=inv.time_left,
        )
    except billing.Rejected as err:  # e.g. a run for a partner we cannot bill: retrying cannot help
        logger.error("billing: message rejected, dropped", extra={**fields, "error": str(err)})
        _metric("BillingRejected")
        return "rejected"
    except Exception:
        last = attempt >= inv.settings.max_attempts
        delay = 0 if last else inv.settings.backoff(attempt)
        if last:
            logger.exception("billing: failed for the last time, to the dead-letter queue", extra=fields)
            _metric("BillingDeadLettered")
        else:
            logger.exception("billing: failed, will be retried", extra={**fields, "retry_in_s": delay})
            _metric("BillingRetried")
        try:
            inv.queue.delay(record.receipt_handle, delay)
        except Exception as verr:  # the queue's visibility timeout applies then
            logger.warning("billing: backoff not set", extra={"error": str(verr)[:200]})
        raise
    logger.info("billing message processed", extra={**fields, "outcome": outcome})
    _metric(f"Billing{outcome.replace('_', ' ').title().replace(' ', '')}")
    return outcome


def _with_message_id(record: SQSRecord, inv: _Invocation) -> str:
    with log_context(message_id=record.message_id):  # on every line this record logs
        return record_handler(record, inv)


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # never the event: bodies may hold token uids
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    inv = _Invocation(context)
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event,
        record_handler=lambda record: _with_message_id(record, inv),
        processor=processor,
        context=context,
    )
