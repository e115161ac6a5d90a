"""The ledger: exactly-once bookkeeping, audit trail and shared state for every pipeline.

:class:`Ledger` is one object over one database, put together from one part per concern: shipments and their
state machine (:mod:`~ml_connector.ledger.shipments`), the audit trail (:mod:`~ml_connector.ledger.audit`),
tracking (:mod:`~ml_connector.ledger.tracking`), the webhook inbox (:mod:`~ml_connector.ledger.inbox`) and
the rows of the secret store (:mod:`~ml_connector.ledger.secrets`), all on the engine, transactions and
migrations of :mod:`~ml_connector.ledger.engine`.
"""

from __future__ import annotations

from ml_connector.ledger.engine import (  # noqa: F401 - _ENGINES: tests dispose of their engines through here
    _ENGINES,
    DEFAULT_CONN_ID,
    default_sqlite_url,
    resolve_ledger_url,
    url_from_connection,
)
from ml_connector.ledger.inbox import InboxMixin
from ml_connector.ledger.secrets import SecretsMixin
from ml_connector.ledger.shipments import InvalidTransition, ShipmentRow, ShipmentsMixin
from ml_connector.ledger.tracking import TrackingMixin

__all__ = [
    "DEFAULT_CONN_ID",
    "InvalidTransition",
    "Ledger",
    "ShipmentRow",
    "default_sqlite_url",
    "resolve_ledger_url",
    "url_from_connection",
]


class Ledger(ShipmentsMixin, TrackingMixin, InboxMixin, SecretsMixin):
    """Exactly-once store for one database.

    :param url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg2://...``).
    :param create_schema: bring the schema to the newest revision on first use of ``url`` in this process
        (idempotent, safe when several processes open the same ledger at once).
    """
