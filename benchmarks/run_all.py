"""Run the benchmarks, one subprocess each, and print one table.

    python benchmarks/run_all.py            # the full run (`make bench`), ~6-8 minutes
    python benchmarks/run_all.py --quick    # tiny sizes, seconds (the smoke test)
    python benchmarks/run_all.py --only sweep,submit

Each script writes ``benchmarks/results/<name>.json``; this one reads them back, prints
their rows in one table, writes ``benchmarks/results/all.json`` (and, with
``--markdown``, the table as Markdown for docs/performance.md). A script that fails is
reported and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402

#: (result name, script) in the order of the issue.
BENCHMARKS = [
    ("callbacks", "bench_callbacks.py"),
    ("sweep", "bench_sweep.py"),
    ("pages", "bench_pages.py"),
    ("downloads", "bench_downloads.py"),
    ("submit", "bench_submit.py"),
    ("validation", "bench_validation.py"),
    ("live", "bench_live.py"),
    ("events", "bench_events.py"),
]


def main() -> int:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    parser.add_argument("--only", default="", help="comma-separated names: "
                        + ", ".join(name for name, _ in BENCHMARKS))
    parser.add_argument("--markdown", action="store_true", help="also print a Markdown table")
    args = parser.parse_args()
    only = {n.strip() for n in args.only.split(",") if n.strip()}
    unknown = only - {name for name, _ in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; "
                     f"choose from {[name for name, _ in BENCHMARKS]}")
    rows, failed, timings = [], [], {}
    started = time.perf_counter()
    for name, script in BENCHMARKS:
        if only and name not in only:
            continue
        print(f"\n=== {name} ({script}) ===", flush=True)
        result = common.RESULTS / f"{name}.json"
        result.unlink(missing_ok=True)
        cmd = [sys.executable, str(common.ROOT / "benchmarks" / script)]
        if args.quick:
            cmd.append("--quick")
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=common.ROOT).returncode
        timings[name] = round(time.perf_counter() - start, 1)
        if code != 0 or not result.exists():
            failed.append(name)
            print(f"!!! {name} failed (exit status {code})", flush=True)
            continue
        rows += json.loads(result.read_text())["rows"]
    total = time.perf_counter() - started
    print(f"\n=== all benchmarks ({total:.0f} s: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + ") ===")
    common.print_table(rows)
    if args.markdown:
        print()
        print(common.format_table(rows, markdown=True))
    missed = [f"{r['benchmark']}: {r['measure']}" for r in rows if r.get("met") is False]
    if missed:
        print("\ntargets missed (see docs/performance.md):\n  " + "\n  ".join(missed))
    common.write_result("all", rows, seconds=round(total, 1), timings=timings, failed=failed,
                        quick=args.quick)
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
