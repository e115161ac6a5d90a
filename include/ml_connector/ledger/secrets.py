"""The rows of ``ml_secrets``: ciphertexts with their expiry, and the lease of the process refreshing one.

The ledger stores what :class:`ml_connector.secrets.SecretStore` encrypted and never sees a plaintext. The
lease lets one process refresh a value with no transaction open while the others wait: it is taken with a
conditional ``UPDATE`` (free, expired, or already ours) in a short transaction, and cleared in the same
transaction that stores the new value.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ml_connector.ledger import schema
from ml_connector.ledger.engine import LedgerBase


@dataclass(frozen=True)
class SecretRow:
    """One row of ``ml_secrets`` (``ciphertext`` is ``None`` for a placeholder that has no value yet)."""

    name: str
    ciphertext: str | None
    expires_at: float | None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    refused_until: float | None = None
    refused_reason: str | None = None

    def leased(self, now: float | None = None) -> bool:
        """Whether some process holds an unexpired lease on the row."""
        now = time.time() if now is None else now
        return self.lease_owner is not None and self.lease_expires_at is not None and self.lease_expires_at > now


class Lease(enum.StrEnum):
    """Outcome of :meth:`SecretsMixin.take_secret_lease`."""

    NOT_NEEDED = "not_needed"  #: the value no longer needs a refresh (another process stored one)
    TAKEN = "taken"  #: the caller holds the lease and must refresh, then store or release
    BUSY = "busy"  #: another process holds an unexpired lease


class SecretsMixin(LedgerBase):
    """Rows of ``ml_secrets``."""

    def _secret(self, conn: Connection, name: str) -> SecretRow | None:
        t = schema.secrets
        row = conn.execute(sa.select(t.c.name, t.c.ciphertext, t.c.expires_at, t.c.lease_owner,
                                     t.c.lease_expires_at, t.c.refused_until, t.c.refused_reason)
                           .where(t.c.name == name)).mappings().first()
        return SecretRow(**row) if row is not None else None

    def secret(self, name: str) -> SecretRow | None:
        """The row of ``name``, read without a lock."""
        with self.read() as conn:
            return self._secret(conn, name)

    def put_secret(self, name: str, ciphertext: str, expires_at: float | None, *,
                   lease_owner: str | None = None) -> None:
        """Store a value; with ``lease_owner``, also release that owner's lease in the same transaction."""
        t = schema.secrets
        with self.write() as conn:
            stmt = self._insert(t).values(name=name, ciphertext=ciphertext, expires_at=expires_at)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={"ciphertext": ciphertext, "expires_at": expires_at,
                      "updated_at": sa.func.current_timestamp()}))
            if lease_owner is not None:
                self._clear_lease(conn, name, lease_owner)

    def delete_secret(self, name: str) -> None:
        with self.write() as conn:
            conn.execute(schema.secrets.delete().where(schema.secrets.c.name == name))

    def rewrite_secrets(self, transform: Callable[[str, str], str]) -> int:
        """Replace every stored ciphertext by ``transform(name, ciphertext)`` in one transaction.

        Returns how many rows were rewritten; if ``transform`` raises, nothing is rewritten.
        """
        t = schema.secrets
        count = 0
        with self.write() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.ciphertext).where(t.c.ciphertext.is_not(None))).all()
            for name, ciphertext in rows:
                conn.execute(t.update().where(t.c.name == name).values(ciphertext=transform(name, ciphertext)))
                count += 1
        return count

    # -- the refresh lease ------------------------------------------------------------------------------

    def take_secret_lease(self, name: str, owner: str, *, ttl: float,
                          needed: Callable[[SecretRow], bool]) -> tuple[SecretRow, Lease]:
        """Take the refresh lease of ``name`` for ``owner`` if the value still needs a refresh.

        In one short transaction: make sure the row exists, take the lease if it is free, expired or already
        ``owner``'s (conditional ``UPDATE``), then read the row. If ``needed(row)`` says the value is good
        after all (another process stored one meanwhile), a lease just taken is given back before commit.

        :returns: the row as read, and whether the caller now holds the lease.
        """
        t = schema.secrets
        now = time.time()
        with self.write() as conn:
            conn.execute(self._insert(t).values(name=name, ciphertext=None)
                         .on_conflict_do_nothing(index_elements=["name"]))
            taken = conn.execute(
                t.update()
                .where(t.c.name == name)
                .where(sa.or_(t.c.lease_owner.is_(None), t.c.lease_expires_at.is_(None),
                              t.c.lease_expires_at <= now, t.c.lease_owner == owner))
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            ).rowcount == 1
            row = self._secret(conn, name)
            if row is None:  # deleted by another process since the insert above: let the caller try again
                return SecretRow(name=name, ciphertext=None, expires_at=None), Lease.BUSY
            if not needed(row):
                if taken:
                    self._clear_lease(conn, name, owner)
                return row, Lease.NOT_NEEDED
            return row, Lease.TAKEN if taken else Lease.BUSY

    def release_secret_lease(self, name: str, owner: str) -> None:
        """Give the lease back without storing a value (the refresh failed)."""
        with self.write() as conn:
            self._clear_lease(conn, name, owner)

    @staticmethod
    def _clear_lease(conn: Connection, name: str, owner: str) -> None:
        t = schema.secrets
        conn.execute(t.update().where(t.c.name == name, t.c.lease_owner == owner)
                     .values(lease_owner=None, lease_expires_at=None))
