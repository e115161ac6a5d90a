"""What every ml-connector hook shares: the connection, the HTTP session, the auth style and the token store.

:class:`ConnectorHook` is an ``HttpHook`` (``apache-airflow-providers-http``): the base URL comes from the
connection the way ``HttpHook`` builds it (host with scheme, or ``schema`` + host, plus ``port``), so changing only
the host points a hook at another server (a sandbox, a test tenant). The session applies the transport extras
of ``HttpHook`` that corporate networks and on-premise ERPs need: ``verify`` (``false`` or a CA bundle path),
``proxies`` (or ``proxy``), ``cert`` (client certificate path, or ``[cert, key]``), ``timeout`` (seconds, or
``[connect, read]``) and ``trust_env``.

Unlike ``HttpHook``, no other connection extra is ever sent as an HTTP header: ours hold account numbers,
tenant ids and credentials. Connection login/password are not sent as Basic auth on every request either: the
hook's auth style (:mod:`ml_connector.hooks.auth`) decides what authenticates a request.

Every request goes out through :func:`ml_connector.http.send` (retries with full jitter, no blind retry of a
non-idempotent request, typed errors, logs without headers or query strings).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import cached_property
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.providers.http.hooks.http import HttpHook
from requests_toolbelt.adapters.socket_options import TCPKeepAliveAdapter

from ml_connector import http
from ml_connector.errors import ApiError, AuthenticationError, ConfigurationError, api_error
from ml_connector.hooks.auth import AuthStyle, ClientCredentialsAuth, TokenAuth
from ml_connector.ledger import Ledger
from ml_connector.secrets import SecretStore

DEFAULT_TIMEOUT = (10.0, 60.0)
#: the UI "Test" button should answer in seconds: two tries, short waits, no long Retry-After
CHECK_RETRY = http.RetryPolicy(attempts=2, backoff=0.2, max_backoff=1.0, max_retry_after=5.0)
#: A token request, retries included, must end well inside the secret store's refresh lease (180 s), or a
#: waiting process would take the lease over and ask for a second token: at most 3 x (10 + 30) s + backoff.
#: A 429 is not retried in-process: a refused token request opens the secret store's breaker instead, which
#: every lane and worker honours (see :mod:`ml_connector.secrets`); 5xx and connection errors are retried.
TOKEN_RETRY = http.RetryPolicy(attempts=3, backoff=0.5, max_backoff=5.0, max_retry_after=30.0,
                               statuses=http.RETRY_STATUSES - {429})
TOKEN_TIMEOUT = (10.0, 30.0)
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


class ConnectorHook(HttpHook):
    """Base of the API hooks: HttpHook connection handling, a safe session, an auth style and the token store.

    Subclasses set the Airflow hook contract (``conn_name_attr``, ``default_conn_name``, ``conn_type``,
    ``hook_name``), ``vendor`` and ``default_host``, implement :meth:`build_auth` and send their requests with
    :meth:`send_authorized` (or :meth:`send` for unauthenticated ones such as the token request).

    :param conn_id: the Airflow connection id.
    :param ledger: the ledger whose ``ml_secrets`` table caches tokens (default: ``ml_connector_ledger``).
    :param secret_store: the token store (default: one over ``ledger``).
    :param retry: HTTP retry policy.
    :param timeout: ``(connect, read)`` seconds; default the connection's ``timeout`` extra, else (10, 60).
    :param refresh_margin: seconds before a token's expiry at which it is renewed.
    """

    vendor = "api"
    default_host = ""
    #: who issues the hook's tokens, for people (``"Entra"``); default :attr:`hook_name`
    token_issuer = ""
    #: scheme when neither the host nor the connection's ``schema`` names one (``HttpHook`` would use http)
    default_scheme = "https"
    pool_size = 16

    def __init__(self, conn_id: str, *, ledger: Ledger | None = None, secret_store: SecretStore | None = None,
                 retry: http.RetryPolicy = http.DEFAULT_RETRY, timeout: float | tuple[float, float] | None = None,
                 refresh_margin: float = 300.0) -> None:
        # max_retries=0: retries are http.send's, not urllib3's; keep-alive probes as HttpHook sets them
        adapter = TCPKeepAliveAdapter(idle=120, count=20, interval=30, pool_connections=self.pool_size,
                                      pool_maxsize=self.pool_size, max_retries=0)
        super().__init__(method="GET", http_conn_id=conn_id, adapter=adapter)
        self.conn_id = conn_id
        self.refresh_margin = refresh_margin
        self._ledger = ledger
        self._secret_store = secret_store
        self.retry = retry
        self._timeout = timeout
        self._request_options: dict[str, Any] = {}

    # -- connection ----------------------------------------------------------------------------------------

    @cached_property
    def connection(self):
        """The Airflow connection (looked up once per hook)."""
        return self.get_connection(self.conn_id)

    @cached_property
    def extras(self) -> dict[str, Any]:
        """The connection's extras as a dict."""
        return dict(self.connection.extra_dejson or {})

    def extra(self, name: str, default: Any = None, *, required: bool = False) -> Any:
        """A connection extra, also accepted with the UI's ``extra__<conn_type>__`` prefix.

        :param name: the extra's name.
        :param default: returned when the extra is missing or empty.
        :param required: raise instead of returning ``default``.
        :raises ConfigurationError: ``required`` and the extra is missing.
        """
        value = self.extras.get(name)
        if value in (None, ""):
            value = self.extras.get(f"extra__{self.conn_type}__{name}")
        if value in (None, ""):
            if required:
                raise ConfigurationError(
                    f"connection '{self.conn_id}' has no '{name}' extra: add it in Admin > Connections")
            return default
        return value

    def credentials(self) -> tuple[str, str]:
        """The connection's login and password (client id and secret), the password masked in logs.

        :raises ConfigurationError: one of them is missing.
        """
        login, password = self.connection.login, self.connection.password
        if not login or not password:
            raise ConfigurationError(
                f"connection '{self.conn_id}' needs a login (client id) and a password (client secret)")
        http.mask(password)
        return login, password

    # -- base URL (HttpHook's rules) -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``scheme://host[:port][/path]`` of the connection without a trailing slash, built on first use."""
        if not self._base_url:
            self._set_base_url(self.connection)
        return self._base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value

    def _set_base_url(self, connection) -> None:
        """HttpHook's rules, with ``default_scheme`` for a bare host, no doubled port, no trailing slash."""
        host = (connection.host or self.default_host or "").strip().rstrip("/")
        if not host:
            raise ConfigurationError(f"connection '{self.conn_id}' has no host: set the API base URL")
        scheme = connection.schema or self.default_scheme
        with_scheme = host if "://" in host else f"{scheme}://{host}"
        try:
            has_port = urlsplit(with_scheme).port is not None
        except ValueError:
            raise ConfigurationError(f"connection '{self.conn_id}': host '{host}' is not a valid URL") from None
        # SRV lookups are not offered: every URL is built from base_url and sent by http.send
        view = SimpleNamespace(host=host, schema=scheme, port=None if has_port else connection.port,
                               extra_dejson={})
        super()._set_base_url(view)
        self._base_url = self._base_url.rstrip("/")

    # -- session -----------------------------------------------------------------------------------------

    def transport_options(self) -> dict[str, Any]:
        """``verify``, ``cert``, ``proxies`` and ``trust_env`` from the connection extras (only those set).

        :raises ConfigurationError: an extra has a value of the wrong shape.
        """
        options: dict[str, Any] = {}
        verify = self.extra("verify", self.extra("verify_ssl"))
        if verify is not None:
            options["verify"] = self._boolean("verify", verify, path_ok=True)
        cert = self.extra("cert")
        if cert is not None:
            if isinstance(cert, list | tuple) and len(cert) == 2 and all(isinstance(c, str) for c in cert):
                options["cert"] = tuple(cert)
            elif isinstance(cert, str):
                options["cert"] = cert
            else:
                raise ConfigurationError(f"connection '{self.conn_id}': extra 'cert' must be a path or "
                                         "[certificate path, key path]")
        proxies = self.extra("proxies", self.extra("proxy"))
        if proxies is not None:
            if isinstance(proxies, str):
                proxies = {"http": proxies, "https": proxies}
            if not isinstance(proxies, dict) or not all(isinstance(v, str) for v in proxies.values()):
                raise ConfigurationError(f"connection '{self.conn_id}': extra 'proxies' must be a proxy URL or "
                                         '{"https": "http://proxy:3128", ...}')
            for url in proxies.values():
                http.mask(urlsplit(url).password)  # proxy URLs may carry credentials
            options["proxies"] = dict(proxies)
        trust_env = self.extra("trust_env")
        if trust_env is not None:
            options["trust_env"] = self._boolean("trust_env", trust_env)
        return options

    def _boolean(self, name: str, value: Any, *, path_ok: bool = False) -> bool | str:
        if isinstance(value, bool):
            return value
        text = str(value).strip()
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        if path_ok and text:
            return text  # a CA bundle path
        raise ConfigurationError(f"connection '{self.conn_id}': extra '{name}' must be true or false"
                                 + (" or a CA bundle path" if path_ok else ""))

    @property
    def timeout(self) -> float | tuple[float, float]:
        """The constructor's ``timeout``, else the connection's ``timeout`` extra, else (10, 60) seconds."""
        if self._timeout is not None:
            return self._timeout
        raw = self.extra("timeout")
        if raw is None:
            return DEFAULT_TIMEOUT
        try:
            if isinstance(raw, list | tuple) and len(raw) == 2:
                return float(raw[0]), float(raw[1])
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'timeout' must be seconds or "
                                     "[connect seconds, read seconds]") from None

    @timeout.setter
    def timeout(self, value: float | tuple[float, float] | None) -> None:
        self._timeout = value

    def _configure_session_from_auth(self, session: requests.Session, connection) -> requests.Session:
        """No session-wide auth: HttpHook would send login/password as Basic auth on every request."""
        session.auth = None
        return session

    def _configure_session_from_extra(self, session: requests.Session, connection,
                                      extra_options: dict[str, Any]) -> requests.Session:
        """Apply the transport extras only; unlike HttpHook, never turn the other extras into headers."""
        options = {**self.transport_options(),
                   **{k: v for k, v in extra_options.items() if k in ("verify", "cert", "proxies", "trust_env")}}
        for name, value in options.items():
            setattr(session, name, value)
        # also passed with each request: requests lets REQUESTS_CA_BUNDLE and the proxy variables of the
        # environment override the session's own verify/proxies
        self._request_options = {k: v for k, v in options.items() if k in ("verify", "cert", "proxies")}
        return session

    def get_conn(self, headers: dict[str, str] | None = None,
                 extra_options: dict[str, Any] | None = None) -> requests.Session:
        """Assemble the ``requests`` session: keep-alive pool, our User-Agent, the transport extras.

        :param headers: headers for every request of this session (none from the connection extras).
        :param extra_options: transport options that override the extras (``verify``, ``cert``, ``proxies``,
            ``trust_env``).
        """
        connection = self.connection
        self._set_base_url(connection)
        session = http.new_session(adapter=self.adapter)
        session = self._configure_session_from_auth(session, connection)
        session = self._configure_session_from_extra(session, connection, extra_options or {})
        if self.default_headers:
            session.headers.update(self.default_headers)
        if headers:
            session.headers.update(headers)
        return session

    @cached_property
    def session(self) -> requests.Session:
        """The hook's session (built once by :meth:`get_conn`)."""
        return self.get_conn()

    # -- ledger-backed token store -------------------------------------------------------------------------

    @property
    def ledger(self) -> Ledger:
        """The ledger (``ml_connector_ledger`` connection unless one was given)."""
        if self._ledger is None:
            self._ledger = Ledger.from_airflow()
        return self._ledger

    @property
    def secret_store(self) -> SecretStore:
        """The encrypted token store in the ledger."""
        if self._secret_store is None:
            self._secret_store = SecretStore(self.ledger)
        return self._secret_store

    @property
    def clock(self) -> Callable[[], float]:
        """Epoch seconds now, as the token store reads them (``time.time`` unless the store given to the hook
        has another clock): a token's expiry is computed on the clock it is compared with. Never opens the
        ledger."""
        return self._secret_store.clock if self._secret_store is not None else time.time

    # -- sending ---------------------------------------------------------------------------------------------

    @property
    def token_retry(self) -> http.RetryPolicy:
        """Retry policy of a token request: :data:`TOKEN_RETRY`, or the policy the hook was built with; either
        way without retrying a 429 (the secret store's breaker takes over)."""
        policy = TOKEN_RETRY if self.retry is http.DEFAULT_RETRY else self.retry
        return dataclasses.replace(policy, statuses=policy.statuses - {429})

    @property
    def token_label(self) -> str:
        """The token issuer's name in messages: :attr:`token_issuer`, else :attr:`hook_name`."""
        return self.token_issuer or self.hook_name or self.vendor

    def send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request through :func:`ml_connector.http.send` with the hook's session, retry policy,
        timeout and transport options; no authentication is added.

        :param method: HTTP method.
        :param url: absolute URL.
        :param kwargs: anything :func:`ml_connector.http.send` accepts (``headers``, ``json``, ``idempotent``...).
        """
        kwargs.setdefault("retry", self.retry)
        kwargs.setdefault("timeout", self.timeout)
        session = self.session
        for name, value in self._request_options.items():
            kwargs.setdefault(name, value)
        return http.send(session, method, url, vendor=self.vendor, **kwargs)

    def build_auth(self) -> AuthStyle:
        """The hook's auth style (built once, at the first authenticated request). Subclasses override it;
        the base sends requests unauthenticated."""
        return AuthStyle(self.send)

    @cached_property
    def auth(self) -> AuthStyle:
        """The auth style from :meth:`build_auth`."""
        return self.build_auth()

    def send_authorized(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send one request authenticated by the hook's auth style (a bearer style renews a refused token once).

        :param method: HTTP method.
        :param url: absolute URL.
        :param kwargs: anything :func:`ml_connector.http.send` accepts.
        """
        return self.auth.send(method, url, **kwargs)

    def run(self, endpoint: str | None = None, data: dict[str, Any] | str | None = None,
            headers: dict[str, Any] | None = None, extra_options: dict[str, Any] | None = None,
            **request_kwargs: Any) -> requests.Response:
        """``HttpHook.run`` through :meth:`send_authorized` (retries, auth, typed errors).

        :param endpoint: path after the base URL.
        :param data: query parameters for GET, the body otherwise (HEAD sends none).
        :param headers: request headers.
        :param extra_options: ``{"check_response": False}`` returns error answers instead of raising.
        :param request_kwargs: passed on (``json``, ``idempotent``...).
        """
        if self.method == "GET":
            request_kwargs.setdefault("params", data)
        elif self.method != "HEAD":
            request_kwargs.setdefault("data", data)
        response = self.send_authorized(self.method, self.url_from_endpoint(endpoint), headers=headers,
                                        **request_kwargs)
        if (extra_options or {}).get("check_response", True) and response.status_code >= 400:
            raise api_error(f"{self.method} {http.safe_url(response.url or '')} failed: {response.reason}",
                            vendor=self.vendor, status=response.status_code)
        return response

    # -- client-credentials bearer token, shared by every task and worker ---------------------------------------

    @property
    def token_cache_key(self) -> str:
        """Name of the cached token in the ledger's secret store (not a secret itself)."""
        raise NotImplementedError

    def fetch_token(self) -> tuple[str, float]:
        """Request a new token from the vendor; returns ``(token, expires_at_epoch)``.

        A refusal that waiting can fix raises a :class:`~ml_connector.errors.RetryableError` marked with
        :func:`ml_connector.secrets.refused` (short reason, ``Retry-After``): the secret store's breaker
        records it. A refusal of the credentials raises :class:`~ml_connector.errors.AuthenticationError`.
        """
        raise NotImplementedError

    def client_credentials_auth(self) -> ClientCredentialsAuth:
        """A :class:`ClientCredentialsAuth` over :meth:`fetch_token` and :attr:`token_cache_key`, for
        :meth:`build_auth` of client-credentials APIs."""
        return ClientCredentialsAuth(self.send, store=self.secret_store, cache_key=self.token_cache_key,
                                     fetch=self.fetch_token, margin=self.refresh_margin, vendor=self.vendor,
                                     label=self.token_label)

    def get_token(self, *, force: bool = False, rejected: str | None = None) -> str:
        """A valid bearer token from the hook's token auth style (the shared encrypted cache).

        :param force: the token was refused (401): renew it unless another worker already did.
        :param rejected: the token that was refused.
        """
        auth = self.auth
        if not isinstance(auth, TokenAuth):
            raise TypeError(f"{type(self).__name__} does not authenticate with a token")
        return auth.token(force=force, rejected=rejected)

    # -- Airflow UI ------------------------------------------------------------------------------------------

    def check_failure_message(self, exc: Exception, *, label: str) -> str:
        """What the UI "Test" button shows for a failed check: the vendor's refusal, the unreachable host, or
        the missing setting.

        :param exc: the error of the check.
        :param label: the vendor's name for people (``"UPS"``).
        """
        if isinstance(exc, http.TransportError):
            tries = "1 try" if exc.attempts == 1 else f"{exc.attempts} tries"
            return f"Could not reach {label} at {exc.origin}: {exc.reason} ({tries})"
        if isinstance(exc, AuthenticationError | ConfigurationError):
            return exc.message
        if isinstance(exc, ApiError):
            status = f"HTTP {exc.status}" if exc.status is not None else "an error"
            return f"{label} answered {status}: {exc.message}"
        return f"{label}: {type(exc).__name__}: {exc}"
