"""In-memory implementation of the store interfaces, with the same semantics as DynamoStore.

Used by unit tests of services (no AWS at all). tests/integration runs the same contract tests
against DynamoStore on moto, so the two cannot drift apart silently.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from shared.models.types import format_datetime
from shared.store import keys
from shared.store.base import (
    BillingJob,
    Child,
    ConcurrentUpdate,
    IndexPage,
    ListQuery,
    ObjectMissing,
    ObjectRef,
    Page,
    PushState,
    StoredObject,
    TokenRecord,
    WriteResult,
    check_index,
    check_index_name,
    lu_key,
)
from shared.store.dynamo import decode_cursor, encode_cursor


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.objects: dict[str, StoredObject] = {}  # pk -> header (children inside)
        self.index: dict[str, dict[str, str]] = {}  # pk -> extra index attributes of the header
        self.tokens: dict[str, TokenRecord] = {}
        self.partners: dict[str, dict[str, Any]] = {}
        self.parties: dict[tuple[str, str, str], str] = {}
        self.push: dict[str, PushState] = {}  # object pk -> push state (the `Q` item)
        self.billing_jobs: dict[tuple[str, str], BillingJob] = {}
        self.statements: dict[tuple[str, str], dict[str, Any]] = {}

    # ------------------------------------------------------------------ objects
    def get(self, ref: ObjectRef, *, consistent: bool = False) -> StoredObject | None:
        with self._lock:
            obj = self.objects.get(keys.object_pk(ref))
            if obj is None:
                return None
            obj = copy.deepcopy(obj)
            obj.children.sort(key=lambda c: (c.order, c.child_id))
            return obj

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
        manifest: bool = True,  # no manifest in memory: children are always at hand
    ) -> WriteResult:
        pk = keys.object_pk(ref)
        lu = lu_key(last_updated)
        extra = {k: v for k, v in check_index(index).items() if v is not None}
        with self._lock:
            old = self.objects.get(pk)
            if old is not None and old.last_updated > lu:
                return WriteResult.STALE
            kids = (
                [self._versioned(c) for c in children]
                if children is not None
                else (old.children if old else [])
            )
            self.objects[pk] = StoredObject(
                ref=ref,
                body=copy.deepcopy(body),
                last_updated=lu,
                collection=collection,
                meta=copy.deepcopy(meta or {}),
                children=kids,
            )
            self.index[pk] = extra  # a put replaces the whole header item, index attributes too
            return WriteResult.UPDATED if old else WriteResult.CREATED

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
        pk = keys.object_pk(ref)
        extra = {k: v for k, v in check_index(index).items() if v is not None}
        with self._lock:
            old = self.objects.get(pk)
            if old is not None:
                return WriteResult.STALE, copy.deepcopy(old)
            self.objects[pk] = StoredObject(
                ref=ref,
                body=copy.deepcopy(body),
                last_updated=lu_key(last_updated),
                collection=collection,
                meta=copy.deepcopy(meta or {}),
            )
            self.index[pk] = extra
            return WriteResult.CREATED, None

    def patch(
        self,
        ref: ObjectRef,
        fields: dict[str, Any],
        last_updated: datetime,
        *,
        index: dict[str, str | None] | None = None,
    ) -> WriteResult:
        lu = lu_key(last_updated)
        extra = check_index(index)
        pk = keys.object_pk(ref)
        with self._lock:
            obj = self.objects.get(pk)
            if obj is None:
                raise ObjectMissing(pk)
            if obj.last_updated > lu:
                return WriteResult.STALE
            _apply(obj.body, fields)
            obj.last_updated = lu
            attrs = self.index.setdefault(pk, {})
            for k, v in extra.items():
                if v is None:
                    attrs.pop(k, None)
                else:
                    attrs[k] = v
            return WriteResult.UPDATED

    def _touch_parent(self, obj: StoredObject, last_updated: datetime) -> None:
        lu = lu_key(last_updated)
        if obj.last_updated < lu:
            obj.last_updated = lu
            obj.body["last_updated"] = format_datetime(last_updated)

    def get_header(self, ref: ObjectRef) -> StoredObject | None:
        obj = self.get(ref)
        if obj is not None:
            obj.children = []
        return obj

    def get_child(self, ref: ObjectRef, child_id: str) -> Child | None:
        with self._lock:
            obj = self.objects.get(keys.object_pk(ref))
            for c in obj.children if obj else []:
                if c.child_id.upper() == child_id.upper():
                    return copy.deepcopy(c)
            return None

    def replace_children(self, ref: ObjectRef, children: Sequence[Child]) -> None:
        with self._lock:
            obj = self.objects.get(keys.object_pk(ref))
            if obj is None:
                raise ObjectMissing(keys.object_pk(ref))
            obj.children = [self._versioned(c) for c in children]

    @staticmethod
    def _versioned(child: Child) -> Child:
        c = copy.deepcopy(child)
        c.version = uuid.uuid4().hex
        return c

    def put_child(
        self, ref: ObjectRef, child: Child, *, expected_version: str | None = None, manifest: bool = True
    ) -> WriteResult:
        with self._lock:
            obj = self.objects.get(keys.object_pk(ref))
            if obj is None:
                raise ObjectMissing(keys.object_pk(ref))
            for i, c in enumerate(obj.children):
                if c.child_id.upper() == child.child_id.upper():
                    if expected_version is not None:
                        if c.version != expected_version:
                            raise ConcurrentUpdate(child.child_id)
                    elif lu_key(c.last_updated) > lu_key(child.last_updated):
                        return WriteResult.STALE
                    obj.children[i] = self._versioned(child)
                    self._touch_parent(obj, child.last_updated)
                    return WriteResult.UPDATED
            if expected_version:
                raise ConcurrentUpdate(child.child_id)
            obj.children.append(self._versioned(child))
            self._touch_parent(obj, child.last_updated)
            return WriteResult.CREATED

    def patch_child(
        self, ref: ObjectRef, child_id: str, fields: dict[str, Any], last_updated: datetime
    ) -> WriteResult:
        with self._lock:
            obj = self.objects.get(keys.object_pk(ref))
            if obj is None:
                raise ObjectMissing(keys.object_pk(ref))
            for c in obj.children:
                if c.child_id.upper() == child_id.upper():
                    if lu_key(c.last_updated) > lu_key(last_updated):
                        return WriteResult.STALE
                    _apply(c.body, fields)
                    c.last_updated = last_updated
                    c.version = uuid.uuid4().hex
                    self._touch_parent(obj, last_updated)
                    return WriteResult.UPDATED
            raise ObjectMissing(child_id)

    def delete(self, ref: ObjectRef) -> bool:
        with self._lock:
            self.index.pop(keys.object_pk(ref), None)
            return self.objects.pop(keys.object_pk(ref), None) is not None

    def list(self, q: ListQuery) -> Page:
        lo = lu_key(q.date_from) if q.date_from else None
        hi = lu_key(q.date_to) if q.date_to else None
        with self._lock:
            rows = sorted(
                (keys.list_sk(o.last_updated, pk), pk, o)
                for pk, o in self.objects.items()
                if o.ref.module == q.module
                and o.collection == q.collection
                and (lo is None or o.last_updated >= lo)
                and (hi is None or o.last_updated < hi)
            )
        total = len(rows)
        start = q.offset
        if q.cursor:
            cur = decode_cursor(q.cursor)
            if cur.get("o") == q.offset:
                total = cur["t"]
                after = cur["sk"]
                start = next((i for i, r in enumerate(rows) if r[0] > after), len(rows))
        chosen = rows[start : start + q.limit] if q.limit > 0 else []
        objs = [copy.deepcopy(o) for _, _, o in chosen]
        for o in objs:
            o.children = []  # listing returns headers, like the index does
        next_offset = q.offset + len(objs)
        if not objs or next_offset >= total:
            return Page(items=objs, total=total, next_offset=None, next_cursor=None)
        last_sk, last_pk, _ = chosen[-1]
        cursor = encode_cursor({"o": next_offset, "t": total, "pk": last_pk, "sk": last_sk})
        return Page(items=objs, total=total, next_offset=next_offset, next_cursor=cursor)

    def query_index(self, name: str, pk: str) -> list[StoredObject]:
        """Headers whose ``{name}PK`` is ``pk``, ordered by ``{name}SK`` (like a GSI Query)."""
        name = check_index_name(name)
        with self._lock:
            rows = sorted(
                (attrs.get(f"{name}SK", ""), key)
                for key, attrs in self.index.items()
                if attrs.get(f"{name}PK") == pk and f"{name}SK" in attrs and key in self.objects
            )
            found = [copy.deepcopy(self.objects[key]) for _, key in rows]
        for o in found:
            o.children = []  # an index returns headers only
        return found

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
        attributes: Sequence[str] | None = None,  # a store may return more: whole headers here
    ) -> IndexPage:
        if name != "GSI1":
            name = check_index_name(name)
        wanted = {(c.upper(), p.upper()) for c, p in parties} if parties else None
        with self._lock:
            rows = []
            for key, obj in self.objects.items():
                if name == "GSI1":
                    ipk = keys.list_pk(obj.ref.module, obj.collection)
                    isk = keys.list_sk(obj.last_updated, key)
                else:
                    attrs = self.index.get(key, {})
                    ipk, isk = attrs.get(f"{name}PK"), attrs.get(f"{name}SK")
                if ipk == pk and isk is not None and sk_from <= isk <= sk_to:
                    rows.append((isk, key, obj))
            rows.sort(key=lambda r: (r[0], r[1]))
            if start_key:
                after = (start_key["sk"], start_key["pk"])
                rows = [r for r in rows if (r[0], r[1]) > after]
            chosen = rows[:limit]
            more = len(rows) > limit
            found = [
                copy.deepcopy(o)
                for _, _, o in chosen
                if wanted is None or (o.ref.country_code.upper(), o.ref.party_id.upper()) in wanted
            ]
        for o in found:
            o.children = []
        last = {"sk": chosen[-1][0], "pk": chosen[-1][1]} if more and chosen else None
        return IndexPage(found, last)

    def load_children(self, obj: StoredObject) -> StoredObject:
        return self.get(obj.ref) or obj

    def load_children_many(self, objs: list[StoredObject]) -> list[StoredObject]:
        for obj in objs:
            full = self.get(obj.ref)
            obj.children = full.children if full else []
        return objs

    # ------------------------------------------------------------------ tokens and partners
    def get_token(self, token_hash: str) -> TokenRecord | None:
        with self._lock:
            return copy.copy(self.tokens.get(token_hash))

    def put_token(self, record: TokenRecord) -> None:
        with self._lock:
            self.tokens[record.token_hash] = copy.copy(record)

    def consume_token(self, token_hash: str) -> TokenRecord | None:
        with self._lock:
            return self.tokens.pop(token_hash, None)

    def delete_token(self, token_hash: str) -> None:
        with self._lock:
            self.tokens.pop(token_hash, None)

    def get_partner(self, partner_id: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.partners.get(partner_id))

    def put_partner(self, partner: dict[str, Any]) -> None:
        with self._lock:
            self.partners[partner["partner_id"]] = copy.deepcopy(partner)

    def list_partners(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self.partners[k]) for k in sorted(self.partners)]

    def claim_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> list[tuple]:
        wanted = list(dict.fromkeys((r.upper(), c.upper(), p.upper()) for r, c, p in parties))
        with self._lock:
            taken = [p for p in wanted if self.parties.get(p, partner_id) != partner_id]
            if not taken:
                for p in wanted:
                    self.parties[p] = partner_id
            return taken

    def release_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> None:
        with self._lock:
            for r, c, p in parties:
                key = (r.upper(), c.upper(), p.upper())
                if self.parties.get(key) == partner_id:
                    del self.parties[key]

    # ------------------------------------------------------------------ push state
    def push_mark(
        self, ref: ObjectRef, partners: Sequence[str], change: dict[str, Any], now: int, lease: int
    ) -> tuple[int, list[str]]:
        with self._lock:
            state = self.push.setdefault(keys.object_pk(ref), PushState())
            state.seq += 1
            state.change = copy.deepcopy(change)
            fresh = []
            for p in dict.fromkeys(partners):
                since = state.inflight.get(p)
                if since is None or since < now - lease:
                    state.inflight[p] = now
                    fresh.append(p)
            return state.seq, fresh

    def push_state(self, ref: ObjectRef) -> PushState:
        with self._lock:
            return copy.deepcopy(self.push.get(keys.object_pk(ref)) or PushState())

    def push_ack(self, ref: ObjectRef, partner: str, seq: int) -> bool:
        with self._lock:
            state = self.push.get(keys.object_pk(ref))
            if state is None:
                return False
            if state.seq == seq:
                state.acked[partner] = seq
                state.inflight.pop(partner, None)
                return True
            if state.acked.get(partner, -1) < seq:
                state.acked[partner] = seq
            return False

    def push_release(self, ref: ObjectRef, partner: str) -> None:
        with self._lock:
            state = self.push.get(keys.object_pk(ref))
            if state is not None:
                state.inflight.pop(partner, None)

    # ------------------------------------------------------------------ billing runs
    def billing_job_start(
        self, partner_id: str, period: str, run_id: str, spec: dict[str, Any], units: Sequence[str], ttl: int
    ) -> str:
        with self._lock:
            old = self.billing_jobs.get((partner_id, period))
            if old is not None and old.run_id >= run_id:
                return "resumed" if old.run_id == run_id else "superseded"
            self.billing_jobs[(partner_id, period)] = BillingJob(
                partner_id, period, run_id, copy.deepcopy(spec), expected=set(units)
            )
            return "started"

    def billing_job(self, partner_id: str, period: str) -> BillingJob | None:
        with self._lock:
            return copy.deepcopy(self.billing_jobs.get((partner_id, period)))

    def billing_unit_done(
        self, partner_id: str, period: str, run_id: str, unit: str, children: Sequence[str] = ()
    ) -> BillingJob | None:
        with self._lock:
            job = self.billing_jobs.get((partner_id, period))
            if job is None or job.run_id != run_id:
                return None
            job.done.add(unit)
            if children:
                job.split.add(unit)
                job.expected.update(children)
            return copy.deepcopy(job)

    def billing_job_merged(self, partner_id: str, period: str, run_id: str) -> None:
        with self._lock:
            job = self.billing_jobs.get((partner_id, period))
            if job is not None and job.run_id == run_id:
                job.status = "merged"

    def put_statement(self, record: dict[str, Any]) -> bool:
        key = (record["partner_id"], record["period"])
        with self._lock:
            old = self.statements.get(key)
            if old is not None and old["run_id"] > record["run_id"]:
                return False
            self.statements[key] = copy.deepcopy(record)
            return True

    def get_statement(self, partner_id: str, period: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.statements.get((partner_id, period)))

    def list_statements(self, partner_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(r)
                for k, r in sorted(self.statements.items())
                if partner_id is None or k[0] == partner_id
            ]


def _apply(body: dict[str, Any], fields: dict[str, Any]) -> None:
    for k, v in fields.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = copy.deepcopy(v)
