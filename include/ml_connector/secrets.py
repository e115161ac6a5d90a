"""Encrypted secret store: cached tokens and rotating credentials, shared by every task and worker.

Values are encrypted with ``cryptography``'s MultiFernet. Keys come from ``ML_CONNECTOR_FERNET_KEYS``
(comma-separated): the first key encrypts, every key decrypts, so a new key can be put in front and
``ml-connector rotate-secrets`` re-encrypts the rows without downtime.

:meth:`SecretStore.get_or_refresh` is the token cache: a valid cached value is returned without a lock; an
expired (or soon to expire) one is refreshed under a database lock (``SELECT ... FOR UPDATE`` on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), and the value is read again after the lock is taken, so N processes that find
the token stale at the same moment make exactly one token request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger, schema

KEYS_ENV = "ML_CONNECTOR_FERNET_KEYS"
DEFAULT_REFRESH_MARGIN = 300.0  # refresh 5 minutes early: a 1-hour UPS token is used for 55 minutes


@dataclass(frozen=True)
class CachedSecret:
    """A decrypted value and its expiry (epoch seconds; ``None`` = does not expire)."""

    value: str
    expires_at: float | None

    def fresh(self, margin: float, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.expires_at is None or self.expires_at - margin > now


def load_fernet(keys: str | None = None) -> MultiFernet:
    """Build the MultiFernet from ``keys`` or ``$ML_CONNECTOR_FERNET_KEYS``.

    :raises ConfigurationError: no key set, or a key that is not a valid Fernet key.
    """
    raw = keys if keys is not None else os.environ.get(KEYS_ENV, "")
    parts = [k.strip() for k in raw.split(",") if k.strip()]
    if not parts:
        raise ConfigurationError(
            f"{KEYS_ENV} is not set: ml-connector encrypts cached tokens and rotating credentials at rest. "
            f"Generate a key with `ml-connector generate-key` and set {KEYS_ENV} on every Airflow component "
            "(comma-separate several keys to rotate; the first one encrypts)."
        )
    try:
        return MultiFernet([Fernet(k.encode()) for k in parts])
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{KEYS_ENV} holds a value that is not a Fernet key (32 url-safe base64 bytes): {exc}"
        ) from None


class SecretStore:
    """Encrypted key/value rows in the ledger's ``ml_secrets`` table.

    :param ledger: the ledger whose database holds the rows.
    :param fernet: encryption keys; default from ``$ML_CONNECTOR_FERNET_KEYS``.
    """

    def __init__(self, ledger: Ledger, fernet: MultiFernet | None = None) -> None:
        self.ledger = ledger
        self.fernet = fernet or load_fernet()

    def _decrypt(self, name: str, ciphertext: str) -> str:
        try:
            return self.fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                f"secret '{name}' cannot be decrypted with any key in {KEYS_ENV}: a key was removed before "
                "`ml-connector rotate-secrets` re-encrypted the rows. Put the old key back (after the new one)."
            ) from None

    def _row(self, conn, name: str, *, lock: bool = False):
        stmt = sa.select(schema.secrets.c.ciphertext, schema.secrets.c.expires_at).where(
            schema.secrets.c.name == name)
        if lock and self.ledger.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return conn.execute(stmt).first()

    def get(self, name: str) -> CachedSecret | None:
        """The stored value, or ``None``."""
        with self.ledger.read() as conn:
            row = self._row(conn, name)
        if row is None or row.ciphertext is None:
            return None
        return CachedSecret(self._decrypt(name, row.ciphertext), row.expires_at)

    def _write(self, conn, name: str, value: str, expires_at: float | None) -> None:
        token = self.fernet.encrypt(value.encode()).decode()
        stmt = self.ledger._insert(schema.secrets).values(name=name, ciphertext=token, expires_at=expires_at)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["name"],
            set_={"ciphertext": token, "expires_at": expires_at, "updated_at": sa.func.current_timestamp()}))

    def put(self, name: str, value: str, *, expires_at: float | None = None) -> None:
        with self.ledger.write() as conn:
            self._write(conn, name, value, expires_at)

    def delete(self, name: str) -> None:
        with self.ledger.write() as conn:
            conn.execute(schema.secrets.delete().where(schema.secrets.c.name == name))

    def get_or_refresh(self, name: str, refresh: Callable[[CachedSecret | None], tuple[str, float | None]], *,
                       margin: float = DEFAULT_REFRESH_MARGIN, force: bool = False,
                       stale_value: str | None = None) -> str:
        """Return a fresh value for ``name``, calling ``refresh`` at most once across all processes.

        :param refresh: called under the lock with the current (stale or missing) entry; returns
            ``(value, expires_at)``. It may use the old value (e.g. a rotating refresh token).
        :param margin: seconds before expiry at which a value counts as stale.
        :param force: refresh even if the cached value looks fresh (after a 401) — unless another process
            already replaced ``stale_value`` in the meantime, in which case its new value is returned.
        :param stale_value: with ``force``, the value that was rejected.
        """
        if not force:
            cached = self.get(name)
            if cached is not None and cached.fresh(margin):
                return cached.value
        with self.ledger.write() as conn:
            if self.ledger.dialect == "postgresql":
                # make sure a row exists to lock, then lock it: concurrent refreshers queue here
                conn.execute(self.ledger._insert(schema.secrets).values(name=name, ciphertext=None)
                             .on_conflict_do_nothing(index_elements=["name"]))
            row = self._row(conn, name, lock=True)
            current = None
            if row is not None and row.ciphertext is not None:
                current = CachedSecret(self._decrypt(name, row.ciphertext), row.expires_at)
            if current is not None and current.fresh(margin):
                if not force or (stale_value is not None and current.value != stale_value):
                    return current.value  # another process refreshed while we waited for the lock
            value, expires_at = refresh(current)
            self._write(conn, name, value, expires_at)
            return value

    def rotate(self) -> int:
        """Re-encrypt every row with the first key; returns how many rows were rewritten."""
        count = 0
        with self.ledger.write() as conn:
            rows = conn.execute(sa.select(schema.secrets.c.name, schema.secrets.c.ciphertext)).all()
            for name, ciphertext in rows:
                if ciphertext is None:
                    continue
                try:
                    rotated = self.fernet.rotate(ciphertext.encode()).decode()
                except InvalidToken:
                    raise ConfigurationError(
                        f"secret '{name}' cannot be decrypted with any key in {KEYS_ENV}; nothing was rotated"
                    ) from None
                conn.execute(schema.secrets.update().where(schema.secrets.c.name == name)
                             .values(ciphertext=rotated))
                count += 1
        return count
