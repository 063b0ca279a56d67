"""The one outbound OCPI HTTP client (transport_and_format.asciidoc).

Every module that calls a partner goes through :class:`OcpiClient`:

- ``Authorization: Token <base64(token)>`` (required since 2.2-d2); ``raw_token=True`` sends the
  token as is, for partners configured as 2.1.1-style.
- A fresh ``X-Request-ID`` per attempt, one ``X-Correlation-ID`` per client (or the given one),
  ``Accept: application/json`` and ``Content-Type: application/json`` when there is a body.
- Routing headers ``OCPI-from-*`` / ``OCPI-to-*`` when parties are given; configuration modules
  (credentials, versions, hubclientinfo) SHALL NOT carry them: pass ``routing_headers=False``.
- One retry policy, here and nowhere else (urllib3's own retry and redirects are off): transport
  errors, HTTP 5xx/429, a 2xx whose body is not an envelope and OCPI 3000 are retried with
  exponential backoff (``Retry-After`` honoured, capped); 4xx and OCPI 2xxx never are.
- Response bodies are read with a bound (:data:`MAX_BODY_BYTES`) and parsed with Decimal numbers.
- Pagination: :meth:`OcpiClient.get_all` follows ``Link: <...>; rel="next"`` verbatim.

Logging: one line per attempt (method, host, path without query, status, duration, request id).
Tokens, query strings and bodies are never logged; token uids in ``.../tokens/...`` paths are masked.
Only the standard library and urllib3 are used: this module is on every function's cold start.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlencode, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from shared import jsonutil
from shared.auth import encode_header_token
from shared.logs import context_value, logger

__all__ = [
    "MAX_BODY_BYTES",
    "RETRY_AFTER_CAP",
    "OcpiClient",
    "OcpiClientError",
    "OcpiHttpError",
    "OcpiProtocolError",
    "OcpiResult",
    "OcpiStatusError",
    "OcpiTransportError",
    "shared_pool",
]

#: Largest response body accepted (bytes, after content decoding). Module-level so tests can patch it.
MAX_BODY_BYTES = 10 * 1024 * 1024
#: Longest wait a ``Retry-After`` header can impose between two attempts (seconds).
RETRY_AFTER_CAP = 5.0
_CHUNK = 64 * 1024
# Retry jitter from the OS, not the module-level Mersenne Twister: environments restored from one
# SnapStart snapshot would otherwise all draw the same sequence (and retry in step).
_JITTER = random.SystemRandom()

# urllib3's connection pool logs every request line, query string and token uids included, at DEBUG.
# Keep it quiet unless someone configured that logger explicitly (botocore shares it: no loss there).
_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if _URLLIB3_LOG.level == logging.NOTSET:
    _URLLIB3_LOG.setLevel(logging.INFO)


# ------------------------------------------------------------------------------------ result / errors
@dataclass
class OcpiResult:
    """One HTTP exchange: the HTTP status plus the OCPI response envelope, if any."""

    http_status: int
    status_code: int | None
    status_message: str | None
    data: Any
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx HTTP status carrying an OCPI success code (1000..1999)."""
        code = self.status_code
        return 200 <= self.http_status < 300 and code is not None and 1000 <= code <= 1999


class OcpiClientError(Exception):
    """Base of every error raised by :class:`OcpiClient`.

    ``result`` is the exchange when a response was received (``None`` otherwise); ``retryable``
    tells whether the same request may succeed later; ``retry_after`` is the server's
    ``Retry-After`` in seconds (capped), when it sent one.
    """

    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        result: OcpiResult | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.result = result
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after

    @property
    def http_status(self) -> int | None:
        return self.result.http_status if self.result is not None else None

    @property
    def status_code(self) -> int | None:
        """The partner's OCPI status code, when its response carried an envelope."""
        return self.result.status_code if self.result is not None else None


class OcpiTransportError(OcpiClientError):
    """No usable response: connection refused/reset, timeout, DNS, TLS."""

    default_retryable = True


class OcpiHttpError(OcpiClientError):
    """A non-2xx HTTP status; ``result`` carries the partner's envelope if the body was one."""

    def __init__(self, message: str, *, result: OcpiResult, retry_after: float | None = None) -> None:
        status = result.http_status
        super().__init__(
            message, result=result, retryable=status >= 500 or status == 429, retry_after=retry_after
        )


class OcpiProtocolError(OcpiClientError):
    """A 2xx whose body is not an OCPI envelope (or another protocol violation)."""

    default_retryable = True


class OcpiStatusError(OcpiClientError):
    """A valid envelope whose status_code is not 1xxx. Only 3000 (generic server error) is retryable."""

    def __init__(self, message: str, *, result: OcpiResult) -> None:
        super().__init__(message, result=result, retryable=result.status_code == 3000)


# ------------------------------------------------------------------------------------ shared pool
_POOL: urllib3.PoolManager | None = None
_POOL_LOCK = threading.Lock()


def shared_pool() -> urllib3.PoolManager:
    """The container-wide connection pool (created lazily, reused by warm Lambda invocations)."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = urllib3.PoolManager(num_pools=50, maxsize=10, retries=False)
    return _POOL


# ------------------------------------------------------------------------------------ helpers
_LINK_RE = re.compile(r"<([^>]*)>([^,<]*)")
_REL_RE = re.compile(r"""(?:^|;)\s*rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def next_link(header: str | None) -> str | None:
    """The target of the ``rel="next"`` link in a Link header value, or None."""
    if not header:
        return None
    for target, params in _LINK_RE.findall(header):
        for quoted, bare in _REL_RE.findall(params):
            if "next" in (quoted or bare).lower().split():
                return target.strip()
    return None


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() == timedelta(0):
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    return str(value)


def with_params(url: str, params: dict[str, Any] | None) -> str:
    """``url`` with ``params`` urlencoded into its query.

    Pairs already in the URL are kept verbatim, except those whose name is also in ``params``
    (the explicit parameter wins). ``None`` values are left out; lists repeat the name.
    """
    if not params:
        return url
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            pairs.extend((str(key), _param_value(v)) for v in value if v is not None)
        else:
            pairs.append((str(key), _param_value(value)))
    if not pairs:
        return url
    parts = urlsplit(url)
    names = {k for k, _ in pairs}
    kept = [p for p in parts.query.split("&") if p and unquote_plus(p.partition("=")[0]) not in names]
    query = "&".join([*kept, urlencode(pairs)])
    return urlunsplit(parts._replace(query=query))


def _redact_path(path: str) -> str:
    """The path as it may be logged: segments that can be token uids (after ``tokens``) masked."""
    segments = path.split("/")
    try:
        i = segments.index("tokens")
    except ValueError:
        return path
    tail = segments[i + 1 :]
    keep = 2 if len([s for s in tail if s and s != "authorize"]) >= 3 else 0  # {country}/{party} stay
    masked = [
        s if (n < keep or not s or (s == "authorize" and n == len(tail) - 1)) else "***"
        for n, s in enumerate(tail)
    ]
    return "/".join([*segments[: i + 1], *masked])


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date), capped at RETRY_AFTER_CAP."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def _to_jsonable(obj: Any) -> Any:
    """Pydantic OCPI models (anything with ``to_json_dict()``) turned into plain JSON trees."""
    if hasattr(obj, "to_json_dict"):
        return obj.to_json_dict()
    if isinstance(obj, list | tuple):
        return [_to_jsonable(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    return obj


def _envelope(parsed: Any) -> tuple[int, str | None, Any] | None:
    """(status_code, status_message, data) when ``parsed`` is an OCPI response envelope."""
    if not isinstance(parsed, dict):
        return None
    code = parsed.get("status_code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    message = parsed.get("status_message")
    return code, (None if message is None else str(message)), parsed.get("data")


class _BodyTooLarge(Exception):
    pass


def _read_body(resp: Any) -> bytes:
    """Read at most MAX_BODY_BYTES; raise _BodyTooLarge (connection discarded) beyond that."""
    limit = MAX_BODY_BYTES
    length = resp.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = resp.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)


# ------------------------------------------------------------------------------------ client
class OcpiClient:
    """Calls one partner with one credentials token. Cheap to create; connections are pooled."""

    def __init__(
        self,
        token: str,
        *,
        raw_token: bool = False,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        retries: int = 2,
        backoff: float = 0.2,
        from_party: tuple[str, str] | None = None,
        to_party: tuple[str, str] | None = None,
        routing_headers: bool = True,
        correlation_id: str | None = None,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not token:
            raise ValueError("A credentials token is required")
        self._authorization = "Token " + (token if raw_token else encode_header_token(token))
        self.raw_token = raw_token
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=timeout)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.from_party = from_party
        self.to_party = to_party
        self.routing_headers = routing_headers
        # A call made while serving a request carries that request's X-Correlation-ID on (the chain).
        self.correlation_id = correlation_id or context_value("correlation_id") or str(uuid.uuid4())
        self._pool = pool
        self._sleep = sleep

    def __repr__(self) -> str:  # never the token
        return (
            f"OcpiClient(raw_token={self.raw_token}, from_party={self.from_party}, "
            f"to_party={self.to_party}, correlation_id={self.correlation_id!r})"
        )

    @property
    def pool(self) -> urllib3.PoolManager:
        return self._pool if self._pool is not None else shared_pool()

    # ------------------------------------------------------------------ headers
    def _base_headers(self) -> dict[str, str]:
        headers = {
            "Authorization": self._authorization,
            "Accept": "application/json",
            "X-Correlation-ID": self.correlation_id,
        }
        if self.routing_headers:
            if self.from_party:
                headers["OCPI-from-country-code"], headers["OCPI-from-party-id"] = self.from_party
            if self.to_party:
                headers["OCPI-to-country-code"], headers["OCPI-to-party-id"] = self.to_party
        return headers

    # ------------------------------------------------------------------ requests
    def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict | None = None,
        headers: dict | None = None,
        expect_envelope: bool = True,
        check_status: bool = True,
        retries: int | None = None,
    ) -> OcpiResult:
        """Send one OCPI request (retrying per the policy) and return the parsed exchange.

        ``json`` is the body (``None``: no body). ``headers`` override the defaults by name
        (case-insensitive), except X-Request-ID, which is always fresh per attempt.
        ``expect_envelope=False`` accepts any body: an envelope is still parsed when present,
        otherwise ``data`` is the parsed JSON (or the text, or None when empty).
        ``retries`` overrides the client's count for this call (e.g. 0 for a non-idempotent POST).
        """
        method = method.upper()
        full_url = with_params(url, params)
        parts = urlsplit(full_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OcpiClientError(f"{method}: invalid URL (scheme {parts.scheme!r}, host {parts.hostname!r})")

        send_headers = self._base_headers()
        body: bytes | None = None
        if json is not None:
            body = jsonutil.dumps(_to_jsonable(json)).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        if headers:
            given = {str(k).lower() for k in headers}
            send_headers = {k: v for k, v in send_headers.items() if k.lower() not in given}
            send_headers.update(
                {str(k): str(v) for k, v in headers.items() if str(k).lower() != "x-request-id"}
            )

        extra = self.retries if retries is None else max(0, int(retries))
        attempt = 0
        while True:
            try:
                return self._attempt(
                    method,
                    full_url,
                    parts,
                    body,
                    send_headers,
                    attempt,
                    expect_envelope=expect_envelope,
                    check_status=check_status,
                )
            except OcpiClientError as err:
                if not err.retryable or attempt >= extra:
                    raise
                if err.retry_after is not None:
                    delay = err.retry_after
                else:
                    delay = self.backoff * 2**attempt
                    delay += _JITTER.uniform(0, delay * 0.1)  # retry jitter, no secret
                self._sleep(delay)
                attempt += 1

    def _attempt(
        self,
        method: str,
        url: str,
        parts: Any,
        body: bytes | None,
        base_headers: dict[str, str],
        attempt: int,
        *,
        expect_envelope: bool,
        check_status: bool,
    ) -> OcpiResult:
        request_id = str(uuid.uuid4())
        headers = {**base_headers, "X-Request-ID": request_id}
        host = parts.hostname + (f":{parts.port}" if parts.port else "")
        path = _redact_path(parts.path or "/")
        where = f"{method} {host}{path}"
        log: dict[str, Any] = {
            "ocpi_method": method,
            "ocpi_host": host,
            "ocpi_path": path,
            "request_id": request_id,
            "correlation_id": self.correlation_id,
            "attempt": attempt + 1,
        }
        start = time.monotonic()
        http_status: int | None = None
        try:
            try:
                resp = self.pool.request(
                    method,
                    url,
                    body=body,
                    headers=headers,
                    timeout=self.timeout,
                    retries=False,
                    redirect=False,
                    preload_content=False,
                )
            except (Urllib3HTTPError, OSError) as err:
                raise OcpiTransportError(f"{where}: {type(err).__name__}") from err
            http_status = resp.status
            resp_headers = {k.lower(): resp.headers[k] for k in resp.headers}
            too_large = False
            try:
                raw = _read_body(resp)
            except _BodyTooLarge:
                too_large, raw = True, b""
                resp.close()  # never drain an oversized body into a pooled connection
            except (Urllib3HTTPError, OSError) as err:
                resp.close()
                raise OcpiTransportError(f"{where}: {type(err).__name__} reading the body") from err
            finally:
                resp.release_conn()
            result = self._interpret(
                where,
                http_status,
                resp_headers,
                raw,
                too_large,
                expect_envelope=expect_envelope,
                check_status=check_status,
            )
        except OcpiClientError as err:
            log.update(
                http_status=http_status,
                status_code=err.status_code,
                error=type(err).__name__,
                retryable=err.retryable,
                duration_ms=round((time.monotonic() - start) * 1000, 1),
            )
            logger.warning("OCPI request failed", extra=log)
            raise
        log.update(
            http_status=http_status,
            status_code=result.status_code,
            duration_ms=round((time.monotonic() - start) * 1000, 1),
        )
        logger.info("OCPI request", extra=log)
        return result

    @staticmethod
    def _interpret(
        where: str,
        http_status: int,
        headers: dict[str, str],
        raw: bytes,
        too_large: bool,
        *,
        expect_envelope: bool,
        check_status: bool,
    ) -> OcpiResult:
        success = 200 <= http_status < 300
        if too_large and success:
            result = OcpiResult(http_status, None, None, None, headers)
            raise OcpiProtocolError(
                f"{where}: response body larger than {MAX_BODY_BYTES} bytes", result=result, retryable=False
            )
        parsed: Any = None
        is_json = False
        if raw.strip():
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                parsed, is_json = jsonutil.loads(raw), True
        env = _envelope(parsed) if is_json else None
        if env is not None:
            result = OcpiResult(http_status, env[0], env[1], env[2], headers)
        else:
            result = OcpiResult(http_status, None, None, None, headers)

        if not success:
            detail = f" (OCPI {result.status_code}: {result.status_message})" if env else ""
            retry_after = _retry_after(headers.get("retry-after")) if http_status in (429, 503) else None
            raise OcpiHttpError(
                f"{where}: HTTP {http_status}{detail}", result=result, retry_after=retry_after
            )
        if env is None:
            if expect_envelope:
                what = "not JSON" if not is_json else "not an OCPI response envelope"
                if not raw.strip():
                    what = "empty"
                raise OcpiProtocolError(f"{where}: HTTP {http_status} body is {what}", result=result)
            if is_json:
                result.data = parsed
            elif raw.strip():
                result.data = raw.decode("utf-8", errors="replace")
            return result
        if check_status and not 1000 <= env[0] <= 1999:
            raise OcpiStatusError(f"{where}: OCPI {env[0]}: {env[1]}", result=result)
        return result

    def get(self, url: str, **kw: Any) -> OcpiResult:
        return self.request("GET", url, **kw)

    def put(self, url: str, **kw: Any) -> OcpiResult:
        return self.request("PUT", url, **kw)

    def patch(self, url: str, **kw: Any) -> OcpiResult:
        return self.request("PATCH", url, **kw)

    def post(self, url: str, **kw: Any) -> OcpiResult:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> OcpiResult:
        return self.request("DELETE", url, **kw)

    # ------------------------------------------------------------------ pagination
    def get_all(
        self,
        url: str,
        *,
        params: dict | None = None,
        page_limit: int | None = None,
        max_pages: int = 100000,
    ) -> Iterator[Any]:
        """Every item of a paginated list, page after page, following ``rel="next"`` Links.

        ``params`` (and ``limit=page_limit``) apply to the first request only; each next page URL
        is the Link target as given (resolved against the current URL only when relative). A Link
        to another origin, a Link seen before (loop), a non-list ``data`` or more than
        ``max_pages`` pages raise OcpiProtocolError (not retryable) after the items already yielded.
        """
        first_params = dict(params or {})
        if page_limit is not None:
            first_params["limit"] = page_limit
        current = with_params(url, first_params)
        origin = urlsplit(current)
        seen = {current}
        pages = 0
        while True:
            pages += 1
            result = self.get(current)
            data = result.data
            if data is None:
                data = []
            if not isinstance(data, list):
                raise OcpiProtocolError(
                    f"GET {origin.hostname}: paginated response data is not a list",
                    result=result,
                    retryable=False,
                )
            yield from data
            target = next_link(result.headers.get("link"))
            if not target:
                return
            nxt = urljoin(current, target)
            parts = urlsplit(nxt)
            if (parts.scheme, parts.hostname, parts.port) != (origin.scheme, origin.hostname, origin.port):
                raise OcpiProtocolError(
                    f"GET {origin.hostname}: next-page Link points to another origin ({parts.hostname})",
                    result=result,
                    retryable=False,
                )
            if nxt in seen:
                raise OcpiProtocolError(
                    f"GET {origin.hostname}: next-page Link loop after {pages} pages",
                    result=result,
                    retryable=False,
                )
            if pages >= max_pages:
                raise OcpiProtocolError(
                    f"GET {origin.hostname}: more than {max_pages} pages", result=result, retryable=False
                )
            seen.add(nxt)
            current = nxt
