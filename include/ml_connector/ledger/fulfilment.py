"""Rows of ``ml_fulfilment_records``: the outcome of each item pushed and each order booked by a two-way
fulfilment pipeline (the run summary reads them; a missing SKU or a record error stays here with its reason)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase


def record(ledger: LedgerBase, pipeline_id: str, kind: str, key: str, state: str, *, document: str | None = None,
           detail: str | None = None) -> None:
    """Insert or replace the row of ``(pipeline_id, kind, key)``."""
    t = schema.fulfilment_records
    values = {"state": state, "document": document, "detail": detail, "updated_at": datetime.now(UTC)}
    with ledger.write() as conn:
        inserted = conn.execute(ledger._insert(t).values(pipeline_id=pipeline_id, kind=kind, record_key=key, **values)
                                .on_conflict_do_nothing(index_elements=["pipeline_id", "kind", "record_key"]))
        if inserted.rowcount != 1:
            conn.execute(t.update().where(t.c.pipeline_id == pipeline_id, t.c.kind == kind, t.c.record_key == key)
                         .values(**values))


def rows(ledger: LedgerBase, pipeline_id: str, kind: str | None = None) -> list[dict[str, Any]]:
    """Every row of the pipeline (optionally of one kind), by kind and key."""
    t = schema.fulfilment_records
    query = sa.select(t).where(t.c.pipeline_id == pipeline_id)
    if kind:
        query = query.where(t.c.kind == kind)
    with ledger.read() as conn:
        return [dict(r) for r in conn.execute(query.order_by(t.c.kind, t.c.record_key)).mappings()]


def get(ledger: LedgerBase, pipeline_id: str, kind: str, key: str) -> dict[str, Any] | None:
    t = schema.fulfilment_records
    with ledger.read() as conn:
        row = conn.execute(sa.select(t).where(t.c.pipeline_id == pipeline_id, t.c.kind == kind,
                                              t.c.record_key == key)).mappings().first()
    return dict(row) if row else None
