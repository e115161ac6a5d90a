"""What every ml-connector hook shares: the connection, the ledger-backed secret store and the HTTP session."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook

from ml_connector import http
from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger
from ml_connector.secrets import SecretStore


class ConnectorHook(BaseHook):
    """Base for the API hooks: lazy connection, session and secret store.

    Subclasses set the Airflow hook contract (``conn_name_attr``, ``default_conn_name``, ``conn_type``,
    ``hook_name``) and build their requests with :meth:`send`.

    :param conn_id: the Airflow connection id.
    :param ledger: the ledger whose ``ml_secrets`` table caches tokens (default: ``ml_connector_ledger``).
    :param retry: HTTP retry policy.
    """

    vendor = "api"

    def __init__(self, conn_id: str, *, ledger: Ledger | None = None, secret_store: SecretStore | None = None,
                 retry: http.RetryPolicy = http.DEFAULT_RETRY, timeout: tuple[float, float] = (10.0, 60.0)) -> None:
        super().__init__()
        self.conn_id = conn_id
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
