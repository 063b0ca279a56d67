"""Structured JSON logging (Powertools Logger). Never log tokens, token uids or contract ids.

Lambda reads logs from stdout; a command-line tool sets OCPI_LOG_STREAM=stderr so its stdout stays
machine-readable."""

from __future__ import annotations

import os
import sys

from aws_lambda_powertools import Logger

logger = Logger(
    service=os.environ.get("POWERTOOLS_SERVICE_NAME", "ocpi"),
    use_rfc3339=True,
    stream=sys.stderr if os.environ.get("OCPI_LOG_STREAM") == "stderr" else sys.stdout,
)
