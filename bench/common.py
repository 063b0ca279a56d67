"""What every bench script shares: a quiet test environment and a moto stack provisioned from
template.yaml (so benches measure the real table, keys and indexes)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = Path(os.environ.get("OCPI_SPEC_DIR") or ROOT.parent / "shared" / "ocpi-spec")
EXAMPLES = SPEC / "2.2.1" / "examples"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "OCPI_TOKEN_KEY": "bench",
        "OCPI_PUBLIC_URL": "https://ocpi.bench",
        "OCPI_LOG_STREAM": "stderr",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)


@contextlib.contextmanager
def moto_stack(*, keep_events: bool = False) -> Iterator[tuple[Any, dict[str, str]]]:
    """moto in-process with template.yaml provisioned; yields (the store, logical id -> name)."""
    from moto import mock_aws

    from shared import auth, config, events
    from shared.local.template import Resolver, load_template, provision
    from shared.store import get_store, reset_store

    if not keep_events:
        events.set_sink(lambda e: None)  # events are not what these benches measure
    with mock_aws():
        template = load_template(ROOT / "template.yaml")
        names = provision(template, Resolver(template, "bench", "eu-west-1", "123456789012", {}))
        os.environ["OCPI_TABLE_NAME"] = names["OcpiTable"]
        os.environ["OCPI_EVENT_BUS_NAME"] = names["OcpiBus"]
        if "OcpiKey" in names:  # partner tokens are sealed with this KMS key (moto's) in the table
            os.environ["OCPI_KMS_KEY_ID"] = names["OcpiKey"]
        config.reset_settings()
        reset_store()
        auth.clear_cache()
        yield get_store(), names


def add_json_option(parser: Any) -> None:
    """`--json PATH`: where the script writes its results for bench/run_all.py (its table still prints)."""
    parser.add_argument(
        "--json", metavar="PATH", help="write machine-readable results here (run_all reads them)"
    )


def row(metric: str, value: Any, unit: str, meaning: str) -> dict[str, Any]:
    """One line of the `make bench` summary table."""
    return {"metric": metric, "value": value, "unit": unit, "meaning": meaning}


def write_json(path: str | None, script: str, summary: list[dict[str, Any]], details: Any) -> None:
    """The results of one script: `summary` rows (see `row`) for the one table, `details` as measured."""
    if not path:
        return
    import json

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"script": script, "summary": summary, "details": details}, indent=1, default=str)
    )


def usage_text(u: Any) -> str:
    """requests / RCU / WCU of a meter Usage, for a summary row."""
    return f"{u.total_requests} / {u.read_units:g} / {u.write_units:g}"
