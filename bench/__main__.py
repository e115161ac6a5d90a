"""``make bench`` (``python -m bench``): Business Central -> UPS under the real Airflow scheduler.

    python -m bench                       # N = 100, 1000, 5000 at 150 ms per API call
    python -m bench --sizes 100,1000 --latency-ms 150 --json bench/results/run.json
    python -m bench --micro               # the ledger / token cache / raw label micro-benchmarks
    python -m bench --tracking            # poll_tracking over 1,000 and 10,000 open shipments (bench/tracking_poll.py)
    python -m bench --exact-rate          # 150 Exact Online calls against its 60/min limit (bench/exact_online_rate.py)
    python -m bench --shipstation-rate    # 120 ShipStation calls against its 40/min limit (bench/shipstation_rate.py)

Prints a table per N, writes everything as JSON (default ``bench/results/<UTC time>.json``, git-ignored) and
ends with one line per N that a script can read:
``N=<n> seconds=<s> floor=<s> ratio=<floor/measured> duplicates=<k> lost=<k>``. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.dag_run import ROOT, Bench, Result, parse_time


def table(result: Result) -> str:
    d = result.as_dict()
    lines = [
        f"N={result.n}: {result.state} in {result.seconds} s ({d['orders_per_min']} orders/min); "
        f"floor {d['floor']} s = {result.api_calls} API calls x {result.latency_ms} ms / {result.budget} in flight;"
        f" ratio {d['ratio']}; load {result.load}",
        f"  task instances {result.task_instances} {result.tasks_by_state}, sum of durations {result.task_seconds} s",
        "  task durations (s): " + ", ".join(f"{t.split('.')[-1]} {v['count']}x sum {v['sum']} max {v['max']}"
                                             for t, v in result.task_durations.items()),
        f"  token requests: UPS {result.tokens.get('ups')}, Entra {result.tokens.get('entra')}",
        f"  most calls in flight at once: UPS {result.most_in_flight.get('ups')}, Business Central "
        f"{result.most_in_flight.get('business_central')} (budget {result.budget} per API)",
        f"  ledger: {d['ledger_transactions_per_order']} write transactions per order "
        f"({result.ledger_transactions} writes, {result.ledger_reads} reads)",
        f"  duplicates {result.duplicates}, lost {result.lost}",
        "  API calls per order:",
        *(f"    {v:>8.3f}  {k}" for k, v in d["calls_per_order"].items()),
        "  peak RSS (MB):",
        *(f"    {v:>8.1f}  {k}" for k, v in d["peak_rss_mb"].items()),
    ]
    return "\n".join(lines)


def summary_line(result: Result) -> str:
    return (f"N={result.n} seconds={result.seconds} floor={result.floor:.1f} ratio={result.ratio:.3f} "
            f"duplicates={result.duplicates} lost={result.lost}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="comma-separated order counts")
    parser.add_argument("--latency-ms", type=int, default=150, help="sandbox latency per API call")
    parser.add_argument("--budget", type=int, default=16, help="in-flight budget per API for the floor")
    parser.add_argument("--page-size", type=int, default=1000, help="Business Central server page size")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one run")
    parser.add_argument("--json", type=Path, help="where to write the results")
    parser.add_argument("--keep", action="store_true", help="keep each run's AIRFLOW_HOME (logs)")
    parser.add_argument("--no-parse", action="store_true", help="skip the DAG parse timing")
    parser.add_argument("--set", action="append", default=[], metavar="SETTING=YAML",
                        help="override a pipeline setting for the bench, e.g. --set max_lanes=8")
    parser.add_argument("--micro", action="store_true", help="run the micro-benchmarks instead")
    parser.add_argument("--tracking", action="store_true", help="run the poll_tracking benchmark instead")
    parser.add_argument("--exact-rate", action="store_true", help="run the Exact Online rate benchmark instead")
    parser.add_argument("--shipstation-rate", action="store_true", help="run the ShipStation rate benchmark instead")
    args = parser.parse_args(argv)
    if args.micro:
        from bench import micro

        micro.main()
        return 0
    if args.tracking:
        from bench.tracking_poll import bench_tracking_poll

        bench_tracking_poll()
        return 0
    if args.exact_rate:
        from bench import exact_online_rate

        return exact_online_rate.main([])
    if args.shipstation_rate:
        from bench import shipstation_rate

        return shipstation_rate.main([])
    import yaml

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    out = {"started": datetime.now(UTC).isoformat(), "machine": _machine(), "latency_ms": args.latency_ms,
           "budget": args.budget, "settings": overrides, "parse_seconds": {}, "runs": []}
    if not args.no_parse:
        for dag_file in sorted((ROOT / "dags").glob("*.py")):
            wall, cpu = parse_time(dag_file)
            out["parse_seconds"][dag_file.name] = {"wall": round(wall, 3), "cpu": round(cpu, 3)}
            print(f"cold parse {dag_file.name}: {wall:.3f} s (CPU {cpu:.3f} s)", flush=True)
    results = []
    path = args.json or ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        print(f"N={n}: starting (latency {args.latency_ms} ms)", flush=True)
        result = Bench(n, latency_ms=args.latency_ms, budget=args.budget, page_size=args.page_size,
                       timeout=args.timeout, keep=args.keep, settings=overrides,
                       log=lambda m: print(m, flush=True)).run()
        results.append(result)
        print(table(result), flush=True)
        out["runs"].append(result.as_dict())
        path.write_text(json.dumps(out, indent=2, default=str))
    print(f"results: {path}")
    for result in results:
        print(summary_line(result))
    return 0 if all(r.state == "success" and not r.duplicates and not r.lost for r in results) else 1


def _machine() -> str:
    import os
    import platform

    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"


if __name__ == "__main__":
    sys.exit(main())
