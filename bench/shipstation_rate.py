"""ShipStation v1 call rate: a run needing N calls (default 120) against the sandbox's real limit semantics (40
requests a minute per API key, ``X-Rate-Limit-Reset`` in whole seconds), through workers sharing the ledger budget.

Run: ``python -m bench.shipstation_rate`` (real 60-second minutes: about 3 minutes for 120 calls, the floor 40/min
sets) or ``python -m bench.shipstation_rate --minute-seconds 5`` (a 5-second "minute", same rules, quick look).
Prints the calls, the 429s (the promise: zero), the elapsed time against the floor, and the busiest window.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from functools import partial

os.environ.setdefault("ML_CONNECTOR_FERNET_KEYS", "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U=")
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="ml-connector-bench-"))

from bench.rate import spread_calls  # noqa: E402
from ml_connector import http  # noqa: E402
from ml_connector.fulfilment.shipstation.hook import ShipStationHook  # noqa: E402
from ml_connector.ledger import Ledger  # noqa: E402
from ml_connector_sandbox.credentials import SHIPSTATION_API_KEY, SHIPSTATION_API_SECRET  # noqa: E402
from ml_connector_sandbox.testing import SandboxServer  # noqa: E402

RETRY = http.RetryPolicy(attempts=3, backoff=0.05)


def run(calls: int, workers: int, minute_seconds: float, limit: int) -> dict[str, float]:
    with SandboxServer(["shipstation"]) as sandbox:
        sandbox.set_knobs("shipstation", rate_window_seconds=minute_seconds, rate_limit_per_minute=limit)
        os.environ["AIRFLOW_CONN_SHIPSTATION_DEFAULT"] = json.dumps({
            "conn_type": "shipstation", "host": sandbox.url("shipstation"), "login": SHIPSTATION_API_KEY,
            "password": SHIPSTATION_API_SECRET, "extra": {"calls_per_minute": str(limit)}})
        ledger = Ledger(f"sqlite:///{tempfile.mkdtemp(prefix='ml-connector-bench-')}/ledger.db")
        result = spread_calls(lambda: partial(ShipStationHook(ledger=ledger, retry=RETRY).products_by_sku, "1896-S"),
                              calls, workers, minute_seconds)
        return {**result, "rate_limited": sandbox.counters("shipstation")["rate_limited"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shipstation_rate", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=120)
    parser.add_argument("--workers", type=int, default=3, help="lanes sharing the ledger budget (threads)")
    parser.add_argument("--minute-seconds", type=float, default=60.0,
                        help="length of the sandbox's rate-limit window (default 60, ShipStation's)")
    parser.add_argument("--limit", type=int, default=40, help="calls per window (ShipStation v1: 40)")
    args = parser.parse_args(argv)
    result = run(args.calls, args.workers, args.minute_seconds, args.limit)
    floor = args.calls / args.limit * args.minute_seconds
    print(f"{'shipstation calls (' + str(args.workers) + ' workers, shared ledger budget)':<58} "
          f"{result['calls']:>12.0f} calls      in {result['elapsed']:.1f} s")
    print(f"{'shipstation elapsed against the floor ' + str(args.limit) + '/window sets':<58} "
          f"{result['elapsed'] / floor * 100:>12.1f} %          floor {floor:.1f} s")
    print(f"{'shipstation calls in the busiest limit window':<58} {result['busiest']:>12.0f} calls      "
          f"limit {args.limit} per window ({args.minute_seconds:g} s)")
    print(f"{'shipstation 429 answers':<58} {result['rate_limited']:>12.0f}")
    return 0 if result["rate_limited"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
