"""Business Central hook: Entra token, API v2.0 reads, and tracking write-back through the AL extension page.

Auth: OAuth client credentials against Microsoft Entra (:class:`~ml_connector.hooks.auth.ClientCredentialsAuth`):
the client id/secret go in the token request's form with the ``.default`` scope of the Business Central API; the
token is cached encrypted in the ledger, shared by every task and worker, renewed before ``expires_in`` runs
out, and a 401 renews it once and retries once. A token request Entra refuses with 429 (or answers 5xx after
the retries) opens the secret store's breaker: no task or worker asks Entra again before its ``Retry-After``
(else a backoff) has passed (:mod:`ml_connector.secrets`).

Connection ``business_central_default`` (type ``business_central``): host = API host
(``https://api.businesscentral.dynamics.com``), login/password = Entra app client id/secret, extras
``tenant_id``, ``environment``, ``company_id``, ``authority`` (token host, default
``https://login.microsoftonline.com``), ``writeback_api_publisher``/``_group``/``_version`` (the route of the
ml-connector AL extension page, default ``mlconnector/shipping/v1.0``), ``page_size`` (optional
``Prefer: odata.maxpagesize``), and the transport extras of :class:`~ml_connector.hooks.base.ConnectorHook`
(``verify``, ``proxies``, ``cert``, ``timeout``). None of the extras is sent as a header.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ml_connector import http
from ml_connector.erp.business_central.mapping import (
    FIELD_DELIVERED_AT,
    format_datetime,
    parse_datetime,
    sales_orders_filter,
)
from ml_connector.errors import ApiError, AuthenticationError, ConflictError, api_error
from ml_connector.hooks.auth import AuthStyle
from ml_connector.hooks.base import CHECK_RETRY, TOKEN_TIMEOUT, ConnectorHook
from ml_connector.secrets import refused

DEFAULT_HOST = "https://api.businesscentral.dynamics.com"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
ORDER_EXPAND = "salesOrderLines,shipmentMethod"
#: BC keeps DateTime fields at SQL ``datetime`` precision (1/300 s): a value read back may differ by a few ms.
DATETIME_TOLERANCE = timedelta(milliseconds=10)


def parse_error(status: int, body: Any) -> ApiError:
    """Fold Business Central's OData error body (``{"error": {"code", "message"}}``) into a typed error.

    :param status: the HTTP status code.
    :param body: the decoded JSON body, or the text when it was not JSON.
    """
    code, message = None, None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
        elif isinstance(err, str):  # Entra token errors: {"error": "invalid_client", "error_description": ...}
            code, message = err, body.get("error_description")
    if not message:
        message = (body if isinstance(body, str) else "") [:300] or f"HTTP {status}"
    if status == 412:
        return ConflictError(message, vendor="business_central", status=status, code=code)
    return api_error(message, vendor="business_central", status=status, code=code)


def _same_value(field: str, current: Any, wanted: Any) -> bool:
    """Whether the record already holds ``wanted`` (a replayed write-back must not PATCH again): DateTimes are
    compared as instants, since BC answers ``...07.123Z`` for a ``...07.123456Z`` that was written."""
    if current == wanted:
        return True
    if field != FIELD_DELIVERED_AT:
        return False
    try:
        have, want = parse_datetime(current), parse_datetime(wanted)
    except (TypeError, ValueError):
        return False
    if have is None or want is None:
        return have is want
    return abs(have - want) < DATETIME_TOLERANCE


def _odata_string(value: str) -> str:
    """An OData string literal (quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"


def _odata_instant(value: datetime) -> str:
    """An unquoted Edm.DateTimeOffset literal in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class BusinessCentralHook(ConnectorHook):
    """Talks to Business Central API v2.0 with a cached Entra client-credentials token.

    :param business_central_conn_id: the Airflow connection id.
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options (``ledger``, ``retry``, ``timeout``,
        ``refresh_margin``...).
    """

    conn_name_attr = "business_central_conn_id"
    default_conn_name = "business_central_default"
    conn_type = "business_central"
    hook_name = "Dynamics 365 Business Central"
    vendor = "business_central"
    default_host = DEFAULT_HOST
    token_issuer = "Entra"

    def __init__(self, business_central_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(business_central_conn_id, **kwargs)
        self.business_central_conn_id = business_central_conn_id

    # -- URLs --------------------------------------------------------------------------------------------

    @property
    def tenant_id(self) -> str:
        """The Entra tenant (extra ``tenant_id``)."""
        return str(self.extra("tenant_id", required=True))

    @property
    def environment(self) -> str:
        """The Business Central environment name (extra ``environment``, default ``Production``)."""
        return str(self.extra("environment", "Production"))

    @property
    def company_id(self) -> str:
        """The company's id (extra ``company_id``, braces removed)."""
        return str(self.extra("company_id", required=True)).strip("{}")

    @property
    def api_root(self) -> str:
        """``{host}/v2.0/{tenant}/{environment}/api``: the environment name is part of every URL."""
        return f"{self.base_url}/v2.0/{self.tenant_id}/{self.environment}/api"

    @property
    def company_url(self) -> str:
        """The company's URL in API v2.0."""
        return f"{self.api_root}/v2.0/companies({self.company_id})"

    @property
    def writeback_url(self) -> str:
        """The ``salesOrderShipping`` page of the ml-connector AL extension in this company."""
        publisher = self.extra("writeback_api_publisher", "mlconnector")
        group = self.extra("writeback_api_group", "shipping")
        version = self.extra("writeback_api_version", "v1.0")
        return f"{self.api_root}/{publisher}/{group}/{version}/companies({self.company_id})/salesOrderShipping"

    # -- token -------------------------------------------------------------------------------------------

    @property
    def authority(self) -> str:
        """The Entra token host (extra ``authority``)."""
        return str(self.extra("authority", DEFAULT_AUTHORITY)).rstrip("/")

    def build_auth(self) -> AuthStyle:
        """Client-credentials bearer token from the shared ledger cache."""
        return self.client_credentials_auth()

    def fetch_token(self, *, retry: http.RetryPolicy | None = None) -> tuple[str, float]:
        """Request a new Entra token with the connection's client id/secret, bypassing the cache.

        :param retry: retry policy of this one request (default: :attr:`token_retry`, which does not retry a 429).
        :return: ``(access_token, expires_at_epoch)``.
        :raises AuthenticationError: Entra refused the credentials (its error text is in the message).
        :raises RetryableApiError: Entra answered 429, or 5xx after the retries; marked for the secret store's
            breaker with Entra's ``Retry-After`` when it sent one.
        """
        client_id, client_secret = self.credentials()
        response = self.send(
            "POST", f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token", idempotent=True,
            retry=retry or self.token_retry, timeout=TOKEN_TIMEOUT,
            data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret,
                  "scope": SCOPE},
        )
        body = http.json_or_text(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = parse_error(response.status_code, body)
            if error.retryable:  # 429, or 5xx that outlasted the retries: Entra is busy, the secret may be fine
                raise refused(api_error(f"Entra token request failed ({error.message})", vendor="business_central",
                                        status=response.status_code, code=error.code),
                              retry_after=http.retry_after_seconds(response))
            raise AuthenticationError(
                f"Entra refused the client credentials of connection '{self.conn_id}' ({error.message})",
                vendor="business_central", status=response.status_code, code=error.code)
        token = body["access_token"]
        http.mask(token)
        return token, self.clock() + float(body.get("expires_in", 3599))

    @property
    def token_cache_key(self) -> str:
        """``business_central:token:<authority>:<tenant>:<client id>`` (not a secret)."""
        client_id, _ = self.credentials()
        return f"business_central:token:{self.authority}:{self.tenant_id}:{client_id}"

    def _call(self, method: str, url: str, *, json: Any = None, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201, 204)) -> tuple[Any, Any]:
        """Authenticated call with one forced token refresh on 401; returns ``(body, response)``."""
        response = self.send_authorized(method, url, json=json, params=params,
                                        headers={"Accept": "application/json", **(headers or {})},
                                        # PATCH with If-Match is idempotent: a repeat fails with 412
                                        idempotent=method in ("GET", "PATCH"))
        body = http.json_or_text(response) if response.content else None
        if response.status_code not in ok:
            raise parse_error(response.status_code, body)
        return body, response

    # -- reads -------------------------------------------------------------------------------------------

    def get_company(self) -> dict[str, Any]:
        """The configured company (``id``, ``name``, ``displayName``...)."""
        body, _ = self._call("GET", self.company_url)
        return body

    def get_company_information(self) -> dict[str, Any]:
        """The company's address (used as the default ship-from)."""
        body, _ = self._call("GET", f"{self.company_url}/companyInformation")
        if isinstance(body, dict) and isinstance(body.get("value"), list):
            return body["value"][0] if body["value"] else {}
        return body

    def iter_released_orders(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Released sales orders (``status eq 'Open'``) modified in ``[start, end)``, following
        ``@odata.nextLink`` to the last page.

        :param start: window start (inclusive).
        :param end: window end (exclusive).
        """
        headers = {}
        page_size = self.extra("page_size")
        if page_size:
            headers["Prefer"] = f"odata.maxpagesize={int(page_size)}"
        url: str | None = f"{self.company_url}/salesOrders"
        params: dict[str, Any] | None = {"$filter": sales_orders_filter(start, end), "$expand": ORDER_EXPAND}
        while url:
            body, _ = self._call("GET", url, params=params, headers=headers)
            yield from body.get("value", [])
            url, params = body.get("@odata.nextLink"), None  # the next link carries the query already

    def iter_shipping_records(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """The write-back page's records modified in ``[start, end)`` (each with its ``@odata.etag``), following
        ``@odata.nextLink``: read once with the orders, so that a write-back needs no GET before its PATCH.

        :param start: window start (inclusive).
        :param end: window end (exclusive).
        """
        headers = {}
        page_size = self.extra("page_size")
        if page_size:
            headers["Prefer"] = f"odata.maxpagesize={int(page_size)}"
        url: str | None = self.writeback_url
        params: dict[str, Any] | None = {
            "$filter": f"lastModifiedDateTime ge {format_datetime(start)} and "
                       f"lastModifiedDateTime lt {format_datetime(end)}",
            "$select": "id,number,lastModifiedDateTime"}
        while url:
            body, _ = self._call("GET", url, params=params, headers=headers)
            yield from body.get("value", [])
            url, params = body.get("@odata.nextLink"), None

    def get_sales_order(self, order_id: str) -> dict[str, Any]:
        """One sales order with its lines and shipment method.

        :param order_id: the order's id (GUID).
        """
        body, _ = self._call("GET", f"{self.company_url}/salesOrders({order_id})",
                             params={"$expand": ORDER_EXPAND})
        return body

    # -- write-back --------------------------------------------------------------------------------------

    def get_shipping_record(self, order_id: str) -> dict[str, Any]:
        """The order's write-back record on the extension page (with its ``@odata.etag``).

        :param order_id: the order's id (GUID).
        """
        body, _ = self._call("GET", f"{self.writeback_url}({order_id})")
        return body

    def update_shipping_record(self, order_id: str, changes: dict[str, Any], *, attempts: int = 3,
                               etag: str | None = None) -> dict[str, Any]:
        """PATCH the extension page with ``If-Match: <@odata.etag>``; on 412 (someone else edited the order)
        re-read the record and try again, at most ``attempts`` times.

        :param order_id: the order's id (GUID).
        :param changes: the fields to write (a replay of values already there sends nothing).
        :param attempts: tries before a persistent 412 raises :class:`ConflictError`.
        :param etag: the page's etag read earlier (with the orders): the first PATCH goes without a GET. If the
            record changed since, BC answers 412 and the record is read as without it (a replay then finds its
            values there and sends nothing).
        """
        record = {"@odata.etag": etag} if etag else self.get_shipping_record(order_id)
        tries = attempts + (1 if etag else 0)  # the blind first PATCH does not count as a try
        for attempt in range(1, tries + 1):
            if etag is None and all(_same_value(k, record.get(k), v) for k, v in changes.items()):
                return record  # already written (a replayed write-back)
            try:
                body, _ = self._call("PATCH", f"{self.writeback_url}({order_id})", json=changes,
                                     headers={"If-Match": record["@odata.etag"]})
                return body
            except ConflictError:
                if attempt == tries:
                    raise
                self.log.info("Business Central answered 412 for order %s: re-reading and retrying", order_id)
                record, etag = self.get_shipping_record(order_id), None
        raise AssertionError("unreachable")

    # -- items, customers, sales documents and webhook subscriptions (the ShipStation pipeline) --------------

    def _all(self, url: str, params: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url:
            body, _ = self._call("GET", next_url, params=params)
            yield from body.get("value", [])
            next_url, params = body.get("@odata.nextLink"), None

    def iter_items_modified(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Items whose ``lastModifiedDateTime`` is in ``[start, end)``."""
        yield from self._all(f"{self.company_url}/items", {"$filter": (
            f"lastModifiedDateTime ge {_odata_instant(start)} and lastModifiedDateTime lt {_odata_instant(end)}")})

    def iter_customers_modified(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Customers whose ``lastModifiedDateTime`` is in ``[start, end)``."""
        yield from self._all(f"{self.company_url}/customers", {"$filter": (
            f"lastModifiedDateTime ge {_odata_instant(start)} and lastModifiedDateTime lt {_odata_instant(end)}")})

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        """One item by id (SystemId), or None when Business Central no longer has it (404)."""
        try:
            body, _ = self._call("GET", f"{self.company_url}/items({item_id})")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return body

    def find_by_number(self, entity_set: str, number: str) -> dict[str, Any] | None:
        """The ``customers``/``items`` record with this ``number``, or None."""
        found = list(self._all(f"{self.company_url}/{entity_set}", {"$filter": f"number eq {_odata_string(number)}"}))
        return found[0] if found else None

    def find_document(self, entity_set: str, external_document_number: str) -> dict[str, Any] | None:
        """The ``salesInvoices``/``salesOrders`` document carrying this external document number (lines
        expanded), or None."""
        lines = entity_set[:-1] + "Lines"
        found = list(self._all(f"{self.company_url}/{entity_set}", {
            "$filter": f"externalDocumentNumber eq {_odata_string(external_document_number)}", "$expand": lines}))
        return found[0] if found else None

    def create_document(self, entity_set: str, header: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, Any]:
        """Deep insert of a draft document with its lines (not retried blindly: a lost answer is found again by
        :meth:`find_document`)."""
        body, _ = self._call("POST", f"{self.company_url}/{entity_set}",
                             json={**header, entity_set[:-1] + "Lines": lines}, ok=(200, 201))
        return body

    def update_document(self, entity_set: str, document: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH header fields with ``If-Match`` (the document's etag)."""
        body, _ = self._call("PATCH", f"{self.company_url}/{entity_set}({document['id']})", json=changes,
                             headers={"If-Match": document["@odata.etag"]})
        return body

    def replace_lines(self, entity_set: str, document_id: str, old: list[dict[str, Any]],
                      new: list[dict[str, Any]]) -> None:
        """Delete the document's lines and add ``new`` ones."""
        lines = f"{self.company_url}/{entity_set}({document_id})/{entity_set[:-1]}Lines"
        for line in old:
            self._call("DELETE", f"{lines}({line['id']})", ok=(200, 204))
        for line in new:
            self._call("POST", lines, json=line, ok=(200, 201))

    def post_invoice(self, invoice_id: str) -> None:
        """``Microsoft.NAV.post`` (204): the draft becomes a posted sales invoice."""
        self._call("POST", f"{self.company_url}/salesInvoices({invoice_id})/Microsoft.NAV.post", ok=(200, 204))

    @property
    def subscriptions_url(self) -> str:
        """``/api/v2.0/subscriptions``: not under a company (the company is in each ``resource``)."""
        return f"{self.api_root}/v2.0/subscriptions"

    def list_subscriptions(self) -> list[dict[str, Any]]:
        body, _ = self._call("GET", self.subscriptions_url)
        return list(body.get("value", []))

    def create_subscription(self, notification_url: str, entity_set: str, client_state: str = "") -> dict[str, Any]:
        """Subscribe ``notification_url`` to a company entity set; Business Central first sends the
        ``validationToken`` handshake to it."""
        body, _ = self._call("POST", self.subscriptions_url, ok=(200, 201), json={
            "notificationUrl": notification_url, "clientState": client_state,
            "resource": f"/api/v2.0/companies({self.company_id})/{entity_set}"})
        return body

    def renew_subscription(self, subscription: dict[str, Any]) -> dict[str, Any]:
        """PATCH with ``If-Match``: renews the 3-day expiry (handshake again)."""
        body, _ = self._call("PATCH", f"{self.subscriptions_url}('{subscription['subscriptionId']}')",
                             json={"clientState": subscription.get("clientState") or ""},
                             headers={"If-Match": subscription["@odata.etag"]})
        return body

    # -- Airflow UI ----------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """The UI "Test" button: a new Entra token with the connection's client id/secret, then the company
        read with that token.

        The cached token is neither read nor replaced: a wrong secret fails here even while a good token from
        before sits in the ledger.

        :return: ``(ok, message)``: what was reached (host, company, environment, token lifetime), or why not.
        """
        try:
            token, expires_at = self.fetch_token(retry=CHECK_RETRY)
            response = self.send("GET", self.company_url, retry=CHECK_RETRY,
                                 headers={"Accept": "application/json", "Authorization": f"Bearer {token}"})
            body = http.json_or_text(response) if response.content else None
            if response.status_code != 200:
                raise parse_error(response.status_code, body)
        except ApiError as exc:
            if exc.status == 404 and not isinstance(exc, AuthenticationError):
                return False, (f"Business Central at {self.base_url} accepted the credentials but has no company "
                               f"'{self.company_id}' in environment '{self.environment}' of tenant "
                               f"'{self.tenant_id}': {exc.message}")
            return False, self.check_failure_message(exc, label="Business Central")
        except Exception as exc:  # the message is what the person reads in the UI
            return False, self.check_failure_message(exc, label="Business Central")
        company = body if isinstance(body, dict) else {}
        name = company.get("displayName") or company.get("name") or self.company_id
        minutes = max(0, int((expires_at - self.clock()) / 60))
        return True, (f"Connected to company '{name}' in environment '{self.environment}' at {self.base_url} "
                      f"(tenant {self.tenant_id}); a new token is valid for {minutes} minutes")
