"""UPS hook: OAuth token cache, Address Validation, Ship, Track, Void.

This is the only place that talks HTTP to UPS (karrio's "one I/O seam"); request bodies and response parsing
are the pure functions in :mod:`ml_connector.carriers.ups`.

Auth: OAuth client credentials (:class:`~ml_connector.hooks.auth.ClientCredentialsAuth`). The token request
sends the client id/secret as HTTP Basic and the account number as ``x-merchant-id``; the token is cached
encrypted in the ledger, shared by every task and worker, renewed before ``issued_at + expires_in``, and a 401
renews it once and retries once. A token request refused with ``10429`` (the token quota is spent, whatever the
HTTP status) or a 5xx opens the secret store's breaker: no task or worker asks UPS for a token again before the
window has passed (:mod:`ml_connector.secrets`).

Connection ``ups_default`` (type ``ups``): host = API base (``https://onlinetools.ups.com``; CIE
``https://wwwcie.ups.com``), login = client id, password = client secret, extras ``account_number`` (6 chars),
``label_format``, ``label_stock_height``, ``track_alert_credential``, ``transaction_src``, and the transport
extras of :class:`~ml_connector.hooks.base.ConnectorHook` (``verify``, ``proxies``, ``cert``, ``timeout``).
None of the extras is sent as a header.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

from ml_connector import http
from ml_connector.carriers import ups as mapping
from ml_connector.carriers.ups.rules import check_shipper_number
from ml_connector.errors import AuthenticationError
from ml_connector.hooks.auth import AuthStyle
from ml_connector.hooks.base import CHECK_RETRY, TOKEN_TIMEOUT, ConnectorHook
from ml_connector.models import Address, AddressValidation, Order, ShipmentResult, TrackingResult
from ml_connector.secrets import refused

DEFAULT_HOST = "https://onlinetools.ups.com"
TOKEN_PATH = "/security/v1/oauth/token"  # UPS serves OAuth outside the /api prefix of the other APIs
SHIP_VERSION = "v2409"
XAV_VERSION = "v2"
TRACK_VERSION = "v1"
#: "Too Many Requests": on the token endpoint, the token quota is spent (the breaker's reason ``quota``)
TOKEN_QUOTA_CODE = "10429"


class UpsHook(ConnectorHook):
    """Talks to the UPS REST APIs with a bearer token shared by every task and worker.

    The token lives encrypted in the ledger and is refreshed a few minutes before ``issued_at + expires_in``
    (UPS cut the lifetime from 4 h to 1 h in 2026: never assume one), under a lease, so concurrent tasks make one
    token request. A 401 forces one refresh and one retry. A refused token request (``10429``) is shared through
    the ledger: the other tasks wait it out instead of asking again.

    :param ups_conn_id: the Airflow connection id.
    :param kwargs: :class:`~ml_connector.hooks.base.ConnectorHook` options (``ledger``, ``retry``, ``timeout``,
        ``refresh_margin``...).
    """

    conn_name_attr = "ups_conn_id"
    default_conn_name = "ups_default"
    conn_type = "ups"
    hook_name = "UPS"
    vendor = "ups"
    default_host = DEFAULT_HOST

    def __init__(self, ups_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(ups_conn_id, **kwargs)
        self.ups_conn_id = ups_conn_id

    # -- settings from the connection --------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The API base URL (the connection's host; production UPS when it is empty)."""
        return self.base_url

    @property
    def account_number(self) -> str:
        """The 6-character UPS shipper number (extra ``account_number``)."""
        return check_shipper_number(self.extra("account_number", required=True),
                                    where=f"connection '{self.conn_id}': account_number")

    @property
    def label_format(self) -> str:
        """``GIF`` (default), ``ZPL``, ``EPL`` or ``SPL``."""
        return str(self.extra("label_format", "GIF")).upper()

    @property
    def label_stock_height(self) -> str:
        """Label stock height in inches: ``6`` (4x6, default) or ``8``."""
        return str(self.extra("label_stock_height", "6"))

    @property
    def transaction_src(self) -> str:
        """The client application name sent as ``transactionSrc``."""
        return str(self.extra("transaction_src", "ml-connector"))

    @property
    def token_cache_key(self) -> str:
        """``ups:token:<host>:<client id>`` (not a secret)."""
        client_id, _ = self.credentials()
        return f"ups:token:{self.host}:{client_id}"

    # -- OAuth -----------------------------------------------------------------------------------------

    def build_auth(self) -> AuthStyle:
        """Client-credentials bearer token from the shared ledger cache."""
        return self.client_credentials_auth()

    def fetch_token(self, *, retry: http.RetryPolicy | None = None) -> tuple[str, float]:
        """Request a new token with the connection's client id/secret, bypassing the cache.

        :param retry: retry policy of this one request (default: :attr:`token_retry`, which does not retry a 429).
        :return: ``(access_token, expires_at_epoch)``.
        :raises AuthenticationError: UPS refused the client id/secret.
        :raises RetryableApiError: the token quota is spent (``10429``, reason ``quota``) or UPS answered 5xx
            after the retries; marked for the secret store's breaker.
        """
        client_id, client_secret = self.credentials()
        response = self.send(
            "POST", f"{self.host}{TOKEN_PATH}", idempotent=True, retry=retry or self.token_retry, timeout=TOKEN_TIMEOUT,
            auth=(client_id, client_secret),
            headers={"x-merchant-id": self.account_number, "Content-Type": "application/x-www-form-urlencoded"},
            data={"grant_type": "client_credentials"},
        )
        body = http.json_or_text(response)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            error = mapping.parse_error(response.status_code, body)
            if error.retryable:  # 10429 comes with 429, 400 or 403: a quota, not a wrong secret
                reason = "quota" if error.code == TOKEN_QUOTA_CODE else None
                raise refused(error, reason=reason, retry_after=http.retry_after_seconds(response))
            if response.status_code in (400, 401, 403):
                raise AuthenticationError(
                    f"UPS refused the client id/secret of connection '{self.conn_id}' ({error.message}); "
                    "check them in the UPS developer portal", vendor="ups", status=response.status_code,
                    code=error.code)
            raise error
        token = body["access_token"]
        http.mask(token)
        return token, _token_expiry(body, now=self.clock())

    def _call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
              idempotent: bool | None = None) -> tuple[int, Any]:
        """Send an authenticated API call; one forced token refresh on 401. Returns ``(status, body)``."""
        # Track rejects a call without transId/transactionSrc; the other APIs accept them
        headers = {"Accept": "application/json", "transId": uuid.uuid4().hex, "transactionSrc": self.transaction_src}
        response = self.send_authorized(method, f"{self.host}{path}", json=json, params=params, headers=headers,
                                        idempotent=idempotent)
        body = http.json_or_text(response)
        if response.status_code >= 400:
            raise mapping.parse_error(response.status_code, body)
        return response.status_code, body

    # -- APIs --------------------------------------------------------------------------------------------

    def validate_address(self, address: Address, *, max_candidates: int = 5) -> AddressValidation:
        """Street-level validation and residential/commercial classification (request option 3).

        :param address: the address to check.
        :param max_candidates: at most this many candidates when the address is ambiguous.
        """
        _, body = self._call("POST", f"/api/addressvalidation/{XAV_VERSION}/3", json=mapping.build_xav_request(address),
                             params={"maximumcandidatelistsize": max_candidates}, idempotent=True)
        return mapping.parse_xav_response(body)

    def create_shipment(self, order: Order, *, service_code: str, shipper: Address, reference: str,
                        ship_from: Address | None = None, residential: bool | None = None,
                        negotiated_rates: bool = True, reference_code: str | None = None,
                        extra_references: Iterable[str] = (), reason_for_export: str = "SALE") -> ShipmentResult:
        """Buy a label. Not idempotent at UPS: callers must hold the ledger claim (see CreateShipmentOperator).

        :param order: the order to ship (ship-to and packages).
        :param service_code: the UPS service code (``03`` Ground...).
        :param shipper: the shipper's address.
        :param reference: the reference printed on the label and used to find it again.
        :param ship_from: where the parcel leaves from, when not the shipper's address.
        :param residential: the residential indicator for the ship-to.
        :param negotiated_rates: ask for the account's negotiated rates.
        :param reference_code: the UPS reference code qualifying ``reference``.
        :param extra_references: more references (PO numbers).
        :param reason_for_export: the commercial invoice's reason when the goods leave the customs area.
        :raises AmbiguousRequestError: no answer came back; look the label up by reference before retrying.
        """
        body = mapping.build_ship_request(
            order, service_code=service_code, shipper=shipper, shipper_number=self.account_number,
            ship_from=ship_from, reference=reference, reference_code=reference_code,
            extra_references=list(extra_references),
            negotiated_rates=negotiated_rates, label_format=self.label_format,
            label_stock_height=self.label_stock_height, residential=residential, customer_context=order.number,
            reason_for_export=reason_for_export,
        )
        _, answer = self._call("POST", f"/api/shipments/{SHIP_VERSION}/ship", json=body, idempotent=False)
        return mapping.parse_ship_response(answer)

    def track(self, tracking_number: str, *, signature: bool = False) -> TrackingResult:
        """Current status and scans of one package (TW0001 "not found" comes back as HTTP 200).

        :param tracking_number: the 1Z number.
        :param signature: ask for the proof-of-delivery signature image.
        """
        _, body = self._call("GET", f"/api/track/{TRACK_VERSION}/details/{quote(tracking_number)}",
                             params=mapping.build_track_params(signature=signature))
        return mapping.parse_track_response(body, tracking_number)

    def track_by_reference(self, reference: str, *, days_back: int = 14,
                           today: date | None = None) -> list[TrackingResult]:
        """Packages shipped under ``reference`` in the last ``days_back`` days (adopting a crashed attempt).

        :param reference: the shipment reference.
        :param days_back: how far back to look.
        :param today: the end of the window (default: today).
        """
        today = today or date.today()
        params = mapping.build_reference_track_params(self.account_number, today - timedelta(days=days_back),
                                                      today)
        _, body = self._call("GET", f"/api/track/{TRACK_VERSION}/reference/details/{quote(reference, safe='')}",
                             params=params)
        return mapping.parse_reference_track_response(body)

    def void_shipment(self, shipment_id: str, tracking_numbers: Iterable[str] | None = None) -> bool:
        """Void a shipment (or some of its packages); True when UPS reports it voided.

        :param shipment_id: the shipment identification number.
        :param tracking_numbers: only these packages of it (default: the whole shipment).
        """
        params = None
        numbers = list(tracking_numbers or [])
        if numbers:
            params = {"trackingnumber": numbers[0] if len(numbers) == 1 else "[" + ",".join(numbers) + "]"}
        _, body = self._call("DELETE", f"/api/shipments/{SHIP_VERSION}/void/cancel/{quote(shipment_id)}",
                             params=params)
        return mapping.parse_void_response(body)

    # -- Track Alert and Quantum View (tracking) ------------------------------------------------------------

    @property
    def track_alert_credential(self) -> str | None:
        """Track Alert v1: the opaque credential UPS sends back in the ``credential`` header (extra
        ``track_alert_credential``)."""
        value = self.extra("track_alert_credential")
        if value:
            http.mask(str(value))
        return str(value) if value else None

    def subscribe_packages(self, numbers: list[str], *, style: str, url: str | None = None,
                           kind: str = "standard") -> tuple[list[str], list[str]]:
        """Subscribe one batch (at most 100) to Track Alert; ``(valid, invalid)`` numbers.

        A 400 that lists ``invalidTrackingNumbers`` rejected the whole batch for those numbers: the others are
        resubmitted once without them. Other refusals raise (a 401/403: the account is not enabled for Track
        Alert, a configuration error).
        """
        from ml_connector.carriers.ups import track_alert

        body = track_alert.build_subscription_request(numbers, style=style, url=url,  # type: ignore[arg-type]
                                                      credential=self.track_alert_credential if style == "v1"
                                                      else None)
        headers = {"Accept": "application/json", "transId": uuid.uuid4().hex, "transactionSrc": self.transaction_src}
        response = self.send_authorized("POST", f"{self.host}{track_alert.subscription_path(style, kind)}",  # type: ignore[arg-type]
                                        json=body, headers=headers, idempotent=True)
        answer = http.json_or_text(response)
        valid, invalid = track_alert.parse_subscription_response(answer)
        if response.status_code == 400 and invalid:
            rest = [n for n in numbers if n not in set(invalid)]
            if not rest:
                return [], invalid
            again_valid, again_invalid = self.subscribe_packages(rest, style=style, url=url, kind=kind)
            return again_valid, sorted(set(invalid) | set(again_invalid))
        if response.status_code >= 400:
            raise mapping.parse_error(response.status_code, answer)
        return valid, invalid

    def quantum_view_events(self, subscription: str, *, max_pages: int = 50) -> list[TrackingResult]:
        """Every unread Quantum View record of ``subscription``, following ``Bookmark`` until none is left."""
        from ml_connector.carriers.ups import quantum_view

        results: list[TrackingResult] = []
        bookmark: str | None = None
        for _ in range(max_pages):
            _, body = self._call("POST", quantum_view.PATH, idempotent=True,
                                 json=quantum_view.build_events_request(subscription, bookmark=bookmark))
            page, bookmark, _errors = quantum_view.parse_events_response(body)
            results.extend(page)
            if not bookmark:
                break
        return results

    # -- Airflow UI ----------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """The UI "Test" button: request a new token with the connection's client id/secret.

        The cached token is neither read nor replaced: a wrong secret fails here even while a good token from
        before sits in the ledger.

        :return: ``(ok, message)``: what was reached (host, account, token lifetime), or why not.
        """
        try:
            _token, expires_at = self.fetch_token(retry=CHECK_RETRY)
            account = self.account_number
        except Exception as exc:  # the message is what the person reads in the UI
            return False, self.check_failure_message(exc, label="UPS")
        minutes = max(0, int((expires_at - self.clock()) / 60))
        return True, (f"Authenticated with UPS at {self.host} as client '{self.connection.login}' for account "
                      f"{account}; a new token is valid for {minutes} minutes")


def _token_expiry(body: dict[str, Any], *, now: float | None = None) -> float:
    """``issued_at`` (epoch ms, a string) + ``expires_in`` (seconds, a string); ``now`` if issued_at is absent."""
    now = time.time() if now is None else now
    try:
        issued = float(body.get("issued_at")) / 1000.0
    except (TypeError, ValueError):
        issued = now
    if abs(issued - now) > 3600:  # clock skew or a seconds value: trust our clock for the start
        issued = now
    try:
        lifetime = float(body.get("expires_in"))
    except (TypeError, ValueError):
        raise AuthenticationError("UPS token answer has no usable expires_in", vendor="ups") from None
    return issued + lifetime
