"""Exact Online hook: the rotating refresh token, the division, the shared call budget, and the REST calls.

Auth: OAuth 2 authorization code once (``ml-connector exact-online authorize``), then the refresh-token grant.
Every refresh answers a new refresh token and invalidates the old one, so the refresh runs under the ledger's
lease (one process at a time, no HTTP call inside a transaction) and the new refresh token is stored, encrypted,
before the access token is used (:class:`ExactRefreshAuth` on
:class:`~ml_connector.hooks.auth.RotatingRefreshTokenAuth`). Access tokens live 10 minutes; Exact refuses a
refresh sooner than 9.5 minutes after the last one ("TooEarlyToRefreshTokens"), so no refresh is sent before
``min_refresh_interval`` (570 s) has passed; such a refusal opens the secret store's breaker until then.

Rate limits: 60 calls a minute and 5,000 a day per company, announced in ``X-RateLimit-Minutely-*`` and
``X-RateLimit-*`` headers (resets in epoch milliseconds). Every call takes a slot from a budget in the ledger
shared by every task and worker (:mod:`ml_connector.ledger.rate_budget`), so a run slows down before a 429; a
429 (empty body, headers of the limit it hit) waits for the announced reset. Error answers (400, 401, 403, 404)
are counted per hour too: Exact blocks an app after more than 10 an hour, so a run that piles them up stops
(``max_errors_per_hour``).

Connection ``exact_online_default`` (type ``exact_online``): host = the region base URL
(``https://start.exactonline.de``...; or extra ``region``), login/password = the app's client id/secret, extras
``division`` (default: ``current/Me`` ``CurrentDivision``), ``refresh_token`` (the first one; sensitive),
``redirect_uri``, ``webhook_secret``, and the transport extras of :class:`~ml_connector.hooks.base.ConnectorHook`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import requests

from ml_connector import http
from ml_connector.erp.exact_online import mapping
from ml_connector.erp.exact_online.connection import REGION_HOSTS
from ml_connector.errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    RecordError,
    RetryableApiError,
    api_error,
)
from ml_connector.hooks.auth import AuthStyle, RotatingRefreshTokenAuth, _fingerprint
from ml_connector.hooks.base import TOKEN_RETRY, ConnectorHook
from ml_connector.ledger import rate_budget
from ml_connector.secrets import CachedSecret, refused

log = logging.getLogger(__name__)

DEFAULT_HOST = REGION_HOSTS["nl"]
#: Exact refuses a refresh within 9.5 minutes of the last one (600 s tokens; "only after 570 s")
MIN_REFRESH_INTERVAL = 570.0
#: renew the access token this long before its expiry: 600 - 30 = 570 s after the refresh
REFRESH_MARGIN = 30.0
#: documented limits per company [3P]: connection extras ``calls_per_minute`` / ``max_errors_per_hour``
CALLS_PER_MINUTE = 60
MAX_ERRORS_PER_HOUR = 8  # Exact blocks the app after more than 10 in an hour: stop before
ERROR_STATUSES = frozenset({400, 401, 403, 404})
#: what to do when the refresh token is gone (expired after 30 days unused, revoked, or lost in a crash)
REAUTHORIZE = ("re-authorize the app in the Exact App Center, then run `ml-connector exact-online authorize "
               "--conn-id {conn_id} --code <code from the redirect>`: it completes the authorization-code "
               "exchange and stores the new refresh token in the ledger")


def reauthorize_message(conn_id: str) -> str:
    """The instruction for a refused refresh token (in errors and the README)."""
    return REAUTHORIZE.format(conn_id=conn_id)


def _epoch_seconds(value: str | None) -> float | None:
    """A reset header (epoch milliseconds) as epoch seconds."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number / 1000.0 if number > 1e11 else number


def _limits(response: requests.Response) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
    """``(minute, day)`` as ``(remaining, reset epoch seconds)`` from an answer's headers (either may be absent)."""
    def pair(remaining: str, reset: str) -> tuple[int, float] | None:
        left, at = response.headers.get(remaining), _epoch_seconds(response.headers.get(reset))
        try:
            return (int(left), at) if left is not None and at is not None else None
        except ValueError:
            return None
    return (pair("X-RateLimit-Minutely-Remaining", "X-RateLimit-Minutely-Reset"),
            pair("X-RateLimit-Remaining", "X-RateLimit-Reset"))


class ExactRefreshAuth(RotatingRefreshTokenAuth):
    """Exact's rotating refresh token: never refreshes within ``min_interval`` of the last refresh, reads Exact's
    "too early" refusal as a breaker matter (not a credential problem), and says how to re-authorize."""

    def __init__(self, *args: Any, min_interval: float = MIN_REFRESH_INTERVAL, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.min_interval = min_interval
        self.last_response: requests.Response | None = None
        send = self._send

        def recording_send(method: str, url: str, **options: Any) -> requests.Response:
            response = send(method, url, **options)
            self.last_response = response
            return response

        self._send = recording_send

    def _refresh(self, current: CachedSecret | None) -> tuple[str, float]:
        now = self.store.clock()
        state = self._load(current.value if current else None) or {}
        last = state.get("refreshed_at")
        if isinstance(last, int | float) and not self._seed_changed(state) and now - last < self.min_interval:
            wait = self.min_interval - (now - last)
            raise refused(RetryableApiError(
                f"Exact Online allows one token refresh per {self.min_interval:.0f} s per connection; the last one "
                f"was {now - last:.0f} s ago", vendor=self.vendor), reason="too early to refresh", retry_after=wait)
        self.last_response = None
        try:
            value, expires_at = super()._refresh(current)
        except AuthenticationError as exc:
            response = self.last_response
            reason = (response.headers.get("Reason", "") if response is not None else "") or ""
            if "TooEarly" in reason or "not expired" in exc.message or "Rate limit" in exc.message:
                raise refused(api_error(f"Exact Online refused the refresh as too early ({reason or exc.code})",
                                        vendor=self.vendor, status=exc.status, code=exc.code, retryable=True),
                              reason="too early to refresh",
                              retry_after=self.min_interval - (now - last) if isinstance(last, int | float)
                              else None) from None
            if exc.code in ("invalid_grant", "invalid_request", None) and "refresh token" in exc.message:
                raise AuthenticationError(
                    f"Exact Online refused the refresh token of connection '{self.conn_id}' ({exc.code}): "
                    f"{reauthorize_message(self.conn_id)}", vendor=self.vendor, status=exc.status,
                    code=exc.code) from None
            raise
        entry = self._load(value) or {}
        entry["refreshed_at"] = now
        return _dumps(entry), expires_at


def _dumps(entry: dict[str, Any]) -> str:
    import json

    return json.dumps(entry)


class ExactOnlineHook(ConnectorHook):
    """Talks to the Exact Online REST API of one division with a rotating refresh token.

    :param exact_online_conn_id: the Airflow connection id.
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options (``ledger``, ``retry``, ``timeout``...).
    """

    conn_name_attr = "exact_online_conn_id"
    default_conn_name = "exact_online_default"
    conn_type = "exact_online"
    hook_name = "Exact Online"
    vendor = "exact_online"
    default_host = DEFAULT_HOST
    token_issuer = "Exact Online"

    def __init__(self, exact_online_conn_id: str = default_conn_name, *, sleep=time.sleep, **kwargs: Any) -> None:
        kwargs.setdefault("refresh_margin", REFRESH_MARGIN)
        super().__init__(exact_online_conn_id, **kwargs)
        self.exact_online_conn_id = exact_online_conn_id
        self.sleep = sleep
        self._division: int | None = None
        self.calls = 0
        self.waited = 0.0
        self.rate_limited = 0

    # -- connection ----------------------------------------------------------------------------------------

    def _set_base_url(self, connection) -> None:
        if not (connection.host or "").strip():
            region = str(self.extra("region") or "").strip().lower()
            if region:
                if region not in REGION_HOSTS:
                    raise ConfigurationError(f"connection '{self.conn_id}': region {region!r} is not one of "
                                             f"{', '.join(REGION_HOSTS)}")
                self._base_url = REGION_HOSTS[region]
                return
        super()._set_base_url(connection)

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/api/oauth2/token"

    @property
    def api_root(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def budget_name(self) -> str:
        """The ledger row of this company's call budget (not a secret)."""
        return f"exact_online:{self.base_url}:{self.division}"

    @property
    def division(self) -> int:
        """The division of every call: extra ``division``, else ``current/Me`` ``CurrentDivision`` (read once)."""
        if self._division is None:
            raw = self.extra("division")
            if raw not in (None, ""):
                try:
                    self._division = int(str(raw).strip())
                except ValueError:
                    raise ConfigurationError(f"connection '{self.conn_id}': extra 'division' must be the "
                                             f"division number (got {raw!r})") from None
            else:
                self._division = int(self.me()["CurrentDivision"])
        return self._division

    # -- token ---------------------------------------------------------------------------------------------

    @property
    def token_cache_key(self) -> str:
        client_id, _ = self.credentials()
        return f"exact_online:token:{self.base_url}:{client_id}"

    def build_auth(self) -> AuthStyle:
        client_id, client_secret = self.credentials()
        return ExactRefreshAuth(
            self.send, store=self.secret_store, cache_key=self.token_cache_key, token_url=self.token_url,
            client_id=client_id, client_secret=client_secret, initial_refresh_token=self.extra("refresh_token"),
            conn_id=self.conn_id, refresh_field="the 'refresh_token' extra", margin=self.refresh_margin,
            vendor=self.vendor, label=self.token_label, retry=self.token_retry)

    def exchange_code(self, code: str, redirect_uri: str | None = None) -> dict[str, Any]:
        """Complete the authorization-code grant and store the new refresh token (and access token) in the
        ledger, replacing whatever was there. Used by ``ml-connector exact-online authorize``.

        :raises AuthenticationError: Exact refused the code or the client credentials.
        """
        client_id, client_secret = self.credentials()
        redirect = redirect_uri or self.extra("redirect_uri") or ""
        response = self.send("POST", self.token_url, idempotent=False, retry=TOKEN_RETRY, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "client_id": client_id,
            "client_secret": client_secret})
        body = http.json_or_text(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("refresh_token"):
            raise AuthenticationError(f"Exact Online refused the authorization code for connection "
                                      f"'{self.conn_id}' ({mapping.error_message(body) or response.status_code})",
                                      vendor=self.vendor, status=response.status_code)
        http.mask(body["refresh_token"])
        http.mask(body.get("access_token"))
        now = self.secret_store.clock()
        initial = self.extra("refresh_token")
        # the seed: the connection's refresh token this entry supersedes, so the entry wins over it from now on
        entry = {"refresh_token": body["refresh_token"], "access_token": body.get("access_token"),
                 "seed": _fingerprint(initial) if initial else None, "refreshed_at": now}
        expires_at = now + float(body.get("expires_in") or 600) if body.get("access_token") else 0.0
        self.secret_store.put(self.token_cache_key, _dumps(entry), expires_at=expires_at)
        return {"expires_in": body.get("expires_in")}

    # -- calls ---------------------------------------------------------------------------------------------

    @cached_property
    def _api_retry(self) -> http.RetryPolicy:
        # 429s are ours to wait out (the reset is in epoch milliseconds, which http.send would misread)
        return dataclasses.replace(self.retry, statuses=self.retry.statuses - {429})

    def _budget(self) -> str | None:
        """The budget row once the division is known (the bootstrapping ``current/Me`` has none yet)."""
        if self._division is None and self.extra("division") in (None, ""):
            return None
        return self.budget_name

    def _take_slot(self) -> None:
        ledger = self.ledger
        name = self._budget()
        if name is None:
            return
        per_minute = int(self.extra("calls_per_minute", CALLS_PER_MINUTE))
        while True:
            slot = rate_budget.take_call(ledger, name, now=time.time(), per_minute=per_minute)
            if slot.day_spent_until is not None:
                until = datetime.fromtimestamp(slot.day_spent_until, UTC).strftime("%Y-%m-%d %H:%M UTC")
                raise RetryableApiError(f"the daily Exact Online call budget of division {self.division} is spent "
                                        f"until {until}", vendor=self.vendor, status=429)
            if slot.wait <= 0:
                return
            self.waited += slot.wait
            self.sleep(min(slot.wait, 61.0))

    def _observe(self, response: requests.Response) -> None:
        name = self._budget()
        if name is None:
            return
        minute, day = _limits(response)
        if minute or day:
            rate_budget.observe(self.ledger, name, minute=minute, day=day)
        if response.status_code in ERROR_STATUSES:
            errors = rate_budget.count_error(self.ledger, name, now=time.time())
            limit = int(self.extra("max_errors_per_hour", MAX_ERRORS_PER_HOUR))
            if errors > limit:
                raise ConfigurationError(
                    f"Exact Online answered {errors} errors (400/401/403/404) to connection '{self.conn_id}' in "
                    f"the last hour; Exact blocks an app after more than 10, so this run stops. Fix the cause "
                    f"named in the task log first (last: HTTP {response.status_code})")

    def call(self, method: str, url: str, *, params: dict[str, Any] | None = None, json: Any = None,
             ok: tuple[int, ...] = (200, 201, 204), attempts: int = 3) -> Any:
        """One API call within the shared budget; a 429 waits for the announced reset (``attempts`` times).

        :raises ApiError: Exact's answer (its message text) for anything but ``ok``.
        """
        url = url if url.startswith("http") else f"{self.api_root}/{url.lstrip('/')}"
        for attempt in range(1, attempts + 1):
            self._take_slot()
            self.calls += 1
            response = self.send_authorized(method, url, params=params, json=json, retry=self._api_retry,
                                            headers={"Accept": "application/json",
                                                     "Prefer": "return=representation"},
                                            idempotent=method in ("GET", "PUT"))
            self._observe(response)
            if response.status_code == 429 and attempt < attempts:
                self.rate_limited += 1
                minute, day = _limits(response)
                reset = (minute or day or (0, time.time() + 5))[1]
                wait = max(reset - time.time(), 0.05)
                if wait > 120:
                    break
                log.warning("Exact Online answered 429: waiting %.1f s for the announced reset", wait)
                self.waited += wait
                self.sleep(wait)
                continue
            break
        body = http.json_or_text(response) if response.content else None
        if response.status_code not in ok:
            message = mapping.error_message(body) or response.reason or f"HTTP {response.status_code}"
            raise api_error(message, vendor=self.vendor, status=response.status_code,
                            code=response.headers.get("Reason") or None)
        return body

    def iter_all(self, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every record of a collection, following ``__next`` (which carries the query already)."""
        next_url: str | None = url
        while next_url:
            body = self.call("GET", next_url, params=params)
            yield from mapping.results(body)
            next_url, params = mapping.next_link(body), None

    # -- reads ---------------------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """``current/Me``: the user, and ``CurrentDivision``."""
        body = self.call("GET", "current/Me", params={"$select": "CurrentDivision,FullName,UserName"})
        records = mapping.results(body)
        if not records:
            raise ApiError("current/Me answered no user", vendor=self.vendor)
        return records[0]

    def iter_goods_deliveries(self, start: datetime, end: datetime) -> Iterator[dict[str, Any]]:
        """Goods deliveries modified in ``[start, end)`` with their lines (``$expand``), every page."""
        yield from self.iter_all(f"{self.division}/salesorder/GoodsDeliveries", {
            "$filter": mapping.deliveries_filter(start, end), "$select": mapping.DELIVERY_SELECT,
            "$expand": "GoodsDeliveryLines"})

    def get_goods_delivery(self, entry_id: str) -> dict[str, Any]:
        body = self.call("GET", f"{self.division}/salesorder/GoodsDeliveries({mapping.guid(entry_id)})",
                         params={"$select": mapping.DELIVERY_SELECT, "$expand": "GoodsDeliveryLines"})
        records = mapping.results(body)
        if not records:
            raise RecordError(f"goods delivery {entry_id} was not found", field="EntryID")
        return records[0]

    def get_address(self, address_id: str) -> dict[str, Any] | None:
        body = self.call("GET", f"{self.division}/crm/Addresses({mapping.guid(address_id)})",
                         params={"$select": mapping.ADDRESS_SELECT}, ok=(200, 404))
        records = mapping.results(body)
        return records[0] if records else None

    def get_item(self, item_id: str) -> dict[str, Any] | None:
        body = self.call("GET", f"{self.division}/logistics/Items({mapping.guid(item_id)})",
                         params={"$select": mapping.ITEM_SELECT}, ok=(200, 404))
        records = mapping.results(body)
        return records[0] if records else None

    def get_sales_order(self, number: str | int) -> dict[str, Any] | None:
        """The sales order (currency, line prices) by its number."""
        records = list(self.iter_all(f"{self.division}/salesorder/SalesOrders", {
            "$filter": f"OrderNumber eq {int(number)}", "$select": mapping.SALES_ORDER_SELECT,
            "$expand": "SalesOrderLines"}))
        return records[0] if records else None

    # -- writes --------------------------------------------------------------------------------------------

    def update_goods_delivery(self, entry_id: str, changes: dict[str, Any]) -> None:
        """PUT fields of an existing goods delivery (Exact answers 204).

        :raises RecordError: Exact refused a field on the existing record (its message is kept).
        """
        self._put(f"{self.division}/salesorder/GoodsDeliveries({mapping.guid(entry_id)})", changes,
                  what=f"goods delivery {entry_id}")

    def update_goods_delivery_line(self, line_id: str, changes: dict[str, Any]) -> None:
        self._put(f"{self.division}/salesorder/GoodsDeliveryLines({mapping.guid(line_id)})", changes,
                  what=f"goods delivery line {line_id}")

    def _put(self, url: str, changes: dict[str, Any], *, what: str) -> None:
        try:
            self.call("PUT", url, json=changes, ok=(200, 204))
        except ApiError as exc:
            if exc.status in (400, 403) and not exc.retryable:
                raise RecordError(f"Exact Online refused {', '.join(changes)} on {what}: {exc.message}",
                                  field=", ".join(changes), code=str(exc.status)) from None
            raise

    # -- Airflow UI ----------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """``current/Me`` with the connection's token (a rotating refresh token cannot be tried without spending
        it, so the test uses and keeps the ledger's one, refreshing under the lease when due)."""
        try:
            me = self.me()
        except Exception as exc:
            return False, self.check_failure_message(exc, label="Exact Online")
        return True, (f"Connected to Exact Online at {self.base_url} as {me.get('FullName') or me.get('UserName')}"
                      f" (current division {me.get('CurrentDivision')})")
