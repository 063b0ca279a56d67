"""OCPI 2.2.1 primitive types (spec chapter "Types", ``types.asciidoc``) as pydantic v2 types.

* ``CiString(n)``  -- case-insensitive printable-ASCII string of at most *n* characters.
  Values are :class:`CiStr` instances: equality and hashing ignore case, the original
  spelling is kept for output.
* ``String(n)``    -- case-sensitive printable UTF-8 string of at most *n* characters
  (characters are counted as Unicode code points; ``String()`` has no length limit).
* ``Url``          -- ``string(255)`` holding an absolute http(s) URL.
* ``DateTime``     -- RFC 3339 timestamp restricted as in the spec; always UTC in Python,
  always written with a ``Z`` suffix.
* ``Number``       -- OCPI ``number``: :class:`~decimal.Decimal` in Python, a JSON *number* on output.
* ``Int`` / ``Bool`` -- strict ``int`` / ``boolean`` (no coercion from strings, floats or bools).
* :class:`OcpiModel` -- base class of every OCPI object/class.

Number output note: :class:`OcpiModel.to_json_dict` (``model_dump(mode="json")``) must produce JSON-able
Python values, so a ``Number`` is emitted as ``int`` when it is integral and as ``float`` otherwise.
A float represents a decimal exactly (round-trips through ``repr``) for values of at most 15
significant digits, which covers all OCPI amounts (the spec uses 4 decimals).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    Strict,
    StringConstraints,
    WithJsonSchema,
)

__all__ = [
    "Bool",
    "CiStr",
    "CiString",
    "DateTime",
    "Int",
    "Number",
    "OcpiModel",
    "String",
    "Url",
    "format_datetime",
    "parse_datetime",
    "sortable_datetime",
]


# --------------------------------------------------------------------------------------------
# CiString
# --------------------------------------------------------------------------------------------


class CiStr(str):
    """A ``str`` that compares and hashes case-insensitively (OCPI ``CiString`` value).

    The original spelling is preserved (``str(value)``, JSON output). Use :meth:`key` to get the
    canonical (upper-case) form for storage keys and look-ups.

    Note: ``hash(CiStr("ab")) == hash("AB")``, so mixing plain ``str`` and ``CiStr`` keys in one
    dict/set only works when the plain strings are upper case; prefer :meth:`key` for that.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.upper() == other.upper()
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.upper() != other.upper()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.upper())

    def __repr__(self) -> str:
        return f"CiStr({str.__repr__(self)})"

    def key(self) -> str:
        """Canonical upper-case plain ``str`` (for storage keys)."""
        return str.upper(self)


_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


def _to_cistr(value: str) -> CiStr:
    if not _PRINTABLE_ASCII.fullmatch(value):
        raise ValueError("CiString allows printable ASCII characters (0x20-0x7E) only")
    return CiStr(value)


def CiString(max_length: int) -> Any:
    """OCPI ``CiString(n)``: printable ASCII (0x20-0x7E), at most ``max_length`` characters."""
    return Annotated[
        str,
        Strict(),
        StringConstraints(max_length=max_length),
        AfterValidator(_to_cistr),
    ]


# --------------------------------------------------------------------------------------------
# string
# --------------------------------------------------------------------------------------------


def _check_printable(value: str) -> str:
    for ch in value:
        # Cc: control characters (\t, \n, \r, DEL, C1 ...). Cs: lone surrogates, which cannot be
        # encoded as UTF-8 at all.
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise ValueError(f"string contains a non-printable character: {ch!r}")
    return value


def String(max_length: int | None = None) -> Any:
    """OCPI ``string(n)``: printable UTF-8 (no control characters), at most ``max_length`` chars.

    ``String()`` without a length has no length limit.
    """
    return Annotated[
        str,
        Strict(),
        StringConstraints(max_length=max_length),
        AfterValidator(_check_printable),
    ]


# --------------------------------------------------------------------------------------------
# URL
# --------------------------------------------------------------------------------------------

_URL_CHARS = re.compile(r"[\x21-\x7e]+")


def _check_url(value: str) -> str:
    if not _URL_CHARS.fullmatch(value):
        raise ValueError("URL must consist of printable ASCII characters without spaces")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ValueError("URL must be an absolute http:// or https:// URL")
    return value


Url = Annotated[
    str,
    Strict(),
    StringConstraints(max_length=255),
    AfterValidator(_check_url),
]
"""OCPI ``URL``: ``string(255)`` holding an absolute http/https URL (kept verbatim)."""


# --------------------------------------------------------------------------------------------
# DateTime
# --------------------------------------------------------------------------------------------

_DATETIME_RE = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})"
    r"T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<tz>Z|(?P<sign>[+-])(?P<tzh>\d{2}):(?P<tzm>\d{2}))?",
    re.ASCII,
)


def parse_datetime(value: str) -> datetime:
    """Parse an OCPI timestamp into a timezone-aware UTC ``datetime``.

    Accepted: ``YYYY-MM-DDTHH:MM:SS``, optionally followed by 1-9 fraction digits (truncated to
    microseconds), optionally followed by ``Z`` or an offset ``+HH:MM``/``-HH:MM``. No
    designator means UTC; an offset is converted to UTC. Raises ``ValueError`` otherwise.
    """
    if not isinstance(value, str):
        raise ValueError("DateTime must be a string")
    m = _DATETIME_RE.fullmatch(value)
    if m is None:
        raise ValueError(
            "DateTime must be formatted as RFC 3339 'YYYY-MM-DDTHH:MM:SS[.fff][Z]', got " + repr(value)
        )
    fraction = m.group("fraction") or ""
    microsecond = int((fraction + "000000")[:6])
    tz: timezone = UTC
    if m.group("sign"):
        tzh, tzm = int(m.group("tzh")), int(m.group("tzm"))
        if tzh > 23 or tzm > 59:
            raise ValueError(f"invalid UTC offset in DateTime {value!r}")
        offset = timedelta(hours=tzh, minutes=tzm)
        tz = timezone(-offset if m.group("sign") == "-" else offset)
    try:
        dt = datetime(
            int(m.group("year")),
            int(m.group("month")),
            int(m.group("day")),
            int(m.group("hour")),
            int(m.group("minute")),
            int(m.group("second")),
            microsecond,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise ValueError(f"invalid DateTime {value!r}: {exc}") from None
    try:
        return dt.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+02:00 is before year 1 in UTC
        raise ValueError(f"DateTime {value!r} is out of range in UTC") from None


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.tzinfo.utcoffset(dt) is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _date_time_part(dt: datetime) -> str:
    return f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"


def format_datetime(dt: datetime) -> str:
    """Format as ``YYYY-MM-DDTHH:MM:SS[.f]Z`` in UTC (naive input is taken to be UTC).

    Fractional seconds are written only when non-zero, with as few digits as needed.
    """
    dt = _as_utc(dt)
    text = _date_time_part(dt)
    if dt.microsecond:
        text += "." + f"{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def sortable_datetime(dt: datetime) -> str:
    """Fixed-width ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC; lexicographic order == time order."""
    dt = _as_utc(dt)
    return f"{_date_time_part(dt)}.{dt.microsecond:06d}Z"


def _validate_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, str):
        return parse_datetime(value)
    raise ValueError("DateTime must be an RFC 3339 string")


DateTime = Annotated[
    datetime,
    PlainValidator(_validate_datetime),
    PlainSerializer(format_datetime, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""OCPI ``DateTime``: UTC ``datetime`` in Python, ``YYYY-MM-DDTHH:MM:SS[.f]Z`` in JSON."""


# --------------------------------------------------------------------------------------------
# number / int / boolean
# --------------------------------------------------------------------------------------------


def _reject_non_numbers(value: Any) -> Any:
    # OCPI numbers are JSON numbers: refuse strings (and bytes) that pydantic would otherwise
    # coerce into a Decimal.
    if isinstance(value, str | bytes | bytearray | bool):
        raise ValueError("number must be a JSON number, not a string or boolean")
    return value


def _number_to_json(value: Decimal) -> int | float:
    if value == value.to_integral_value():
        return int(value)
    return float(value)


Number = Annotated[
    Decimal,
    BeforeValidator(_reject_non_numbers),
    Field(allow_inf_nan=False),
    PlainSerializer(_number_to_json, return_type=int | float, when_used="json"),
    WithJsonSchema({"type": "number"}),
]
"""OCPI ``number``: ``Decimal`` in Python; JSON number (int when integral, else float) on output."""

Int = Annotated[int, Strict()]
"""OCPI ``int``: strict (no coercion from bool, float or string)."""

Bool = Annotated[bool, Strict()]
"""OCPI ``boolean``: strict (``true``/``false`` only)."""


# --------------------------------------------------------------------------------------------
# Base model
# --------------------------------------------------------------------------------------------


class OcpiModel(BaseModel):
    """Base class of all OCPI objects and classes.

    Unknown keys are kept verbatim, at every level (OCPI 2.3.0 transport_and_format, "Non-specified
    JSON fields": a platform SHALL NOT reject them; issue 9: they are not lost), so a 2.3.0 object's
    new fields survive in the canonical 2.2.1 form; what a 2.2.1 partner is sent is stripped of them
    (``shared.versions.v230.strip_for_221``). Optional fields default to ``None`` and are left out
    of :meth:`to_json_dict` (so are unknown keys whose value is ``null``), so a parsed document
    dumps back to the same JSON.
    """

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        str_strip_whitespace=False,
        validate_assignment=False,
    )

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (OCPI wire format), ``None`` fields omitted."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    @classmethod
    def from_json_dict(cls, data: Any) -> Self:
        """Validate a decoded JSON document (dict) into this model."""
        return cls.model_validate(data)


# --------------------------------------------------------------------------------------------
# Convenience: the spec's enums are defined in shared.models.v221.*; resolve them lazily here so
# ``from shared.models.types import Role`` (etc.) also works without a circular import.
# --------------------------------------------------------------------------------------------


def __getattr__(name: str) -> Any:
    if name[:1].isupper() and not name.startswith("_"):
        from shared.models import v221  # lazy on purpose: circular import

        try:
            value = getattr(v221, name)
        except AttributeError:
            pass
        else:
            from enum import Enum

            if isinstance(value, type) and issubclass(value, Enum):
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
