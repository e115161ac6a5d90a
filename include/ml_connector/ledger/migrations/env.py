"""Alembic environment of the ledger: runs on the connection the caller passes in ``config.attributes``.

Called by :mod:`ml_connector.ledger.migrations` (``ml-connector db upgrade``, or the first use of a ledger),
which opens the transaction and holds the migration lock; nothing here opens its own connection.
"""

from __future__ import annotations

from alembic import context

from ml_connector.ledger.migrations import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("the ledger migrations run on a connection passed by ml_connector.ledger.migrations; "
                       "use `ml-connector db upgrade`")

context.configure(connection=connection, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
