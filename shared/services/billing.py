"""Scheduled billing runs: one clearing statement per partner and period (a day or a month).

Path (template.yaml): EventBridge Scheduler (`BillingDailyRun`, `BillingMonthlyRun`, in
`BillingTimezone`) -> `ClearingQueue` -> `BillingWorkerFunction`, three kinds of message:

- ``run``: ``{"kind": "run", "cadence": "daily"|"monthly", "scheduled_time": ...}`` from a schedule
  (the period is the latest one whose end is at least `BillingGraceHours` before the scheduled
  time), or ``{"kind": "run", "period": "2026-10"|"2026-10-05", ["partner_id"], "as_of", "run_id"}``
  from ``ocpi-admin billing run``. It queues one ``job`` per partner holding a CPO or an EMSP role.
- ``job``: records the job of (partner, period) for this run in DynamoDB (`B#{partner}#{period}` /
  `J`, docs/store.md) and queues its work units: per time slice of `BillingSliceHours` (UTC instants
  between the local-midnight boundaries of the period), one unit message each.
- ``unit``: processes one slice (its CDRs, and the sessions that ended in it without a CDR),
  writes its partial result to S3 (`work/...`), and adds itself to the job's `done` set; the unit
  that completes the set merges the statement.

What a statement holds (both directions: `sent` = our own CDRs to the partner's eMSP parties, we are
the CPO; `received` = CDRs its CPO parties sent us, we are the eMSP), for CDRs whose
`end_date_time` is in [period start, period end):

- totals per direction and currency: CDR and credit CDR counts, `total_cost` excl. and incl. VAT,
  energy (kWh); credit CDRs are netted (their amounts and energy count negative, whatever sign they
  carry), and the balance per currency (sent minus received);
- discrepancies: `repriced_difference` (the CDR's `meta.pricing.status` is "mismatch": our
  re-pricing differs from its totals), `session_without_cdr` (a COMPLETED session that ended in the
  period, at least the grace time before the run, and no CDR of the partner's for it),
  `duplicate_credit` (two or more credit CDRs for one CDR), `orphan_credit` (the credited CDR is
  not stored); info: `unpriced` CDRs and counts of pricing checks;
- the lines: ``statements/{partner_id}/{period}/lines.csv``, one line per CDR sorted by
  (end_date_time, key), next to ``statement.json``; its record in DynamoDB (`S`) and the event
  `ocpi.billing.statement` (source `ocpi.endpoint`).

Deterministic and idempotent: no wall-clock time goes into a statement (a run before the grace
time has passed is marked ``"final": false`` with its ``grace_cutoff``; a final one does not depend
on when it ran), every list is sorted, amounts are Decimal sums printed exactly with at least 4
decimals, JSON with sorted keys. A unit's result lands under a fixed key and the unit is recorded
in a *set* (DynamoDB ``ADD``), so a unit delivered twice by SQS counts once; a run supersedes older
runs of the same job (``run_id`` order), whose units then stop.

Chunking (1,000,000 CDRs of one partner in a month inside Lambda's 15 minutes):

- a Query page is ``PAGE_SIZE`` = 500 items or DynamoDB's 1 MB, whichever comes first (real CDRs
  of 2-4 KB: 250-500 per page); a slice reads only the ~12 fields a statement needs
  (``_CDR_FIELDS``), page by page;
- a month is 720-744 hours: at `BillingSliceHours` = 6 that is 124-125 slices, so 1,000,000 CDRs
  spread over a month are ~8,100 CDRs (17 pages) per slice. A slice holding more than
  `BillingSliceMaxCdrs` (default 50,000) CDRs or completed sessions, or one whose invocation runs
  short of time, splits into two halves of its time range (recursively, down to 2 s), so a burst
  does not need a smaller setting;
- measured on moto (bench/bench_billing.py: 100,000 CDRs in a month, 125 slices of 800 CDRs, one
  worker): 466 CDRs per second, 2.1 ms per CDR with moto's request handling (mean 1.7 s per slice,
  the slowest 9.1 s), 110 DynamoDB requests per 1,000 CDRs (100 of them the two checks of the 5%
  credit CDRs). So a full 50,000-CDR slice takes ~110 s, an eighth of the 900 s limit; 1,000,000
  CDRs are ~2,150 s of slice work in total, spread over up to 20 concurrent workers
  (`MaximumConcurrency`: ~2 minutes). The merge reads one small JSON per slice and concatenates
  the slices' CSV parts (streamed, multipart upload): O(CDRs) bytes, not memory.

The session check reads sessions by `last_updated` (GSI1, no end-time index for sessions): a slice
looks at sessions updated in [slice start, slice end + ``SESSION_UPDATE_WINDOW``); a session whose
last update came later than that after its end is not checked. A CDR counts for a session when its
`end_date_time` is within ``SESSION_MATCH_MARGIN`` of the slice.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import io
import json
import math
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shared import events
from shared.logs import logger
from shared.models.types import format_datetime, parse_datetime, sortable_datetime
from shared.services import cdrs
from shared.services.objects import RECEIVED, to_collection
from shared.store import keys
from shared.store.base import BillingJob, ObjectRef, StoredObject

STATEMENT_VERSION = 1
PAGE_SIZE = 500  # items per Query page
LIST_LIMIT = 10_000  # items listed per discrepancy kind (the count is always exact)
SESSION_UPDATE_WINDOW = timedelta(hours=12)
SESSION_MATCH_MARGIN = timedelta(hours=1)
MIN_SPLIT = timedelta(seconds=2)  # a slice shorter than this is processed whatever its size
TIME_RESERVE_S = 120.0  # a unit splits when less than this (or a quarter of its start) is left
JOB_TTL_S = 40 * 86_400
PART_SIZE = 8 * 1024 * 1024  # multipart upload of lines.csv

DIRECTIONS = ("sent", "received")
DISCREPANCY_KINDS = ("repriced_difference", "session_without_cdr", "duplicate_credit", "orphan_credit")
PRICING_STATUSES = ("ok", "mismatch", "unpriced", "not_checked")
LINE_COLUMNS = (
    "end_date_time",
    "start_date_time",
    "direction",
    "cpo",
    "cdr_id",
    "session_id",
    "emsp",
    "currency",
    "total_cost_excl_vat",
    "total_cost_incl_vat",
    "total_energy_kwh",
    "credit",
    "credit_reference_id",
    "pricing_status",
    "pricing_difference_excl_vat",
    "pricing_difference_incl_vat",
)

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DAY = re.compile(r"^\d{4}-\d\d-\d\d$")


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class BillingSettings:
    queue_url: str = ""
    bucket: str = ""
    timezone: str = "UTC"
    grace_hours: int = 24
    slice_hours: int = 6
    slice_max_cdrs: int = 50_000
    max_attempts: int = 3
    retry_base: int = 60  # seconds before the 2nd attempt of a failed message, doubling

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> BillingSettings:
        env = dict(os.environ if env is None else env)

        def num(name: str, default: int) -> int:
            raw = env.get(name)
            return int(raw) if raw not in (None, "") else default

        tz = env.get("OCPI_BILLING_TIMEZONE") or "UTC"
        ZoneInfo(tz)  # an unknown zone is a configuration error: fail loudly
        return cls(
            queue_url=env.get("OCPI_BILLING_QUEUE_URL", ""),
            bucket=env.get("OCPI_BILLING_BUCKET", ""),
            timezone=tz,
            grace_hours=num("OCPI_BILLING_GRACE_HOURS", 24),
            slice_hours=max(1, num("OCPI_BILLING_SLICE_HOURS", 6)),
            slice_max_cdrs=max(1, num("OCPI_BILLING_SLICE_MAX_CDRS", 50_000)),
            max_attempts=max(1, num("OCPI_BILLING_MAX_ATTEMPTS", 3)),
            retry_base=max(0, num("OCPI_BILLING_RETRY_BASE", 60)),
        )

    def backoff(self, attempt: int) -> int:
        return min(self.retry_base * 2 ** max(0, attempt - 1), 3600)


# ------------------------------------------------------------------ periods and slices
def parse_period(period: str) -> tuple[str, date]:
    """("monthly", first day) for ``YYYY-MM``, ("daily", the day) for ``YYYY-MM-DD``."""
    try:
        if _MONTH.match(period or ""):
            return "monthly", date(int(period[:4]), int(period[5:7]), 1)
        if _DAY.match(period or ""):
            return "daily", date.fromisoformat(period)
    except ValueError:
        pass
    raise ValueError(f"a period is YYYY-MM or YYYY-MM-DD, got {period!r}")


def _local_midnight(day: date, tz: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).astimezone(UTC)


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def period_bounds(period: str, tz: str) -> tuple[datetime, datetime]:
    """[start, end) of a period in UTC: local midnights in ``tz`` (a day may have 23 or 25 hours)."""
    cadence, first = parse_period(period)
    last = first + timedelta(days=1) if cadence == "daily" else _next_month(first)
    return _local_midnight(first, tz), _local_midnight(last, tz)


def latest_period(cadence: str, at: datetime, tz: str, grace_hours: int) -> str:
    """The latest day or month whose end is at least ``grace_hours`` before ``at``."""
    local = (at - timedelta(hours=grace_hours)).astimezone(ZoneInfo(tz)).date()
    if cadence == "daily":
        return (local - timedelta(days=1)).isoformat()
    if cadence == "monthly":
        prev = date(local.year, local.month, 1) - timedelta(days=1)
        return f"{prev.year:04d}-{prev.month:02d}"
    raise ValueError(f"cadence must be daily or monthly, got {cadence!r}")


def slice_ranges(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
    step = timedelta(hours=max(1, hours))
    out = []
    at = start
    while at < end:
        out.append((at, min(at + step, end)))
        at += step
    return out


def halves(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    middle = start + timedelta(microseconds=(end - start) // timedelta(microseconds=1) // 2)
    return [(start, middle), (middle, end)]


def _iso(dt: datetime) -> str:
    return sortable_datetime(dt)


def _dt(value: str) -> datetime:
    return parse_datetime(value)


# ------------------------------------------------------------------ partners
def partner_parties(partner: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(its eMSP parties: where our own CDRs go, its CPO parties: whose CDRs we receive), as
    sorted ``CC*PID``."""
    sent, received = set(), set()
    for role in partner.get("roles") or []:
        party = f"{str(role.get('country_code', '')).upper()}*{str(role.get('party_id', '')).upper()}"
        kind = str(role.get("role", "")).upper()
        if kind == "EMSP":
            sent.add(party)
        elif kind == "CPO":
            received.add(party)
    return sorted(sent), sorted(received)


def billable(partner: dict[str, Any]) -> bool:
    sent, received = partner_parties(partner)
    return bool(sent or received)


# ------------------------------------------------------------------ money
def _dec(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def fmt(value: Decimal) -> str:
    """Exact, at least 4 decimals (OCPI's), never "-0"."""
    if value == 0:
        value = Decimal(0)
    exponent = value.as_tuple().exponent
    places = max(4, -exponent) if isinstance(exponent, int) else 4
    return f"{value:.{places}f}"


# ------------------------------------------------------------------ storage of results (S3)
class S3Blobs:
    """The statements bucket (``put``/``get``/``chunks``/``put_chunks``)."""

    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def chunks(self, key: str) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            yield from body.iter_chunks(1024 * 1024)
        finally:
            body.close()

    def put_chunks(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        """One object from a stream: a single PUT when it is small, else a multipart upload (parts of
        PART_SIZE), so memory does not grow with the object."""
        buffer = bytearray()
        upload_id = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks:
                buffer += chunk
                if len(buffer) >= PART_SIZE:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=key, ContentType=content_type
                        )["UploadId"]
                    parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:
                self.put(key, bytes(buffer), content_type)
                return
            if buffer or not parts:
                parts.append(self._part(key, upload_id, len(parts) + 1, bytes(buffer)))
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except Exception as err:  # the lifecycle rule aborts it after a day anyway
                    logger.warning("billing: multipart upload not aborted", extra={"error": str(err)[:200]})
            raise

    def _part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        resp = self.client.upload_part(
            Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"PartNumber": number, "ETag": resp["ETag"]}


class MemoryBlobs:
    """The same contract in memory (unit tests)."""

    def __init__(self, bucket: str = "memory") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        return self.objects[key]

    def chunks(self, key: str) -> Iterator[bytes]:
        yield self.objects[key]

    def put_chunks(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        self.objects[key] = b"".join(chunks)


def statement_key(partner_id: str, period: str) -> str:
    return f"statements/{partner_id}/{period}/statement.json"


def lines_key(partner_id: str, period: str) -> str:
    return f"statements/{partner_id}/{period}/lines.csv"


def part_key(spec: dict[str, Any], unit: str, ext: str) -> str:
    return f"work/{spec['partner_id']}/{spec['period']}/{spec['run_id']}/{unit}.{ext}"


# ------------------------------------------------------------------ queue
class SqsQueue:
    def __init__(self, client: Any, url: str) -> None:
        if not url:
            raise RuntimeError("OCPI_BILLING_QUEUE_URL is not set (the stack's ClearingQueueUrl output)")
        self.client = client
        self.url = url

    def send(self, bodies: list[dict[str, Any]]) -> None:
        """SendMessageBatch, 10 per request; raises if SQS did not take one (the caller's message is
        retried and sends them again: receivers are idempotent)."""
        for i in range(0, len(bodies), 10):
            chunk = bodies[i : i + 10]
            entries = [
                {"Id": str(n), "MessageBody": json.dumps(b, sort_keys=True, separators=(",", ":"))}
                for n, b in enumerate(chunk)
            ]
            resp = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            if resp.get("Failed"):
                raise RuntimeError(f"SQS refused {len(resp['Failed'])} billing message(s)")

    def delay(self, receipt_handle: str, seconds: int) -> None:
        self.client.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(seconds, 43_200))
        )


def aws_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=3, read_timeout=30),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )


# ------------------------------------------------------------------ messages
class Rejected(ValueError):
    """A message that can never be processed (malformed, or naming a partner we cannot bill): it is
    dropped, not retried."""


def parse_message(body: str) -> dict[str, Any]:
    """A clearing message; Rejected when it can never be processed (dropped, not retried)."""
    try:
        msg = json.loads(body)
    except ValueError as err:
        raise Rejected("not JSON") from err
    if not isinstance(msg, dict) or msg.get("kind") not in ("run", "job", "unit"):
        raise Rejected("kind must be run, job or unit")
    kind = msg["kind"]
    try:
        if kind == "run":
            if msg.get("period") is not None:
                parse_period(msg["period"])
            elif msg.get("cadence") not in ("daily", "monthly") or not msg.get("scheduled_time"):
                raise ValueError("a run names a period, or a cadence and its scheduled_time")
            for name in ("scheduled_time", "as_of"):
                if msg.get(name) is not None:
                    _dt(msg[name])
            for name in ("partner_id", "run_id"):
                if msg.get(name) is not None and (not isinstance(msg[name], str) or not msg[name]):
                    raise ValueError(f"{name} must be a non-empty string")
        elif kind == "job":
            for name in ("partner_id", "period", "run_id", "as_of"):
                if not isinstance(msg.get(name), str) or not msg[name]:
                    raise ValueError(f"a job needs {name}")
            parse_period(msg["period"])
            _dt(msg["as_of"])
        else:
            spec = msg.get("job")
            if not isinstance(spec, dict) or not all(
                isinstance(spec.get(k), str) for k in ("partner_id", "period", "run_id")
            ):
                raise ValueError("a unit needs its job")
            unit = msg.get("unit")
            if not isinstance(unit, str) or not re.fullmatch(r"U\d{4}(\.[01])*", unit):
                raise ValueError("bad unit id")
            if _dt(msg["start"]) >= _dt(msg["end"]):
                raise ValueError("a unit's start must be before its end")
    except (KeyError, TypeError, ValueError) as err:
        raise Rejected(f"malformed {kind} message: {err}") from err
    return msg


def unit_message(spec: dict[str, Any], unit: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {"kind": "unit", "job": spec, "unit": unit, "start": _iso(start), "end": _iso(end)}


def new_run_id(as_of: datetime, seed: str | None = None) -> str:
    """Sortable by start time (a newer run supersedes older ones of the same job)."""
    suffix = hashlib.sha256(seed.encode()).hexdigest()[:8] if seed else uuid.uuid4().hex[:8]
    return f"{as_of.astimezone(UTC):%Y%m%dT%H%M%S}Z-{suffix}"


# ------------------------------------------------------------------ run -> jobs
def run_jobs(
    store: Any,
    settings: BillingSettings,
    msg: dict[str, Any],
    *,
    message_id: str | None = None,
    now: datetime | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job messages of a run message: ({"period", "run_id", "partners"}, jobs)."""
    as_of = _dt(msg["scheduled_time"]) if msg.get("scheduled_time") else None
    if as_of is None:
        as_of = _dt(msg["as_of"]) if msg.get("as_of") else (now or datetime.now(UTC))
    period = msg.get("period") or latest_period(
        msg["cadence"], as_of, settings.timezone, settings.grace_hours
    )
    run_id = msg.get("run_id") or new_run_id(as_of, message_id)
    if msg.get("partner_id"):
        partner = store.get_partner(msg["partner_id"])
        if partner is None or not billable(partner):
            raise Rejected(f"partner {msg['partner_id']} is unknown or holds no CPO or EMSP party")
        partners = [partner]
    else:
        partners = [p for p in store.list_partners() if billable(p)]
    ids = sorted(p["partner_id"] for p in partners)
    jobs = [
        {"kind": "job", "partner_id": pid, "period": period, "run_id": run_id, "as_of": _iso(as_of)}
        for pid in ids
    ]
    return {"period": period, "run_id": run_id, "partners": ids}, jobs


def start_run(store: Any, queue: Any, settings: BillingSettings, msg: dict[str, Any], **kw: Any) -> dict:
    summary, jobs = run_jobs(store, settings, msg, **kw)
    queue.send(jobs)
    logger.info(
        "billing run started", extra={k: summary[k] for k in ("period", "run_id")} | {"jobs": len(jobs)}
    )
    return summary


# ------------------------------------------------------------------ job -> units
def job_spec(store: Any, settings: BillingSettings, msg: dict[str, Any]) -> dict[str, Any] | None:
    """Everything a unit of this job needs (None for a partner we do not know)."""
    partner = store.get_partner(msg["partner_id"])
    if partner is None:
        return None
    sent, received = partner_parties(partner)
    start, end = period_bounds(msg["period"], settings.timezone)
    as_of = _dt(msg["as_of"])
    grace = timedelta(hours=settings.grace_hours)
    final = as_of >= end + grace
    return {
        "partner_id": msg["partner_id"],
        "period": msg["period"],
        "run_id": msg["run_id"],
        "timezone": settings.timezone,
        "start": _iso(start),
        "end": _iso(end),
        "grace_hours": settings.grace_hours,
        "final": final,
        "cutoff": _iso(end if final else min(end, as_of - grace)),
        "sent": sent,
        "received": received,
        "slice_max": settings.slice_max_cdrs,
    }


def start_job(store: Any, queue: Any, settings: BillingSettings, msg: dict[str, Any]) -> str:
    spec = job_spec(store, settings, msg)
    if spec is None:
        logger.warning("billing job for an unknown partner dropped", extra={"partner_id": msg["partner_id"]})
        return "unknown_partner"
    ranges = slice_ranges(_dt(spec["start"]), _dt(spec["end"]), settings.slice_hours)
    units = {f"U{i:04d}": r for i, r in enumerate(ranges)}
    outcome = store.billing_job_start(
        spec["partner_id"], spec["period"], spec["run_id"], spec, list(units), int(time.time()) + JOB_TTL_S
    )
    if outcome == "superseded":
        return outcome
    job = store.billing_job(spec["partner_id"], spec["period"])
    if job is None or job.run_id != spec["run_id"]:
        return "superseded"
    # A resumed job (its message came again) keeps its progress and its first spec.
    queue.send([unit_message(job.spec, u, *r) for u, r in sorted(units.items()) if u not in job.done])
    return outcome


# ------------------------------------------------------------------ partial results
def _empty_totals() -> dict[str, Any]:
    return {
        "cdrs": 0,
        "credits": 0,
        "excl_vat": Decimal(0),
        "incl_vat": Decimal(0),
        "incl_vat_missing": 0,
        "energy": Decimal(0),
    }


@dataclass
class Partial:
    """What a unit found; merging partials is associative and exact (Decimal sums, sorted lists)."""

    totals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pricing: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)  # per discrepancy/info kind
    lists: dict[str, list[list[Any]]] = field(default_factory=dict)  # kind -> sorted [key, item]
    lines: int = 0
    sessions_checked: int = 0
    sessions_in_grace: int = 0

    def add(self, kind: str, key: str, item: dict[str, Any]) -> None:
        self.counts[kind] += 1
        self.lists.setdefault(kind, []).append([key, item])

    def finish(self) -> Partial:
        for items in self.lists.values():
            items.sort(key=lambda pair: pair[0])
            del items[LIST_LIMIT:]
        return self

    def merge(self, other: Partial) -> None:
        for key, t in other.totals.items():
            mine = self.totals.setdefault(key, _empty_totals())
            for name, value in t.items():
                mine[name] += value
        self.pricing.update(other.pricing)
        self.counts.update(other.counts)
        for kind, items in other.lists.items():
            merged = heapq.merge(self.lists.get(kind, []), items, key=lambda pair: pair[0])
            self.lists[kind] = [pair for _, pair in zip(range(LIST_LIMIT), merged, strict=False)]
        self.lines += other.lines
        self.sessions_checked += other.sessions_checked
        self.sessions_in_grace += other.sessions_in_grace

    def to_json(self) -> bytes:
        data = {
            "totals": [
                [d, c, {k: str(v) if isinstance(v, Decimal) else v for k, v in t.items()}]
                for (d, c), t in sorted(self.totals.items())
            ],
            "pricing": dict(sorted(self.pricing.items())),
            "counts": dict(sorted(self.counts.items())),
            "lists": dict(sorted(self.lists.items())),
            "lines": self.lines,
            "sessions_checked": self.sessions_checked,
            "sessions_in_grace": self.sessions_in_grace,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Partial:
        data = json.loads(raw)
        totals = {}
        for d, c, t in data["totals"]:
            totals[(d, c)] = {k: Decimal(v) if isinstance(v, str) else v for k, v in t.items()}
        return cls(
            totals=totals,
            pricing=Counter(data["pricing"]),
            counts=Counter(data["counts"]),
            lists={k: list(v) for k, v in data["lists"].items()},
            lines=data["lines"],
            sessions_checked=data["sessions_checked"],
            sessions_in_grace=data["sessions_in_grace"],
        )


class _Split(Exception):
    """The unit is too big (or its invocation too short): split it into two halves."""


class _Budget:
    def __init__(self, cap: int, span: timedelta, time_left: Callable[[], float]) -> None:
        self.cap = cap
        self.splittable = span >= MIN_SPLIT
        self.time_left = time_left
        first = time_left()
        self.reserve = min(TIME_RESERVE_S, first / 4) if math.isfinite(first) else 0.0

    def check(self, count: int) -> None:
        if self.splittable and (count > self.cap or self.time_left() < self.reserve):
            raise _Split


def _pages(store: Any, name: str, pk: str, sk_from: str, sk_to: str, **kw: Any) -> Iterator[StoredObject]:
    start_key = None
    while True:
        page = store.query_range(name, pk, sk_from, sk_to, start_key=start_key, limit=PAGE_SIZE, **kw)
        yield from page.items
        if page.next_key is None:
            return
        start_key = page.next_key


def _cdr_partitions(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [("sent", cdrs.billing_key("sent", p)) for p in spec["sent"]] + [
        ("received", cdrs.billing_key("received", p)) for p in spec["received"]
    ]


def _party(cc: Any, pid: Any) -> str:
    return f"{str(cc).upper()}*{str(pid).upper()}"


def _ref_text(ref: ObjectRef) -> str:
    return f"{ref.country_code.upper()}*{ref.party_id.upper()}*{ref.object_id}"


# What a statement reads of a CDR: not its location, tariffs, charging periods or signed data (most
# of its size).
_CDR_FIELDS = (
    "body.id",
    "body.start_date_time",
    "body.end_date_time",
    "body.session_id",
    "body.cdr_token.country_code",
    "body.cdr_token.party_id",
    "body.currency",
    "body.total_cost",
    "body.total_energy",
    "body.credit",
    "body.credit_reference_id",
    "meta.pricing",
)


def _slice_unit(
    store: Any, spec: dict[str, Any], start: datetime, end: datetime, budget: _Budget
) -> tuple[Partial, list[tuple[str, list[str]]]]:
    """One slice: its CDRs (totals, lines, pricing and credit discrepancies) and the COMPLETED
    sessions that ended in it without a CDR. The CDRs are read once, with ``SESSION_MATCH_MARGIN``
    on both sides (those only count as the CDR of a session)."""
    sessions = _session_candidates(store, spec, start, end, budget)
    found: list[tuple[str, str, StoredObject]] = []  # (sort key, direction, CDR)
    seen: set[str] = set()  # the sessions that have a CDR
    low, high = _iso(start), _iso(end)
    for direction, pk in _cdr_partitions(spec):
        pages = _pages(
            store,
            cdrs.BILLING_INDEX,
            pk,
            _iso(start - SESSION_MATCH_MARGIN),
            _iso(end + SESSION_MATCH_MARGIN),
            attributes=_CDR_FIELDS,
        )
        for obj in pages:
            if obj.body.get("session_id"):
                party = _party(obj.ref.country_code, obj.ref.party_id)
                seen.add(f"{direction}|{party}|{str(obj.body['session_id']).upper()}")
            key = _cdr_sort_key(obj)
            if low <= key[: len(low)] < high:
                found.append((key, direction, obj))
                budget.check(len(found))
    found.sort(key=lambda f: f[0])
    part = Partial()
    _check_sessions(spec, part, sessions, seen)
    lines: list[tuple[str, list[str]]] = []
    credit_checks: dict[tuple[str, str, str], list[tuple[str, str, StoredObject]]] = {}
    for key, direction, obj in found:
        body = obj.body
        credit = bool(body.get("credit"))
        cost = body.get("total_cost") or {}
        excl = _dec(cost.get("excl_vat", 0))
        incl = _dec(cost["incl_vat"]) if cost.get("incl_vat") is not None else None
        energy = _dec(body.get("total_energy", 0))
        if credit:
            excl, energy = -abs(excl), -abs(energy)
            incl = -abs(incl) if incl is not None else None
        currency = str(body.get("currency", "")).upper()
        t = part.totals.setdefault((direction, currency), _empty_totals())
        t["credits" if credit else "cdrs"] += 1
        t["excl_vat"] += excl
        t["energy"] += energy
        if incl is None:
            t["incl_vat_missing"] += 1
        else:
            t["incl_vat"] += incl
        pricing = obj.meta.get("pricing") if isinstance(obj.meta.get("pricing"), dict) else None
        status = str(pricing.get("status")) if pricing else "not_checked"
        status = status if status in PRICING_STATUSES else "not_checked"
        part.pricing[status] += 1
        diff = (pricing or {}).get("difference") or {}
        end_text = format_datetime(_dt(str(body["end_date_time"])))
        if status == "mismatch":
            expected = (pricing or {}).get("expected") or {}
            part.add(
                "repriced_difference",
                key,
                {
                    "direction": direction,
                    "cdr": _ref_text(obj.ref),
                    "end_date_time": end_text,
                    "currency": currency,
                    "charged_excl_vat": fmt(_dec(cost.get("excl_vat", 0))),
                    "charged_incl_vat": fmt(_dec(cost["incl_vat"]))
                    if cost.get("incl_vat") is not None
                    else None,
                    "expected_excl_vat": _text_amount(expected.get("excl_vat")),
                    "expected_incl_vat": _text_amount(expected.get("incl_vat")),
                    "difference_excl_vat": _text_amount(diff.get("excl_vat")),
                    "difference_incl_vat": _text_amount(diff.get("incl_vat")),
                    "tariff_ids": sorted(str(t) for t in (pricing or {}).get("tariff_ids") or []),
                },
            )
        elif status == "unpriced":
            part.add(
                "unpriced",
                key,
                {
                    "direction": direction,
                    "cdr": _ref_text(obj.ref),
                    "end_date_time": end_text,
                    "reason": str((pricing or {}).get("reason") or ""),
                },
            )
        if credit and body.get("credit_reference_id"):
            credited = (
                obj.ref.country_code.upper(),
                obj.ref.party_id.upper(),
                str(body["credit_reference_id"]),
            )
            credit_checks.setdefault(credited, []).append((key, direction, obj))
        token = body.get("cdr_token") or {}
        lines.append(
            (
                key,
                [
                    end_text,
                    format_datetime(_dt(str(body["start_date_time"]))) if body.get("start_date_time") else "",
                    direction,
                    _party(obj.ref.country_code, obj.ref.party_id),
                    str(body.get("id", obj.ref.object_id)),
                    str(body.get("session_id") or ""),
                    _party(token.get("country_code", ""), token.get("party_id", "")),
                    currency,
                    fmt(excl),
                    fmt(incl) if incl is not None else "",
                    fmt(energy),
                    "true" if credit else "false",
                    str(body.get("credit_reference_id") or ""),
                    status,
                    _text_amount(diff.get("excl_vat")) or "",
                    _text_amount(diff.get("incl_vat")) or "",
                ],
            )
        )
    _check_credits(store, spec, part, credit_checks)
    part.lines = len(lines)
    return part.finish(), lines


def _text_amount(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return fmt(_dec(value))
    except (ArithmeticError, ValueError):
        return str(value)


def _cdr_sort_key(obj: StoredObject) -> str:
    index = cdrs.billing_index(obj.ref, obj.body, obj.collection) or {}
    return index.get(f"{cdrs.BILLING_INDEX}SK") or f"{sortable_datetime(_dt(obj.body['end_date_time']))}#"


def _check_credits(
    store: Any,
    spec: dict[str, Any],
    part: Partial,
    checks: dict[tuple[str, str, str], list[tuple[str, str, StoredObject]]],
) -> None:
    """Orphan credits (the credited CDR is not stored) and duplicate credits (two or more for one
    CDR: reported once, by the first of them in the period, in key order)."""
    start, end = spec["start"], spec["end"]
    partitions = {pk for _, pk in _cdr_partitions(spec)}
    for (cc, pid, credited_id), credits in sorted(checks.items()):
        credited_ref = ObjectRef(cdrs.KIND.module, cc, pid, credited_id)
        if store.get_header(credited_ref) is None:
            for key, direction, obj in credits:
                part.add(
                    "orphan_credit",
                    key,
                    {
                        "direction": direction,
                        "credit": _ref_text(obj.ref),
                        "credit_reference_id": credited_id,
                        "end_date_time": format_datetime(_dt(str(obj.body["end_date_time"]))),
                    },
                )
        siblings = cdrs.credits_of(store, cc, pid, credited_id)
        if len(siblings) < 2:
            continue
        in_period = []
        for s in siblings:
            index = cdrs.billing_index(s.ref, s.body, s.collection) or {}
            sk = index.get(f"{cdrs.BILLING_INDEX}SK", "")
            if index.get(f"{cdrs.BILLING_INDEX}PK") in partitions and start <= sk[: len(start)] < end:
                in_period.append((sk, s))
        in_period.sort(key=lambda pair: pair[0])
        mine = {key for key, _, _ in credits}
        if in_period and in_period[0][0] in mine:
            key = in_period[0][0]
            direction = next(d for k, d, _ in credits if k == key)
            part.add(
                "duplicate_credit",
                key,
                {
                    "direction": direction,
                    "cdr": f"{cc}*{pid}*{credited_id}",
                    "credits": sorted(_ref_text(s.ref) for s in siblings),
                    "end_date_time": format_datetime(_dt(str(in_period[0][1].body["end_date_time"]))),
                },
            )


def _session_partitions(spec: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, str]] | None]]:
    """(direction, GSI1 partition, owner filter) of the partner's sessions."""
    out: list[tuple[str, str, list[tuple[str, str]] | None]] = []
    for party in spec["sent"]:
        cc, pid = party.split("*", 1)
        out.append(("sent", keys.list_pk("sessions", to_collection(cc, pid)), None))
    if spec["received"]:
        parties = [tuple(p.split("*", 1)) for p in spec["received"]]
        out.append(("received", keys.list_pk("sessions", RECEIVED), parties))  # type: ignore[arg-type]
    return out


_SESSION_FIELDS = ("body.status", "body.end_date_time", "body.id")


def _session_candidates(
    store: Any, spec: dict[str, Any], start: datetime, end: datetime, budget: _Budget
) -> list[tuple[str, str, str, StoredObject, datetime]]:
    """COMPLETED sessions of the partner's that ended in the slice (read by `last_updated`, up to
    ``SESSION_UPDATE_WINDOW`` after the slice): (key, match key, direction, session, end)."""
    candidates = []
    for direction, pk, parties in _session_partitions(spec):
        pages = _pages(
            store,
            "GSI1",
            pk,
            _iso(start),
            _iso(end + SESSION_UPDATE_WINDOW),
            parties=parties,
            attributes=_SESSION_FIELDS,
        )
        for obj in pages:
            if obj.body.get("status") != "COMPLETED" or not obj.body.get("end_date_time"):
                continue
            ended = _dt(str(obj.body["end_date_time"]))
            if not start <= ended < end:
                continue
            party = _party(obj.ref.country_code, obj.ref.party_id)
            match = f"{direction}|{party}|{obj.ref.object_id.upper()}"
            key = f"{_iso(ended)}#{direction}#{_ref_text(obj.ref)}"
            candidates.append((key, match, direction, obj, ended))
            budget.check(len(candidates))
    return sorted(candidates, key=lambda c: c[0])


def _check_sessions(
    spec: dict[str, Any],
    part: Partial,
    candidates: list[tuple[str, str, str, StoredObject, datetime]],
    seen: set[str],
) -> None:
    cutoff = _dt(spec["cutoff"])
    for key, match, direction, obj, ended in candidates:
        part.sessions_checked += 1
        if match in seen:
            continue
        if ended >= cutoff:  # not final yet: the CDR may still come within the grace time
            part.sessions_in_grace += 1
            continue
        part.add(
            "session_without_cdr",
            key,
            {"direction": direction, "session": _ref_text(obj.ref), "end_date_time": format_datetime(ended)},
        )


# ------------------------------------------------------------------ units
def _csv_rows(rows: Iterable[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue().encode()


def process_unit(
    store: Any,
    blobs: Any,
    queue: Any,
    msg: dict[str, Any],
    *,
    time_left: Callable[[], float] = lambda: math.inf,
) -> str:
    """One unit message: "done", "split", "merged" (it completed the job), "duplicate" (already
    recorded) or "superseded" (a newer run holds the job)."""
    spec, unit = msg["job"], msg["unit"]
    pid, period, run_id = spec["partner_id"], spec["period"], spec["run_id"]
    job = store.billing_job(pid, period)
    if job is None or job.run_id != run_id:
        return "superseded"
    start, end = _dt(msg["start"]), _dt(msg["end"])
    children = [(f"{unit}.{n}", r) for n, r in enumerate(halves(start, end))]
    if unit in job.done:  # SQS delivered it again: finish what the first delivery may not have
        if unit in job.split:
            queue.send([unit_message(spec, u, *r) for u, r in children if u not in job.done])
        if job.complete and job.status != "merged":
            merge(store, blobs, job)
            return "merged"
        return "duplicate"
    budget = _Budget(int(spec.get("slice_max") or 50_000), end - start, time_left)
    try:
        part, lines = _slice_unit(store, spec, start, end, budget)
        blobs.put(part_key(spec, unit, "csv"), _csv_rows(row for _, row in lines), "text/csv")
    except _Split:
        after = store.billing_unit_done(pid, period, run_id, unit, [u for u, _ in children])
        if after is None:
            return "superseded"
        queue.send([unit_message(spec, u, *r) for u, r in children])
        logger.info("billing slice split", extra={"partner_id": pid, "period": period, "unit": unit})
        return "split"
    blobs.put(part_key(spec, unit, "json"), part.to_json(), "application/json")
    after = store.billing_unit_done(pid, period, run_id, unit)
    if after is None:
        return "superseded"
    if after.complete and after.status != "merged":
        merge(store, blobs, after)
        return "merged"
    return "done"


# ------------------------------------------------------------------ merge
def _statement(spec: dict[str, Any], part: Partial, lines_sha: str) -> dict[str, Any]:
    cadence, _ = parse_period(spec["period"])
    totals = []
    balance: dict[str, dict[str, Decimal]] = {}
    for (direction, currency), t in sorted(part.totals.items()):
        totals.append(
            {
                "direction": direction,
                "currency": currency,
                "cdrs": t["cdrs"],
                "credit_cdrs": t["credits"],
                "total_cost_excl_vat": fmt(t["excl_vat"]),
                "total_cost_incl_vat": fmt(t["incl_vat"]),
                "incl_vat_missing": t["incl_vat_missing"],
                "total_energy_kwh": fmt(t["energy"]),
            }
        )
        sign = 1 if direction == "sent" else -1
        b = balance.setdefault(currency, {"excl": Decimal(0), "incl": Decimal(0)})
        b["excl"] += sign * t["excl_vat"]
        b["incl"] += sign * t["incl_vat"]
    statement: dict[str, Any] = {
        "statement_version": STATEMENT_VERSION,
        "partner_id": spec["partner_id"],
        "period": spec["period"],
        "cadence": cadence,
        "timezone": spec["timezone"],
        "period_start": format_datetime(_dt(spec["start"])),
        "period_end": format_datetime(_dt(spec["end"])),
        "grace_hours": spec["grace_hours"],
        "final": spec["final"],
        "parties": {"sent_to": spec["sent"], "received_from": spec["received"]},
        "totals": totals,
        "balance": [
            {"currency": c, "net_excl_vat": fmt(b["excl"]), "net_incl_vat": fmt(b["incl"])}
            for c, b in sorted(balance.items())
        ],
        "pricing_checks": {s: part.pricing.get(s, 0) for s in PRICING_STATUSES},
        "discrepancies": {k: _listing(part, k) for k in DISCREPANCY_KINDS},
        "info": {
            "unpriced": _listing(part, "unpriced"),
            "sessions_checked": part.sessions_checked,
            "sessions_in_grace": part.sessions_in_grace,
        },
        "lines": {"file": "lines.csv", "count": part.lines, "sha256": lines_sha},
    }
    if not spec["final"]:
        statement["grace_cutoff"] = format_datetime(_dt(spec["cutoff"]))
    return statement


def _listing(part: Partial, kind: str) -> dict[str, Any]:
    count = part.counts.get(kind, 0)
    items = [item for _, item in part.lists.get(kind, [])]
    out: dict[str, Any] = {"count": count, "items": items}
    if count > len(items):
        out["truncated"] = True
    return out


def encode_statement(statement: dict[str, Any]) -> bytes:
    return (json.dumps(statement, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def merge(store: Any, blobs: Any, job: BillingJob) -> dict[str, Any]:
    """Merge the results of a complete job into the statement; idempotent (the same results give
    the same bytes, keys and record)."""
    spec = job.spec
    leaves = job.leaves
    sha = hashlib.sha256()

    def line_chunks() -> Iterator[bytes]:
        header = _csv_rows([list(LINE_COLUMNS)])
        sha.update(header)
        yield header
        for unit in leaves:
            for chunk in blobs.chunks(part_key(spec, unit, "csv")):
                sha.update(chunk)
                yield chunk

    pid, period = spec["partner_id"], spec["period"]
    blobs.put_chunks(lines_key(pid, period), line_chunks(), "text/csv")
    total = Partial()
    for unit in leaves:
        total.merge(Partial.from_json(blobs.get(part_key(spec, unit, "json"))))
    statement = _statement(spec, total, sha.hexdigest())
    data = encode_statement(statement)
    blobs.put(statement_key(pid, period), data, "application/json")
    previous = store.get_statement(pid, period)
    record = {
        "partner_id": pid,
        "period": period,
        "cadence": statement["cadence"],
        "run_id": job.run_id,
        "final": spec["final"],
        "bucket": blobs.bucket,
        "statement_key": statement_key(pid, period),
        "lines_key": lines_key(pid, period),
        "statement_sha256": hashlib.sha256(data).hexdigest(),
        "lines_sha256": statement["lines"]["sha256"],
        "lines": statement["lines"]["count"],
        "totals": statement["totals"],
        "discrepancies": {k: statement["discrepancies"][k]["count"] for k in DISCREPANCY_KINDS},
    }
    if store.put_statement(record):
        changed = previous is None or previous.get("statement_sha256") != record["statement_sha256"]
        events.publish(
            events.BILLING_STATEMENT,
            {k: record[k] for k in record if k not in ("totals", "run_id")} | {"changed": changed},
        )
    store.billing_job_merged(pid, period, job.run_id)
    logger.info(
        "billing statement written",
        extra={"partner_id": pid, "period": period, "lines": record["lines"], "units": len(leaves)},
    )
    return record


# ------------------------------------------------------------------ one clearing message
def handle(
    store: Any,
    blobs: Any,
    queue: Any,
    settings: BillingSettings,
    msg: dict[str, Any],
    *,
    message_id: str | None = None,
    time_left: Callable[[], float] = lambda: math.inf,
) -> str:
    if msg["kind"] == "run":
        start_run(store, queue, settings, msg, message_id=message_id)
        return "run"
    if msg["kind"] == "job":
        return start_job(store, queue, settings, msg)
    return process_unit(store, blobs, queue, msg, time_left=time_left)
