"""Tests of the OCPI 2.2.1 primitive types (shared/models/types.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.models import types as ocpi_types
from shared.models.types import (
    CiStr,
    CiString,
    DateTime,
    Number,
    String,
    Url,
    format_datetime,
    parse_datetime,
    sortable_datetime,
)
from shared.models.v221 import (
    Connector,
    ConnectorType,
    GeoLocation,
    Location,
    Price,
    Role,
    Status,
    Token,
)

CI3 = TypeAdapter(CiString(3))
CI36 = TypeAdapter(CiString(36))
STR5 = TypeAdapter(String(5))
STR_UNLIMITED = TypeAdapter(String())
URL = TypeAdapter(Url)
DT = TypeAdapter(DateTime)
NUM = TypeAdapter(Number)


# --------------------------------------------------------------------------------------------
# CiString
# --------------------------------------------------------------------------------------------


def test_cistring_accepts_printable_ascii_up_to_max_length() -> None:
    value = CI3.validate_python("a~ ")
    assert isinstance(value, CiStr)
    assert value == "A~ "
    assert CI36.validate_python(" !\"#$%&'()*+,-./0123456789:;<=>?@AZ[") is not None


@pytest.mark.parametrize("bad", ["é", "ab\t", "a\n", "a\r", "\x00", "\x7f", "€", "AB\u00a0"])
def test_cistring_rejects_non_ascii_and_control_chars(bad: str) -> None:
    with pytest.raises(ValidationError):
        CI3.validate_python(bad)


def test_cistring_rejects_over_long_and_non_strings() -> None:
    with pytest.raises(ValidationError):
        CI3.validate_python("ABCD")
    with pytest.raises(ValidationError):
        CI3.validate_json('"ABCD"')
    with pytest.raises(ValidationError):
        CI3.validate_python(123)
    with pytest.raises(ValidationError):
        CI3.validate_json("123")


def test_cistring_case_insensitive_equality_and_hash() -> None:
    a = CI36.validate_python("Loc1")
    b = CI36.validate_python("LOC1")
    assert a == b
    assert a == "loc1"
    assert "loc1" == a  # noqa: SIM300 - the reflected comparison is what is being tested
    assert (a != "LOC1") is False
    assert a != "LOC2"
    assert hash(a) == hash(b)
    assert len({a, b, CiStr("lOc1")}) == 1
    assert {a: 1}[CiStr("loc1")] == 1
    assert a.key() == "LOC1"
    assert type(a.key()) is str
    assert a != 1


def test_cistring_keeps_original_case_on_output() -> None:
    token = Token.from_json_dict(
        {
            "country_code": "de",
            "party_id": "Tnm",
            "uid": "abc123",
            "type": "RFID",
            "contract_id": "DE8ACC12E46L89",
            "issuer": "x",
            "valid": True,
            "whitelist": "ALLOWED",
            "last_updated": "2018-12-10T17:16:15Z",
        }
    )
    assert token.country_code == "DE"
    dumped = token.to_json_dict()
    assert dumped["country_code"] == "de"
    assert dumped["party_id"] == "Tnm"
    assert type(dumped["uid"]) is str
    assert json.loads(json.dumps(dumped))["uid"] == "abc123"


# --------------------------------------------------------------------------------------------
# string
# --------------------------------------------------------------------------------------------


def test_string_accepts_printable_utf8() -> None:
    assert STR5.validate_python("Köln") == "Köln"
    assert STR5.validate_python("a b") == "a b"
    assert STR_UNLIMITED.validate_python("x" * 10_000) == "x" * 10_000


@pytest.mark.parametrize("bad", ["a\nb", "a\tb", "a\rb", "\x00", "\x7f", "\x85"])
def test_string_rejects_control_chars(bad: str) -> None:
    with pytest.raises(ValidationError):
        STR5.validate_python(bad)
    with pytest.raises(ValidationError):
        STR_UNLIMITED.validate_python(bad)


def test_string_rejects_over_long_and_non_strings() -> None:
    with pytest.raises(ValidationError):
        STR5.validate_python("123456")
    with pytest.raises(ValidationError):
        STR5.validate_json("12")


def test_string_is_not_stripped() -> None:
    assert STR5.validate_python(" a ") == " a "


# --------------------------------------------------------------------------------------------
# URL
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["https://example.com/ocpi/versions", "http://localhost:8080/x?y=1"])
def test_url_accepts_absolute_http_urls(good: str) -> None:
    assert URL.validate_python(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "/ocpi/versions",
        "example.com/ocpi",
        "ftp://example.com/file",
        "https://",
        "https://example.com/a b",
        "https://example.com/\n",
        "https://example.com/" + "a" * 236,
    ],
)
def test_url_rejects_invalid(bad: str) -> None:
    with pytest.raises(ValidationError):
        URL.validate_python(bad)


def test_url_max_length_is_255() -> None:
    url = "https://example.com/" + "a" * 235
    assert len(url) == 255
    assert URL.validate_python(url) == url


# --------------------------------------------------------------------------------------------
# DateTime
# --------------------------------------------------------------------------------------------

_T1 = datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)
_T2 = datetime(2016, 12, 29, 17, 45, 9, 200000, tzinfo=UTC)
_T3 = datetime(2018, 1, 1, 1, 8, 1, 123000, tzinfo=UTC)

# The six sample formats of types.asciidoc ("DateTime type"): (input, value, JSON output).
SPEC_SAMPLES = [
    ("2015-06-29T20:39:09Z", _T1, "2015-06-29T20:39:09Z"),
    ("2015-06-29T20:39:09", _T1, "2015-06-29T20:39:09Z"),
    ("2016-12-29T17:45:09.2Z", _T2, "2016-12-29T17:45:09.2Z"),
    ("2016-12-29T17:45:09.2", _T2, "2016-12-29T17:45:09.2Z"),
    ("2018-01-01T01:08:01.123Z", _T3, "2018-01-01T01:08:01.123Z"),
    ("2018-01-01T01:08:01.123", _T3, "2018-01-01T01:08:01.123Z"),
]


@pytest.mark.parametrize(("text", "expected", "output"), SPEC_SAMPLES)
def test_datetime_accepts_spec_samples(text: str, expected: datetime, output: str) -> None:
    value = DT.validate_python(text)
    assert value == expected
    assert value.tzinfo is UTC
    assert DT.validate_json(json.dumps(text)) == expected
    assert DT.dump_python(value, mode="json") == output
    assert parse_datetime(text) == expected
    assert format_datetime(value) == output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2015-06-29T22:39:09+02:00", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T20:39:09+00:00", datetime(2015, 6, 29, 20, 39, 9, tzinfo=UTC)),
        ("2015-06-29T18:09:09.5-02:30", datetime(2015, 6, 29, 20, 39, 9, 500000, tzinfo=UTC)),
        ("2015-12-31T23:30:00-01:00", datetime(2016, 1, 1, 0, 30, tzinfo=UTC)),
    ],
)
def test_datetime_offset_is_converted_to_utc(text: str, expected: datetime) -> None:
    value = DT.validate_python(text)
    assert value == expected
    assert value.utcoffset() == timedelta(0)
    assert DT.dump_python(value, mode="json").endswith("Z")


@pytest.mark.parametrize(
    "bad",
    [
        "2015-06-29",
        "garbage",
        "",
        "2015-06-29 20:39:09",
        "2015-06-29T20:39",
        "2015-06-29T20:39:09.Z",
        "2015-06-29T20:39:09.1234567890Z",
        "2015-06-29T20:39:09z",
        "2015-06-29T20:39:09+0200",
        "2015-06-29T20:39:09+24:00",
        "2015-13-29T20:39:09Z",
        "2015-02-30T20:39:09Z",
        "2015-06-29T25:39:09Z",
        " 2015-06-29T20:39:09Z",
        "20150629T203909Z",
    ],
)
def test_datetime_rejects_other_formats(bad: str) -> None:
    with pytest.raises(ValidationError):
        DT.validate_python(bad)
    with pytest.raises(ValueError):
        parse_datetime(bad)


@pytest.mark.parametrize("bad", ["1435610349", "1435610349.5", "null", "true", "[]"])
def test_datetime_rejects_non_string_json(bad: str) -> None:
    with pytest.raises(ValidationError):
        DT.validate_json(bad)


def test_datetime_rejects_non_string_python_values() -> None:
    for bad in (1435610349, 1435610349.5, None, b"2015-06-29T20:39:09Z"):
        with pytest.raises(ValidationError):
            DT.validate_python(bad)


@pytest.mark.parametrize(
    ("text", "output"),
    [
        ("2018-01-01T01:08:01.123456Z", "2018-01-01T01:08:01.123456Z"),
        ("2018-01-01T01:08:01.120Z", "2018-01-01T01:08:01.12Z"),
        ("2018-01-01T01:08:01.000Z", "2018-01-01T01:08:01Z"),
        ("2018-01-01T01:08:01.000001", "2018-01-01T01:08:01.000001Z"),
        ("2018-01-01T01:08:01.123456789Z", "2018-01-01T01:08:01.123456Z"),
    ],
)
def test_datetime_fraction_round_trip(text: str, output: str) -> None:
    value = DT.validate_python(text)
    assert DT.dump_python(value, mode="json") == output
    assert DT.validate_python(output) == value


def test_datetime_from_python_datetime() -> None:
    naive = datetime(2020, 1, 2, 3, 4, 5)
    assert DT.validate_python(naive) == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    aware = datetime(2020, 1, 2, 5, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    value = DT.validate_python(aware)
    assert value.tzinfo is UTC
    assert format_datetime(value) == "2020-01-02T03:04:05Z"


def test_datetime_python_dump_stays_datetime() -> None:
    value = DT.validate_python("2020-01-02T03:04:05Z")
    assert DT.dump_python(value) == value


def test_sortable_datetime_is_fixed_width_and_sortable() -> None:
    values = [
        parse_datetime("2020-01-02T03:04:05.5Z"),
        parse_datetime("2020-01-02T03:04:05Z"),
        parse_datetime("2020-01-02T03:04:05.123456Z"),
        parse_datetime("2019-12-31T23:59:59.999999Z"),
        parse_datetime("2020-01-02T05:04:05+02:00"),
    ]
    texts = [sortable_datetime(v) for v in values]
    assert {len(t) for t in texts} == {len("2020-01-02T03:04:05.000000Z")}
    assert sortable_datetime(values[1]) == "2020-01-02T03:04:05.000000Z"
    assert sorted(texts) == [sortable_datetime(v) for v in sorted(values)]
    assert parse_datetime(sortable_datetime(values[2])) == values[2]


# --------------------------------------------------------------------------------------------
# number
# --------------------------------------------------------------------------------------------


def test_price_keeps_decimal_from_float() -> None:
    price = Price(excl_vat=0.1)
    assert price.excl_vat == Decimal("0.1")
    assert isinstance(price.excl_vat, Decimal)
    assert Price(excl_vat=0.1, incl_vat=0.12).incl_vat == Decimal("0.12")


def test_number_from_json_is_exact_decimal() -> None:
    price = Price.model_validate_json('{"excl_vat": 0.1, "incl_vat": 1234567.8912}')
    assert price.excl_vat == Decimal("0.1")
    assert price.incl_vat == Decimal("1234567.8912")
    assert isinstance(price.incl_vat, Decimal)
    assert NUM.validate_json("3") == Decimal(3)


def test_number_dumps_as_json_number() -> None:
    dumped = Price(excl_vat=Decimal("0.10"), incl_vat=Decimal("2.00")).to_json_dict()
    assert dumped == {"excl_vat": 0.1, "incl_vat": 2}
    assert type(dumped["excl_vat"]) is float
    assert type(dumped["incl_vat"]) is int
    assert json.dumps(dumped) == '{"excl_vat": 0.1, "incl_vat": 2}'
    assert Price(excl_vat=Decimal("1E+2")).to_json_dict() == {"excl_vat": 100}
    assert Price(excl_vat=Decimal("-0.0006")).to_json_dict() == {"excl_vat": -0.0006}
    # python mode keeps the Decimal
    assert Price(excl_vat=0.1).model_dump() == {"excl_vat": Decimal("0.1"), "incl_vat": None}


@pytest.mark.parametrize("bad", ['"0.1"', "true", "null", '"NaN"', "NaN", "Infinity", "1e400"])
def test_number_rejects_non_numbers(bad: str) -> None:
    with pytest.raises(ValidationError):
        NUM.validate_json(bad)


@pytest.mark.parametrize("bad", ["0.1", True, None, float("nan"), float("inf"), b"1"])
def test_number_rejects_non_numbers_python(bad: Any) -> None:
    with pytest.raises(ValidationError):
        NUM.validate_python(bad)


# --------------------------------------------------------------------------------------------
# int / boolean are strict
# --------------------------------------------------------------------------------------------

CONNECTOR = {
    "id": "1",
    "standard": "IEC_62196_T2",
    "format": "SOCKET",
    "power_type": "AC_3_PHASE",
    "max_voltage": 220,
    "max_amperage": 16,
    "last_updated": "2015-03-16T10:10:02Z",
}


def test_connector_valid() -> None:
    connector = Connector.from_json_dict(CONNECTOR)
    assert connector.max_voltage == 220
    assert connector.standard is ConnectorType.IEC_62196_T2
    assert connector.to_json_dict() == CONNECTOR


@pytest.mark.parametrize("bad", ["220", 220.5, True, None])
def test_int_is_strict(bad: Any) -> None:
    with pytest.raises(ValidationError):
        Connector.from_json_dict({**CONNECTOR, "max_voltage": bad})


def test_bool_is_strict() -> None:
    document = {
        "country_code": "DE",
        "party_id": "TNM",
        "uid": "1",
        "type": "RFID",
        "contract_id": "C1",
        "issuer": "x",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2018-12-10T17:16:15Z",
    }
    assert Token.from_json_dict(document).valid is True
    for bad in ("true", 1, "yes"):
        with pytest.raises(ValidationError):
            Token.from_json_dict({**document, "valid": bad})


# --------------------------------------------------------------------------------------------
# GeoLocation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ("51.047599", "3.729944"),
        ("-9.12345", "-126.104965"),
        ("0.1234567", "179.1234567"),
        # 11/12 characters: longer than the spec's string(10)/string(11) but matching its regex;
        # the regex is what is enforced (see the note in shared/models/v221/common.py).
        ("-89.1234567", "-179.1234567"),
        ("-33.8688197", "-151.2092955"),
    ],
)
def test_geolocation_valid(lat: str, lon: str) -> None:
    assert GeoLocation(latitude=lat, longitude=lon).to_json_dict() == {"latitude": lat, "longitude": lon}


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        ("51.0475", "3.729944"),  # latitude: too few decimals
        ("51.04759901", "3.729944"),  # latitude: too many decimals
        ("151.047599", "3.729944"),  # latitude: 3 integer digits
        ("51,047599", "3.729944"),  # decimal comma
        ("51.047599", "1234.729944"),  # longitude: 4 integer digits
        ("51.047599", "3.7299"),  # longitude: too few decimals
        ("51.047599", "+3.729944"),  # sign other than '-'
        (" 51.047599", "3.729944"),
        ("51.047599\n", "3.729944"),
        (51.047599, 3.729944),  # numbers, not strings
    ],
)
def test_geolocation_invalid(lat: Any, lon: Any) -> None:
    with pytest.raises(ValidationError):
        GeoLocation(latitude=lat, longitude=lon)


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["FOO", "iec_62196_t2", "IEC_62196_T2 ", "", 1])
def test_enum_rejects_unknown_values(bad: Any) -> None:
    with pytest.raises(ValidationError):
        Connector.from_json_dict({**CONNECTOR, "standard": bad})


def test_enum_serialises_as_value() -> None:
    assert Status("AVAILABLE") is Status.AVAILABLE
    assert Status.AVAILABLE == "AVAILABLE"
    assert TypeAdapter(Role).dump_python(Role.EMSP, mode="json") == "EMSP"
    assert json.dumps(TypeAdapter(Role).dump_python(Role.EMSP, mode="json")) == '"EMSP"'
    with pytest.raises(ValidationError):
        TypeAdapter(Role).validate_python("emsp")


def test_enums_are_also_reachable_from_types_module() -> None:
    assert ocpi_types.Role is Role
    assert ocpi_types.ConnectorType is ConnectorType
    with pytest.raises(AttributeError):
        _ = ocpi_types.Location  # models are not enums
    with pytest.raises(AttributeError):
        _ = ocpi_types.NoSuchThing


# --------------------------------------------------------------------------------------------
# Lengths from the 2.2.1 tables (spot checks)
# --------------------------------------------------------------------------------------------


def test_field_lengths_spot_checks() -> None:
    from shared.models.v221 import EVSE, CdrToken, Credentials, SignedValue

    def length_of(value_len: int, model: Any, field: str, base: dict[str, Any]) -> bool:
        try:
            model.model_validate({**base, field: "A" * value_len})
        except ValidationError as exc:
            return not any(err["loc"] == (field,) for err in exc.errors())
        return True

    loc_base = {"country_code": "BE", "party_id": "BEC"}
    assert length_of(36, Location, "id", loc_base) and not length_of(37, Location, "id", loc_base)
    assert length_of(3, Location, "party_id", {}) and not length_of(4, Location, "party_id", {})
    assert length_of(2, Location, "country_code", {}) and not length_of(3, Location, "country_code", {})
    assert length_of(255, Location, "address", {}) and not length_of(256, Location, "address", {})
    assert length_of(45, Location, "state", {}) and not length_of(46, Location, "state", {})
    assert length_of(36, EVSE, "uid", {}) and not length_of(37, EVSE, "uid", {})
    assert length_of(48, EVSE, "evse_id", {}) and not length_of(49, EVSE, "evse_id", {})
    assert length_of(36, Token, "uid", {}) and not length_of(37, Token, "uid", {})
    assert length_of(36, CdrToken, "contract_id", {}) and not length_of(37, CdrToken, "contract_id", {})
    assert length_of(64, Credentials, "token", {}) and not length_of(65, Credentials, "token", {})
    assert length_of(5000, SignedValue, "plain_data", {})
    assert not length_of(5001, SignedValue, "plain_data", {})


def test_credentials_token_is_printable_non_whitespace_ascii() -> None:
    from shared.models.v221 import Credentials

    base = {
        "url": "https://example.com/ocpi/versions",
        "roles": [
            {"role": "CPO", "party_id": "EXA", "country_code": "NL", "business_details": {"name": "E"}},
        ],
    }
    assert Credentials.from_json_dict({**base, "token": "abc-DEF_123~!"}).token == "abc-DEF_123~!"
    for bad in ("abc def", "abc\tdef", "tökén", ""):
        with pytest.raises(ValidationError):
            Credentials.from_json_dict({**base, "token": bad})
