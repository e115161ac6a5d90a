"""The webhook inbox: inbound webhook bodies stored first, processed later, duplicates dropped on arrival."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase


class InboxMixin(LedgerBase):
    """Rows of ``ml_webhook_inbox``."""

    def inbox_put(self, source: str, payload: str | Mapping[str, Any], *, dedupe_key: str | None = None) -> bool:
        """Store an inbound webhook body; returns False for a duplicate delivery."""
        body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
        with self.write() as conn:
            result = conn.execute(self._insert(schema.webhook_inbox).values(
                source=source, payload=body, dedupe_key=dedupe_key,
            ).on_conflict_do_nothing(index_elements=["dedupe_key"]))
        return result.rowcount == 1

    def inbox_pending(self, source: str, *, limit: int = 500) -> list[dict[str, Any]]:
        """Unprocessed deliveries from ``source``, oldest first."""
        t = schema.webhook_inbox
        with self.read() as conn:
            rows = conn.execute(sa.select(t).where(t.c.source == source, t.c.processed_at.is_(None))
                                .order_by(t.c.id).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def inbox_done(self, inbox_id: int, *, error: str | None = None) -> None:
        """Mark a delivery processed (with the error, if processing it failed)."""
        t = schema.webhook_inbox
        with self.write() as conn:
            conn.execute(t.update().where(t.c.id == inbox_id)
                         .values(processed_at=sa.func.current_timestamp(), error=error))

    def inbox_prune(self, source: str, *, older_than_days: float = 30) -> int:
        """Delete deliveries processed more than ``older_than_days`` ago; returns how many. A replay arriving
        after that is stored again, and its events are still deduplicated where they are stored."""
        t = schema.webhook_inbox
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        with self.write() as conn:
            result = conn.execute(t.delete().where(t.c.source == source, t.c.processed_at.is_not(None),
                                                   t.c.processed_at < cutoff))
        return result.rowcount
