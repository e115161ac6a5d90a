"""The bench's sandbox process: UPS and Business Central with N released orders in one interval.

``python -m bench.sandbox --orders N --modified-from ISO --modified-to ISO --latency-ms 150 --port-file F``

The real sandbox apps (``ml_connector_sandbox``), unchanged, with a Business Central seed whose sales orders
are N copies of a good seeded order (unique ids and numbers, ``BENCH-000001``...) modified inside the given
window, served with server-driven paging (``--page-size``, like BC's ``@odata.nextLink``). A thin ASGI
wrapper counts every request by endpoint (method + path with ids replaced), served at ``GET /_bench/calls``;
the sandbox's own counters (tokens issued, labels by reference...) stay at ``/_sandbox/counters``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import tempfile
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from ml_connector_sandbox.business_central import BusinessCentralState
from ml_connector_sandbox.business_central import create_app as create_bc_app
from ml_connector_sandbox.business_central.seed import load_seed
from ml_connector_sandbox.server import _SharedLoopServer, base_url, bind_socket, write_port_file
from ml_connector_sandbox.ups import create_app as create_ups_app

_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ID_SEGMENT = re.compile(r"/(1Z[0-9A-Z]+|\d{6,}|[A-Za-z0-9_-]{20,})(?=/|$)")


def endpoint(method: str, path: str) -> str:
    """``"PATCH /v2.0/{tenant}/Production/api/.../salesOrderShipping({id})"`` for any request."""
    path = _GUID.sub("{id}", path)
    path = re.sub(r"\('[^']*'\)", "({id})", path)
    path = _ID_SEGMENT.sub("/{id}", path)
    return f"{method} {path}"


class CallCounter:
    """ASGI wrapper: counts requests by endpoint, serves the counts at ``GET /_bench/calls``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: Counter[str] = Counter()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if scope["path"] == "/_bench/calls":
                body = json.dumps(dict(self.calls)).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            if not scope["path"].startswith("/_sandbox"):
                self.calls[endpoint(scope["method"], scope["path"])] += 1
        await self.app(scope, receive, send)


def bench_seed(orders: int, modified_from: datetime, modified_to: datetime, now: datetime) -> dict[str, Any]:
    """The Business Central seed with ``orders`` good released orders modified in ``[from, to)``."""
    seed = load_seed()
    template = next(o for o in seed["sales_orders"] if str(o.get("expect", "")).startswith("labelled")
                    and o["status"] == "Open")
    span = (modified_to - modified_from).total_seconds()
    sales_orders = []
    for i in range(orders):
        at = modified_from.timestamp() + span * (i + 0.5) / max(orders, 1)
        record = json.loads(json.dumps(template))
        record.update(id=str(uuid.UUID(int=0xBE4C << 112 | i)), number=f"BENCH-{i + 1:06d}",
                      modified_minutes_ago=(now.timestamp() - at) / 60, externalDocumentNumber="")
        sales_orders.append(record)
    seed["sales_orders"] = sales_orders
    return seed


async def serve(args: argparse.Namespace) -> None:
    now = datetime.now(UTC)
    seed = bench_seed(args.orders, datetime.fromisoformat(args.modified_from),
                      datetime.fromisoformat(args.modified_to), now)
    seed_dir = Path(tempfile.mkdtemp(prefix="ml-connector-bench-seed-"))
    seed_file = seed_dir / "seed.json"
    seed_file.write_text(json.dumps(seed))
    try:
        await _serve(args, BusinessCentralState(seed_path=seed_file))
    finally:  # the state re-reads the seed on a reset: keep it while serving
        shutil.rmtree(seed_dir, ignore_errors=True)


async def _serve(args: argparse.Namespace, bc_state: BusinessCentralState) -> None:
    apps = {"ups": create_ups_app(), "business_central": create_bc_app(bc_state)}
    apps["ups"].state.sandbox.set_knobs({"latency_ms": args.latency_ms})
    bc_state.set_knobs({"latency_ms": args.latency_ms, "page_size": args.page_size})
    sockets = {vendor: bind_socket("127.0.0.1", 0) for vendor in apps}
    servers = {vendor: _SharedLoopServer(uvicorn.Config(CallCounter(app), lifespan="off", log_level="warning",
                                                        access_log=False, timeout_graceful_shutdown=2,
                                                        backlog=4096))
               for vendor, app in apps.items()}
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: [setattr(s, "should_exit", True) for s in servers.values()])
    tasks = [asyncio.create_task(servers[v].serve(sockets=[sockets[v]])) for v in apps]
    while not all(s.started for s in servers.values()):
        for task in tasks:
            if task.done():
                task.result()
        await asyncio.sleep(0.02)
    write_port_file(Path(args.port_file),
                    {v: base_url("127.0.0.1", sockets[v].getsockname()[1]) for v in apps})
    await asyncio.gather(*tasks)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--modified-from", required=True)
    parser.add_argument("--modified-to", required=True)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--port-file", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
