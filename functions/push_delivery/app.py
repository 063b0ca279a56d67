"""Push delivery function: brings one partner up to date with one of our objects per message.

Path: SQS PushDeliveryQueue (from the fan-out function, shared/services/push.py) -> this function
(batches, ReportBatchItemFailures) -> the partner's receiver interface (PUT/PATCH/POST/DELETE).

- Records of one batch run concurrently (Powertools AsyncBatchProcessor; the blocking HTTP call in
  a worker thread), serialised per partner: a slow or dead partner holds up only its own records.
- A failed delivery is reported in `batchItemFailures` after its visibility timeout was set to the
  backoff of its attempt (30 s, 60 s, ... capped): SQS brings it back then. After
  OCPI_PUSH_MAX_ATTEMPTS receives (= maxReceiveCount) SQS moves it to PushDeliveryDeadLetterQueue
  (alarmed; `ocpi-admin push dlq` / `push replay`); its in-flight mark is dropped on the last
  attempt so the object's next change is queued afresh.
- A malformed message cannot get better: logged at error, dropped.

A background function: no FastAPI app, no HTTP server. Never logs token uids.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.logs import bind, log_context, logger
from shared.metrics import emit, metrics
from shared.services import push
from shared.store import get_store

# Outcomes that sent something to the partner (push.deliver's labels): their lag is measured.
SENT = frozenset({"put", "patch", "post", "delete"})


class _Batch:
    """Per invocation: one partner read per partner, one lock per partner (order within a partner)."""

    def __init__(self, context: Any = None) -> None:
        self.context = context
        self.store = get_store()
        self.settings = push.PushSettings.from_env()
        self.locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._partners: dict[str, dict[str, Any] | None] = {}
        self.outcomes: Counter[str] = Counter()

    def partner(self, partner_id: str) -> dict[str, Any] | None:
        if partner_id not in self._partners:
            self._partners[partner_id] = self.store.get_partner(partner_id)
        return self._partners[partner_id]

    def time_left(self) -> float:
        """Seconds this invocation has left (a record must not start a call it cannot finish:
        a timed-out invocation would bring every record of the batch back, done ones included)."""
        getter = getattr(self.context, "get_remaining_time_in_millis", None)
        return getter() / 1000 if callable(getter) else float("inf")

    def deliver(self, delivery: push.Delivery) -> str:
        return push.deliver(self.store, delivery, self.partner(delivery.partner_id), self.settings)


def _metric(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


async def record_handler(record: SQSRecord, batch: _Batch) -> str:
    try:
        delivery = push.Delivery.from_message(record.body)
    except ValueError as err:
        logger.error(
            "push delivery: malformed message dropped",
            extra={"message_id": record.message_id, "error": str(err)},
        )
        _metric("PushRejected")
        return "rejected"
    # Every later line of this record (the client's calls included) names the object and partner.
    bind(**delivery.log_fields())
    attempt = int(record.attributes.approximate_receive_count or 1)
    async with batch.locks[delivery.partner_id]:
        # Worst case of one delivery: a PATCH and its PUT fallback, each up to the read timeout.
        if batch.time_left() < 2 * batch.settings.timeout + 5:
            await asyncio.to_thread(push.delay, record.receipt_handle, 1)
            logger.info(
                "push delivery postponed: the invocation is about to end", extra=delivery.log_fields()
            )
            _metric("PushPostponed")
            raise RuntimeError("postponed: not enough time left in this invocation")
        try:
            label = await asyncio.to_thread(batch.deliver, delivery)
        except push.PushFailed as err:
            last = attempt >= batch.settings.max_attempts
            extra = {
                **delivery.log_fields(),
                "attempt": attempt,
                # A partner's message or our request path may quote a token uid: not for tokens.
                "error": err.message if delivery.module != "tokens" else f"status {err.status_code}",
                "status_code": err.status_code,
            }
            # The last attempt: visible again at once, so the next receive moves it to the DLQ now
            # (not after the queue's 6-minute visibility timeout).
            delay = 0 if last else batch.settings.backoff(attempt)
            if last:
                await asyncio.to_thread(push.give_up, batch.store, delivery)
                logger.error("push delivery failed for the last time: to the dead-letter queue", extra=extra)
                _metric("PushDeadLettered")
            else:
                logger.warning("push delivery failed, will be retried", extra={**extra, "retry_in_s": delay})
                _metric("PushRetried")
            try:
                await asyncio.to_thread(push.delay, record.receipt_handle, delay)
            except Exception as verr:  # the queue's visibility timeout applies then
                logger.warning("push delivery: backoff not set", extra={"error": str(verr)[:200]})
            raise
        except Exception:  # storage trouble and the like: SQS retries after the visibility timeout
            logger.exception(
                "push delivery failed unexpectedly", extra={**delivery.log_fields(), "attempt": attempt}
            )
            _metric("PushErrors")
            if attempt >= batch.settings.max_attempts:  # to the DLQ: do not leave the mark behind
                await asyncio.to_thread(push.give_up, batch.store, delivery)
            raise
    lag = _lag_seconds(record) if label in SENT and not delivery.timeout_check else None
    logger.info("push delivered", extra={"outcome": label, "attempt": attempt, "lag_s": lag})
    batch.outcomes[label] += 1
    if lag is not None:
        metrics.add_metric(name="PushLagSeconds", unit=MetricUnit.Seconds, value=lag)
    return label


def _lag_seconds(record: SQSRecord) -> float | None:
    """Age of the message when its delivery succeeded (queued by the fan-out, or a follow-up):
    queue wait, retries and the call itself. Command timeout checks are delayed on purpose: not
    measured."""
    try:
        sent_ms = int(record.attributes.sent_timestamp)
    except (TypeError, ValueError, KeyError):  # a record without SentTimestamp (tests, replays)
        return None
    return round(max(0.0, time.time() - sent_ms / 1000), 3)


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # never the event: bodies may hold token uids
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    batch = _Batch(context)
    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    async def handle(record: SQSRecord) -> str:
        with log_context(message_id=record.message_id):  # this record's task only
            return await record_handler(record, batch)

    try:
        return async_process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )
    finally:
        # One line per outcome and invocation (PushDelivered{outcome=put|patch|...|skipped|gone}):
        # a flush of `metrics` has one dimension set for all its metrics.
        for outcome, n in sorted(batch.outcomes.items()):
            emit("PushDelivered", n, outcome=outcome)
