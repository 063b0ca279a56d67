"""Domain events on the project's EventBridge bus: names and detail schema, defined once.

Into us (the operator's back office publishes these; the ingest function stores them):
- source `ocpi.backoffice`, detail-type `ocpi.own.put`:
  `{"module": "locations"|"tariffs"|"tokens"|"sessions"|"cdrs", "object": <full OCPI object>}`
  (a CDR is created once, never replaced); for an EVSE or a
  connector add `"location_id"` (and `"evse_uid"`), the object being the EVSE/connector.
- source `ocpi.backoffice`, detail-type `ocpi.own.patch`:
  `{"module": ..., "country_code": ..., "party_id": ..., "id": ..., ["evse_uid", "connector_id",
  "type"], "fields": {... , "last_updated": ...}}` (sessions: `charging_periods` are appended).

Out of us (the operator's systems and our push pipeline subscribe):
- source `ocpi.endpoint`, detail-type `ocpi.received.<action>` (put, patch, delete) for a change a
  partner pushed to one of our receiver interfaces. Detail: `{"module", "action", "country_code",
  "party_id", "id", ["evse_uid", "connector_id", "type"], "partner_id", "last_updated", "object"
  (put) | "fields" (patch)}`. A CDR a partner POSTs is `ocpi.received.put` (CDRs are only ever
  created); a CDR POST replayed with identical content (the partner missed our answer) is announced
  again: consumers key CDRs by (country_code, party_id, id).
- source `ocpi.endpoint`, detail-type `ocpi.own.changed` once an own object was stored (the push
  pipeline's input, shared/services/push.py). Detail: `{"module", "action", "country_code",
  "party_id", "id", ["evse_uid", "connector_id", "type"], "last_updated", ["fields": [names the
  patch changed]], ["to_country_code", "to_party_id": the eMSP party of a session's or CDR's
  token]}`: ids only, never the object (read it from the table).
- source `ocpi.endpoint`, detail-type `ocpi.own.charging_preferences`: an eMSP set a driver's
  ChargingPreferences on one of our sessions (mod_sessions, Sender PUT), for the back office to act
  on. Detail: `{"module": "sessions", "country_code", "party_id", "id", "partner_id",
  "emsp_country_code", "emsp_party_id", "location_id", "evse_uid", "connector_id",
  "charging_preferences"}`.
- source `ocpi.endpoint`, detail-type `ocpi.billing.statement`: a billing run wrote the clearing
  statement of a partner and period (shared/services/billing.py). Detail: `{"partner_id",
  "period", "cadence", "final", "bucket", "statement_key", "lines_key", "statement_sha256",
  "lines_sha256", "lines", "discrepancies": {kind: count}, "changed"}` (`changed`: false when a
  re-run produced the same statement; consumers key statements by partner_id and period).

Publishing failures are logged and counted, never turned into an error for the partner whose
write was already stored (the store is the source of truth; a partner pull repairs gaps).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from shared import jsonutil
from shared.config import get_settings
from shared.logs import logger

SOURCE_BACKOFFICE = "ocpi.backoffice"
SOURCE_ENDPOINT = "ocpi.endpoint"
OWN_PUT = "ocpi.own.put"
OWN_PATCH = "ocpi.own.patch"
OWN_DELETE = "ocpi.own.delete"
OWN_CHANGED = "ocpi.own.changed"
OWN_CHARGING_PREFERENCES = "ocpi.own.charging_preferences"
RECEIVED = "ocpi.received.{action}"
BILLING_STATEMENT = "ocpi.billing.statement"


@lru_cache(maxsize=1)
def _client() -> Any:
    import boto3

    return boto3.client(
        "events",
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )


_sink: Any = None


def set_sink(sink: Any) -> None:
    """Tests without AWS collect events in a list instead (`sink(entry)`); None restores EventBridge."""
    global _sink
    _sink = sink


def reset() -> None:
    global _sink
    _sink = None
    _client.cache_clear()


def entry(detail_type: str, detail: dict[str, Any], source: str = SOURCE_ENDPOINT) -> dict[str, Any]:
    return {
        "Source": source,
        "DetailType": detail_type,
        "Detail": jsonutil.dumps(detail),
        "EventBusName": get_settings().event_bus_name,
    }


def publish(detail_type: str, detail: dict[str, Any], source: str = SOURCE_ENDPOINT) -> bool:
    """Put one event on the bus; False (and an error log) if EventBridge did not take it."""
    if _sink is not None:
        _sink(entry(detail_type, detail, source))
        return True
    try:
        resp = _client().put_events(Entries=[entry(detail_type, detail, source)])
        if resp.get("FailedEntryCount"):
            raise RuntimeError(json.dumps(resp.get("Entries", [])[:1]))
        return True
    except Exception as err:  # the write it reports is already stored: never fail the request
        logger.error("event publish failed", extra={"detail_type": detail_type, "error": str(err)[:300]})
        return False
