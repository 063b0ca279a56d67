"""The data-access interface. Services depend on these protocols only, so business logic is unit
tested on `MemoryStore` and integration tested on `DynamoStore` (moto) with the same tests.

Semantics every implementation keeps (docs/store.md has the DynamoDB key schema):
- Objects are stored per owner party (country_code, party_id) and per module; ids are compared
  case-insensitively (CiString) by upper-casing them in keys, while bodies keep the sent case.
- A write carries the object's `last_updated`; a write older than what is stored is not applied
  (conditional write) and reports `WriteResult.STALE`. Equal timestamps overwrite (idempotent retry).
  `create` never overwrites: an existing object (any `last_updated`) is reported as STALE.
- Children (the EVSEs of a location) are separate items, so a change to one child is one small
  write whose cost does not depend on the number of siblings; a GET still returns the parent whole.
- Lists are ordered by (last_updated, key) ascending, in one partition per collection.
- Extra secondary indexes (GSI2, ...) are maintained by the services: `put`/`patch` take the key
  attributes to write on the header item (`index=`), `query_index` reads one partition (sparse:
  objects without the attributes are not in the index).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.models.types import sortable_datetime


class WriteResult(enum.Enum):
    CREATED = "created"
    UPDATED = "updated"
    STALE = "stale"  # stored object is newer: nothing was written


class ObjectMissing(LookupError):
    """PATCH/child write on an object (or child) that does not exist."""


class ConcurrentUpdate(RuntimeError):
    """A read-modify-write lost a race (the version read has changed): read again and retry."""


@dataclass(frozen=True)
class ObjectRef:
    module: str
    country_code: str
    party_id: str
    object_id: str
    variant: str = ""  # e.g. the token type: tokens are unique per (uid, type)

    def __post_init__(self) -> None:
        if len(self.country_code) != 2 or len(self.party_id) != 3:
            raise ValueError("country_code must have 2 and party_id 3 characters")

    @property
    def owner(self) -> str:
        return f"{self.country_code.upper()}*{self.party_id.upper()}"


@dataclass
class Child:
    child_id: str
    body: dict[str, Any]
    last_updated: datetime
    order: int = 0
    version: str = ""  # opaque, changes on every write (optimistic concurrency for read-modify-write)


@dataclass
class StoredObject:
    ref: ObjectRef
    body: dict[str, Any]
    last_updated: str  # sortable form (types.sortable_datetime)
    collection: str
    meta: dict[str, Any] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)


@dataclass
class Page:
    items: list[StoredObject]
    total: int
    next_offset: int | None  # None on the last page
    next_cursor: str | None  # opaque continuation for the Link header


@dataclass(frozen=True)
class ListQuery:
    collection: str
    module: str
    date_from: datetime | None = None
    date_to: datetime | None = None
    offset: int = 0
    limit: int = 100
    cursor: str | None = None


def lu_key(dt: datetime) -> str:
    return sortable_datetime(dt)


@dataclass
class IndexPage:
    """One page of a range query on an index: headers (children not loaded) in sort-key order and
    the key to continue after (None on the last page). ``next_key`` is a plain dict of strings
    (JSON-serialisable: it travels in queue messages)."""

    items: list[StoredObject]
    next_key: dict[str, str] | None


# Attributes a store keeps on an object's header item itself: an extra index cannot set them.
RESERVED_ATTRIBUTES = frozenset(
    {"PK", "SK", "GSI1PK", "GSI1SK", "mod", "cc", "pid", "oid", "var", "lu", "col", "body", "meta"}
)
_INDEX_NAME = re.compile(r"^GSI[2-9][0-9]*$")


def check_index_name(name: str) -> str:
    """An extra index name (GSI2, GSI3, ...; GSI1 is the listing index the store maintains itself)."""
    if not _INDEX_NAME.match(name):
        raise ValueError(f"not an extra index name: {name!r}")
    return name


def check_index(index: dict[str, Any] | None) -> dict[str, Any]:
    """Validate the extra index attributes of a put/patch: ``{name}PK``/``{name}SK`` of an extra
    index, string values (None only in a patch, to remove one)."""
    for key, value in (index or {}).items():
        if key in RESERVED_ATTRIBUTES or not (key.endswith(("PK", "SK")) and _INDEX_NAME.match(key[:-2])):
            raise ValueError(f"not an extra index attribute: {key!r}")
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError(f"index attribute {key} must be a non-empty string")
    return dict(index or {})


class ObjectStore(Protocol):
    def get(self, ref: ObjectRef, *, consistent: bool = False) -> StoredObject | None:
        """The object with its children; ``consistent`` asks for a strongly consistent read (the
        push delivery must see at least what the push state it read says)."""
        ...

    def put(
        self,
        ref: ObjectRef,
        body: dict[str, Any],
        last_updated: datetime,
        *,
        collection: str,
        children: Sequence[Child] | None = None,
        meta: dict[str, Any] | None = None,
        index: dict[str, str] | None = None,
        manifest: bool = True,
    ) -> WriteResult:
        """Store an object (unless the stored one is newer). ``index``: extra key attributes of the
        header item for a secondary index, e.g. ``{"GSI2PK": ..., "GSI2SK": ...}`` (a PUT replaces
        them: an object put without ``index`` leaves every extra index). ``manifest=False``: the
        children get no manifest item (objects whose children are only appended with
        ``put_child(manifest=False)`` and read with ``get``/``load_children``, e.g. sessions)."""
        ...

    def create(
        self,
        ref: ObjectRef,
        body: dict[str, Any],
        last_updated: datetime,
        *,
        collection: str,
        meta: dict[str, Any] | None = None,
        index: dict[str, str] | None = None,
    ) -> tuple[WriteResult, StoredObject | None]:
        """Store an object only if nothing is stored under ``ref`` (immutable objects: CDRs).
        Returns ``(CREATED, None)``, or ``(STALE, the stored object)`` when one exists: nothing is
        written then, whatever its content or ``last_updated``. One conditional write."""
        ...

    def patch(
        self,
        ref: ObjectRef,
        fields: dict[str, Any],
        last_updated: datetime,
        *,
        index: dict[str, str | None] | None = None,
    ) -> WriteResult:
        """Change the sent fields; ``index`` sets extra index attributes along (None removes one)."""
        ...

    def query_index(self, name: str, pk: str) -> list[StoredObject]:
        """Object headers (children not loaded) whose ``{name}PK`` attribute equals ``pk``, ordered
        by ``{name}SK`` (e.g. ``query_index("GSI2", "G#u173")``)."""
        ...

    def query_range(
        self,
        name: str,
        pk: str,
        sk_from: str,
        sk_to: str,
        *,
        start_key: dict[str, str] | None = None,
        limit: int = 500,
        parties: Sequence[tuple[str, str]] | None = None,
        attributes: Sequence[str] | None = None,
    ) -> IndexPage:
        """One page of headers in one partition of an index (``GSI1`` or an extra index) whose sort
        key is between ``sk_from`` and ``sk_to`` (inclusive), in sort-key order, after ``start_key``.
        ``parties``: only objects of these (country_code, party_id) owners (filtered by the store: a
        page may come back empty with a ``next_key``). ``attributes``: paths of the header to read
        (``"body.session_id"``); the ref, collection and ``last_updated`` always come; a store may
        return more."""
        ...

    def get_child(self, ref: ObjectRef, child_id: str) -> Child | None: ...

    def put_child(
        self, ref: ObjectRef, child: Child, *, expected_version: str | None = None, manifest: bool = True
    ) -> WriteResult:
        """Upsert a child unless the stored one is newer. With expected_version (read earlier by
        get_child; "" = it did not exist) the write only happens if nothing changed since, else
        ConcurrentUpdate. ``manifest=False`` leaves the manifest alone (a new child then costs the
        same whatever the number of siblings; ``load_children_many`` will not see it)."""
        ...

    def replace_children(self, ref: ObjectRef, children: Sequence[Child]) -> None: ...

    def patch_child(
        self, ref: ObjectRef, child_id: str, fields: dict[str, Any], last_updated: datetime
    ) -> WriteResult: ...

    def delete(self, ref: ObjectRef) -> bool: ...

    def load_children(self, obj: StoredObject) -> StoredObject:
        """The object with all its children (one Query), manifest or not."""
        ...

    def load_children_many(self, objs: list[StoredObject]) -> list[StoredObject]:
        """Attach the children of listed objects (lists return headers only), through their
        manifests: children written with ``manifest=False`` are not seen."""
        ...

    def list(self, query: ListQuery) -> Page: ...


# ------------------------------------------------------------------ partners and credentials tokens
@dataclass
class TokenRecord:
    """A credentials token we accept, stored under its keyed hash only."""

    token_hash: str
    partner_id: str
    kind: str  # "A" (registration, single use) or "C" (a registered partner's token)
    expires_at: int | None = None  # epoch seconds, for kind A


class PartnerStore(Protocol):
    def get_token(self, token_hash: str) -> TokenRecord | None: ...

    def put_token(self, record: TokenRecord) -> None: ...

    def consume_token(self, token_hash: str) -> TokenRecord | None:
        """Delete a single-use token atomically; returns it, or None if it was already gone."""
        ...

    def delete_token(self, token_hash: str) -> None: ...

    def get_partner(self, partner_id: str) -> dict[str, Any] | None: ...

    def put_partner(self, partner: dict[str, Any]) -> None: ...

    def list_partners(self) -> list[dict[str, Any]]: ...

    def claim_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> list[tuple]:
        """Claim (role, country_code, party_id) keys for a partner; returns the keys another partner
        already holds (nothing is claimed then)."""
        ...

    def release_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> None: ...


# ------------------------------------------------------------------ billing runs (shared/services/billing.py)
@dataclass
class BillingJob:
    """The job of one partner and period: the run that holds it and its work units.

    ``expected`` are the units the job needs (the initial slices, plus the halves of every slice
    that split); ``done`` the units finished (processed or split); ``split`` the units that split
    instead of writing a result. The job is complete when ``expected <= done``; the results to merge
    are those of ``(expected & done) - split``. Sets only grow (an ``ADD`` of a unit is idempotent), so
    a unit processed twice is counted once."""

    partner_id: str
    period: str
    run_id: str
    spec: dict[str, Any]
    expected: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    split: set[str] = field(default_factory=set)
    status: str = "running"  # "merged" once the statement of this run is written

    @property
    def complete(self) -> bool:
        return self.expected <= self.done

    @property
    def leaves(self) -> list[str]:
        return sorted((self.expected & self.done) - self.split)


class BillingStore(Protocol):
    def billing_job_start(
        self, partner_id: str, period: str, run_id: str, spec: dict[str, Any], units: Sequence[str], ttl: int
    ) -> str:
        """Make ``run_id`` the run of this job unless a newer one (greater ``run_id``) holds it:
        ``"started"``, ``"resumed"`` (this run already holds it: its progress is kept) or
        ``"superseded"`` (nothing written). ``ttl``: epoch second the job item may expire."""
        ...

    def billing_job(self, partner_id: str, period: str) -> BillingJob | None:
        """The job item, read consistently."""
        ...

    def billing_unit_done(
        self, partner_id: str, period: str, run_id: str, unit: str, children: Sequence[str] = ()
    ) -> BillingJob | None:
        """Record a finished unit (with ``children``: it split into them) in one conditional update;
        the job after it, or None when another run holds the job now."""
        ...

    def billing_job_merged(self, partner_id: str, period: str, run_id: str) -> None: ...

    def put_statement(self, record: dict[str, Any]) -> bool:
        """Store a statement record (``partner_id``, ``period``, ``run_id``, ...) unless one of a newer
        run is stored; True if written."""
        ...

    def get_statement(self, partner_id: str, period: str) -> dict[str, Any] | None: ...

    def list_statements(self, partner_id: str | None = None) -> list[dict[str, Any]]:
        """Statement records ordered by (partner_id, period)."""
        ...


# ------------------------------------------------------------------ push state (shared/services/push.py)
@dataclass
class PushState:
    """What we know about pushing one own object to partners (one item per object, beside it).

    ``seq`` counts the object's changes the fan-out saw; ``change`` describes the latest one;
    ``inflight[partner]`` is the epoch second a delivery message for that partner was queued (at most
    one at a time per partner and object: later changes only raise ``seq``); ``acked[partner]`` is the
    ``seq`` the partner is known to hold (its last successful delivery read the object after it)."""

    seq: int = 0
    change: dict[str, Any] | None = None
    inflight: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)


class PushStore(Protocol):
    def push_mark(
        self, ref: ObjectRef, partners: Sequence[str], change: dict[str, Any], now: int, lease: int
    ) -> tuple[int, list[str]]:
        """Count one change (``seq + 1``, ``change`` replaced) and mark a delivery in flight for each
        partner; returns the new ``seq`` and the partners that had none in flight (or one older than
        ``lease`` seconds, presumed lost): only those need a new delivery message."""
        ...

    def push_state(self, ref: ObjectRef) -> PushState: ...

    def push_ack(self, ref: ObjectRef, partner: str, seq: int) -> bool:
        """A delivery that read the object at ``seq`` succeeded: the partner holds ``seq``. Clears the
        in-flight mark and returns True if no change came since; else keeps the mark (a follow-up
        delivery is needed) and returns False."""
        ...

    def push_release(self, ref: ObjectRef, partner: str) -> None:
        """Forget the in-flight mark (a delivery given up or skipped): the next change queues anew."""
        ...
