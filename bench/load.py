"""`make load`: a bounded load test of the local stack (shared.local.stack, moto embedded).

1. Starts the stack on free ports (bench/load_stack.py: the stack of `make run`, served the same way,
   plus DynamoDB counters per operation and moto made safe and fast for concurrent requests;
   `--loop-per-request`: each request on an event loop of its own, as Lambda serves one request per
   container) with our own parties NL*CPO (CPO) and NL*MSP (EMSP).
2. Registers --partners partners at once, each the real way: `ocpi-admin invite` (run in-process)
   gives token A, then the partner's credentials handshake over HTTP (GET versions, GET version
   details, POST credentials with its token B); our side calls back a partner stub on loopback
   (tests/partner_stub.py) that serves the partners' versions (credentials and a locations SENDER:
   no RECEIVER, so our own changes are not pushed to them; push is bench_push.py's subject). Each
   partner holds a CPO party DE*Cnn and an EMSP party DE*Enn.
3. Seeds our CPO with --own-locations locations through the ingest path (back-office `ocpi.own.put`
   events on the stack's bus -> IngestQueue -> IngestFunction, what `ocpi-admin publish` sends).
4. Runs every partner at once for --duration seconds (or until --requests requests), two clients
   per partner on one httpx.AsyncClient: as CPO it PUTs --locations locations (2 EVSEs each) into our
   eMSP receiver, then PATCHes EVSE statuses in a loop; as eMSP it crawls our CPO's locations
   (sender GET, --page-limit per page, following the Link headers), checking that every crawl sees
   exactly our own locations (X-Total-Count, ids: no partner's location leaks in).
5. Afterwards, per partner: its first location holds the last status it PATCHed on each EVSE (an
   acknowledged write is neither lost nor overtaken); another partner's GET of it answers 404
   (on the owner's party path: 2000; on its own party path with that location id: 2003), and
   another partner's PATCH of it 404 with nothing changed.

Prints throughput and p50/p95/p99 latency per operation, errors by kind (HTTP >= 400, OCPI status
!= 1000, transport), DynamoDB requests per operation (counted in the stack, by the X-Load-Op header
each request carries); writes bench/results/load.json (the stack's log: bench/results/load-stack.log).
Exits 1 if any error or isolation failure occurred.

    .venv/bin/python bench/load.py [--duration 30] [--requests N] [--partners 20] [--own-locations 200]
        [--locations 3] [--page-limit 50] [--loop-per-request] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"

OWN_PARTIES = [
    {"country_code": "NL", "party_id": "CPO", "role": "CPO", "business_details": {"name": "Load CPO"}},
    {"country_code": "NL", "party_id": "MSP", "role": "EMSP", "business_details": {"name": "Load eMSP"}},
]
PARTNER_CC = "DE"
EVSES_PER_LOCATION = 2
STATUSES = ("CHARGING", "AVAILABLE", "BLOCKED", "OUTOFORDER")
OPS = ("handshake", "put_location", "patch_evse", "crawl_page")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def auth(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


def location(cc: str, pid: str, lid: str, evses: int) -> dict[str, Any]:
    stamp = now()
    return {
        "country_code": cc,
        "party_id": pid,
        "id": lid,
        "publish": True,
        "address": "Stationsplein 1",
        "city": "Utrecht",
        "country": "NLD",
        "coordinates": {"latitude": "52.089444", "longitude": "5.110278"},
        "evses": [
            {
                "uid": f"E{e}",
                "status": "AVAILABLE",
                "connectors": [
                    {
                        "id": "1",
                        "standard": "IEC_62196_T2",
                        "format": "SOCKET",
                        "power_type": "AC_3_PHASE",
                        "max_voltage": 230,
                        "max_amperage": 32,
                        "last_updated": stamp,
                    }
                ],
                "last_updated": stamp,
            }
            for e in range(1, evses + 1)
        ],
        "time_zone": "Europe/Amsterdam",
        "last_updated": stamp,
    }


# ------------------------------------------------------------------------------------------ the stack
class Stack:
    """bench/load_stack.py as a child process on free ports, stopped with SIGTERM."""

    def __init__(self, tmp: Path, threaded: bool = False) -> None:
        self.port, self.moto_port = free_port(), free_port()
        self.name = f"ocpi-load-{self.port}"
        parties = tmp / "parties.json"
        parties.write_text(json.dumps(OWN_PARTIES))
        self.log = tmp / "stack.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OCPI_", "AWS_ENDPOINT_URL"))},
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "MOTO_PORT": str(self.moto_port),
            "STACK_NAME": self.name,
            "OCPI_OWN_PARTIES_FILE": str(parties),
            "LOG_LEVEL": "warning",
            "LOAD_STACK_THREADED": "1" if threaded else "0",
        }
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env_file(self) -> Path:
        return ROOT / ".local" / f"{self.name}.env"

    def start(self, timeout: float = 60) -> None:
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-u", str(ROOT / "bench" / "load_stack.py")],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the stack exited:\n{self.log.read_text()[-3000:]}")
            if "READY " in self.log.read_text():
                return
            time.sleep(0.2)
        raise RuntimeError(f"the stack was not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the stack process so far (Linux /proc; 0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError, IndexError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def exports(self) -> dict[str, str]:
        import shlex

        out = {}
        for line in self.env_file.read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").partition("=")
                out[key] = (shlex.split(value) or [""])[0]
        return out

    def seed_own_locations(self, count: int) -> None:
        """Back-office `ocpi.own.put` events on the stack's bus (what `ocpi-admin publish` sends)."""
        import boto3

        env = self.exports()
        events = boto3.client(
            "events",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env.get("AWS_DEFAULT_REGION", "eu-west-1"),
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        entries = [
            {
                "Source": "ocpi.backoffice",
                "DetailType": "ocpi.own.put",
                "Detail": json.dumps(
                    {"module": "locations", "object": location("NL", "CPO", f"OWN{i:04d}", 1)}
                ),
                "EventBusName": env["OCPI_EVENT_BUS_NAME"],
            }
            for i in range(count)
        ]
        for i in range(0, len(entries), 10):
            resp = events.put_events(Entries=entries[i : i + 10])
            if resp.get("FailedEntryCount"):
                raise RuntimeError(f"PutEvents failed: {resp['Entries']}")

    def invite(self, name: str) -> dict[str, str]:
        """`ocpi-admin invite --json` in this process (no interpreter start per partner)."""
        from shared.admin import cli

        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["--env", str(self.env_file), "invite", "--name", name, "--json"])
        if code != 0:
            raise RuntimeError(f"ocpi-admin invite failed ({code}): {out.getvalue()}")
        return json.loads(out.getvalue())


# ------------------------------------------------------------------------------------------ measuring
@dataclass
class Stats:
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)  # (operation, kind)
    stale: Counter = field(default_factory=Counter)  # answered 1000 "Not applied" (newer data kept)
    failures: list[str] = field(default_factory=list)  # isolation / consistency failures, spelled out
    crawls: list[float] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())


@dataclass
class Partner:
    index: int
    token_b: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_c: str = ""
    partner_id: str = ""
    #: (location id, evse uid) -> the status of the last PATCH answered 1000 and applied
    expected: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def cpo(self) -> str:
        return f"C{self.index:02d}"

    @property
    def emsp(self) -> str:
        return f"E{self.index:02d}"

    def location_ids(self, n: int) -> list[str]:
        return [f"P{self.index:02d}-L{k}" for k in range(1, n + 1)]


def ocpi_outcome(resp: httpx.Response) -> tuple[str | None, dict[str, Any]]:
    """(error kind or None, the parsed body)."""
    try:
        body = resp.json()
    except ValueError:
        return (f"http_{resp.status_code}" if resp.status_code >= 400 else "not_json"), {}
    if not isinstance(body, dict):
        return (f"http_{resp.status_code}" if resp.status_code >= 400 else "not_envelope"), {}
    if resp.status_code >= 400:
        return f"http_{resp.status_code}", body
    code = body.get("status_code")
    return (None if code == 1000 else f"ocpi_{code}"), body


async def call(
    client: httpx.AsyncClient,
    stats: Stats,
    op: str,
    method: str,
    url: str,
    token: str,
    body: Any = None,
) -> tuple[httpx.Response | None, dict[str, Any]]:
    """One timed request, tagged with its operation; (response or None on a transport error, body)."""
    started = time.perf_counter()
    try:
        resp = await client.request(method, url, json=body, headers={**auth(token), "X-Load-Op": op})
    except httpx.HTTPError as exc:
        stats.latencies[op].append(time.perf_counter() - started)
        stats.errors[(op, f"transport_{type(exc).__name__}")] += 1
        return None, {}
    stats.latencies[op].append(time.perf_counter() - started)
    kind, parsed = ocpi_outcome(resp)
    if kind:
        stats.errors[(op, kind)] += 1
    elif str(parsed.get("status_message") or "").startswith("Not applied"):
        stats.stale[op] += 1
    return (resp if kind is None else None), parsed


async def handshake(
    client: httpx.AsyncClient, stats: Stats, base: str, partner: Partner, token_a: str, stub_url: str
) -> None:
    """The partner's side of the credentials handshake with token A (partner-initiated)."""
    resp, body = await call(client, stats, "handshake", "GET", f"{base}/ocpi/versions", token_a)
    if resp is None:
        raise RuntimeError(f"partner {partner.index}: GET versions failed: {body}")
    url = next(v["url"] for v in body["data"] if v["version"] == "2.2.1")
    resp, body = await call(client, stats, "handshake", "GET", url, token_a)
    if resp is None:
        raise RuntimeError(f"partner {partner.index}: GET version details failed: {body}")
    creds_url = next(e["url"] for e in body["data"]["endpoints"] if e["identifier"] == "credentials")
    roles = [
        {
            "role": "CPO",
            "country_code": PARTNER_CC,
            "party_id": partner.cpo,
            "business_details": {"name": "C"},
        },
        {
            "role": "EMSP",
            "country_code": PARTNER_CC,
            "party_id": partner.emsp,
            "business_details": {"name": "E"},
        },
    ]
    creds = {"token": partner.token_b, "url": stub_url, "roles": roles}
    resp, body = await call(client, stats, "handshake", "POST", creds_url, token_a, creds)
    if resp is None:
        raise RuntimeError(f"partner {partner.index}: POST credentials failed: {body}")
    partner.token_c = body["data"]["token"]


class Run:
    def __init__(self, args: argparse.Namespace, base: str) -> None:
        self.args = args
        self.base = base
        self.stats = Stats()
        self.deadline = 0.0

    def done(self) -> bool:
        if self.args.requests and self.stats.total >= self.args.requests:
            return True
        return time.monotonic() >= self.deadline

    def rx_url(self, cc: str, pid: str, lid: str, evse: str | None = None) -> str:
        url = f"{self.base}/ocpi/2.2.1/receiver/locations/{cc}/{pid}/{lid}"
        return f"{url}/{evse}" if evse else url

    async def as_cpo(self, client: httpx.AsyncClient, p: Partner) -> None:
        """PUT our locations into their receiver, then PATCH EVSE statuses until the end."""
        ids = p.location_ids(self.args.locations)
        for lid in ids:
            body = location(PARTNER_CC, p.cpo, lid, EVSES_PER_LOCATION)
            await call(
                client,
                self.stats,
                "put_location",
                "PUT",
                self.rx_url(PARTNER_CC, p.cpo, lid),
                p.token_c,
                body,
            )
        targets = [(lid, f"E{e}") for lid in ids for e in range(1, EVSES_PER_LOCATION + 1)]
        i = 0
        while not self.done():
            lid, evse = targets[i % len(targets)]
            status = STATUSES[(i // len(targets)) % len(STATUSES)]
            resp, body = await call(
                client,
                self.stats,
                "patch_evse",
                "PATCH",
                self.rx_url(PARTNER_CC, p.cpo, lid, evse),
                p.token_c,
                {"status": status, "last_updated": now()},
            )
            if resp is not None and not str(body.get("status_message") or "").startswith("Not applied"):
                p.expected[(lid, evse)] = status
            i += 1

    async def as_emsp(self, client: httpx.AsyncClient, p: Partner) -> None:
        """Crawl our CPO's locations through the Link headers, again and again until the end."""
        while not self.done():
            url: str | None = f"{self.base}/ocpi/2.2.1/sender/locations?limit={self.args.page_limit}"
            seen: list[str] = []
            totals: set[str] = set()
            started = time.perf_counter()
            while url and not self.done():
                resp, body = await call(client, self.stats, "crawl_page", "GET", url, p.token_c)
                if resp is None:
                    break
                seen += [f"{o['country_code']}*{o['party_id']}*{o['id']}" for o in body.get("data") or []]
                totals.add(resp.headers.get("x-total-count", "?"))
                url = resp.links.get("next", {}).get("url")
            if url is not None:
                continue  # cut short (the end, or an error already counted)
            self.stats.crawls.append(time.perf_counter() - started)
            want = {f"NL*CPO*OWN{i:04d}" for i in range(self.args.own_locations)}
            if len(seen) != len(want) or set(seen) != want or totals != {str(len(want))}:
                self.stats.errors[("crawl", "crawl_mismatch")] += 1
                if len(self.stats.failures) < 10:
                    extra = sorted(set(seen) - want)[:3]
                    self.stats.failures.append(
                        f"partner {p.index}: crawl saw {len(seen)} objects ({len(set(seen))} distinct), "
                        f"X-Total-Count {sorted(totals)}, foreign {extra}"
                    )

    async def check_isolation(self, client: httpx.AsyncClient, partners: list[Partner]) -> dict[str, int]:
        """Each partner's locations: the last applied status stored; another partner cannot read or
        change them (404)."""
        checks: Counter = Counter()
        failures = self.stats.failures

        async def ask(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any, Any]:
            """(HTTP status, OCPI status_code, data); status 0 on a transport error."""
            try:
                resp = await client.request(method, url, json=body, headers=auth(token))
            except httpx.HTTPError as exc:
                return 0, type(exc).__name__, None
            _, parsed = ocpi_outcome(resp)
            return resp.status_code, parsed.get("status_code"), parsed.get("data")

        async def check(p: Partner, other: Partner) -> None:
            lid = p.location_ids(self.args.locations)[0]
            own_url = self.rx_url(PARTNER_CC, p.cpo, lid)
            status, code, data = await ask("GET", own_url, p.token_c)
            if (status, code) != (200, 1000):
                failures.append(f"partner {p.index}: GET of its own location {lid}: HTTP {status}, {code}")
            else:
                stored = {e["uid"]: e["status"] for e in data["evses"]}
                for (elid, evse), sent in p.expected.items():
                    if elid == lid and stored.get(evse) != sent:
                        failures.append(
                            f"partner {p.index}: {lid}/{evse} is {stored.get(evse)}, last PATCH {sent}"
                        )
            checks["own GET: the last PATCHed statuses are stored"] += 1
            for what, url, want in (
                ("another partner's GET on the owner's party path", own_url, 2000),
                (
                    "another partner's GET on its own party path",
                    self.rx_url(PARTNER_CC, other.cpo, lid),
                    2003,
                ),
            ):
                status, code, _ = await ask("GET", url, other.token_c)
                if (status, code) != (404, want):
                    failures.append(f"{what} ({other.index} -> {p.index}): HTTP {status}, {code}")
                checks[f"{what}: 404/{want}"] += 1
            evse_url = self.rx_url(PARTNER_CC, p.cpo, lid, "E1")
            before = await ask("GET", evse_url, p.token_c)
            status, code, _ = await ask(
                "PATCH", evse_url, other.token_c, {"status": "REMOVED", "last_updated": now()}
            )
            after = await ask("GET", evse_url, p.token_c)
            if status != 404 or before[:2] != (200, 1000) or before != after:
                failures.append(
                    f"another partner's PATCH ({other.index} -> {p.index}): HTTP {status}, {code}; "
                    f"EVSE before {before[:2]}, after {after[:2]}, {'same' if before == after else 'CHANGED'}"
                )
            checks["another partner's PATCH: 404, nothing changed"] += 1

        await asyncio.gather(*(check(p, partners[(k + 1) % len(partners)]) for k, p in enumerate(partners)))
        return dict(checks)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(-(-q * len(sorted_values) // 100)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def dynamodb_per_op(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for op, calls in after["dynamodb"].items():
        old = before["dynamodb"].get(op, {})
        diff = {name: n - old.get(name, 0) for name, n in calls.items() if n - old.get(name, 0)}
        http = after["http"].get(op, 0) - before["http"].get(op, 0)
        if diff:
            out[op] = {
                "http_requests": http,
                "dynamodb_requests": sum(diff.values()),
                "by_operation": dict(sorted(diff.items())),
                "per_request": round(sum(diff.values()) / http, 2) if http else None,
            }
    return out


async def wait_for_seed(
    client: httpx.AsyncClient, base: str, token: str, count: int, timeout: float
) -> float:
    started = time.monotonic()
    while True:
        resp = await client.get(f"{base}/ocpi/2.2.1/sender/locations?limit=1", headers=auth(token))
        if resp.status_code == 200 and resp.headers.get("x-total-count") == str(count):
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise RuntimeError(
                f"our {count} own locations were not ingested in {timeout:.0f} s: {resp.headers}"
            )
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    from tests.partner_stub import PartnerStub

    phases: dict[str, float] = {}
    partners = [Partner(i) for i in range(1, args.partners + 1)]
    t = time.monotonic()
    invites = [stack.invite(f"load partner {p.index}") for p in partners]
    phases["invites (ocpi-admin)"] = time.monotonic() - t
    # Idle connections are dropped before uvicorn's 5 s keep-alive ends them (a request sent as the
    # server closes would fail with a ReadError that is no fault of the stack).
    limits = httpx.Limits(
        max_connections=4 * args.partners, max_keepalive_connections=4 * args.partners, keepalive_expiry=2
    )
    with PartnerStub() as stub:
        stub.modules = [("credentials", "SENDER"), ("locations", "SENDER")]
        stub.accepted_tokens = {p.token_b for p in partners}
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            run_ = Run(args, stack.base)
            t = time.monotonic()
            await asyncio.gather(
                *(
                    handshake(client, run_.stats, stack.base, p, inv["token"], stub.versions_url)
                    for p, inv in zip(partners, invites, strict=True)
                )
            )
            for p, inv in zip(partners, invites, strict=True):
                p.partner_id = inv["partner_id"]
            phases["handshakes (concurrent)"] = time.monotonic() - t
            # After the registrations: moto's TransactWriteItems (party claims) copies the whole table.
            t = time.monotonic()
            stack.seed_own_locations(args.own_locations)
            await wait_for_seed(client, stack.base, partners[0].token_c, args.own_locations, 90)
            phases["seed: own locations ingested"] = time.monotonic() - t

            counts_url = f"{stack.base}/_load/counts"
            before = (await client.get(counts_url)).json()
            run_.stats = Stats()  # the load window only (a failed handshake has stopped the run)
            run_.deadline = time.monotonic() + args.duration
            cpu = (stack.cpu_seconds(), time.process_time())
            started = time.perf_counter()
            tasks = [run_.as_cpo(client, p) for p in partners] + [run_.as_emsp(client, p) for p in partners]
            await asyncio.gather(*tasks)
            window = time.perf_counter() - started
            stack_cpu, client_cpu = stack.cpu_seconds() - cpu[0], time.process_time() - cpu[1]
            after = (await client.get(counts_url)).json()
            t = time.monotonic()
            checks = await run_.check_isolation(client, partners)
            phases["isolation checks"] = time.monotonic() - t

    stats = run_.stats
    ops = {}
    for op in OPS:
        lat = sorted(stats.latencies.get(op, []))
        if not lat:
            continue
        ops[op] = {
            "requests": len(lat),
            "per_second": round(len(lat) / window, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 1),
            "p95_ms": round(percentile(lat, 95) * 1000, 1),
            "p99_ms": round(percentile(lat, 99) * 1000, 1),
            "max_ms": round(lat[-1] * 1000, 1),
            "errors": sum(n for (o, _), n in stats.errors.items() if o == op),
            "stale_not_applied": stats.stale.get(op, 0),
        }
    crawls = sorted(stats.crawls)
    return {
        "when": now(),
        "settings": {
            "partners": args.partners,
            "duration_s": args.duration,
            "request_limit": args.requests,
            "locations_per_partner": args.locations,
            "evses_per_location": EVSES_PER_LOCATION,
            "own_locations": args.own_locations,
            "page_limit": args.page_limit,
            "concurrent_clients": 2 * args.partners,
            "stack_serving": "an event loop per request"
            if args.loop_per_request
            else "one event loop (make run)",
        },
        "window_s": round(window, 2),
        # CPU time of the stack process (API, pollers and its moto) and of this client, per request.
        "stack_cpu_ms_per_request": round(stack_cpu * 1000 / max(1, run_.stats.total), 1),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, run_.stats.total), 1),
        "total_requests": stats.total,
        "per_second": round(stats.total / window, 1),
        "operations": ops,
        "full_crawls": {
            "count": len(crawls),
            "p50_s": round(percentile(crawls, 50), 3),
            "p95_s": round(percentile(crawls, 95), 3),
        },
        "errors": {f"{op} {kind}": n for (op, kind), n in sorted(stats.errors.items())},
        "error_count": sum(stats.errors.values()),
        "isolation_checks": checks,
        "failures": stats.failures,
        "dynamodb": dynamodb_per_op(before, after),
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
    }


def print_report(r: dict[str, Any]) -> None:
    s = r["settings"]
    print(
        f"load: {s['partners']} partners x 2 clients, {r['window_s']} s window, {s['own_locations']} own "
        f"locations (page {s['page_limit']}), {s['locations_per_partner']} locations x "
        f"{s['evses_per_location']} EVSEs per partner"
    )
    print(
        f"total {r['total_requests']} requests, {r['per_second']} req/s; CPU per request: stack "
        f"{r['stack_cpu_ms_per_request']} ms (API + its moto), client {r['client_cpu_ms_per_request']} ms"
    )
    head = ("operation", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "ddb req/req")
    print(
        f"{head[0]:<14}{head[1]:>9}{head[2]:>8}{head[3]:>8}{head[4]:>8}{head[5]:>8}{head[6]:>8}{head[7]:>8}{head[8]:>13}"
    )
    for op, o in r["operations"].items():
        ddb = r["dynamodb"].get(op, {}).get("per_request")
        print(
            f"{op:<14}{o['requests']:>9}{o['per_second']:>8}{o['p50_ms']:>8}{o['p95_ms']:>8}"
            f"{o['p99_ms']:>8}{o['max_ms']:>8}{o['errors']:>8}{'-' if ddb is None else ddb:>13}"
        )
    c = r["full_crawls"]
    print(f"full crawls of our locations: {c['count']}, p50 {c['p50_s']} s, p95 {c['p95_s']} s")
    print("DynamoDB requests per operation (during the window):")
    for op, d in r["dynamodb"].items():
        per = f"{d['per_request']} per request, " if d["per_request"] is not None else ""
        print(f"  {op:<14} {d['dynamodb_requests']:>7} ({per}{d['by_operation']})")
    print(f"errors: {r['error_count']} {r['errors'] or ''}".rstrip())
    stale = {op: o["stale_not_applied"] for op, o in r["operations"].items() if o["stale_not_applied"]}
    if stale:
        print(f"answered 1000 'Not applied' (newer data kept): {stale}")
    print("isolation and consistency after the load:")
    for what, n in r["isolation_checks"].items():
        print(f"  {what}: {n} checked")
    for failure in r["failures"]:
        print(f"  FAILED {failure}")
    print(f"phases: {r['phases_s']}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=30, help="seconds of load (default 30)")
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="stop after this many requests (or --duration, whichever comes first)",
    )
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--locations", type=int, default=3, help="locations each partner PUTs (2 EVSEs each)")
    parser.add_argument("--own-locations", type=int, default=200, help="our CPO's locations, crawled")
    parser.add_argument("--page-limit", type=int, default=50)
    parser.add_argument(
        "--loop-per-request",
        action="store_true",
        help="serve each request on an event loop of its own in a worker thread, as Lambda runs one "
        "request per container (default: uvicorn's one loop, as `make run` serves)",
    )
    parser.add_argument("--json", default=str(RESULTS / "load.json"), help="where to write the results")
    args = parser.parse_args()
    if not 1 <= args.partners <= 99:
        parser.error("--partners: 1 to 99")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ocpi-load-") as tmp:
        stack = Stack(Path(tmp), threaded=args.loop_per_request)
        try:
            t = time.monotonic()
            stack.start()
            startup = time.monotonic() - t
            result = asyncio.run(run(args, stack))
        finally:
            stack.stop()
            if stack.log.exists():
                RESULTS.mkdir(parents=True, exist_ok=True)
                (RESULTS / "load-stack.log").write_text(stack.log.read_text())
    result["phases_s"] = {"stack start": round(startup, 2), **result["phases_s"]}
    result["wall_s"] = round(time.monotonic() - started, 1)
    print_report(result)
    print(f"wall time {result['wall_s']} s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {out}")
    return 1 if result["error_count"] or result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
