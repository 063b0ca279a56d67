"""OCPI 2.1.1 <-> canonical (2.2.1) converter, shared/versions/v211.py, against docs/versions-2.1.1.md.

1. Every JSON example of the 2.1.1 markdown (doc §12, read from the spec files at test time) converts
   to canonical, validates against the 2.2.1 model of its kind, and converts back equal to the
   original except for the differences listed per example (doc §11).
2. The official 2.2.1 example files convert to 2.1.1 and back, equal except for the listed §11.1
   losses; those the doc says are never sent raise `UnsupportedInVersion`.
3. Targeted tests of each hard rule.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import TypeAdapter

from shared.models.types import OcpiModel
from shared.models.v221 import (
    CDR,
    EVSE,
    AuthorizationInfo,
    CommandResponse,
    CommandResult,
    Connector,
    Credentials,
    Location,
    LocationReferences,
    ReserveNow,
    Session,
    StartSession,
    StopSession,
    Tariff,
    Token,
    UnlockConnector,
)
from shared.validation import validate
from shared.versions import KINDS, Context
from shared.versions.v211 import UnsupportedInVersion, derived_token, from_canonical, sendable, to_canonical

# --------------------------------------------------------------------------------------------
# Spec files (same discovery as tests/unit/test_models_examples.py `_examples_dir()`)
# --------------------------------------------------------------------------------------------


def _spec_dir() -> Path:
    """``<repo>/../shared/ocpi-spec``; ``$OCPI_SPEC_DIR`` when set (the folder holding ``2.2.1/``)."""
    default = Path(__file__).resolve().parents[3] / "shared" / "ocpi-spec"
    env = os.environ.get("OCPI_SPEC_DIR")
    if env and (Path(env) / "2.2.1" / "examples").is_dir():
        return Path(env)
    return default


SPEC_DIR = _spec_dir()
SPEC_211 = SPEC_DIR / "2.1.1"
EXAMPLES_221 = SPEC_DIR / "2.2.1" / "examples"


def _fences(path: Path) -> dict[int, str]:
    """Every ```json block of a markdown file: 1-based line of the opening fence -> body."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: dict[int, str] = {}
    start: int | None = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip().startswith("```json"):
            start = number
        elif start is not None and line.strip().startswith("```"):
            blocks[start] = "\n".join(lines[start : number - 1])
            start = None
    return blocks


def _example_211(file: str, line: int) -> Any:
    """The JSON of the block at ``file:line``: complete (§12.1), after a ``PUT/PATCH To URL`` line
    (§12.2), or a ``"key": {...}`` member (§12.3, wrapped in braces)."""
    body = _fences(SPEC_211 / file)[line].strip()
    if body.startswith(("PUT", "PATCH")):
        body = body.split("\n", 1)[1].strip()
    if body.startswith('"'):
        body = "{" + body + "}"
    return json.loads(body)


def _example_221(name: str) -> Any:
    return json.loads((EXAMPLES_221 / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Comparison helpers
# --------------------------------------------------------------------------------------------

GONE = object()  # the key is absent after the round trip


def normalise(value: Any) -> Any:
    """JSON value with every number as float (2 == 2.0 == 2.00)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def _paths(doc: Any, path: tuple[Any, ...]) -> list[tuple[Any, Any]]:
    """(container, key) pairs addressed by ``path``; ``"*"`` matches every list item."""
    head, *rest = path
    keys = range(len(doc)) if head == "*" else [head]
    out = []
    for key in keys:
        if not rest:
            out.append((doc, key))
        elif isinstance(doc, dict | list) and (key in doc if isinstance(doc, dict) else key < len(doc)):
            out.extend(_paths(doc[key], tuple(rest)))
    return out


Diff = tuple[tuple[Any, ...], Any, str]  # (path, new value | GONE | callable(old) -> new, doc reference)


def expected_after(original: Any, diffs: list[Diff]) -> Any:
    """``original`` with the documented differences applied."""
    doc = copy.deepcopy(original)
    for path, value, _ref in diffs:
        targets = _paths(doc, path)
        assert targets, f"documented difference {path} matches nothing"
        for container, key in targets:
            if value is GONE:
                if isinstance(container, dict):
                    container.pop(key, None)
            elif callable(value):
                container[key] = value(container[key])
            else:
                container[key] = value
    return doc


def assert_round_trip(original: Any, back: Any, diffs: list[Diff]) -> None:
    expected = expected_after(original, diffs)
    assert normalise(back) == normalise(expected)
    if diffs:  # every listed difference is real (no stale entries)
        assert normalise(back) != normalise(original)


_PARTIAL_MODELS: dict[str, type[OcpiModel]] = {
    "location_patch": Location,
    "evse_patch": EVSE,
    "connector_patch": Connector,
    "token_patch": Token,
    "session_patch": Session,
}


def validate_partial(model: type[OcpiModel], document: dict[str, Any]) -> None:
    """Each key is a field of ``model`` and its value validates as that field (a PATCH body)."""
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for key, value in document.items():
        assert key in fields, f"{key!r} is not a field of {model.__name__}"
        info = fields[key]
        annotation: Any = info.annotation
        if info.metadata:
            annotation = Annotated[(annotation, *info.metadata)]
        TypeAdapter(annotation).validate_python(value)


# --------------------------------------------------------------------------------------------
# A fake store behind the Context callables
# --------------------------------------------------------------------------------------------


def make_ctx(
    partner: tuple[str, str, str] | None = None,
    own: tuple[str, str, str] | None = None,
    tokens: list[dict[str, Any]] | None = None,
    locations: list[dict[str, Any]] | None = None,
) -> Context:
    calls: list[Any] = []
    find_token = None
    load_location = None
    if tokens is not None:

        def find_token(contract_id: str) -> dict[str, Any] | None:
            calls.append(("find_token", contract_id))
            return next((t for t in tokens if t["contract_id"].upper() == contract_id.upper()), None)

    if locations is not None:

        def load_location(cc: str, pid: str, location_id: str) -> dict[str, Any] | None:
            calls.append(("load_location", cc, pid, location_id))
            return next((loc for loc in locations if loc["id"] == location_id), None)

    ctx = Context(partner_party=partner, own_party=own, find_token=find_token, load_location=load_location)
    ctx.calls = calls  # type: ignore[attr-defined]
    return ctx


CPO_BE = ("BE", "BEC", "CPO")
EMSP_DE = ("DE", "TNM", "EMSP")
TOKEN_DE = {  # our (eMSP) token behind the 2.1.1 examples' auth_id
    "country_code": "DE",
    "party_id": "TNM",
    "uid": "012345678",
    "type": "RFID",
    "contract_id": "DE8ACC12E46L89",
    "issuer": "TheNewMotion",
    "valid": True,
    "whitelist": "ALLOWED",
    "last_updated": "2015-06-29T22:39:09Z",
}


def _stored(location_211: dict[str, Any]) -> dict[str, Any]:
    """What a CPO's earlier PUT of this 2.1.1 Location left in our store (canonical)."""
    return to_canonical("location", location_211, make_ctx(partner=CPO_BE))


# --------------------------------------------------------------------------------------------
# 1. The 2.1.1 markdown examples (docs/versions-2.1.1.md §12)
# --------------------------------------------------------------------------------------------

# §11.2 "round-trips identically except for" items, cited by number.
R2_TZ = "§11.2 item 2: a missing time_zone comes back filled"
R3_HOURS = "§11.2 item 3: Hours sent with both keys come back as one"
R7_LOC = "§11.2 item 7 / §8.3: the Session/CDR location is re-assembled"
G1_EMPTY = "§11.2 item 10 / §0 G1: null, [] and absent are the same; →W omits empty lists"
NUM_STR = "§11.2 item 11 / §12 #18: numeric strings are read as numbers (lenient 2.1.1 parsing)"

CDR_STAMP = "2015-06-29T21:39:09Z"  # the CDR's start_date_time (§8.3 last_updated rule)


@dataclass(frozen=True)
class Example211:
    ref: str  # docs/versions-2.1.1.md §12 row
    file: str
    line: int  # line of the ```json fence
    kind: str | None  # converter kind; None: not a converter object (versions, envelope)
    model: Any = None  # 2.2.1 model the canonical form must validate against
    ctx: Callable[[], Context] | None = None
    diffs: tuple[Diff, ...] = ()
    envelope: str = ""  # "one" / "list": the object(s) are the envelope's `data`
    partial: bool = False  # a PATCH body / fragment: validate field by field


def _session_ctx(location_211: dict[str, Any]) -> Context:
    return make_ctx(partner=CPO_BE, own=EMSP_DE, tokens=[TOKEN_DE], locations=[_stored(location_211)])


def _embedded_location(file: str, line: int) -> Callable[[], Context]:
    return lambda: _session_ctx(_example_211(file, line)["location"])


EXAMPLES_211 = [
    Example211("#1", "transport_and_format.md", 226, None),
    Example211("#2", "transport_and_format.md", 243, None),
    Example211("#3", "transport_and_format.md", 278, "token", Token, envelope="one"),
    Example211("#4", "transport_and_format.md", 299, "token", Token, envelope="list"),
    Example211("#5", "transport_and_format.md", 338, None),
    Example211("#6", "version_information_endpoint.md", 49, None),
    Example211("#7", "version_information_endpoint.md", 150, None),
    Example211(
        "#8", "credentials.md", 94, "credentials", Credentials, lambda: make_ctx(partner=("NL", "EXA", "CPO"))
    ),
    Example211(
        "#9",
        "mod_locations.md",
        431,
        "location",
        Location,
        diffs=(
            (("time_zone",), "Europe/Brussels", R2_TZ + " (BEL has one zone in zone1970.tab)"),
            (("evses", 0, "status_schedule"), GONE, G1_EMPTY),
        ),
    ),
    Example211("#10", "mod_tariffs.md", 293, "tariff", Tariff),
    Example211("#11", "mod_tariffs.md", 309, "tariff", Tariff),
    Example211("#12", "mod_tariffs.md", 333, "tariff", Tariff),
    Example211("#13", "mod_tariffs.md", 359, "tariff", Tariff),
    Example211("#14", "mod_tariffs.md", 427, "tariff", Tariff),
    Example211("#15", "mod_tokens.md", 360, "token", Token),
    Example211(
        "#16",
        "mod_sessions.md",
        244,
        "session",
        Session,
        _embedded_location("mod_sessions.md", 244),
        diffs=((("location", "time_zone"), "Europe/Brussels", R7_LOC + "; " + R2_TZ),),
    ),
    Example211(
        "#17",
        "mod_sessions.md",
        327,
        "session",
        Session,
        _embedded_location("mod_sessions.md", 327),
        diffs=((("location", "time_zone"), "Europe/Brussels", R7_LOC + "; " + R2_TZ),),
    ),
    Example211(
        "#18",
        "mod_cdrs.md",
        249,
        "cdr",
        CDR,
        _embedded_location("mod_cdrs.md", 249),
        diffs=(
            (("tariffs", 0, "elements", 0, "price_components", 0, "price"), 2.0, NUM_STR),
            (("location", "evses", 0, "status"), "UNKNOWN", R7_LOC + " (EVSE status UNKNOWN)"),
            (("location", "evses", 0, "connectors", 0, "tariff_id"), "12", R7_LOC + " (tariffs[0].id)"),
            (("location", "last_updated"), CDR_STAMP, R7_LOC + " (last_updated := start_date_time)"),
            (("location", "evses", 0, "last_updated"), CDR_STAMP, R7_LOC),
            (("location", "evses", 0, "connectors", 0, "last_updated"), CDR_STAMP, R7_LOC),
        ),
    ),
    # §12.2: bodies after a "PUT/PATCH To URL" line
    Example211("#19", "mod_locations.md", 289, "evse_patch", EVSE, partial=True),
    Example211("#20", "mod_locations.md", 302, "location_patch", Location, partial=True),
    Example211("#21", "mod_locations.md", 315, "connector_patch", Connector, partial=True),
    Example211("#22", "mod_locations.md", 328, None),  # incomplete EVSE (doc §12.2): see its own test
    Example211("#23", "mod_locations.md", 354, "evse_patch", EVSE, partial=True),
    Example211("#24", "mod_sessions.md", 190, "session_patch", Session, partial=True),
    Example211("#25", "mod_tariffs.md", 186, None),  # Tariff without last_updated: see its own test
    Example211("#26", "mod_tariffs.md", 208, None),  # Tariff PATCH: no tariff_patch kind (§5): own test
    Example211("#27", "mod_tokens.md", 128, "token", Token),
    Example211("#28", "mod_tokens.md", 168, "token_patch", Token, partial=True),
    # §12.3: member fragments, which are Location PATCH bodies
    Example211("#29", "mod_locations.md", 707, "location_patch", Location, partial=True),
    Example211("#30", "mod_locations.md", 715, "location_patch", Location, partial=True),
    Example211("#31", "mod_locations.md", 725, "location_patch", Location, partial=True),
    Example211(
        "#32",
        "mod_locations.md",
        1006,
        "location_patch",
        Location,
        partial=True,
        diffs=((("opening_times", "twentyfourseven"), GONE, R3_HOURS),),
    ),
]

PATCH_STAMP = "§11.2 item 8: PATCH bodies gain last_updated"


def test_every_json_block_of_the_211_markdown_is_listed() -> None:
    found = {(p.name, line) for p in SPEC_211.glob("*.md") for line in _fences(p)}
    listed = {(e.file, e.line) for e in EXAMPLES_211}
    assert found == listed


@pytest.mark.parametrize(
    "ex", [e for e in EXAMPLES_211 if e.kind], ids=lambda e: f"{e.ref}-{e.file}:{e.line}"
)
def test_211_example_round_trip(ex: Example211) -> None:
    document = _example_211(ex.file, ex.line)
    objects = [document["data"]] if ex.envelope == "one" else document["data"] if ex.envelope else [document]
    for original in objects:
        ctx = ex.ctx() if ex.ctx else make_ctx(partner=CPO_BE)
        frozen = copy.deepcopy(original)
        canonical = to_canonical(ex.kind, original, ctx)
        assert original == frozen  # input not mutated
        diffs = list(ex.diffs)
        if ex.partial:
            if "last_updated" not in original:
                assert "last_updated" in canonical
                diffs.append((("last_updated",), canonical["last_updated"], PATCH_STAMP))
            validate_partial(ex.model, canonical)
        else:
            validate(ex.model, canonical)
        back = from_canonical(ex.kind, canonical, ctx)
        assert_round_trip(original, back, diffs)


def test_211_add_evse_example_is_incomplete() -> None:
    # §12 #22: no last_updated, connector without power_type/voltage/amperage, numbers for strings.
    canonical = to_canonical("evse", _example_211("mod_locations.md", 328), make_ctx())
    with pytest.raises(Exception, match="last_updated"):
        validate(EVSE, canonical)
    assert canonical["connectors"][0] == {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "tariff_ids": ["14"],
    }


def test_211_tariff_put_example_only_lacks_last_updated() -> None:
    # §12 #25
    document = _example_211("mod_tariffs.md", 186)
    canonical = to_canonical("tariff", {**document, "last_updated": "2015-06-29T20:39:09Z"}, make_ctx(CPO_BE))
    validate(Tariff, canonical)
    assert canonical["country_code"] == "BE" and canonical["party_id"] == "BEC"


def test_211_tariff_patch_example_elements_map_like_a_tariff() -> None:
    # §12 #26 / §5 "Tariff PATCH": the elements of a 2.1.1 Tariff PATCH map with the Tariff table.
    body = _example_211("mod_tariffs.md", 208)
    canonical = to_canonical("tariff", body, make_ctx(partner=CPO_BE))
    assert canonical["elements"] == body["elements"]
    validate_partial(Tariff, {"elements": canonical["elements"]})


# --------------------------------------------------------------------------------------------
# 2. The official 2.2.1 examples: canonical -> 2.1.1 -> canonical (§11.1 losses)
# --------------------------------------------------------------------------------------------

L_VAT = "§11.1 Tariff: PriceComponent vat"
L_TYPE = "§11.1 Tariff: type"
L_CURRENT = "§11.1 Tariff: elements with min_current/max_current dropped"
L_RESERVATION = "§11.1 Tariff: elements with a reservation restriction dropped"
L_TOKEN = "§11.1 Token: group_id, default_profile_type, energy_contract"
L_INCL_VAT = "§11.1 Session/CDR: total_cost.incl_vat"
L_PERIOD_TARIFF = "§11.1 Session: ChargingPeriod tariff_id"
L_ROLES = "§11.1 Credentials: all roles but one"
ALL_VAT = (("elements", "*", "price_components", "*", "vat"), GONE, L_VAT)

LOCATION_221 = _example_221("location_example")


def _ctx_221(name: str, doc: dict[str, Any]) -> Context:
    owner = (doc.get("country_code", "NL"), doc.get("party_id", "EXA"), "CPO")
    token = doc.get("cdr_token")
    if token:
        stored_token = {**TOKEN_DE, **token}
        return make_ctx(partner=owner, own=(token["country_code"], token["party_id"], "EMSP"),
                        tokens=[stored_token], locations=[LOCATION_221])  # fmt: skip
    if name.startswith("credentials"):
        return make_ctx(
            partner=(doc["roles"][0]["country_code"], doc["roles"][0]["party_id"], doc["roles"][0]["role"])
        )
    return make_ctx(partner=owner)


EXAMPLES_221_ROUND_TRIP: dict[str, tuple[str, Any, list[Diff]]] = {
    "location_example": ("location", Location, []),
    "location_example_parking_garage_opening_hours": ("location", Location, []),
    "location_example_uc2_destination_charger": ("location", Location, []),
    "tariff_1_simple_2hour": ("tariff", Tariff, [ALL_VAT]),
    "tariff_4_complex": (
        "tariff",
        Tariff,
        [
            ALL_VAT,
            (("type",), GONE, L_TYPE + " (REGULAR)"),
            (("elements",), lambda els: [els[0], els[4], els[5]], L_CURRENT + " (elements 1-3)"),
        ],
    ),
    "tariff_5_free_of_charge": ("tariff", Tariff, []),
    "tariff_6_025kwh_start_max_price": (
        "tariff",
        Tariff,
        [
            ALL_VAT,
            (("max_price",), GONE, "§11.1 Tariff: max_price"),
            (("end_date_time",), GONE, "§11.1 Tariff"),
        ],
    ),
    "tariff_8_simple_025kwh": ("tariff", Tariff, [ALL_VAT]),
    "tariff_9_025kwh_start": ("tariff", Tariff, [ALL_VAT]),
    "tariff_10_025kwh_parking_start": ("tariff", Tariff, [ALL_VAT]),
    "tariff_12_025kwh_min_price": (
        "tariff",
        Tariff,
        [ALL_VAT, (("min_price",), GONE, "§11.1 Tariff: min_price")],
    ),
    "tariff_13_simple_3hour_5parking": ("tariff", Tariff, [ALL_VAT]),
    "tariff_14_step_size": ("tariff", Tariff, []),
    "tariff_15_reservation_5_euro_per_hour": (
        "tariff",
        Tariff,
        [ALL_VAT, (("elements",), lambda els: els[1:], L_RESERVATION)],
    ),
    "tariff_16_reservation_2_euro_fee_5_euro_per_hour": (
        "tariff",
        Tariff,
        [ALL_VAT, (("elements",), lambda els: els[1:], L_RESERVATION)],
    ),
    "tariff_17_reservation_with_expire_fee": (
        "tariff",
        Tariff,
        [ALL_VAT, (("elements",), lambda els: els[2:], L_RESERVATION)],
    ),
    "tariff_18_reservation_with_expire_time": (
        "tariff",
        Tariff,
        [ALL_VAT, (("elements",), lambda els: els[2:], L_RESERVATION)],
    ),
    "tariffrestriction_example_max_duration": ("tariff", Tariff, [ALL_VAT, (("type",), GONE, L_TYPE)]),
    "tariffrestriction_example_max_power": ("tariff", Tariff, [ALL_VAT, (("type",), GONE, L_TYPE)]),
    "token_example_1_app_user": (
        "token",
        Token,
        [(("type",), "OTHER", "§11.1 Token: type APP_USER → OTHER")],
    ),
    "token_example_2_full_rfid": (
        "token",
        Token,
        [
            (("group_id",), GONE, L_TOKEN),
            (("default_profile_type",), GONE, L_TOKEN),
            (("energy_contract",), GONE, L_TOKEN),
        ],
    ),
    "token_put_example": ("token", Token, [(("group_id",), GONE, L_TOKEN)]),
    "session_example_1_simple_start": ("session", Session, []),
    "session_example_2_short_finished": (
        "session",
        Session,
        [
            (("total_cost", "incl_vat"), GONE, L_INCL_VAT),
            (("charging_periods", 2, "tariff_id"), GONE, L_PERIOD_TARIFF),
        ],
    ),
    "cdr_example": (
        "cdr",
        CDR,
        [
            (("total_cost", "incl_vat"), GONE, L_INCL_VAT),
            (("total_time_cost",), GONE, "§11.1 CDR: the five total_*_cost fields"),
            (("charging_periods", 0, "tariff_id"), GONE, L_PERIOD_TARIFF),
            (("tariffs", 0, "elements", 0, "price_components", 0, "vat"), GONE, L_VAT),
        ],
    ),
    "credentials_example": ("credentials", Credentials, []),
    "credentials_example3": ("credentials", Credentials, []),
    "credentials_example4": ("credentials", Credentials, [(("roles",), lambda rs: rs[:1], L_ROLES)]),
    # PATCH bodies
    "location_patch_example_location": ("location_patch", Location, []),
    "location_patch_example_status": ("evse_patch", EVSE, []),
    "location_patch_example_remove_evse": ("evse_patch", EVSE, []),
    "location_patch_example_tariff": ("connector_patch", Connector, []),
    "session_patch_example_total_cost": (
        "session_patch",
        Session,
        [(("total_cost", "incl_vat"), GONE, L_INCL_VAT)],
    ),
    "session_patch_example_charging_period": (
        "session_patch",
        Session,
        [(("total_cost", "incl_vat"), GONE, L_INCL_VAT)],
    ),
    "token_patch_example": ("token_patch", Token, []),
}

# 2.2.1 examples that 2.1.1 never receives (§4.1 publish, §5 type), or that are not round-tripped here.
NOT_SENT_221 = {
    "location_example_uc3_destination_charger_not_published": "location",
    "location_example_uc4_limited_visibility": "location",
    "location_example_uc5_home_charge_point": "location",
    "tariff_2_alt_text": "tariff",  # AD_HOC_PAYMENT
    "tariff_3_alt_url": "tariff",  # PROFILE_CHEAP
    "tariff_11_not_possible_alt_text": "tariff",  # AD_HOC_PAYMENT
}
OTHER_221 = {
    "credentials_example2": "own test (role choice)",
    "location_put_example_add_evse": "invalid 2.2.1 example (test_models_examples)",
    "tariff_put_example": "invalid 2.2.1 example: no last_updated",
    "location_energymix_example_complete": "fragment: own test",
    "location_energymix_example_energy_provider": "fragment: own test",
    "location_energymix_example_simple": "fragment: own test",
    "location_hours_247_open_exception_closing": "Hours: own test",
    "location_hours_opening_hours_with_exceptional_closing": "Hours: own test",
    "location_hours_opening_hours_with_exceptional_opening": "Hours: own test",
    "location_regularhours_example": "fragment: own test",
    "transport_and_format_get_token_example": "envelope: own test",
    "transport_and_format_get_token_list_example": "envelope: own test",
    "transport_and_format_version_details_example": "versions: not a converter kind",
    "transport_and_format_version_info_example": "versions: not a converter kind",
    "type_displaytext_example": "DisplayText: identity",
    "version_details_example": "versions: not a converter kind",
    "version_details_example2": "versions: not a converter kind",
    "versions_info_example": "versions: not a converter kind",
}


def test_every_221_example_is_classified() -> None:
    stems = {p.stem for p in EXAMPLES_221.glob("*.json")}
    assert stems, f"no 2.2.1 examples in {EXAMPLES_221}"
    classified = set(EXAMPLES_221_ROUND_TRIP) | set(NOT_SENT_221) | set(OTHER_221)
    assert stems == classified


@pytest.mark.parametrize("name", sorted(EXAMPLES_221_ROUND_TRIP))
def test_221_example_round_trip(name: str) -> None:
    kind, model, diffs = EXAMPLES_221_ROUND_TRIP[name]
    original = _example_221(name)
    ctx = _ctx_221(name, original)
    wire = from_canonical(kind, original, ctx)
    assert "country_code" not in wire or kind == "credentials"
    back = to_canonical(kind, wire, ctx)
    if kind.endswith("_patch"):
        validate_partial(model, back)
    else:
        validate(model, back)
    assert_round_trip(original, back, diffs)


@pytest.mark.parametrize("name", sorted(NOT_SENT_221))
def test_221_examples_never_sent_to_211(name: str) -> None:
    kind = NOT_SENT_221[name]
    document = _example_221(name)
    with pytest.raises(UnsupportedInVersion, match=r"2\.1\.1"):
        from_canonical(kind, document, make_ctx())
    assert not sendable(kind, document)


def test_221_private_locations_made_public_lose_what_2_1_1_lacks() -> None:
    # §11.1 Location: publish_allowed_to; parking_type ON_DRIVEWAY → OTHER (reads back as none).
    original = {**_example_221("location_example_uc5_home_charge_point"), "publish": True}
    wire = from_canonical("location", original, make_ctx())
    assert wire["type"] == "OTHER" and "publish_allowed_to" not in wire and "publish" not in wire
    back = to_canonical("location", wire, make_ctx(partner=("DE", "ALL", "CPO")))
    validate(Location, back)
    assert_round_trip(
        original,
        back,
        [
            (("publish_allowed_to",), GONE, "§11.1 Location"),
            (("parking_type",), GONE, "§11.1 Location: ON_DRIVEWAY"),
        ],
    )


def test_221_credentials_with_two_roles_send_the_own_role() -> None:
    original = _example_221("credentials_example2")
    ctx = make_ctx(own=("NL", "EXA", "EMSP"))
    wire = from_canonical("credentials", original, ctx)
    assert wire == {
        "token": original["token"],
        "url": original["url"],
        "business_details": {"name": "Example Provider"},
        "party_id": "EXA",
        "country_code": "NL",
    }
    back = to_canonical("credentials", wire, make_ctx(partner=("NL", "EXA", "EMSP")))
    assert_round_trip(original, back, [(("roles",), lambda rs: rs[1:], L_ROLES)])
    assert any("role(s) dropped" in n for n in ctx.notes)


def test_221_fragments_and_envelopes() -> None:
    for name in ("location_energymix_example_complete", "location_energymix_example_energy_provider",
                 "location_energymix_example_simple", "location_regularhours_example"):  # fmt: skip
        original = _example_221(name)
        back = to_canonical(
            "location_patch", from_canonical("location_patch", original, make_ctx()), make_ctx()
        )
        back.pop("last_updated")
        assert normalise(back) == normalise(original)
    for name in (
        "location_hours_247_open_exception_closing",
        "location_hours_opening_hours_with_exceptional_closing",
        "location_hours_opening_hours_with_exceptional_opening",
    ):
        original = _example_221(name)
        wire = from_canonical("location_patch", {"opening_times": original}, make_ctx())["opening_times"]
        assert ("twentyfourseven" in wire) != ("regular_hours" in wire)  # 2.1.1: a choice of one (§4.5)
        back = to_canonical("location_patch", {"opening_times": wire}, make_ctx())["opening_times"]
        assert back == original
    for name in ("transport_and_format_get_token_example", "transport_and_format_get_token_list_example"):
        data = _example_221(name)["data"]
        for token in data if isinstance(data, list) else [data]:
            ctx = make_ctx(partner=(token["country_code"], token["party_id"], "EMSP"))
            back = to_canonical("token", from_canonical("token", token, ctx), ctx)
            assert_round_trip(token, back, [(("group_id",), GONE, L_TOKEN)] if "group_id" in token else [])


# --------------------------------------------------------------------------------------------
# 3. Targeted rules
# --------------------------------------------------------------------------------------------


def _session_211(**extra: Any) -> dict[str, Any]:
    return {**_example_211("mod_sessions.md", 244), **extra}


def test_kinds_cover_the_contract() -> None:
    for kind in KINDS:
        if kind == "cancel_reservation":
            continue
        assert isinstance(to_canonical(kind, {}, make_ctx()), dict)
    with pytest.raises(ValueError, match="unknown object kind"):
        to_canonical("chargingprofile", {}, make_ctx())


def test_cancel_reservation_is_unsupported() -> None:
    body = {"response_url": "https://e.example/r/1", "reservation_id": "1"}
    for convert in (to_canonical, from_canonical):
        with pytest.raises(UnsupportedInVersion) as excinfo:
            convert("cancel_reservation", body, make_ctx())
        assert isinstance(excinfo.value, ValueError)
        assert "cancel_reservation" in str(excinfo.value) and "2.1.1" in str(excinfo.value)


def test_cdr_token_from_find_token() -> None:
    rfid = {**TOKEN_DE, "country_code": "DE", "party_id": "TNM"}
    ctx = make_ctx(partner=CPO_BE, own=("NL", "XXX", "EMSP"), tokens=[rfid])
    canonical = to_canonical("session", _session_211(), ctx)
    assert canonical["cdr_token"] == {
        "country_code": "DE",
        "party_id": "TNM",
        "uid": "012345678",
        "type": "RFID",
        "contract_id": "DE8ACC12E46L89",
    }
    assert ("find_token", "DE8ACC12E46L89") in ctx.calls  # type: ignore[attr-defined]
    assert not any("cdr_token" in n for n in ctx.notes)


@pytest.mark.parametrize("tokens", [None, []], ids=["no-find_token", "token-unknown"])
def test_cdr_token_without_a_token(tokens: list[dict[str, Any]] | None) -> None:
    ctx = make_ctx(partner=CPO_BE, own=EMSP_DE, tokens=tokens)
    canonical = to_canonical("cdr", _example_211("mod_cdrs.md", 249), ctx)
    assert canonical["cdr_token"] == {
        "country_code": "DE",
        "party_id": "TNM",
        "uid": "DE8ACC12E46L89",
        "type": "OTHER",
        "contract_id": "DE8ACC12E46L89",
    }
    assert any("cdr_token derived" in n for n in ctx.notes)
    validate(CDR, canonical)
    # →W: auth_id := contract_id, the rest of the CdrToken is dropped (§8.2)
    assert from_canonical("cdr", canonical, ctx)["auth_id"] == "DE8ACC12E46L89"


def test_cdr_token_without_own_party_is_noted() -> None:
    ctx = make_ctx(partner=CPO_BE)
    canonical = to_canonical("session", _session_211(), ctx)
    assert "country_code" not in canonical["cdr_token"]
    assert any("owner unknown" in n for n in ctx.notes)


def test_session_location_rebuilt_from_the_store() -> None:
    stored = copy.deepcopy(LOCATION_221)  # LOC1 with EVSEs 3256 (connectors 1, 2) and 3257
    stored["publish"] = False  # the embedded location is not a Location push: publish does not matter
    ctx = make_ctx(own=CPO_BE, locations=[stored])
    session = {**_example_221("session_example_2_short_finished")}
    wire = from_canonical("session", session, ctx)
    location = wire["location"]
    assert ("load_location", "BE", "BEC", "LOC1") in ctx.calls  # type: ignore[attr-defined]
    assert [e["uid"] for e in location["evses"]] == ["3256"]
    assert [c["id"] for c in location["evses"][0]["connectors"]] == ["1"]
    assert location["evses"][0]["connectors"][0]["voltage"] == 220
    assert location["operator"] == {"name": "BeCharged"} and location["type"] == "ON_STREET"
    assert "publish" not in location and "country_code" not in location
    assert {"location_id", "evse_uid", "connector_id", "cdr_token"}.isdisjoint(wire)
    assert wire["auth_id"] == "NL-TST-C12345678-S"
    back = to_canonical("session", wire, make_ctx(partner=CPO_BE, own=("NL", "TST", "EMSP")))
    assert (back["location_id"], back["evse_uid"], back["connector_id"]) == ("LOC1", "3256", "1")


def test_session_location_without_the_store() -> None:
    ctx = make_ctx(own=CPO_BE)
    wire = from_canonical("session", _example_221("session_example_1_simple_start"), ctx)
    assert wire["location"] == {"id": "LOC1", "evses": [{"uid": "3256", "connectors": [{"id": "1"}]}]}
    assert any("not known" in n for n in ctx.notes)
    # EVSE not in the stored location: the EVSE skeleton is added
    ctx = make_ctx(own=CPO_BE, locations=[LOCATION_221])
    session = {**_example_221("session_example_1_simple_start"), "evse_uid": "9999"}
    wire = from_canonical("session", session, ctx)
    assert wire["location"]["evses"] == [{"uid": "9999", "connectors": [{"id": "1"}]}]
    assert wire["location"]["name"] == "Gent Zuid"
    # a reservation without EVSE (#NA): no evses
    session = {**_example_221("session_example_1_simple_start"), "evse_uid": "#NA", "connector_id": "#NA"}
    assert "evses" not in from_canonical("session", session, make_ctx(own=CPO_BE))["location"]


def test_session_location_without_evse_reads_na() -> None:
    session = _session_211()
    session["location"] = {k: v for k, v in session["location"].items() if k != "evses"}
    ctx = make_ctx(partner=CPO_BE, own=EMSP_DE)
    canonical = to_canonical("session", session, ctx)
    assert (canonical["evse_uid"], canonical["connector_id"]) == ("#NA", "#NA")
    validate(Session, canonical)


def test_cdr_location_rebuilt_with_and_without_the_store() -> None:
    cdr = _example_221("cdr_example")
    stored = copy.deepcopy(LOCATION_221)
    stored["evses"][0]["connectors"][0].update(max_voltage=230, max_amperage=32)
    ctx = make_ctx(own=CPO_BE, locations=[stored])
    location = from_canonical("cdr", cdr, ctx)["location"]
    assert location["type"] == "ON_STREET"
    connector = location["evses"][0]["connectors"][0]
    assert (connector["voltage"], connector["amperage"], connector["tariff_id"]) == (230, 32, "12")
    assert location["evses"][0]["status"] == "UNKNOWN"
    assert location["last_updated"] == cdr["start_date_time"]
    ctx = make_ctx(own=CPO_BE)
    location = from_canonical("cdr", cdr, ctx)["location"]
    connector = location["evses"][0]["connectors"][0]
    assert (location["type"], connector["voltage"], connector["amperage"]) == ("UNKNOWN", 0, 0)
    assert any("not stored" in n for n in ctx.notes)


def test_cdr_location_na_evse_and_missing_evse_id() -> None:
    cdr = _example_221("cdr_example")
    cdr["cdr_location"] = {**cdr["cdr_location"], "evse_uid": "#NA", "evse_id": "#NA", "connector_id": "#NA"}
    assert "evses" not in from_canonical("cdr", cdr, make_ctx())["location"]
    cdr_211 = _example_211("mod_cdrs.md", 249)
    del cdr_211["location"]["evses"][0]["evse_id"]
    ctx = make_ctx(partner=CPO_BE, own=EMSP_DE)
    assert to_canonical("cdr", cdr_211, ctx)["cdr_location"]["evse_id"] == "#NA"
    assert any("evse_id missing" in n for n in ctx.notes)


def test_connector_tariff_ids() -> None:
    ctx = make_ctx()
    connector = copy.deepcopy(LOCATION_221["evses"][0]["connectors"][0])
    connector["tariff_ids"] = ["11", "12", "13"]
    wire = from_canonical("connector", connector, ctx)
    assert wire["tariff_id"] == "11" and "tariff_ids" not in wire
    assert any("tariff_ids" in n for n in ctx.notes)
    assert to_canonical("connector", wire, make_ctx())["tariff_ids"] == ["11"]
    connector["tariff_ids"] = []
    assert "tariff_id" not in from_canonical("connector", connector, make_ctx())
    wire = from_canonical(
        "connector", {**connector, "max_electric_power": 7400, "power_type": "AC_2_PHASE"}, ctx
    )
    assert (wire["voltage"], wire["amperage"], wire["power_type"]) == (220, 16, "AC_1_PHASE")
    assert "max_electric_power" not in wire and "max_voltage" not in wire


def test_connector_standards_2_1_1_lacks() -> None:
    connector = {**LOCATION_221["evses"][0]["connectors"][0], "standard": "GBT_DC"}
    with pytest.raises(UnsupportedInVersion, match="GBT_DC"):
        from_canonical("connector", connector, make_ctx())
    evse = {**LOCATION_221["evses"][1], "connectors": [connector]}
    with pytest.raises(UnsupportedInVersion):
        from_canonical("evse", evse, make_ctx())
    location = copy.deepcopy(LOCATION_221)
    location["evses"][1]["connectors"][0]["standard"] = "NEMA_5_20"
    location["evses"][0]["connectors"][1]["standard"] = "CHAOJI"
    ctx = make_ctx()
    wire = from_canonical("location", location, ctx)
    assert [e["uid"] for e in wire["evses"]] == ["3256"]
    assert [c["id"] for c in wire["evses"][0]["connectors"]] == ["1"]
    assert len([n for n in ctx.notes if "left out" in n]) == 3  # two connectors, then EVSE 3257


def test_credentials_single_party_and_roles() -> None:
    flat = _example_211("credentials.md", 94)
    for ctx, role in ((make_ctx(partner=("NL", "EXA", "EMSP")), "EMSP"), (make_ctx(), "CPO")):
        canonical = to_canonical("credentials", {**flat, "role": "CPO"} if role == "CPO" else flat, ctx)
        validate(Credentials, canonical)
        assert canonical["roles"] == [
            {
                "role": role,
                "business_details": flat["business_details"],
                "party_id": "EXA",
                "country_code": "NL",
            }
        ]
        assert set(canonical) == {"url", "token", "roles"}
    ctx = make_ctx()
    assert "role" not in to_canonical("credentials", flat, ctx)["roles"][0]
    assert any("role unknown" in n for n in ctx.notes)
    # from canonical: the first role without own_party, the matching one with it
    two = _example_221("credentials_example2")
    assert from_canonical("credentials", two, make_ctx())["business_details"]["name"] == "Example Operator"
    own = make_ctx(own=("NL", "EXA", "EMSP"))
    assert from_canonical("credentials", two, own)["business_details"]["name"] == "Example Provider"
    assert set(from_canonical("credentials", two, own)) == {
        "token",
        "url",
        "business_details",
        "party_id",
        "country_code",
    }


def test_patch_kinds_map_only_present_fields() -> None:
    ctx = make_ctx(partner=CPO_BE)
    assert to_canonical(
        "connector_patch", {"tariff_id": "15", "last_updated": "2019-06-24T12:39:09Z"}, ctx
    ) == {
        "tariff_ids": ["15"],
        "last_updated": "2019-06-24T12:39:09Z",
    }
    assert to_canonical("connector_patch", {"voltage": 400, "last_updated": "X"}, ctx) == {
        "max_voltage": 400,
        "last_updated": "X",
    }
    assert to_canonical("location_patch", {"type": "OTHER", "last_updated": "X"}, ctx) == {
        "parking_type": None,
        "last_updated": "X",
    }
    assert to_canonical("location_patch", {"postal_code": "", "last_updated": "X"}, ctx) == {
        "postal_code": None,
        "last_updated": "X",
    }
    assert to_canonical("session_patch", {"total_cost": 0.60, "last_updated": "X"}, ctx) == {
        "total_cost": {"excl_vat": 0.60},
        "last_updated": "X",
    }
    assert to_canonical("token_patch", {"auth_id": "C1", "last_updated": "X"}, ctx) == {
        "contract_id": "C1",
        "last_updated": "X",
    }
    assert from_canonical(
        "connector_patch", {"tariff_ids": ["15"], "last_updated": "2019-06-24T12:39:09.250Z"}, ctx
    ) == {
        "tariff_id": "15",
        "last_updated": "2019-06-24T12:39:09Z",
    }
    assert from_canonical("location_patch", {"name": "N"}, ctx) == {"name": "N"}
    assert from_canonical("session_patch", {"kwh": 3}, ctx) == {"kwh": 3}
    assert from_canonical("evse_patch", {"status": "CHARGING"}, ctx) == {"status": "CHARGING"}
    assert from_canonical("token_patch", {"valid": False}, ctx) == {"valid": False}
    # a 2.1.1 PATCH without last_updated gets the time of receipt (§1.8), and a note
    ctx = make_ctx()
    before = datetime.now(UTC).replace(microsecond=0)
    body = to_canonical("evse_patch", {"status": "CHARGING"}, ctx)
    assert set(body) == {"status", "last_updated"}
    assert before <= datetime.strptime(body["last_updated"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert any("last_updated" in n for n in ctx.notes)


def test_session_patch_location_and_auth_id() -> None:
    ctx = make_ctx(partner=CPO_BE, own=EMSP_DE, tokens=[TOKEN_DE])
    location = _session_211()["location"]
    body = to_canonical(
        "session_patch", {"location": location, "auth_id": "DE8ACC12E46L89", "last_updated": "X"}, ctx
    )
    assert body == {
        "location_id": "LOC1",
        "evse_uid": "3256",
        "connector_id": "1",
        "cdr_token": {k: TOKEN_DE[k] for k in ("country_code", "party_id", "uid", "type", "contract_id")},
        "last_updated": "X",
    }


def test_unsupported_objects() -> None:
    cdr = _example_221("cdr_example")
    credit = {**cdr, "id": "12345-C", "credit": True, "credit_reference_id": "12345"}
    with pytest.raises(UnsupportedInVersion, match="Credit CDR"):
        from_canonical("cdr", credit, make_ctx())
    assert sendable("cdr", cdr) and not sendable("cdr", credit)
    reserve = {
        "response_url": "https://e.example/r/1",
        "token": _example_221("token_example_2_full_rfid"),
        "expiry_date": "2020-01-01T12:00:00.5Z",
        "reservation_id": "abc-1",
        "location_id": "LOC1",
    }
    with pytest.raises(UnsupportedInVersion, match="reservation_id"):
        from_canonical("reserve_now", reserve, make_ctx())
    with pytest.raises(UnsupportedInVersion):
        from_canonical("reserve_now", {**reserve, "reservation_id": str(2**31)}, make_ctx())
    reserve_only = {**_example_221("tariff_15_reservation_5_euro_per_hour")}
    reserve_only["elements"] = reserve_only["elements"][:1]
    with pytest.raises(UnsupportedInVersion, match="no element"):
        from_canonical("tariff", reserve_only, make_ctx())


def test_sendable_expired_tariff() -> None:
    tariff = _example_221("tariff_6_025kwh_start_max_price")  # end_date_time 2019-06-30
    assert sendable("tariff", tariff)
    assert not sendable("tariff", tariff, now=datetime(2020, 1, 1, tzinfo=UTC))
    assert sendable("tariff", tariff, now=datetime(2019, 1, 1, tzinfo=UTC))


def test_cdr_embedded_tariffs_of_any_type_are_kept() -> None:
    cdr = _example_221("cdr_example")
    cdr["tariffs"] = [
        _example_221("tariff_2_alt_text"),
        _example_221("tariff_15_reservation_5_euro_per_hour"),
    ]
    cdr["tariffs"][1]["elements"] = cdr["tariffs"][1]["elements"][:1]  # nothing left for 2.1.1
    ctx = make_ctx()
    wire = from_canonical("cdr", cdr, ctx)
    assert [t["id"] for t in wire["tariffs"]] == [cdr["tariffs"][0]["id"]]
    assert "type" not in wire["tariffs"][0]
    assert any("left out" in n for n in ctx.notes)


def test_commands() -> None:
    token = _example_211("mod_tokens.md", 360)
    ctx = make_ctx(partner=("DE", "TNM", "EMSP"))
    start = {
        "response_url": "https://e.example/s/1",
        "token": token,
        "location_id": "LOC1",
        "evse_uid": "3256",
    }
    canonical = to_canonical("start_session", start, ctx)
    validate(StartSession, canonical)
    assert canonical["token"]["contract_id"] == "DE8ACC12E46L89" and canonical["token"]["party_id"] == "TNM"
    wire = from_canonical(
        "start_session", {**canonical, "connector_id": "1", "authorization_reference": "A1"}, ctx
    )
    assert wire == start
    reserve = {**start, "expiry_date": "2020-01-01T12:00:00Z", "reservation_id": 42}
    canonical = to_canonical("reserve_now", reserve, ctx)
    assert canonical["reservation_id"] == "42"
    validate(ReserveNow, canonical)
    assert from_canonical("reserve_now", canonical, ctx) == reserve
    stop = {"response_url": "https://e.example/s/2", "session_id": "101"}
    validate(StopSession, to_canonical("stop_session", stop, ctx))
    assert from_canonical("stop_session", to_canonical("stop_session", stop, ctx), ctx) == stop
    unlock = {
        "response_url": "https://e.example/u/1",
        "location_id": "LOC1",
        "evse_uid": "3256",
        "connector_id": "1",
    }
    validate(UnlockConnector, to_canonical("unlock_connector", unlock, ctx))
    assert from_canonical("unlock_connector", unlock, ctx) == unlock
    # token types 2.1.1 lacks
    app = from_canonical(
        "start_session", {**canonical, "token": _example_221("token_example_1_app_user")}, ctx
    )
    assert app["token"]["type"] == "OTHER"


def test_command_response_and_result(monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx()
    accepted = to_canonical("command_response", {"result": "ACCEPTED"}, ctx)
    assert accepted == {"result": "ACCEPTED", "timeout": 60}
    validate(CommandResponse, accepted)
    monkeypatch.setenv("OCPI_COMMAND_TIMEOUT_V211", "30")
    timeout = to_canonical("command_response", {"result": "TIMEOUT"}, ctx)
    assert timeout == {
        "result": "REJECTED",
        "timeout": 30,
        "message": [{"language": "en", "text": "TIMEOUT"}],
    }
    assert any("CommandResult TIMEOUT" in n for n in ctx.notes)
    assert to_canonical("command_response", {"result": "SUCCESSFUL"}, ctx)["result"] == "REJECTED"
    assert from_canonical(
        "command_response", {"result": "UNKNOWN_SESSION", "timeout": 30, "message": []}, ctx
    ) == {"result": "UNKNOWN_SESSION"}
    for value in ("ACCEPTED", "REJECTED", "NOT_SUPPORTED", "TIMEOUT"):
        assert to_canonical("command_result", {"result": value}, ctx) == {"result": value}
        assert from_canonical(
            "command_result", {"result": value, "message": [{"language": "en", "text": "x"}]}, ctx
        ) == {"result": value}
    unknown_session = to_canonical("command_result", {"result": "UNKNOWN_SESSION"}, ctx)
    assert unknown_session == {
        "result": "REJECTED",
        "message": [{"language": "en", "text": "UNKNOWN_SESSION"}],
    }
    validate(CommandResult, unknown_session)
    for value in (
        "CANCELED_RESERVATION",
        "EVSE_OCCUPIED",
        "EVSE_INOPERATIVE",
        "FAILED",
        "UNKNOWN_RESERVATION",
    ):
        assert from_canonical("command_result", {"result": value}, ctx) == {"result": "REJECTED"}


def test_authorization_info_and_location_references() -> None:
    ctx = make_ctx(partner=("DE", "TNM", "EMSP"))
    body = {
        "allowed": "ALLOWED",
        "location": {"location_id": "LOC1", "evse_uids": ["3256"], "connector_ids": ["1"]},
    }
    canonical = to_canonical("authorization_info", body, ctx)
    assert canonical == {"allowed": "ALLOWED", "location": {"location_id": "LOC1", "evse_uids": ["3256"]}}
    assert any("token" in n for n in ctx.notes)
    token = derived_token("012345678", "RFID", "ALLOWED", "TheNewMotion", "DE", "TNM")
    validate(AuthorizationInfo, {**canonical, "token": token})
    assert token["contract_id"] == "012345678" and token["valid"] is True and token["whitelist"] == "NEVER"
    full = {
        **canonical,
        "token": token,
        "authorization_reference": "R1",
        "info": {"language": "en", "text": "ok"},
    }
    assert from_canonical("authorization_info", full, ctx) == {
        "allowed": "ALLOWED",
        "location": {"location_id": "LOC1", "evse_uids": ["3256"]},
        "info": {"language": "en", "text": "ok"},
    }
    refs = to_canonical("location_references", body["location"], ctx)
    validate(LocationReferences, refs)
    assert from_canonical("location_references", refs, ctx) == refs


def test_session_enums_dimensions_and_flat() -> None:
    session = {
        **_example_221("session_example_2_short_finished"),
        "status": "RESERVATION",
        "auth_method": "COMMAND",
        "authorization_reference": "R1",
    }
    session["charging_periods"] = [
        {
            "start_date_time": "2015-06-29T22:39:09Z",
            "dimensions": [{"type": "STATE_OF_CHARGE", "volume": 50}],
        },
        {
            "start_date_time": "2015-06-29T22:40:54Z",
            "dimensions": [{"type": "POWER", "volume": 7}, {"type": "TIME", "volume": 1}],
        },
    ]
    wire = from_canonical("session", session, make_ctx(own=CPO_BE))
    assert (wire["status"], wire["auth_method"]) == ("PENDING", "AUTH_REQUEST")
    assert "authorization_reference" not in wire
    assert wire["charging_periods"] == [
        {"start_date_time": "2015-06-29T22:40:54Z", "dimensions": [{"type": "TIME", "volume": 1}]}
    ]
    assert wire["total_cost"] == 8.50
    # →C: FLAT dropped, a period left empty dropped; a CDR with none left gets one ENERGY period
    cdr = _example_211("mod_cdrs.md", 249)
    cdr["charging_periods"] = [
        {"start_date_time": "2015-06-29T21:39:09Z", "dimensions": [{"type": "FLAT", "volume": 1}]}
    ]
    ctx = make_ctx(partner=CPO_BE, own=EMSP_DE)
    canonical = to_canonical("cdr", cdr, ctx)
    assert canonical["charging_periods"] == [
        {"start_date_time": "2015-06-29T21:39:09Z", "dimensions": [{"type": "ENERGY", "volume": 15.342}]}
    ]
    assert any("FLAT" in n for n in ctx.notes) and any("synthesized" in n for n in ctx.notes)
    validate(CDR, canonical)


def test_location_enums_and_formats() -> None:
    location = copy.deepcopy(LOCATION_221)
    location.update(
        parking_type="ALONG_MOTORWAY",
        state="Oost-Vlaanderen",
        facilities=["HOTEL", "TRAM_STOP", "PARKING_LOT", "WIFI"],
        address="A" * 60,
        coordinates={"latitude": "51.0475991", "longitude": "3.72994"},
        related_locations=[{"latitude": "-51.0475995", "longitude": "3.7299445"}],
    )
    location["evses"][0]["capabilities"] = ["RESERVABLE", "PED_TERMINAL", "TOKEN_GROUP_CAPABLE"]
    location["evses"][0]["last_updated"] = "2015-06-28T08:12:01.999Z"
    del location["postal_code"]
    ctx = make_ctx()
    wire = from_canonical("location", location, ctx)
    assert wire["type"] == "OTHER"
    assert "state" not in wire and wire["postal_code"] == ""
    assert wire["facilities"] == ["HOTEL", "WIFI"]
    assert wire["address"] == "A" * 45 and any("truncated" in n for n in ctx.notes)
    assert wire["coordinates"] == {"latitude": "51.047599", "longitude": "3.729940"}
    assert wire["related_locations"] == [{"latitude": "-51.047600", "longitude": "3.729945"}]
    assert wire["evses"][0]["capabilities"] == ["RESERVABLE"]
    assert wire["evses"][0]["last_updated"] == "2015-06-28T08:12:01Z"
    assert wire["time_zone"] == "Europe/Brussels"
    back = to_canonical("location", wire, make_ctx(partner=CPO_BE))
    assert "parking_type" not in back and "postal_code" not in back and back["publish"] is True
    validate(Location, back)


def test_hours_rules() -> None:
    regular = [{"weekday": 1, "period_begin": "08:00", "period_end": "20:00"}]
    closing = [{"period_begin": "2018-12-25T03:00:00Z", "period_end": "2018-12-25T05:00:00Z"}]
    cases = [  # 2.1.1 opening_times → canonical (§4.5)
        ({"twentyfourseven": True, "regular_hours": regular}, {"twentyfourseven": True}),
        ({"regular_hours": regular}, {"twentyfourseven": False, "regular_hours": regular}),
        ({"regular_hours": []}, {"twentyfourseven": True}),
        ({"exceptional_closings": closing}, {"twentyfourseven": True, "exceptional_closings": closing}),
        (
            {"twentyfourseven": False, "regular_hours": regular},
            {"twentyfourseven": False, "regular_hours": regular},
        ),
    ]
    for wire, canonical in cases:
        assert (
            to_canonical("location_patch", {"opening_times": wire, "last_updated": "X"}, make_ctx())[
                "opening_times"
            ]
            == canonical
        )
    assert from_canonical(
        "location_patch",
        {"opening_times": {"twentyfourseven": True, "exceptional_closings": closing}},
        make_ctx(),
    ) == {"opening_times": {"twentyfourseven": True, "exceptional_closings": closing}}
    assert from_canonical(
        "location_patch", {"opening_times": {"twentyfourseven": False, "regular_hours": regular}}, make_ctx()
    ) == {"opening_times": {"regular_hours": regular}}


def test_energy_mix_environ_impact_rename() -> None:
    mix = _example_211("mod_locations.md", 725)["energy_mix"]
    canonical = to_canonical("location_patch", {"energy_mix": mix, "last_updated": "X"}, make_ctx())[
        "energy_mix"
    ]
    assert all("category" in i and "source" not in i for i in canonical["environ_impact"])
    assert from_canonical("location_patch", {"energy_mix": canonical}, make_ctx())["energy_mix"] == mix


def test_time_zone_derivation() -> None:
    base = _example_211("mod_locations.md", 431)
    stored = {**_stored(base), "time_zone": "Europe/Amsterdam"}
    ctx = make_ctx(partner=CPO_BE, locations=[stored])
    assert to_canonical("location", base, ctx)["time_zone"] == "Europe/Amsterdam"
    assert ("load_location", "BE", "BEC", "LOC1") in ctx.calls  # type: ignore[attr-defined]
    assert (
        to_canonical("location", base, make_ctx(partner=CPO_BE, locations=[]))["time_zone"]
        == "Europe/Brussels"
    )
    los_angeles = {
        **base,
        "country": "USA",
        "coordinates": {"latitude": "34.052235", "longitude": "-118.243683"},
    }
    assert (
        to_canonical("location", los_angeles, make_ctx(partner=CPO_BE))["time_zone"] == "America/Los_Angeles"
    )
    new_york = {**base, "country": "USA", "coordinates": {"latitude": "40.712776", "longitude": "-74.005974"}}
    assert to_canonical("location", new_york, make_ctx(partner=CPO_BE))["time_zone"] == "America/New_York"
    assert (
        to_canonical("location", {**base, "country": "XXX"}, make_ctx(partner=CPO_BE))["time_zone"] == "UTC"
    )
    assert (
        to_canonical("location", {**base, "time_zone": "Europe/Paris"}, make_ctx(partner=CPO_BE))["time_zone"]
        == "Europe/Paris"
    )
    ctx = make_ctx(partner=CPO_BE)
    to_canonical("location", base, ctx)
    assert any("time_zone missing" in n for n in ctx.notes)


def test_unknown_fields_kept_in_and_never_sent_out() -> None:
    # G2 (as amended): →C keeps what it does not map; →W sends only what 2.2.1 would (strip_for_221).
    token = {**_example_211("mod_tokens.md", 360), "x_extension": {"a": 1}}
    canonical = to_canonical("token", token, make_ctx(partner=CPO_BE))
    assert canonical["x_extension"] == {"a": 1}
    assert "x_extension" not in from_canonical("token", canonical, make_ctx())
    location = copy.deepcopy(_example_211("mod_locations.md", 431))
    location["evses"][0]["connectors"][0]["x_plug"] = "blue"
    canonical = to_canonical("location", location, make_ctx(partner=CPO_BE))
    assert canonical["evses"][0]["connectors"][0]["x_plug"] == "blue"
    # 2.3.0 additions in the canonical form (fields, sidecars, connector types) never reach 2.1.1
    canonical.update(
        {"help_phone": "+3212345678", "facilities": ["CAFE"], "facilities@2.3.0": ["CAFE", "EV_LOUNGE"]}
    )
    # as v230 stores a 2.3.0 SAE_J3400 connector: the 2.2.1 placeholder TESLA_S plus the sidecar
    canonical["evses"][0]["connectors"][1].update({"standard": "TESLA_S", "standard@2.3.0": "SAE_J3400"})
    store_location = copy.deepcopy(canonical)
    wire = from_canonical("location", canonical, make_ctx())
    assert {"help_phone", "facilities@2.3.0"}.isdisjoint(wire) and wire["facilities"] == ["CAFE"]
    assert "x_plug" not in wire["evses"][0]["connectors"][0]
    assert [c["id"] for c in wire["evses"][0]["connectors"]] == ["1"]  # SAE_J3400 has no 2.1.1 value
    session = {**_example_221("session_example_1_simple_start"), "evse_uid": "3256", "connector_id": "1"}
    embedded = from_canonical("session", session, make_ctx(own=CPO_BE, locations=[store_location]))[
        "location"
    ]
    assert "help_phone" not in embedded and "x_plug" not in embedded["evses"][0]["connectors"][0]


def test_owner_from_partner_or_body() -> None:
    token = _example_211("mod_tokens.md", 360)
    assert to_canonical("token", token, make_ctx(partner=("NL", "TNM", "EMSP")))["country_code"] == "NL"
    assert (
        to_canonical(
            "token",
            {**token, "country_code": "DE", "party_id": "ABC"},
            make_ctx(partner=("NL", "TNM", "EMSP")),
        )["party_id"]
        == "ABC"
    )
    ctx = make_ctx()
    assert "country_code" not in to_canonical("token", token, ctx)
    assert any("owner unknown" in n for n in ctx.notes)


def test_inputs_are_not_mutated() -> None:
    for kind, name in (
        ("location", "location_example"),
        ("cdr", "cdr_example"),
        ("session", "session_example_2_short_finished"),
        ("tariff", "tariff_4_complex"),
        ("credentials", "credentials_example2"),
    ):
        document = _example_221(name)
        frozen = copy.deepcopy(document)
        from_canonical(kind, document, make_ctx(locations=[LOCATION_221]))
        assert document == frozen
    assert _example_221("location_example") == LOCATION_221


def test_datetimes_truncated_to_seconds_going_out() -> None:
    token = {**_example_221("token_put_example"), "last_updated": "2015-06-29T22:39:09.987654+02:00"}
    assert from_canonical("token", token, make_ctx())["last_updated"] == "2015-06-29T20:39:09Z"
    # →C keeps DateTime strings as they are
    assert (
        to_canonical("token", {**token, "auth_id": "X"}, make_ctx())["last_updated"] == token["last_updated"]
    )


def test_2_3_0_tax_included_prices_and_emaid_tokens() -> None:
    # 2.1.1 gets what 2.2.1 gets (strip_for_221): net prices, no EMAID tokens (docs/versions-2.3.0.md).
    tariff = {**_example_221("tariff_1_simple_2hour"), "tax_included": "YES"}
    tariff["elements"][0]["price_components"][0].update(price=2.20, vat=10.0)
    wire = from_canonical("tariff", tariff, make_ctx())
    component = wire["elements"][0]["price_components"][0]
    assert (component["price"], "vat" in component) == (2.0, False)
    assert "tax_included" not in wire
    emaid = {**_example_221("token_put_example"), "type": "OTHER", "type@2.3.0": "EMAID"}
    with pytest.raises(UnsupportedInVersion, match="EMAID"):
        from_canonical("token", emaid, make_ctx())
