"""ml-connector benchmarks against the loopback sandboxes: token cache, ledger throughput, label throughput.

Run: ``make bench`` (or ``python -m bench``). Prints one line per measurement. PostgreSQL rows are skipped when
no server answers at 127.0.0.1:5432.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

os.environ.setdefault("ML_CONNECTOR_FERNET_KEYS", "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U=")
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="ml-connector-bench-"))

from ml_connector import http  # noqa: E402
from ml_connector.carriers.ups.hook import UpsHook  # noqa: E402
from ml_connector.ledger import Ledger, ShipmentState  # noqa: E402
from ml_connector.models import Address, Order, Package  # noqa: E402
from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET  # noqa: E402
from ml_connector_sandbox.testing import SandboxServer  # noqa: E402

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
SHIPPER = Address(name="CRONUS USA, Inc.", phone="5105550100", lines=["2100 Powell Street"], city="Emeryville",
                  state="CA", postal_code="94608", country="US")


def order(i: int) -> Order:
    return Order(erp="bench", erp_id=f"id-{i}", number=f"SO-{i:06d}", ship_method="GROUND",
                 ship_to=Address(name="Fabrikam Inc.", lines=["500 Howard Street"], city="San Francisco", state="CA",
                                 postal_code="94105", country="US"),
                 packages=[Package(weight=Decimal("3"))], modified_at=datetime.now(UTC))


def line(name: str, value: float, unit: str, extra: str = "") -> None:
    print(f"{name:<58} {value:>12.1f} {unit:<10} {extra}")


def bench_ledger(url: str, label: str, n: int = 300) -> None:
    ledger = Ledger(url)
    pipeline = f"bench-{time.time_ns()}"
    started = time.perf_counter()
    for i in range(n):
        row, _ = ledger.register_order(pipeline, order(i))
        ledger.transition(row.id, ShipmentState.ADDRESS_OK, step="validate_address")
        ledger.claim(row.id, "bench")
    elapsed = time.perf_counter() - started
    line(f"ledger {label}: register + transition + claim", n / elapsed, "orders/s")


def bench_token_cache(server: SandboxServer, ledger: Ledger, n: int = 2000) -> None:
    hook = UpsHook(ledger=ledger)
    hook.get_token()
    started = time.perf_counter()
    for _ in range(n):
        hook.get_token()
    elapsed = time.perf_counter() - started
    line("UPS token from the encrypted cache", n / elapsed, "reads/s",
         f"token requests: {server.counters('ups')['tokens_issued']}")


def bench_labels(server: SandboxServer, ledger: Ledger, workers: int, n: int = 40, latency_ms: int = 80) -> None:
    server.reset("ups")
    server.set_knobs("ups", latency_ms=latency_ms)
    hook = UpsHook(ledger=ledger, retry=http.RetryPolicy(attempts=3, backoff=0.05))
    hook.get_token()
    timings: list[float] = []

    def ship(i: int) -> None:
        t0 = time.perf_counter()
        hook.create_shipment(order(i), service_code="03", shipper=SHIPPER, reference=f"SO-{i:06d}")
        timings.append(time.perf_counter() - t0)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(ship, range(n)))
    elapsed = time.perf_counter() - started
    line(f"UPS labels, {latency_ms} ms API latency, {workers} concurrent", n / elapsed, "labels/s",
         f"p50 {statistics.median(timings) * 1000:.0f} ms, labels bought: {server.counters('ups')['labels_created']}")
    server.set_knobs("ups", latency_ms=0)


def main() -> None:
    tmp = tempfile.mkdtemp(prefix="ml-connector-bench-")
    sqlite_url = f"sqlite:///{tmp}/ledger.db"
    bench_ledger(sqlite_url, "SQLite")
    try:
        bench_ledger(PG, "PostgreSQL")
    except Exception as exc:  # no server: say so, do not fail the run
        print(f"ledger PostgreSQL: skipped ({type(exc).__name__})")
    with SandboxServer(["ups"]) as server:
        os.environ["AIRFLOW_CONN_UPS_DEFAULT"] = json.dumps({
            "conn_type": "ups", "host": server.url("ups"), "login": UPS_CLIENT_ID, "password": UPS_CLIENT_SECRET,
            "extra": {"account_number": "A1B2C3"}})
        ledger = Ledger(sqlite_url)
        bench_token_cache(server, ledger)
        for workers in (1, 4):
            bench_labels(server, ledger, workers)


if __name__ == "__main__":
    main()
