"""Pagination of every sender GET (transport_and_format.asciidoc, "Pagination").

Query: `offset`, `limit` (capped by the server maximum reported in `X-Limit`), `date_from`
(inclusive) and `date_to` (exclusive) on `last_updated`. Response headers: `X-Total-Count`,
`X-Limit`, and `Link: <...>; rel="next"` (absent on the last page) that keeps every original
filter. DynamoDB has no offset: our Link URL also carries an opaque `cursor` so a client that
follows Link headers reads N objects with O(N) work in total, while a client that builds `offset`
URLs itself still gets correct pages (at O(offset) cost for that request).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from pydantic import TypeAdapter, ValidationError

from shared.config import get_settings
from shared.errors import InvalidParameters
from shared.models.types import DateTime
from shared.store.base import ListQuery, Page

_dt = TypeAdapter(DateTime)


@dataclass(frozen=True)
class PageParams:
    offset: int
    limit: int
    date_from: datetime | None
    date_to: datetime | None
    cursor: str | None
    raw_date_from: str | None
    raw_date_to: str | None

    def query(self, module: str, collection: str) -> ListQuery:
        return ListQuery(
            collection=collection,
            module=module,
            date_from=self.date_from,
            date_to=self.date_to,
            offset=self.offset,
            limit=self.limit,
            cursor=self.cursor,
        )


def _int(name: str, raw: str | None, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as err:
        raise InvalidParameters(f"Query parameter {name} must be an integer") from err
    if value < 0:
        raise InvalidParameters(f"Query parameter {name} must not be negative")
    return value


def _date(name: str, raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        return _dt.validate_python(raw)
    except ValidationError as err:
        raise InvalidParameters(f"Query parameter {name} is not a valid DateTime") from err


def parse_params(query: dict[str, str], *, require_date_from: bool = False) -> PageParams:
    server_max = get_settings().page_limit
    limit = min(_int("limit", query.get("limit"), server_max), server_max)
    offset = _int("offset", query.get("offset"), 0)
    date_from = _date("date_from", query.get("date_from"))
    date_to = _date("date_to", query.get("date_to"))
    if require_date_from and date_from is None:
        raise InvalidParameters("Query parameter date_from is required")
    if date_from and date_to and date_to < date_from:
        raise InvalidParameters("date_to is before date_from")
    cursor = query.get("cursor") or None
    if cursor is not None and len(cursor) > 2048:
        raise InvalidParameters("Invalid pagination cursor")
    return PageParams(
        offset=offset,
        limit=limit,
        date_from=date_from,
        date_to=date_to,
        cursor=cursor,
        raw_date_from=query.get("date_from") or None,
        raw_date_to=query.get("date_to") or None,
    )


def page_headers(url_without_query: str, params: PageParams, page: Page) -> dict[str, str]:
    headers = {"X-Total-Count": str(page.total), "X-Limit": str(get_settings().page_limit)}
    if page.next_offset is not None:
        q: dict[str, str] = {}
        if params.raw_date_from:
            q["date_from"] = params.raw_date_from
        if params.raw_date_to:
            q["date_to"] = params.raw_date_to
        q["offset"] = str(page.next_offset)
        q["limit"] = str(params.limit)
        if page.next_cursor:
            q["cursor"] = page.next_cursor
        headers["Link"] = f'<{url_without_query}?{urlencode(q)}>; rel="next"'
    return headers
