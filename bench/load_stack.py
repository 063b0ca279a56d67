"""The local stack of `make run` (shared.local.stack, moto embedded) for `make load`, with DynamoDB
requests counted per load operation.

The load client names the operation of each request in an `X-Load-Op` header. An ASGI wrapper in
front of the stack's dispatcher puts that name in a context variable (which Starlette copies into
the worker thread of a sync endpoint), and the DynamoDB meter's botocore hook (shared.store.meter)
adds each call to that operation's counter. Calls outside a tagged request (SQS pollers, requests
without the header) are counted as "background" / "untagged". `GET /_load/counts` answers the
counters as JSON; that path exists only in this process, never in a deployed stack.

Requests are served as `make run` serves them, all on uvicorn's one event loop; with
LOAD_STACK_THREADED=1 each runs on an event loop of its own in a worker thread, as Lambda serves one
request per container. (Several endpoints are `async def` and call DynamoDB synchronously: on one
loop each such call holds up every other request of the process; with moto's fast paths below that
costs less than a thread per request does.) The stack's DynamoDB client waits up to 60 s for an
answer instead of 5 s: the wait is moto's queue (below), which DynamoDB does not have.

moto's DynamoDB is not thread-safe: TransactWriteItems deep-copies the table while other requests
change it ("dictionary changed size during iteration", answered 500 until botocore gives up). Here
every DynamoDB request to the embedded moto runs under one lock: each request is atomic, as it is
in DynamoDB, and moto shares this process's GIL anyway.

moto's EventBridge builds a JSONPath parser (jsonpath_ng, yacc) for each of the 8 default input
paths of every event it sends to every target (~2 ms each idle, 20 ms on a busy machine: PutEvents
of 10 back-office events took ~1 s); the parsed paths are cached here (they are immutable), which
leaves what moto does with them unchanged. And moto's DynamoDB gets the fast paths of
bench/motofast.py (index queries, item sizes, answers dumped with json.dumps: the same answers);
without them a crawl page of 50 of our 200 locations costs moto ~0.2 s idle, ~1 s on a busy CPU, all
of it under the lock above.

    PORT=8200 MOTO_PORT=9200 .venv/bin/python bench/load_stack.py    # what bench/load.py starts
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import os
import sys
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import motofast  # noqa: E402
from jsonpath_ng import ext as jsonpath_ext  # noqa: E402
from moto.dynamodb.responses import DynamoHandler  # noqa: E402

from shared import store as store_package  # noqa: E402
from shared.local import stack  # noqa: E402
from shared.store.meter import DynamoMeter  # noqa: E402

#: LOAD_STACK_THREADED=1: a loop per request (default: the stack's own way, uvicorn's one loop).
THREADED = os.environ.get("LOAD_STACK_THREADED", "0") == "1"
HEADER = b"x-load-op"
COUNTS_PATH = "/_load/counts"
OPERATION: contextvars.ContextVar[str] = contextvars.ContextVar("load_operation", default="background")

_lock = threading.Lock()
_dynamodb: defaultdict[str, Counter] = defaultdict(Counter)
_http: Counter = Counter()


def _count_call(model: Any) -> None:
    with _lock:
        _dynamodb[OPERATION.get()][getattr(model, "name", "?")] += 1


_metered = DynamoMeter._after_call


def _after_call(
    self: DynamoMeter, http_response: Any = None, parsed: Any = None, model: Any = None, **kw: Any
):
    """The meter's own hook, plus a count under the operation of the request being served."""
    _metered(self, http_response=http_response, parsed=parsed, model=model, **kw)
    _count_call(model)


motofast.install()  # moto's DynamoDB at native speed, same answers (bench/motofast.py)

_jsonpath_parse = jsonpath_ext.parse
jsonpath_ext.parse = functools.lru_cache(maxsize=256)(_jsonpath_parse)  # moto imports it at each call

_moto_lock = threading.Lock()
_moto_call_action = DynamoHandler.call_action


def _one_at_a_time(self: DynamoHandler) -> Any:
    with _moto_lock:
        return _moto_call_action(self)


DynamoHandler.call_action = _one_at_a_time  # type: ignore[method-assign]


@functools.lru_cache(maxsize=1)
def _patient_dynamodb_client() -> Any:
    """shared.store's client with a 60 s read timeout instead of 5 s: the wait is moto's queue (one
    request at a time, above), which DynamoDB does not have; a 5 s timeout would turn it into errors."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "dynamodb",
        config=Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=2, read_timeout=60),
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1",
    )
    store_package.METER.attach(client)
    return client


store_package.dynamodb_client = _patient_dynamodb_client  # what shared.store's default store calls

# Before any DynamoDB client exists: METER.attach registers the hook it finds on the class then.
DynamoMeter._after_call = _after_call  # type: ignore[method-assign]


def snapshot() -> dict[str, Any]:
    with _lock:
        return {
            "http": dict(_http),
            "dynamodb": {op: dict(calls) for op, calls in _dynamodb.items()},
        }


class Tagged:
    """ASGI wrapper: tags each request with its `X-Load-Op`, serves the counters."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == COUNTS_PATH:
            body = json.dumps(snapshot()).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        raw = dict(scope["headers"]).get(HEADER)
        op = raw.decode("latin-1")[:64] if raw else "untagged"
        with _lock:
            _http[op] += 1
        token = OPERATION.set(op)
        try:
            if THREADED:
                await _in_own_thread(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            OPERATION.reset(token)


async def _in_own_thread(app: Any, scope: Any, receive: Any, send: Any) -> None:
    """Serve one request on an event loop of its own in a worker thread, as a Lambda container
    serves one request: an `async def` endpoint that calls DynamoDB synchronously then blocks only
    its own request, not every request of the process. receive/send stay on the server's loop."""
    loop = asyncio.get_running_loop()

    def bridge(call: Any) -> Any:
        async def bridged(*args: Any) -> Any:
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call(*args), loop))

        return bridged

    await anyio.to_thread.run_sync(
        lambda: asyncio.run(app(scope, bridge(receive), bridge(send))), limiter=_limiter()
    )


_limiters: dict[int, anyio.CapacityLimiter] = {}


def _limiter() -> anyio.CapacityLimiter:
    """Up to 200 requests in flight (anyio's default pool of 40 threads would queue a 40-client load)."""
    loop = id(asyncio.get_running_loop())
    if loop not in _limiters:
        _limiters[loop] = anyio.CapacityLimiter(200)
    return _limiters[loop]


_prepare = stack.prepare


def _tagged_prepare(config: stack.Config) -> stack.LocalParts:
    parts = _prepare(config)
    parts.dispatcher = Tagged(parts.dispatcher)  # type: ignore[assignment]
    return parts


stack.prepare = _tagged_prepare

if __name__ == "__main__":
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1 PID`: every thread's stack
    sys.exit(stack.main([]))
