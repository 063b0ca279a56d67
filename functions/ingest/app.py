"""Ingest function: our own objects (as CPO locations, tariffs, sessions and CDRs, as eMSP tokens)
from the operator's back office.

Path: back office -> EventBridge (source `ocpi.backoffice`, detail-type `ocpi.own.put|patch|delete`,
and `ocpi.command.result` for commands: shared/services/commands.py)
-> rule BackOfficeRule -> SQS IngestQueue -> this function (batches, ReportBatchItemFailures) ->
DynamoDB `own` collection + `ocpi.own.changed`. Schema and rules: shared/services/ingest.py.

Per record:
- stored (created / updated / deleted) or stale (older than what is stored: not applied) -> done;
- bad data (InvalidParameters): retrying cannot help, so the record is NOT reported as failed (it
  would only loop until the dead-letter queue); it is logged at error and `ocpi.own.rejected` is
  published so the operator sees it;
- anything else (throttling, an object a PATCH refers to that has not arrived yet, ...) is
  reported in `batchItemFailures`: SQS redelivers it after the visibility timeout, and after
  maxReceiveCount receives it goes to IngestDeadLetterQueue (alarmed).

A background function: no FastAPI app, no HTTP. Never logs token uids or contract ids.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.errors import InvalidParameters
from shared.logs import log_context, logger
from shared.metrics import metrics
from shared.services import charging_profiles, commands, ingest
from shared.store import get_store


def _count(label: str) -> None:
    metrics.add_metric(name=f"Ingest{label.capitalize()}", unit=MetricUnit.Count, value=1)


def record_handler(record: SQSRecord) -> str:
    detail_type: str = ""
    detail: Any = None
    receive_count = record.attributes.approximate_receive_count
    try:
        detail_type, detail = ingest.unwrap(record.body)
        if detail_type == charging_profiles.OWN_ACTIVE:  # as CPO: a charger's profile changed
            sent = charging_profiles.own_active_profile(get_store(), detail)
            logger.info(
                "active charging profile", extra={"session_id": detail.get("session_id"), "partners": sent}
            )
            _count("stored")
            return "stored"
        if detail_type == commands.SEND:  # as eMSP: command a partner's charger (not retried)
            label = commands.send_from_backoffice(get_store(), detail)
            logger.info("command send", extra={"partner_id": detail.get("partner_id"), "outcome": label})
            _count(label)
            return label
        if detail_type == commands.RESULT:  # the back office's answer to a command (mod_commands)
            label = commands.record_result(get_store(), detail)
            logger.info("command result", extra={"command_id": detail.get("command_id"), "outcome": label})
            _count(label)
            return label
        cmd = ingest.parse(detail_type, detail)
        outcome = ingest.execute(get_store(), cmd)
    except InvalidParameters as err:
        message = ingest.redact(err.message, detail)
        logger.error(
            "back-office event rejected",
            extra={
                **ingest.safe_fields(detail_type, detail),
                "message_id": record.message_id,
                "error": message[:500],
            },
        )
        ingest.publish_rejected(detail_type, detail, err.message)
        _count("rejected")
        return "rejected"
    except Exception as err:
        logger.warning(
            "back-office event not stored, will be retried",
            extra={
                **ingest.safe_fields(detail_type, detail),
                "message_id": record.message_id,
                "receive_count": receive_count,
                "error_type": type(err).__name__,
                "error": ingest.redact(str(err), detail)[:300],
            },
        )
        _count("retried")
        raise
    label = ingest.outcome_label(outcome)
    logger.info("back-office event applied", extra={**cmd.log_fields(), "outcome": label})
    _count(label)
    return label


@metrics.log_metrics
@logger.inject_lambda_context(log_event=False)  # never the event: bodies may hold token uids
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # One processor per invocation (it keeps per-batch state). Never raise for a fully failed
    # batch: the same batchItemFailures answer works for one record and for all of them.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return process_partial_response(
        event=event, record_handler=_with_message_id, processor=processor, context=context
    )


def _with_message_id(record: SQSRecord) -> str:
    with log_context(message_id=record.message_id):  # on every line this record logs
        return record_handler(record)
