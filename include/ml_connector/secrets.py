"""Encrypted secret store: cached tokens and rotating credentials, shared by every task and worker.

Values are encrypted with ``cryptography``'s MultiFernet. Keys come from ``ML_CONNECTOR_FERNET_KEYS``
(comma-separated): the first key encrypts, every key decrypts, so a new key can be put in front and
``ml-connector rotate-secrets`` re-encrypts the rows without downtime.

:meth:`SecretStore.get_or_refresh` is the token cache. A valid cached value is returned after one read. A stale
or missing one is refreshed by exactly one process at a time, which holds a short *lease* on the row (taken
and given back in short transactions of their own): the token request itself runs with no transaction open,
so other ledger writers never wait for a token endpoint. The other processes poll the row until the lease
holder has stored the new value (or its lease expired: a crashed holder's lease is taken over), so N processes
that find the token stale at the same moment make exactly one token request.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger
from ml_connector.ledger.secrets import Lease, SecretRow

log = logging.getLogger(__name__)

KEYS_ENV = "ML_CONNECTOR_FERNET_KEYS"
DEFAULT_REFRESH_MARGIN = 300.0  # refresh 5 minutes early: a 1-hour UPS token is used for 55 minutes
#: How long a refresh may hold the lease before another process may take it over (and refresh again).
DEFAULT_LEASE_SECONDS = 180.0  # longer than a token request with its retries may take (see hooks/base.py)


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
    :param lease_seconds: how long one refresh may hold the lease; after that, a waiting process takes it over
        and refreshes itself (the holder is presumed dead). Keep it above the refresh's own time-out.
    """

    #: first and longest pause while another process holds the lease (the pause grows by half each time)
    poll_initial_seconds = 0.05
    poll_max_seconds = 1.0

    def __init__(self, ledger: Ledger, fernet: MultiFernet | None = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS) -> None:
        self.ledger = ledger
        self.fernet = fernet or load_fernet()
        self.lease_seconds = lease_seconds

    def _decrypt(self, name: str, ciphertext: str) -> str:
        try:
            return self.fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                f"secret '{name}' cannot be decrypted with any key in {KEYS_ENV}: a key was removed before "
                "`ml-connector rotate-secrets` re-encrypted the rows. Put the old key back (after the new one)."
            ) from None

    def _encrypt(self, value: str) -> str:
        return self.fernet.encrypt(value.encode()).decode()

    def _cached(self, row: SecretRow | None) -> CachedSecret | None:
        if row is None or row.ciphertext is None:
            return None
        return CachedSecret(self._decrypt(row.name, row.ciphertext), row.expires_at)

    def get(self, name: str) -> CachedSecret | None:
        """The stored value, or ``None``."""
        return self._cached(self.ledger.secret(name))

    def put(self, name: str, value: str, *, expires_at: float | None = None) -> None:
        self.ledger.put_secret(name, self._encrypt(value), expires_at)

    def delete(self, name: str) -> None:
        self.ledger.delete_secret(name)

    def get_or_refresh(self, name: str, refresh: Callable[[CachedSecret | None], tuple[str, float | None]], *,
                       margin: float = DEFAULT_REFRESH_MARGIN, force: bool = False,
                       stale_value: str | None = None) -> str:
        """Return a fresh value for ``name``; of all processes that need one at once, one calls ``refresh``.

        Another process calls it again only if this refresh fails or outlives the lease (``lease_seconds``).

        :param refresh: called with the current (stale or missing) entry while this process holds the lease,
            with no database transaction open; returns ``(value, expires_at)``. It may use the old value
            (e.g. a rotating refresh token) and may store other secrets with :meth:`put`. If it raises, the
            lease is given back and the exception propagates.
        :param margin: seconds before expiry at which a value counts as stale.
        :param force: refresh even if the cached value looks fresh (after a 401) — unless another process
            already replaced ``stale_value`` in the meantime, in which case its new value is returned.
        :param stale_value: with ``force``, the value that was rejected.
        """
        if not force:
            cached = self.get(name)
            if cached is not None and cached.fresh(margin):
                return cached.value

        def needed(row: SecretRow) -> bool:
            current = self._cached(row)
            if current is None or not current.fresh(margin):
                return True
            # fresh: a forced refresh still goes ahead unless the rejected value was replaced meanwhile
            return force and (stale_value is None or current.value == stale_value)

        owner = _lease_owner()
        while True:
            row, lease = self.ledger.take_secret_lease(name, owner, ttl=self.lease_seconds, needed=needed)
            if lease is Lease.NOT_NEEDED:
                return self._cached(row).value  # another process stored a fresh value
            if lease is Lease.TAKEN:
                break
            self._wait_for_lease(name, needed)

        try:
            value, expires_at = refresh(self._cached(row))
        except BaseException:
            try:
                self.ledger.release_secret_lease(name, owner)
            except Exception:  # keep the refresh's own error; the lease expires by itself
                log.warning("could not release the refresh lease of secret '%s'", name, exc_info=True)
            raise
        self.ledger.put_secret(name, self._encrypt(value), expires_at, lease_owner=owner)
        return value

    def _wait_for_lease(self, name: str, needed: Callable[[SecretRow], bool]) -> None:
        """Poll (without locks) until the lease holder stored a good value, released, or let its lease expire.

        Bounded by the holder's lease: once it expires, the row no longer counts as leased.
        """
        delay = self.poll_initial_seconds
        while True:
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll_max_seconds)
            row = self.ledger.secret(name)
            if row is None or not row.leased() or not needed(row):
                return

    def rotate(self) -> int:
        """Re-encrypt every row with the first key; returns how many rows were rewritten."""

        def rotate_one(name: str, ciphertext: str) -> str:
            try:
                return self.fernet.rotate(ciphertext.encode()).decode()
            except InvalidToken:
                raise ConfigurationError(
                    f"secret '{name}' cannot be decrypted with any key in {KEYS_ENV}; nothing was rotated"
                ) from None

        return self.ledger.rewrite_secrets(rotate_one)


def _lease_owner() -> str:
    """Who holds a lease: host, process and thread, plus a random part so that no two calls share one."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:12]}"[:200]
