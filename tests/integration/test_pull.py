"""Pulling from partners (shared/services/pull.py, functions/pull, `ocpi-admin pull`) against a
programmable partner over real HTTP on loopback: a paginated Sender interface (Link headers,
X-Total-Count, date_from) for locations, tariffs and tokens. Objects are stored exactly as a push
would store them: the receiver read functions return exactly the pulled objects."""

from __future__ import annotations

import ast
import base64
import copy
import importlib.util
import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from shared import jsonutil
from shared.auth import Caller, hash_token
from shared.errors import ClientApiError, InvalidParameters, MethodNotAllowed, NoMatchingEndpoints
from shared.models.types import parse_datetime
from shared.services import locations, objects, pull, tariffs, tokens
from shared.store.base import TokenRecord, WriteResult
from tests.conftest import SPEC_DIR
from tests.integration.test_credentials import hdr, load_app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = SPEC_DIR / "2.2.1" / "examples"
TOKEN = "token-out"


def example(name: str) -> Any:
    return jsonutil.loads((EXAMPLES / name).read_bytes())  # Decimal numbers, as the client parses


# ------------------------------------------------------------------ the partner's Sender interface
class SenderStub:
    """A partner serving `GET /2.2.1/{module}` lists: `offset`/`limit` pages of `page_size`, Link
    headers to the next page (keeping `date_from`), `date_from` filtering on last_updated.
    `fail_from_offset` answers 500 from that offset on; every request is recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, list[Any]] = {"locations": [], "tariffs": [], "tokens": []}
        self.page_size = 2
        self.fail_from_offset: int | None = None
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, module: str) -> str:
        return f"{self.base}/2.2.1/{module}"

    def __enter__(self) -> SenderStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def pages(self, module: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == f"/2.2.1/{module}"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                raw = jsonutil.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                stub.requests.append(
                    {
                        "path": parts.path,
                        "query": query,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                    }
                )
                ts = {"timestamp": "2024-01-01T00:00:00Z"}
                auth = self.headers.get("Authorization", "")
                if auth != "Token " + base64.b64encode(TOKEN.encode()).decode():
                    self._send(401, {"status_code": 2000, "status_message": "Unauthorized", **ts})
                    return
                module = parts.path.removeprefix("/2.2.1/")
                if module not in stub.objects:
                    self._send(404, {"status_code": 2000, **ts})
                    return
                offset = int(query.get("offset", 0))
                limit = min(int(query.get("limit", stub.page_size)), stub.page_size)
                if stub.fail_from_offset is not None and offset >= stub.fail_from_offset:
                    self._send(500, {"status_code": 3000, "status_message": "down", **ts})
                    return
                items = stub.objects[module]
                if "date_from" in query:
                    since = parse_datetime(query["date_from"])
                    items = [o for o in items if parse_datetime(o["last_updated"]) >= since]
                page = items[offset : offset + limit]
                headers = {"X-Total-Count": str(len(items)), "X-Limit": str(stub.page_size)}
                if offset + limit < len(items):
                    nxt = {"offset": offset + limit, "limit": limit}
                    if "date_from" in query:
                        nxt["date_from"] = query["date_from"]
                    headers["Link"] = f'<{stub.url(module)}?{urlencode(nxt)}>; rel="next"'
                self._send(200, {"status_code": 1000, "data": page, **ts}, headers)

        return Handler


@pytest.fixture
def stub():
    with SenderStub() as s:
        yield s


ROLES = [
    ("CPO", "BE", "BEC"),
    ("CPO", "DE", "ALL"),
    ("EMSP", "DE", "TNM"),
]


def add_partner(
    store, stub: SenderStub, partner_id: str = "p1", *, modules=("locations", "tariffs", "tokens")
):
    partner = {
        "partner_id": partner_id,
        "name": "Sender partner",
        "status": "REGISTERED",
        "version": "2.2.1",
        "roles": [{"role": r, "country_code": c, "party_id": p} for r, c, p in ROLES],
        "endpoints": [
            {"identifier": "credentials", "role": "SENDER", "url": f"{stub.base}/2.2.1/credentials"}
        ]
        + [{"identifier": m, "role": "SENDER", "url": stub.url(m)} for m in modules],
        "outbound_token": TOKEN,
        "raw_token": False,
    }
    store.put_partner(partner)
    store.put_token(TokenRecord(hash_token(f"in-{partner_id}"), partner_id, "C"))  # its token to call us
    return partner


def receiver_get(module: str, path: str, partner_id: str = "p1") -> Any:
    """GET on our receiver interface, as the partner: what a push would let it read back."""
    api = TestClient(load_app(module), raise_server_exceptions=False)
    resp = api.get(f"/ocpi/2.2.1/receiver/{module}/{path}", headers=hdr(f"in-{partner_id}"))
    assert resp.status_code == 200, resp.json()
    return resp.json()["data"]


def as_json(obj: Any) -> Any:
    """An object as a JSON client sees it (numbers as JSON numbers)."""
    return json.loads(jsonutil.dumps(obj))


def caller(store, partner_id: str = "p1") -> Caller:
    return Caller(partner_id=partner_id, kind="C", partner=store.get_partner(partner_id))


def location(i: int, **changes: Any) -> dict[str, Any]:
    loc = example("location_example.json")
    loc.update({"id": f"LOC{i}", "last_updated": f"2015-06-29T20:39:0{i}Z", **changes})
    return loc


def serve_locations(stub: SenderStub) -> tuple[list[dict], dict, dict]:
    good = [location(i) for i in range(1, 6)]
    foreign = location(6, country_code="NL", party_id="XXX")  # not a party of the partner
    invalid = location(7)
    del invalid["address"]
    stub.objects["locations"] = [good[0], good[1], foreign, good[2], invalid, good[3], good[4]]
    return good, foreign, invalid


# ------------------------------------------------------------------ locations
def test_pull_locations_full_then_incremental(any_store, stub) -> None:
    add_partner(any_store, stub)
    good, _, _ = serve_locations(stub)
    before = datetime.now(UTC)
    counts = pull.pull(any_store, "p1", "locations")
    assert counts == {"fetched": 7, "created": 5, "updated": 0, "stale": 0, "rejected": 2}

    # Every page was read by following the Link headers; no date_from on a full pull.
    pages = stub.pages("locations")
    assert [p["query"].get("offset", "0") for p in pages] == ["0", "2", "4", "6"]
    assert "date_from" not in pages[0]["query"]
    h = pages[0]["headers"]
    assert h["authorization"] == "Token " + base64.b64encode(TOKEN.encode()).decode()
    # From our eMSP party (we receive locations) to the partner's CPO party.
    assert (h["ocpi-from-country-code"], h["ocpi-from-party-id"]) == ("NL", "MSP")
    assert (h["ocpi-to-country-code"], h["ocpi-to-party-id"]) == ("BE", "BEC")
    assert len({p["headers"]["x-correlation-id"] for p in pages}) == 1

    # Round trip: the receiver GET returns exactly the pulled objects.
    who = caller(any_store)
    for loc in good:
        assert locations.get_received(any_store, who, "BE", "BEC", loc["id"]) == loc
        assert receiver_get("locations", f"BE/BEC/{loc['id']}") == as_json(loc)
    assert any_store.get(objects.ref_of(locations.KIND, "NL", "XXX", "LOC6")) is None
    assert any_store.get(objects.ref_of(locations.KIND, "BE", "BEC", "LOC7")) is None

    # The start of the successful pull is remembered in the partner record.
    pulled_at = parse_datetime(any_store.get_partner("p1")["pulled_at"]["locations"])
    assert before.replace(microsecond=0) <= pulled_at <= datetime.now(UTC)

    # Incremental: date_from = last pull's start minus the overlap; only what changed since.
    changed = location(1, name="Renamed", last_updated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    stub.objects["locations"][0] = changed
    stub.requests.clear()
    counts = pull.pull(any_store, "p1", "locations", incremental=True)
    assert counts == {"fetched": 1, "created": 0, "updated": 1, "stale": 0, "rejected": 0}
    sent = stub.pages("locations")[0]["query"]["date_from"]
    assert parse_datetime(sent) == pulled_at - pull.INCREMENTAL_OVERLAP
    assert locations.get_received(any_store, who, "BE", "BEC", "LOC1")["name"] == "Renamed"
    second = parse_datetime(any_store.get_partner("p1")["pulled_at"]["locations"])
    assert second >= pulled_at

    # An explicit date_from wins over the remembered one.
    stub.requests.clear()
    pull.pull(any_store, "p1", "locations", date_from="2015-06-29T20:39:04Z", incremental=True)
    assert stub.pages("locations")[0]["query"]["date_from"] == "2015-06-29T20:39:04Z"


def test_pull_never_overwrites_newer_data(any_store, stub) -> None:
    add_partner(any_store, stub)
    serve_locations(stub)
    who = caller(any_store)
    newer = location(2, name="Pushed later", last_updated="2030-01-01T00:00:00Z")
    locations.put_location(any_store, who, "BE", "BEC", "LOC2", newer)
    counts = pull.pull(any_store, "p1", "locations")
    assert counts == {"fetched": 7, "created": 4, "updated": 0, "stale": 1, "rejected": 2}
    assert locations.get_received(any_store, who, "BE", "BEC", "LOC2") == newer
    # Pulling the same again: equal last_updated is an idempotent write.
    again = pull.pull(any_store, "p1", "locations")
    assert again == {"fetched": 7, "created": 0, "updated": 4, "stale": 1, "rejected": 2}


def test_pulled_objects_are_published_like_pushes(memory_store, stub) -> None:
    add_partner(memory_store, stub)
    stub.objects["locations"] = [location(1)]
    pull.pull(memory_store, "p1", "locations")
    events = [(e["DetailType"], json.loads(e["Detail"])) for e in memory_store.published]
    assert [(t, d["id"], d["partner_id"]) for t, d in events] == [("ocpi.received.put", "LOC1", "p1")]


# ------------------------------------------------------------------ tariffs and tokens
TARIFF_FILES = [
    "tariff_1_simple_2hour.json",
    "tariff_4_complex.json",
    "tariff_5_free_of_charge.json",
    "tariff_13_simple_3hour_5parking.json",
    "tariff_14_step_size.json",
]


def test_pull_tariffs(any_store, stub) -> None:
    add_partner(any_store, stub)
    served = [example(f) for f in TARIFF_FILES]
    foreign = dict(copy.deepcopy(served[0]), country_code="FR", party_id="XYZ", id="FOREIGN")
    stub.objects["tariffs"] = [*served, foreign]
    counts = pull.pull(any_store, "p1", "tariffs")
    assert counts == {"fetched": 6, "created": 5, "updated": 0, "stale": 0, "rejected": 1}
    assert len(stub.pages("tariffs")) == 3
    for t in served:
        assert receiver_get("tariffs", f"{t['country_code']}/{t['party_id']}/{t['id']}") == as_json(t)
    assert any_store.get(objects.ref_of(tariffs.KIND, "FR", "XYZ", "FOREIGN")) is None


def test_pull_tokens_and_never_log_their_uids(any_store, stub, caplog) -> None:
    add_partner(any_store, stub)
    app_user = example("token_example_1_app_user.json")
    rfid = example("token_example_2_full_rfid.json")
    same_uid_other_type = dict(copy.deepcopy(rfid), type="OTHER")  # (uid, type) identify a token
    foreign = dict(example("token_put_example.json"), uid="FOREIGNUID0001")  # NL*TNM: not the partner's
    broken = dict(copy.deepcopy(rfid), uid="BROKENUID0001", whitelist="SOMETIMES")
    stub.objects["tokens"] = [app_user, foreign, rfid, broken, same_uid_other_type]
    counts = pull.pull(any_store, "p1", "tokens")
    assert counts == {"fetched": 5, "created": 3, "updated": 0, "stale": 0, "rejected": 2}
    h = stub.pages("tokens")[0]["headers"]
    # From our CPO party (we receive tokens) to the partner's eMSP party.
    assert (h["ocpi-from-country-code"], h["ocpi-from-party-id"]) == ("NL", "CPO")
    assert (h["ocpi-to-country-code"], h["ocpi-to-party-id"]) == ("DE", "TNM")
    who = caller(any_store)
    for t in (app_user, rfid, same_uid_other_type):
        got = objects.get_received(any_store, tokens.KIND, who, "DE", "TNM", t["uid"], t["type"])
        assert as_json(got.body) == as_json(t)
        assert receiver_get("tokens", f"DE/TNM/{t['uid']}?type={t['type']}") == as_json(t)
    logged = "\n".join(str(r.__dict__) for r in caplog.records)  # every record with its extra fields
    assert "pull done" in logged and "'rejected': 2" in logged
    for uid in (app_user["uid"], rfid["uid"], "FOREIGNUID0001", "BROKENUID0001"):
        assert uid not in logged


# ------------------------------------------------------------------ failures
def test_transport_failure_raises_client_api_error(any_store, stub) -> None:
    partner = add_partner(any_store, stub)
    serve_locations(stub)
    stub.fail_from_offset = 2  # page 1 works, page 2 answers 500 (after the client's retries)
    with pytest.raises(ClientApiError) as err:
        pull.pull(any_store, "p1", "locations")
    assert err.value.status_code == 3001 and "after 2 objects" in err.value.message
    assert err.value.data["created"] == 2
    who = caller(any_store)
    assert locations.get_received(any_store, who, "BE", "BEC", "LOC1")["id"] == "LOC1"  # kept
    assert "pulled_at" not in any_store.get_partner("p1")  # not a successful pull

    # Nobody listening at all.
    dead = dict(
        partner, endpoints=[{"identifier": "locations", "role": "SENDER", "url": "http://127.0.0.1:9/x"}]
    )
    any_store.put_partner(dead)
    with pytest.raises(ClientApiError):
        pull.pull(any_store, "p1", "locations")
    # A 401 (wrong token) is a failure too, never retried.
    any_store.put_partner(dict(partner, outbound_token="wrong"))
    with pytest.raises(ClientApiError) as err:
        pull.pull(any_store, "p1", "locations")
    assert "401" in err.value.message


def test_what_cannot_be_pulled(memory_store, stub) -> None:
    partner = add_partner(memory_store, stub, modules=("locations",))
    with pytest.raises(NoMatchingEndpoints):
        pull.pull(memory_store, "p1", "tariffs")
    with pytest.raises(InvalidParameters):
        pull.pull(memory_store, "p1", "commands")
    with pytest.raises(InvalidParameters):
        pull.pull(memory_store, "p1", "locations", date_from="yesterday")
    memory_store.put_partner(dict(partner, status="UNREGISTERED"))
    with pytest.raises(MethodNotAllowed):
        pull.pull(memory_store, "p1", "locations")
    # Only what the partner sends in a role it holds and we receive: tokens need an eMSP role.
    cpo_only = dict(
        partner, status="REGISTERED", roles=[{"role": "CPO", "country_code": "BE", "party_id": "BEC"}]
    )
    cpo_only["endpoints"] = [{"identifier": m, "role": "SENDER", "url": stub.url(m)} for m in pull.MODULES]
    assert pull.pullable_modules(cpo_only) == ["locations", "tariffs", "sessions", "cdrs"]
    receiver_only = dict(cpo_only, endpoints=[{"identifier": "locations", "role": "RECEIVER", "url": "x"}])
    assert pull.pullable_modules(receiver_only) == []


# ------------------------------------------------------------------ the function
class Context:
    function_name = "pull"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:pull"
    aws_request_id = "req"

    def __init__(self, remaining_ms: int = 900_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_handler():
    spec = importlib.util.spec_from_file_location("fn_pull", ROOT / "functions" / "pull" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.handler


def test_function_pulls_every_partner_and_reports_failures(memory_store, stub) -> None:
    handler = load_handler()
    add_partner(memory_store, stub, "good")
    serve_locations(stub)
    stub.objects["tariffs"] = [example(TARIFF_FILES[0])]
    stub.objects["tokens"] = [example("token_example_1_app_user.json")]
    bad = add_partner(memory_store, stub, "bad", modules=("locations",))
    bad["endpoints"] = [{"identifier": "locations", "role": "SENDER", "url": "http://127.0.0.1:9/locations"}]
    bad["roles"] = [{"role": "CPO", "country_code": "FR", "party_id": "BAD"}]
    memory_store.put_partner(bad)
    memory_store.put_partner({"partner_id": "gone", "status": "UNREGISTERED", "roles": [], "endpoints": []})

    result = handler({"incremental": True}, Context())
    done = {(r["partner_id"], r["module"]): r for r in result["pulled"]}
    assert set(done) == {("good", "locations"), ("good", "tariffs"), ("good", "tokens")}
    assert done[("good", "locations")]["created"] == 5 and done[("good", "locations")]["rejected"] == 2
    assert [(f["partner_id"], f["module"]) for f in result["failed"]] == [("bad", "locations")]
    assert result["failed"][0]["fetched"] == 0 and result["incremental"] is True
    assert result["skipped"] == []
    json.dumps(result)  # a plain JSON answer

    # The second scheduled run is incremental: date_from on every request.
    stub.requests.clear()
    handler({"partner_id": "good", "modules": ["tokens"], "incremental": True}, Context())
    assert [p["query"].get("date_from") is not None for p in stub.requests] == [True]
    # One partner: unknown or not registered -> reported, nothing pulled.
    gone = handler({"partner_id": "gone"}, Context())
    assert gone["pulled"] == [] and gone["failed"][0]["partner_id"] == "gone"
    # Out of time: nothing more is started.
    late = handler({"partner_id": "good"}, Context(remaining_ms=1000))
    assert late["pulled"] == [] and len(late["skipped"]) == 3
    with pytest.raises(ValueError):
        handler({"modules": ["commands"]}, Context())
    with pytest.raises(ValueError):
        handler({"incremental": "yes"}, Context())


def test_function_has_no_web_framework_of_its_own() -> None:
    tree = ast.parse((ROOT / "functions" / "pull" / "app.py").read_text())
    imported = {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not any(m and m.split(".")[0] in ("fastapi", "starlette", "mangum") for m in imported)
    assert "shared.http" not in imported
    # Nor through the shared code it uses (no FastAPI app or Mangum on a cold start).
    probe = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('fn_pull', 'functions/pull/app.py')\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in ('fastapi', 'mangum') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_sample_events_parse() -> None:
    spec = importlib.util.spec_from_file_location("fn_pull_events", ROOT / "functions" / "pull" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    files = sorted((ROOT / "events" / "pull").glob("*.json"))
    assert files
    for f in files:
        mod.parse_event(json.loads(f.read_text()))


# ------------------------------------------------------------------ the CLI
def test_cli_pull(memory_store, stub, capsys) -> None:
    from shared.admin.cli import main

    add_partner(memory_store, stub)
    serve_locations(stub)
    stub.objects["tariffs"] = [example(TARIFF_FILES[0])]
    assert main(["pull", "p1", "--module", "locations", "--json"]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out == [
        {
            "partner_id": "p1",
            "module": "locations",
            "fetched": 7,
            "created": 5,
            "updated": 0,
            "stale": 0,
            "rejected": 2,
        }
    ]
    # Default: incremental (date_from sent); --full: everything.
    stub.requests.clear()
    assert main(["pull", "p1", "--module", "locations"]) == 0
    assert "date_from" in stub.pages("locations")[0]["query"]
    stub.requests.clear()
    assert main(["pull", "p1", "--module", "locations", "--full"]) == 0
    assert "date_from" not in stub.pages("locations")[0]["query"]
    # Without --module: every module the partner offers that we receive.
    capsys.readouterr()
    assert main(["pull", "p1", "--full"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("locations ") and "tariffs" in text and "tokens" in text
    # Errors are reported, not raised.
    assert main(["pull", "nobody"]) == 1
    with pytest.raises(SystemExit):  # argparse: not a module we pull
        main(["pull", "p1", "--module", "commands"])
    stub.fail_from_offset = 0
    assert main(["pull", "p1", "--module", "tariffs"]) == 1
    assert "3001" in capsys.readouterr().err


def test_write_result_values_are_the_count_names() -> None:
    assert {r.value for r in WriteResult} <= set(pull.COUNTS)
