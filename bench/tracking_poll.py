"""Tracking poll timing: the time ``poll_tracking`` takes to poll N open shipments when each Track API call takes
150 ms, next to the floor (N x 150 ms / concurrency: the calls alone, perfectly overlapped).

What runs is the real operator (``PollTrackingOperator.execute``) against a SQLite ledger holding N written-back
shipments old enough to have scans; the carrier is a stand-in whose ``track()`` sleeps the latency and answers
"in transit" (so every package also costs its ledger writes and one status change). The gap between the
measured time and the floor is ledger and bookkeeping overhead.

Run: ``python -m bench.tracking_poll`` (defaults: 1,000 and 10,000 shipments, 150 ms, concurrency 4 in flight,
i.e. ``api_budget`` 4; the shipped default is 16) or e.g. ``python -m bench.tracking_poll --sizes 1000 --concurrency 16``.
From ``bench/__main__.py``: ``from bench.tracking_poll import bench_tracking_poll; bench_tracking_poll()``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

os.environ.setdefault("ML_CONNECTOR_FERNET_KEYS", "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U=")
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="ml-connector-bench-"))

import sqlalchemy as sa  # noqa: E402

from ml_connector import registry  # noqa: E402
from ml_connector.carriers.protocol import Carrier  # noqa: E402
from ml_connector.ledger import Ledger, ShipmentState, schema  # noqa: E402
from ml_connector.models import Address, Order, Package, TrackingEvent, TrackingResult, TrackingStatus  # noqa: E402
from ml_connector.operators.tracking import PollTrackingOperator  # noqa: E402
from ml_connector.settings import PipelineSettings  # noqa: E402

PIPELINE = "bench_tracking"


class SlowTrack(Carrier):
    """A carrier whose Track call takes ``latency`` seconds."""

    name = "bench"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.calls = 0

    def track(self, tracking_number: str) -> TrackingResult:
        time.sleep(self.latency)
        self.calls += 1
        at = datetime.now(UTC) - timedelta(hours=1)
        return TrackingResult(tracking_number=tracking_number, status=TrackingStatus.IN_TRANSIT, events=[
            TrackingEvent(tracking_number=tracking_number, status=TrackingStatus.IN_TRANSIT, code="DP",
                          description="Departed from Facility", occurred_at=at, location="Louisville, KY, US")])

    def plan(self, order): raise NotImplementedError  # noqa: E704
    def validate_address(self, address): raise NotImplementedError  # noqa: E704
    def buy_label(self, order, plan, *, shipper, residential): raise NotImplementedError  # noqa: E704
    def find_labels(self, plan): raise NotImplementedError  # noqa: E704
    def void(self, shipment_id, tracking_numbers=()): raise NotImplementedError  # noqa: E704


def seed(ledger: Ledger, n: int) -> None:
    """``n`` written-back shipments labelled two days ago, one package each (bulk inserts)."""
    order = Order(erp="bench", erp_id="x", number="x", ship_method="GROUND",
                  ship_to=Address(name="Fabrikam", lines=["500 Howard Street"], city="San Francisco", state="CA",
                                  postal_code="94105", country="US"), packages=[Package(weight=3)]).model_dump(
        mode="json")
    born = (datetime.now(UTC) - timedelta(days=2)).replace(tzinfo=None)
    with ledger.write() as conn:
        for start in range(0, n, 1000):
            rows = [{"pipeline": PIPELINE, "erp": "bench", "erp_id": f"id-{i}", "order_number": f"SO-{i:06d}",
                     "state": ShipmentState.WRITTEN_BACK.value, "order_json": {**order, "erp_id": f"id-{i}",
                                                                               "number": f"SO-{i:06d}"},
                     "tracking_numbers": [f"1ZBENCH{i:011d}"]} for i in range(start, min(n, start + 1000))]
            conn.execute(schema.shipments.insert(), rows)
        ids = dict(conn.execute(sa.select(schema.shipments.c.order_number, schema.shipments.c.id)
                                .where(schema.shipments.c.pipeline == PIPELINE)).all())
        conn.execute(schema.packages.insert(), [
            {"shipment_pk": ids[f"SO-{i:06d}"], "seq": 1, "tracking_number": f"1ZBENCH{i:011d}",
             "status": "label_created", "created_at": born} for i in range(n)])


def time_poll(n: int, *, latency: float, concurrency: int) -> tuple[float, float, int]:
    """``(seconds, floor_seconds, calls)`` of one poll_tracking run over ``n`` open shipments."""
    folder = tempfile.mkdtemp(prefix="ml-connector-bench-tracking-")
    ledger = Ledger(f"sqlite:///{folder}/ledger.db")
    seed(ledger, n)
    carrier = SlowTrack(latency)
    settings = PipelineSettings(erp=next(iter(registry.ERPS)),
                                writeback=False, api_budget=concurrency)
    op = PollTrackingOperator(task_id="poll_tracking", pipeline_id=PIPELINE, settings=settings)
    op._ledger = ledger
    op.carrier = lambda: carrier  # type: ignore[method-assign]
    context = {"ti": SimpleNamespace(task_id="poll_tracking", map_index=-1, try_number=1), "run_id": "bench"}
    started = time.perf_counter()
    op.execute(context)
    return time.perf_counter() - started, n * latency / concurrency, carrier.calls


def bench_tracking_poll(sizes: tuple[int, ...] = (1000, 10000), *, latency_ms: int = 150,
                        concurrency: int = 4) -> None:
    """Print one line per size: measured time, floor, overhead."""
    for n in sizes:
        seconds, floor, calls = time_poll(n, latency=latency_ms / 1000, concurrency=concurrency)
        print(f"{f'poll_tracking {n:,} open shipments, {latency_ms} ms/call, {concurrency} in flight':<58} "
              f"{seconds:>12.1f} s          floor {floor:.1f} s ({seconds / floor:.2f}x), {calls:,} Track calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    bench_tracking_poll(tuple(args.sizes), latency_ms=args.latency_ms, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
