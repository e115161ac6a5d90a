"""The audit trail: an append-only log of every step taken on a shipment (nothing updates or deletes it).

State changes write their audit row in the same transaction as the change (:meth:`AuditMixin._audit`), so the
trail and the state can never disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
