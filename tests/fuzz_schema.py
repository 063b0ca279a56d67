"""The OpenAPI document the fuzzer (tests/e2e/test_fuzz.py) sends to a local stack.

Each API function's FastAPI app describes its routes (`app.openapi()`, loaded in-process: the local
stack routes only the paths of template.yaml, not `/ocpi/openapi/...`). Most routes read the body,
the query and the OCPI headers from `Request`, so FastAPI cannot see them; this module adds them:

- request bodies from our pydantic models (shared/models/v221) per kind (`model_json_schema`), a
  PATCH body being the same object with only last_updated required; the command and charging-profile
  routes whose body depends on a path segment get one literal path per type beside the generic one;
  in positive mode the strings follow what our validators check (CiString printable ASCII, string
  without control characters, absolute URLs), numbers have a realistic size, DateTimes are realistic
  half of the time, objects carry no unknown fields, and the ids a command names are often ours;
- the query parameters the handlers read (pagination, token `type`, profile `duration`, ...);
- the OCPI headers: Authorization (a placeholder the test swaps for a registered token), the
  request/correlation ids and OCPI-from/to-*;
- path parameters narrowed, in positive mode, to what reaches the handlers: the versions we serve,
  the test partner's own parties, ids from a small set (so a PUT and a later GET meet) or any id.

Negative data generation then breaks each of these constraints in turn.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from shared.models import types as ocpi_types
from shared.models.v221.cdrs import CDR
from shared.models.v221.charging_profiles import (
    ActiveChargingProfile,
    ActiveChargingProfileResult,
    ChargingProfileResult,
    ClearProfileResult,
    SetChargingProfile,
)
from shared.models.v221.commands import (
    CancelReservation,
    CommandResult,
    ReserveNow,
    StartSession,
    StopSession,
    UnlockConnector,
)
from shared.models.v221.credentials import Credentials
from shared.models.v221.hub_client_info import ClientInfo
from shared.models.v221.locations import EVSE, Connector, Location
from shared.models.v221.sessions import ChargingPreferences, Session
from shared.models.v221.tariffs import Tariff
from shared.models.v221.tokens import LocationReferences, Token, TokenType
from shared.versions import SUPPORTED_VERSIONS

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "versions",
    "locations",
    "tariffs",
    "tokens",
    "sessions",
    "cdrs",
    "hubclientinfo",
    "commands",
    "chargingprofiles",
    "credentials",  # last: its DELETE unregisters the partner that calls it
)
AUTH_PLACEHOLDER = "Token FUZZ-PLACEHOLDER"
# Where accepted requests call back (response_url, credentials url): the test swaps in its partner stub.
CALLBACK_PLACEHOLDER = "http://fuzz-callback.invalid/versions"
# Ids the positive mode draws often, so that objects PUT by one case are read or patched by another.
KNOWN_IDS = ("FUZZ-1", "FUZZ-2")
# (A regex alternation: schemathesis draws path parameters from a pattern, not from an anyOf/enum.)
ID_SCHEMA = {"type": "string", "pattern": "^(" + "|".join(KNOWN_IDS) + "|[A-Za-z0-9._-]{1,36})$"}
DATETIME = {"type": "string", "format": "date-time"}

COMMANDS = {
    "START_SESSION": StartSession,
    "STOP_SESSION": StopSession,
    "RESERVE_NOW": ReserveNow,
    "CANCEL_RESERVATION": CancelReservation,
    "UNLOCK_CONNECTOR": UnlockConnector,
}
PROFILE_RESULTS = {
    "SET_PROFILE": ChargingProfileResult,
    "GET_PROFILE": ActiveChargingProfileResult,
    "CLEAR_PROFILE": ClearProfileResult,
}

_LOC = "/ocpi/{version}/receiver/locations/{country_code}/{party_id}/{location_id}"
_SES = "/ocpi/{version}/receiver/sessions/{country_code}/{party_id}/{session_id}"
_TOK = "/ocpi/{version}/receiver/tokens/{country_code}/{party_id}/{token_uid}"
_TAR = "/ocpi/{version}/receiver/tariffs/{country_code}/{party_id}/{tariff_id}"
_CRED = "/ocpi/{version}/credentials"
_CP = "/ocpi/{version}/receiver/chargingprofiles/{session_id}"

# (method, path) -> (model or list of alternative models, patch?, required?)
BODIES: dict[tuple[str, str], tuple[Any, bool, bool]] = {
    ("PUT", _LOC): (Location, False, True),
    ("PATCH", _LOC): (Location, True, True),
    ("PUT", _LOC + "/{evse_uid}"): (EVSE, False, True),
    ("PATCH", _LOC + "/{evse_uid}"): (EVSE, True, True),
    ("PUT", _LOC + "/{evse_uid}/{connector_id}"): (Connector, False, True),
    ("PATCH", _LOC + "/{evse_uid}/{connector_id}"): (Connector, True, True),
    ("PUT", _TAR): (Tariff, False, True),
    ("PUT", _TOK): (Token, False, True),
    ("PATCH", _TOK): (Token, True, True),
    ("POST", "/ocpi/{version}/sender/tokens/{token_uid}/authorize"): (LocationReferences, False, False),
    ("PUT", _SES): (Session, False, True),
    ("PATCH", _SES): (Session, True, True),
    ("PUT", "/ocpi/{version}/sender/sessions/{session_id}/charging_preferences"): (
        ChargingPreferences,
        False,
        True,
    ),
    ("POST", "/ocpi/{version}/receiver/cdrs"): (CDR, False, True),
    ("PUT", "/ocpi/{version}/receiver/hubclientinfo/{country_code}/{party_id}"): (ClientInfo, False, True),
    ("POST", "/ocpi/{version}/receiver/commands/{command}"): (list(COMMANDS.values()), False, True),
    ("POST", "/ocpi/{version}/sender/commands/{command}/{command_id}"): (CommandResult, False, True),
    ("PUT", _CP): (SetChargingProfile, False, True),
    ("POST", "/ocpi/{version}/sender/chargingprofiles/{kind}/{command_id}"): (
        list(PROFILE_RESULTS.values()),
        False,
        True,
    ),
    ("PUT", "/ocpi/{version}/sender/chargingprofiles/{session_id}"): (ActiveChargingProfile, False, True),
    ("POST", _CRED): (Credentials, False, True),
    ("PUT", _CRED): (Credentials, False, True),
}
# One literal path per type where the body's model depends on a path segment.
LITERAL_PATHS: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("POST", "/ocpi/{version}/receiver/commands/{command}"): ("command", COMMANDS),
    ("POST", "/ocpi/{version}/sender/chargingprofiles/{kind}/{command_id}"): ("kind", PROFILE_RESULTS),
}


def _string_enum(values: list[str]) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(set(values))}


_PAGE = {"offset": {"type": "integer", "minimum": 0}, "limit": {"type": "integer", "minimum": 1}}
_PAGE_DATES = {"date_from": DATETIME, "date_to": DATETIME, "cursor": {"type": "string", "maxLength": 64}}
QUERIES: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/ocpi/{version}/sender/locations"): {**_PAGE, **_PAGE_DATES},
    ("GET", "/ocpi/{version}/sender/tariffs"): {**_PAGE, **_PAGE_DATES},
    ("GET", "/ocpi/{version}/sender/tokens"): {**_PAGE, **_PAGE_DATES},
    ("GET", "/ocpi/{version}/sender/sessions"): {**_PAGE, **_PAGE_DATES},
    ("GET", "/ocpi/{version}/sender/cdrs"): {**_PAGE, **_PAGE_DATES},
    ("POST", "/ocpi/{version}/sender/tokens/{token_uid}/authorize"): {"type": {"enum": list(TokenType)}},
    ("GET", _TOK): {"type": {"enum": list(TokenType)}},
    ("PUT", _TOK): {"type": {"enum": list(TokenType)}},
    ("PATCH", _TOK): {"type": {"enum": list(TokenType)}},
    ("GET", _CP): {
        "duration": {"type": "integer", "minimum": 0},
        "response_url": _string_enum([CALLBACK_PLACEHOLDER]),
    },
    ("DELETE", _CP): {"response_url": _string_enum([CALLBACK_PLACEHOLDER])},
    ("GET", "/ext/locations/nearby"): {
        "latitude": {"type": "number", "minimum": -90, "maximum": 90},
        "longitude": {"type": "number", "minimum": -180, "maximum": 180},
        "radius_km": {"type": "number", "exclusiveMinimum": 0, "maximum": 50},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
    },
}
REQUIRED_QUERY = {
    ("GET", "/ocpi/{version}/sender/sessions"): {"date_from"},
    ("GET", _CP): {"response_url", "duration"},
    ("DELETE", _CP): {"response_url"},
    ("GET", "/ext/locations/nearby"): {"latitude", "longitude"},
}


def caller_role(path: str) -> str | None:
    """The role a partner calls this path in (None: versions, credentials, extensions). We are the
    sender of locations, tariffs, sessions and CDRs as CPO and of tokens, commands and charging
    profiles as eMSP; the receiver interfaces the other way round; hub client info from a hub."""
    parts = path.split("/")
    if len(parts) < 5 or parts[3] not in ("sender", "receiver"):
        return None
    if parts[4] == "hubclientinfo":
        return "HUB"
    we_send_as_cpo = parts[4] in ("locations", "tariffs", "sessions", "cdrs")
    return "EMSP" if (parts[3] == "sender") == we_send_as_cpo else "CPO"


@dataclass
class Parties:
    """The test partner's parties (role -> (country_code, party_id)) and ours."""

    partner: dict[str, tuple[str, str]]
    own: list[tuple[str, str]]
    callback_url: str = CALLBACK_PLACEHOLDER


def load_app(module: str) -> Any:
    """`functions/<module>/app.py`'s FastAPI app, imported under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"fuzz_fn_{module}", ROOT / "functions" / module / "app.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


# What the models check beyond the JSON schema pydantic writes (shared/models/types.py): a
# CiString is printable ASCII, a string has no control character, a URL is absolute http(s).
_CHARSETS = {
    getattr(ocpi_types, "_to_cistr", None): r"[\x20-\x7e]",
    getattr(ocpi_types, "_check_printable", None): r"[^\x00-\x1f\x7f-\x9f]",
}
_URL_CHECK = getattr(ocpi_types, "_check_url", None)
# A realistic DateTime half of the time (the other half: any RFC 3339 date-time, year 1 included).
_REALISTIC_DATETIME = (
    r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,3})?Z?$"
)


class _OcpiJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema plus the string rules our validators add, as patterns."""

    def function_after_schema(self, schema: Any) -> Any:
        out = super().function_after_schema(schema)
        func = schema.get("function", {}).get("function")
        if out.get("type") != "string" or "pattern" in out:
            return out
        if func is _URL_CHECK:
            return {**out, "pattern": r"^https?://[a-z0-9.-]{1,40}(/[\x21-\x7e]{0,60})?$"}
        charset = _CHARSETS.get(func)
        if charset is not None:
            high = out.get("maxLength")
            return {**out, "pattern": f"^{charset}{{0,{high if high is not None else 80}}}$"}
        return out


def _realistic_datetime(schema: Any) -> Any:
    if isinstance(schema, dict) and schema.get("type") == "string" and schema.get("format") == "date-time":
        return {"anyOf": [{"type": "string", "pattern": _REALISTIC_DATETIME}, schema]}
    return schema


def _positive_friendly(schema: Any) -> Any:
    """Objects without properties of their own (our models keep unknown fields, but a positive body
    full of random keys would mostly test that; negative mode still adds them), DateTimes realistic
    half of the time, numbers of a realistic size. Applying it twice changes nothing more."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False
        if schema.get("type") == "number" and "multipleOf" not in schema:
            # OCPI amounts carry 4 decimals; 1e300 or 5e-324 is only a (negative) number test.
            schema.update(multipleOf=0.0001, minimum=schema.get("minimum", -1e9), maximum=1e9)
        if schema.get("type") == "integer":
            schema.setdefault("minimum", -(2**31))
            schema.setdefault("maximum", 2**31)
        done = any(
            isinstance(v, dict) and v.get("pattern") == _REALISTIC_DATETIME for v in schema.get("anyOf", [])
        )
        for key, value in list(schema.items()):
            if isinstance(value, dict):
                schema[key] = _positive_friendly(_realistic_datetime(value))
            elif isinstance(value, list):
                schema[key] = [
                    _positive_friendly(v if done and key == "anyOf" else _realistic_datetime(v))
                    for v in value
                ]
    return schema


def model_schema(models: Any, components: dict[str, Any], *, patch: bool) -> dict[str, Any]:
    """A model's JSON schema with its definitions moved to `components/schemas` (a PATCH body:
    the object's fields, only last_updated required)."""
    if isinstance(models, list):
        return {"anyOf": [model_schema(m, components, patch=patch) for m in models]}
    assert issubclass(models, BaseModel)
    schema = models.model_json_schema(
        ref_template="#/components/schemas/{model}", schema_generator=_OcpiJsonSchema
    )
    schema = _positive_friendly(schema)
    components.update(_positive_friendly(schema.pop("$defs", {})))
    if patch:  # a PATCH names what changed, and its last_updated (mod_locations, PATCH)
        schema["required"] = ["last_updated"] if "last_updated" in schema.get("properties", {}) else []
        schema["minProperties"] = 1
    return schema


def _header(name: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": schema}


def _path_schema(name: str, path: str, parties: Parties) -> dict[str, Any] | None:
    if name == "version":
        return _string_enum(list(SUPPORTED_VERSIONS))
    if name in ("country_code", "party_id"):
        role = caller_role(path)
        if role not in parties.partner or role == "HUB":  # hub client info: any party behind the hub
            return {"type": "string", "pattern": "^[A-Z]{2}$" if name == "country_code" else "^[A-Z0-9]{3}$"}
        cc, pid = parties.partner[role]  # a receiver path names the caller's own party
        return _string_enum([cc if name == "country_code" else pid])
    if name == "command":
        return _string_enum(list(COMMANDS))
    if name == "kind":
        return _string_enum(list(PROFILE_RESULTS))
    if name.endswith(("_id", "_uid")):
        return dict(ID_SCHEMA)
    return None


def _headers(path: str, parties: Parties) -> list[dict[str, Any]]:
    out = [
        _header("Authorization", _string_enum([AUTH_PLACEHOLDER]), required=True),
        _header("X-Request-ID", {"type": "string", "maxLength": 100}),
        _header("X-Correlation-ID", {"type": "string", "maxLength": 100}),
    ]
    if (
        path.startswith("/ocpi/{version}/")
        and not path.endswith("/credentials")
        and path != "/ocpi/{version}"
    ):
        frm = list(parties.partner.values())
        out += [
            _header("OCPI-from-country-code", _string_enum([cc for cc, _ in frm])),
            _header("OCPI-from-party-id", _string_enum([pid for _, pid in frm])),
            _header("OCPI-to-country-code", _string_enum([cc for cc, _ in parties.own])),
            _header("OCPI-to-party-id", _string_enum([pid for _, pid in parties.own])),
        ]
    return out


def _point_urls(schema: Any, url: str) -> None:
    """Every `response_url` / credentials `url` property: the stub's URL (positive mode), so that an
    accepted request calls something that answers instead of a random host."""
    if isinstance(schema, dict):
        props = schema.get("properties") or {}
        for key in ("response_url", "url"):
            if key in props:
                props[key] = {"type": "string", "enum": [url]}
        for value in schema.values():
            _point_urls(value, url)
    elif isinstance(schema, list):
        for value in schema:
            _point_urls(value, url)


_ID_FIELDS = ("location_id", "evse_uid", "connector_id", "session_id", "reservation_id")


def _known_ids(schema: dict[str, Any], names: tuple[str, ...] = _ID_FIELDS) -> None:
    """A command names our location, EVSE, connector, session or reservation: often one the test
    stack holds (KNOWN_IDS), so the command is checked further than "unknown location"; a CDR's id
    often one a later GET asks for."""
    for alternative in schema.get("anyOf", [schema]):
        props = alternative.get("properties") or {}
        for name in names:
            if name in props and props[name].get("type") == "string":
                inner = props[name].get("pattern", "^.*$")[1:-1]
                props[name] = {**props[name], "pattern": "^(" + "|".join([*KNOWN_IDS, inner]) + ")$"}


def _operation(method: str, path: str, op: dict[str, Any], parties: Parties, components: dict) -> dict:
    op = copy.deepcopy(op)
    op.pop("responses", None)
    params = []
    for param in op.get("parameters", []):
        if param["in"] == "path":
            schema = _path_schema(param["name"], path, parties)
            if schema is not None:
                param = {**param, "schema": schema}
        params.append(param)
    required_query = REQUIRED_QUERY.get((method, path), set())
    for name, schema in QUERIES.get((method, path), {}).items():
        params.append({"name": name, "in": "query", "required": name in required_query, "schema": schema})
    params += _headers(path, parties)
    op["parameters"] = params
    body = BODIES.get((method, path))
    if body is not None:
        models, patch, required = body
        schema = model_schema(models, components, patch=patch)
        _point_urls(schema, parties.callback_url)
        if "/receiver/commands/" in path:
            _known_ids(schema)
        if path.endswith("/receiver/cdrs"):
            _known_ids(schema, ("id",))
        op["requestBody"] = {"required": required, "content": {"application/json": {"schema": schema}}}
    # Every answer is an OCPI envelope; the test checks that, not the statuses.
    op["responses"] = {"default": {"description": "OCPI response envelope"}}
    return op


_METHOD_ORDER = ["put", "post", "patch", "get", "delete"]


def build(parties: Parties, modules: tuple[str, ...] = MODULES) -> dict[str, Any]:
    """One OpenAPI 3.1 document for every module's routes, enriched as the module docstring says."""
    components: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for module in modules:
        spec = load_app(module).openapi()
        for path, item in spec["paths"].items():
            # Writes first: a GET of a path then meets what a PUT of the same path stored.
            for method, op in sorted(item.items(), key=lambda kv: _METHOD_ORDER.index(kv[0])):
                key = (method.upper(), path)
                op = {**op, "tags": [module]}
                paths.setdefault(path, {})[method] = _operation(key[0], path, op, parties, components)
                literal = LITERAL_PATHS.get(key)
                if literal is None:
                    continue
                segment, models = literal
                for value, model in models.items():
                    concrete = path.replace("{" + segment + "}", value)
                    one = {**op, "operationId": f"{op['operationId']}_{value.lower()}"}
                    one["parameters"] = [p for p in op.get("parameters", []) if p["name"] != segment]
                    one = _operation(key[0], path, one, parties, components)
                    body = model_schema(model, components, patch=False)
                    _point_urls(body, parties.callback_url)
                    if "/receiver/commands/" in path:
                        _known_ids(body)
                    one["requestBody"]["content"]["application/json"]["schema"] = body
                    paths.setdefault(concrete, {})[method] = one
    _point_urls(components, parties.callback_url)
    return {
        "openapi": "3.1.0",
        "info": {"title": "OCPI serverless (fuzzing)", "version": "2.2.1"},
        "paths": paths,
        "components": {"schemas": components},
    }


def operation_module(tags: list[str] | None) -> str:
    return (tags or ["?"])[0]
