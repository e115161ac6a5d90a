"""Local-development helpers used by ``make run`` and ``make demo`` (not needed in production).

- ``python -m ml_connector_sandbox.devtools connections-env airflow_settings.yaml``: print ``export AIRFLOW_CONN_*``
  lines for the connections of an Astro ``airflow_settings.yaml`` (optionally re-pointing hosts at a running
  sandbox with ``--sandbox-ports FILE``).
- ``python -m ml_connector_sandbox.devtools import-connections airflow_settings.yaml``: upsert them into the Airflow
  metadata database, so they show (and can be tested) in the UI. ``ups`` and ``business_central`` connections
  get the port of their host URL when they have none (see :data:`PORT_FROM_HOST_TYPES`).
- ``python -m ml_connector_sandbox.devtools import-pools airflow_settings.yaml``: create or resize the Airflow pools
  of its ``pools:`` section (one per external API, named by the pipelines' ``carrier_pool`` / ``erp_pool``: the
  scheduler never runs a task whose pool does not exist).
- ``python -m ml_connector_sandbox.devtools report PIPELINE``: the demo table (orders seen, labels, written back,
  quarantined with reasons) from the ledger; for a two-way pipeline (ERP <-> ShipStation) items pushed, missing
  SKUs, customers ShipStation does not know and orders booked, from ``ml_fulfilment_records``.
- ``python -m ml_connector_sandbox.devtools data-interval PIPELINE --at ISO``: the data interval ``airflow dags test
  PIPELINE ISO`` will run (the last complete interval before ISO, from the pipeline's own timetable), printed
  as ``START END``.
- ``python -m ml_connector_sandbox.devtools place-sandbox-orders --sandbox-ports FILE --into-interval-ending ISO``:
  move the sandbox's seeded released orders (all but ``--keep``, default S-ORD101011, which stays 3 days old)
  into the few minutes before ISO through the sandbox's ``touch`` control endpoint, so that one ``dags test``
  of that interval sees them (the seed dates them 5-170 minutes before the sandbox started). For a two-way
  pipeline the fulfilment sandbox's ``devtools.place_released(url, interval_end, keep=..., erp_url=...)``
  imports its demo orders into the interval (and touches the ERP's demo items and customers).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import sys
import textwrap
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ml_connector import registry

#: which sandbox vendor stands in for which connection (host and, for Entra, the token authority): the
#: registry's default connection id of every vendor
SANDBOX_FOR_CONNECTION = {vendor.default_conn_id: vendor.name for vendor in registry.vendors()}
#: Connection types whose port is stored explicitly (the port of the host URL) when none is given: ml-connector's
#: hooks read the host URL and ignore a port that the URL already names. Why store it at all: the Test button of
#: Airflow 3.3's connection list posts ``port: Number(connection.port)``, i.e. ``0`` for an empty port, and
#: ``POST /api/v2/connections/test`` then refuses with HTTP 400 "The host or port to test differs from the
#: stored connection" instead of testing the stored credentials (fixed upstream by apache/airflow#73298).
#: Other types are left alone: e.g. the HTTP provider appends the port to a host URL that already has one.
PORT_FROM_HOST_TYPES = frozenset(vendor.conn_type for vendor in registry.vendors())


def url_port(url: str | None) -> int | None:
    """The TCP port an ``http(s)://`` URL addresses (its explicit port, else 443 / 80); None for anything else."""
    if not url or "://" not in url:
        return None
    parts = urlsplit(url.strip())
    try:
        return parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    except ValueError:  # a port that is not a number
        return None


def same_origin(url: str, other: str) -> bool:
    """Whether two ``http(s)://`` URLs name the same scheme, host and port."""
    if "://" not in url or "://" not in other:
        return False
    a, b = urlsplit(url.strip()), urlsplit(other.strip())
    return (a.scheme.lower(), a.hostname, url_port(url)) == (b.scheme.lower(), b.hostname, url_port(other))


def repoint(url: str | None, sandbox_url: str) -> str:
    """``url`` moved to the sandbox's origin, keeping its path (``http://127.0.0.1:8103/SYSPROWCFService/Rest``)."""
    path = urlsplit(url).path.rstrip("/") if url and "://" in url else ""
    return sandbox_url.rstrip("/") + path


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
            original = conn["host"]
            conn["host"] = repoint(original, sandbox_urls[vendor])
            for key, value in conn["extra"].items():  # URL extras served by the same sandbox (SYSPRO odata_url)
                if isinstance(value, str) and original and same_origin(value, original):
                    conn["extra"][key] = repoint(value, sandbox_urls[vendor])
            if "authority" in conn["extra"]:
                conn["extra"]["authority"] = sandbox_urls[vendor]
            if conn["conn_type"] in PORT_FROM_HOST_TYPES:
                conn["port"] = url_port(conn["host"])  # the sandbox's actual port, whatever the file says
        if conn["conn_type"] in PORT_FROM_HOST_TYPES and conn["port"] in (None, ""):
            conn["port"] = url_port(conn["host"])
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


def read_pools(path: str | Path) -> list[dict[str, Any]]:
    """Pools of an Astro ``airflow_settings.yaml`` (``pool_name``, ``pool_slot``, ``pool_description``) as
    ``{"name", "slots", "description"}`` dicts. A pool needs a name and ``pool_slot`` >= 1 (or -1: unlimited);
    0 slots would leave its tasks waiting forever, so it is refused."""
    document = yaml.safe_load(Path(path).read_text()) or {}
    pools = []
    for entry in (document.get("airflow") or {}).get("pools") or []:
        name, slots = str(entry.get("pool_name") or "").strip(), entry.get("pool_slot")
        if not name or not isinstance(slots, int) or isinstance(slots, bool) or not (slots >= 1 or slots == -1):
            raise ValueError(f"{path}: pool {entry!r} needs a pool_name and a pool_slot >= 1 (-1: unlimited)")
        pools.append({"name": name, "slots": slots, "description": str(entry.get("pool_description") or "")})
    return pools


def import_pools(pools: list[dict[str, Any]]) -> None:
    """Create the pools in the Airflow metadata database, or set their slots and description (CLI context)."""
    from airflow.models import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        for pool in pools:
            Pool.create_or_update_pool(name=pool["name"], slots=pool["slots"], description=pool["description"],
                                       include_deferred=False, session=session)
            print(f"pool {pool['name']}: {pool['slots']} slots")


def _block(pipeline: str) -> dict[str, Any]:
    from ml_connector.settings import default_settings_file

    block = (yaml.safe_load(default_settings_file().read_text()) or {}).get(pipeline)
    return block if isinstance(block, dict) else {}


def is_two_way(pipeline: str) -> bool:
    """Whether ``pipeline`` is an ERP <-> fulfilment pipeline (``fulfilment:`` in its settings block)."""
    return bool(_block(pipeline).get("fulfilment"))


def fulfilment_report(pipeline: str, ledger) -> str:
    """The demo table of a two-way pipeline: items, customers and orders from ``ml_fulfilment_records``."""
    from ml_connector.ledger import fulfilment

    rows = fulfilment.rows(ledger, pipeline)
    lines = [f"{'kind':<9} {'record':<14} {'state':<17} {'document':<14} detail", "-" * 120]
    indent = " " * 58
    for row in rows:
        wrapped = textwrap.wrap(row["detail"] or "", width=63, break_on_hyphens=False) or [""]
        lines.append(f"{row['kind']:<9} {row['record_key']:<14} {row['state']:<17} {row['document'] or '':<14} "
                     f"{wrapped[0]}".rstrip())
        lines += [indent + more for more in wrapped[1:]]
    counts = Counter((r["kind"], r["state"]) for r in rows)
    lines += ["-" * 120,
              f"items pushed: {counts['item', 'pushed']}   SKUs missing in ShipStation: {counts['item', 'missing_sku']}"
              f"   customers unknown to ShipStation: {counts['customer', 'unknown_customer']}   orders booked: "
              f"{counts['order', 'booked']}   drafts: {counts['order', 'draft']}   record errors: "
              f"{counts['order', 'error']}"]
    return "\n".join(lines)


def report(pipeline: str, ledger_url: str | None = None) -> str:
    """The demo table: one line per order plus totals (two-way pipelines: :func:`fulfilment_report`)."""
    from ml_connector.ledger import LABELLED_STATES, Ledger, ShipmentState

    ledger = Ledger(ledger_url) if ledger_url else Ledger.from_airflow()
    if is_two_way(pipeline):
        return fulfilment_report(pipeline, ledger)
    rows = ledger.list(pipeline)
    lines = [f"{'order':<14} {'state':<14} {'tracking':<20} reason", "-" * 120]
    indent = " " * 51
    for row in rows:
        reason = row.error or ""
        if reason.startswith(f"order {row.order_number}: "):  # the order is in the first column already
            reason = reason[len(f"order {row.order_number}: "):]
        wrapped = textwrap.wrap(reason, width=69, break_on_hyphens=False) or [""]
        lines.append(f"{row.order_number:<14} {row.state.value:<14} {(row.tracking_numbers or [''])[0]:<20} "
                     f"{wrapped[0]}".rstrip())
        lines += [indent + more for more in wrapped[1:]]
    states = Counter(r.state for r in rows)
    labelled = sum(1 for r in rows if r.state in LABELLED_STATES)
    written = sum(states[s] for s in (ShipmentState.WRITTEN_BACK, ShipmentState.IN_TRANSIT,
                                      ShipmentState.DELIVERED, ShipmentState.EXCEPTION))
    lines += ["-" * 120,
              f"orders seen: {len(rows)}   labels created: {labelled}   written back: {written}   "
              f"quarantined: {states[ShipmentState.QUARANTINED]}"]
    return "\n".join(lines)


def touch_in_turn(touch_url: str, numbers: list[str], interval_end: datetime, *, modified_field: str,
                  spacing: timedelta = timedelta(seconds=10)) -> list[tuple[str, str]]:
    """POST ``{"number", "modified_at"}`` to an ERP sandbox's touch endpoint for each of ``numbers``: the
    first lands one minute before ``interval_end``, the others ``spacing`` apart, so they all fall well inside
    a 15-minute interval. Returns ``(number, the modification time the sandbox now shows)``."""
    import requests

    placed = []
    for i, number in enumerate(numbers):
        when = interval_end - timedelta(minutes=1) - spacing * i
        touch = requests.post(touch_url, json={"number": number, "modified_at": when.isoformat()}, timeout=10)
        if touch.status_code != 200:
            raise SystemExit(f"sandbox refused to touch {number}: {touch.status_code} {touch.text}")
        placed.append((number, touch.json()[modified_field]))
    return placed


def _parse_instant(value: str) -> datetime:
    from datetime import UTC

    at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def data_interval(pipeline: str, at: str) -> tuple[datetime, datetime]:
    """The data interval of ``airflow dags test PIPELINE AT`` (``infer_manual_data_interval`` of the DAG's
    timetable: the last complete interval before ``at``)."""
    import pendulum
    from airflow.serialization.encoders import coerce_to_core_timetable

    from ml_connector.pipelines import erp_ups_dag

    if is_two_way(pipeline):
        from ml_connector.fulfilment.shipstation.pipeline import fulfilment_dag

        dag = fulfilment_dag(pipeline)
    else:
        dag = erp_ups_dag(pipeline)
    timetable = coerce_to_core_timetable(dag.timetable)
    interval = timetable.infer_manual_data_interval(run_after=pendulum.instance(_parse_instant(at)))
    return interval.start, interval.end


def place_seeded(pipeline: str, urls: dict[str, str], interval_end: datetime, *,
                 keep: tuple[str, ...] | None = None) -> str:
    """Move the seeded documents of ``pipeline``'s ERP sandbox (all but ``keep``, default the sandbox's own
    ``KEEP_IN_PLACE``) to just before ``interval_end``; says what it did. By convention each ERP sandbox has
    ``ml_connector_sandbox.<erp>.devtools.place_released(url, interval_end, keep=...)``."""
    from ml_connector.settings import load_settings

    block = _block(pipeline)
    if block.get("fulfilment"):  # two-way: the fulfilment sandbox's orders (and the ERP's items and customers)
        erp, fulfilment = block["erp"], block["fulfilment"]
        vendor = importlib.import_module(f"ml_connector_sandbox.{fulfilment}.devtools")
        keep = vendor.KEEP_IN_PLACE if keep is None else keep
        placed = vendor.place_released(urls[fulfilment], interval_end, keep=keep, erp_url=urls.get(erp))
        return (f"placed {len(placed)} {fulfilment} sandbox order(s) before {interval_end.isoformat()} "
                f"({', '.join(number for number, _ in placed)}); left out: {', '.join(keep) or 'none'}")
    erp = load_settings(pipeline).erp
    vendor = importlib.import_module(f"ml_connector_sandbox.{erp}.devtools")
    keep = vendor.KEEP_IN_PLACE if keep is None else keep
    placed = vendor.place_released(urls[erp], interval_end, keep=keep)
    return (f"placed {len(placed)} released sandbox document(s) before {interval_end.isoformat()} "
            f"({', '.join(number for number, _ in placed)}); left in place: {', '.join(keep) or 'none'}")


def demo_pipelines() -> list[str]:
    """Pipelines of the settings file (``include/pipelines.yaml``) whose ERP (and, for a two-way pipeline, whose
    fulfilment vendor) has a sandbox, in file order."""
    from ml_connector.settings import default_settings_file
    from ml_connector_sandbox import available_vendors

    document = yaml.safe_load(default_settings_file().read_text()) or {}
    vendors = set(available_vendors())
    return [name for name, block in document.items()
            if isinstance(block, dict) and block.get("erp") in registry.ERPS and block.get("erp") in vendors
            and (not block.get("fulfilment") or (block["fulfilment"] in registry.FULFILMENT
                                                 and block["fulfilment"] in vendors))]


#: the first sandbox port of ``make run``; vendors follow in registry order, carriers first (UPS 8101, Business
#: Central 8102, ...), each overridable with ``SANDBOX_PORT_<VENDOR>`` (e.g. ``SANDBOX_PORT_UPS=9101``)
FIRST_SANDBOX_PORT = 8101


def sandbox_ports(environ: dict[str, str] | None = None) -> dict[str, int]:
    """vendor -> the loopback port ``make run`` serves its sandbox on (derived from the registry)."""
    import os

    environ = dict(os.environ) if environ is None else environ
    vendors = [*registry.CARRIERS.values(), *registry.ERPS.values(), *registry.FULFILMENT.values()]
    return {vendor.name: int(environ.get(f"SANDBOX_PORT_{vendor.name.upper()}", FIRST_SANDBOX_PORT + i))
            for i, vendor in enumerate(vendors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_connector_sandbox.devtools")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("connections-env", "import-connections"):
        cmd = sub.add_parser(name)
        cmd.add_argument("settings", help="an Astro airflow_settings.yaml")
        cmd.add_argument("--sandbox-ports", help="port file written by `python -m ml_connector_sandbox`")
    pools = sub.add_parser("import-pools", help="create the pools of an airflow_settings.yaml in Airflow")
    pools.add_argument("settings", help="an Astro airflow_settings.yaml")
    sub.add_parser("sandbox-ports", help="print 'VENDOR PORT DISPLAY-NAME' for every registered vendor")
    rep = sub.add_parser("report")
    rep.add_argument("pipeline")
    rep.add_argument("--ledger-url")
    interval = sub.add_parser("data-interval", help="print START END of the interval `airflow dags test` runs")
    interval.add_argument("pipeline")
    interval.add_argument("--at", required=True, help="the logical date given to `airflow dags test` (ISO)")
    first = sub.add_parser("place-for-first-runs",
                           help="move each ERP sandbox's seeded documents into the interval its pipeline's first "
                                "scheduled run covers (make run)")
    first.add_argument("--sandbox-ports", required=True, help="port file written by `python -m ml_connector_sandbox`")
    place = sub.add_parser("place-sandbox-orders",
                           help="move the sandbox's seeded released orders into the interval ending at ISO")
    place.add_argument("--sandbox-ports", required=True, help="port file written by `python -m ml_connector_sandbox`")
    place.add_argument("--into-interval-ending", required=True, metavar="ISO")
    place.add_argument("--keep", nargs="*", default=None,
                       help="orders left where the seed put them (default: the ERP sandbox's own KEEP_IN_PLACE)")
    place.add_argument("--pipeline", default="business_central_ups",
                       help="whose ERP sandbox to place documents in (default business_central_ups)")
    sub.add_parser("pipelines", help="print the pipelines of the settings file whose ERP has a sandbox")
    args = parser.parse_args(argv)
    if args.command == "sandbox-ports":
        names = {vendor.name: vendor.display_name for vendor in registry.vendors()}
        for vendor, port in sandbox_ports().items():
            print(vendor, port, names[vendor])
        return 0
    if args.command == "import-pools":
        import_pools(read_pools(args.settings))
        return 0
    if args.command == "report":
        print(report(args.pipeline, args.ledger_url))
        return 0
    if args.command == "data-interval":
        start, end = data_interval(args.pipeline, args.at)
        print(start.isoformat(), end.isoformat())
        return 0
    if args.command == "pipelines":
        print("\n".join(demo_pipelines()))
        return 0
    if args.command == "place-for-first-runs":
        # an unpaused DAG (catchup off) first runs the last complete interval before now
        from datetime import UTC

        urls = json.loads(Path(args.sandbox_ports).read_text())
        now = datetime.now(UTC).isoformat()
        for pipeline in demo_pipelines():
            _start, end = data_interval(pipeline, now)
            print(f"{pipeline}: {place_seeded(pipeline, urls, end)}")
        return 0
    if args.command == "place-sandbox-orders":
        urls = json.loads(Path(args.sandbox_ports).read_text())
        print(place_seeded(args.pipeline, urls, _parse_instant(args.into_interval_ending),
                           keep=tuple(args.keep) if args.keep is not None else None))
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
