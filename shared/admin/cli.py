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

    partner_id, token_a = credentials.invite(_store(), args.name, args.ttl)
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

    partner = credentials.register_with(_store(), _base_url(), args.versions_url, args.token, args.name or "")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ocpi-admin", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", help="file of `export NAME=value` lines to load first")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("invite", help="create a registration token (token A) for a new partner")
    p.add_argument("--name", required=True, help="a label for the partner")
    p.add_argument("--ttl", type=int, default=None, help="seconds the token stays valid (default 7 days)")
    p.set_defaults(func=cmd_invite)

    p = sub.add_parser("register", help="register with a partner (we initiate the handshake)")
    p.add_argument("--versions-url", required=True)
    p.add_argument("--token", required=True, help="the token A the partner gave us")
    p.add_argument("--name", default="")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("update", help="rotate tokens with a partner and re-read its endpoints")
    p.add_argument("partner_id")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("unregister", help="unregister from a partner")
    p.add_argument("partner_id")
    p.set_defaults(func=cmd_unregister)

    p = sub.add_parser("partners", help="list partners")
    p.set_defaults(func=cmd_partners)

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
