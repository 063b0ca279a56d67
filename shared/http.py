"""FastAPI application factory shared by every API function.

One place maps every error to the OCPI envelope (status_codes.asciidoc):
- invalid JSON -> HTTP 400 + 2001; a body or parameter that violates the model -> 2001 naming it;
- missing/unknown token -> HTTP 401 in the envelope; unknown route -> 404, wrong verb -> 405;
- any other exception -> HTTP 500 + 3000 (our fault, logged), never FastAPI's bare `{"detail": ...}`.
It also echoes X-Request-ID / X-Correlation-ID (generated when missing) and bounds body size.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import jsonutil
from shared.auth import Caller, authenticate
from shared.config import get_settings
from shared.envelope import OcpiResponse, error_response
from shared.errors import (
    BadRequest,
    InvalidParameters,
    MethodNotAllowed,
    NotFound,
    OcpiError,
    PayloadTooLarge,
    ServerError,
    Unauthorized,
)
from shared.logs import bind, log_context, logger, party_label
from shared.metrics import metrics, record_request
from shared.models.types import CiString
from shared.store import get_store
from shared.validation import describe_validation, validate

__all__ = ["describe_validation", "validate"]

from shared.versions import CANONICAL, Context, convert


# ------------------------------------------------------------------ validation helpers
# describe_validation/validate live in shared.validation (no FastAPI there); re-exported here.
async def json_body(request: Request, kind: str | None = None) -> Any:
    """The request body parsed as JSON (numbers as Decimal); invalid JSON -> HTTP 400 + 2001.
    With ``kind`` (shared/versions KINDS) it is converted from the request's OCPI version to the
    canonical form (shared/versions/convert.py)."""
    data = await _parse_body(request)
    if kind is None:
        return data
    return wire_in(request, kind, data)


def request_version(request: Request) -> str:
    return str(request.path_params.get("version") or CANONICAL)


def version_context(request: Request) -> Context:
    """What a converter may look up, for this request (shared/versions Context): the store and,
    for OCPI 2.1.1, the parties of the caller's pairing."""
    partner = getattr(request.state, "partner", None)
    return convert.partner_context(get_store(), partner, request_version(request))


def wire_in(request: Request, kind: str, data: Any) -> Any:
    version = request_version(request)
    if version == CANONICAL:
        return data
    try:
        return convert.inbound(version, kind, data, version_context(request))
    except ValueError as err:  # a converter's refusal (e.g. a kind that version lacks)
        raise InvalidParameters(str(err)[:300]) from err
    except (KeyError, TypeError, AttributeError, IndexError, ArithmeticError) as err:
        # A body too malformed for the converter to map: bad input, not our fault (never a 500).
        logger.warning("body not convertible", extra={"ocpi_version": version, "kind": kind})
        raise InvalidParameters(f"Invalid or missing parameters: not a valid OCPI {version} {kind}") from err


def wire(request: Request, kind: str, data: Any) -> Any:
    """Canonical data (an object or a list of them) in the request's OCPI version. An object that
    version cannot carry is answered as unknown (404): for such a partner it does not exist."""
    version = request_version(request)
    if version == CANONICAL and not data:
        return data
    try:
        return convert.outbound(version, kind, data, version_context(request))
    except convert.NotExpressible as err:
        raise NotFound(f"Not available in OCPI {version}: {err}") from err


async def _parse_body(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > get_settings().max_body_bytes:
        raise PayloadTooLarge()
    if not raw.strip():
        raise BadRequest("Request body is empty")
    try:
        return jsonutil.loads(raw)
    except jsonutil.NumberOutOfRange as err:  # valid JSON, but a value we could never store
        raise InvalidParameters(str(err)) from err
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest("Request body is not valid JSON") from err


async def json_object(request: Request) -> dict[str, Any]:
    data = await json_body(request)
    if not isinstance(data, dict):
        raise InvalidParameters("Request body must be a JSON object")
    return data


# ------------------------------------------------------------------ auth dependencies
def caller(request: Request) -> Caller:
    """Dependency: a registered partner (token C)."""
    found = authenticate(get_store(), request.headers.get("authorization"))
    if found.is_app:
        raise Unauthorized("App tokens only open the extension endpoints (/ext/...)")
    _identify(request, found)
    request.state.partner = found.partner
    return found


def _identify(request: Request, found: Caller) -> None:
    """Record who is calling: request.state, and the `partner` / `partner_id` keys of every later
    log line of this request (its parties "CC*PID", never a token)."""
    request.state.partner_id = found.partner_id
    bind(partner=party_label(found.partner, found.partner_id), partner_id=found.partner_id)


def app_client(request: Request) -> Caller:
    """Dependency of the extension endpoints: one of our own apps (`ocpi-admin app`), never an
    OCPI partner, since they read data of every CPO we hold (isolation between partners)."""
    found = authenticate(get_store(), request.headers.get("authorization"))
    if not found.is_app:
        raise Unauthorized("This endpoint is for our own apps: use an app token (ocpi-admin app)")
    _identify(request, found)
    return found


def caller_or_registration(request: Request) -> Caller:
    """Dependency for versions and credentials: token A is accepted too."""
    found = authenticate(get_store(), request.headers.get("authorization"), allow_registration=True)
    if found.is_app:
        raise Unauthorized("App tokens only open the extension endpoints (/ext/...)")
    _identify(request, found)
    return found


def check_version(version: str) -> str:
    if version not in convert.enabled_versions():
        raise NotFound(f"Unknown OCPI version {version[:16]!r}")
    return version


_CC = CiString(2)
_PID = CiString(3)


class RoutingHeaders(BaseModel):
    from_country_code: _CC | None = None  # type: ignore[valid-type]
    from_party_id: _PID | None = None  # type: ignore[valid-type]
    to_country_code: _CC | None = None  # type: ignore[valid-type]
    to_party_id: _PID | None = None  # type: ignore[valid-type]


def routing_headers(request: Request) -> RoutingHeaders:
    """OCPI-from/to-* headers of functional modules (transport_and_format, Message Routing).

    Optional (peer-to-peer partners often omit them); when present they must be valid and the
    'from' party must be one the caller holds, the 'to' party one of ours."""
    h = request.headers
    data = {
        "from_country_code": h.get("ocpi-from-country-code"),
        "from_party_id": h.get("ocpi-from-party-id"),
        "to_country_code": h.get("ocpi-to-country-code"),
        "to_party_id": h.get("ocpi-to-party-id"),
    }
    return validate(RoutingHeaders, {k: v for k, v in data.items() if v is not None}, prefix="header.")


def from_party(request: Request) -> tuple[str | None, str | None]:
    """The OCPI-from-* party of a request (None, None when not sent)."""
    routing = routing_headers(request)
    return routing.from_country_code, routing.from_party_id


def check_routing(routing: RoutingHeaders, who: Caller) -> None:
    frm = (routing.from_country_code, routing.from_party_id)
    to = (routing.to_country_code, routing.to_party_id)
    if all(frm) and not who.holds_party(*frm):
        raise InvalidParameters("OCPI-from-* headers name a party that is not yours")
    if all(to) and get_settings().own_party(*to) is None:
        raise InvalidParameters("OCPI-to-* headers name a party that is not ours")


def public_base_url(request: Request) -> str:
    """Our public base URL: OCPI_PUBLIC_URL, else API Gateway's host and stage, else the request's."""
    configured = get_settings().public_url
    if configured:
        return configured
    event = request.scope.get("aws.event") or {}
    ctx = event.get("requestContext") or {}
    domain = ctx.get("domainName")
    if domain:
        stage = ctx.get("stage")
        if stage and domain.endswith(".amazonaws.com") and stage != "$default":
            return f"https://{domain}/{stage}"
        return f"https://{domain}"
    return str(request.base_url).rstrip("/")


def url_without_query(request: Request) -> str:
    return public_base_url(request) + request.url.path


# ------------------------------------------------------------------ middleware
class RequestContextMiddleware:
    """Echo X-Request-ID / X-Correlation-ID (generate when missing), refuse oversized bodies,
    and log one line per request without personal data (no paths: they carry token uids; the
    route template instead).

    Every line logged while serving the request carries request_id, correlation_id and
    ocpi_module, and once the caller is known partner and partner_id (shared/logs.py context
    keys); the request line adds method, route, http_status, ocpi_status and duration_ms. Served
    by the Lambda handler, the request is also counted (shared/metrics.py `Requests`)."""

    def __init__(self, app: ASGIApp, module: str) -> None:
        self.app = app
        self.module = module

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get("x-request-id") or str(uuid.uuid4())
        correlation_id = headers.get("x-correlation-id") or str(uuid.uuid4())
        # Cut to 64 and stripped: an echoed value ending in whitespace is an illegal header (the
        # server would drop the connection without an answer).
        request_id = request_id[:64].strip() or str(uuid.uuid4())
        correlation_id = correlation_id[:64].strip() or str(uuid.uuid4())
        scope.setdefault("state", {})
        scope["state"]["request_id"] = request_id
        scope["state"]["correlation_id"] = correlation_id
        keys = {"request_id": request_id, "correlation_id": correlation_id, "ocpi_module": self.module}
        event = scope.get("aws.event")  # set by Mangum: we run in the Lambda handler (handler_for)
        if isinstance(event, dict):
            keys["apigw_request_id"] = (event.get("requestContext") or {}).get("requestId")
        with log_context(**keys) as context:
            try:
                await self._serve(scope, receive, send, headers)
            finally:
                if event is not None:
                    partner = context.get("partner")
                    record_request(self.module, context.get("ocpi_status"), partner, request_id)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500}
        extra = [
            (b"x-request-id", scope["state"]["request_id"].encode("latin-1")),
            (b"x-correlation-id", scope["state"]["correlation_id"].encode("latin-1")),
        ]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                message = dict(message)
                message["headers"] = [*list(message.get("headers", [])), *extra]
            await send(message)

        length = headers.get("content-length")
        try:
            too_large = length is not None and int(length) > get_settings().max_body_bytes
        except ValueError:
            too_large = True
        try:
            if too_large:
                await error_response(PayloadTooLarge())(scope, receive, send_wrapper)
                return
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                # Our fault, not the client's: 500 + 3000 in the envelope, details only in the log.
                logger.exception("unhandled error")
                if status_holder.get("started"):
                    raise
                await error_response(ServerError("Internal server error"))(scope, receive, send_wrapper)
        finally:
            logger.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": getattr(scope.get("route"), "path", None),
                    "http_status": status_holder["status"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


# ------------------------------------------------------------------ app factory
def create_app(module: str, routers: list[Any] | None = None) -> FastAPI:
    app = FastAPI(
        title=f"OCPI {module}",
        docs_url=None,
        redoc_url=None,
        openapi_url="/ocpi/openapi/" + module + ".json",
    )

    @app.exception_handler(OcpiError)
    async def _ocpi_error(request: Request, err: OcpiError) -> OcpiResponse:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, err: RequestValidationError) -> OcpiResponse:
        if any(e.get("type") == "json_invalid" for e in err.errors()):
            return error_response(BadRequest("Request body is not valid JSON"))
        return error_response(InvalidParameters(describe_validation(err)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> OcpiResponse:
        if err.status_code == 405:
            return error_response(MethodNotAllowed())
        if err.status_code == 404:
            return error_response(NotFound("Not found"))
        return OcpiResponse(None, status_code=2000, message=str(err.detail), http_status=err.status_code)

    for router in routers or []:
        app.include_router(router)
    app.add_middleware(RequestContextMiddleware, module=module)
    return app


def handler_for(app: FastAPI) -> Callable:
    """The Lambda handler of an API function: Mangum, inside the Powertools logger's Lambda context
    (cold_start, function_request_id; correlation_id API Gateway's request id, which the
    middleware's X-Correlation-ID replaces while a request is served; never the event itself: it
    holds the Authorization header) and the metrics, flushed once per invocation."""
    from aws_lambda_powertools.logging import correlation_paths
    from mangum import Mangum

    asgi = Mangum(app, lifespan="off")
    # Mangum logs "METHOD /path status" at INFO: paths carry token uids. Our request line replaces it.
    logging.getLogger("mangum.http").setLevel(logging.WARNING)

    @metrics.log_metrics
    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, log_event=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return asgi(event, context)

    return handler


def partner_request(request: Request, version: str) -> Caller:
    """Dependency of every functional module route: a registered partner, a version we serve,
    valid routing headers."""
    check_version(version)
    who = caller(request)
    check_routing(routing_headers(request), who)
    return who


def outcome_response(result: Any) -> OcpiResponse:
    """The answer to a PUT/PATCH/DELETE (a services.objects.Outcome): 201 when created, else 200;
    a stale update is success with a message saying the newer stored data was kept."""
    return OcpiResponse(result.data, message=result.message, http_status=result.http_status)


def paged_response(
    request: Request, items: list[Any], params: Any, page: Any, kind: str | None = None
) -> OcpiResponse:
    from shared.pagination import page_headers

    if kind is not None:
        items = wire(request, kind, items)
    return OcpiResponse(items, headers=page_headers(url_without_query(request), params, page))


def page_params(request: Request, *, require_date_from: bool = False) -> Any:
    from shared.pagination import parse_params

    return parse_params(dict(request.query_params), require_date_from=require_date_from)
