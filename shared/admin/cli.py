"""ocpi-admin: the operator's command line, for the local stack and for a deployed stack.

It talks to the same table the functions use: set OCPI_TABLE_NAME, OCPI_PUBLIC_URL and either
OCPI_TOKEN_KEY_SECRET_ARN (deployed: from the stack outputs) or OCPI_TOKEN_KEY, plus the usual
AWS variables; or pass `--env FILE` with `export NAME=value` lines (the local stack writes one to
.local/<stack>.env).

    ocpi-admin invite --name "Partner X"          # token A + our versions URL for a new partner
    ocpi-admin register --versions-url URL --token TOKEN_A [--name N]
    ocpi-admin update PARTNER_ID                   # rotate tokens, re-read endpoints
    ocpi-admin unregister PARTNER_ID
    ocpi-admin partners [--json]                   # roles, version, endpoints, status
    ocpi-admin partners seal-tokens                # seal partner tokens still stored in clear (KMS)
    ocpi-admin pull PARTNER_ID [--module M] [--full]  # GET a partner's locations/tariffs/tokens/
                                                       # sessions/cdrs
    ocpi-admin publish --module locations|tariffs|tokens|sessions|cdrs --file OBJECT.json  # -> bus
        [--location-id L --country-code CC --party-id PID [--evse-uid E]]   # an EVSE / connector
        [--authorization POLICY.json]                                       # a token's policy
    ocpi-admin publish --patch --module M --file FIELDS.json --country-code CC --party-id PID
        --id ID [--evse-uid E [--connector-id C]] [--type RFID]
    ocpi-admin publish --delete --module tariffs --country-code CC --party-id PID --id ID
    ocpi-admin command PARTNER_ID START_SESSION --file REQUEST.json   # as eMSP: command a CPO's charger
    ocpi-admin profile PARTNER_ID set|get|clear SESSION_ID [--file PROFILE.json] [--duration S]
    ocpi-admin command-status COMMAND_ID          # its response and, once it came, its result
    ocpi-admin push dlq                            # pushes that failed every attempt
    ocpi-admin push replay [--partner P] [--message-id ID ...]  # back to the delivery queue
    ocpi-admin push resync PARTNER_ID [--module M] # queue a PUT of every object it is entitled to
    ocpi-admin price --tariff TARIFF.json --cdr CDR.json [--time-zone ZONE] [--no-breakdown]
                                                   # the tariff engine, offline: every CDR total
    ocpi-admin billing run --period 2026-10|2026-10-05 [--partner ID] [--wait SECONDS]
    ocpi-admin billing list [--partner ID]         # statements recorded
    ocpi-admin billing show PARTNER_ID PERIOD      # the statement (JSON)
    ocpi-admin billing download PARTNER_ID PERIOD --out DIR   # statement.json + lines.csv
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
MODULES = ("locations", "tariffs", "tokens", "sessions", "cdrs")  # what publish and pull handle


def load_env_file(path: str) -> None:
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep:
            parts = shlex.split(value) if value else [""]
            os.environ[name.strip()] = parts[0] if parts else ""


def _base_url() -> str:
    from shared.config import get_settings

    url = get_settings().public_url
    if not url:
        raise SystemExit(
            "error: OCPI_PUBLIC_URL is not set (our public base URL, e.g. https://ocpi.example.com)"
        )
    return url


def _store() -> Any:
    from shared.store import get_store

    return get_store()


def cmd_invite(args: argparse.Namespace) -> int:
    from shared.services import credentials

    partner_id, token_a = credentials.invite(_store(), args.name, args.ttl, own_role_211=args.as_role or "")
    out = {
        "partner_id": partner_id,
        "token": token_a,
        "versions_url": credentials.our_versions_url(_base_url()),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"partner_id:   {partner_id}")
        print(f"token A:      {token_a}")
        print(f"versions URL: {out['versions_url']}")
        print("Give the partner the token and the versions URL over a secure channel; the token works once.")
    return EXIT_OK


def _print_partner(p: dict[str, Any], as_json: bool) -> None:
    from shared.services.credentials import public_partner

    p = public_partner(p)
    if as_json:
        print(json.dumps(p, default=str))
        return
    roles = (
        ", ".join(f"{r['country_code']}*{r['party_id']} ({r['role']})" for r in p.get("roles") or []) or "-"
    )
    print(f"{p['partner_id']}  {p.get('status', '?'):<12} v{p.get('version', '-'):<6} {p.get('name', '')}")
    print(f"    roles:     {roles}")
    if p.get("versions_url"):
        print(f"    versions:  {p['versions_url']}")
    for e in p.get("endpoints") or []:
        print(f"    endpoint:  {e['identifier']:<16} {e.get('role', ''):<9} {e['url']}")


def cmd_register(args: argparse.Namespace) -> int:
    from shared.services import credentials

    partner = credentials.register_with(
        _store(), _base_url(), args.versions_url, args.token, args.name or "", own_role_211=args.as_role or ""
    )
    _print_partner(partner, args.json)
    return EXIT_OK


def cmd_update(args: argparse.Namespace) -> int:
    from shared.services import credentials

    _print_partner(credentials.update_with(_store(), _base_url(), args.partner_id), args.json)
    return EXIT_OK


def cmd_unregister(args: argparse.Namespace) -> int:
    from shared.services import credentials

    _print_partner(credentials.unregister_with(_store(), args.partner_id), args.json)
    return EXIT_OK


def cmd_partners(args: argparse.Namespace) -> int:
    if args.action == "seal-tokens":
        from shared.services import credentials

        counts = credentials.seal_partner_tokens(_store())
        print(json.dumps(counts) if args.json else " ".join(f"{k}={v}" for k, v in counts.items()))
        return EXIT_OK
    partners = _store().list_partners()
    if args.json:
        from shared.services.credentials import public_partner

        print(json.dumps([public_partner(p) for p in partners], default=str))
        return EXIT_OK
    if not partners:
        print("no partners")
    for p in partners:
        _print_partner(p, False)
    return EXIT_OK


def cmd_pull(args: argparse.Namespace) -> int:
    from shared.services import pull

    store = _store()
    if args.module:
        modules = [args.module]
    else:
        modules = pull.pullable_modules(pull.registered_partner(store, args.partner_id))
    if not modules:
        print(
            "error: the partner offers nothing we receive (locations, tariffs, tokens, sessions or cdrs "
            "as Sender)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    status = EXIT_OK
    for module in modules:
        try:
            counts = pull.pull(store, args.partner_id, module, incremental=not args.full)
        except Exception as err:
            if len(modules) == 1:
                raise
            message = getattr(err, "message", None) or f"{type(err).__name__}: {err}"
            print(f"error: {module}: {message}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        if args.json:
            print(json.dumps({"partner_id": args.partner_id, "module": module, **counts}))
        else:
            print(f"{module:<10} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
    return status


# ------------------------------------------------------------------ publish (back-office events)
# EventBridge refuses entries over 256 KB (detail and envelope together).
MAX_EVENT_BYTES = 256 * 1024


def _read_json(path: str, what: str) -> Any:
    from shared import jsonutil

    try:
        return jsonutil.loads(Path(path).read_text())
    except OSError as err:
        raise ValueError(f"cannot read {what} {path}: {err.strerror or err}") from err
    except ValueError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from err


def publish_detail(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The back-office event (detail-type, detail) the `publish` arguments describe."""
    from shared import events

    ids = {
        "country_code": args.country_code,
        "party_id": args.party_id,
        "evse_uid": args.evse_uid,
        "connector_id": args.connector_id,
    }
    if args.delete or args.patch:
        flag = "--delete" if args.delete else "--patch"
        if not (args.country_code and args.party_id and args.id):
            raise ValueError(f"{flag} needs --country-code, --party-id and --id")
    elif args.id is not None:
        raise ValueError("--id goes with --patch or --delete (a put takes the id from the object)")
    if args.delete:
        detail = {"module": args.module, **ids, "id": args.id, "last_updated": args.last_updated}
        return events.OWN_DELETE, {k: v for k, v in detail.items() if v is not None}
    if not args.file:
        raise ValueError("--file is required (the OCPI object, or the fields of a --patch)")
    body = _read_json(args.file, "file")
    if args.patch:
        detail = {"module": args.module, **ids, "id": args.id, "type": args.type, "fields": body}
        return events.OWN_PATCH, {k: v for k, v in detail.items() if v is not None}
    detail = {"module": args.module, **ids, "location_id": args.location_id, "object": body}
    if args.authorization:
        detail["authorization"] = _read_json(args.authorization, "authorization file")
    return events.OWN_PUT, {k: v for k, v in detail.items() if v is not None}


def cmd_app(args: argparse.Namespace) -> int:
    from shared.services import credentials

    client_id, token = credentials.create_app_client(_store(), args.name)
    out = {"client_id": client_id, "token": token}
    print(json.dumps(out) if args.json else f"client_id: {client_id}\ntoken:     {token}")
    return EXIT_OK


def cmd_authorize(args: argparse.Namespace) -> int:
    from shared.services.authorization import authorize_driver

    emsp = (args.country_code, args.party_id) if args.country_code and args.party_id else None
    location = None
    if args.location_id:
        location = {
            "location_id": args.location_id,
            **({"evse_uids": args.evse_uid} if args.evse_uid else {}),
        }
    decision = authorize_driver(_store(), args.uid, args.type, emsp=emsp, location=location)
    print(json.dumps(decision, default=str))
    return EXIT_OK if decision.get("allowed") == "ALLOWED" else EXIT_ERROR


def cmd_publish(args: argparse.Namespace) -> int:
    import boto3

    from shared import events
    from shared.services import ingest

    if not os.environ.get("OCPI_EVENT_BUS_NAME"):
        raise SystemExit("error: OCPI_EVENT_BUS_NAME is not set (the stack's EventBusName output)")
    detail_type, detail = publish_detail(args)
    ingest.check(detail_type, detail)  # refuse here what the ingest function would reject
    entry = events.entry(detail_type, detail, source=events.SOURCE_BACKOFFICE)
    size = len(entry["Detail"].encode()) + len(detail_type) + len(entry["Source"])
    if size > MAX_EVENT_BYTES:
        raise ValueError(
            f"the event is {size} bytes, over EventBridge's {MAX_EVENT_BYTES}: publish the location "
            "without its EVSEs, then each EVSE (--location-id)"
        )
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"
    response = boto3.client("events", region_name=region).put_events(Entries=[entry])
    result = (response.get("Entries") or [{}])[0]
    if response.get("FailedEntryCount") or not result.get("EventId"):
        raise RuntimeError(
            f"EventBridge did not take the event: {result.get('ErrorCode')} {result.get('ErrorMessage')}"
        )
    if args.json:
        print(json.dumps({"event_id": result["EventId"], "detail_type": detail_type}))
    else:
        print(result["EventId"])
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    from shared.services import push

    if args.action == "dlq":
        rows = push.dlq_list()
    elif args.action == "replay":
        rows = push.dlq_replay(args.partner, args.message_id)
    else:
        if not args.partner_id:
            raise SystemExit("error: push resync needs a PARTNER_ID")
        partner = _store().get_partner(args.partner_id)
        if not partner:
            raise SystemExit(f"error: unknown partner {args.partner_id}")
        counts = push.resync(_store(), partner, [args.module] if args.module else None)
        print(json.dumps(counts) if args.json else ", ".join(f"{m}: {n}" for m, n in counts.items()))
        return EXIT_OK
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    verb = "replayed" if args.action == "replay" else "dead-lettered"
    print(f"{len(rows)} {verb}")
    for r in rows:
        what = " ".join(f"{k}={r[k]}" for k in ("partner_id", "ocpi_module", "party", "object_id") if k in r)
        since = r.get("first_sent_at", "?")
        print(f"  {r['message_id']}  {what}  receives={r.get('receive_count')}  since={since}")
    return EXIT_OK


def cmd_command(args: argparse.Namespace) -> int:
    from shared.services import commands

    request = json.loads(Path(args.file).read_text()) if args.file else {}
    out = commands.send(_store(), _base_url(), args.partner_id, args.command, request)
    if args.json:
        print(json.dumps(out, default=str))
    else:
        response = out["response"]
        print(f"{out['command_id']} {response.get('result')} (timeout {response.get('timeout')} s)")
    return EXIT_OK if out["response"].get("result") == "ACCEPTED" else EXIT_ERROR


def cmd_profile(args: argparse.Namespace) -> int:
    from shared.services import commands

    kind = {"set": "SET_PROFILE", "get": "GET_PROFILE", "clear": "CLEAR_PROFILE"}[args.action]
    request = {"charging_profile": json.loads(Path(args.file).read_text())} if args.file else None
    out = commands.send(
        _store(),
        _base_url(),
        args.partner_id,
        kind,
        request,
        session_id=args.session_id,
        duration=args.duration,
    )
    print(
        json.dumps(out, default=str) if args.json else f"{out['command_id']} {out['response'].get('result')}"
    )
    return EXIT_OK if out["response"].get("result") == "ACCEPTED" else EXIT_ERROR


def cmd_price(args: argparse.Namespace) -> int:
    """Price a CDR's charging periods with tariffs from files (no AWS): the CDR's cost fields as
    the engine computes them, and the breakdown that explains them."""
    from shared import jsonutil
    from shared.pricing import price_cdr

    def read(path: str) -> Any:
        data = jsonutil.loads(Path(path).read_bytes())
        if isinstance(data, dict) and "data" in data and "status_code" in data:
            data = data["data"]  # an OCPI response envelope, as the spec's example files are
        return data

    tariffs: list[Any] = []
    for path in args.tariff:
        data = read(path)
        tariffs.extend(data if isinstance(data, list) else [data])
    cdr = read(args.cdr)
    if not tariffs and isinstance(cdr, dict):
        tariffs = list(cdr.get("tariffs") or [])  # the tariffs the CDR carries
    if not tariffs:
        raise SystemExit("error: no tariff: pass --tariff or a CDR with `tariffs`")
    result = price_cdr(cdr, tariffs, time_zone=args.time_zone)
    # Decimal -> JSON number text (exact: money has MONEY_PLACES decimals), then indented.
    print(json.dumps(json.loads(jsonutil.dumps(result.to_json(breakdown=not args.no_breakdown))), indent=2))
    return EXIT_OK


def cmd_command_status(args: argparse.Namespace) -> int:
    from shared.services import commands

    found = commands.sent_command(_store(), args.command_id)
    if found is None:
        raise SystemExit(f"error: unknown command {args.command_id}")
    print(json.dumps(found, default=str) if args.json else json.dumps(found, default=str, indent=2))
    return EXIT_OK


# ------------------------------------------------------------------ billing runs
def _billing_s3() -> Any:
    from shared.services import billing

    return billing.aws_client("s3")


def _billing_object(record: dict[str, Any], key: str) -> bytes:
    resp = _billing_s3().get_object(Bucket=record["bucket"], Key=record[key])
    return resp["Body"].read()


def _billing_record(partner_id: str, period: str) -> dict[str, Any]:
    record = _store().get_statement(partner_id, period)
    if record is None:
        raise SystemExit(f"error: no statement for partner {partner_id} and period {period}")
    return record


def cmd_billing(args: argparse.Namespace) -> int:
    import hashlib
    import time
    from datetime import UTC, datetime

    from shared.services import billing

    store = _store()
    if args.action == "run":
        if not args.period:
            raise SystemExit("error: billing run needs --period YYYY-MM or YYYY-MM-DD")
        billing.parse_period(args.period)
        settings = billing.BillingSettings.from_env()
        queue = billing.SqsQueue(billing.aws_client("sqs"), settings.queue_url)
        now = datetime.now(UTC)
        msg = {"kind": "run", "period": args.period, "as_of": billing.sortable_datetime(now)}
        msg["run_id"] = billing.new_run_id(now)
        if args.partner:
            msg["partner_id"] = args.partner
        summary, _ = billing.run_jobs(store, settings, msg)  # refuses an unknown partner here
        queue.send([msg])
        pending = set(summary["partners"])
        deadline = time.monotonic() + (args.wait or 0)
        while pending and time.monotonic() < deadline:
            for pid in sorted(pending):
                record = store.get_statement(pid, args.period)
                if record and record.get("run_id") == msg["run_id"]:
                    pending.discard(pid)
            if pending:
                time.sleep(1)
        out = {**summary, "waiting_for": sorted(pending) if args.wait else None}
        if args.json:
            print(json.dumps(out))
        else:
            count = len(summary["partners"])
            print(f"run {summary['run_id']}: period {summary['period']}, {count} partner(s)")
            if args.wait:
                print(f"still running: {', '.join(sorted(pending))}" if pending else "all statements written")
        return EXIT_OK if not (args.wait and pending) else EXIT_ERROR
    if args.action == "list":
        records = store.list_statements(args.partner)
        if args.json:
            print(json.dumps(records, default=str))
            return EXIT_OK
        if not records:
            print("no statements")
        for r in records:
            found = sum(int(v) for v in (r.get("discrepancies") or {}).values())
            totals = ", ".join(
                f"{t['direction']} {t['currency']} {t['total_cost_excl_vat']}" for t in r.get("totals") or []
            )
            final = "" if r.get("final") else "  (not final)"
            lines = f"{r['lines']} CDRs  {found} discrepancies"
            print(f"{r['partner_id']}  {r['period']:<10}  {lines}  {totals}{final}")
        return EXIT_OK
    if not (args.partner_id and args.period_arg):
        raise SystemExit(f"error: billing {args.action} needs PARTNER_ID and PERIOD")
    record = _billing_record(args.partner_id, args.period_arg)
    if args.action == "show":
        statement = json.loads(_billing_object(record, "statement_key"))
        print(json.dumps(statement) if args.json else json.dumps(statement, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not args.out:
        raise SystemExit("error: billing download needs --out DIR")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, digest in (("statement_key", "statement_sha256"), ("lines_key", "lines_sha256")):
        data = _billing_object(record, key)
        if hashlib.sha256(data).hexdigest() != record[digest]:
            raise SystemExit(f"error: {record[key]} does not match its recorded sha256 (a run writing now?)")
        path = out_dir / record[key].rsplit("/", 1)[-1]
        path.write_bytes(data)
        written[key.removesuffix("_key")] = str(path)
    print(json.dumps(written) if args.json else "\n".join(written.values()))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocpi-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", help="file of `export NAME=value` lines to load first")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("invite", help="create a registration token (token A) for a new partner")
    p.add_argument("--name", required=True, help="a label for the partner")
    p.add_argument("--ttl", type=int, default=None, help="seconds the token stays valid (default 7 days)")
    p.add_argument(
        "--as", dest="as_role", choices=["CPO", "EMSP"], help="OCPI 2.1.1: which of our roles it talks to"
    )
    p.set_defaults(func=cmd_invite)

    p = sub.add_parser("register", help="register with a partner (we initiate the handshake)")
    p.add_argument("--versions-url", required=True)
    p.add_argument("--token", required=True, help="the token A the partner gave us")
    p.add_argument("--name", default="")
    p.add_argument(
        "--as", dest="as_role", choices=["CPO", "EMSP"], help="OCPI 2.1.1: which of our roles it talks to"
    )
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("update", help="rotate tokens with a partner and re-read its endpoints")
    p.add_argument("partner_id")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("unregister", help="unregister from a partner")
    p.add_argument("partner_id")
    p.set_defaults(func=cmd_unregister)

    p = sub.add_parser("partners", help="list partners, or seal the tokens of older records")
    p.add_argument(
        "action",
        nargs="?",
        choices=["list", "seal-tokens"],
        default="list",
        help="seal-tokens: encrypt (KMS) every partner token still stored in clear; prints counts",
    )
    p.set_defaults(func=cmd_partners)

    p = sub.add_parser("pull", help="pull a partner's objects (recovery for missed pushes)")
    p.add_argument("partner_id")
    p.add_argument("--module", choices=list(MODULES), help="default: all it offers")
    p.add_argument("--full", action="store_true", help="everything, not only changes since the last pull")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser(
        "publish", help="publish one of our own objects (or a change) to the bus, as the back office does"
    )
    p.add_argument("--module", required=True, choices=list(MODULES))
    p.add_argument("--file", help="JSON file: the OCPI object (put) or the fields to change (--patch)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--patch", action="store_true", help="change some fields (ocpi.own.patch)")
    mode.add_argument("--delete", action="store_true", help="delete an own tariff (ocpi.own.delete)")
    p.add_argument("--country-code")
    p.add_argument("--party-id")
    p.add_argument("--id", help="--patch/--delete: the location id, tariff id, token uid or session id")
    p.add_argument("--location-id", help="put of an EVSE (or of a connector, with --evse-uid)")
    p.add_argument("--evse-uid")
    p.add_argument("--connector-id", help="--patch of a connector (with --evse-uid)")
    p.add_argument("--type", help="--patch of a token: its type (default RFID)")
    p.add_argument("--authorization", help="put of a token: JSON file with its authorization policy")
    p.add_argument("--last-updated", help="--delete: keep the tariff if the stored one is newer")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("app", help="create a token for one of our own apps (extension endpoints only)")
    p.add_argument("--name", required=True)
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("authorize", help="as CPO: authorize a driver's token (whitelist or real-time)")
    p.add_argument("--uid", required=True)
    p.add_argument("--type", default="RFID")
    p.add_argument("--country-code", help="the eMSP party, when known")
    p.add_argument("--party-id")
    p.add_argument("--location-id")
    p.add_argument("--evse-uid", action="append")
    p.set_defaults(func=cmd_authorize)

    p = sub.add_parser("command", help="as eMSP: send a command to a CPO partner (mod_commands)")
    p.add_argument("partner_id")
    p.add_argument(
        "command", help="START_SESSION, STOP_SESSION, RESERVE_NOW, CANCEL_RESERVATION, UNLOCK_CONNECTOR"
    )
    p.add_argument("--file", help="JSON file: the command object without response_url (we set ours)")
    p.set_defaults(func=cmd_command)

    p = sub.add_parser(
        "profile", help="as eMSP: set, get or clear a charging profile of a CPO partner's session"
    )
    p.add_argument("partner_id")
    p.add_argument("action", choices=["set", "get", "clear"])
    p.add_argument("session_id")
    p.add_argument("--file", help="set: JSON file with the ChargingProfile")
    p.add_argument("--duration", type=int, default=900, help="get: seconds of profile wanted (default 900)")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("command-status", help="as eMSP: a command we sent, its response and result")
    p.add_argument("command_id")
    p.set_defaults(func=cmd_command_status)

    p = sub.add_parser("price", help="price a CDR's charging periods with a tariff (offline)")
    p.add_argument("--tariff", action="append", default=[], help="a Tariff JSON file (repeatable)")
    p.add_argument("--cdr", required=True, help="a CDR JSON file (its charging_periods are priced)")
    p.add_argument("--time-zone", help="IANA time zone of the location (default UTC)")
    p.add_argument("--no-breakdown", action="store_true", help="only the totals")
    p.set_defaults(func=cmd_price)

    p = sub.add_parser("push", help="push pipeline: dead-letter queue, replay, resync")
    p.add_argument("action", choices=["dlq", "replay", "resync"])
    p.add_argument("partner_id", nargs="?", help="resync: the partner")
    p.add_argument("--partner", help="replay: only this partner's deliveries")
    p.add_argument("--message-id", action="append", help="replay: only these messages")
    p.add_argument("--module", choices=list(MODULES), help="resync: only this module")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("billing", help="billing runs: start one, list, show and download statements")
    p.add_argument("action", choices=["run", "list", "show", "download"])
    p.add_argument("partner_id", nargs="?", help="show/download: the partner")
    p.add_argument("period_arg", nargs="?", metavar="period", help="show/download: YYYY-MM or YYYY-MM-DD")
    p.add_argument("--period", help="run: the day (YYYY-MM-DD) or month (YYYY-MM) to bill")
    p.add_argument("--partner", help="run/list: only this partner")
    p.add_argument("--wait", type=int, default=0, help="run: seconds to wait for the statements")
    p.add_argument("--out", help="download: the directory to write statement.json and lines.csv to")
    p.set_defaults(func=cmd_billing)

    for sp in sub.choices.values():
        sp.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OCPI_LOG_STREAM", "stderr")  # stdout is for results
    args = build_parser().parse_args(argv)
    if args.env:
        load_env_file(args.env)
    from shared.errors import OcpiError

    try:
        return args.func(args)
    except OcpiError as err:
        print(f"error: {err.message} (OCPI status {int(err.status_code)})", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # a CLI reports, it does not dump a traceback on the operator
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
