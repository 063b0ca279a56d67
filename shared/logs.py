"""Structured JSON logging (Powertools Logger). Never log tokens, token uids or contract ids."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "ocpi"), use_rfc3339=True)
