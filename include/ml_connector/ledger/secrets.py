"""The rows of ``ml_secrets``: ciphertexts with their expiry, the lease of the process refreshing one, and the
refusal breaker.

The ledger stores what :class:`ml_connector.secrets.SecretStore` encrypted and never sees a plaintext. The
lease lets one process refresh a value with no transaction open while the others wait: it is taken with a
conditional ``UPDATE`` (free, expired, or already ours, and the breaker not open) in a short transaction, and
cleared in the same transaction that stores the new value (which also closes the breaker) or records a refusal
(which opens it: ``refused_until``/``refused_reason``).
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

    def refused(self, now: float | None = None) -> bool:
        """Whether the breaker is open: the issuer refused the last refresh and its window has not passed."""
        now = time.time() if now is None else now
        return self.refused_until is not None and self.refused_until > now


class Lease(enum.StrEnum):
    """Outcome of :meth:`SecretsMixin.take_secret_lease`."""

    NOT_NEEDED = "not_needed"  #: the value no longer needs a refresh (another process stored one)
    TAKEN = "taken"  #: the caller holds the lease and must refresh, then store, record a refusal, or release
    BUSY = "busy"  #: another process holds an unexpired lease
    REFUSED = "refused"  #: the breaker is open (``refused_until`` lies ahead): nobody may ask the issuer now


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
        """Store a value; with ``lease_owner`` (a refresh that succeeded), also release that owner's lease and
        close the breaker in the same transaction."""
        t = schema.secrets
        with self.write() as conn:
            stmt = self._insert(t).values(name=name, ciphertext=ciphertext, expires_at=expires_at)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["name"],
                set_={"ciphertext": ciphertext, "expires_at": expires_at,
                      "updated_at": sa.func.current_timestamp()}))
            if lease_owner is not None:
                self._clear_lease(conn, name, lease_owner)
                conn.execute(t.update().where(t.c.name == name).values(refused_until=None, refused_reason=None))

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

    def take_secret_lease(self, name: str, owner: str, *, ttl: float, needed: Callable[[SecretRow], bool],
                          now: float | None = None) -> tuple[SecretRow, Lease]:
        """Take the refresh lease of ``name`` for ``owner`` if the value still needs a refresh.

        In one short transaction: make sure the row exists, take the lease if it is free, expired or already
        ``owner``'s and the breaker is not open (conditional ``UPDATE``), then read the row. If ``needed(row)``
        says the value is good after all (another process stored one meanwhile), a lease just taken is given
        back before commit.

        :param now: the caller's clock (epoch seconds), for the lease's and the breaker's times.
        :returns: the row as read, and whether the caller now holds the lease (or why not).
        """
        t = schema.secrets
        now = time.time() if now is None else now
        with self.write() as conn:
            conn.execute(self._insert(t).values(name=name, ciphertext=None)
                         .on_conflict_do_nothing(index_elements=["name"]))
            taken = conn.execute(
                t.update()
                .where(t.c.name == name)
                .where(sa.or_(t.c.lease_owner.is_(None), t.c.lease_expires_at.is_(None),
                              t.c.lease_expires_at <= now, t.c.lease_owner == owner))
                .where(sa.or_(t.c.refused_until.is_(None), t.c.refused_until <= now))
                .values(lease_owner=owner, lease_expires_at=now + ttl)
            ).rowcount == 1
            row = self._secret(conn, name)
            if row is None:  # deleted by another process since the insert above: let the caller try again
                return SecretRow(name=name, ciphertext=None, expires_at=None), Lease.BUSY
            if not needed(row):
                if taken:
                    self._clear_lease(conn, name, owner)
                return row, Lease.NOT_NEEDED
            if taken:
                return row, Lease.TAKEN
            return row, Lease.REFUSED if row.refused(now) else Lease.BUSY

    def release_secret_lease(self, name: str, owner: str) -> None:
        """Give the lease back without storing a value (the refresh failed)."""
        with self.write() as conn:
            self._clear_lease(conn, name, owner)

    def refuse_secret(self, name: str, owner: str, *, until: float, reason: str) -> bool:
        """Open the breaker: the issuer refused ``owner``'s refresh; nobody asks again before ``until``.

        Records ``refused_until``/``refused_reason`` and gives the lease back in one transaction, only while
        ``owner`` still holds the lease (a holder whose lease was taken over records nothing).

        :param reason: a short reason for people (never a secret).
        :returns: whether the refusal was recorded.
        """
        t = schema.secrets
        with self.write() as conn:
            return conn.execute(
                t.update().where(t.c.name == name, t.c.lease_owner == owner)
                .values(refused_until=until, refused_reason=reason, lease_owner=None, lease_expires_at=None)
            ).rowcount == 1

    @staticmethod
    def _clear_lease(conn: Connection, name: str, owner: str) -> None:
        t = schema.secrets
        conn.execute(t.update().where(t.c.name == name, t.c.lease_owner == owner)
                     .values(lease_owner=None, lease_expires_at=None))
