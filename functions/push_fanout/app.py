"""Push fan-out function: one own change -> one delivery message per entitled partner.

Path: `ocpi.own.changed` on the bus -> rule PushRule -> SQS PushFanoutQueue -> this function
(batches, ReportBatchItemFailures) -> SQS PushDeliveryQueue. Rules: shared/services/push.py.

Per batch the partner list is read once (one Query), whatever the number of partners and
records. Per record: one UpdateItem on the object's push state (counts the change, marks a delivery
in flight per partner) and one SendMessageBatch per 10 partners that had none in flight.

- A malformed event cannot get better by retrying: logged at error, dropped.
- A failure to store the mark or to queue a message fails the record (SQS retries it, then
  PushFanoutDeadLetterQueue, alarmed); marks whose message was not queued are released first, so
  the retry queues them again.

A background function: no FastAPI app, no HTTP. Never logs token uids.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared import jsonutil
from shared.logs import log_context, logger
from shared.metrics import metrics
from shared.services import push
from shared.store import get_store


class _Batch:
    """What one invocation reads once: the store, the settings and the partner list."""

    def __init__(self) -> None:
        self.store = get_store()
        self.settings = push.PushSettings.from_env()
        self._partners: list[dict[str, Any]] | None = None

    @property
    def partners(self) -> list[dict[str, Any]]:
        if self._partners is None:
            self._partners = self.store.list_partners()
        return self._partners


def record_handler(record: SQSRecord, batch: _Batch) -> int:
    try:
        change = push.Change.from_event(jsonutil.loads(record.body))
    except (ValueError, TypeError) as err:
        logger.error(
            "push fan-out: malformed event dropped",
            extra={"message_id": record.message_id, "error": str(err)[:300]},
        )
        metrics.add_metric(name="PushFanoutRejected", unit=MetricUnit.Count, value=1)
        return 0
    redelivered = int(record.attributes.approximate_receive_count or 1) > 1
    deliveries = push.fan_out(batch.store, change, batch.partners, batch.settings, redelivered=redelivered)
    failed = push.enqueue(deliveries)
    for d in failed:
        batch.store.push_release(d.ref, d.partner_id)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(deliveries)} deliveries could not be queued")
    logger.debug("push fan-out", extra={**change.log_fields(), "queued": len(deliveries)})
    metrics.add_metric(name="PushQueued", unit=MetricUnit.Count, value=len(deliveries))
    return len(deliveries)


def _with_message_id(record: SQSRecord, batch: _Batch) -> int:
    with log_context(message_id=record.message_id):  # on every line this record logs
        return record_handler(record, batch)


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # never the event: bodies may hold token uids
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    batch = _Batch()
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event,
        record_handler=lambda record: _with_message_id(record, batch),
        processor=processor,
        context=context,
    )
