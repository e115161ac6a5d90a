"""Shipment costs for finance: what each label cost, read from the ledger (no new table).

The ledger stores each shipment's charges when its label is recorded (``ml_shipments.charges``: the carrier's
negotiated total when it returned one, else the published total, as ``"12.34 USD"``), in the same transaction
that makes it ``labelled``; that transaction's audit row says when, which of the two it is (``charges_basis``)
and the published total (``published_charges``). :func:`shipment_costs` joins the two for a date range
and :func:`write_csv` prints them (``ml-connector costs PIPELINE --from DAY --to DAY``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import IO, Any

import sqlalchemy as sa

from ml_connector.ledger import schema

COLUMNS = ["labelled_at", "pipeline", "order_number", "erp_id", "state", "shipment_id", "tracking_numbers",
           "service_code", "amount", "currency", "basis", "published_amount"]


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def shipment_costs(ledger: Any, pipeline: str, first_day: date, last_day: date) -> list[dict[str, Any]]:
    """One dict per shipment of ``pipeline`` labelled on a UTC day in ``[first_day, last_day]``, oldest first.

    :param ledger: a :class:`~ml_connector.ledger.Ledger`.
    """
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), UTC)
    s, a = schema.shipments, schema.audit_log
    first = (sa.select(a.c.shipment_pk, sa.func.min(a.c.id).label("audit_id"))
             .where(a.c.pipeline == pipeline, a.c.to_state == "labelled", a.c.from_state != "labelled")
             .group_by(a.c.shipment_pk).subquery())
    stmt = (sa.select(s, a.c.at.label("labelled_at"), a.c.detail.label("label_detail"))
            .join(first, first.c.shipment_pk == s.c.id)
            .join(a, a.c.id == first.c.audit_id)
            .where(s.c.pipeline == pipeline))
    with ledger.read() as conn:
        rows = conn.execute(stmt).mappings().all()
    result = []
    for row in rows:
        at = _instant(row["labelled_at"])
        if at is None or not (start <= at < end):
            continue
        amount, _, currency = (row["charges"] or "").partition(" ")
        detail = row["label_detail"] if isinstance(row["label_detail"], dict) else {}
        published = (detail.get("published_charges") or "").partition(" ")[0]
        result.append({
            "labelled_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "pipeline": pipeline,
            "order_number": row["order_number"], "erp_id": row["erp_id"], "state": row["state"],
            "shipment_id": row["shipment_id"] or "", "tracking_numbers": " ".join(row["tracking_numbers"] or []),
            "service_code": row["service_code"] or "", "amount": amount, "currency": currency.strip(),
            # labels recorded before the basis was kept, or adopted without charges, leave these empty
            "basis": detail.get("charges_basis") or "", "published_amount": published,
        })
    return sorted(result, key=lambda r: (r["labelled_at"], r["order_number"]))


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """Write ``rows`` as CSV with a header; returns the number of rows."""
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
