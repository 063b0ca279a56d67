"""Push of our own objects to partners (transport_and_format.asciidoc, "Client Owned Object Push").

When one of our objects changes (`ocpi.own.changed`, shared/events.py) we call the receiver
interface of every partner entitled to it:

- locations and tariffs (ours as CPO): every registered partner with an EMSP role and a RECEIVER
  endpoint for the module; tokens (ours as eMSP): every partner with a CPO role and a tokens
  RECEIVER; sessions and CDRs: only the partner holding the EMSP party of the object's `cdr_token`
  (never broadcast);
- a partner party that hub client info marks OFFLINE or SUSPENDED (mod_hub_client_info,
  ConnectionStatus: "No longer connected", "Not available") is skipped, as is a partner that
  unregistered;
- a location or tariff the back office limited to some eMSP parties (`push_to` in the object's
  metadata, shared/services/ingest.py) reaches only those.

Pipeline: EventBridge -> PushFanoutQueue -> fan-out (:func:`fan_out`) -> PushDeliveryQueue, one
message per (partner, object) -> delivery (:func:`deliver`) -> the partner.

Exactly once in effect, in order, with coalescing. A push-state item beside each object
(store.PushStore) counts its changes (`seq`) and holds, per partner, whether a delivery message is
in flight and which `seq` the partner is known to hold (`acked`). The fan-out queues a message only
when none is in flight for that partner; later changes only raise `seq`. A delivery carries no
object: it reads the push state, then the object as it is now, sends that, and acknowledges the
`seq` it read. If the object changed meanwhile, the in-flight mark stays and a follow-up message
is queued. So at most one delivery per (partner, object) is in flight, every delivery sends the
newest state (an older state can never overtake a newer one), and a backlog after an outage costs
one delivery per changed object, not one per change.

The call: when the partner is known to hold the state just before the latest change (`acked ==
seq - 1`) and that change was a PATCH, we send a PATCH of the changed fields with their current
values at the changed level (location, EVSE, connector; token; session without charging periods).
Otherwise a PUT of the whole current object (a location with its EVSEs, a session with its
periods); a deleted tariff is a DELETE; a CDR is POSTed once (mod_cdrs: CDRs are never changed).
A PATCH the partner answers with "unknown object" (2003 or HTTP 404) is sent again as a PUT.

Failures (transport, HTTP 5xx/4xx, a body that is no envelope, an OCPI status that is no 1xxx)
raise :class:`PushFailed`: the message is retried with exponential backoff (its SQS visibility)
and, after `max_attempts` receives, lands in the dead-letter queue (alarmed; `ocpi-admin push
replay`). A partner that failed with a transport error or 5xx/429 is not called again for
`breaker_seconds` by this container (its other messages fail fast): one dead partner does not
hold up the deliveries to the others.

Pure logic on the store interfaces and the outbound client: no Powertools, no FastAPI.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from shared.client import OcpiClient, OcpiClientError, OcpiHttpError, OcpiTransportError
from shared.logs import logger
from shared.services import locations, sessions
from shared.services.credentials import STATUS_REGISTERED, endpoint_url, outbound_token
from shared.store.base import ObjectRef, PushState, StoredObject
from shared.versions import convert

#: module -> the partner role that receives it
TARGET_ROLE = {"locations": "EMSP", "tariffs": "EMSP", "tokens": "CPO", "sessions": "EMSP", "cdrs": "EMSP"}
#: Modules sent to the one partner named in the change (`partner_id`): command results.
DIRECT = frozenset({"commands", "activeprofiles"})
#: Modules sent only to the eMSP party of the object's token (the `to:` collection).
ADDRESSED = frozenset({"sessions", "cdrs"})
#: Modules the back office may limit to some partner parties (`push_to` metadata).
LIMITABLE = frozenset({"locations", "tariffs"})
#: hub client info ConnectionStatus values that mean "do not deliver".
UNREACHABLE = frozenset({"OFFLINE", "SUSPENDED"})
#: Changes to these fields are never sent as a PATCH (a PATCH of them has other semantics or size).
_PUT_ONLY_FIELDS = frozenset({"charging_periods", "evses", "connectors"})
#: OCPI "unknown object" codes a PATCH may get from a partner that lacks the object (status_codes).
_UNKNOWN_CODES = frozenset({2003, 2004})


# ------------------------------------------------------------------ settings
@dataclass(frozen=True)
class PushSettings:
    max_attempts: int = 10  # = maxReceiveCount of PushDeliveryQueue (template test checks it)
    retry_base: float = 30.0  # seconds before the 2nd attempt; doubles per attempt
    retry_cap: float = 3600.0  # longest wait between two attempts
    lease: int = 6 * 3600  # an in-flight mark older than this is presumed lost (longer than all retries)
    timeout: float = 10.0  # read timeout of one call to a partner
    breaker_seconds: float = 20.0  # a partner that failed is not called again for this long

    @classmethod
    def from_env(cls, env: Any = None) -> PushSettings:
        env = os.environ if env is None else env
        return cls(
            max_attempts=int(env.get("OCPI_PUSH_MAX_ATTEMPTS", cls.max_attempts)),
            retry_base=float(env.get("OCPI_PUSH_RETRY_BASE", cls.retry_base)),
            retry_cap=float(env.get("OCPI_PUSH_RETRY_CAP", cls.retry_cap)),
            lease=int(env.get("OCPI_PUSH_LEASE", cls.lease)),
            timeout=float(env.get("OCPI_PUSH_TIMEOUT", cls.timeout)),
            breaker_seconds=float(env.get("OCPI_PUSH_BREAKER_SECONDS", cls.breaker_seconds)),
        )

    def backoff(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number ``attempt`` (1-based), as a visibility timeout."""
        return int(min(self.retry_cap, self.retry_base * 2 ** max(0, attempt - 1)))


# ------------------------------------------------------------------ what changed, what to deliver
def party_key(country_code: str, party_id: str) -> str:
    return f"{country_code.upper()}*{party_id.upper()}"


@dataclass(frozen=True)
class Change:
    """One `ocpi.own.changed` event."""

    module: str
    action: str  # put | patch | delete
    country_code: str
    party_id: str
    object_id: str
    variant: str = ""
    evse_uid: str | None = None
    connector_id: str | None = None
    fields: tuple[str, ...] = ()
    last_updated: str | None = None
    to_party: tuple[str, str] | None = None
    partner_id: str | None = None  # DIRECT modules only

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.module, self.country_code, self.party_id, self.object_id, self.variant)

    @classmethod
    def from_event(cls, event: Any) -> Change:
        """From an EventBridge event (the SQS message body, parsed); ValueError when malformed."""
        if not isinstance(event, dict) or event.get("detail-type") != "ocpi.own.changed":
            raise ValueError("not an ocpi.own.changed event")
        d = event.get("detail")
        if not isinstance(d, dict) or (d.get("module") not in TARGET_ROLE and d.get("module") not in DIRECT):
            raise ValueError("ocpi.own.changed without a known module")
        if d["module"] in DIRECT and not isinstance(d.get("partner_id"), str):
            raise ValueError("ocpi.own.changed of a command without partner_id")
        if d.get("action") not in ("put", "patch", "delete"):
            raise ValueError("ocpi.own.changed without a known action")
        for name in ("country_code", "party_id", "id"):
            if not isinstance(d.get(name), str) or not d[name]:
                raise ValueError(f"ocpi.own.changed without {name}")
        to = (d.get("to_country_code"), d.get("to_party_id"))
        names = d.get("fields") if isinstance(d.get("fields"), list) else []
        try:
            return cls(
                module=d["module"],
                action=d["action"],
                country_code=d["country_code"],
                party_id=d["party_id"],
                object_id=d["id"],
                variant=str(d.get("type") or ""),
                evse_uid=_opt(d.get("evse_uid")),
                connector_id=_opt(d.get("connector_id")),
                fields=tuple(str(n) for n in names),
                last_updated=_opt(d.get("last_updated")),
                to_party=(str(to[0]).upper(), str(to[1]).upper()) if all(to) else None,
                partner_id=d.get("partner_id") if d["module"] in DIRECT else None,
            )
        except ValueError:
            raise
        except Exception as err:  # a ref that cannot exist (bad party ids)
            raise ValueError(f"malformed ocpi.own.changed: {type(err).__name__}") from err

    def descriptor(self) -> dict[str, Any]:
        """What the push-state item keeps of the latest change (for the PATCH-or-PUT choice)."""
        out: dict[str, Any] = {"action": self.action}
        if self.evse_uid is not None:
            out["evse_uid"] = self.evse_uid
        if self.connector_id is not None:
            out["connector_id"] = self.connector_id
        if self.fields:
            out["fields"] = list(self.fields)
        return out

    def log_fields(self) -> dict[str, Any]:
        out = {
            "ocpi_module": self.module,
            "action": self.action,
            "party": party_key(self.country_code, self.party_id),
        }
        if self.module != "tokens":  # never a token uid
            out["object_id"] = self.object_id
        return out


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


@dataclass(frozen=True)
class Delivery:
    """One message on the delivery queue: which object to bring to which partner (never the object)."""

    partner_id: str
    module: str
    country_code: str
    party_id: str
    object_id: str
    variant: str = ""
    timeout_check: bool = False  # commands: the delayed message that sends TIMEOUT if no result came

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.module, self.country_code, self.party_id, self.object_id, self.variant)

    def to_message(self) -> str:
        body = {
            "partner_id": self.partner_id,
            "module": self.module,
            "country_code": self.country_code,
            "party_id": self.party_id,
            "id": self.object_id,
        }
        if self.variant:
            body["type"] = self.variant
        if self.timeout_check:
            body["timeout_check"] = True
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_message(cls, body: str) -> Delivery:
        try:
            d = json.loads(body)
            out = cls(
                partner_id=str(d["partner_id"]),
                module=str(d["module"]),
                country_code=str(d["country_code"]),
                party_id=str(d["party_id"]),
                object_id=str(d["id"]),
                variant=str(d.get("type") or ""),
                timeout_check=d.get("timeout_check") is True,
            )
            if out.module not in TARGET_ROLE and out.module not in DIRECT:
                raise ValueError(out.module)
            out.ref  # noqa: B018 - validates the party ids
            return out
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"not a push delivery message: {type(err).__name__}") from err

    def log_fields(self) -> dict[str, Any]:
        out = {
            "partner_id": self.partner_id,
            "ocpi_module": self.module,
            "party": party_key(self.country_code, self.party_id),
        }
        if self.module != "tokens":
            out["object_id"] = self.object_id
        return out


# ------------------------------------------------------------------ who is entitled
def partner_parties(partner: dict[str, Any], role: str) -> list[tuple[str, str]]:
    return [
        (str(r["country_code"]).upper(), str(r["party_id"]).upper())
        for r in partner.get("roles") or []
        if str(r.get("role", "")).upper() == role and r.get("country_code") and r.get("party_id")
    ]


def reachable(partner: dict[str, Any], party: tuple[str, str]) -> bool:
    """False when hub client info (`client_info` of the partner record, by party key) says the
    party is OFFLINE or SUSPENDED."""
    info = partner.get("client_info")
    if not isinstance(info, dict):
        return True
    entry = info.get(party_key(*party))
    status = entry.get("status") if isinstance(entry, dict) else None
    return str(status or "").upper() not in UNREACHABLE


def receiving_parties(
    partner: dict[str, Any], module: str, to_party: tuple[str, str] | None
) -> list[tuple[str, str]]:
    """The partner's parties that should receive an object of ``module`` (empty: not entitled)."""
    if partner.get("status") != STATUS_REGISTERED or partner.get("client") == "app":
        return []
    if not endpoint_url(partner, module, "RECEIVER"):
        return []
    parties = partner_parties(partner, TARGET_ROLE[module])
    if module in ADDRESSED:
        parties = [p for p in parties if p == to_party]
    return [p for p in parties if reachable(partner, p)]


def targets(change: Change, partners: Iterable[dict[str, Any]]) -> list[str]:
    """Ids of the partners entitled to ``change`` (addressed modules need ``change.to_party``)."""
    if change.module in DIRECT:
        return [
            p["partner_id"]
            for p in partners
            if p.get("partner_id") == change.partner_id and p.get("status") == STATUS_REGISTERED
        ]
    if change.module in ADDRESSED and change.to_party is None:
        return []
    return [p["partner_id"] for p in partners if receiving_parties(p, change.module, change.to_party)]


# ------------------------------------------------------------------ queueing (SQS)
@lru_cache(maxsize=1)
def _sqs() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "sqs",
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=2, read_timeout=5),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )


_queue_sink: Callable[[Delivery], None] | None = None


def set_queue_sink(sink: Callable[[Delivery], None] | None) -> None:
    """Tests without AWS collect queued deliveries (``sink(delivery)``); None restores SQS."""
    global _queue_sink
    _queue_sink = sink


def reset() -> None:
    set_queue_sink(None)
    _sqs.cache_clear()
    with _DOWN_LOCK:
        _DOWN.clear()


def queue_url() -> str:
    url = os.environ.get("OCPI_PUSH_QUEUE_URL", "")
    if not url:
        raise RuntimeError("OCPI_PUSH_QUEUE_URL is not set")
    return url


def enqueue(deliveries: list[Delivery], delay_seconds: int = 0) -> list[Delivery]:
    """Queue deliveries (SendMessageBatch, 10 per request), visible after ``delay_seconds`` (SQS
    allows 15 minutes at most); returns the ones SQS did not take."""
    if _queue_sink is not None:
        for d in deliveries:
            _queue_sink(d)
        return []
    delay = max(0, min(int(delay_seconds), 900))
    failed: list[Delivery] = []
    url = queue_url()
    for i in range(0, len(deliveries), 10):
        chunk = deliveries[i : i + 10]
        entries = [
            {"Id": str(n), "MessageBody": d.to_message(), **({"DelaySeconds": delay} if delay else {})}
            for n, d in enumerate(chunk)
        ]
        try:
            resp = _sqs().send_message_batch(QueueUrl=url, Entries=entries)
        except Exception as err:
            logger.warning("push: queueing deliveries failed", extra={"error": str(err)[:300]})
            failed.extend(chunk)
            continue
        failed.extend(chunk[int(f["Id"])] for f in resp.get("Failed") or [])
    return failed


def delay(receipt_handle: str, seconds: int) -> None:
    """Set a delivery message's visibility: it comes back after ``seconds`` (the retry backoff)."""
    if _queue_sink is not None:
        return
    _sqs().change_message_visibility(
        QueueUrl=queue_url(), ReceiptHandle=receipt_handle, VisibilityTimeout=max(0, min(seconds, 43_200))
    )


# ------------------------------------------------------------------ fan-out
def addressee(store: Any, change: Change) -> tuple[str, str] | None:
    """The eMSP party a session or CDR is for: from the event, else from the stored header."""
    if change.to_party is not None:
        return change.to_party
    header = store.get_header(change.ref)
    if header is None or not header.collection.startswith("to:"):
        return None
    cc, _, pid = header.collection[3:].partition("*")
    return (cc, pid) if cc and pid else None


def fan_out(
    store: Any,
    change: Change,
    partners: list[dict[str, Any]],
    settings: PushSettings,
    now: int | None = None,
    *,
    redelivered: bool = False,
) -> list[Delivery]:
    """Count the change for every entitled partner; returns the deliveries to queue (only where none
    was in flight). ``partners``: the partner list, read once per batch by the caller.
    ``redelivered``: the fan-out message was received before (an earlier attempt may have set the
    marks and died before queueing): queue for every partner whatever the marks (a delivery too
    many is harmless, it sends the current state; a mark without a message would block pushes)."""
    if change.module in ADDRESSED and change.to_party is None:
        to = addressee(store, change)
        if to is None:
            return []
        change = Change(**{**change.__dict__, "to_party": to})
    ids = targets(change, partners)
    if not ids:
        return []
    now = int(time.time()) if now is None else now
    lease = -1 if redelivered else settings.lease  # -1: every mark counts as expired
    _, fresh = store.push_mark(change.ref, ids, change.descriptor(), now, lease)
    ref = change.ref
    return [
        Delivery(p, ref.module, ref.country_code, ref.party_id, ref.object_id, ref.variant) for p in fresh
    ]


# ------------------------------------------------------------------ delivery
class PushFailed(Exception):
    """A delivery that did not reach the partner (retry later)."""

    def __init__(self, message: str, *, partner_down: bool = False, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.partner_down = partner_down
        self.status_code = status_code


_DOWN: dict[str, float] = {}  # partner id -> monotonic time until which it is not called
_DOWN_LOCK = threading.Lock()


def _is_down(partner_id: str) -> bool:
    with _DOWN_LOCK:
        until = _DOWN.get(partner_id)
        if until is None:
            return False
        if until <= time.monotonic():
            del _DOWN[partner_id]
            return False
        return True


def _mark_down(partner_id: str, seconds: float) -> None:
    if seconds > 0:
        with _DOWN_LOCK:
            _DOWN[partner_id] = time.monotonic() + seconds


@dataclass
class Request:
    method: str
    url: str
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    to_party: tuple[str, str] | None = None
    fallback: Request | None = None  # a PUT to send if the partner does not know the object

    @property
    def label(self) -> str:
        return self.method.lower()


def _level(location: dict[str, Any], change: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
    """The part of an assembled location a change touched, and its URL path segments."""
    evse_uid, connector_id = change.get("evse_uid"), change.get("connector_id")
    if evse_uid is None:
        return location, []
    evse = next(
        (e for e in location.get("evses") or [] if str(e["uid"]).upper() == str(evse_uid).upper()), None
    )
    if evse is None or connector_id is None:
        return evse, [str(evse_uid)]
    conn = next(
        (c for c in evse.get("connectors") or [] if str(c["id"]).upper() == str(connector_id).upper()), None
    )
    return conn, [str(evse_uid), str(connector_id)]


def _whole(module: str, current: StoredObject) -> dict[str, Any]:
    if module == "locations":
        return locations.assemble(current)
    if module == "sessions":
        return sessions.assemble(current)
    return current.body


def plan(
    delivery: Delivery, partner: dict[str, Any], state: PushState, current: StoredObject | None
) -> Request | str:
    """The call that brings the partner to ``current``, or why there is none (a label)."""
    request = _plan(delivery, partner, state, current)
    if isinstance(request, str) or request.body is None:
        return request
    # The partner's negotiated version (shared/versions): the body in its wire form.
    version = convert.partner_version(partner)
    if version != convert.CANONICAL:
        if delivery.module == "activeprofiles" and version == "2.1.1":
            return "skipped"  # 2.1.1 has no charging profiles
        try:
            request.body = _wire(partner, delivery.module, request, version)
            if request.fallback is not None:
                request.fallback.body = _wire(partner, delivery.module, request.fallback, version)
        except convert.NotExpressible:
            return "unsupported"  # e.g. an unpublished location or a Credit CDR for a 2.1.1 partner
    return request


_COMMAND_TYPES = frozenset(
    {"START_SESSION", "STOP_SESSION", "RESERVE_NOW", "CANCEL_RESERVATION", "UNLOCK_CONNECTOR"}
)
_WHOLE_KINDS = {
    "locations": "location",
    "tariffs": "tariff",
    "tokens": "token",
    "sessions": "session",
    "cdrs": "cdr",
}


def _wire(partner: dict[str, Any], module: str, request: Request, version: str) -> Any:
    if module == "activeprofiles":
        return request.body  # the ActiveChargingProfile is the same in 2.2.1 and 2.3.0
    kind = _WHOLE_KINDS[module]
    if request.method == "PATCH":
        if module == "locations":
            depth = request.url.rstrip("/").count("/") - request.fallback.url.rstrip("/").count("/")
            kind = ("location_patch", "evse_patch", "connector_patch")[depth] if request.fallback else kind
        else:
            kind = f"{kind}_patch"
    from shared.store import get_store

    return convert.to_partner(get_store(), partner, kind, request.body)


def _plan(
    delivery: Delivery, partner: dict[str, Any], state: PushState, current: StoredObject | None
) -> Request | str:
    module = delivery.module
    if module == "activeprofiles":  # as CPO: the charger's profile to the Sender (mod_charging_profiles)
        url = endpoint_url(partner, "chargingprofiles", "SENDER")
        if current is None or not url:
            return "skipped"
        to = current.body.get("emsp")
        emsp = (to[0], to[1]) if isinstance(to, list | tuple) and len(to) == 2 else None
        target = f"{url.rstrip('/')}/{delivery.object_id}"
        return Request("PUT", target, current.body["active_charging_profile"], to_party=emsp)
    base = endpoint_url(partner, module, "RECEIVER")
    to_party = None
    if module in ADDRESSED and current is not None:
        col = current.collection
        to_party = tuple(col[3:].split("*", 1)) if col.startswith("to:") else None
    parties = receiving_parties(partner, module, to_party)  # type: ignore[arg-type]
    if not base or not parties:
        return "skipped"
    if module in LIMITABLE and current is not None:
        allowed = current.meta.get("push_to") if isinstance(current.meta, dict) else None
        if isinstance(allowed, list):
            allowed_keys = {str(a).upper() for a in allowed}
            parties = [p for p in parties if party_key(*p) in allowed_keys]
            if not parties:
                return "filtered"
    to = parties[0]
    ref = delivery.ref
    path = f"{base.rstrip('/')}/{ref.country_code}/{ref.party_id}/{ref.object_id}"
    params = {"type": ref.variant} if module == "tokens" and ref.variant else {}
    if current is None:
        if module == "tariffs":
            return Request("DELETE", path, to_party=to)
        return "gone"
    if module == "cdrs":
        if delivery.partner_id in state.acked:
            return "already"
        return Request("POST", base, current.body, to_party=to)
    whole = _whole(module, current)
    put = Request("PUT", path, whole, params, to_party=to)
    change = state.change or {}
    names = [n for n in change.get("fields") or [] if n != "last_updated"]
    current_before = state.seq >= 1 and state.acked.get(delivery.partner_id) == state.seq - 1
    if not (
        current_before and change.get("action") == "patch" and names and not set(names) & _PUT_ONLY_FIELDS
    ):
        return put
    target, segments = _level(whole, change) if module == "locations" else (whole, [])
    if target is None or "last_updated" not in target:
        return put
    body = {n: target.get(n) for n in names}
    body["last_updated"] = target["last_updated"]
    url = "/".join([path, *segments])
    return Request("PATCH", url, body, params, to_party=to, fallback=put)


def _client(
    partner: dict[str, Any], delivery: Delivery, to_party: tuple[str, str] | None, settings: PushSettings
) -> OcpiClient:
    return OcpiClient(
        outbound_token(partner),  # opened once per container and token (shared/secrets.py)
        raw_token=bool(partner.get("raw_token", False)),
        from_party=(delivery.country_code.upper(), delivery.party_id.upper()),
        to_party=to_party,
        timeout=settings.timeout,
        connect_timeout=min(3.0, settings.timeout),
        retries=0,  # SQS retries with backoff; a retry here would hold up the whole batch
    )


def _send(client: OcpiClient, request: Request) -> None:
    client.request(request.method, request.url, json=request.body, params=request.params or None)


def _failure(err: OcpiClientError, partner_id: str, settings: PushSettings) -> PushFailed:
    status = err.http_status or 0
    down = isinstance(err, OcpiTransportError) or (
        isinstance(err, OcpiHttpError) and (status >= 500 or status == 429)
    )
    if down:
        _mark_down(partner_id, settings.breaker_seconds)
    return PushFailed(err.message[:300], partner_down=down, status_code=err.status_code)


def deliver(
    store: Any,
    delivery: Delivery,
    partner: dict[str, Any] | None,
    settings: PushSettings,
    *,
    requeue: Callable[[Delivery], bool] | None = None,
) -> str:
    """Bring one partner up to date with one object. Returns what happened: put | patch | post |
    delete (sent), skipped (partner gone, unreachable or not entitled), filtered (push_to), gone
    (the object no longer exists), already (a CDR delivered before). A follow-up delivery is queued
    (``requeue``, default :func:`enqueue`) when the object changed while we sent it. Raises
    :class:`PushFailed` when the partner was not brought up to date."""
    ref = delivery.ref
    if partner is None or partner.get("status") != STATUS_REGISTERED or not partner.get("outbound_token"):
        store.push_release(ref, delivery.partner_id)
        return "skipped"
    if _is_down(delivery.partner_id):
        raise PushFailed("partner failed moments ago: not called", partner_down=True)
    if delivery.module == "commands":
        return _deliver_command(store, delivery, partner, settings, requeue)
    state = store.push_state(ref)  # first the state, then the object: the object is at least as new
    current = store.get(ref, consistent=True)  # (an eventually consistent read could be older)
    request = plan(delivery, partner, state, current)
    if isinstance(request, str):
        if request in ("skipped", "filtered", "gone", "unsupported"):
            store.push_release(ref, delivery.partner_id)
        else:
            store.push_ack(ref, delivery.partner_id, state.seq)
        return request
    sent = request
    try:
        # A token that cannot be opened (KMS) fails like a call: retried, nothing acknowledged.
        client = _client(partner, delivery, request.to_party, settings)
        try:
            _send(client, request)
        except OcpiClientError as err:
            unknown = err.status_code in _UNKNOWN_CODES or err.http_status == 404
            if request.fallback is None or not unknown:
                raise
            sent = request.fallback  # the partner lost the object: send it whole
            _send(client, sent)
    except OcpiClientError as err:
        raise _failure(err, delivery.partner_id, settings) from err
    acked = store.push_ack(ref, delivery.partner_id, state.seq)
    # Changed while we read and sent it: the mark stays, one more delivery brings the rest.
    if not acked and state.seq > 0 and (requeue or _requeue)(delivery):
        raise PushFailed("object changed during the delivery and the follow-up could not be queued")
    return sent.label


def _deliver_command(
    store: Any,
    delivery: Delivery,
    partner: dict[str, Any],
    settings: PushSettings,
    requeue: Callable[[Delivery], bool] | None,
) -> str:
    """POST a command's CommandResult to its response_url (mod_commands, Sender interface), once.
    No result yet: before the timeout, wait again (a delayed copy of the message); after it,
    record TIMEOUT and send that."""
    from shared.services import commands

    ref = delivery.ref
    command = store.get(ref)
    if command is None or command.body.get("partner_id") != delivery.partner_id:
        store.push_release(ref, delivery.partner_id)
        return "gone"
    state = store.push_state(ref)
    if delivery.partner_id in state.acked:
        return "already"
    result = commands.ensure_result(store, ref)
    if result is not None and delivery.timeout_check and result.get("source") != "timeout":
        # The back office answered in time: the fan-out's delivery sends that result, not this check
        # (one sender per result: no double POST when the answer and the timeout cross).
        return "answered"
    if result is None:
        if enqueue([delivery], delay_seconds=commands.seconds_left(store, ref)):
            raise PushFailed("the timeout check could not be queued again")
        return "waiting"
    if state.seq == 0:  # the timeout path: no fan-out marked it, so mark it for the acknowledgement
        store.push_mark(ref, [delivery.partner_id], {"action": "put"}, int(time.time()), settings.lease)
        state = store.push_state(ref)
    if result.get("result") is None:  # a charging profile request that timed out: nothing to send
        store.push_ack(ref, delivery.partner_id, state.seq)
        return "expired"
    body = {k: v for k, v in result.items() if k in ("result", "message", "profile")}
    if str(command.body.get("type", "")).upper() in _COMMAND_TYPES:  # not a charging profile result
        body = convert.to_partner(store, partner, "command_result", body)
    emsp = (command.body["emsp_country_code"], command.body["emsp_party_id"])
    try:
        client = _client(partner, delivery, emsp, settings)
        client.request("POST", command.body["response_url"], json=body)
    except OcpiClientError as err:
        raise _failure(err, delivery.partner_id, settings) from err
    acked = store.push_ack(ref, delivery.partner_id, state.seq)
    if not acked and (requeue or _requeue)(delivery):
        raise PushFailed("the command result changed during the delivery and no follow-up could be queued")
    return "post"


def queue_timeout_check(partner_id: str, ref: ObjectRef, delay_seconds: int) -> bool:
    """Queue the delayed delivery of an accepted command or charging profile request: when it comes,
    it sends the result, or TIMEOUT if none came (:func:`_deliver_command`). False if SQS refused."""
    check = Delivery(
        partner_id, ref.module, ref.country_code, ref.party_id, ref.object_id, timeout_check=True
    )
    return not enqueue([check], delay_seconds=delay_seconds)


def _requeue(delivery: Delivery) -> bool:
    """Queue one delivery; True if SQS did not take it."""
    return bool(enqueue([delivery]))


def give_up(store: Any, delivery: Delivery) -> None:
    """The last attempt failed (the message goes to the dead-letter queue): drop the in-flight mark
    so the object's next change queues a fresh delivery instead of waiting for this one."""
    store.push_release(delivery.ref, delivery.partner_id)


# ------------------------------------------------------------------ resync (ocpi-admin push resync)
def resync(
    store: Any, partner: dict[str, Any], modules: Iterable[str] | None = None, now: int | None = None
) -> dict[str, int]:
    """Queue a delivery of every own object ``partner`` is entitled to (after a long outage, a hub
    party back ONLINE, or to seed a new partner). Returns queued counts per module. Objects the
    partner already holds get a PUT anyway: a resync trusts nothing."""
    from shared.services import objects
    from shared.store.base import ListQuery

    settings = PushSettings.from_env()
    now = int(time.time()) if now is None else now
    counts: dict[str, int] = {}
    for module in modules or TARGET_ROLE:
        parties = partner_parties(partner, TARGET_ROLE[module])
        collections = [objects.to_collection(*p) for p in parties] if module in ADDRESSED else [objects.OWN]
        queued = 0
        for collection in collections:
            cursor, offset = None, 0
            while True:
                query = ListQuery(
                    collection=collection, module=module, offset=offset, limit=100, cursor=cursor
                )
                page = store.list(query)
                batch: list[Delivery] = []
                for obj in page.items:
                    ref = obj.ref
                    to = tuple(collection[3:].split("*", 1)) if module in ADDRESSED else None
                    change = Change(
                        module, "put", ref.country_code, ref.party_id, ref.object_id, ref.variant, to_party=to
                    )  # type: ignore[arg-type]
                    if not targets(change, [partner]):
                        continue
                    _, fresh = store.push_mark(
                        ref, [partner["partner_id"]], change.descriptor(), now, settings.lease
                    )
                    batch += [
                        Delivery(p, module, ref.country_code, ref.party_id, ref.object_id, ref.variant)
                        for p in fresh
                    ]
                failed = enqueue(batch)
                for d in failed:
                    store.push_release(d.ref, d.partner_id)
                queued += len(batch) - len(failed)
                if page.next_offset is None:
                    break
                cursor, offset = page.next_cursor, page.next_offset
        counts[module] = queued
    return counts


# ------------------------------------------------------------------ dead-letter queue (ocpi-admin push)
def dlq_url() -> str:
    url = os.environ.get("OCPI_PUSH_DLQ_URL", "")
    if not url:
        raise RuntimeError("OCPI_PUSH_DLQ_URL is not set (the stack's PushDeadLetterQueueUrl output)")
    return url


def _dlq_messages(hold_seconds: int) -> Iterable[dict[str, Any]]:
    """Every message of the DLQ once (each is hidden for ``hold_seconds`` after it was read). Long
    polls (1 s) so an empty answer means an empty queue, not an unlucky short poll."""
    seen: set[str] = set()
    while True:
        got = (
            _sqs()
            .receive_message(
                QueueUrl=dlq_url(),
                MaxNumberOfMessages=10,
                VisibilityTimeout=hold_seconds,
                AttributeNames=["All"],
                WaitTimeSeconds=1,
            )
            .get("Messages", [])
        )
        fresh = [m for m in got if m["MessageId"] not in seen]
        if not fresh:
            return
        for m in fresh:
            seen.add(m["MessageId"])
            yield m


def _describe(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"message_id": message["MessageId"]}
    try:
        out.update(Delivery.from_message(message["Body"]).log_fields())
    except ValueError:
        out["error"] = "not a delivery message"
    attrs = message.get("Attributes") or {}
    out["receive_count"] = int(attrs.get("ApproximateReceiveCount", 0))
    if attrs.get("SentTimestamp"):
        out["first_sent_at"] = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(attrs["SentTimestamp"]) / 1000)
        )
    return out


def _release(messages: list[dict[str, Any]]) -> None:
    """Make messages read from the DLQ visible again at once (SQS has no peek)."""
    for m in messages:
        try:
            _sqs().change_message_visibility(
                QueueUrl=dlq_url(), ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        except Exception as err:  # it reappears after the hold anyway
            logger.warning("push dlq: visibility not reset", extra={"error": str(err)[:200]})


def dlq_list() -> list[dict[str, Any]]:
    """What is in the push dead-letter queue (partner, module, object; never token uids).
    ``receive_count`` is SQS's count: the delivery attempts plus every listing. Each message is
    hidden while the whole queue is read, then visible again at once."""
    messages = list(_dlq_messages(hold_seconds=30))
    _release(messages)
    return [_describe(m) for m in messages]


def dlq_replay(
    partner_id: str | None = None, message_ids: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Move dead-lettered deliveries back to the delivery queue (all, or those of one partner, or the
    given message ids) and return them. A replayed delivery reads the object as it is now: replaying
    an old message never sends an old state."""
    wanted = set(message_ids or [])
    moved: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    for m in _dlq_messages(hold_seconds=60):
        info = _describe(m)
        if (wanted and m["MessageId"] not in wanted) or (partner_id and info.get("partner_id") != partner_id):
            kept.append(m)  # hidden until the scan ends, so the scan sees every message once
            continue
        _sqs().send_message(QueueUrl=queue_url(), MessageBody=m["Body"])
        _sqs().delete_message(QueueUrl=dlq_url(), ReceiptHandle=m["ReceiptHandle"])
        moved.append(info)
    _release(kept)
    return moved
