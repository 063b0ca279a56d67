"""Fast paths for moto's DynamoDB, shared by bench_billing.py and load_stack.py: the same requests,
answers and capacity figures, at native speed.

moto 5.2's own costs dominate a DynamoDB-heavy run: it answers an index Query by walking every item
of the table, sorting the partition with Python-level comparisons and sizing every item of it
(O(table) per request: ~5 s at 100,000 items; a crawl page of 50 of 200 locations ~0.2 s idle),
converts the whole item to JSON once per path of a ProjectionExpression (~30 ms per CDR), and
serialises every attribute value of an answer through its generic botocore-shape serializer
(~25 µs per value). The fast paths group the items by index key once (until a write touches an
indexed item), sort by the same keys with native comparisons, size an item once (again after an
update), copy only the projected paths and dump the same answer JSON with ``json.dumps``.

Not thread-safe (nor is moto): with concurrent requests, serialise them (load_stack.py does).
Importing this module has no effect; ``install()`` patches moto.
"""

from __future__ import annotations

import base64
import bisect
import json
from typing import Any

_ITEM_KEYS = {"Items", "Item", "Attributes", "Responses"}
_installed = False


def install() -> None:
    global _installed
    if not _installed:
        _queries()
        _answers()
        _installed = True


def _answers() -> None:
    """Answers that carry items are already DynamoDB's typed JSON: json.dumps gives the same text."""
    from moto.dynamodb import responses

    original = responses.DynamoResult.execute_result

    def execute_result(self: Any, context: Any) -> Any:
        body = self.result
        if not isinstance(body, dict) or not (_ITEM_KEYS & set(body)):
            return original(self, context)

        def default(value: Any) -> Any:
            if isinstance(value, bytes):
                return base64.b64encode(value).decode()
            raise TypeError(type(value).__name__)

        return 200, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body, default=default)

    responses.DynamoResult.execute_result = execute_result


def _queries() -> None:
    """Index queries: the partition grouped once per table version, sorted natively; sizes cached;
    projections copy only the projected paths."""
    from moto.dynamodb.models import table

    def sorted_items(self: Any, hash_key_attrs: list, range_key_attrs: list, items: list) -> list:
        attrs = self._generate_attr_to_sort_by(hash_key_attrs, range_key_attrs)

        def key(item: Any) -> tuple:
            out = []
            for name in attrs:
                value = item.attrs.get(name)
                out.append(
                    (0, "") if value is None else (1, value.cast_value if value.type == "N" else value.value)
                )
            return tuple(out)

        items.sort(key=key)
        return items

    table.Table.sorted_items = sorted_items

    from moto.dynamodb.models import dynamo_type

    def size(self: Any) -> int:  # every Query sizes every item of the partition: once per item here
        cached = self.__dict__.get("_bench_size")
        if cached is None:
            cached = self.__dict__["_bench_size"] = sum(
                dynamo_type.bytesize(k) + v.size() for k, v in self.attrs.items()
            )
        return cached

    original_project = dynamo_type.Item.project

    def project(self: Any, projection_expressions: list) -> Any:  # walk the paths, copy the leaves
        if any(
            not isinstance(part, str) or part.startswith("[") for e in projection_expressions for part in e
        ):
            return original_project(self, projection_expressions)
        result: dict[str, Any] = {}
        for expr in projection_expressions:
            node = self.attrs.get(expr[0])
            for part in expr[1:]:
                node = node.value.get(part) if node is not None and node.type == "M" else None
            if node is None:
                continue
            target = result
            for part in expr[:-1]:
                target = target.setdefault(part, {"M": {}})["M"]
            target[expr[-1]] = node.to_regular_json()
        return dynamo_type.Item(hash_key=self.hash_key, range_key=self.range_key, attrs=result)

    dynamo_type.Item.size = size
    dynamo_type.Item.project = project

    # An index Query walks every item of the table to find its partition: group the items by index
    # key once, until a write touches an indexed item.
    from moto.dynamodb.models import DynamoDBBackend

    def indexed(attrs: Any) -> bool:
        return any(name.startswith("GSI") and name.endswith("PK") for name in attrs)

    def bump(tbl: Any) -> None:
        tbl.__dict__["_bench_version"] = tbl.__dict__.get("_bench_version", 0) + 1

    original_put, original_delete = table.Table.put_item, table.Table.delete_item

    def put_item(self: Any, item_attrs: dict, *args: Any, **kwargs: Any) -> Any:
        if indexed(item_attrs):
            bump(self)
        return original_put(self, item_attrs, *args, **kwargs)

    def delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        bump(self)
        return original_delete(self, *args, **kwargs)

    original_update = DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        item = original_update(self, table_name, *args, **kwargs)
        item.__dict__.pop("_bench_size", None)  # updated in place: sized again when asked
        if indexed(item.attrs):
            bump(self.get_table(table_name))
        return item

    original_query = table.Table.query
    original_all_items = table.Table.all_items

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        conditions = kwargs.get("hash_key_conditions") or []
        index_name = kwargs.get("index_name", args[7] if len(args) > 7 else None)
        if not index_name or len(conditions) != 1:
            return original_query(self, *args, **kwargs)
        attr, value = conditions[0]
        index = self.get_index(index_name)
        range_attr = next((k["AttributeName"] for k in index.schema if k["KeyType"] == "RANGE"), None)
        cache = self.__dict__.setdefault("_bench_partitions", {})
        version = self.__dict__.get("_bench_version", 0)
        if cache.get(("version", index_name)) != version:
            groups: dict[Any, list] = {}
            for item in original_all_items(self):
                v = item.attrs.get(attr)
                if v is not None and (range_attr is None or range_attr in item.attrs):
                    groups.setdefault(v.value, []).append(item)
            for items in groups.values():
                sorted_items(self, [attr, self.hash_key_attr], [range_attr, self.range_key_attr], items)
            cache[("version", index_name)] = version
            cache[("groups", index_name)] = {
                k: (items, [i.attrs[range_attr].value if range_attr else "" for i in items])
                for k, items in groups.items()
            }
        items, range_values = cache[("groups", index_name)].get(value.value, ([], []))
        comparison, objs = (args[1], args[2]) if len(args) > 2 else (None, None)
        if comparison == "BETWEEN" and range_attr and objs:
            low = bisect.bisect_left(range_values, objs[0].value)
            high = bisect.bisect_right(range_values, objs[1].value)
            items = items[low:high]
        self.all_items = lambda: list(items)
        self.sorted_items = lambda hash_attrs, range_attrs, found: found  # already in index order
        try:
            return original_query(self, *args, **kwargs)
        finally:
            del self.all_items
            del self.sorted_items

    table.Table.put_item = put_item
    table.Table.delete_item = delete_item
    DynamoDBBackend.update_item = update_item
    table.Table.query = query
