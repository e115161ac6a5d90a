"""Ledger: exactly-once bookkeeping, audit trail, tracking events, webhook inbox and encrypted secrets."""

from ml_connector.ledger.schema import (
    LABELLED_STATES,
    TRACKED_STATES,
    UNFINISHED_STATES,
    ShipmentState,
)
from ml_connector.ledger.store import (
    DEFAULT_CONN_ID,
    InvalidTransition,
    Ledger,
    ShipmentRow,
    default_sqlite_url,
    resolve_ledger_url,
    url_from_connection,
)

__all__ = [
    "DEFAULT_CONN_ID",
    "LABELLED_STATES",
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
