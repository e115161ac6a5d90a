"""Acumatica hook: cookie session (login once per task, logout when the task ends), the contract-based REST API
of the configured endpoint, package tracking numbers and the label file written back on the shipment.

Auth: ``POST /entity/auth/login`` with the API user's name and password (plus the ``tenant`` and ``branch``
extras), the session cookie kept in the hook's ``requests`` session, ``POST /entity/auth/logout`` in
:meth:`AcumaticaHook.close`. Every open session holds one of the licence's API-user slots (a trial licence
has two), so the session is shared by every request and thread of a task, logged in once (under a lock),
renewed once when an answer says it expired (401), and logged out when the task ends, success or not (the
operators call :meth:`~ml_connector.erp.protocol.OrderSource.close`). This is
:class:`~ml_connector.hooks.auth.SessionLogon`, entered at the first request and left by :meth:`close`.

At the first request after login, ``GET /entity`` checks that the configured endpoint name and version exist
on the instance; otherwise the task fails with a :class:`ConfigurationError` naming the versions the instance
offers (Acumatica would answer every call with 404).

Connection ``acumatica_default`` (type ``acumatica``): host = the tenant URL (``https://acme.acumatica.com``, a
path such as ``/AcumaticaERP`` included), login/password = the API user, extras ``endpoint_name`` (default
``Default``), ``endpoint_version`` (default ``24.200.001``), ``tenant``, ``branch``, ``locale``, ``page_size``
(``$top`` per page, default 100), ``login_limit_wait_seconds`` (default 30), ``push_header_name`` /
``push_header_value`` (push notifications, :mod:`ml_connector.erp.acumatica.webhook`), ``client_id`` /
``client_secret`` / ``oauth_scope`` (an OAuth client: a shared bearer token instead of the session), and the transport
extras of :class:`~ml_connector.hooks.base.ConnectorHook`. None of the extras is sent as a header.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from ml_connector import http
from ml_connector.erp.acumatica.mapping import (
    SALES_ORDER_SELECT,
    SHIPMENT_EXPAND,
    STOCK_ITEM_SELECT,
    sales_order_filter,
    shipments_filter,
)
from ml_connector.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    RecordError,
    RetryableApiError,
    api_error,
)
from ml_connector.hooks.auth import SessionLogon
from ml_connector.hooks.base import CHECK_RETRY, ConnectorHook

DEFAULT_ENDPOINT_NAME = "Default"
DEFAULT_ENDPOINT_VERSION = "24.200.001"
DEFAULT_PAGE_SIZE = 100
#: the text Acumatica's login answer carries when every API-user slot of the licence is taken
LOGIN_LIMIT_TEXT = "API Login Limit"


def parse_error(status: int, body: Any) -> ApiError:
    """Fold Acumatica's error body (``{"message", "exceptionMessage", "exceptionType"}``, or a
    ``{"error": ...}`` of the identity server) into a typed error.

    :param status: the HTTP status code.
    :param body: the decoded JSON body, or the text when it was not JSON.
    """
    message, code = None, None
    if isinstance(body, dict):
        message = body.get("exceptionMessage") or body.get("message") or body.get("error_description")
        code = body.get("exceptionType") or (body.get("error") if isinstance(body.get("error"), str) else None)
    if not message:
        message = (body if isinstance(body, str) else "")[:300] or f"HTTP {status}"
    return api_error(str(message)[:500], vendor="acumatica", status=status, code=code)


class AcumaticaHook(ConnectorHook):
    """Talks to Acumatica's contract-based REST API with a cookie session of the API user.

    :param acumatica_conn_id: the Airflow connection id.
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options (``retry``, ``timeout``...).
    """

    conn_name_attr = "acumatica_conn_id"
    default_conn_name = "acumatica_default"
    conn_type = "acumatica"
    hook_name = "Acumatica"
    vendor = "acumatica"

    def __init__(self, acumatica_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(acumatica_conn_id, **kwargs)
        self.acumatica_conn_id = acumatica_conn_id
        self._lock = threading.RLock()
        self._open = False  # inside the SessionLogon block
        self._logged_in = False
        self._endpoint_checked = False
        self.logins = 0
        self.logouts = 0

    # -- connection extras ---------------------------------------------------------------------------

    @property
    def endpoint_name(self) -> str:
        """Extra ``endpoint_name`` (default ``Default``)."""
        return str(self.extra("endpoint_name", DEFAULT_ENDPOINT_NAME)).strip("/ ")

    @property
    def endpoint_version(self) -> str:
        """Extra ``endpoint_version`` (default ``24.200.001``)."""
        return str(self.extra("endpoint_version", DEFAULT_ENDPOINT_VERSION)).strip("/ ")

    @property
    def entity_url(self) -> str:
        """``{host}/entity/{endpoint_name}/{endpoint_version}``."""
        return f"{self.base_url}/entity/{self.endpoint_name}/{self.endpoint_version}"

    @property
    def page_size(self) -> int:
        """Extra ``page_size``: ``$top`` of one page of shipments (default 100)."""
        try:
            size = int(self.extra("page_size", DEFAULT_PAGE_SIZE))
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'page_size' must be a whole number") \
                from None
        if size < 1:
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'page_size' must be >= 1")
        return size

    @property
    def login_limit_wait(self) -> float:
        """Extra ``login_limit_wait_seconds`` (default 30): how long a login refused because every API-user slot
        is taken ("API Login Limit") is retried in-process, with backoff, before the task gives up (and Airflow
        retries it). The pipeline's other tasks hold their sessions for seconds only."""
        try:
            return max(0.0, float(self.extra("login_limit_wait_seconds", 30)))
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection '{self.conn_id}': extra 'login_limit_wait_seconds' must be "
                                     "seconds") from None

    def login_body(self) -> dict[str, str]:
        """``{"name", "password", "tenant", "branch", "locale"}`` (only those set; never ``company`` as well
        as ``tenant``: Acumatica refuses the pair)."""
        name, password = self.connection.login, self.connection.password
        if not name or not password:
            raise ConfigurationError(f"connection '{self.conn_id}' needs the API user's login and password")
        http.mask(password)
        body = {"name": name, "password": password}
        for extra in ("tenant", "branch", "locale"):
            if self.extra(extra):
                body[extra] = str(self.extra(extra))
        return body

    # -- session -------------------------------------------------------------------------------------

    def _login(self) -> bool:
        """``POST /entity/auth/login`` unless this hook's session is logged in already (threads share it).

        :raises AuthenticationError: wrong user, password or tenant.
        :raises RetryableApiError: every API-user slot of the licence is taken (``API Login Limit``).
        """
        with self._lock:
            if self._logged_in:
                return True
            deadline = time.monotonic() + self.login_limit_wait
            pause = 0.25
            while True:
                response = self.send("POST", f"{self.base_url}/entity/auth/login", json=self.login_body(),
                                     idempotent=True, headers={"Accept": "application/json"})
                if response.status_code in (200, 204) or LOGIN_LIMIT_TEXT.lower() not in response.text.lower() \
                        or time.monotonic() + pause > deadline:
                    break
                # every slot is taken, most likely by this pipeline's other tasks for a moment: wait for one
                self.log.info("Acumatica: every API-user slot is taken; waiting %.1f s for one to free", pause)
                time.sleep(pause * (0.5 + random.random() / 2))
                pause = min(pause * 2, 5.0)
            if response.status_code not in (200, 204):
                body = http.json_or_text(response) if response.content else None
                error = parse_error(response.status_code, body)
                if LOGIN_LIMIT_TEXT.lower() in f"{error.message} {body}".lower():
                    raise RetryableApiError(
                        f"Acumatica refused the login of connection '{self.conn_id}': every API-user slot of the "
                        f"licence is taken ({error.message}). Sessions other integrations left open expire after "
                        "their idle timeout; the task is retried", vendor="acumatica",
                        status=response.status_code, code="API Login Limit")
                if response.status_code in (400, 401, 403) or "credential" in error.message.lower():
                    raise AuthenticationError(
                        f"Acumatica refused the login of connection '{self.conn_id}' ({error.message}); check the "
                        "API user's login, password and the 'tenant' extra", vendor="acumatica",
                        status=response.status_code, code=error.code)
                raise error
            self._logged_in = True
            self.logins += 1
            return True

    def _logout(self, _handle: Any) -> None:
        with self._lock:
            if not self._logged_in:
                return
            self._logged_in = False
            self.logouts += 1
            response = self.send("POST", f"{self.base_url}/entity/auth/logout", idempotent=True,
                                 retry=CHECK_RETRY)
            self.session.cookies.clear()
            if response.status_code >= 400:
                raise parse_error(response.status_code, http.json_or_text(response) if response.content else None)

    def _expired(self, response: requests.Response) -> bool:
        if response.status_code != 401:
            return False
        sent = (response.request.headers.get("Cookie") or "") if response.request is not None else ""
        with self._lock:
            current = list(self.session.cookies.values())
            if not current or all(value in sent for value in current):
                # the session this request used expired: the next _login logs in again, once, whichever thread
                # comes first; a thread whose request carried an older cookie just sends again with the new one
                self._logged_in = False
        return True

    # -- OAuth (optional): a bearer token of a Connected Application instead of the cookie session ---------

    @property
    def oauth(self) -> bool:
        """Whether the connection names an OAuth client (extra ``client_id``): then requests carry a bearer
        token from ``/identity/connect/token`` (password grant with the API user), cached encrypted in the ledger
        and shared by every task, instead of a cookie session."""
        return bool(self.extra("client_id"))

    @property
    def token_cache_key(self) -> str:
        """``acumatica:token:<host>:<tenant>:<client id>:<user>`` (not a secret)."""
        return (f"acumatica:token:{self.base_url}:{self.extra('tenant', '')}:{self.extra('client_id')}:"
                f"{self.connection.login}")

    def fetch_token(self, *, retry: http.RetryPolicy | None = None) -> tuple[str, float]:
        """``POST /identity/connect/token`` (password grant, scope ``api``) with the connection's OAuth client
        (extras ``client_id`` / ``client_secret``) and API user.

        :raises AuthenticationError: the identity server refused the client or the user.
        :raises RetryableApiError: 429 or 5xx (marked for the secret store's breaker).
        """
        from ml_connector.secrets import refused

        body = self.login_body()
        secret = str(self.extra("client_secret", required=True))
        http.mask(secret)
        username = body["name"] if not body.get("tenant") else f"{body['name']}@{body['tenant']}"
        response = self.send("POST", f"{self.base_url}/identity/connect/token", idempotent=True,
                             retry=retry or self.token_retry,
                             data={"grant_type": "password", "client_id": str(self.extra("client_id")),
                                   "client_secret": secret, "username": username, "password": body["password"],
                                   "scope": str(self.extra("oauth_scope", "api"))})
        answer = http.json_or_text(response)
        if response.status_code != 200 or not isinstance(answer, dict) or not answer.get("access_token"):
            error = parse_error(response.status_code, answer)
            if error.retryable:
                raise refused(error, retry_after=http.retry_after_seconds(response))
            raise AuthenticationError(
                f"Acumatica's identity server refused the OAuth client or user of connection '{self.conn_id}' "
                f"({error.code or ''} {error.message})".replace("( ", "("), vendor="acumatica",
                status=response.status_code, code=error.code)
        token = answer["access_token"]
        http.mask(token)
        return token, self.clock() + float(answer.get("expires_in", 3600))

    def build_auth(self):
        """A :class:`SessionLogon` over the cookie session (the cookie stays in the hook's session), or with an
        OAuth client (extra ``client_id``) a shared bearer token."""
        if self.oauth:
            return self.client_credentials_auth()
        return SessionLogon(self.send, logon=self._login, logoff=self._logout, expired=self._expired,
                            vendor="acumatica")

    def _ensure_open(self) -> None:
        with self._lock:
            if not self._open:
                if isinstance(self.auth, SessionLogon):
                    self.auth.__enter__()
                self._open = True

    def close(self) -> None:
        """Log the session out (``POST /entity/auth/logout``) if one is open. Called when the task ends. (A
        bearer token is not a session: nothing to end.)"""
        with self._lock:
            if self._open:
                self._open = False
                if isinstance(self.auth, SessionLogon):
                    self.auth.__exit__(None, None, None)

    def __enter__(self) -> AcumaticaHook:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- calls ---------------------------------------------------------------------------------------

    def _call(self, method: str, url: str, *, json: Any = None, data: bytes | None = None,
              params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
              ok: tuple[int, ...] = (200, 201, 204), check_endpoint: bool = True,
              missing_is_configuration: bool = True) -> tuple[Any, requests.Response]:
        self._ensure_open()
        if check_endpoint:
            self.check_endpoint()
        response = self.send_authorized(method, url, json=json, data=data, params=params,
                                        headers={"Accept": "application/json", **(headers or {})},
                                        idempotent=method in ("GET", "PUT"))
        body = http.json_or_text(response) if response.content else None
        if response.status_code not in ok:
            error = parse_error(response.status_code, body)
            if response.status_code == 404 and check_endpoint and missing_is_configuration:
                raise ConfigurationError(f"Acumatica answered 404 for {http.safe_url(url)}: {error.message}")
            raise error
        return body, response

    def endpoints(self) -> dict[str, Any]:
        """``GET /entity``: the instance's build version and its endpoints ``[{name, version, href}]``."""
        body, _ = self._call("GET", f"{self.base_url}/entity", check_endpoint=False)
        return body if isinstance(body, dict) else {}

    def check_endpoint(self) -> None:
        """Once per hook: fail when the configured endpoint version does not exist on the instance.

        :raises ConfigurationError: the message names the versions the instance offers.
        """
        if self._endpoint_checked:
            return
        with self._lock:
            if self._endpoint_checked:
                return
            listed = self.endpoints().get("endpoints") or []
            offered = [(str(e.get("name")), str(e.get("version"))) for e in listed if isinstance(e, dict)]
            if (self.endpoint_name, self.endpoint_version) not in offered:
                same = sorted(v for n, v in offered if n == self.endpoint_name)
                others = sorted({f"{n}/{v}" for n, v in offered})
                raise ConfigurationError(
                    f"connection '{self.conn_id}': Acumatica at {self.base_url} has no endpoint "
                    f"{self.endpoint_name}/{self.endpoint_version}; versions of '{self.endpoint_name}' offered: "
                    f"{', '.join(same) or 'none'} (all endpoints: {', '.join(others) or 'none'}). Set the "
                    "'endpoint_version' extra to one of them")
            self._endpoint_checked = True

    def iter_shipments(self, start: datetime, end: datetime, *, statuses: list[str]) -> Iterator[dict[str, Any]]:
        """Shipments in ``statuses`` modified in ``[start, end)`` with packages, details, orders and the ship-to
        address and contact, every page (``$top``/``$skip``).

        :param start: window start (inclusive).
        :param end: window end (exclusive).
        """
        size, skip = self.page_size, 0
        query = {"$filter": shipments_filter(start, end, statuses=statuses), "$expand": SHIPMENT_EXPAND}
        while True:
            body, _ = self._call("GET", f"{self.entity_url}/Shipment",
                                 params={**query, "$top": size, "$skip": skip})
            page = body if isinstance(body, list) else []
            yield from page
            if len(page) < size:
                return
            skip += size

    def ship_via_descriptions(self) -> dict[str, str]:
        """``CarrierID`` -> ``Description`` of every Ship Via code (``GET .../ShipVia``)."""
        body, _ = self._call("GET", f"{self.entity_url}/ShipVia", params={"$select": "CarrierID,Description"},
                             missing_is_configuration=False)  # an endpoint without the entity: a PermanentApiError
        result = {}
        for row in body if isinstance(body, list) else []:
            code = (row.get("CarrierID") or {}).get("value")
            description = (row.get("Description") or {}).get("value")
            if code and description:
                result[str(code).strip()] = str(description).strip()
        return result

    def get_shipment(self, shipment_nbr: str, *, expand: str | None = "Packages",
                     custom: str | None = None) -> dict[str, Any]:
        """One shipment by ``ShipmentNbr``.

        :raises RecordError: there is no such shipment (deleted since it was extracted).
        """
        params = {k: v for k, v in (("$expand", expand), ("$custom", custom)) if v}
        try:
            body, _ = self._call("GET", f"{self.entity_url}/Shipment/{quote(shipment_nbr, safe='')}",
                                 params=params or None)
        except ConfigurationError:
            raise RecordError("the shipment no longer exists in Acumatica", record=shipment_nbr,
                              field="ShipmentNbr") from None
        return body

    def get_sales_order(self, order_type: str, order_nbr: str) -> dict[str, Any] | None:
        """One sales order by its keys (``GET .../SalesOrder/{OrderType}/{OrderNbr}``) with its currency and its
        lines' prices (``$expand=Details``, ``$select=`` :data:`SALES_ORDER_SELECT`); None when it does not exist.
        A key holding a ``/`` cannot be a URL segment: such an order is read with ``$filter`` instead."""
        params = {"$expand": "Details", "$select": SALES_ORDER_SELECT}
        if "/" in order_type or "/" in order_nbr:
            body = self._get_or_none(f"{self.entity_url}/SalesOrder",
                                     {**params, "$filter": sales_order_filter(order_type, order_nbr)})
            return body[0] if isinstance(body, list) and body else None
        body = self._get_or_none(
            f"{self.entity_url}/SalesOrder/{quote(order_type, safe='')}/{quote(order_nbr, safe='')}", params)
        return body if isinstance(body, dict) else None

    def get_stock_item(self, inventory_id: str) -> dict[str, Any] | None:
        """One stock item (``GET .../StockItem/{InventoryID}``, ``$select=`` :data:`STOCK_ITEM_SELECT`: country of
        origin and tariff code); None when there is none (a non-stock item, or an id holding a ``/``)."""
        if "/" in inventory_id:
            return None
        body = self._get_or_none(f"{self.entity_url}/StockItem/{quote(inventory_id, safe='')}",
                                 {"$select": STOCK_ITEM_SELECT})
        return body if isinstance(body, dict) else None

    def _get_or_none(self, url: str, params: dict[str, Any]) -> Any:
        try:
            body, _ = self._call("GET", url, params=params)
        except ConfigurationError:  # 404: no such record (the endpoint itself was checked at first use)
            return None
        return body

    def put_shipment(self, body: dict[str, Any], *, expand: str | None = "Packages") -> dict[str, Any]:
        """``PUT .../Shipment`` (update only: ``If-Match: *``), the answer expanded with ``expand``."""
        answer, _ = self._call("PUT", f"{self.entity_url}/Shipment", json=body,
                               params={"$expand": expand} if expand else None, headers={"If-Match": "*"})
        return answer

    def put_file(self, record: dict[str, Any], filename: str, content: bytes) -> None:
        """Attach ``content`` to ``record`` as ``filename`` (``PUT`` on the record's ``files:put`` link; the same
        name replaces the file, so a replay adds no second attachment)."""
        link = ((record.get("_links") or {}).get("files:put") or "")
        if not link:
            raise RecordError("the shipment offers no files:put link (file attachments are off for the API user?)",
                              record=str(record.get("id")), field="files")
        link = link.replace("{filename}", quote(filename, safe=""))
        url = link if "://" in link else f"{self.base_url}/{link.lstrip('/')}"
        self._call("PUT", url, data=content, headers={"Content-Type": "application/octet-stream"})

    # -- Airflow UI ----------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """The UI "Test" button: log in with the connection's user, check the endpoint version, log out.

        :return: ``(ok, message)``.
        """
        saved, self.retry = self.retry, CHECK_RETRY
        try:
            if self.oauth:  # the credentials given, never a cached token
                self.fetch_token(retry=CHECK_RETRY)
            self.check_endpoint_now()
            info = self.endpoints().get("version") or {}
        except Exception as exc:  # the message is what the person reads in the UI
            return False, self.check_failure_message(exc, label="Acumatica")
        finally:
            self.close()
            self.retry = saved
        build = info.get("acumaticaBuildVersion") or "unknown build"
        how = "with OAuth client " + str(self.extra("client_id")) if self.oauth else "and logged out"
        return True, (f"Logged in to Acumatica at {self.base_url} ({build}) as {self.connection.login} {how}; "
                      f"endpoint {self.endpoint_name}/{self.endpoint_version} exists")

    def check_endpoint_now(self) -> None:
        """Log in and check the endpoint version (for the connection test)."""
        self._ensure_open()
        self.check_endpoint()
