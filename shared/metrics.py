"""CloudWatch metrics (Powertools Metrics: embedded metric format, printed to the function's log;
CloudWatch extracts them, no PutMetricData call). Namespace OCPI, default dimension service=ocpi.

One ``metrics`` object for every function (Powertools keeps metric data per process, shared by
all Metrics instances); the Lambda handler flushes it once per invocation (``metrics.log_metrics``).

API functions (shared/http.py): ``Requests`` (Count) per request, dimensions ``module`` and
``ocpi_status`` (the envelope's status_code); the partner and request id go in as EMF metadata,
searchable in Logs Insights but no dimension, so the number of metrics (and their cost) does not
grow with the number of partners. Recorded only inside a Lambda invocation: the local stack and
tests serve the apps without the Lambda handler, so nothing would ever flush them (with
POWERTOOLS_METRICS_DISABLED Powertools does not even clear them); there the request log line is
the record.

Background functions: ``PushDelivered`` (dimension ``outcome``), ``PushLagSeconds``,
``PushRetried``, ``PushDeadLettered``, ``Billing*``, ``Ingest*``, ``Pulled*`` (see each function).
DLQ depth is SQS's own metric (ApproximateNumberOfMessagesVisible), alarmed in template.yaml.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

NAMESPACE = "OCPI"
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "ocpi")

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)

__all__ = ["NAMESPACE", "MetricUnit", "count", "emit", "metrics", "record_request"]


def count(name: str, value: float = 1, unit: MetricUnit = MetricUnit.Count) -> None:
    """A metric with the invocation's dimensions (service), flushed at the end of the invocation."""
    metrics.add_metric(name=name, unit=unit, value=value)


def emit(name: str, value: float, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """One metric with dimensions of its own, printed at once as its own EMF line (every metric
    of one Powertools flush shares one dimension set: a batch's outcomes differ)."""
    provider = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service=SERVICE)
    for key, dim in dimensions.items():
        provider.add_dimension(name=key, value=dim)
    provider.add_metric(name=name, unit=unit, value=value)
    provider.flush_metrics()


def record_request(module: str, ocpi_status: Any, partner: str | None, request_id: str) -> None:
    """The API request metric of this invocation (one request per Lambda invocation)."""
    metrics.add_dimension(name="module", value=module)
    metrics.add_dimension(name="ocpi_status", value=str(ocpi_status) if ocpi_status is not None else "none")
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    metrics.add_metadata(key="request_id", value=request_id)
    if partner:
        metrics.add_metadata(key="partner", value=partner)
