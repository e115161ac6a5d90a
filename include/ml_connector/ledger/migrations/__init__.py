"""Alembic migrations of the ledger schema, run from code (no ``alembic.ini`` at run time).

The version table is ``ml_alembic_version``: the ledger may share a database with Airflow's metadata, whose
own Alembic history lives in ``alembic_version``. Revisions live in ``versions/``; each one is frozen once
released (it never imports :mod:`ml_connector.ledger.schema`, which always describes the head). A new revision
changes ``schema.py`` and adds a file here, ``down_revision`` pointing at the previous head; the migration tests
check that the two agree on SQLite and PostgreSQL.

The functions here work on a connection inside a transaction that the caller opened and commits;
:func:`ml_connector.ledger.engine.upgrade_schema` adds the lock and the logging.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

SCRIPT_LOCATION = Path(__file__).resolve().parent
VERSION_TABLE = "ml_alembic_version"
#: The schema of release 0.1.0, which created its tables with ``metadata.create_all`` and kept no version.
BASELINE = "0001"
#: A table every release has created: its presence without a version table means release 0.1.0.
_BASELINE_MARKER_TABLE = "ml_shipments"


def config(connection: Connection | None = None) -> Config:
    """An Alembic config for the ledger's scripts; ``connection`` is handed to ``env.py``."""
    cfg = Config(attributes={"connection": connection} if connection is not None else {})
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of this release's revisions (a newer release may have migrated further)."""
    return any(script.revision == revision for script in _scripts().walk_revisions())


@functools.cache
def head_revision() -> str:
    """The newest revision the code knows (read once per process)."""
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships its revisions
        raise RuntimeError(f"no ledger migrations found under {SCRIPT_LOCATION}")
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision stored in ``ml_alembic_version``; ``None`` when the table does not exist or is empty."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    versions = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(versions) > 1:
        raise RuntimeError(f"{VERSION_TABLE} holds several revisions ({', '.join(versions)}); expected one")
    return versions[0] if versions else None


def has_unversioned_tables(conn: Connection) -> bool:
    """Whether the ledger's tables exist although no revision is recorded (a release 0.1.0 ledger)."""
    return sa.inspect(conn).has_table(_BASELINE_MARKER_TABLE)


def stamp(conn: Connection, revision: str) -> None:
    """Record ``revision`` without running anything."""
    command.stamp(config(conn), revision)


def upgrade(conn: Connection, revision: str = "head") -> None:
    command.upgrade(config(conn), revision)
