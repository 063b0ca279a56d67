"""DynamoDB implementation of the store interfaces (one table, see keys.py)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError as BotoClientError

from shared import jsonutil
from shared.errors import InvalidParameters, ServiceUnavailable
from shared.models.types import format_datetime, parse_datetime
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

_ser = TypeSerializer()
_deser = TypeDeserializer()
_CAP = {"ReturnConsumedCapacity": "TOTAL"}
_THROTTLE = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}


def _av(value: Any) -> dict:
    return _ser.serialize(jsonutil.to_decimal_tree(value))


def _item(d: dict[str, Any]) -> dict[str, dict]:
    return {k: _av(v) for k, v in d.items() if v is not None}


def _plain(item: dict[str, dict]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in item.items()}


def _code(err: BotoClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


def _raise_throttle(err: BotoClientError) -> None:
    if _code(err) in _THROTTLE:
        raise ServiceUnavailable("Storage is busy, retry later") from err


# Partners per UpdateItem of push_mark (the expression stays far below DynamoDB's 4 KB).
_MARK_CHUNK = 60


def _push_key(ref: ObjectRef) -> dict[str, dict]:
    return {"PK": {"S": keys.object_pk(ref)}, "SK": {"S": keys.PUSH_SK}}


class DynamoStore:
    """ObjectStore and PartnerStore on one DynamoDB table."""

    def __init__(self, client: Any, table_name: str) -> None:
        self.client = client
        self.table = table_name

    # ------------------------------------------------------------------ helpers
    def _call(self, op: str, **kwargs: Any) -> dict:
        try:
            return getattr(self.client, op)(TableName=self.table, **_CAP, **kwargs)
        except BotoClientError as err:
            _raise_throttle(err)
            raise

    def _query_all(self, **kwargs: Any) -> list[dict]:
        items: list[dict] = []
        while True:
            resp = self._call("query", **kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def _batch_write(self, requests: list[dict]) -> None:
        for i in range(0, len(requests), 25):
            pending = {self.table: requests[i : i + 25]}
            attempt = 0
            while pending:
                try:
                    resp = self.client.batch_write_item(RequestItems=pending, **_CAP)
                except BotoClientError as err:
                    _raise_throttle(err)  # throttled after botocore's retries: 503, retryable
                    raise
                pending = resp.get("UnprocessedItems") or {}
                if pending:
                    attempt += 1
                    if attempt > 8:
                        raise ServiceUnavailable("Storage is busy, retry later")
                    time.sleep(min(0.05 * 2**attempt, 1.0))

    # ------------------------------------------------------------------ objects
    def get(self, ref: ObjectRef, *, consistent: bool = False) -> StoredObject | None:
        pk = keys.object_pk(ref)
        items = self._query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            **({"ConsistentRead": True} if consistent else {}),
        )
        header = None
        children: list[Child] = []
        for raw in items:
            it = _plain(raw)
            if it["SK"] == keys.HEADER_SK:
                header = it
            elif it["SK"].startswith(keys.CHILD_PREFIX):
                children.append(self._child(it))
        if header is None:
            return None
        children.sort(key=lambda c: (c.order, c.child_id))
        return self._stored(ref, header, children)

    @staticmethod
    def _child(it: dict) -> Child:
        return Child(
            child_id=it.get("cid") or it["SK"][len(keys.CHILD_PREFIX) :],
            body=jsonutil.from_dynamo_tree(it.get("body", {})),
            last_updated=parse_datetime(it["lu"]),
            order=int(it.get("ord", 0)),
            version=it.get("ver", ""),
        )

    def get_header(self, ref: ObjectRef) -> StoredObject | None:
        """The object without its children: one GetItem (eventually consistent), whatever the
        number of children."""
        resp = self._call("get_item", Key={"PK": {"S": keys.object_pk(ref)}, "SK": {"S": keys.HEADER_SK}})
        return self._stored(ref, _plain(resp["Item"])) if "Item" in resp else None

    def get_child(self, ref: ObjectRef, child_id: str) -> Child | None:
        resp = self._call(
            "get_item",
            Key={"PK": {"S": keys.object_pk(ref)}, "SK": {"S": keys.child_sk(child_id)}},
            ConsistentRead=True,
        )
        return self._child(_plain(resp["Item"])) if "Item" in resp else None

    def replace_children(self, ref: ObjectRef, children: Sequence[Child]) -> None:
        self._replace_children(keys.object_pk(ref), children, existed=True)

    @staticmethod
    def _stored(ref: ObjectRef, it: dict, children: list[Child] | None = None) -> StoredObject:
        return StoredObject(
            ref=ref,
            body=jsonutil.from_dynamo_tree(it.get("body", {})),
            last_updated=it.get("lu", ""),
            collection=it.get("col", ""),
            meta=jsonutil.from_dynamo_tree(it.get("meta", {})),
            children=children or [],
        )

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
        item = self._header_item(ref, body, last_updated, collection, meta, index)
        lu = item["lu"]
        pk = item["PK"]
        try:
            resp = self._call(
                "put_item",
                Item=_item(item),
                ConditionExpression="attribute_not_exists(PK) OR lu <= :lu",
                ExpressionAttributeValues={":lu": {"S": lu}},
                ReturnValues="ALL_OLD",
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                return WriteResult.STALE
            raise
        result = WriteResult.UPDATED if resp.get("Attributes") else WriteResult.CREATED
        if children is not None:
            try:
                self._replace_children(pk, children, existed=result is WriteResult.UPDATED, manifest=manifest)
            except Exception:
                # Children not written (throttling): the header goes back to what it was, so nobody
                # reads the new header with the old (or no) children; the sender's retry of the PUT
                # writes the whole object. (Beyond 24 children, earlier batches may stay replaced.)
                self._restore_header(item, resp.get("Attributes"))
                raise
        return result

    def _restore_header(self, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Undo a header put whose children failed, unless a newer write replaced it meanwhile."""
        cond = {"ConditionExpression": "lu = :lu", "ExpressionAttributeValues": {":lu": {"S": item["lu"]}}}
        try:
            if old:
                self._call("put_item", Item=old, **cond)
            else:
                self._call("delete_item", Key={"PK": {"S": item["PK"]}, "SK": {"S": keys.HEADER_SK}}, **cond)
        except (BotoClientError, ServiceUnavailable):
            pass  # a newer write won, or storage is still busy: the sender's retry converges

    @staticmethod
    def _header_item(
        ref: ObjectRef,
        body: dict[str, Any],
        last_updated: datetime,
        collection: str,
        meta: dict[str, Any] | None,
        index: dict[str, str] | None,
    ) -> dict[str, Any]:
        pk = keys.object_pk(ref)
        lu = lu_key(last_updated)
        extra = check_index(index)
        return {
            "PK": pk,
            "SK": keys.HEADER_SK,
            "GSI1PK": keys.list_pk(ref.module, collection),
            "GSI1SK": keys.list_sk(lu, pk),
            "mod": ref.module,
            "cc": ref.country_code.upper(),
            "pid": ref.party_id.upper(),
            "oid": ref.object_id,
            "var": ref.variant or None,
            "lu": lu,
            "col": collection,
            "body": body,
            "meta": meta or {},
            **extra,
        }

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
        item = self._header_item(ref, body, last_updated, collection, meta, index)
        try:
            # One conditional PutItem; on conflict DynamoDB hands back the stored item itself
            # (no second read, no window where an eventually consistent read misses it).
            self._call(
                "put_item",
                Item=_item(item),
                ConditionExpression="attribute_not_exists(PK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise
            old = err.response.get("Item")
            if old:
                return WriteResult.STALE, self._stored(ref, _plain(old))
            return WriteResult.STALE, self.get(ref)
        return WriteResult.CREATED, None

    def _replace_children(
        self, pk: str, children: Sequence[Child], *, existed: bool, manifest: bool = True
    ) -> None:
        wanted = {keys.child_sk(c.child_id) for c in children}
        requests: list[dict] = []
        if existed:
            current = self._query_all(
                KeyConditionExpression="PK = :pk AND begins_with(SK, :c)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":c": {"S": keys.CHILD_PREFIX}},
                ProjectionExpression="SK",
            )
            for raw in current:
                if raw["SK"]["S"] not in wanted:
                    requests.append({"DeleteRequest": {"Key": {"PK": {"S": pk}, "SK": raw["SK"]}}})
        for c in children:
            requests.append(
                {
                    "PutRequest": {
                        "Item": _item(
                            {
                                "PK": pk,
                                "SK": keys.child_sk(c.child_id),
                                "cid": c.child_id,
                                "lu": lu_key(c.last_updated),
                                "ord": c.order,
                                "ver": uuid.uuid4().hex,
                                "body": c.body,
                            }
                        )
                    }
                }
            )
        # The manifest lists the children's keys, so a page of parents gets its children with
        # BatchGetItem instead of one Query per parent (see load_children_many).
        # Objects without a manifest (manifest=False, sessions) never get one: nothing to write.
        manifest_key = {"PK": {"S": pk}, "SK": {"S": keys.MANIFEST_SK}}
        if wanted and manifest:
            requests.append({"PutRequest": {"Item": {**manifest_key, "kids": {"SS": sorted(wanted)}}}})
        elif existed and manifest:
            requests.append({"DeleteRequest": {"Key": manifest_key}})
        self._batch_write(requests)

    @staticmethod
    def _set_fields(fields: dict[str, Any], names: dict, values: dict) -> tuple[list[str], list[str]]:
        sets, removes = [], []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"] = name
            if value is None:
                removes.append(f"body.#f{i}")
            else:
                values[f":f{i}"] = _av(value)
                sets.append(f"body.#f{i} = :f{i}")
        return sets, removes

    def patch(
        self,
        ref: ObjectRef,
        fields: dict[str, Any],
        last_updated: datetime,
        *,
        index: dict[str, str | None] | None = None,
    ) -> WriteResult:
        pk = keys.object_pk(ref)
        lu = lu_key(last_updated)
        names: dict[str, str] = {}
        values: dict[str, Any] = {":lu": {"S": lu}, ":gsk": {"S": keys.list_sk(lu, pk)}}
        sets, removes = self._set_fields(fields, names, values)
        for i, (name, value) in enumerate(check_index(index).items()):
            names[f"#x{i}"] = name
            if value is None:
                removes.append(f"#x{i}")
            else:
                values[f":x{i}"] = {"S": value}
                sets.append(f"#x{i} = :x{i}")
        expr = "SET " + ", ".join([*sets, "lu = :lu", "GSI1SK = :gsk"])
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        return self._conditional_update({"PK": {"S": pk}, "SK": {"S": keys.HEADER_SK}}, expr, names, values)

    def _conditional_update(self, key: dict, expr: str, names: dict, values: dict) -> WriteResult:
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        try:
            self._call(
                "update_item",
                Key=key,
                UpdateExpression=expr,
                ConditionExpression="attribute_exists(PK) AND lu <= :lu",
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **kwargs,
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                if err.response.get("Item"):
                    return WriteResult.STALE
                raise ObjectMissing(key["PK"]["S"]) from err
            raise
        return WriteResult.UPDATED

    def _touch_parent(self, pk: str, last_updated: datetime) -> None:
        """Parent last_updated follows its children (mod_locations: Location.last_updated)."""
        lu = lu_key(last_updated)
        try:
            self._call(
                "update_item",
                Key={"PK": {"S": pk}, "SK": {"S": keys.HEADER_SK}},
                UpdateExpression="SET lu = :lu, GSI1SK = :gsk, body.last_updated = :raw",
                ConditionExpression="attribute_exists(PK) AND lu < :lu",
                ExpressionAttributeValues={
                    ":lu": {"S": lu},
                    ":gsk": {"S": keys.list_sk(lu, pk)},
                    ":raw": {"S": format_datetime(last_updated)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise
            if not err.response.get("Item"):
                raise ObjectMissing(pk) from err
            # The parent is already as new or newer: nothing to do.

    def put_child(
        self, ref: ObjectRef, child: Child, *, expected_version: str | None = None, manifest: bool = True
    ) -> WriteResult:
        pk = keys.object_pk(ref)
        lu = lu_key(child.last_updated)
        sk = keys.child_sk(child.child_id)
        item = {
            "PK": pk,
            "SK": sk,
            "cid": child.child_id,
            "lu": lu,
            "ord": child.order,
            "ver": uuid.uuid4().hex,
            "body": child.body,
        }
        values: dict[str, Any] = {":lu": {"S": lu}}
        if expected_version is None:
            cond = "attribute_not_exists(SK) OR lu <= :lu"
        elif expected_version == "":
            cond = "attribute_not_exists(SK)"
            values = {}
        else:
            cond = "ver = :ver"
            values = {":ver": {"S": expected_version}}
        try:
            resp = self._call(
                "put_item",
                Item=_item(item),
                ConditionExpression=cond,
                ReturnValues="ALL_OLD",
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                if expected_version is not None:
                    raise ConcurrentUpdate(sk) from err
                return WriteResult.STALE
            raise
        try:
            self._touch_parent(pk, child.last_updated)
        except ObjectMissing:
            # No parent: undo the orphan child so nothing half-written stays behind.
            self._call("delete_item", Key={"PK": {"S": pk}, "SK": {"S": sk}})
            raise
        if not resp.get("Attributes"):
            if not manifest:
                return WriteResult.CREATED
            # A new child: one more write, to the manifest (a status change never pays this).
            self._call(
                "update_item",
                Key={"PK": {"S": pk}, "SK": {"S": keys.MANIFEST_SK}},
                UpdateExpression="ADD kids :k",
                ExpressionAttributeValues={":k": {"SS": [sk]}},
            )
            return WriteResult.CREATED
        return WriteResult.UPDATED

    def patch_child(
        self, ref: ObjectRef, child_id: str, fields: dict[str, Any], last_updated: datetime
    ) -> WriteResult:
        pk = keys.object_pk(ref)
        lu = lu_key(last_updated)
        names: dict[str, str] = {}
        values: dict[str, Any] = {":lu": {"S": lu}, ":ver": {"S": uuid.uuid4().hex}}
        sets, removes = self._set_fields(fields, names, values)
        expr = "SET " + ", ".join([*sets, "lu = :lu", "ver = :ver"])
        if removes:
            expr += " REMOVE " + ", ".join(removes)
        result = self._conditional_update(
            {"PK": {"S": pk}, "SK": {"S": keys.child_sk(child_id)}}, expr, names, values
        )
        if result is WriteResult.UPDATED:
            self._touch_parent(pk, last_updated)
        return result

    def delete(self, ref: ObjectRef) -> bool:
        pk = keys.object_pk(ref)
        items = self._query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            ProjectionExpression="PK, SK",
        )
        # The push state stays: its seq and in-flight marks must outlive the object, or a delivery
        # of the deleted object in flight could be confused with the delete's (shared/services/push.py).
        items = [raw for raw in items if raw["SK"]["S"] != keys.PUSH_SK]
        self._batch_write([{"DeleteRequest": {"Key": raw}} for raw in items])
        return any(raw["SK"]["S"] == keys.HEADER_SK for raw in items)

    # ------------------------------------------------------------------ listing
    def _range(self, q: ListQuery) -> tuple[str, dict]:
        values: dict[str, Any] = {":p": {"S": keys.list_pk(q.module, q.collection)}}
        cond = "GSI1PK = :p"
        lo = lu_key(q.date_from) if q.date_from else None
        hi = lu_key(q.date_to) if q.date_to else None
        # GSI1SK = "{lu}#{PK}": ">= lo" includes objects at exactly date_from, "< hi" (and BETWEEN
        # with hi itself) excludes objects at exactly date_to (transport_and_format: date_to exclusive).
        if lo and hi:
            cond += " AND GSI1SK BETWEEN :lo AND :hi"
            values.update({":lo": {"S": lo}, ":hi": {"S": hi}})
        elif lo:
            cond += " AND GSI1SK >= :lo"
            values[":lo"] = {"S": lo}
        elif hi:
            cond += " AND GSI1SK < :hi"
            values[":hi"] = {"S": hi}
        return cond, values

    def _count(self, cond: str, values: dict, limit: int | None = None) -> tuple[int, dict | None]:
        """Count matching index entries (up to `limit`); returns the count and the last key read."""
        total = 0
        kwargs: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
            "Select": "COUNT",
        }
        last = None
        while True:
            if limit is not None:
                kwargs["Limit"] = limit - total
            resp = self._call("query", **kwargs)
            total += resp.get("Count", 0)
            last = resp.get("LastEvaluatedKey")
            if last is None or (limit is not None and total >= limit):
                return total, last
            kwargs["ExclusiveStartKey"] = last

    def list(self, q: ListQuery) -> Page:
        cond, values = self._range(q)
        start_key = None
        total = None
        if q.cursor:
            cur = decode_cursor(q.cursor)
            if cur.get("o") == q.offset:
                total = cur.get("t")
                start_key = {
                    "PK": {"S": cur["pk"]},
                    "SK": {"S": keys.HEADER_SK},
                    "GSI1PK": values[":p"],
                    "GSI1SK": {"S": cur["sk"]},
                }
        if total is None:
            total, _ = self._count(cond, values)
        if start_key is None and q.offset > 0:
            if q.offset >= total:
                return Page(items=[], total=total, next_offset=None, next_cursor=None)
            _, start_key = self._count(cond, values, limit=q.offset)
        items: list[dict] = []
        kwargs: dict[str, Any] = {
            "IndexName": "GSI1",
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
        }
        if start_key:
            kwargs["ExclusiveStartKey"] = start_key
        while len(items) < q.limit:
            kwargs["Limit"] = q.limit - len(items)
            resp = self._call("query", **kwargs)
            items.extend(resp.get("Items", []))
            if "LastEvaluatedKey" not in resp:
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        objs = [self._from_index(_plain(raw)) for raw in items]
        next_offset = q.offset + len(objs)
        if not objs or next_offset >= total:
            return Page(items=objs, total=total, next_offset=None, next_cursor=None)
        last = _plain(items[-1])
        cursor = encode_cursor({"o": next_offset, "t": total, "pk": last["PK"], "sk": last["GSI1SK"]})
        return Page(items=objs, total=total, next_offset=next_offset, next_cursor=cursor)

    @staticmethod
    def _from_index(it: dict) -> StoredObject:
        ref = ObjectRef(
            module=it["mod"],
            country_code=it["cc"],
            party_id=it["pid"],
            object_id=it["oid"],
            variant=it.get("var", "") or "",
        )
        return DynamoStore._stored(ref, it)

    def query_index(self, name: str, pk: str) -> list[StoredObject]:
        """Headers in one partition of an extra index (GSI2, ...), in sort-key order."""
        name = check_index_name(name)
        items = self._query_all(
            IndexName=name,
            KeyConditionExpression="#pk = :pk",
            ExpressionAttributeNames={"#pk": f"{name}PK"},
            ExpressionAttributeValues={":pk": {"S": pk}},
        )
        return [self._from_index(_plain(raw)) for raw in items]

    # Header attributes a projected range query always reads (the ref and what StoredObject holds).
    _HEADER_KEYS = ("PK", "mod", "cc", "pid", "oid", "var", "lu", "col")

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
        """One Query page (``Limit``) of a sort-key range of one index partition (GSI1 included)."""
        if name != "GSI1":
            name = check_index_name(name)
        names = {"#ipk": f"{name}PK", "#isk": f"{name}SK"}
        values: dict[str, Any] = {":pk": {"S": pk}, ":a": {"S": sk_from}, ":b": {"S": sk_to}}
        kwargs: dict[str, Any] = {
            "IndexName": name,
            "KeyConditionExpression": "#ipk = :pk AND #isk BETWEEN :a AND :b",
            "Limit": limit,
        }
        if parties:
            names.update({"#cc": "cc", "#pid": "pid"})
            terms = []
            for i, (cc, pid) in enumerate(sorted(set(parties))):
                values[f":c{i}"] = {"S": cc.upper()}
                values[f":p{i}"] = {"S": pid.upper()}
                terms.append(f"(#cc = :c{i} AND #pid = :p{i})")
            kwargs["FilterExpression"] = " OR ".join(terms)
        if attributes:
            paths = []
            for path in dict.fromkeys([*self._HEADER_KEYS, *attributes]):
                parts = []
                for part in path.split("."):
                    alias = f"#a{len(names)}"
                    names.setdefault(alias, part)
                    parts.append(alias)
                paths.append(".".join(parts))
            kwargs["ProjectionExpression"] = ", ".join(paths)
        if start_key:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start_key.items()}
        resp = self._call("query", ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)
        items = [self._from_index(_plain(raw)) for raw in resp.get("Items", [])]
        last = resp.get("LastEvaluatedKey")
        return IndexPage(items, {k: v["S"] for k, v in last.items()} if last else None)

    def load_children(self, obj: StoredObject) -> StoredObject:
        """Fill in the children of a listed object (listing reads headers only)."""
        full = self.get(obj.ref)
        return full or obj

    def _batch_get(self, keys_: list[dict]) -> list[dict]:
        out: list[dict] = []
        for i in range(0, len(keys_), 100):
            pending: dict = {self.table: {"Keys": keys_[i : i + 100]}}
            attempt = 0
            while pending:
                try:
                    resp = self.client.batch_get_item(RequestItems=pending, **_CAP)
                except BotoClientError as err:
                    _raise_throttle(err)
                    raise
                out.extend(resp.get("Responses", {}).get(self.table, []))
                pending = resp.get("UnprocessedKeys") or {}
                if pending:
                    attempt += 1
                    if attempt > 8:
                        raise ServiceUnavailable("Storage is busy, retry later")
                    time.sleep(min(0.05 * 2**attempt, 1.0))
        return out

    def load_children_many(self, objs: list[StoredObject]) -> list[StoredObject]:
        """Children of a page of listed objects: BatchGetItem of their manifests, then of the
        children themselves, ~2 + children/100 requests for the whole page."""
        pks = {keys.object_pk(o.ref): o for o in objs}
        manifests = self._batch_get([{"PK": {"S": pk}, "SK": {"S": keys.MANIFEST_SK}} for pk in pks])
        child_keys = [
            {"PK": m["PK"], "SK": {"S": sk}} for m in manifests for sk in m.get("kids", {}).get("SS", [])
        ]
        by_pk: dict[str, list[Child]] = {pk: [] for pk in pks}
        for raw in self._batch_get(child_keys):
            by_pk[raw["PK"]["S"]].append(self._child(_plain(raw)))
        for pk, obj in pks.items():
            obj.children = sorted(by_pk[pk], key=lambda c: (c.order, c.child_id))
        return objs

    # ------------------------------------------------------------------ tokens and partners
    def get_token(self, token_hash: str) -> TokenRecord | None:
        resp = self._call(
            "get_item", Key={"PK": {"S": keys.token_pk(token_hash)}, "SK": {"S": "T"}}, ConsistentRead=True
        )
        if "Item" not in resp:
            return None
        it = _plain(resp["Item"])
        exp = it.get("expires_at")
        return TokenRecord(
            token_hash=token_hash,
            partner_id=it["partner_id"],
            kind=it["kind"],
            expires_at=int(exp) if exp is not None else None,
        )

    def put_token(self, record: TokenRecord) -> None:
        self._call(
            "put_item",
            Item=_item(
                {
                    "PK": keys.token_pk(record.token_hash),
                    "SK": "T",
                    "partner_id": record.partner_id,
                    "kind": record.kind,
                    "expires_at": record.expires_at,
                }
            ),
        )

    def consume_token(self, token_hash: str) -> TokenRecord | None:
        try:
            resp = self._call(
                "delete_item",
                Key={"PK": {"S": keys.token_pk(token_hash)}, "SK": {"S": "T"}},
                ConditionExpression="attribute_exists(PK)",
                ReturnValues="ALL_OLD",
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                return None
            raise
        it = _plain(resp.get("Attributes", {}))
        exp = it.get("expires_at")
        return TokenRecord(token_hash, it["partner_id"], it["kind"], int(exp) if exp is not None else None)

    def delete_token(self, token_hash: str) -> None:
        self._call("delete_item", Key={"PK": {"S": keys.token_pk(token_hash)}, "SK": {"S": "T"}})

    def get_partner(self, partner_id: str) -> dict[str, Any] | None:
        resp = self._call(
            "get_item", Key={"PK": {"S": keys.partner_pk(partner_id)}, "SK": {"S": "P"}}, ConsistentRead=True
        )
        if "Item" not in resp:
            return None
        return jsonutil.from_dynamo_tree(_plain(resp["Item"]).get("data", {}))

    def put_partner(self, partner: dict[str, Any]) -> None:
        pid = partner["partner_id"]
        self._call(
            "put_item",
            Item=_item(
                {
                    "PK": keys.partner_pk(pid),
                    "SK": "P",
                    "GSI1PK": keys.PARTNERS_LIST_PK,
                    "GSI1SK": pid,
                    "data": partner,
                }
            ),
        )

    def list_partners(self) -> list[dict[str, Any]]:
        items = self._query_all(
            IndexName="GSI1",
            KeyConditionExpression="GSI1PK = :p",
            ExpressionAttributeValues={":p": {"S": keys.PARTNERS_LIST_PK}},
        )
        return [jsonutil.from_dynamo_tree(_plain(raw).get("data", {})) for raw in items]

    def claim_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> list[tuple]:
        parties = list(dict.fromkeys((r.upper(), c.upper(), p.upper()) for r, c, p in parties))
        if not parties:
            return []
        ops = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": _item({"PK": keys.party_pk(*p), "SK": "R", "partner_id": partner_id}),
                    "ConditionExpression": "attribute_not_exists(PK) OR partner_id = :me",
                    "ExpressionAttributeValues": {":me": {"S": partner_id}},
                }
            }
            for p in parties
        ]
        try:
            self.client.transact_write_items(TransactItems=ops, **_CAP)
        except BotoClientError as err:
            if _code(err) != "TransactionCanceledException":
                _raise_throttle(err)
                raise
            reasons = err.response.get("CancellationReasons") or []
            taken = [
                p for p, r in zip(parties, reasons, strict=False) if r.get("Code") == "ConditionalCheckFailed"
            ]
            if not taken:
                raise ServiceUnavailable("Storage is busy, retry later") from err
            return taken
        return []

    def release_parties(self, partner_id: str, parties: Iterable[tuple[str, str, str]]) -> None:
        for p in parties:
            try:
                self._call(
                    "delete_item",
                    Key={"PK": {"S": keys.party_pk(*p)}, "SK": {"S": "R"}},
                    ConditionExpression="partner_id = :me",
                    ExpressionAttributeValues={":me": {"S": partner_id}},
                )
            except BotoClientError as err:
                if _code(err) != "ConditionalCheckFailedException":
                    raise

    # ------------------------------------------------------------------ billing runs
    # Job item (PK B#{partner}#{period}, SK J): run_id, spec (JSON), expected/done/split (string
    # sets of unit ids), status, expires_at. Statement item (SK S): run_id, data (the record).
    @staticmethod
    def _billing_key(partner_id: str, period: str, sk: str) -> dict[str, dict]:
        return {"PK": {"S": keys.billing_pk(partner_id, period)}, "SK": {"S": sk}}

    @staticmethod
    def _job(it: dict[str, Any]) -> BillingJob:
        return BillingJob(
            partner_id=it["partner_id"],
            period=it["period"],
            run_id=it["run_id"],
            spec=json.loads(it["spec"]),
            expected=set(it.get("expected") or ()),
            done=set(it.get("done") or ()),
            split=set(it.get("split") or ()),
            status=it.get("status", "running"),
        )

    def billing_job_start(
        self, partner_id: str, period: str, run_id: str, spec: dict[str, Any], units: Sequence[str], ttl: int
    ) -> str:
        item = {
            **self._billing_key(partner_id, period, keys.BILLING_JOB_SK),
            "partner_id": {"S": partner_id},
            "period": {"S": period},
            "run_id": {"S": run_id},
            "spec": {"S": json.dumps(spec, sort_keys=True, separators=(",", ":"))},
            "expected": {"SS": sorted(set(units))},
            "status": {"S": "running"},
            "expires_at": {"N": str(int(ttl))},
        }
        try:
            self._call(
                "put_item",
                Item=item,
                ConditionExpression="attribute_not_exists(PK) OR run_id < :rid",
                ExpressionAttributeValues={":rid": {"S": run_id}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise
            old = (err.response.get("Item") or {}).get("run_id", {}).get("S")
            return "resumed" if old == run_id else "superseded"
        return "started"

    def billing_job(self, partner_id: str, period: str) -> BillingJob | None:
        resp = self._call(
            "get_item", Key=self._billing_key(partner_id, period, keys.BILLING_JOB_SK), ConsistentRead=True
        )
        return self._job(_plain(resp["Item"])) if "Item" in resp else None

    def billing_unit_done(
        self, partner_id: str, period: str, run_id: str, unit: str, children: Sequence[str] = ()
    ) -> BillingJob | None:
        values: dict[str, Any] = {":me": {"SS": [unit]}, ":rid": {"S": run_id}}
        names = {"#d": "done"}
        expr = "ADD #d :me"
        if children:  # (SPLIT is a reserved word: every name goes through an alias)
            values[":kids"] = {"SS": sorted(set(children))}
            names.update({"#s": "split", "#e": "expected"})
            expr += ", #s :me, #e :kids"
        try:
            resp = self._call(
                "update_item",
                Key=self._billing_key(partner_id, period, keys.BILLING_JOB_SK),
                UpdateExpression=expr,
                ConditionExpression="run_id = :rid",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                return None
            raise
        return self._job(_plain(resp["Attributes"]))

    def billing_job_merged(self, partner_id: str, period: str, run_id: str) -> None:
        try:
            self._call(
                "update_item",
                Key=self._billing_key(partner_id, period, keys.BILLING_JOB_SK),
                UpdateExpression="SET #s = :m",
                ConditionExpression="run_id = :rid",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":m": {"S": "merged"}, ":rid": {"S": run_id}},
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise

    def put_statement(self, record: dict[str, Any]) -> bool:
        pid, period, rid = record["partner_id"], record["period"], record["run_id"]
        item = {
            "PK": keys.billing_pk(pid, period),
            "SK": keys.STATEMENT_SK,
            "GSI1PK": keys.STATEMENTS_LIST_PK,
            "GSI1SK": keys.statement_list_sk(pid, period),
            "run_id": rid,
            "data": record,
        }
        try:
            self._call(
                "put_item",
                Item=_item(item),
                ConditionExpression="attribute_not_exists(PK) OR run_id <= :rid",
                ExpressionAttributeValues={":rid": {"S": rid}},
            )
        except BotoClientError as err:
            if _code(err) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get_statement(self, partner_id: str, period: str) -> dict[str, Any] | None:
        resp = self._call("get_item", Key=self._billing_key(partner_id, period, keys.STATEMENT_SK))
        return jsonutil.from_dynamo_tree(_plain(resp["Item"])["data"]) if "Item" in resp else None

    def list_statements(self, partner_id: str | None = None) -> list[dict[str, Any]]:
        cond = "GSI1PK = :p"
        values = {":p": {"S": keys.STATEMENTS_LIST_PK}}
        if partner_id is not None:
            cond += " AND begins_with(GSI1SK, :s)"
            values[":s"] = {"S": f"{partner_id}#"}
        items = self._query_all(
            IndexName="GSI1", KeyConditionExpression=cond, ExpressionAttributeValues=values
        )
        return [jsonutil.from_dynamo_tree(_plain(raw)["data"]) for raw in items]

    # ------------------------------------------------------------------ push state
    # One item per own object (PK of the object, SK "Q"), attributes: seq (N), chg (S, JSON of the
    # latest change), F#{partner} (N: epoch second a delivery was queued), A#{partner} (N: acked seq).
    def push_mark(
        self, ref: ObjectRef, partners: Sequence[str], change: dict[str, Any], now: int, lease: int
    ) -> tuple[int, list[str]]:
        partners = list(dict.fromkeys(partners))
        key = _push_key(ref)
        seq = 0
        fresh: list[str] = []
        chunks = [partners[i : i + _MARK_CHUNK] for i in range(0, len(partners), _MARK_CHUNK)] or [[]]
        for n, chunk in enumerate(chunks):
            names = {f"#f{i}": f"F#{p}" for i, p in enumerate(chunk)}
            sets = [f"#f{i} = if_not_exists(#f{i}, :now)" for i in range(len(chunk))]
            values: dict[str, Any] = {":now": {"N": str(now)}}
            if n == 0:
                sets.insert(0, "chg = :c")
                values[":c"] = {"S": json.dumps(change, sort_keys=True, separators=(",", ":"))}
                values[":one"] = {"N": "1"}
                expr = "ADD seq :one SET " + ", ".join(sets)
            else:
                expr = "SET " + ", ".join(sets)
            kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
            resp = self._call(
                "update_item",
                Key=key,
                UpdateExpression=expr,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",  # unambiguous: every F# as it was (unchanged ones too)
                **kwargs,
            )
            old = _plain(resp.get("Attributes", {}))
            if n == 0:
                seq = int(old.get("seq", 0)) + 1
            for p in chunk:
                since = old.get(f"F#{p}")
                if since is None:
                    fresh.append(p)
                elif int(since) < now - lease:
                    # The mark outlived every retry: its message is presumed lost. Renew it (only if
                    # nobody else did) and queue anew.
                    try:
                        self._call(
                            "update_item",
                            Key=key,
                            UpdateExpression="SET #f = :now",
                            ConditionExpression="#f = :old",
                            ExpressionAttributeNames={"#f": f"F#{p}"},
                            ExpressionAttributeValues={":now": {"N": str(now)}, ":old": {"N": str(since)}},
                        )
                        fresh.append(p)
                    except BotoClientError as err:
                        if _code(err) != "ConditionalCheckFailedException":
                            raise
        return seq, fresh

    def push_state(self, ref: ObjectRef) -> PushState:
        resp = self._call("get_item", Key=_push_key(ref), ConsistentRead=True)
        it = _plain(resp.get("Item", {}))
        state = PushState(seq=int(it.get("seq", 0)), change=json.loads(it["chg"]) if it.get("chg") else None)
        for name, value in it.items():
            if name.startswith("F#"):
                state.inflight[name[2:]] = int(value)
            elif name.startswith("A#"):
                state.acked[name[2:]] = int(value)
        return state

    def push_ack(self, ref: ObjectRef, partner: str, seq: int) -> bool:
        names = {"#a": f"A#{partner}", "#f": f"F#{partner}"}
        values = {":s": {"N": str(seq)}}
        try:
            self._call(
                "update_item",
                Key=_push_key(ref),
                UpdateExpression="SET #a = :s REMOVE #f",
                ConditionExpression="seq = :s",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
            return True
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise
        try:  # changed since the read: the partner holds at least `seq`, the mark stays
            self._call(
                "update_item",
                Key=_push_key(ref),
                UpdateExpression="SET #a = :s",
                ConditionExpression="attribute_exists(seq) AND (attribute_not_exists(#a) OR #a < :s)",
                ExpressionAttributeNames={"#a": names["#a"]},
                ExpressionAttributeValues=values,
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise
        return False

    def push_release(self, ref: ObjectRef, partner: str) -> None:
        try:
            self._call(
                "update_item",
                Key=_push_key(ref),
                UpdateExpression="REMOVE #f",
                ConditionExpression="attribute_exists(PK)",
                ExpressionAttributeNames={"#f": f"F#{partner}"},
            )
        except BotoClientError as err:
            if _code(err) != "ConditionalCheckFailedException":
                raise


def encode_cursor(data: dict) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A listing sort key: "{sortable last_updated}#O#..." (keys.list_sk).
_CURSOR_SK = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#O#.+$", re.DOTALL)


def decode_cursor(cursor: str) -> dict:
    """Parse a continuation from a Link URL; anything malformed is the client's error (2001)."""
    try:
        pad = "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not (
            isinstance(data, dict)
            and isinstance(data.get("o"), int)
            and isinstance(data.get("t"), int)
            and isinstance(data.get("pk"), str)
            and isinstance(data.get("sk"), str)
            and data["o"] >= 0
            and data["t"] >= 0
            and data["pk"].startswith("O#")
            and 2 < len(data["pk"]) <= 1024
            and _CURSOR_SK.match(data["sk"])
            and len(data["sk"]) <= 1024
        ):
            raise ValueError("bad cursor")
        return data
    except (ValueError, binascii.Error, UnicodeDecodeError) as err:
        raise InvalidParameters("Invalid pagination cursor") from err
