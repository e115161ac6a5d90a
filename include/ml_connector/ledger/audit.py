"""The audit trail: an append-only log of every step taken on a shipment (nothing updates or deletes it).

State changes write their audit row in the same transaction as the change (:meth:`AuditMixin._audit`), so the
trail and the state can never disagree. Every row names its actor (for the pipeline's operators
``run_id/task_id[map_index]#try``), so "what did this run do" is a query over the actors that start with the
run's id (:meth:`AuditMixin.audit_by_actor_prefix`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase

if TYPE_CHECKING:
    from ml_connector.ledger.shipments import ShipmentRow


def _jsonable(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if detail is None:
        return None
    return json.loads(json.dumps(detail, default=str))


class AuditMixin(LedgerBase):
    """Audit rows of the ledger."""

    @staticmethod
    def _audit(conn: Connection, *, shipment: ShipmentRow | None, step: str, outcome: str,
               from_state: str | None = None, to_state: str | None = None, message: str | None = None,
               detail: Mapping[str, Any] | None = None, actor: str | None = None,
               pipeline: str | None = None, order_number: str | None = None) -> None:
        conn.execute(schema.audit_log.insert().values(
            shipment_pk=shipment.id if shipment else None,
            pipeline=shipment.pipeline if shipment else pipeline,
            order_number=shipment.order_number if shipment else order_number,
            step=step, outcome=outcome, from_state=from_state, to_state=to_state,
            message=message, detail=_jsonable(detail), actor=actor,
        ))

    def audit(self, shipment: ShipmentRow | None, *, step: str, outcome: str, message: str | None = None,
              detail: Mapping[str, Any] | None = None, actor: str | None = None,
              pipeline: str | None = None) -> None:
        """Append one audit row (the audit log is append-only: nothing updates or deletes it)."""
        with self.write() as conn:
            self._audit(conn, shipment=shipment, step=step, outcome=outcome, message=message, detail=detail,
                        actor=actor, pipeline=pipeline,
                        from_state=shipment.state.value if shipment else None,
                        to_state=shipment.state.value if shipment else None)

    def audit_trail(self, shipment_id: int) -> list[dict[str, Any]]:
        """The audit rows of one shipment, oldest first."""
        with self.read() as conn:
            rows = conn.execute(sa.select(schema.audit_log)
                                .where(schema.audit_log.c.shipment_pk == shipment_id)
                                .order_by(schema.audit_log.c.id)).mappings().all()
        return [dict(r) for r in rows]

    def audit_by_actor_prefix(self, pipeline: str, prefix: str, *, to_states: Iterable[str] | None = None,
                              outcomes: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The audit rows of ``pipeline`` whose actor starts with ``prefix``, oldest first.

        :param prefix: compared exactly (case-sensitive; ``%`` and ``_`` are plain characters).
        :param to_states: only rows that moved (or kept) a shipment in one of these states.
        :param outcomes: only rows with one of these outcomes (``ok``, ``quarantined``, ``error``...).
        """
        t = schema.audit_log
        stmt = sa.select(t).where(t.c.pipeline == pipeline,
                                  sa.func.substr(t.c.actor, 1, len(prefix)) == prefix)
        if to_states is not None:
            stmt = stmt.where(t.c.to_state.in_(list(to_states)))
        if outcomes is not None:
            stmt = stmt.where(t.c.outcome.in_(list(outcomes)))
        with self.read() as conn:
            rows = conn.execute(stmt.order_by(t.c.id)).mappings().all()
        return [dict(r) for r in rows]
