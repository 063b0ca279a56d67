"""`make bench`: every bench script, one after the other, each printing its own table; then ONE
summary table of what they measured, also written to bench/results/latest.md (and latest.json).

Each script writes its summary rows (metric, value, unit, meaning) to the file its `--json PATH`
names (bench/common.py: `add_json_option`, `row`, `write_json`; a new bench_*.py must take that
option); a script that fails is reported in the table and makes the run exit non-zero, the others
still run.

    .venv/bin/python bench/run_all.py [--quick] [--only NAME ...]

--quick runs smaller sizes (cold start 3 rounds, crawl 200/800, 50 deliveries, 500 priced CDRs,
5,000 billed CDRs): the same metrics in a fraction of the time, noisier.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

#: Smaller sizes per script for --quick.
QUICK_ARGS = {
    "bench_cold_start": ["--runs", "3"],
    "bench_locations": ["--small", "200", "--large", "800"],
    "bench_push": ["--deliveries", "50"],
    "bench_pricing": ["--cdrs", "500", "--rounds", "2"],
    "bench_billing": ["--cdrs", "5000"],
}


def cell(value: Any) -> str:
    text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return text.replace("|", "\\|")


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| script | metric | value | unit | what it means |", "|---|---|---|---|---|"]
    for r in results:
        name = r["script"].removeprefix("bench_")
        if r["status"] != "ok":
            lines.append(f"| {name} | **{r['status']}** | | | see the script's output above |")
            continue
        for s in r["summary"]:
            cells = (name, cell(s["metric"]), cell(s["value"]), cell(s["unit"]), cell(s["meaning"]))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a fraction of the time")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these scripts (e.g. pricing push)")
    args = parser.parse_args()

    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {n.removeprefix("bench_").removesuffix(".py") for n in args.only}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        if not scripts:
            parser.error(f"no bench script matches {args.only}")

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ocpi-bench-") as tmp:
        for script in scripts:
            out = Path(tmp) / f"{script.stem}.json"
            extra = QUICK_ARGS.get(script.stem, []) if args.quick else []
            print(f"== {script.name} {' '.join(extra)}".rstrip(), flush=True)
            t = time.perf_counter()
            code = subprocess.run(
                [sys.executable, str(script), *extra, "--json", str(out)], check=False
            ).returncode
            seconds = time.perf_counter() - t
            result: dict[str, Any] = {"script": script.stem, "seconds": round(seconds, 1), "args": extra}
            if code != 0:
                result.update(status=f"failed (exit {code})", summary=[])
            elif not out.exists():
                result.update(status="no results written", summary=[])
            else:
                data = json.loads(out.read_text())
                result.update(status="ok", summary=data["summary"], details=data["details"])
            results.append(result)
            print(f"   ({seconds:.1f} s)", flush=True)
            print(flush=True)
    wall = time.perf_counter() - started

    mode = "quick" if args.quick else "full"
    durations = ", ".join(f"{r['script'].removeprefix('bench_')} {r['seconds']} s" for r in results)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## `make bench` summary ({mode}, {when})",
        "",
        *table(results),
        "",
        f"Wall time {wall:.0f} s ({durations}).",
        "Request counts are exact; capacity units are moto's; times and throughputs depend on the machine "
        "(and on what else runs on it): compare ratios.",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text(text + "\n")
    (RESULTS / "latest.json").write_text(
        json.dumps({"mode": mode, "when": when, "wall_s": round(wall, 1), "results": results}, indent=1)
        + "\n"
    )
    print(f"\nwritten {RESULTS / 'latest.md'} and latest.json")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
