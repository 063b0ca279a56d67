"""DynamoDB requests and consumed capacity per operation (the cost model), on moto.

Measured through the real handlers (FastAPI apps) with the DynamoDB client's own call hooks
(shared.store.meter): a partner's registration (POST credentials, server side), our registration
with a partner (client side), token rotation, and authenticated requests cold vs warm.

    .venv/bin/python bench/bench_dynamodb_requests.py [--json PATH]
"""

from __future__ import annotations

import argparse
import base64
import importlib.util

from common import ROOT, add_json_option, moto_stack, row, write_json


def _app(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.app


def hdr(token: str) -> dict[str, str]:
    return {"Authorization": "Token " + base64.b64encode(token.encode()).decode()}


def run() -> list[dict]:
    from fastapi.testclient import TestClient

    from shared import auth
    from shared.services import credentials as svc
    from shared.store.meter import METER
    from tests.partner_stub import PartnerStub

    rows: list[dict] = []

    def record(op: str) -> None:
        u = METER.reset()
        rows.append({"operation": op, **u.as_dict()})

    with moto_stack() as (store, _), PartnerStub() as partner:
        creds = TestClient(_app("credentials"))
        versions = TestClient(_app("versions"))

        _, token_a = svc.invite(store, "bench")
        METER.reset()
        body = {
            "token": "token-b",
            "url": partner.versions_url,
            "roles": [
                {"role": "EMSP", "country_code": "DE", "party_id": "PRT", "business_details": {"name": "P"}}
            ],
        }
        resp = creds.post("/ocpi/2.2.1/credentials", json=body, headers=hdr(token_a)).json()
        assert resp["status_code"] == 1000, resp
        record("POST credentials (partner registers with us)")
        token_c = resp["data"]["token"]

        auth.clear_cache()
        METER.reset()
        versions.get("/ocpi/versions", headers=hdr(token_c))
        record("authenticated request, cold container (auth lookup)")
        for _ in range(10):
            versions.get("/ocpi/versions", headers=hdr(token_c))
        u = METER.reset()
        rows.append(
            {
                "operation": "authenticated request, warm (per request, mean of 10)",
                "requests": u.total_requests / 10,
                "by_operation": dict(u.requests),
                "read_units": u.read_units / 10,
                "write_units": u.write_units / 10,
            }
        )

        partner.accepted_tokens.add("token-b2")
        creds.put("/ocpi/2.2.1/credentials", json={**body, "token": "token-b2"}, headers=hdr(token_c))
        record("PUT credentials (partner rotates)")

        partner.accepted_tokens.add("their-a")
        partner.roles = [
            {"role": "CPO", "country_code": "BE", "party_id": "OTH", "business_details": {"name": "O"}}
        ]
        METER.reset()
        p = svc.register_with(store, "https://ocpi.bench", partner.versions_url, "their-a", "other")
        record("register with a partner (we initiate)")
        svc.update_with(store, "https://ocpi.bench", p["partner_id"])
        record("update with a partner (we rotate)")
        svc.unregister_with(store, p["partner_id"])
        record("unregister from a partner")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    add_json_option(parser)
    args = parser.parse_args()
    rows = run()
    summary = [
        row(
            f"DynamoDB: {r['operation']}",
            f"{r['requests']:g} / {r['read_units']:g} / {r['write_units']:g}",
            "req / RCU / WCU",
            (", ".join(f"{k} {v:g}" for k, v in sorted(r["by_operation"].items())) or "no DynamoDB request")
            + (" (total of 10)" if "mean of 10" in r["operation"] and r["by_operation"] else ""),
        )
        for r in rows
    ]
    write_json(args.json, "bench_dynamodb_requests", summary, rows)
    print("DynamoDB requests and consumed capacity per operation (moto)")
    for r in rows:
        ops = ", ".join(f"{k} {v}" for k, v in sorted(r["by_operation"].items()))
        print(
            f"  {r['operation']:<55} {r['requests']:>5} req  RCU {r['read_units']:>5.1f}  "
            f"WCU {r['write_units']:>5.1f}  ({ops})"
        )


if __name__ == "__main__":
    main()
