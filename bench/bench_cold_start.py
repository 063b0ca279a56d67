"""Cold-start import cost of each API function's handler, against a floor.

For every function in template.yaml with API events: import its app.py (which builds the FastAPI
app and the Mangum handler) in a fresh interpreter, N rounds; the floor is
`import fastapi, mangum, boto3; boto3.client("dynamodb")` in a fresh interpreter, sampled just
before each handler sample. Prints medians and the ratio handler/floor, the median of the paired
ratios (1.00 = we add nothing to the floor), which holds on a machine busy with other work.

    .venv/bin/python bench/bench_cold_start.py [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOOR = "import fastapi, mangum, boto3; boto3.client('dynamodb')"
LOAD = (
    "import importlib.util as u; s = u.spec_from_file_location('app', {path!r}); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); assert m.handler"
)
# Our handlers create their DynamoDB client on the first request, not at import; this variant adds
# that creation so the comparison with the floor (which creates one) is like for like.
LOAD_CLIENT = LOAD + "; from shared.store import dynamodb_client; dynamodb_client()"
TIMED = "import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"


def sample(code: str) -> float:
    """Seconds of `code` in a fresh interpreter (timed inside it: interpreter start excluded)."""
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "OCPI_TOKEN_KEY": "bench",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    out = subprocess.run(
        [sys.executable, "-c", TIMED.format(code=code)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def functions() -> list[tuple[str, Path]]:
    from shared.local.template import load_template

    template = load_template(ROOT / "template.yaml")
    out = []
    for name, res in template["Resources"].items():
        if res["Type"] == "AWS::Serverless::Function" and any(
            e.get("Type") == "Api" for e in (res["Properties"].get("Events") or {}).values()
        ):
            out.append((name, ROOT / res["Properties"]["CodeUri"] / "app.py"))
    return out


def run(runs: int = 5) -> list[dict]:
    """Each function is timed right after a floor sample, round after round, and its ratio is the
    median of those paired ratios: a machine busy with other work slows both sides of a pair alike
    (the medians of separate series drift apart when the load changes during the run)."""
    codes = [
        (name, LOAD.format(path=str(path)), LOAD_CLIENT.format(path=str(path))) for name, path in functions()
    ]
    floors: list[float] = []
    pairs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _, _ in codes}
    for round_ in range(runs + 1):  # round 0 warms the OS file cache and writes .pyc files
        for name, load, load_client in codes:
            triple = (sample(FLOOR), sample(load), sample(load_client))
            if round_:
                floors.append(triple[0])
                pairs[name].append(triple)
    floor = statistics.median(floors)
    rows = [
        {
            "function": "floor (fastapi+mangum+boto3 client)",
            "ms": floor * 1000,
            "client_ms": floor * 1000,
            "ratio": 1.0,
            "client_ratio": 1.0,
        }
    ]
    for name, samples in pairs.items():
        rows.append(
            {
                "function": name,
                "ms": statistics.median(t for _, t, _ in samples) * 1000,
                "client_ms": statistics.median(tc for _, _, tc in samples) * 1000,
                "ratio": round(statistics.median(t / f for f, t, _ in samples), 2),
                "client_ratio": round(statistics.median(tc / f for f, _, tc in samples), 2),
            }
        )
    return rows


def summary(rows: list[dict]) -> list[dict]:
    from common import row

    floor = rows[0]
    out = [
        row(
            "cold start floor",
            round(floor["ms"]),
            "ms",
            "fresh interpreter: import fastapi, mangum, boto3 + a DynamoDB client (median; this machine)",
        )
    ]
    for r in rows[1:]:
        out.append(
            row(
                f"cold start {r['function']}",
                r["client_ratio"],
                "x floor",
                f"import of app.py + its DynamoDB client / floor ({r['client_ms']:.0f} ms; "
                f"import alone {r['ratio']:.2f}x); 1.00 = nothing added to the floor",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--json", metavar="PATH", help="write machine-readable results here (run_all reads them)"
    )
    args = parser.parse_args()
    rows = run(args.runs)
    # Only now: common sets a bench environment, which the measured interpreters must not inherit.
    from common import write_json

    write_json(args.json, "bench_cold_start", summary(rows), {"runs": args.runs, "rows": rows})
    print(
        f"cold-start import, {args.runs} rounds of fresh interpreters (median; ratio: median of the ratios "
        "to the floor sample taken just before): handler import | + DynamoDB client"
    )
    for r in rows:
        print(
            f"  {r['function']:<40} {r['ms']:>7.1f} ms  ratio {r['ratio']:.2f}  |"
            f" {r['client_ms']:>7.1f} ms  ratio {r['client_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
