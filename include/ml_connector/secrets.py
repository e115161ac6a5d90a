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

The same row holds a *circuit breaker*. When the issuer refuses a refresh with something retrying later can fix
(a :class:`~ml_connector.errors.RetryableError`: 429, a quota, a 5xx or no answer after the request's own
retries), the lease holder records on the row until when nobody may ask again (``refused_until``: the issuer's
``Retry-After`` when it sent one, else :data:`DEFAULT_REFUSAL_BACKOFF` seconds doubling per consecutive refusal
up to :data:`DEFAULT_REFUSAL_BACKOFF_MAX`) and a short reason (``refused_reason``, which also counts the
refusals in a row: ``"quota; refused 3 times in a row"``). The process that asked sees the issuer's own error;
until the window has passed every process that needs a new value raises :class:`TokenRequestsRefused` at once,
without an HTTP call (a value that is stale but not yet expired is still handed out instead). The first process
after the window takes the lease as usual and makes the one probe; its success closes the breaker. Credential
refusals and configuration errors (anything but a :class:`~ml_connector.errors.RetryableError`) never open it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ml_connector.errors import AmbiguousRequestError, ConfigurationError, RetryableError
from ml_connector.ledger import Ledger
from ml_connector.ledger.secrets import Lease, SecretRow

log = logging.getLogger(__name__)

KEYS_ENV = "ML_CONNECTOR_FERNET_KEYS"
DEFAULT_REFRESH_MARGIN = 300.0  # refresh 5 minutes early: a 1-hour UPS token is used for 55 minutes
#: How long a refresh may hold the lease before another process may take it over (and refresh again).
DEFAULT_LEASE_SECONDS = 180.0  # longer than a token request with its retries may take (see hooks/base.py)
#: Breaker window after the first refused refresh when the issuer says nothing about when to come back; it
#: doubles with every consecutive refusal (60, 120, 240, 480 s...) up to :data:`DEFAULT_REFUSAL_BACKOFF_MAX`.
DEFAULT_REFUSAL_BACKOFF = 60.0
DEFAULT_REFUSAL_BACKOFF_MAX = 900.0  # 15 minutes: at most 4 probes an hour while the issuer keeps refusing
#: The longest ``Retry-After`` honoured as a breaker window (a daily quota is reset within a day).
MAX_REFUSAL_WINDOW = 86400.0
_STREAK = re.compile(r"^(?P<reason>.*); refused (?P<count>\d+) times in a row$", re.DOTALL)
_REASON_MAX = 80

E = TypeVar("E", bound=BaseException)

#: Fresh values this process read from or stored in the ledger: ``(pid, ledger URL, name) -> CachedSecret``
#: (see :meth:`SecretStore.get_or_refresh`). Plain dict operations are atomic under the GIL.
_MEMORY: dict[tuple[int, str, str], CachedSecret] = {}


@dataclass(frozen=True)
class Refusal:
    """What the issuer said when it refused a refresh: a short reason for people (never a secret) and how
    long it asked us to wait (seconds), when it said so."""

    reason: str | None = None
    retry_after: float | None = None


def refused(exc: E, *, reason: str | None = None, retry_after: float | None = None) -> E:
    """Attach to a refresh's :class:`~ml_connector.errors.RetryableError` what the breaker should record, and
    return it: ``raise refused(error, reason="quota", retry_after=http.retry_after_seconds(response))``.

    Without it the breaker records a reason from the error's type (``"rate limited"``, ``"HTTP 503"``,
    ``"connection refused"``...) and backs off exponentially.

    :param reason: a short reason for people; built from status codes and vendor codes, never from a
        vendor's message text (which may echo a request) and never a secret.
    :param retry_after: seconds the issuer asked for (``Retry-After`` or a reset header), if it sent one.
    """
    exc.token_refusal = Refusal(reason, retry_after)  # type: ignore[attr-defined]
    return exc


def refusal_of(exc: BaseException) -> Refusal | None:
    """The refusal a refresh error stands for, or ``None`` when it is not a breaker matter (credentials refused,
    configuration missing, a bug: anything but a :class:`~ml_connector.errors.RetryableError`)."""
    if not isinstance(exc, RetryableError):
        return None
    marked = getattr(exc, "token_refusal", None)
    marked = marked if isinstance(marked, Refusal) else Refusal()
    return Refusal(_short(marked.reason or _generic_reason(exc)), marked.retry_after)


def _generic_reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status == 429:
        return "rate limited"
    if isinstance(status, int):
        return f"HTTP {status}"
    if isinstance(exc, AmbiguousRequestError):
        return "no answer"
    reason = getattr(exc, "reason", None)  # http.TransportError: "connection refused", "read timeout"...
    if isinstance(reason, str) and reason:
        return reason
    return "unavailable"


def _short(reason: str) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= _REASON_MAX else reason[:_REASON_MAX - 3] + "..."


@dataclass(frozen=True)
class Breaker:
    """The breaker of one secret as recorded on its row.

    :param until: epoch seconds before which nobody asks the issuer again.
    :param reason: the short reason of the last refusal.
    :param refusals: consecutive refusals so far (the backoff doubles with each).
    """

    until: float
    reason: str
    refusals: int

    def open(self, now: float | None = None) -> bool:
        """Whether the window has not passed yet."""
        return self.until > (time.time() if now is None else now)

    @classmethod
    def from_row(cls, row: SecretRow | None) -> Breaker | None:
        if row is None or row.refused_until is None:
            return None
        match = _STREAK.match(row.refused_reason or "")
        if match is None:
            return cls(row.refused_until, row.refused_reason or "refused", 1)
        return cls(row.refused_until, match["reason"], int(match["count"]))

    def stored_reason(self) -> str:
        """``refused_reason`` as stored: the reason, and how many times in a row when more than once."""
        return self.reason if self.refusals == 1 else f"{self.reason}; refused {self.refusals} times in a row"


class TokenRequestsRefused(RetryableError):
    """The issuer refused token requests and the breaker is open: waiting, not asking again.

    Raised at once (no HTTP call) to every caller that needs a new value while the window lasts. A
    :class:`~ml_connector.errors.RetryableError`, so Airflow's retry backoff applies.

    :param label: the issuer's name for people (``"UPS"``).
    :param breaker: the open breaker.
    :param name: the secret's name.
    :param now: the clock's time, to show a date only when the window ends on another day.
    """

    def __init__(self, label: str, breaker: Breaker, *, name: str, now: float) -> None:
        until = datetime.fromtimestamp(breaker.until, UTC)
        shown = until.strftime("%H:%M:%S")
        if until.date() != datetime.fromtimestamp(now, UTC).date():
            shown = until.strftime("%Y-%m-%d %H:%M:%S")
        reason = breaker.stored_reason()
        super().__init__(f"{label} token requests are refused until {shown} UTC ({reason}): "
                         "waiting, not asking again")
        self.label = label
        self.secret_name = name
        self.until = breaker.until
        self.reason = reason


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
    :param refusal_backoff: breaker window (seconds) after a first refusal without ``Retry-After``; it doubles
        with each consecutive refusal.
    :param refusal_backoff_max: the longest such window.
    :param clock: epoch seconds now (``time.time``); every expiry, lease and breaker time is read from it, so
        tests can move time forward without sleeping.
    """

    #: first and longest pause while another process holds the lease (the pause grows by half each time)
    poll_initial_seconds = 0.05
    poll_max_seconds = 1.0

    def __init__(self, ledger: Ledger, fernet: MultiFernet | None = None, *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS, refusal_backoff: float = DEFAULT_REFUSAL_BACKOFF,
                 refusal_backoff_max: float = DEFAULT_REFUSAL_BACKOFF_MAX,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.fernet = fernet or load_fernet()
        self.lease_seconds = lease_seconds
        self.refusal_backoff = refusal_backoff
        self.refusal_backoff_max = refusal_backoff_max
        self.clock = clock

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
        self._forget(name)
        self.ledger.put_secret(name, self._encrypt(value), expires_at)

    def delete(self, name: str) -> None:
        self._forget(name)
        self.ledger.delete_secret(name)

    def breaker(self, name: str) -> Breaker | None:
        """The breaker recorded on ``name``'s row (open or already passed), or ``None`` when the last refresh
        was not refused."""
        return Breaker.from_row(self.ledger.secret(name))

    def get_or_refresh(self, name: str, refresh: Callable[[CachedSecret | None], tuple[str, float | None]], *,
                       margin: float = DEFAULT_REFRESH_MARGIN, force: bool = False,
                       stale_value: str | None = None, label: str | None = None) -> str:
        """Return a fresh value for ``name``; of all processes that need one at once, one calls ``refresh``.

        Another process calls it again only if this refresh fails or outlives the lease (``lease_seconds``),
        and never while the breaker is open.

        :param refresh: called with the current (stale or missing) entry while this process holds the lease,
            with no database transaction open; returns ``(value, expires_at)``. It may use the old value
            (e.g. a rotating refresh token) and may store other secrets with :meth:`put`. If it raises, the
            lease is given back and the exception propagates; a :class:`~ml_connector.errors.RetryableError`
            also opens the breaker (mark it with :func:`refused` to give the reason and ``Retry-After``),
            unless the current value is still valid (then that value is returned).
        :param margin: seconds before expiry at which a value counts as stale.
        :param force: refresh even if the cached value looks fresh (after a 401) — unless another process
            already replaced ``stale_value`` in the meantime, in which case its new value is returned.
        :param stale_value: with ``force``, the value that was rejected.
        :param label: the issuer's name in messages (``"UPS"``); default the first part of ``name``.
        :raises TokenRequestsRefused: the breaker is open and there is no valid value to hand out: nothing
            was requested.
        """
        label = label or name.split(":", 1)[0]
        if not force:
            remembered = self._remembered(name)
            if remembered is not None and remembered.fresh(margin, self.clock()):
                return remembered.value  # no ledger read, no decryption
            row = self.ledger.secret(name)
            cached = self._cached(row)
            if cached is not None and cached.fresh(margin, self.clock()):
                self._remember(name, cached)
                return cached.value
            if row is not None and row.refused(self.clock()):
                return self._while_refused(name, row, label, usable=True)
        else:
            self._forget(name)

        def needed(row: SecretRow) -> bool:
            current = self._cached(row)
            if current is None or not current.fresh(margin, self.clock()):
                return True
            # fresh: a forced refresh still goes ahead unless the rejected value was replaced meanwhile
            return force and (stale_value is None or current.value == stale_value)

        owner = _lease_owner()
        while True:
            row, lease = self.ledger.take_secret_lease(name, owner, ttl=self.lease_seconds, needed=needed,
                                                       now=self.clock())
            if lease is Lease.NOT_NEEDED:
                cached = self._cached(row)  # another process stored a fresh value
                self._remember(name, cached)
                return cached.value
            if lease is Lease.TAKEN:
                break
            if lease is Lease.REFUSED:
                return self._while_refused(name, row, label, usable=not force)
            self._wait_for_lease(name, needed)

        try:
            value, expires_at = refresh(self._cached(row))
        except BaseException as exc:
            refusal = refusal_of(exc)
            if refusal is None or not self._open_breaker(name, owner, row, refusal, label):
                self._release(name, owner)
            if refusal is not None and not force:
                current = self._cached(row)
                if current is not None and current.fresh(0.0, self.clock()):
                    log.warning("%s: the stale value of '%s' is used until it expires", label, name)
                    return current.value
            raise
        self.ledger.put_secret(name, self._encrypt(value), expires_at, lease_owner=owner)
        self._remember(name, CachedSecret(value, expires_at))
        return value

    # -- the process's memory of fresh values ------------------------------------------------------------------
    # A fresh value read from (or stored in) the ledger is kept in process memory for its life, so that the
    # many calls of a task do not each read and decrypt the row. The ledger stays the shared source and the
    # lock: a missing or stale value, a forced refresh (after a 401) and every refresh go through it.

    def _memory_key(self, name: str) -> tuple[int, str, str]:
        return os.getpid(), self.ledger.url.render_as_string(hide_password=False), name

    def _remembered(self, name: str) -> CachedSecret | None:
        return _MEMORY.get(self._memory_key(name))

    def _remember(self, name: str, cached: CachedSecret | None) -> None:
        if cached is not None:
            _MEMORY[self._memory_key(name)] = cached

    def _forget(self, name: str) -> None:
        _MEMORY.pop(self._memory_key(name), None)

    def _release(self, name: str, owner: str) -> None:
        try:
            self.ledger.release_secret_lease(name, owner)
        except Exception:  # keep the refresh's own error; the lease expires by itself
            log.warning("could not release the refresh lease of secret '%s'", name, exc_info=True)

    def refusal_window(self, refusal: Refusal, refusals: int) -> float:
        """Seconds nobody may ask again after the ``refusals``-th refusal in a row: the issuer's
        ``Retry-After`` (1 s to a day), else ``refusal_backoff`` doubling per refusal up to
        ``refusal_backoff_max``."""
        if refusal.retry_after is not None:
            return min(max(refusal.retry_after, 1.0), MAX_REFUSAL_WINDOW)
        return min(self.refusal_backoff * 2.0 ** min(refusals - 1, 30), self.refusal_backoff_max)

    def _open_breaker(self, name: str, owner: str, row: SecretRow, refusal: Refusal, label: str) -> bool:
        """Record the refusal and give the lease back (one transaction); False when that failed."""
        previous = Breaker.from_row(row)  # the row as read when the lease was taken: the streak so far
        refusals = previous.refusals + 1 if previous is not None else 1
        now = self.clock()
        breaker = Breaker(now + self.refusal_window(refusal, refusals), refusal.reason or "refused", refusals)
        try:
            recorded = self.ledger.refuse_secret(name, owner, until=breaker.until, reason=breaker.stored_reason())
        except Exception:
            log.warning("could not record the refused refresh of secret '%s'", name, exc_info=True)
            return False
        if recorded:
            log.warning("%s token request refused (%s): no new request before %s UTC",
                        label, breaker.stored_reason(),
                        datetime.fromtimestamp(breaker.until, UTC).strftime("%Y-%m-%d %H:%M:%S"))
        return recorded

    def _while_refused(self, name: str, row: SecretRow, label: str, *, usable: bool) -> str:
        """The breaker is open: hand out the current value while it is still valid, else raise."""
        now = self.clock()
        current = self._cached(row)
        if usable and current is not None and current.fresh(0.0, now):
            return current.value
        breaker = Breaker.from_row(row)
        if breaker is None:  # pragma: no cover - only called for a refused row
            raise RuntimeError(f"secret '{name}' is not refused")
        raise TokenRequestsRefused(label, breaker, name=name, now=now)

    def _wait_for_lease(self, name: str, needed: Callable[[SecretRow], bool]) -> None:
        """Poll (without locks) until the lease holder stored a good value, released, recorded a refusal, or
        let its lease expire.

        Bounded by the holder's lease: once it expires, the row no longer counts as leased.
        """
        delay = self.poll_initial_seconds
        while True:
            time.sleep(delay)
            delay = min(delay * 1.5, self.poll_max_seconds)
            row = self.ledger.secret(name)
            if row is None or not row.leased(self.clock()) or not needed(row):
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
