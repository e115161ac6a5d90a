"""Local-development helpers used by ``make run`` and ``make demo`` (not needed in production).

- ``python -m ml_connector.devtools connections-env airflow_settings.yaml``: print ``export AIRFLOW_CONN_*``
  lines for the connections of an Astro ``airflow_settings.yaml`` (optionally re-pointing hosts at a running
  sandbox with ``--sandbox-ports FILE``).
- ``python -m ml_connector.devtools import-connections airflow_settings.yaml``: upsert them into the Airflow
  metadata database, so they show (and can be tested) in the UI.
- ``python -m ml_connector.devtools report PIPELINE``: the demo table (orders seen, labels, written back,
  quarantined with reasons) from the ledger.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

#: which sandbox vendor stands in for which connection (host and, for Entra, the token authority)
SANDBOX_FOR_CONNECTION = {"ups_default": "ups", "business_central_default": "business_central"}


def read_connections(path: str | Path, *, sandbox_urls: dict[str, str] | None = None,
                     base_dir: Path | None = None) -> list[dict[str, Any]]:
    """Connections of an Astro ``airflow_settings.yaml`` as Airflow JSON connection dicts."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    base_dir = base_dir or Path(path).resolve().parent
    connections = []
    for entry in (document.get("airflow") or {}).get("connections") or []:
        conn = {
            "conn_id": entry["conn_id"],
            "conn_type": entry.get("conn_type") or "generic",
            "host": entry.get("conn_host"),
            "login": entry.get("conn_login"),
            "password": entry.get("conn_password"),
            "schema": entry.get("conn_schema"),
            "port": entry.get("conn_port"),
            "extra": dict(entry.get("conn_extra") or {}),
        }
        vendor = SANDBOX_FOR_CONNECTION.get(conn["conn_id"])
        if sandbox_urls and vendor in sandbox_urls:
            conn["host"] = sandbox_urls[vendor]
            if "authority" in conn["extra"]:
                conn["extra"]["authority"] = sandbox_urls[vendor]
        if conn["conn_type"] == "sqlite" and conn["host"] and not Path(conn["host"]).is_absolute():
            conn["host"] = str((base_dir / conn["host"]).resolve())
        connections.append({k: v for k, v in conn.items() if v not in (None, {}, "")})
    return connections


def connections_env(connections: list[dict[str, Any]]) -> str:
    lines = []
    for conn in connections:
        body = {k: v for k, v in conn.items() if k != "conn_id"}
        lines.append(f"export AIRFLOW_CONN_{conn['conn_id'].upper()}={shlex.quote(json.dumps(body))}")
    return "\n".join(lines)


def import_connections(connections: list[dict[str, Any]]) -> None:
    """Create or replace the connections in the Airflow metadata database (CLI context, not a task)."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    with create_session() as session:
        for conn in connections:
            session.query(Connection).filter(Connection.conn_id == conn["conn_id"]).delete()
            session.add(Connection(
                conn_id=conn["conn_id"], conn_type=conn["conn_type"], host=conn.get("host"),
                login=conn.get("login"), password=conn.get("password"), schema=conn.get("schema"),
                port=conn.get("port"), extra=json.dumps(conn.get("extra") or {})))
            print(f"connection {conn['conn_id']} ({conn['conn_type']}) -> {conn.get('host')}")


def report(pipeline: str, ledger_url: str | None = None) -> str:
    """The demo table: one line per order plus totals."""
    from ml_connector.ledger import LABELLED_STATES, Ledger, ShipmentState

    ledger = Ledger(ledger_url) if ledger_url else Ledger.from_airflow()
    rows = ledger.list(pipeline)
    lines = [f"{'order':<14} {'state':<14} {'tracking':<20} reason", "-" * 100]
    for row in rows:
        lines.append(f"{row.order_number:<14} {row.state.value:<14} {(row.tracking_numbers or [''])[0]:<20} "
                     f"{(row.error or '')[:160]}")
    states = Counter(r.state for r in rows)
    labelled = sum(1 for r in rows if r.state in LABELLED_STATES)
    written = sum(states[s] for s in (ShipmentState.WRITTEN_BACK, ShipmentState.IN_TRANSIT,
                                      ShipmentState.DELIVERED, ShipmentState.EXCEPTION))
    lines += ["-" * 100,
              f"orders seen: {len(rows)}   labels created: {labelled}   written back: {written}   "
              f"quarantined: {states[ShipmentState.QUARANTINED]}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_connector.devtools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("connections-env", "import-connections"):
        cmd = sub.add_parser(name)
        cmd.add_argument("settings", help="an Astro airflow_settings.yaml")
        cmd.add_argument("--sandbox-ports", help="port file written by `python -m ml_connector.sandbox`")
    rep = sub.add_parser("report")
    rep.add_argument("pipeline")
    rep.add_argument("--ledger-url")
    args = parser.parse_args(argv)
    if args.command == "report":
        print(report(args.pipeline, args.ledger_url))
        return 0
    urls = json.loads(Path(args.sandbox_ports).read_text()) if args.sandbox_ports else None
    connections = read_connections(args.settings, sandbox_urls=urls)
    if args.command == "connections-env":
        print(connections_env(connections))
    else:
        import_connections(connections)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
