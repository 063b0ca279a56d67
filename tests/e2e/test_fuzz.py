"""Fuzzing (schemathesis) of every API module on a local stack over HTTP: every answer, whatever
the request, is an OCPI envelope (status_code an int, a timestamp, an error code >= 2000 with an
HTTP error); never a 5xx, never FastAPI's bare {"detail": ...}.

The schema is every function's own OpenAPI, enriched with bodies, queries and OCPI headers
(tests/fuzz_schema.py). Positive and negative data; `make fuzz` adds schemathesis' coverage phase
(boundary values, missing parts, unexpected methods). A partner (tests/partner_stub.py answers its
versions) registers with the stack over HTTP; its token replaces the schema's Authorization
placeholder, negative cases drop or garble it. The credentials module calls with a partner of its
own, last, since a DELETE unregisters it; the extension route with an app token. The back office
publishes a location, a session and a token first, under the ids the schema draws most
(KNOWN_IDS), so commands, charging profiles and authorizations get past "unknown object".

OCPI_FUZZ_EXAMPLES: examples per operation, both modes together (default 5: `make test`, 270
requests, about 25 s on 2 cores; `make fuzz` 200). OCPI_FUZZ_SEED: the seed (default 1, the same
requests every run; `make fuzz`: random, printed in the summary line, OCPI_FUZZ_SEED=<seed> replays
it). OCPI_FUZZ_COVERAGE=1: the coverage phase. OCPI_FUZZ_VERBOSE=1: the summary lists the most
frequent answers per operation (how deep the cases get).
"""

from __future__ import annotations

import base64
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter, defaultdict
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config import HealthCheck
from schemathesis.core.parameters import ParameterLocation

from tests.e2e.stacks import ROOT, LocalStack, wait_for
from tests.fuzz_schema import (
    AUTH_PLACEHOLDER,
    CALLBACK_PLACEHOLDER,
    Parties,
    build,
    caller_role,
    operation_module,
)
from tests.partner_stub import PartnerStub

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("OCPI_FUZZ_EXAMPLES") or 5)
_SEED = os.environ.get("OCPI_FUZZ_SEED") or "1"
SEED = random.SystemRandom().randrange(2**32) if _SEED == "random" else int(_SEED)
COVERAGE = os.environ.get("OCPI_FUZZ_COVERAGE") == "1"
OWN = [
    {"country_code": "NL", "party_id": "CPO", "role": "CPO", "business_details": {"name": "Fuzz CPO"}},
    {"country_code": "NL", "party_id": "MSP", "role": "EMSP", "business_details": {"name": "Fuzz eMSP"}},
]
PARTNER = {"CPO": ("BE", "FZC"), "EMSP": ("BE", "FZE"), "HUB": ("BE", "FZH")}
CRED_PARTNER = {"EMSP": ("BE", "FZX")}
OWN_PARTY = {p["role"]: (p["country_code"], p["party_id"]) for p in OWN}
_PARTNER_IDS = {v for party in PARTNER.values() for v in party}
_OWN_IDS = {v for party in OWN_PARTY.values() for v in party}

schema = schemathesis.openapi.from_dict(
    build(Parties(PARTNER, [(p["country_code"], p["party_id"]) for p in OWN]))
)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    # A fixed seed replays the same requests: no example database (it would replay old failures).
    database="none" if _SEED != "random" else None,
)
schema.config.seed = SEED
schema.config.update(suppress_health_check=[HealthCheck.all], request_timeout=30)
# The coverage phase (boundary values of every field, missing parts, unexpected methods) sends
# hundreds of requests per operation whatever the example count: `make fuzz` only.
schema.config.phases.coverage.enabled = COVERAGE

# What was sent, per operation label: HTTP status -> count (the summary test reads it).
SEEN: dict[str, Counter] = defaultdict(Counter)
# Per operation label: "HTTP/OCPI status code" -> count, and the OCPI messages (OCPI_FUZZ_VERBOSE=1).
CODES: dict[str, Counter] = defaultdict(Counter)
MESSAGES: dict[str, Counter] = defaultdict(Counter)
VERBOSE = os.environ.get("OCPI_FUZZ_VERBOSE") == "1"
SERVER_ERRORS: list[str] = []


def _roles(parties: dict[str, tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {"role": role, "country_code": cc, "party_id": pid, "business_details": {"name": f"Fuzz {role}"}}
        for role, (cc, pid) in parties.items()
    ]


# One ocpi-admin process for every setup command (two invitations and an app token): each
# process start costs about a second of CPU.
_ADMIN = """
import contextlib, io, json, sys
from shared.admin.cli import main
out = []
for args in json.loads(sys.argv[1]):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(args) == 0, args
    out.append(json.loads(buf.getvalue()))
print(json.dumps(out))
"""


def _admin(stack: LocalStack, *commands: list[str]) -> list[dict[str, Any]]:
    argv = [["--env", str(stack.env_file), *command, "--json"] for command in commands]
    result = subprocess.run(
        [sys.executable, "-c", _ADMIN, json.dumps(argv)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("OCPI_")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _register(stack: LocalStack, stub: PartnerStub, token_a: str, parties: dict[str, tuple[str, str]]) -> str:
    """A partner registers with the stack over HTTP (its token A from `ocpi-admin invite`): token C."""
    body = {"token": "token-b", "url": stub.versions_url, "roles": _roles(parties)}
    resp = httpx.post(
        f"{stack.base}/ocpi/2.2.1/credentials",
        json=body,
        headers={"Authorization": "Token " + base64.b64encode(token_a.encode()).decode()},
        timeout=30,
    )
    assert resp.json()["status_code"] == 1000, resp.text
    return resp.json()["data"]["token"]


class _AnyToken(set):
    """The partner stub takes whatever token B a fuzzed credentials PUT sends, so the rotation goes
    through (the test then calls with the token C of the answer)."""

    def __contains__(self, item: object) -> bool:
        return True


# Our own objects the fuzzer meets through KNOWN_IDS: a location whose EVSE takes every command,
# a session of it charging with the partner's token (commands, charging profiles, preferences),
# and, as eMSP, a token a CPO partner may ask to authorize.
_STAMP = "2024-01-01T00:00:00Z"
OWN_LOCATION = {
    "country_code": "NL",
    "party_id": "CPO",
    "id": "FUZZ-1",
    "publish": True,
    "address": "Fuzzstraat 1",
    "city": "Amsterdam",
    "country": "NLD",
    "coordinates": {"latitude": "52.37000", "longitude": "4.89000"},
    "time_zone": "Europe/Amsterdam",
    "evses": [
        {
            "uid": "FUZZ-1",
            "evse_id": "NL*CPO*EFUZZ1",
            "status": "AVAILABLE",
            "capabilities": [
                "RESERVABLE",
                "UNLOCK_CAPABLE",
                "REMOTE_START_STOP_CAPABLE",
                "CHARGING_PROFILE_CAPABLE",
                "CHARGING_PREFERENCES_CAPABLE",
            ],
            "connectors": [
                {
                    "id": "FUZZ-1",
                    "standard": "IEC_62196_T2",
                    "format": "SOCKET",
                    "power_type": "AC_3_PHASE",
                    "max_voltage": 230,
                    "max_amperage": 16,
                    "last_updated": _STAMP,
                }
            ],
            "last_updated": _STAMP,
        }
    ],
    "last_updated": _STAMP,
}
OWN_SESSION = {
    "country_code": "NL",
    "party_id": "CPO",
    "id": "FUZZ-1",
    "start_date_time": _STAMP,
    "kwh": 1,
    "cdr_token": {
        "country_code": "BE",
        "party_id": "FZE",
        "uid": "FUZZ-1",
        "type": "RFID",
        "contract_id": "BE-FZE-C00001",
    },
    "auth_method": "WHITELIST",
    "location_id": "FUZZ-1",
    "evse_uid": "FUZZ-1",
    "connector_id": "FUZZ-1",
    "currency": "EUR",
    "status": "ACTIVE",
    "last_updated": _STAMP,
}

OWN_TOKEN = {
    "country_code": "NL",
    "party_id": "MSP",
    "uid": "FUZZ-1",
    "type": "RFID",
    "contract_id": "NL-MSP-C00001",
    "issuer": "Fuzz eMSP",
    "valid": True,
    "whitelist": "ALLOWED",
    "last_updated": _STAMP,
}


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    t0 = time.monotonic()
    tmp = tmp_path_factory.mktemp("fuzz")
    stack = LocalStack("fuzz", OWN, tmp)
    (tmp / "location.json").write_text(json.dumps(OWN_LOCATION))
    (tmp / "session.json").write_text(json.dumps(OWN_SESSION))
    (tmp / "token.json").write_text(json.dumps(OWN_TOKEN))
    with PartnerStub() as stub:
        stub.modules = [("credentials", "SENDER")]
        stub.accepted_tokens = _AnyToken(stub.accepted_tokens)
        try:
            stack.start()
            invite, cred_invite, app, *_ = _admin(
                stack,
                ["invite", "--name", "fuzz"],
                ["invite", "--name", "fuzz-cred"],
                ["app", "--name", "fuzz"],
                ["publish", "--module", "locations", "--file", str(tmp / "location.json")],
                ["publish", "--module", "sessions", "--file", str(tmp / "session.json")],
                ["publish", "--module", "tokens", "--file", str(tmp / "token.json")],
            )
            tokens = {
                "partner": _register(stack, stub, invite["token"], PARTNER),
                "credentials": _register(stack, stub, cred_invite["token"], CRED_PARTNER),
                "app": app["token"],
            }
            # The back office's objects go through the ingest queue: wait until the API serves them.
            auth = {"Authorization": "Token " + base64.b64encode(tokens["partner"].encode()).decode()}
            for path in ("/ocpi/2.2.1/sender/locations/FUZZ-1", "/ocpi/2.2.1/sender/tokens"):
                assert wait_for(
                    lambda path=path: (
                        httpx.get(stack.base + path, headers=auth, timeout=10).json().get("data")
                    )
                ), path
            yield {
                "base": stack.base,
                "tokens": tokens,
                "callback": stub.versions_url,
                "setup_s": time.monotonic() - t0,
                "started": time.monotonic(),
            }
        finally:
            assert stack.stop() == 0, stack.log.read_text()[-3000:]


def _auth(case: Any, tokens: dict[str, str]) -> None:
    """Swap the schema's Authorization placeholder for a real token (negative cases keep theirs)."""
    if (case.headers or {}).get("Authorization") != AUTH_PLACEHOLDER:
        return
    module = operation_module(case.operation.tags)
    who = "app" if case.path.startswith("/ext/") else "credentials" if module == "credentials" else "partner"
    case.headers["Authorization"] = "Token " + base64.b64encode(tokens[who].encode()).decode()


def _callbacks(case: Any, url: str) -> None:
    """Swap the schema's callback placeholder for the partner stub's URL, wherever it was drawn."""
    if isinstance(case.body, dict | list):
        raw = json.dumps(case.body)
        if CALLBACK_PLACEHOLDER in raw:
            case.body = json.loads(raw.replace(CALLBACK_PLACEHOLDER, url))
    for key, value in (case.query or {}).items():
        if value == CALLBACK_PLACEHOLDER:
            case.query[key] = url


def _align(case: Any) -> None:
    """Positive parts name what the handlers expect, else the first check stops every case and the
    rest of the handler is never reached: routing headers as pairs naming the caller's party in the
    role that calls this path (and ours it addresses), bodies naming the party and id of their path.
    Negative parts stay as generated."""
    meta = case.meta
    role = caller_role(case.operation.path)
    headers = case.headers if case.headers is not None else {}
    if role is not None:
        ours = OWN_PARTY["EMSP" if role == "CPO" else "CPO"]
        for side, (cc, pid), valid in (("from", PARTNER[role], _PARTNER_IDS), ("to", ours, _OWN_IDS)):
            names = (f"OCPI-{side}-country-code", f"OCPI-{side}-party-id")
            sent = [headers[n] for n in names if n in headers]
            # Only a pair drawn from the schema's values: a negative header stays as generated.
            if sent and all(v in valid for v in sent):
                headers[names[0]], headers[names[1]] = cc, pid
    body, params = case.body, case.path_parameters or {}
    if not isinstance(body, dict) or meta is None or meta.is_negative_at(ParameterLocation.BODY):
        return
    if case.method in ("PUT", "PATCH") and "/receiver/" in case.path:
        for key in ("country_code", "party_id"):
            if key in params and (key in body or case.method == "PUT"):
                body[key] = params[key]
        last = case.operation.path.rstrip("/").rsplit("/", 1)[-1].strip("{}")
        field = {"location_id": "id", "tariff_id": "id", "session_id": "id", "connector_id": "id"}.get(
            last, "uid" if last in ("evse_uid", "token_uid") else None
        )
        if field and last in params and (field in body or case.method == "PUT"):
            body[field] = params[last]
    if case.operation.path.endswith("/receiver/cdrs"):
        body["country_code"], body["party_id"] = PARTNER["CPO"]
    token = body.get("token")
    if "/receiver/commands/" in case.path and isinstance(token, dict):  # the caller's own token
        token["country_code"], token["party_id"] = PARTNER["EMSP"]
    if "/receiver/tokens/" in case.path and ("type" in body or case.method == "PUT"):
        body["type"] = (case.query or {}).get("type", "RFID")  # a token is stored per (uid, type)


def ocpi_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Never a 5xx; every answer a JSON OCPI envelope; an HTTP error carries an OCPI error code."""
    SEEN[case.operation.label][response.status_code] += 1
    text = response.content.decode("utf-8", "replace")[:500]
    where = f"{case.method} {case.formatted_path} -> HTTP {response.status_code}: {text}"
    if response.status_code >= 500:
        SERVER_ERRORS.append(where)
        raise AssertionError(f"server error: {where}")
    if case.method == "HEAD":
        return None  # no body by definition
    try:
        body = json.loads(response.content)
    except ValueError as err:
        raise AssertionError(f"not JSON: {where}") from err
    assert isinstance(body, dict) and "detail" not in body, f"not an OCPI envelope: {where}"
    code = body.get("status_code")
    assert isinstance(code, int) and not isinstance(code, bool), f"status_code not an int: {where}"
    assert isinstance(body.get("timestamp"), str), f"no timestamp: {where}"
    assert isinstance(body.get("status_message", ""), str), f"status_message not a string: {where}"
    if response.status_code >= 400:
        assert code >= 2000, f"HTTP error with a success code: {where}"
    CODES[case.operation.label][f"{response.status_code}/{code}"] += 1
    MESSAGES[case.operation.label][
        f"{response.status_code}/{code} {body.get('status_message', '')[:80]}"
    ] += 1
    return None


@schema.parametrize()
def test_fuzz(case, target) -> None:
    _auth(case, target["tokens"])
    _callbacks(case, target["callback"])
    _align(case)
    response = case.call(base_url=target["base"], timeout=30)
    case.validate_response(response, checks=[ocpi_envelope])
    if case.path.endswith("/credentials") and case.method in ("POST", "PUT") and response.status_code == 200:
        answer = response.json()
        if answer.get("status_code") == 1000:  # rotated: the partner calls with its new token C
            target["tokens"]["credentials"] = answer["data"]["token"]


def test_fuzz_summary(target, capsys) -> None:
    """Every operation was sent, and every one got past authentication at least once (else the
    fuzzer would only be testing the 401 path)."""
    if not SEEN:
        pytest.skip("no fuzz case ran (deselected)")
    operations = {op.ok().label for op in schema.get_all_operations()}
    assert set(SEEN) == operations, operations - set(SEEN)
    only_401 = sorted(label for label, statuses in SEEN.items() if set(statuses) <= {401})
    assert not only_401, only_401
    sent = sum(sum(c.values()) for c in SEEN.values())
    codes = sum(CODES.values(), Counter())
    succeeded = sorted(label for label, c in CODES.items() if any(k.endswith("/1000") for k in c))
    line = (
        f"fuzz (OCPI_FUZZ_SEED={SEED}): {len(operations)} operations, {EXAMPLES} examples per operation, "
        f"{sent} requests, setup {target['setup_s']:.1f} s, "
        f"fuzzing {time.monotonic() - target['started']:.1f} s, "
        f"HTTP/OCPI codes {dict(sorted(codes.items()))}, "
        f"{len(succeeded)} operations answered 1000 at least once, "
        f"server errors {len(SERVER_ERRORS)}, test process CPU "
        f"{sum(resource.getrusage(resource.RUSAGE_SELF)[:2]):.1f} s"
    )
    if VERBOSE:
        for label in sorted(MESSAGES):
            line += f"\n{label}:" + "".join(f"\n    {n:5d} {m}" for m, n in MESSAGES[label].most_common(6))
    with capsys.disabled():  # shown by `make fuzz` (under xdist the worker's output is dropped)
        print("\n" + line)
    assert not SERVER_ERRORS, SERVER_ERRORS[:5]
