"""What every ml-connector hook shares: the connection, the ledger-backed secret store and the HTTP session."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook

from ml_connector import http
from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger
from ml_connector.secrets import CachedSecret, SecretStore


class ConnectorHook(BaseHook):
    """Base for the API hooks: lazy connection, session and secret store.

    Subclasses set the Airflow hook contract (``conn_name_attr``, ``default_conn_name``, ``conn_type``,
    ``hook_name``) and build their requests with :meth:`send`.

    :param conn_id: the Airflow connection id.
    :param ledger: the ledger whose ``ml_secrets`` table caches tokens (default: ``ml_connector_ledger``).
    :param retry: HTTP retry policy.
    :param refresh_margin: seconds before a token's expiry at which it is renewed.
    """

    vendor = "api"

    def __init__(self, conn_id: str, *, ledger: Ledger | None = None, secret_store: SecretStore | None = None,
                 retry: http.RetryPolicy = http.DEFAULT_RETRY, timeout: tuple[float, float] = (10.0, 60.0),
                 refresh_margin: float = 300.0) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.refresh_margin = refresh_margin
        self._ledger = ledger
        self._secret_store = secret_store
        self.retry = retry
        self.timeout = timeout

    @cached_property
    def connection(self):
        return self.get_connection(self.conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    def extra(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        """A connection extra (also accepted with the UI's ``extra__<type>__`` prefix)."""
        value = self.extras.get(name)
        if value in (None, ""):
            value = self.extras.get(f"extra__{self.conn_type}__{name}")
        if value in (None, ""):
            if required:
                raise ConfigurationError(
                    f"connection '{self.conn_id}' has no '{name}' extra: add it in Admin > Connections")
            return default
        return value

    def base_url(self, default: str) -> str:
        """The connection's host with scheme, without a trailing slash (changing only the host points the hook
        at another server, e.g. the sandbox)."""
        host = (self.connection.host or default).strip().rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        if self.connection.port and host.count(":") < 2:
            host = f"{host}:{self.connection.port}"
        return host

    def credentials(self) -> tuple[str, str]:
        login, password = self.connection.login, self.connection.password
        if not login or not password:
            raise ConfigurationError(
                f"connection '{self.conn_id}' needs a login (client id) and a password (client secret)")
        http.mask(password)
        return login, password

    @cached_property
    def session(self) -> requests.Session:
        return http.new_session()

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger.from_airflow()
        return self._ledger

    @property
    def secret_store(self) -> SecretStore:
        if self._secret_store is None:
            self._secret_store = SecretStore(self.ledger)
        return self._secret_store

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("retry", self.retry)
        kwargs.setdefault("timeout", self.timeout)
        return http.send(self.session, method, url, vendor=self.vendor, **kwargs)

    # -- bearer tokens shared by every task and worker ------------------------------------------------------

    @property
    def token_cache_key(self) -> str:
        """Name of the cached token in the ledger's secret store (not a secret itself)."""
        raise NotImplementedError

    def fetch_token(self) -> tuple[str, float]:
        """Request a new token from the vendor; returns ``(token, expires_at_epoch)``."""
        raise NotImplementedError

    def get_token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """A valid bearer token from the shared encrypted cache, fetching one only when it is missing or stale.

        :param force: the cached token was refused (401): fetch a new one unless another worker already did.
        :param rejected: the token that was refused.
        """

        def refresh(_current: CachedSecret | None) -> tuple[str, float]:
            return self.fetch_token()

        token = self.secret_store.get_or_refresh(self.token_cache_key, refresh, margin=self.refresh_margin,
                                                 force=force, stale_value=rejected)
        http.mask(token)
        return token

    def send_authorized(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                        **kwargs: Any) -> requests.Response:
        """Send with ``Authorization: Bearer``; a 401 forces one token refresh and one retry."""
        token = self.get_token()
        response = self.send(method, url, headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                             **kwargs)
        if response.status_code == 401:
            self.log.info("%s answered 401: refreshing the token once", self.vendor)
            token = self.get_token(force=True, rejected=token)
            response = self.send(method, url, headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                                 **kwargs)
        return response
