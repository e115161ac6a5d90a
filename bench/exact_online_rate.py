"""Exact Online call rate: a run needing N calls (default 150) against the sandbox's real limit semantics
(60 calls a minute per company, reset announced in epoch milliseconds), through workers sharing the ledger budget.

Run: ``python -m bench.exact_online_rate`` (real 60-second minutes: about 2.5 minutes for 150 calls) or
``python -m bench.exact_online_rate --minute-seconds 5`` (a 5-second "minute", same rules, for a quick look).
Prints the calls, the 429s (the promise: zero), and the busiest limit window against the limit.
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
from ml_connector.erp.exact_online.hook import ExactOnlineHook  # noqa: E402
from ml_connector.ledger import Ledger  # noqa: E402
from ml_connector_sandbox.credentials import EXACT_ONLINE_CLIENT_ID, EXACT_ONLINE_CLIENT_SECRET  # noqa: E402
from ml_connector_sandbox.exact_online import INITIAL_REFRESH_TOKEN  # noqa: E402
from ml_connector_sandbox.testing import SandboxServer  # noqa: E402

ITEM = "a1000000-0000-4000-8000-000000000001"


RETRY = http.RetryPolicy(attempts=3, backoff=0.05)


def run(calls: int, workers: int, minute_seconds: float, limit: int) -> dict[str, float]:
    with SandboxServer(["exact_online"]) as sandbox:
        sandbox.set_knobs("exact_online", minute_seconds=minute_seconds, minute_limit=limit)
        os.environ["AIRFLOW_CONN_EXACT_ONLINE_DEFAULT"] = json.dumps({
            "conn_type": "exact_online", "host": sandbox.url("exact_online"), "login": EXACT_ONLINE_CLIENT_ID,
            "password": EXACT_ONLINE_CLIENT_SECRET,
            "extra": {"division": "123456", "refresh_token": INITIAL_REFRESH_TOKEN}})
        ledger = Ledger(f"sqlite:///{tempfile.mkdtemp(prefix='ml-connector-bench-')}/ledger.db")
        ExactOnlineHook(ledger=ledger).get_token()  # one refresh, shared by the workers
        result = spread_calls(lambda: partial(ExactOnlineHook(ledger=ledger, retry=RETRY).get_item, ITEM), calls,
                              workers, minute_seconds)
        counters = sandbox.counters("exact_online")
        return {**result, "rate_limited": counters["rate_limited"], "refreshes": counters["token_refreshes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.exact_online_rate", description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--workers", type=int, default=3, help="lanes sharing the ledger budget (threads)")
    parser.add_argument("--minute-seconds", type=float, default=60.0,
                        help="length of the sandbox's rate-limit minute (default 60, Exact's)")
    parser.add_argument("--limit", type=int, default=60, help="calls per minute (Exact: 60)")
    args = parser.parse_args(argv)
    result = run(args.calls, args.workers, args.minute_seconds, args.limit)
    per_minute = result["calls"] / result["elapsed"] * args.minute_seconds
    print(f"{'exact_online calls (' + str(args.workers) + ' workers, shared ledger budget)':<58} "
          f"{result['calls']:>12.0f} calls      in {result['elapsed']:.1f} s")
    print(f"{'exact_online calls in the busiest limit window':<58} {result['busiest']:>12.0f} calls      "
          f"limit {args.limit} per minute (minute = {args.minute_seconds:g} s)")
    print(f"{'exact_online average rate over the run':<58} {per_minute:>12.1f} /minute    (fixed windows: a "
          "short run may start late in one)")
    print(f"{'exact_online 429 answers':<58} {result['rate_limited']:>12.0f}            "
          f"token refreshes {result['refreshes']:.0f}")
    return 0 if result["rate_limited"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
