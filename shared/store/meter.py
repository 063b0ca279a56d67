"""Counts DynamoDB requests and consumed capacity: the project's cost model.

Every DynamoDB call made by the store asks for `ReturnConsumedCapacity=TOTAL`; this meter sums what
comes back, per operation name. Bench scripts and tests read it.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Usage:
    requests: Counter = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.total_requests,
            "by_operation": dict(self.requests),
            "read_units": round(self.read_units, 2),
            "write_units": round(self.write_units, 2),
        }


class DynamoMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.usage = Usage()

    def reset(self) -> Usage:
        with self._lock:
            old, self.usage = self.usage, Usage()
        return old

    def attach(self, client: Any) -> None:
        client.meta.events.register("after-call.dynamodb", self._after_call)

    def _after_call(self, http_response: Any = None, parsed: Any = None, model: Any = None, **_: Any) -> None:
        name = getattr(model, "name", "?")
        capacity = (parsed or {}).get("ConsumedCapacity")
        items = capacity if isinstance(capacity, list) else [capacity] if capacity else []
        with self._lock:
            self.usage.requests[name] += 1
            for c in items:
                units = float(c.get("CapacityUnits", 0) or 0)
                read = float(c.get("ReadCapacityUnits", 0) or 0)
                write = float(c.get("WriteCapacityUnits", 0) or 0)
                if read or write:
                    self.usage.read_units += read
                    self.usage.write_units += write
                elif name in _WRITE_OPS:
                    self.usage.write_units += units
                else:
                    self.usage.read_units += units


_WRITE_OPS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}

METER = DynamoMeter()
