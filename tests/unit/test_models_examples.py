"""Validate every official OCPI 2.2.1 JSON example against the models and dump it back unchanged.

Each example file is mapped (by a rule on its file name) to either

* a *full* object/class model: the document must validate and ``to_json_dict()`` must give the same
  JSON back (numbers compared as JSON numbers), or
* a *partial* model (PATCH bodies, fragments): every key must be a field of the model, each value
  must validate as that field's type and dump back unchanged, or
* a *known defect* of the official example: validation must fail with exactly the listed errors.

A file that no rule maps makes the test fail, so a new example file cannot slip through.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, TypeAdapter, ValidationError

from shared.models.types import OcpiModel
from shared.models.v221 import (
    CDR,
    EVSE,
    OBJECT_MODELS,
    ActiveChargingProfile,
    CancelReservation,
    ClientInfo,
    Connector,
    Credentials,
    DisplayText,
    Hours,
    Location,
    OcpiResponse,
    PublishTokenType,
    Session,
    StartSession,
    Tariff,
    Token,
    TokenType,
    Version,
    VersionDetail,
)

# --------------------------------------------------------------------------------------------
# Locating the examples
# --------------------------------------------------------------------------------------------


def _examples_dir() -> Path:
    """``<repo>/../shared/ocpi-spec/2.2.1/examples``; ``$OCPI_SPEC_DIR/2.2.1/examples`` when set.

    ``OCPI_SPEC_DIR`` points at the ``ocpi-spec`` folder (the one holding ``2.2.1/``).
    """
    default = Path(__file__).resolve().parents[3] / "shared" / "ocpi-spec" / "2.2.1" / "examples"
    env = os.environ.get("OCPI_SPEC_DIR")
    if env:
        candidate = Path(env) / "2.2.1" / "examples"
        if candidate.is_dir():
            return candidate
    return default


EXAMPLES_DIR = _examples_dir()
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.json"))


# --------------------------------------------------------------------------------------------
# Rules: file name (stem, full match) -> how to check it
# --------------------------------------------------------------------------------------------

FULL = "full"
PARTIAL = "partial"
DEFECT = "defect"


@dataclass(frozen=True)
class Rule:
    pattern: str
    kind: str
    target: Any
    # For DEFECT rules: the exact validation errors, as {(loc, type)}, and why.
    expected_errors: frozenset[tuple[tuple[str | int, ...], str]] = frozenset()
    reason: str = ""


VersionList = Annotated[list[Version], Field(min_length=1)]  # "Version +" (6.1.1 Data)

RULES: list[Rule] = [
    # --- Locations
    Rule(r"location_example(_.+)?", FULL, Location),
    Rule(r"location_hours_.+", FULL, Hours),
    # Fragments wrapped in {"energy_mix": ...} / {"opening_times": ...}: partial Location documents.
    Rule(r"location_energymix_example_.+", PARTIAL, Location),
    Rule(r"location_regularhours_example", PARTIAL, Location),
    # PATCH bodies: name change on the Location, status change / removal of an EVSE, tariff change
    # of a Connector.
    Rule(r"location_patch_example_location", PARTIAL, Location),
    Rule(r"location_patch_example_(status|remove_evse)", PARTIAL, EVSE),
    Rule(r"location_patch_example_tariff", PARTIAL, Connector),
    Rule(
        r"location_put_example_add_evse",
        DEFECT,
        EVSE,
        expected_errors=frozenset(
            {
                (("connectors", 0, "power_type"), "missing"),
                (("connectors", 0, "max_voltage"), "missing"),
                (("connectors", 0, "max_amperage"), "missing"),
                (("connectors", 0, "last_updated"), "missing"),
                (("physical_reference",), "string_type"),
            }
        ),
        reason=(
            "The 'add an EVSE' PUT example is not a valid EVSE: its Connector lacks the required "
            "power_type, max_voltage, max_amperage and last_updated; physical_reference is the number 3 "
            "instead of a string(16); and it uses a key 'floor' (-1) that does not exist (the field is "
            "'floor_level', a string(4)) -- ignored as an unknown key."
        ),
    ),
    # --- Sessions
    Rule(r"session_example_.+", FULL, Session),
    Rule(r"session_patch_example_.+", PARTIAL, Session),
    # --- CDRs
    Rule(r"cdr_example", FULL, CDR),
    # --- Tariffs (tariffrestriction_* examples are complete Tariff objects too)
    Rule(r"tariff_\d+_.+", FULL, Tariff),
    Rule(r"tariffrestriction_example_.+", FULL, Tariff),
    Rule(
        r"tariff_put_example",
        DEFECT,
        Tariff,
        expected_errors=frozenset({(("last_updated",), "missing")}),
        reason="The Tariff PUT example omits the required 'last_updated' field (cardinality 1).",
    ),
    # --- Tokens
    Rule(r"token_example_.+", FULL, Token),
    Rule(r"token_put_example", FULL, Token),
    Rule(r"token_patch_example", PARTIAL, Token),
    # --- Credentials
    Rule(r"credentials_example\d*", FULL, Credentials),
    # --- Versions. Note: several of these say "version": "2.2"; that is still a valid
    # VersionNumber value (2.2, deprecated), so they need no special handling.
    Rule(r"versions_info_example", FULL, VersionList),
    Rule(r"version_details_example\d*", FULL, VersionDetail),
    # --- Transport and format: complete response envelopes
    Rule(r"transport_and_format_version_info_example", FULL, OcpiResponse[VersionList]),
    Rule(r"transport_and_format_version_details_example", FULL, OcpiResponse[VersionDetail]),
    Rule(r"transport_and_format_get_token_example", FULL, OcpiResponse[Token]),
    Rule(r"transport_and_format_get_token_list_example", FULL, OcpiResponse[list[Token]]),
    # --- Types
    Rule(r"type_displaytext_example", FULL, DisplayText),
]


def _rule_for(path: Path) -> Rule | None:
    matches = [rule for rule in RULES if re.fullmatch(rule.pattern, path.stem)]
    assert len(matches) <= 1, f"{path.name} matches several rules: {[r.pattern for r in matches]}"
    return matches[0] if matches else None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values, numbers compared as JSON numbers (2 == 2.0, True != 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _field_adapter(model: type[OcpiModel], key: str) -> TypeAdapter[Any]:
    by_alias = {(info.alias or name): info for name, info in model.model_fields.items()}
    assert key in by_alias, f"{key!r} is not a field of {model.__name__}"
    info = by_alias[key]
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]
    return TypeAdapter(annotation)


def validate_partial(model: type[OcpiModel], document: dict[str, Any]) -> dict[str, Any]:
    """Validate a partial object (e.g. a PATCH body) field by field; return it dumped back to JSON.

    Every key must be a field of ``model`` and every value must validate as that field's type.
    """
    assert isinstance(document, dict) and document, "a partial object must be a non-empty JSON object"
    dumped: dict[str, Any] = {}
    for key, value in document.items():
        adapter = _field_adapter(model, key)
        parsed = adapter.validate_python(value)
        dumped[key] = adapter.dump_python(parsed, mode="json", exclude_none=True, by_alias=True)
    return dumped


def validate_full(target: Any, document: Any) -> Any:
    """Validate a full document against ``target``; return it dumped back to JSON."""
    if isinstance(target, type) and issubclass(target, OcpiModel):
        return target.from_json_dict(document).to_json_dict()
    adapter = TypeAdapter(target)
    parsed = adapter.validate_python(document)
    return adapter.dump_python(parsed, mode="json", exclude_none=True, by_alias=True)


# --------------------------------------------------------------------------------------------
# Tests over the example files
# --------------------------------------------------------------------------------------------


def test_examples_folder_found() -> None:
    assert EXAMPLE_FILES, f"no OCPI 2.2.1 example files found in {EXAMPLES_DIR} (set OCPI_SPEC_DIR)"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_example(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    rule = _rule_for(path)
    assert rule is not None, f"no rule maps example file {path.name}; add one to RULES"

    if rule.kind == FULL:
        assert json_equal(validate_full(rule.target, document), document)
    elif rule.kind == PARTIAL:
        assert json_equal(validate_partial(rule.target, document), document)
    else:
        assert rule.kind == DEFECT
        with pytest.raises(ValidationError) as excinfo:
            rule.target.from_json_dict(document)
        errors = {(tuple(err["loc"]), err["type"]) for err in excinfo.value.errors()}
        assert errors == rule.expected_errors, rule.reason


def test_every_rule_is_used() -> None:
    stems = [path.stem for path in EXAMPLE_FILES]
    unused = [rule.pattern for rule in RULES if not any(re.fullmatch(rule.pattern, stem) for stem in stems)]
    assert not unused, f"rules that match no example file: {unused}"


def test_add_evse_example_floor_key_is_not_a_field() -> None:
    # Part of the documented defect of location_put_example_add_evse.json (see RULES).
    assert "floor" not in EVSE.model_fields
    assert "floor_level" in EVSE.model_fields


def test_tariff_put_example_is_valid_apart_from_last_updated() -> None:
    document = json.loads((EXAMPLES_DIR / "tariff_put_example.json").read_text(encoding="utf-8"))
    document_with_timestamp = {**document, "last_updated": "2015-06-29T20:39:09Z"}
    assert json_equal(Tariff.from_json_dict(document_with_timestamp).to_json_dict(), document_with_timestamp)


# --------------------------------------------------------------------------------------------
# Helper self-tests and other model checks
# --------------------------------------------------------------------------------------------


def test_json_equal() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal({"a": 1}, {"a": True})
    assert not json_equal({"a": "1"}, {"a": 1})
    assert not json_equal({"a": 1}, {"a": 1, "b": None})


def test_validate_partial_rejects_unknown_key_and_bad_value() -> None:
    with pytest.raises(AssertionError):
        validate_partial(Token, {"no_such_field": 1})
    with pytest.raises(ValidationError):
        validate_partial(Token, {"valid": "yes"})
    with pytest.raises(ValidationError):
        validate_partial(EVSE, {"connectors": []})  # cardinality "+"


def test_object_models_mapping() -> None:
    expected = {
        "locations": Location,
        "sessions": Session,
        "cdrs": CDR,
        "tariffs": Tariff,
        "tokens": Token,
        "credentials": Credentials,
        "hub_client_info": ClientInfo,
        "charging_profiles": ActiveChargingProfile,
    }
    assert expected == OBJECT_MODELS


def test_optional_fields_are_omitted_on_output() -> None:
    info = ClientInfo.from_json_dict(
        {
            "party_id": "abc",
            "country_code": "nl",
            "role": "CPO",
            "status": "CONNECTED",
            "last_updated": "2020-01-01T00:00:00",
        }
    )
    assert info.to_json_dict() == {
        "party_id": "abc",
        "country_code": "nl",
        "role": "CPO",
        "status": "CONNECTED",
        "last_updated": "2020-01-01T00:00:00Z",
    }


def test_required_plus_lists_need_one_element() -> None:
    document = json.loads((EXAMPLES_DIR / "tariff_1_simple_2hour.json").read_text(encoding="utf-8"))
    with pytest.raises(ValidationError):
        Tariff.from_json_dict({**document, "elements": []})
    with pytest.raises(ValidationError):
        Tariff.from_json_dict({k: v for k, v in document.items() if k != "elements"})


def test_publish_token_type_rules() -> None:
    assert PublishTokenType(uid="123", type=TokenType.RFID).to_json_dict() == {"uid": "123", "type": "RFID"}
    assert PublishTokenType(group_id="G1").to_json_dict() == {"group_id": "G1"}
    with pytest.raises(ValidationError):
        PublishTokenType()  # none of uid, visual_number, group_id
    with pytest.raises(ValidationError):
        PublishTokenType(uid="123")  # uid without type
    with pytest.raises(ValidationError):
        PublishTokenType(visual_number="12345-67")  # visual_number without issuer


def test_start_session_connector_requires_evse() -> None:
    token = Token.from_json_dict(
        json.loads((EXAMPLES_DIR / "token_example_1_app_user.json").read_text(encoding="utf-8"))
    )
    base = {"response_url": "https://emsp.example.com/cmd/1", "token": token, "location_id": "LOC1"}
    assert StartSession(**base).evse_uid is None
    assert StartSession(**base, evse_uid="3256", connector_id="1").connector_id == "1"
    with pytest.raises(ValidationError):
        StartSession(**base, connector_id="1")


def test_credit_cdr_requires_credit_reference_id() -> None:
    document = json.loads((EXAMPLES_DIR / "cdr_example.json").read_text(encoding="utf-8"))
    with pytest.raises(ValidationError):
        CDR.from_json_dict({**document, "credit": True})
    credit = CDR.from_json_dict({**document, "id": "12345-C", "credit": True, "credit_reference_id": "12345"})
    assert credit.credit_reference_id == "12345"


def test_command_url_must_be_absolute_http() -> None:
    assert CancelReservation(response_url="https://a.example/x", reservation_id="r1").reservation_id == "R1"
    with pytest.raises(ValidationError):
        CancelReservation(response_url="/relative/path", reservation_id="r1")
