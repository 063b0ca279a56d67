"""Cold-start import cost of each API function's handler, against a floor.

For every function in template.yaml with API events: import its app.py (which builds the FastAPI
app and the Mangum handler) in a fresh interpreter, N times; the floor is
`import fastapi, mangum, boto3; boto3.client("dynamodb")` in a fresh interpreter, measured in the
same run. Prints medians and the ratio handler/floor (1.00 = we add nothing to the floor).

    .venv/bin/python bench/bench_cold_start.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
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


def measure(code: str, runs: int) -> float:
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "eu-west-1",
        "OCPI_TOKEN_KEY": "bench",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    samples = []
    for _ in range(runs + 1):  # the first run warms the OS file cache and writes .pyc files
        out = subprocess.run(
            [sys.executable, "-c", TIMED.format(code=code)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(float(out.stdout.strip()))
    return statistics.median(samples[1:])


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


def run(runs: int = 7) -> list[dict]:
    floor = measure(FLOOR, runs)
    rows = [
        {"function": "floor (fastapi+mangum+boto3 client)", "ms": floor * 1000, "client_ms": floor * 1000}
    ]
    for name, path in functions():
        t = measure(LOAD.format(path=str(path)), runs)
        tc = measure(LOAD_CLIENT.format(path=str(path)), runs)
        rows.append({"function": name, "ms": t * 1000, "client_ms": tc * 1000})
    for r in rows:
        r["ratio"] = round(r["ms"] / rows[0]["ms"], 2)
        r["client_ratio"] = round(r["client_ms"] / rows[0]["ms"], 2)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = run(args.runs)
    if args.json:
        print(json.dumps(rows))
        return
    print(f"cold-start import, median of {args.runs} fresh interpreters: handler import | + DynamoDB client")
    for r in rows:
        print(
            f"  {r['function']:<40} {r['ms']:>7.1f} ms  ratio {r['ratio']:.2f}  |"
            f" {r['client_ms']:>7.1f} ms  ratio {r['client_ratio']:.2f}"
        )


if __name__ == "__main__":
    main()
