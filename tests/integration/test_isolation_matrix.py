"""The isolation matrix: every module route x verb x foreign-party situation, on both stores.

Two registered partners, A and B, each hold a CPO, an EMSP and a HUB role and each own a full set of
objects here, seeded through the routes they would use (a received location with an EVSE and a
connector, a tariff, a token, a session, a CDR, ClientInfo, an ActiveChargingProfile, a reservation
and a charging profile request on our session for it), plus our own objects meant for each (a
session and a CDR addressed to its eMSP party, a command and a profile request we sent it). A third
partner M holds A's party ids in the other roles (A's CPO ids as its EMSP party and the reverse).
Every cell is one request of an attacker against a victim's objects:

- ``a``: B reads or writes A's objects (A's country_code/party_id in the URL, A's ids in the body);
- ``b-to-*``: B names an OCPI-to party that is not ours (A's party, an unknown party);
- ``c-from-victim``: B spoofs the OCPI-from headers of A;
- ``d-*``: an unknown (deleted) token, the token of a partner that unregistered, a registration token
  (token A): 401 on every functional module (transport_and_format, Authorization);
- ``e``: A's token with B's party in the URL (the mirror of ``a``);
- ``f-own-url``: B's own party in the URL with A's ids (and A's object as the body);
- ``g-other-role``: M, holding A's ids in the other roles, at A's URLs.

Expected: the route's OCPI refusal (HTTP 404 for a party that is not among the caller's roles:
transport_and_format "Errors"; 2001 for bad routing headers or body ids that differ from the URL;
401 for tokens; UNKNOWN_SESSION / REJECTED command and profile results; 405 where credentials say
so), or a list holding only what the caller may see. In every cell nothing of the victim is returned
(its markers, ids and tokens never appear in the answer) and nothing is changed: on the memory store
the whole store is compared before and after each request; on DynamoDB every write DynamoDB applied
is recorded (a cell may write only the attacker's own items, and only on routes that store per
caller) and the victim's objects are read back, byte for byte, before and after each module's cells.

One seeding per store (module scope), many requests; each module's cell count is in its test id.
This supersedes the isolation tests that test_locations, test_sessions, test_cdrs and
test_tariffs_tokens carried.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shared import config, events
from shared.auth import hash_token
from shared.services import commands, credentials, ingest, push
from shared.store.base import ObjectRef, TokenRecord
from tests.conftest import TEMPLATE
from tests.integration.test_commands import token as token_of
from tests.integration.test_credentials import load_app
from tests.integration.test_ingest import location
from tests.integration.test_locations import hdr
from tests.integration.test_push import cdr as own_cdr
from tests.integration.test_push import session as own_session
from tests.partner_stub import PartnerStub
from tests.receiver_stub import ReceiverStub

V = "/ocpi/2.2.1"
BASE = "https://ocpi.test"
LU = "2024-05-01T09:00:00Z"
LATER = "2031-01-01T00:00:00Z"
PROFILE = {"charging_rate_unit": "W", "charging_profile_period": [{"start_period": 0, "limit": 11000}]}
ACTIVE_PROFILE = {"start_date_time": LU, "charging_profile": PROFILE}
CPO_OWN = ("NL", "CPO")
EMSP_OWN = ("NL", "MSP")
WRITES = ("PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems")


# ------------------------------------------------------------------ the parties
@dataclass(frozen=True)
class Party:
    """A partner with a CPO, an EMSP and a HUB role, and the ids of its objects."""

    key: str
    cc: str
    pid: str  # its CPO party (locations, tariffs, sessions, CDRs it sends)
    emsp_pid: str  # its EMSP party (tokens; our sessions and CDRs for it)
    hub_pid: str
    described: tuple[str, str]  # the party its hub describes in ClientInfo

    @property
    def partner_id(self) -> str:
        return f"iso-{self.key.lower()}"

    @property
    def token(self) -> str:
        return f"tok-iso-{self.key.lower()}-credentials"

    @property
    def marker(self) -> str:
        """Text only this party's objects carry: it must never reach another caller."""
        return f"SECRET-OF-{self.key}"

    @property
    def parties(self) -> list[tuple[str, str, str]]:
        return [("CPO", self.cc, self.pid), ("EMSP", self.cc, self.emsp_pid), ("HUB", self.cc, self.hub_pid)]

    @property
    def roles(self) -> list[dict[str, Any]]:
        return [
            {"role": r, "country_code": c, "party_id": p, "business_details": {"name": f"{self.key} {r}"}}
            for r, c, p in self.parties
        ]

    def id(self, what: str) -> str:
        return f"{self.key}{what}"

    @property
    def evse(self) -> str:
        return f"{self.key}-EVSE-1"

    @property
    def own_session(self) -> str:
        return f"OWN{self.key}SES"

    @property
    def own_cdr(self) -> str:
        return f"OWN{self.key}CDR"

    def all_ids(self) -> set[str]:
        return {self.id(x) for x in ("LOC1", "TAR1", "TOKUID1", "SES1", "CDR1", "RES1")} | {
            self.own_session,
            self.own_cdr,
            self.evse,
        }


A = Party("A", "DE", "AAA", "AAE", "AHB", ("DE", "ACL"))
B = Party("B", "FR", "BBB", "BBE", "BHB", ("FR", "BCL"))
M = Party("M", "DE", "AAE", "AAA", "MHB", ("DE", "MCL"))  # A's ids, in the other roles
UNREGISTERED = "tok-iso-u-unregistered"
UNKNOWN = "tok-iso-nobody"


# ------------------------------------------------------------------ the victim's objects (bodies)
def loc_of(p: Party) -> dict[str, Any]:
    loc = location(p.id("LOC1"), LU, p.cc, p.pid)
    loc["name"] = f"{p.marker} location"
    loc["evses"][0].update({"uid": p.evse, "evse_id": f"{p.cc}*{p.pid}*E1"})
    return loc


def tariff_of(p: Party) -> dict[str, Any]:
    return {
        "country_code": p.cc,
        "party_id": p.pid,
        "id": p.id("TAR1"),
        "currency": "EUR",
        "tariff_alt_text": [{"language": "en", "text": f"{p.marker} tariff"}],
        "elements": [{"price_components": [{"type": "ENERGY", "price": 0.35, "step_size": 1}]}],
        "last_updated": LU,
    }


def token_body(p: Party) -> dict[str, Any]:
    t = token_of(p.cc, p.emsp_pid, p.id("TOKUID1"))
    t.update({"type": "RFID", "issuer": f"{p.marker} issuer", "contract_id": f"{p.cc}-{p.emsp_pid}-C1"})
    return t


def session_of(p: Party) -> dict[str, Any]:
    s = own_session(p.id("SES1"), EMSP_OWN, LU)
    s.update({"country_code": p.cc, "party_id": p.pid, "meter_id": f"{p.marker} meter"})
    return s


def cdr_of(p: Party, cid: str | None = None) -> dict[str, Any]:
    c = own_cdr(cid or p.id("CDR1"), EMSP_OWN)
    c.update({"country_code": p.cc, "party_id": p.pid, "remark": f"{p.marker} cdr"})
    return c


def client_info(p: Party, status: str = "OFFLINE") -> dict[str, Any]:
    cc, pid = p.described
    return {"country_code": cc, "party_id": pid, "role": "EMSP", "status": status, "last_updated": LU}


# ------------------------------------------------------------------ the world, seeded once per store
@dataclass
class World:
    store: Any
    kind: str
    rstub: ReceiverStub
    pstub: PartnerStub
    apis: dict[str, TestClient] = field(default_factory=dict)
    sent: dict[str, dict[str, str]] = field(default_factory=dict)  # victim -> {"command", "profile"}
    registration_token: str = ""
    writes: list[tuple[str, list[str]]] = field(default_factory=list)  # DynamoDB writes applied
    bus: list[dict] = field(default_factory=list)
    queued: list[push.Delivery] = field(default_factory=list)

    def api(self, module: str) -> TestClient:
        if module not in self.apis:
            self.apis[module] = TestClient(load_app(module), raise_server_exceptions=False)
        return self.apis[module]

    def response_url(self, p: Party, what: str) -> str:
        return f"{self.rstub.base}/callbacks/{p.marker}/{what}"


def _ok(resp: Any, what: str) -> dict[str, Any]:
    body = resp.json()
    assert resp.status_code in (200, 201) and body["status_code"] == 1000, (what, resp.status_code, body)
    return body


def _register(world: World, p: Party) -> None:
    store = world.store
    store.put_partner(
        {
            "partner_id": p.partner_id,
            "status": "REGISTERED",
            "version": "2.2.1",
            "roles": [{k: v for k, v in r.items() if k != "business_details"} for r in p.roles],
            "endpoints": [
                {"identifier": m, "role": "RECEIVER", "url": f"{world.rstub.base}/{m}"}
                for m in ("commands", "chargingprofiles")
            ],
            "versions_url": world.pstub.versions_url,
            "outbound_token": f"outbound-token-{p.marker}",
        }
    )
    store.put_token(TokenRecord(hash_token(p.token), p.partner_id, "C"))
    assert store.claim_parties(p.partner_id, p.parties) == []
    # Our own session and CDR for its eMSP party (the sender lists of sessions and CDRs).
    s = own_session(p.own_session, (p.cc, p.emsp_pid), LU, status="ACTIVE", meter_id=f"{p.marker} own")
    s.pop("end_date_time", None)
    ingest.apply(store, events.OWN_PUT, {"module": "sessions", "object": s})
    c = own_cdr(p.own_cdr, (p.cc, p.emsp_pid))
    c["remark"] = f"{p.marker} own cdr"
    ingest.apply(store, events.OWN_PUT, {"module": "cdrs", "object": c})


def _victim_objects(world: World, p: Party) -> None:
    """Everything a victim keeps here, stored through its own requests (and what we sent it)."""
    h, api = hdr(p.token), world.api
    loc, t, k, s = loc_of(p), tariff_of(p), token_body(p), session_of(p)
    _ok(
        api("locations").put(f"{V}/receiver/locations/{p.cc}/{p.pid}/{loc['id']}", json=loc, headers=h), "loc"
    )
    _ok(api("tariffs").put(f"{V}/receiver/tariffs/{p.cc}/{p.pid}/{t['id']}", json=t, headers=h), "tariff")
    _ok(api("tokens").put(f"{V}/receiver/tokens/{p.cc}/{p.emsp_pid}/{k['uid']}", json=k, headers=h), "token")
    _ok(api("sessions").put(f"{V}/receiver/sessions/{p.cc}/{p.pid}/{s['id']}", json=s, headers=h), "session")
    _ok(api("cdrs").post(f"{V}/receiver/cdrs", json=cdr_of(p), headers=h), "cdr")
    ci = client_info(p)
    path = f"{V}/receiver/hubclientinfo/{ci['country_code']}/{ci['party_id']}"
    _ok(api("hubclientinfo").put(path, json=ci, headers=h), "clientinfo")
    path = f"{V}/sender/chargingprofiles/{p.id('SES1')}"
    _ok(api("chargingprofiles").put(path, json=ACTIVE_PROFILE, headers=h), "active profile")
    reserve = {
        "response_url": world.response_url(p, "reserve"),
        "token": token_body(p),
        "expiry_date": "2030-01-01T00:00:00Z",
        "reservation_id": p.id("RES1"),
        "location_id": "OWNLOC1",
        "evse_uid": "3256",
    }
    got = _ok(api("commands").post(f"{V}/receiver/commands/RESERVE_NOW", json=reserve, headers=h), "reserve")
    assert got["data"]["result"] == "ACCEPTED", got
    setp = {"charging_profile": PROFILE, "response_url": world.response_url(p, "profile")}
    path = f"{V}/receiver/chargingprofiles/{p.own_session}"
    assert _ok(api("chargingprofiles").put(path, json=setp, headers=h), "set")["data"]["result"] == "ACCEPTED"
    start = {"token": token_of(*EMSP_OWN, "OWNTOKUID1"), "location_id": p.id("LOC1")}
    command = commands.send(world.store, BASE, p.partner_id, "START_SESSION", start)
    profile = commands.send(
        world.store, BASE, p.partner_id, "SET_PROFILE", {"charging_profile": PROFILE}, session_id=p.id("SES1")
    )
    world.sent[p.key] = {"command": command["command_id"], "profile": profile["command_id"]}


def seed(world: World) -> None:
    store = world.store
    own_loc = location("OWNLOC1", LU)
    own_loc["evses"][0]["capabilities"] = ["REMOTE_START_STOP_CAPABLE", "RESERVABLE", "UNLOCK_CAPABLE"]
    ingest.apply(store, events.OWN_PUT, {"module": "locations", "object": own_loc})
    own_tariff = {**tariff_of(A), "country_code": "NL", "party_id": "CPO", "id": "OWNTAR1"}
    own_tariff.pop("tariff_alt_text")
    ingest.apply(store, events.OWN_PUT, {"module": "tariffs", "object": own_tariff})
    ingest.apply(store, events.OWN_PUT, {"module": "tokens", "object": token_of(*EMSP_OWN, "OWNTOKUID1")})
    for p in (A, B, M):
        _register(world, p)
    store.put_partner({"partner_id": "iso-u", "status": "UNREGISTERED", "roles": []})
    store.put_token(TokenRecord(hash_token(UNREGISTERED), "iso-u", "C"))
    _, world.registration_token = credentials.invite(store, "iso-invited")
    world.pstub.accepted_tokens.add("rotated-attacker-token")  # a PUT of credentials reads versions first
    for p in (A, B):
        _victim_objects(world, p)


# ------------------------------------------------------------------ reading the store back
def victim_refs(world: World, v: Party, module: str) -> list[ObjectRef]:
    """The victim's objects a module's cells aim at, and ours meant for it."""
    sent = world.sent[v.key]
    return {
        "locations": [ObjectRef("locations", v.cc, v.pid, v.id("LOC1"))],
        "tariffs": [ObjectRef("tariffs", v.cc, v.pid, v.id("TAR1"))],
        "tokens": [ObjectRef("tokens", v.cc, v.emsp_pid, v.id("TOKUID1"), "RFID")],
        "sessions": [
            ObjectRef("sessions", v.cc, v.pid, v.id("SES1")),
            ObjectRef("sessions", *CPO_OWN, v.own_session),
        ],
        "cdrs": [ObjectRef("cdrs", v.cc, v.pid, v.id("CDR1")), ObjectRef("cdrs", *CPO_OWN, v.own_cdr)],
        "commands": [
            ObjectRef(commands.SENT, *EMSP_OWN, sent["command"]),
            commands.reservation_ref(CPO_OWN, (v.cc, v.emsp_pid), v.id("RES1")),
            ObjectRef("sessions", *CPO_OWN, v.own_session),
        ],
        "chargingprofiles": [
            ObjectRef(commands.SENT, *EMSP_OWN, sent["profile"]),
            ObjectRef("activeprofiles", v.cc, v.pid, v.id("SES1")),
            ObjectRef("sessions", *CPO_OWN, v.own_session),
        ],
        "hubclientinfo": [ObjectRef("hubclientinfo", *v.described, v.partner_id)],
        "credentials": [],
    }[module]


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def read_back(world: World, v: Party, module: str) -> dict[str, str]:
    out = {}
    for ref in victim_refs(world, v, module):
        found = world.store.get(ref, consistent=True)
        assert found is not None, ref
        kids = [c.body for c in found.children]
        out[str(ref)] = _text([found.body, found.last_updated, found.collection, found.meta, kids])
    # client_info: the mirror of the party's own hub PUTs (a route that stores per caller).
    partner = {k: x for k, x in world.store.get_partner(v.partner_id).items() if k != "client_info"}
    out[f"partner {v.partner_id}"] = _text(partner)
    return out


def memory_dump(store: Any) -> dict[str, str]:
    """The whole memory store, one comparable string per item."""
    out = {
        pk: _text([o.body, o.last_updated, o.collection, o.meta, [(c.child_id, c.body) for c in o.children]])
        for pk, o in store.objects.items()
    }
    for name in ("tokens", "partners", "parties", "push", "index"):
        out.update({f"{name}|{k}": _text(x) for k, x in getattr(store, name).items()})
    return out


def attach_write_recorder(client: Any, writes: list[tuple[str, list[str]]]) -> None:
    """Record every write DynamoDB applied (operation, item keys); a conditional write it refused
    changed nothing and is not recorded."""

    def k(key: dict[str, Any]) -> str:
        return f"{key['PK']['S']}|{key['SK']['S']}"

    def keys_of(operation: str, params: dict[str, Any]) -> list[str]:
        if operation == "PutItem":
            return [k(params["Item"])]
        if operation in ("UpdateItem", "DeleteItem"):
            return [k(params["Key"])]
        if operation == "BatchWriteItem":
            return [
                k(r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"])
                for reqs in params["RequestItems"].values()
                for r in reqs
            ]
        return [k(op.get("Item") or op["Key"]) for item in params["TransactItems"] for op in item.values()]

    def before(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if model.name in WRITES:
            context["isolation_write"] = (model.name, keys_of(model.name, params))

    def after(http_response: Any, context: dict[str, Any], **_: Any) -> None:
        if "isolation_write" in context and http_response.status_code < 300:
            writes.append(context.pop("isolation_write"))

    client.meta.events.register("before-parameter-build.dynamodb", before)
    client.meta.events.register("after-call.dynamodb", after)


def owned_by(key: str, p: Party) -> bool:
    """Whether a store key belongs to party ``p`` (its partner record or an object under its ids)."""
    up = key.upper()
    return p.partner_id.upper() in up or any(f"#{cc}#{pid}#" in up for _, cc, pid in p.parties)


# ------------------------------------------------------------------ situations and expectations
@dataclass(frozen=True)
class Situation:
    name: str
    attacker: Party | None  # None: a token that opens nothing (d-*)
    victim: Party
    token: str | Callable[[World], str]
    headers: dict[str, str] = field(default_factory=dict)
    own_url: bool = False  # the attacker's party in the URL, the victim's ids and body


SITUATIONS = [
    Situation("a", B, A, B.token),
    Situation("b-to-victim", B, A, B.token, {"OCPI-to-country-code": A.cc, "OCPI-to-party-id": A.pid}),
    Situation("b-to-unknown", B, A, B.token, {"OCPI-to-country-code": "ZZ", "OCPI-to-party-id": "ZZZ"}),
    Situation(
        "c-from-victim", B, A, B.token, {"OCPI-from-country-code": A.cc, "OCPI-from-party-id": A.emsp_pid}
    ),
    Situation("d-unknown-token", None, A, UNKNOWN),
    Situation("d-unregistered", None, A, UNREGISTERED),
    Situation("d-registration", None, A, lambda w: w.registration_token),
    Situation("e", A, B, A.token),
    Situation("f-own-url", B, A, B.token, own_url=True),
    Situation("g-other-role", M, A, M.token),
]
BY_NAME = {s.name: s for s in SITUATIONS}
# Where the attacker is a registered partner acting as itself: the route's own expectation holds.
AS_ITSELF = ("a", "e", "g-other-role")


@dataclass(frozen=True)
class Expect:
    http: int
    code: int
    check: Callable[[dict[str, Any], Situation, World], str | None] | None = None


def ids_are(fn: Callable[[Party], list[str]], field_name: str = "id") -> Callable:
    def check(body: dict[str, Any], s: Situation, w: World) -> str | None:
        got = [item.get(field_name) for item in body.get("data") or []]
        want = fn(s.attacker)
        return None if got == want else f"listed {got}, expected {want}"

    return check


def result_is(value: str) -> Callable:
    def check(body: dict[str, Any], s: Situation, w: World) -> str | None:
        got = (body.get("data") or {}).get("result")
        return None if got == value else f"result {got}, expected {value}"

    return check


def own_credentials(body: dict[str, Any], s: Situation, w: World) -> str | None:
    expected = s.attacker.token if s.attacker else w.registration_token
    got = (body.get("data") or {}).get("token")
    return None if got == expected else "answered with another token than the caller's"


def message_has(text: str) -> Callable:
    def check(body: dict[str, Any], s: Situation, w: World) -> str | None:
        message = body.get("status_message") or ""
        return None if text in message else f"message {message!r}"

    return check


NOT_YOURS = Expect(404, 2000)
UNKNOWN_LOCATION = Expect(404, 2003)
UNKNOWN_TOKEN = Expect(404, 2004)
BODY_IDS = Expect(200, 2001, message_has("differs from the URL"))
ROUTING_TO = Expect(200, 2001, message_has("OCPI-to"))
ROUTING_FROM = Expect(200, 2001, message_has("OCPI-from"))
UNAUTHORIZED = Expect(401, 2000)
OWN_CREDENTIALS = Expect(200, 1000, own_credentials)


@dataclass(frozen=True)
class Route:
    """One route and verb. ``path``/``body`` get the victim (``path`` with the attacker's party
    in f-own-url) and the world (for ids it made)."""

    module: str
    name: str
    method: str
    path: Callable[[Party, World], str]
    expect: Expect  # when the attacker acts as itself (a, e, g)
    body: Callable[[Party, World], Any] | None = None
    own_url: Expect | None = None  # f-own-url, for routes with a party in the URL
    own_write: bool = False  # the route stores per caller: the attacker's own items may change
    skip: tuple[str, ...] = ()
    special: dict[str, Expect] = field(default_factory=dict)


def rx(module: str, *parts: Callable[[Party], str], emsp: bool = False) -> Callable[[Party, World], str]:
    def path(v: Party, w: World) -> str:
        return "/".join(
            [f"{V}/receiver/{module}", v.cc, v.emsp_pid if emsp else v.pid, *(f(v) for f in parts)]
        )

    return path


def tx(tail: Callable[[Party, World], str]) -> Callable[[Party, World], str]:
    return lambda v, w: f"{V}/sender/{tail(v, w)}"


def _loc(v: Party) -> str:
    return v.id("LOC1")


def _evse(v: Party) -> str:
    return v.evse


def _conn(v: Party) -> str:
    return "1"


def _later(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "last_updated": LATER}


def _hijack_command(fields: Callable[[Party, World], dict[str, Any]]) -> Callable[[Party, World], Any]:
    return lambda v, w: {"response_url": w.response_url(v, "hijack"), **fields(v, w)}


SINCE = "date_from=2000-01-01T00:00:00Z"
LISTED_OWN_LOCATION = Expect(200, 1000, ids_are(lambda x: ["OWNLOC1"]))
CREDENTIALS_OWN = {"b-to-victim", "b-to-unknown", "c-from-victim", "d-registration"}

ROUTES: list[Route] = [
    # ---------------------------------------------------------------- locations
    Route("locations", "sender-list", "GET", tx(lambda v, w: "locations"), LISTED_OWN_LOCATION),
    Route(
        "locations", "sender-get-location", "GET", tx(lambda v, w: f"locations/{_loc(v)}"), UNKNOWN_LOCATION
    ),
    Route(
        "locations",
        "sender-get-evse",
        "GET",
        tx(lambda v, w: f"locations/{_loc(v)}/{v.evse}"),
        UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "sender-get-connector",
        "GET",
        tx(lambda v, w: f"locations/{_loc(v)}/{v.evse}/1"),
        UNKNOWN_LOCATION,
    ),
    Route("locations", "rx-get-location", "GET", rx("locations", _loc), NOT_YOURS, own_url=UNKNOWN_LOCATION),
    Route(
        "locations", "rx-get-evse", "GET", rx("locations", _loc, _evse), NOT_YOURS, own_url=UNKNOWN_LOCATION
    ),
    Route(
        "locations",
        "rx-get-connector",
        "GET",
        rx("locations", _loc, _evse, _conn),
        NOT_YOURS,
        own_url=UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "rx-put-location",
        "PUT",
        rx("locations", _loc),
        NOT_YOURS,
        lambda v, w: _later({**loc_of(v), "name": "HIJACKED"}),
        own_url=BODY_IDS,
    ),
    Route(
        "locations",
        "rx-put-evse",
        "PUT",
        rx("locations", _loc, _evse),
        NOT_YOURS,
        lambda v, w: _later({**loc_of(v)["evses"][0], "status": "OUTOFORDER"}),
        own_url=UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "rx-put-connector",
        "PUT",
        rx("locations", _loc, _evse, _conn),
        NOT_YOURS,
        lambda v, w: _later({**loc_of(v)["evses"][0]["connectors"][0], "max_voltage": 1}),
        own_url=UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "rx-patch-location",
        "PATCH",
        rx("locations", _loc),
        NOT_YOURS,
        lambda v, w: _later({"name": "HIJACKED"}),
        own_url=UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "rx-patch-evse",
        "PATCH",
        rx("locations", _loc, _evse),
        NOT_YOURS,
        lambda v, w: _later({"status": "OUTOFORDER"}),
        own_url=UNKNOWN_LOCATION,
    ),
    Route(
        "locations",
        "rx-patch-connector",
        "PATCH",
        rx("locations", _loc, _evse, _conn),
        NOT_YOURS,
        lambda v, w: _later({"max_voltage": 1}),
        own_url=UNKNOWN_LOCATION,
    ),
    # ---------------------------------------------------------------- tariffs
    Route(
        "tariffs",
        "sender-list",
        "GET",
        tx(lambda v, w: "tariffs"),
        Expect(200, 1000, ids_are(lambda x: ["OWNTAR1"])),
    ),
    Route("tariffs", "rx-get", "GET", rx("tariffs", lambda v: v.id("TAR1")), NOT_YOURS, own_url=NOT_YOURS),
    Route(
        "tariffs",
        "rx-put",
        "PUT",
        rx("tariffs", lambda v: v.id("TAR1")),
        NOT_YOURS,
        lambda v, w: _later({**tariff_of(v), "currency": "USD"}),
        own_url=BODY_IDS,
    ),
    Route(
        "tariffs", "rx-delete", "DELETE", rx("tariffs", lambda v: v.id("TAR1")), NOT_YOURS, own_url=NOT_YOURS
    ),
    # ---------------------------------------------------------------- tokens
    Route(
        "tokens",
        "sender-list",
        "GET",
        tx(lambda v, w: "tokens"),
        Expect(200, 1000, ids_are(lambda x: ["OWNTOKUID1"], "uid")),
    ),
    Route(
        "tokens",
        "sender-authorize",
        "POST",
        tx(lambda v, w: f"tokens/{v.id('TOKUID1')}/authorize"),
        UNKNOWN_TOKEN,
        lambda v, w: {"location_id": "OWNLOC1"},
    ),
    Route(
        "tokens",
        "rx-get",
        "GET",
        rx("tokens", lambda v: v.id("TOKUID1"), emsp=True),
        NOT_YOURS,
        own_url=UNKNOWN_TOKEN,
    ),
    Route(
        "tokens",
        "rx-put",
        "PUT",
        rx("tokens", lambda v: v.id("TOKUID1"), emsp=True),
        NOT_YOURS,
        lambda v, w: _later({**token_body(v), "valid": False}),
        own_url=BODY_IDS,
    ),
    Route(
        "tokens",
        "rx-patch",
        "PATCH",
        rx("tokens", lambda v: v.id("TOKUID1"), emsp=True),
        NOT_YOURS,
        lambda v, w: _later({"valid": False}),
        own_url=UNKNOWN_TOKEN,
    ),
    # ---------------------------------------------------------------- sessions
    Route(
        "sessions",
        "sender-list",
        "GET",
        tx(lambda v, w: f"sessions?{SINCE}"),
        Expect(200, 1000, ids_are(lambda x: [x.own_session])),
    ),
    Route(
        "sessions",
        "sender-charging-preferences",
        "PUT",
        tx(lambda v, w: f"sessions/{v.own_session}/charging_preferences"),
        NOT_YOURS,
        lambda v, w: {"profile_type": "FAST"},
    ),
    Route("sessions", "rx-get", "GET", rx("sessions", lambda v: v.id("SES1")), NOT_YOURS, own_url=NOT_YOURS),
    Route(
        "sessions",
        "rx-put",
        "PUT",
        rx("sessions", lambda v: v.id("SES1")),
        NOT_YOURS,
        lambda v, w: _later({**session_of(v), "status": "INVALID"}),
        own_url=BODY_IDS,
    ),
    Route(
        "sessions",
        "rx-patch",
        "PATCH",
        rx("sessions", lambda v: v.id("SES1")),
        NOT_YOURS,
        lambda v, w: _later({"status": "INVALID"}),
        own_url=NOT_YOURS,
    ),
    # ---------------------------------------------------------------- cdrs
    Route(
        "cdrs",
        "sender-list",
        "GET",
        tx(lambda v, w: "cdrs"),
        Expect(200, 1000, ids_are(lambda x: [x.own_cdr])),
    ),
    Route(
        "cdrs",
        "rx-post",
        "POST",
        lambda v, w: f"{V}/receiver/cdrs",
        NOT_YOURS,
        lambda v, w: cdr_of(v, v.id("CDR2")),
    ),
    Route("cdrs", "rx-get", "GET", rx("cdrs", lambda v: v.id("CDR1")), NOT_YOURS, own_url=NOT_YOURS),
    # ---------------------------------------------------------------- commands
    Route(
        "commands",
        "rx-start-session-victims-token",
        "POST",
        lambda v, w: f"{V}/receiver/commands/START_SESSION",
        Expect(200, 1000, result_is("REJECTED")),
        _hijack_command(lambda v, w: {"token": token_body(v), "location_id": "OWNLOC1", "evse_uid": "3256"}),
    ),
    Route(
        "commands",
        "rx-stop-victims-session",
        "POST",
        lambda v, w: f"{V}/receiver/commands/STOP_SESSION",
        Expect(200, 1000, result_is("UNKNOWN_SESSION")),
        _hijack_command(lambda v, w: {"session_id": v.own_session}),
    ),
    Route(
        "commands",
        "rx-reserve-victims-token",
        "POST",
        lambda v, w: f"{V}/receiver/commands/RESERVE_NOW",
        Expect(200, 1000, result_is("REJECTED")),
        _hijack_command(
            lambda v, w: {
                "token": token_body(v),
                "expiry_date": "2030-01-01T00:00:00Z",
                "reservation_id": v.id("RES1"),
                "location_id": "OWNLOC1",
                "evse_uid": "3256",
            }
        ),
    ),
    Route(
        "commands",
        "rx-cancel-victims-reservation",
        "POST",
        lambda v, w: f"{V}/receiver/commands/CANCEL_RESERVATION",
        Expect(200, 1000, result_is("REJECTED")),
        _hijack_command(lambda v, w: {"reservation_id": v.id("RES1")}),
    ),
    Route(
        "commands",
        "sender-result-of-victims-command",
        "POST",
        tx(lambda v, w: f"commands/START_SESSION/{w.sent[v.key]['command']}"),
        NOT_YOURS,
        lambda v, w: {"result": "ACCEPTED"},
    ),
    # ---------------------------------------------------------------- charging profiles
    Route(
        "chargingprofiles",
        "rx-get-victims-session",
        "GET",
        lambda v, w: (
            f"{V}/receiver/chargingprofiles/{v.own_session}?duration=60&"
            f"response_url={w.response_url(v, 'hijack')}"
        ),
        Expect(200, 1000, result_is("UNKNOWN_SESSION")),
    ),
    Route(
        "chargingprofiles",
        "rx-put-victims-session",
        "PUT",
        lambda v, w: f"{V}/receiver/chargingprofiles/{v.own_session}",
        Expect(200, 1000, result_is("UNKNOWN_SESSION")),
        _hijack_command(lambda v, w: {"charging_profile": PROFILE}),
    ),
    Route(
        "chargingprofiles",
        "rx-delete-victims-session",
        "DELETE",
        lambda v, w: (
            f"{V}/receiver/chargingprofiles/{v.own_session}?response_url={w.response_url(v, 'hijack')}"
        ),
        Expect(200, 1000, result_is("UNKNOWN_SESSION")),
    ),
    Route(
        "chargingprofiles",
        "sender-result-of-victims-request",
        "POST",
        tx(lambda v, w: f"chargingprofiles/SET_PROFILE/{w.sent[v.key]['profile']}"),
        NOT_YOURS,
        lambda v, w: {"result": "ACCEPTED"},
    ),
    # The Sender PUT names no party: the profile is kept under the caller's own CPO party.
    Route(
        "chargingprofiles",
        "sender-active-profile-of-victims-session",
        "PUT",
        tx(lambda v, w: f"chargingprofiles/{v.id('SES1')}"),
        Expect(200, 1000),
        lambda v, w: {**ACTIVE_PROFILE, "start_date_time": LATER},
        own_write=True,
        skip=("g-other-role",),  # M's CPO ids are A's eMSP ids: ownership by key is ambiguous there
    ),
    # ---------------------------------------------------------------- hub client info
    Route(
        "hubclientinfo",
        "rx-get-victims-clientinfo",
        "GET",
        lambda v, w: f"{V}/receiver/hubclientinfo/{v.described[0]}/{v.described[1]}",
        NOT_YOURS,
    ),
    # Each hub keeps its own ClientInfo of a party: the attacker's PUT creates its own, the victim's stays.
    Route(
        "hubclientinfo",
        "rx-put-victims-clientinfo",
        "PUT",
        lambda v, w: f"{V}/receiver/hubclientinfo/{v.described[0]}/{v.described[1]}",
        Expect(201, 1000),
        lambda v, w: client_info(v, "CONNECTED"),
        own_write=True,
        skip=("g-other-role",),
    ),
    # ---------------------------------------------------------------- credentials (no routing headers)
    Route(
        "credentials",
        "get",
        "GET",
        lambda v, w: f"{V}/credentials",
        OWN_CREDENTIALS,
        special=dict.fromkeys(CREDENTIALS_OWN, OWN_CREDENTIALS),
    ),
    Route(
        "credentials",
        "put-claiming-victims-roles",
        "PUT",
        lambda v, w: f"{V}/credentials",
        Expect(200, 2001, message_has("Already registered by another partner")),
        lambda v, w: {"token": "rotated-attacker-token", "url": w.pstub.versions_url, "roles": v.roles},
        skip=("b-to-victim", "b-to-unknown", "c-from-victim"),
        special={"d-registration": Expect(405, 2000)},
    ),
    Route(
        "credentials",
        "post-claiming-victims-roles",
        "POST",
        lambda v, w: f"{V}/credentials",
        Expect(405, 2000),
        lambda v, w: {"token": "another-token", "url": w.pstub.versions_url, "roles": v.roles},
        skip=("b-to-victim", "b-to-unknown", "c-from-victim", "d-registration"),
    ),
    Route(
        "credentials",
        "delete",
        "DELETE",
        lambda v, w: f"{V}/credentials",
        UNAUTHORIZED,
        skip=("a", "e", "g-other-role", "b-to-victim", "b-to-unknown", "c-from-victim"),
        special={"d-registration": Expect(405, 2000)},
    ),
]
MODULES = list(dict.fromkeys(r.module for r in ROUTES))
# DynamoDB runs the cells whose outcome depends on what is stored (lookups, filters, party checks);
# the routing-header and token cells are decided before any object is read, the same on both
# stores, and run on the memory store.
DYNAMO_SITUATIONS = ("a", "e", "f-own-url")


def expected(route: Route, s: Situation) -> Expect:
    if s.name in route.special:
        return route.special[s.name]
    if s.own_url:
        assert route.own_url is not None
        return route.own_url
    if s.name in AS_ITSELF:
        return route.expect
    if s.name.startswith("d-"):
        return UNAUTHORIZED
    return ROUTING_TO if s.name.startswith("b-") else ROUTING_FROM


def applies(route: Route, s: Situation) -> bool:
    return s.name not in route.skip and (not s.own_url or route.own_url is not None)


def cells(module: str, store_kind: str) -> list[tuple[Route, Situation]]:
    wanted = DYNAMO_SITUATIONS if store_kind == "dynamo" else tuple(BY_NAME)
    return [
        (r, s) for r in ROUTES if r.module == module for s in SITUATIONS if s.name in wanted and applies(r, s)
    ]


PARAMS = [
    pytest.param(kind, module, id=f"{module}-{kind}-cells={len(cells(module, kind))}")
    for kind in ("memory", "dynamo")
    for module in MODULES
]


# ------------------------------------------------------------------ fixtures: one seeding per store
@pytest.fixture(scope="module")
def stubs() -> Iterator[tuple[ReceiverStub, PartnerStub]]:
    with ReceiverStub(modules=("commands", "chargingprofiles")) as rstub, PartnerStub() as pstub:
        yield rstub, pstub


@pytest.fixture(scope="module")
def moto_table() -> Iterator[dict[str, str]]:
    """moto with the resources API requests touch provisioned from template.yaml, once."""
    from moto import mock_aws

    from shared.local.template import Resolver, load_template, provision

    with mock_aws():
        template = load_template(TEMPLATE)
        # The table, the bus and the token key: queues and the rest cost seconds and are not used here.
        wanted = {"OcpiTable", "OcpiBus", "OcpiKey"}
        template = {**template, "Resources": {k: r for k, r in template["Resources"].items() if k in wanted}}
        resolver = Resolver(
            template, stack_name="iso", region="eu-west-1", account_id="123456789012", parameter_overrides={}
        )
        names = provision(template, resolver)
        if "OcpiKey" not in names:  # partner tokens are sealed with KMS whenever DynamoDB is the store
            import boto3

            names["OcpiKey"] = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
        yield names


@pytest.fixture(scope="module")
def worlds() -> dict[str, World]:
    return {}


@pytest.fixture
def world(request, worlds, stubs, monkeypatch) -> World:
    """The seeded world of a store, plugged in again for this test (conftest resets per test)."""
    from shared.store import dynamodb_client, set_store
    from shared.store.dynamo import DynamoStore
    from shared.store.memory import MemoryStore

    kind = request.param
    monkeypatch.setenv("OCPI_MODULES", ",".join(MODULES))
    w = worlds.get(kind)
    writes: list[tuple[str, list[str]]] = w.writes if w is not None else []
    if kind == "dynamo":
        names = request.getfixturevalue("moto_table")
        monkeypatch.setenv("OCPI_TABLE_NAME", names["OcpiTable"])
        monkeypatch.setenv("OCPI_EVENT_BUS_NAME", names["OcpiBus"])
        monkeypatch.setenv("OCPI_KMS_KEY_ID", names["OcpiKey"])
        config.reset_settings()
        client = dynamodb_client()
        attach_write_recorder(client, writes)
        store: Any = DynamoStore(client, names["OcpiTable"])
    else:
        config.reset_settings()
        store = w.store if w is not None else MemoryStore()
    set_store(store)
    if w is None:
        w = World(store, kind, *stubs, writes=writes)
    w.store = store
    if kind == "memory":
        events.set_sink(w.bus.append)
    push.set_queue_sink(w.queued.append)  # command timeout checks: not what is tested here
    if kind not in worlds:
        seed(w)
        worlds[kind] = w
    return w


# ------------------------------------------------------------------ the matrix
def run_cell(w: World, route: Route, s: Situation) -> list[str]:
    """One request; the problems found (none: refused as expected, nothing leaked or changed)."""
    v = s.victim
    url_party = (
        replace(v, cc=s.attacker.cc, pid=s.attacker.pid, emsp_pid=s.attacker.emsp_pid) if s.own_url else v
    )
    token = s.token(w) if callable(s.token) else s.token
    body = route.body(v, w) if route.body else None
    before = memory_dump(w.store) if w.kind == "memory" else {}
    w.writes.clear()
    resp = w.api(route.module).request(
        route.method,
        route.path(url_party, w),
        headers={**hdr(token), **s.headers},
        **({"json": body} if body is not None else {}),
    )
    try:
        answer = resp.json()
    except ValueError:
        return [f"HTTP {resp.status_code}: the answer is not JSON: {resp.text[:100]!r}"]
    if not isinstance(answer, dict) or "status_code" not in answer or "timestamp" not in answer:
        return [f"HTTP {resp.status_code}: the answer is not an OCPI envelope: {resp.text[:200]}"]
    problems: list[str] = []
    want = expected(route, s)
    if (resp.status_code, answer["status_code"]) != (want.http, want.code):
        problems.append(
            f"HTTP {resp.status_code} / OCPI {answer['status_code']} ({answer.get('status_message')}), "
            f"expected HTTP {want.http} / OCPI {want.code}"
        )
    elif want.check is not None and (why := want.check(answer, s, w)):
        problems.append(why)
    # Nothing of the victim in the answer: its markers, tokens, ids in listed data.
    for secret in (v.marker, v.token, f"outbound-token-{v.marker}"):
        if secret in resp.text:
            problems.append(f"the answer carries the victim's {secret[:14]}...")
    data = answer.get("data")
    if isinstance(data, list):
        listed = {str(i.get("id") or i.get("uid")) for i in data if isinstance(i, dict)}
        if listed & v.all_ids():
            problems.append(f"listed the victim's {sorted(listed & v.all_ids())}")
    # Nothing of the victim changed; the attacker's own items only on routes that store per caller.
    if w.kind == "memory":
        after = memory_dump(w.store)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    else:
        # A write the same request undid (a child PUT under a missing parent is put, then deleted:
        # DynamoStore.put_child) left nothing behind.
        first: dict[str, str] = {}
        last: dict[str, str] = {}
        for op, keys in w.writes:
            for key in keys:
                first.setdefault(key, op)
                last[key] = op
        changed = sorted(k for k in last if not (first[k] == "PutItem" and last[k] == "DeleteItem"))
    own = route.own_write and s.name in AS_ITSELF and s.attacker is not None
    bad = [k for k in changed if not (own and owned_by(k, s.attacker) and not owned_by(k, v))]
    if bad:
        problems.append(f"changed {bad[:4]}")
    return problems


@pytest.mark.parametrize(("world", "module"), PARAMS, indirect=["world"])
def test_isolation_matrix(world: World, module: str) -> None:
    todo = cells(module, world.kind)
    assert todo
    before = {p.key: read_back(world, p, module) for p in (A, B)}
    problems = [f"{route.name} [{s.name}]: {why}" for route, s in todo for why in run_cell(world, route, s)]
    after = {p.key: read_back(world, p, module) for p in (A, B)}
    for key, was in before.items():
        problems += [f"{name} of {key} changed" for name, text in was.items() if after[key][name] != text]
    print(f"isolation matrix: {module} on {world.kind}: {len(todo)} cells, {len(problems)} problems")
    assert not problems, f"{len(problems)} of {len(todo)} cells failed:\n" + "\n".join(problems)
