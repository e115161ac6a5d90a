"""Auth styles: small pieces that authenticate the requests a hook sends, one per way vendors log us in.

Every piece wraps the hook's retrying ``send`` (:meth:`ConnectorHook.send`, i.e. :func:`ml_connector.http.send`)
and exposes the same ``send(method, url, **kwargs)``; a hook builds one in ``build_auth()`` and sends through
it. Every secret a piece sees (keys, passwords, tokens, session ids, the encoded Basic header) is registered
with Airflow's log masker.

* :class:`ApiKeyAuth`: a static key in a header (ShipStation v2 ``API-Key``).
* :class:`BasicAuth`: HTTP Basic with a key and a secret (ShipStation v1).
* :class:`ClientCredentialsAuth`: an OAuth client-credentials bearer token (UPS, Business Central through
  Entra). The token is cached encrypted in the ledger's secret store, shared by every task and worker, and
  renewed ``margin`` seconds before it expires under the store's lease, so N workers make one token request. A
  401 answer forces one renewal (unless another worker already renewed the refused token) and one retry.
* :class:`RotatingRefreshTokenAuth`: the OAuth refresh-token grant of APIs whose refresh tokens are single-use
  (Exact Online): every refresh answers a new refresh token and invalidates the old one. The refresh token and
  the access token live together in one encrypted secret-store entry, written under the store's lease before the
  new access token is handed out, so the new refresh token is stored before it can be needed and an old one is
  never sent twice. An answer that carries a new refresh token is stored even when the rest of it is unusable.
* :class:`SessionLogon`: APIs that log a user on and hand back a session (SYSPRO e.net's session GUID,
  Acumatica's cookie). A context manager: it logs on at the first request, reuses the session, logs on again
  once when an answer says the session expired, and always logs off when the block ends.

Both token styles (client credentials, rotating refresh) share the secret store's breaker: a token request refused
with a 429 (or a 5xx or no answer after its retries) is recorded in the ledger, and no task or worker asks that
issuer again before the window has passed (:class:`~ml_connector.secrets.TokenRequestsRefused`, a retryable
error, is raised instead).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, Protocol

import requests

from ml_connector import http
from ml_connector.errors import AmbiguousRequestError, AuthenticationError, ConfigurationError, api_error
from ml_connector.secrets import CachedSecret, SecretStore, refused

log = logging.getLogger(__name__)


class Send(Protocol):
    """The hook's retrying sender: ``send(method, url, **kwargs) -> Response`` (:meth:`ConnectorHook.send`)."""

    def __call__(self, method: str, url: str, **kwargs: Any) -> requests.Response: ...


def _merge(headers: dict[str, str] | None, extra: dict[str, str]) -> dict[str, str]:
    return {**(headers or {}), **extra}


class AuthStyle:
    """No authentication: the base of every auth style, sending requests as they are.

    :param send: the hook's retrying sender.
    """

    def __init__(self, send: Send) -> None:
        self._send = send

    def headers(self) -> dict[str, str]:
        """The headers this style adds to every request."""
        return {}

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             **kwargs: Any) -> requests.Response:
        """Send one authenticated request through the hook's retrying sender.

        :param method: HTTP method.
        :param url: absolute URL.
        :param headers: request headers; the style's own headers win over them.
        :param kwargs: anything :func:`ml_connector.http.send` accepts (``json``, ``params``, ``idempotent``...).
        """
        return self._send(method, url, headers=_merge(headers, self.headers()), **kwargs)


class ApiKeyAuth(AuthStyle):
    """A static API key in a header (ShipStation v2: ``API-Key: <key>``).

    :param send: the hook's retrying sender.
    :param key: the API key.
    :param header: the header that carries it.
    """

    def __init__(self, send: Send, key: str, *, header: str = "API-Key") -> None:
        super().__init__(send)
        if not key:
            raise ConfigurationError("an API key is required")
        http.mask(key)
        self._key = key
        self.header = header

    def headers(self) -> dict[str, str]:
        """``{header: key}``."""
        return {self.header: self._key}


class BasicAuth(AuthStyle):
    """HTTP Basic (ShipStation v1: API key and API secret).

    :param send: the hook's retrying sender.
    :param username: user name or API key.
    :param password: password or API secret.
    """

    def __init__(self, send: Send, username: str, password: str) -> None:
        super().__init__(send)
        if not username or not password:
            raise ConfigurationError("HTTP Basic needs a user name and a password")
        encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
        http.mask(password)
        http.mask(encoded)  # the log masker does not know the encoded form of the password
        self._value = f"Basic {encoded}"

    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Basic ..."}``."""
        return {"Authorization": self._value}


class TokenAuth(AuthStyle):
    """A bearer token that the server may refuse with 401: then renew it once and retry once.

    A 401 means the request was not processed, so even a non-idempotent request is sent again.

    :param send: the hook's retrying sender.
    :param vendor: name used in logs.
    """

    def __init__(self, send: Send, *, vendor: str = "api") -> None:
        super().__init__(send)
        self.vendor = vendor

    def token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """A valid access token.

        :param force: the server refused ``rejected``: renew unless another worker already did.
        :param rejected: the token the server refused.
        """
        raise NotImplementedError

    def send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
             **kwargs: Any) -> requests.Response:
        """Send with ``Authorization: Bearer``; a 401 renews the token once and sends once more.

        :param method: HTTP method.
        :param url: absolute URL.
        :param headers: request headers.
        :param kwargs: anything :func:`ml_connector.http.send` accepts.
        """
        token = self.token()
        response = self._send(method, url, headers=_merge(headers, {"Authorization": f"Bearer {token}"}),
                              **kwargs)
        if response.status_code == 401:
            log.info("%s answered 401: renewing the token once", self.vendor)
            token = self.token(force=True, rejected=token)
            response = self._send(method, url, headers=_merge(headers, {"Authorization": f"Bearer {token}"}),
                                  **kwargs)
        return response


class ClientCredentialsAuth(TokenAuth):
    """OAuth client-credentials bearer token, cached encrypted in the ledger and shared by every worker.

    The token request itself is the vendor's (UPS sends the client id/secret as Basic auth and the account
    number, Entra wants them in the form): the hook passes it as ``fetch``.

    :param send: the hook's retrying sender.
    :param store: the ledger's secret store.
    :param cache_key: name of the cached token in the store (not a secret itself); one per client id and host.
    :param fetch: requests a new token; returns ``(access_token, expires_at_epoch)``.
    :param margin: seconds before expiry at which the token is renewed.
    :param vendor: name used in logs.
    :param label: the token issuer's name in messages (``"UPS"``); default ``vendor``.
    """

    def __init__(self, send: Send, *, store: SecretStore, cache_key: str,
                 fetch: Callable[[], tuple[str, float]], margin: float = 300.0, vendor: str = "api",
                 label: str | None = None) -> None:
        super().__init__(send, vendor=vendor)
        self.store = store
        self.cache_key = cache_key
        self.fetch = fetch
        self.margin = margin
        self.label = label or vendor

    def token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """The cached token, or a new one when it is missing, about to expire or was refused.

        :param force: the server refused ``rejected``: fetch a new one unless another worker already did.
        :param rejected: the token the server refused.
        :raises TokenRequestsRefused: the issuer refused token requests a moment ago (the breaker is open):
            nothing was requested.
        """

        def refresh(_current: CachedSecret | None) -> tuple[str, float]:
            return self.fetch()

        token = self.store.get_or_refresh(self.cache_key, refresh, margin=self.margin, force=force,
                                          stale_value=rejected, label=self.label)
        http.mask(token)
        return token


def _fingerprint(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _oauth_error(body: Any) -> tuple[str | None, str | None]:
    """``(error, error_description)`` of an OAuth error answer (``{"error": "invalid_grant", ...}``)."""
    if isinstance(body, dict):
        error = body.get("error")
        description = body.get("error_description") or body.get("message")
        if isinstance(error, dict):  # some APIs nest it: {"error": {"code", "message"}}
            return error.get("code"), error.get("message")
        return (str(error) if error else None), (str(description) if description else None)
    return None, (body[:300] if isinstance(body, str) and body.strip() else None)


class RotatingRefreshTokenAuth(TokenAuth):
    """OAuth refresh-token grant with single-use refresh tokens (Exact Online).

    The first refresh token comes from the connection (a person authorized the app once and pasted it there).
    From then on the store holds the current one, encrypted, next to the access token: one entry, written under
    the store's lock before the access token is used, so concurrent workers never send the same refresh token
    twice. When the person pastes a new refresh token into the connection (after re-authorizing), it is noticed
    by its fingerprint and used instead of the stored one.

    :param send: the hook's retrying sender.
    :param store: the ledger's secret store.
    :param cache_key: name of the store entry (one per client id and token URL).
    :param token_url: the OAuth token endpoint.
    :param client_id: OAuth client id.
    :param client_secret: OAuth client secret (sent in the form, ``client_secret_post``).
    :param initial_refresh_token: the refresh token of the connection, used when the store has none or when
        it changed since the store's was derived from it.
    :param conn_id: the Airflow connection, named in error messages.
    :param refresh_field: where the connection keeps the refresh token, named in error messages.
    :param margin: seconds before expiry at which the access token is renewed.
    :param vendor: name used in logs and errors.
    :param label: the vendor's name for people (``"Exact Online"``).
    :param retry: retry policy of the refresh request (a hook passes its ``token_retry``: no in-process retry
        of a 429, the store's breaker takes over); default the sender's own.
    """

    def __init__(self, send: Send, *, store: SecretStore, cache_key: str, token_url: str, client_id: str,
                 client_secret: str, initial_refresh_token: str | None, conn_id: str,
                 refresh_field: str = "the 'refresh_token' extra", margin: float = 60.0, vendor: str = "api",
                 label: str | None = None, retry: http.RetryPolicy | None = None) -> None:
        super().__init__(send, vendor=vendor)
        self.store = store
        self.cache_key = cache_key
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._initial = initial_refresh_token or None
        self.conn_id = conn_id
        self.refresh_field = refresh_field
        self.margin = margin
        self.label = label or vendor
        self.retry = retry
        http.mask(client_secret)
        http.mask(self._initial)
        self._value: str | None = None  # the store entry our last access token came from
        self._problem: Exception | None = None  # why the last refresh answer had no usable access token
        self._spent_from: str | None = None  # the entry whose refresh token the last refresh spent

    # -- the store entry: {"access_token", "refresh_token", "seed"} ---------------------------------------

    @staticmethod
    def _load(value: str | None) -> dict[str, Any] | None:
        if not value:
            return None
        try:
            state = json.loads(value)
        except ValueError:
            return None
        return state if isinstance(state, dict) else None

    def _seed_changed(self, state: dict[str, Any] | None) -> bool:
        """The connection holds a refresh token the stored one was not derived from (a new authorization)."""
        return self._initial is not None and (state is None or state.get("seed") != _fingerprint(self._initial))

    def _refresh(self, current: CachedSecret | None) -> tuple[str, float]:
        """Called by the store (one worker at a time) when the entry is stale: spend the current refresh
        token, return the new entry."""
        self._spent_from = current.value if current else None
        state = self._load(self._spent_from)
        if self._seed_changed(state):
            refresh_token = self._initial
        else:
            refresh_token = (state or {}).get("refresh_token")
        if not refresh_token:
            raise ConfigurationError(
                f"connection '{self.conn_id}' has no refresh token for {self.label}: authorize the app once and "
                f"put the refresh token into {self.refresh_field}; ml-connector stores and rotates it from there")
        seed = _fingerprint(self._initial) if self._initial else (state or {}).get("seed")
        self._problem = None
        options: dict[str, Any] = {"retry": self.retry} if self.retry is not None else {}
        try:
            response = self._send("POST", self.token_url, idempotent=False, data={
                "grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": self.client_id,
                "client_secret": self._client_secret}, **options)
        except AmbiguousRequestError as exc:
            raise AmbiguousRequestError(
                f"{exc.message}. If the next attempt is refused with invalid_grant, {self.label} rotated the "
                f"refresh token without our seeing the answer: authorize the app again and put the new refresh "
                f"token into {self.refresh_field} of connection '{self.conn_id}'") from None
        body = http.json_or_text(response)
        new_refresh = body.get("refresh_token") if isinstance(body, dict) else None
        access = body.get("access_token") if isinstance(body, dict) else None
        expires_at = None
        if isinstance(body, dict) and access:
            try:
                expires_at = self.store.clock() + float(body.get("expires_in"))
            except (TypeError, ValueError):
                expires_at = None
        if new_refresh:
            # the old refresh token is dead now: the new one must be stored whatever else the answer says
            http.mask(new_refresh)
            usable = response.status_code == 200 and expires_at is not None
            if usable:
                http.mask(access)
            else:
                self._problem = api_error(
                    f"{self.label} answered the token refresh of connection '{self.conn_id}' with a new refresh "
                    f"token (stored) but no usable access token", vendor=self.vendor,
                    status=response.status_code, retryable=True)
            entry = {"refresh_token": new_refresh, "seed": seed, "access_token": access if usable else None}
            # an entry without an access token is stale at once: the next call refreshes with the new token
            return json.dumps(entry), (expires_at if usable else 0.0)
        if response.status_code == 200 and expires_at is not None:
            # no new refresh token: OAuth lets a server keep the old one valid, so keep using it
            http.mask(access)
            entry = {"refresh_token": refresh_token, "seed": seed, "access_token": access}
            return json.dumps(entry), expires_at
        error, description = _oauth_error(body)
        if response.status_code in (400, 401) and error in ("invalid_grant", "invalid_request", None):
            raise AuthenticationError(
                f"{self.label} refused the refresh token of connection '{self.conn_id}' "
                f"({error or 'HTTP ' + str(response.status_code)}{': ' + description if description else ''}). "
                f"Refresh tokens are single-use and expire when unused: authorize the app again and put the new "
                f"refresh token into {self.refresh_field}; ml-connector stores and rotates it from there",
                vendor=self.vendor, status=response.status_code, code=error)
        if response.status_code in (400, 401, 403):
            raise AuthenticationError(
                f"{self.label} refused the client id/secret of connection '{self.conn_id}' "
                f"({error}{': ' + description if description else ''})",
                vendor=self.vendor, status=response.status_code, code=error)
        raise refused(api_error(f"{self.label} token refresh failed: {description or error or 'no refresh token'}",
                                vendor=self.vendor, status=response.status_code, code=error),
                      retry_after=http.retry_after_seconds(response))

    def _get_or_refresh(self, *, force: bool, stale: str | None) -> str:
        self._spent_from = None
        try:
            return self.store.get_or_refresh(self.cache_key, self._refresh, margin=self.margin, force=force,
                                             stale_value=stale, label=self.label)
        except AuthenticationError as exc:
            if exc.code != "invalid_grant":
                raise
            # Refused: unless another worker spent that same refresh token a moment earlier and stored its
            # successor (only possible if the store ran two refreshes at once); then its entry is the answer.
            latest = self.store.get(self.cache_key)
            if (latest is None or latest.value == self._spent_from or not latest.fresh(self.margin)
                    or not (self._load(latest.value) or {}).get("access_token")):
                raise
            log.warning("%s: the refresh token was spent by another worker; using the entry it stored", self.vendor)
            return latest.value

    def token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """The cached access token, refreshed (spending the refresh token) when it is missing, about to
        expire or was refused.

        :param force: the server refused ``rejected``: refresh unless another worker already did.
        :param rejected: the access token the server refused.
        :raises AuthenticationError: the refresh token was refused: the message says how to get a new one.
        :raises ConfigurationError: there is no refresh token at all.
        :raises TokenRequestsRefused: the issuer refused refreshes a moment ago (the breaker is open): nothing
            was sent, the refresh token is unspent.
        """
        stale = None
        if force:
            stale = self._value if (self._load(self._value) or {}).get("access_token") == rejected else None
        value = self._get_or_refresh(force=force, stale=stale)
        state = self._load(value)
        if self._seed_changed(state):  # a fresh entry, but a person pasted a new refresh token since
            value = self._get_or_refresh(force=True, stale=value)
            state = self._load(value)
        access = (state or {}).get("access_token")
        if not access:
            raise self._problem or api_error(
                f"{self.label} gave no usable access token for connection '{self.conn_id}'", vendor=self.vendor,
                status=None, retryable=True)
        http.mask(access)
        self._value = value
        return access


class SessionLogon(AuthStyle):
    """Log on once, reuse the session, renew it once when it expired, always log off (SYSPRO e.net, Acumatica).

    Use it as a context manager around the requests of one task::

        with hook.auth as session:
            session.send("GET", url, params=...)

    :param send: the hook's retrying sender.
    :param logon: logs on and returns the session handle (SYSPRO: the session GUID; Acumatica: anything, the
        cookie stays in the hook's ``requests`` session).
    :param logoff: logs the handle off.
    :param apply: puts the handle into a request's keyword arguments (SYSPRO: ``params["UserId"]``); the
        default adds nothing (cookie sessions).
    :param expired: whether an answer says the session expired (default: HTTP 401).
    :param vendor: name used in logs and errors.
    """

    def __init__(self, send: Send, *, logon: Callable[[], Any], logoff: Callable[[Any], None],
                 apply: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None,
                 expired: Callable[[requests.Response], bool] | None = None, vendor: str = "api") -> None:
        super().__init__(send)
        self._logon = logon
        self._logoff = logoff
        self._apply = apply or (lambda _handle, kwargs: kwargs)
        self._expired = expired or (lambda response: response.status_code == 401)
        self.vendor = vendor
        self.handle: Any = None
        self.logons = 0
        self._depth = 0

    def __enter__(self) -> SessionLogon:
        self._depth += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.close()

    def _log_on(self) -> None:
        handle = self._logon()
        if isinstance(handle, str):
            http.mask(handle)
        self.handle = handle
        self.logons += 1

    def close(self) -> None:
        """Log off now (the context manager does it when the block ends, error or not)."""
        handle, self.handle = self.handle, None
        if handle is None:
            return
        try:
            self._logoff(handle)
        except Exception as exc:  # never hide the block's own error; the server expires the session anyway
            log.warning("%s: logoff failed (%s); the session expires on its own", self.vendor, exc)

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with the session, logging on first if needed and once more if the answer says it expired.

        :param method: HTTP method.
        :param url: absolute URL.
        :param kwargs: anything :func:`ml_connector.http.send` accepts.
        :raises AuthenticationError: the session expired again right after a new logon.
        """
        if self._depth == 0:
            raise RuntimeError("SessionLogon.send outside its `with` block: the session would never be logged off")
        if self.handle is None:
            self._log_on()
        response = self._send(method, url, **self._apply(self.handle, dict(kwargs)))
        if not self._expired(response):
            return response
        log.info("%s: the session expired; logging on again once", self.vendor)
        self.handle = None  # an expired session needs no logoff
        self._log_on()
        response = self._send(method, url, **self._apply(self.handle, dict(kwargs)))
        if self._expired(response):
            raise AuthenticationError("the session expired again right after a new logon",
                                      vendor=self.vendor, status=response.status_code)
        return response
