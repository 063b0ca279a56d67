"""The OCPI 2.3.0 converter (shared/versions/v230.py) against every official example and by hand.

* Every 2.3.0 example file (read from the spec checkout, never copied) that is an object of a
  converter kind, or a PATCH body of one: ``to_canonical`` validates against the 2.2.1 model of that
  kind, and ``from_canonical`` gives the 2.3.0 JSON back identically (compared after JSON
  normalisation: keys sorted, numbers as decimal values), both straight and after the canonical
  form went through the model (as the store keeps it). Files that are not objects of a kind
  (Hours, DisplayText, versions, Payments) are listed with the reason. A file no rule maps fails.
* Every 2.2.1 example of a kind (the canonical form itself) goes to 2.3.0 and back unchanged, and
  converts to the 2.3.0 example of the same name exactly (doc § 15.2: the test oracle).
* Targeted cases: Price <-> before_taxes/taxes, PriceLimit, tax_included, unknown OpenEnum values
  (sidecars), EMAID tokens, hub_party_id, strip_for_221.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from shared.errors import InvalidParameters
from shared.models import v221
from shared.versions import KINDS, Context, v230
from shared.versions.v230 import from_canonical, sendable_to_221, strip_for_221, to_canonical
from tests.unit.test_models_examples import _examples_dir, validate_partial

EXAMPLES_221 = _examples_dir()
EXAMPLES_230 = EXAMPLES_221.parent.parent / "2.3.0" / "examples"
FILES_230 = sorted(EXAMPLES_230.glob("*.json"))

MODELS: dict[str, type[BaseModel]] = {
    "location": v221.Location,
    "evse": v221.EVSE,
    "connector": v221.Connector,
    "tariff": v221.Tariff,
    "token": v221.Token,
    "session": v221.Session,
    "cdr": v221.CDR,
    "credentials": v221.Credentials,
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return {"#": format(number.normalize(), "f")}
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_norm(v) for v in value]
    raise TypeError(type(value))


def normal(value: Any) -> str:
    """JSON normalisation: keys sorted, numbers as their decimal value (4.00 == 4, not "4")."""
    return json.dumps(_norm(value), sort_keys=True, ensure_ascii=False)


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def stored(kind: str, canonical: dict[str, Any]) -> dict[str, Any]:
    """The canonical form as the store keeps it: validated by the 2.2.1 model and dumped."""
    if kind.endswith("_patch"):
        return validate_partial(MODELS[kind.removesuffix("_patch")], canonical)
    return MODELS[kind].model_validate(canonical).to_json_dict()


def keys_outside_model(model: type[BaseModel], obj: Any, path: str = "") -> list[str]:
    """Keys of ``obj`` (at any depth) that are not fields of the 2.2.1 model."""
    found: list[str] = []
    if not isinstance(obj, dict):
        return found
    fields = v230._fields_221(model)
    for key, value in obj.items():
        if key not in fields:
            found.append(path + key)
            continue
        sub, _many = fields[key]
        if sub is None:
            continue
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            found += keys_outside_model(sub, item, f"{path}{key}[{i}].")
    return found


# --------------------------------------------------------------------------------------------
# The 2.3.0 example files
# --------------------------------------------------------------------------------------------

FULL = "full"  # a complete object of the kind
PATCH = "patch"  # a PATCH body or a fragment of an object (the kind is a *_patch kind)
ENVELOPE = "envelope"  # an OCPI response whose data is one object (or a list) of the kind
SKIP = "skip"  # not an object of any converter kind


@dataclass(frozen=True)
class Rule:
    pattern: str
    how: str
    kind: str = ""
    # FULL objects that are not valid (docs/versions-2.3.0.md § 18): the validation errors.
    invalid: frozenset[tuple[tuple[str | int, ...], str]] = frozenset()
    reason: str = ""


RULES = [
    Rule(r"cdr_example", FULL, "cdr", reason="tariffs[0] lacks tax_included: comes back as NO"),
    Rule(r"credentials_example\d*", FULL, "credentials"),
    Rule(r"location_example(_.+)?", FULL, "location"),
    Rule(r"location_energymix_example_.+|location_regularhours_example", PATCH, "location_patch"),
    Rule(r"location_patch_example_location", PATCH, "location_patch"),
    Rule(r"location_patch_example_(status|remove_evse)", PATCH, "evse_patch"),
    Rule(r"location_patch_example_tariff", PATCH, "connector_patch"),
    Rule(
        r"location_put_example_add_evse",
        FULL,
        "evse",
        invalid=frozenset(
            {
                (("connectors", 0, "power_type"), "missing"),
                (("connectors", 0, "max_voltage"), "missing"),
                (("connectors", 0, "max_amperage"), "missing"),
                (("connectors", 0, "last_updated"), "missing"),
                (("physical_reference",), "string_type"),
            }
        ),
        reason="= 2.2.1 defect: incomplete Connector, physical_reference a number",
    ),
    Rule(r"session_example_.+", FULL, "session"),
    Rule(r"session_patch_example_.+", PATCH, "session_patch"),
    Rule(r"tariff_\d+_.+|tariffrestriction_example_.+", FULL, "tariff"),
    Rule(
        r"tariff_put_example",
        FULL,
        "tariff",
        invalid=frozenset({(("last_updated",), "missing")}),
        reason="= 2.2.1 defect: no last_updated",
    ),
    Rule(r"token_example_.+|token_put_example", FULL, "token"),
    Rule(r"token_patch_example", PATCH, "token_patch"),
    Rule(r"transport_and_format_get_token(_list)?_example", ENVELOPE, "token"),
    Rule(r"location_hours_.+", SKIP, reason="an Hours class, not an object of a kind"),
    Rule(r"type_displaytext_example", SKIP, reason="a DisplayText class"),
    Rule(
        r"versions?_(info|details)_example\d*|transport_and_format_version_(info|details)_example",
        SKIP,
        reason="versions module: not converted (doc § 4)",
    ),
    Rule(r"payment_.+", SKIP, reason="Payments module: not part of the converter"),
]


def rule_for(stem: str) -> Rule | None:
    matches = [r for r in RULES if re.fullmatch(r.pattern, stem)]
    assert len(matches) <= 1, f"{stem} matches several rules"
    return matches[0] if matches else None


def expected_back(stem: str, document: Any) -> Any:
    """The 2.3.0 document as it comes back: itself, but for the defects the doc lists."""
    if stem == "cdr_example":  # doc § 8.2/§ 10: the embedded tariff lacks the required tax_included
        document = copy.deepcopy(document)
        document["tariffs"][0]["tax_included"] = "NO"
    return document


def test_examples_found() -> None:
    assert len(FILES_230) == 72, EXAMPLES_230


def test_every_rule_is_used() -> None:
    stems = [p.stem for p in FILES_230]
    assert [r.pattern for r in RULES if not any(re.fullmatch(r.pattern, s) for s in stems)] == []


@pytest.mark.parametrize("path", FILES_230, ids=lambda p: p.name)
def test_example_230_round_trips(path: Path) -> None:
    document = load(path)
    rule = rule_for(path.stem)
    assert rule is not None, f"no rule maps {path.name}"
    if rule.how == SKIP:
        return
    want = normal(expected_back(path.stem, document))
    if rule.how == ENVELOPE:
        data = document["data"]
        items = data if isinstance(data, list) else [data]
        for item in items:
            canonical = to_canonical(rule.kind, item)
            assert normal(from_canonical(rule.kind, stored(rule.kind, canonical))) == normal(item)
        return

    canonical = to_canonical(rule.kind, document)
    assert normal(from_canonical(rule.kind, canonical)) == want, rule.reason
    if rule.invalid:
        with pytest.raises(ValidationError) as excinfo:
            MODELS[rule.kind].model_validate(canonical)
        assert {(tuple(e["loc"]), e["type"]) for e in excinfo.value.errors()} == rule.invalid
        return
    kept = stored(rule.kind, canonical)  # validates against the 2.2.1 model
    assert normal(from_canonical(rule.kind, kept)) == want, rule.reason
    # What a 2.2.1 partner gets is a valid 2.2.1 object with nothing beyond the 2.2.1 fields.
    if rule.how == FULL:
        for_221 = strip_for_221(rule.kind, kept)
        model = MODELS[rule.kind]
        assert keys_outside_model(model, for_221) == []
        model.model_validate(for_221)
    else:
        for_221 = strip_for_221(rule.kind, kept)
        validate_partial(MODELS[rule.kind.removesuffix("_patch")], for_221)


# --------------------------------------------------------------------------------------------
# The 2.2.1 examples (the canonical form)
# --------------------------------------------------------------------------------------------

FILES_221 = [p for p in sorted(EXAMPLES_221.glob("*.json")) if (r := rule_for(p.stem)) and r.how != SKIP]


@pytest.mark.parametrize("path", FILES_221, ids=lambda p: p.name)
def test_example_221_to_230_and_back(path: Path) -> None:
    rule = rule_for(path.stem)
    assert rule is not None
    document = load(path)
    items = document["data"] if rule.how == ENVELOPE else document
    for canonical in items if isinstance(items, list) else [items]:
        wire = from_canonical(rule.kind, canonical)
        assert normal(to_canonical(rule.kind, wire)) == normal(canonical)
        if rule.how == FULL and not rule.invalid:
            # A 2.2.1 object is sent to 2.2.1 partners as it is.
            assert normal(strip_for_221(rule.kind, canonical)) == normal(canonical)


# doc § 15.2: "Converting every 2.2.1 example with them gives the 2.3.0 example exactly, in both
# directions, for the sessions and session patches, the 17 numbered tariffs, the 2
# tariff-restriction examples and tariff_put_example. For cdr_example only the dates and
# tax_included differ."
ORACLE = [
    p
    for p in FILES_221
    if re.fullmatch(r"session_.+|tariff_.+|tariffrestriction_.+|token_.+|credentials_.+", p.stem)
]


@pytest.mark.parametrize("path", ORACLE, ids=lambda p: p.name)
def test_221_example_converts_to_the_230_example(path: Path) -> None:
    rule = rule_for(path.stem)
    assert rule is not None
    doc_221, doc_230 = load(path), load(EXAMPLES_230 / path.name)
    assert normal(from_canonical(rule.kind, doc_221)) == normal(doc_230)
    assert normal(to_canonical(rule.kind, doc_230)) == normal(doc_221)


def test_221_cdr_example_differs_from_230_only_in_dates_and_tax_included() -> None:
    doc_221, doc_230 = load(EXAMPLES_221 / "cdr_example.json"), load(EXAMPLES_230 / "cdr_example.json")
    converted = from_canonical("cdr", doc_221)
    assert converted["tariffs"][0].pop("tax_included") == "NO"
    dates = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    assert dates.sub("D", normal(converted)) == dates.sub("D", normal(doc_230))
    assert normal(to_canonical("cdr", doc_230)) != normal(doc_221)  # the dates
    assert to_canonical("cdr", doc_230)["total_cost"] == {"excl_vat": 4.00, "incl_vat": 4.4}


# --------------------------------------------------------------------------------------------
# Price, PriceLimit, tax_included
# --------------------------------------------------------------------------------------------


def session_with(total_cost: dict[str, Any]) -> dict[str, Any]:
    return {"total_cost": total_cost, "last_updated": "2024-01-01T00:00:00Z"}


def test_price_with_several_taxes() -> None:
    wire = session_with(
        {
            "before_taxes": 10.00,
            "taxes": [
                {"name": "GST", "percentage": 5, "amount": 0.50, "account_number": "123456789RT0001"},
                {"name": "QST", "percentage": 9.975, "amount": 0.9975},
            ],
            "x_rounding": "HALF_UP",  # an extension field of the Price
        }
    )
    canonical = to_canonical("session_patch", wire)
    assert canonical["total_cost"] == {
        "excl_vat": 10.00,
        "incl_vat": 11.4975,
        "taxes": wire["total_cost"]["taxes"],
        "x_rounding": "HALF_UP",
    }
    kept = stored("session_patch", canonical)
    assert normal(from_canonical("session_patch", kept)) == normal(wire)
    assert strip_for_221("session_patch", kept) == {
        "total_cost": {"excl_vat": 10, "incl_vat": 11.4975},
        "last_updated": "2024-01-01T00:00:00Z",
    }


def test_price_single_vat_is_the_221_pair() -> None:
    wire = session_with({"before_taxes": 8.50, "taxes": [{"name": "VAT", "amount": 0.85}]})
    canonical = to_canonical("session_patch", wire)
    assert canonical["total_cost"] == {"excl_vat": 8.50, "incl_vat": 9.35}  # no taxes: derivable
    assert normal(from_canonical("session_patch", canonical)) == normal(wire)


@pytest.mark.parametrize(
    ("canonical", "wire"),
    [
        ({"excl_vat": 4, "incl_vat": 4.4}, {"before_taxes": 4, "taxes": [{"name": "VAT", "amount": 0.4}]}),
        ({"excl_vat": 4, "incl_vat": 4}, {"before_taxes": 4, "taxes": [{"name": "VAT", "amount": 0}]}),
        ({"excl_vat": 2.5}, {"before_taxes": 2.5}),
        ({"excl_vat": 0}, {"before_taxes": 0}),
        ({"excl_vat": 3, "taxes": []}, {"before_taxes": 3, "taxes": []}),
    ],
)
def test_price_pairs(canonical: dict[str, Any], wire: dict[str, Any]) -> None:
    assert normal(from_canonical("session_patch", session_with(canonical))) == normal(session_with(wire))
    assert normal(to_canonical("session_patch", session_with(wire))) == normal(session_with(canonical))


def test_price_from_the_store_as_decimals() -> None:
    canonical = session_with({"excl_vat": Decimal("8.5"), "incl_vat": Decimal("9.35")})
    wire = from_canonical("session_patch", canonical)
    assert wire["total_cost"] == {"before_taxes": Decimal("8.5"), "taxes": [{"name": "VAT", "amount": 0.85}]}


def test_stale_taxes_are_derived_again() -> None:
    canonical = to_canonical(
        "session_patch",
        session_with({"before_taxes": 10, "taxes": [{"name": "GST", "percentage": 5, "amount": 0.5}]}),
    )
    canonical["total_cost"]["incl_vat"] = 12  # changed through 2.2.1 since
    ctx = Context()
    wire = from_canonical("session_patch", canonical, ctx)
    assert wire["total_cost"] == {"before_taxes": 10, "taxes": [{"name": "VAT", "amount": 2}]}
    assert any("taxes" in note for note in ctx.notes)


def test_engine_price_with_rates_goes_out_as_is() -> None:
    # shared/pricing in 2.3.0 mode writes the canonical Price with one TaxAmount per rate.
    taxes = [
        {"name": "VAT", "percentage": 20, "amount": 0.1},
        {"name": "VAT", "percentage": 10, "amount": 0.5},
    ]
    canonical = session_with({"excl_vat": 5.5, "incl_vat": 6.1, "taxes": taxes})
    assert from_canonical("session_patch", canonical)["total_cost"] == {"before_taxes": 5.5, "taxes": taxes}


def test_malformed_tax_amount_is_2001() -> None:
    with pytest.raises(InvalidParameters):
        to_canonical(
            "session_patch", session_with({"before_taxes": 1, "taxes": [{"name": "VAT", "amount": "1"}]})
        )


def tariff_230(**changes: Any) -> dict[str, Any]:
    document = load(EXAMPLES_230 / "tariff_6_025kwh_start_max_price.json")
    document.update(changes)
    return document


def test_price_limit_is_the_221_price_shape() -> None:
    wire = tariff_230(
        min_price={"before_taxes": 1, "x_note": "ext"}, max_price={"before_taxes": 10, "after_taxes": 11}
    )
    canonical = to_canonical("tariff", wire)
    assert canonical["min_price"] == {"excl_vat": 1, "x_note": "ext"}
    assert canonical["max_price"] == {"excl_vat": 10, "incl_vat": 11}
    assert "tax_included" not in canonical  # NO: the canonical default
    assert normal(from_canonical("tariff", stored("tariff", canonical))) == normal(wire)
    assert strip_for_221("tariff", canonical)["min_price"] == {"excl_vat": 1}


def test_tax_included_yes_and_na_kept_and_converted_for_221() -> None:
    wire = tariff_230(tax_included="YES", preauthorize_amount=25)
    canonical = stored("tariff", to_canonical("tariff", wire))
    assert canonical["tax_included"] == "YES" and canonical["preauthorize_amount"] == 25
    assert normal(from_canonical("tariff", canonical)) == normal(wire)
    for_221 = strip_for_221("tariff", canonical)
    components = for_221["elements"][0]["price_components"]
    # doc § 8.3: price / (1 + vat/100), half up to 4 decimals: 0.50/1.2 = 0.41666.., 0.25/1.1 = 0.22727..
    assert [(c["price"], c["vat"]) for c in components] == [(0.4167, 20), (0.2273, 10)]
    assert "tax_included" not in for_221 and "preauthorize_amount" not in for_221
    v221.Tariff.model_validate(for_221)

    na = stored("tariff", to_canonical("tariff", tariff_230(tax_included="N/A")))
    assert na["tax_included"] == "N/A"
    components = strip_for_221("tariff", na)["elements"][0]["price_components"]
    assert [c["price"] for c in components] == [0.5, 0.25] and all("vat" not in c for c in components)

    north_american = load(EXAMPLES_230 / "tariff_20_simple_north_american_inclusive.json")
    canonical = to_canonical("tariff", north_american)
    assert strip_for_221("tariff", canonical)["elements"] == north_american["elements"]  # no vat: verbatim


def test_tax_included_must_be_known() -> None:
    with pytest.raises(InvalidParameters):
        to_canonical("tariff", tariff_230(tax_included="MAYBE"))


def test_221_tariff_gets_tax_included_no() -> None:
    canonical = load(EXAMPLES_221 / "tariff_1_simple_2hour.json")
    assert from_canonical("tariff", canonical)["tax_included"] == "NO"


# --------------------------------------------------------------------------------------------
# OpenEnums, new fields, extension fields
# --------------------------------------------------------------------------------------------


def location_230() -> dict[str, Any]:
    location = load(EXAMPLES_230 / "location_example.json")
    location.update(
        parking_type="ROOFTOP",
        facilities=["CAFE", "EV_LOUNGE", "WIFI"],
        help_phone="+31 20 1234567",
        images=[{"url": "https://example.com/a.png", "category": "DRONE_VIEW", "type": "png"}],
        publish_allowed_to=[{"uid": "EMA1", "type": "EMAID"}, {"uid": "R1", "type": "RFID"}],
        energy_mix={
            "is_green_energy": True,
            "environ_impact": [
                {"category": "CARBON_DIOXIDE", "amount": 12},
                {"category": "METHANE", "amount": 1.5},
            ],
        },
        x_brand={"name": "Example", "nested": {"deep": [1, None, "x"]}},
    )
    location["operator"] = {
        "name": "Op",
        "logo": {"url": "https://e.com/l.png", "category": "ICON", "type": "png"},
    }
    evse = location["evses"][0]
    evse.update(
        capabilities=["RFID_READER", "PLUG_AND_CHARGE_SIMULATED"],
        parking_restrictions=["EV_ONLY", "TAXIS", "EMPLOYEES"],
        accepted_service_providers=["eMSP One", "eMSP Two"],
        x_vendor_status="ok",
    )
    evse["connectors"][0].update(standard="MCS", capabilities=["ISO_15118_20_PLUG_AND_CHARGE"])
    location["evses"][1]["connectors"][0]["standard"] = "SAE_J3400"
    return location


def test_unknown_open_enum_values_are_kept() -> None:
    wire = location_230()
    canonical = stored("location", to_canonical("location", wire))  # valid 2.2.1 Location
    assert "parking_type" not in canonical and canonical["parking_type@2.3.0"] == "ROOFTOP"
    assert canonical["facilities"] == ["CAFE", "WIFI"]
    assert canonical["facilities@2.3.0"] == ["CAFE", "EV_LOUNGE", "WIFI"]
    assert canonical["images"][0]["category"] == "OTHER"
    assert canonical["images"][0]["category@2.3.0"] == "DRONE_VIEW"
    assert canonical["operator"]["logo"]["category"] == "OTHER"
    assert [p["type"] for p in canonical["publish_allowed_to"]] == ["OTHER", "RFID"]
    assert canonical["energy_mix"]["environ_impact"] == [{"category": "CARBON_DIOXIDE", "amount": 12}]
    evse = canonical["evses"][0]
    assert evse["capabilities"] == ["RFID_READER"]
    assert evse["parking_restrictions"] == ["EV_ONLY"]
    assert evse["connectors"][0]["standard"] == "IEC_62196_T2_COMBO"  # placeholder
    assert evse["connectors"][0]["standard@2.3.0"] == "MCS"
    assert canonical["evses"][1]["connectors"][0]["standard"] == "TESLA_S"
    # new and extension fields stay under their names
    assert canonical["help_phone"] == wire["help_phone"] and canonical["x_brand"] == wire["x_brand"]
    assert canonical["parking_places"] == wire["parking_places"]
    assert evse["accepted_service_providers"] == ["eMSP One", "eMSP Two"] and evse["x_vendor_status"] == "ok"
    assert evse["connectors"][0]["capabilities"] == ["ISO_15118_20_PLUG_AND_CHARGE"]

    assert normal(from_canonical("location", canonical)) == normal(wire)


def test_strip_for_221_location() -> None:
    canonical = stored("location", to_canonical("location", location_230()))
    for_221 = strip_for_221("location", canonical)
    assert keys_outside_model(v221.Location, for_221) == []
    assert "parking_type" not in for_221 and for_221["facilities"] == ["CAFE", "WIFI"]
    assert for_221["images"][0]["category"] == "OTHER"
    evse = for_221["evses"][0]
    assert "parking" not in evse and "accepted_service_providers" not in evse
    assert evse["capabilities"] == ["RFID_READER"] and evse["parking_restrictions"] == ["EV_ONLY"]
    # ConnectorType: verbatim for 2.2.1 partners (doc § 3.2), the only value outside the 2.2.1 enum
    assert evse["connectors"][0]["standard"] == "MCS" and "capabilities" not in evse["connectors"][0]
    assert for_221["evses"][1]["connectors"][0]["standard"] == "SAE_J3400"
    for e in for_221["evses"]:
        e["connectors"][0]["standard"] = "IEC_62196_T2"
    v221.Location.model_validate(for_221)


def test_stale_sidecar_is_ignored() -> None:
    canonical = stored("location", to_canonical("location", location_230()))
    canonical["facilities"] = ["HOTEL"]  # replaced through 2.2.1
    canonical["evses"][0]["connectors"][0]["standard"] = "CHADEMO"
    ctx = Context()
    wire = from_canonical("location", canonical, ctx)
    assert wire["facilities"] == ["HOTEL"]
    assert wire["evses"][0]["connectors"][0]["standard"] == "CHADEMO"
    assert wire["parking_type"] == "ROOFTOP"  # untouched: still valid
    assert len(ctx.notes) == 2
    assert "@2.3.0" not in json.dumps(wire)


def test_sidecar_keys_sent_by_a_partner_are_dropped() -> None:
    wire = {
        "facilities": ["CAFE"],
        "facilities@2.3.0": ["CAFE", "FAKE"],
        "last_updated": "2024-01-01T00:00:00Z",
    }
    canonical = to_canonical("location_patch", wire)
    assert canonical == {"facilities": ["CAFE"], "last_updated": "2024-01-01T00:00:00Z"}


def test_patch_with_unknown_values() -> None:
    patch = {
        "parking_restrictions": ["TENANTS"],
        "status": "AVAILABLE",
        "last_updated": "2024-01-01T00:00:00Z",
    }
    canonical = to_canonical("evse_patch", patch)
    assert canonical["parking_restrictions"] == [] and canonical["parking_restrictions@2.3.0"] == ["TENANTS"]
    assert from_canonical("evse_patch", canonical) == patch
    assert strip_for_221("evse_patch", canonical) == {**patch, "parking_restrictions": []}
    only_new = {"help_phone": "+1 555 0100", "last_updated": "2024-01-01T00:00:00Z"}
    assert strip_for_221("location_patch", to_canonical("location_patch", only_new)) == {
        "last_updated": "2024-01-01T00:00:00Z"
    }


# --------------------------------------------------------------------------------------------
# Tokens (EMAID), credentials (hub_party_id), the kinds
# --------------------------------------------------------------------------------------------


def test_emaid_token() -> None:
    wire = load(EXAMPLES_230 / "token_example_2_full_rfid.json")
    wire.update(type="EMAID", uid="NLTNMA123456789", contract_id="NL-TNM-A12345678-9")
    canonical = stored("token", to_canonical("token", wire))
    assert canonical["type"] == "OTHER" and canonical["type@2.3.0"] == "EMAID"
    assert normal(from_canonical("token", canonical)) == normal(wire)
    assert not sendable_to_221("token", canonical)
    assert strip_for_221("token", canonical)["type"] == "OTHER"
    assert sendable_to_221("token", load(EXAMPLES_221 / "token_example_2_full_rfid.json"))

    # embedded: a CDR's cdr_token, a StartSession's token
    cdr = load(EXAMPLES_230 / "cdr_example.json")
    cdr["cdr_token"]["type"] = "EMAID"
    canonical_cdr = stored("cdr", to_canonical("cdr", cdr))
    assert canonical_cdr["cdr_token"]["type"] == "OTHER"
    assert from_canonical("cdr", canonical_cdr)["cdr_token"]["type"] == "EMAID"
    assert strip_for_221("cdr", canonical_cdr)["cdr_token"] == {
        k: v for k, v in cdr["cdr_token"].items() if k != "type"
    } | {"type": "OTHER"}
    start = {"response_url": "https://e.example/r/1", "token": wire, "location_id": "LOC1"}
    canonical_start = to_canonical("start_session", start)
    v221.StartSession.model_validate(canonical_start)
    assert normal(from_canonical("start_session", canonical_start)) == normal(start)


def credentials_230(**changes: Any) -> dict[str, Any]:
    document = load(EXAMPLES_230 / "credentials_example.json")
    document.update(changes)
    return document


def test_hub_party_id() -> None:
    wire = credentials_230(hub_party_id="NLHUB")
    canonical = stored("credentials", to_canonical("credentials", wire))
    assert canonical["hub_party_id"] == "NLHUB"
    assert normal(from_canonical("credentials", canonical)) == normal(wire)
    assert "hub_party_id" not in strip_for_221("credentials", canonical)


def test_221_hub_role_becomes_hub_party_id() -> None:
    cpo = load(EXAMPLES_221 / "credentials_example.json")
    hub_role = {**cpo["roles"][0], "role": "HUB", "country_code": "NL", "party_id": "HUB"}
    canonical = {**cpo, "roles": [*cpo["roles"], hub_role]}
    ctx = Context()
    wire = from_canonical("credentials", canonical, ctx)
    assert wire["hub_party_id"] == "NLHUB" and wire["roles"] == cpo["roles"] and ctx.notes
    only_hub = from_canonical("credentials", {**cpo, "roles": [hub_role]})
    assert only_hub["roles"] == [hub_role] and only_hub["hub_party_id"] == "NLHUB"


def test_every_kind_converts() -> None:
    assert set(v230.RULES) == set(KINDS)
    for kind in KINDS:
        assert to_canonical(kind, {"x_ext": 1}) == {"x_ext": 1}
        assert strip_for_221(kind, {"x_ext": 1}) == {}
    with pytest.raises(ValueError):
        to_canonical("payments_terminal", {})
    with pytest.raises(ValueError):
        strip_for_221("payments_terminal", {})


def test_input_is_not_changed() -> None:
    wire = location_230()
    before = copy.deepcopy(wire)
    canonical = to_canonical("location", wire)
    assert wire == before
    frozen = copy.deepcopy(canonical)
    from_canonical("location", canonical)
    strip_for_221("location", canonical)
    assert canonical == frozen
