"""Ledger: exactly-once bookkeeping, audit trail, tracking events, webhook inbox and encrypted secrets.

One database (SQLite or PostgreSQL) whose schema is kept by the Alembic revisions in ``migrations``. The
:class:`Ledger` is composed in :mod:`~ml_connector.ledger.store` from one module per concern.
"""

from ml_connector.ledger.engine import (
    DEFAULT_CONN_ID,
    default_sqlite_url,
    resolve_ledger_url,
    url_from_connection,
)
from ml_connector.ledger.schema import (
    LABELLED_STATES,
    PURCHASE_OPEN_STATES,
    TRACKED_STATES,
    UNFINISHED_STATES,
    ShipmentState,
)
from ml_connector.ledger.shipments import InvalidTransition, ShipmentRow
from ml_connector.ledger.store import Ledger

__all__ = [
    "DEFAULT_CONN_ID",
    "LABELLED_STATES",
    "PURCHASE_OPEN_STATES",
    "TRACKED_STATES",
    "UNFINISHED_STATES",
    "InvalidTransition",
    "Ledger",
    "ShipmentRow",
    "ShipmentState",
    "default_sqlite_url",
    "resolve_ledger_url",
    "url_from_connection",
]
