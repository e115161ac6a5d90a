"""The one HTTP layer: session factory, timeouts, retries with full-jitter backoff, safe logging.

Retries (tenacity): 429, 502, 503, 504 and connection errors, with exponential backoff and full jitter
(``wait_random_exponential``), honouring ``Retry-After`` or a rate-limit reset header when the vendor sends one
(UPS sends none; ShipStation sends ``X-Rate-Limit-Reset``).

A non-idempotent request (UPS Ship: it buys a label) is never retried blindly: it is retried only when it
provably did not reach the server or was refused with 429. "Provably" is decided on the exception types of
urllib3/requests (a refused connection, a name that does not resolve, a connect timeout, also behind a proxy),
never on message text. A read timeout, a dropped connection or a 5xx after sending raises
:class:`~ml_connector.errors.AmbiguousRequestError` so that the caller looks the result up before sending it
again.

Logs show method, URL path, status and duration — never headers, bodies or query strings that may carry secrets.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import tenacity
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from ml_connector import __version__
from ml_connector.errors import AmbiguousRequestError, RetryableError

log = logging.getLogger(__name__)

USER_AGENT = f"ml-connector/{__version__} (+airflow)"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RATE_LIMIT_RESET_HEADERS = ("Retry-After", "X-Rate-Limit-Reset", "X-RateLimit-Reset", "RateLimit-Reset")


@dataclass(frozen=True)
class RetryPolicy:
    """How :func:`send` retries.

    :param attempts: total tries, the first included.
    :param backoff: base seconds of the exponential backoff (full jitter: a random wait in
        ``[0, min(max_backoff, backoff * 2**n)]``).
    :param max_backoff: cap of one wait.
    :param max_retry_after: the longest server-requested wait honoured in-process; a longer one gives up and
        leaves the retry to Airflow.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    statuses: frozenset[int] = RETRY_STATUSES


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


def new_session(*, pool_size: int = 16, adapter: HTTPAdapter | None = None) -> requests.Session:
    """A ``requests.Session`` with a connection pool sized for bounded concurrency and our User-Agent.

    Retries are done by :func:`send`, not by urllib3, so that every wait is logged and jittered the same way.

    :param pool_size: connections kept per host.
    :param adapter: the transport adapter to mount for ``http://`` and ``https://`` instead of a plain
        ``HTTPAdapter`` (hooks pass a TCP keep-alive adapter); it must not retry (``max_retries=0``).
    """
    session = requests.Session()
    if adapter is None:
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def safe_url(url: str) -> str:
    """``scheme://host/path`` without query string or credentials, for logs and error messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def retry_after_seconds(response: requests.Response, *, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (``Retry-After`` seconds or HTTP date, or a reset header)."""
    for header in RATE_LIMIT_RESET_HEADERS:
        raw = response.headers.get(header)
        if raw is None:
            continue
        raw = raw.strip()
        try:
            value = float(raw)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if header == "Retry-After" else None
            if parsed is None:
                continue
            value = parsed.timestamp() - (time.time() if now is None else now)
        else:
            if value > 1e9:  # an epoch timestamp rather than a delay
                value -= time.time() if now is None else now
        return max(0.0, value)
    return None


class TransportError(RetryableError):
    """No answer at all (refused, unresolvable, timed out, dropped) after the retries.

    :param message: where and why, for logs and the UI.
    :param reason: the short reason alone (``"connection refused"``, ``"name not resolved"``...).
    :param url: the URL without query string (:func:`safe_url`).
    :param attempts: how many tries were made.
    """

    def __init__(self, message: str, *, reason: str = "", url: str = "", attempts: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.url = url
        self.attempts = attempts

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of :attr:`url`."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else self.url


class _RetryableResponse(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class _RetryableTransport(Exception):
    def __init__(self, cause: Exception, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps: ``__cause__``, ``__context__``, the first argument
    (``requests`` wraps urllib3's ``MaxRetryError`` there), ``.reason`` (``MaxRetryError``) and
    ``.original_error`` (urllib3's ``ProxyError``)."""
    seen: set[int] = set()
    stack: list[object] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None),
                      getattr(current, "original_error", None), *current.args[:2]])


#: Failures that happen before a single byte of the request went out (refused, unresolvable, connect timeout).
_NOT_SENT = (urllib3.exceptions.NewConnectionError,  # includes NameResolutionError
             urllib3.exceptions.ConnectTimeoutError,
             requests.ConnectTimeout)
#: Failures after the connection was up: the server may have received (and acted on) the request.
_MAYBE_SENT = (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError, requests.ReadTimeout)


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request provably never reached the server (safe to retry even a POST).

    Decided on exception types, not messages: a connect timeout, a refused connection or a name that does not
    resolve (urllib3 ``NewConnectionError``/``NameResolutionError``/``ConnectTimeoutError``, also behind a
    proxy) is "never sent"; a read timeout or a dropped connection anywhere in the chain is not.
    """
    causes = list(_causes(exc))
    if any(isinstance(c, _MAYBE_SENT) for c in causes):
        return False
    return any(isinstance(c, _NOT_SENT) for c in causes)


def describe_transport_error(exc: BaseException) -> str:
    """A short reason for a person ("connection refused", "name not resolved", "read timeout", ...)."""
    causes = list(_causes(exc))
    for kind, reason in ((urllib3.exceptions.NameResolutionError, "name not resolved"),
                         (ConnectionRefusedError, "connection refused"),
                         (urllib3.exceptions.ReadTimeoutError, "read timeout"),
                         (requests.ReadTimeout, "read timeout"),
                         (urllib3.exceptions.ConnectTimeoutError, "connect timeout"),
                         (requests.ConnectTimeout, "connect timeout"),
                         (requests.exceptions.SSLError, "TLS handshake failed"),
                         (urllib3.exceptions.ProxyError, "proxy unreachable"),
                         (urllib3.exceptions.NewConnectionError, "cannot connect"),
                         (urllib3.exceptions.ProtocolError, "connection dropped")):
        if any(isinstance(c, kind) for c in causes):
            return reason
    return type(exc).__name__


def _wait(policy: RetryPolicy):
    jitter = tenacity.wait_random_exponential(multiplier=policy.backoff, max=policy.max_backoff)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponse):
            asked = retry_after_seconds(exc.response)
            if asked is not None:
                return asked
        return jitter(state)

    return wait


def send(session: requests.Session, method: str, url: str, *, vendor: str, idempotent: bool | None = None,
         retry: RetryPolicy = DEFAULT_RETRY, timeout: tuple[float, float] = (10.0, 60.0),
         headers: Mapping[str, str] | None = None, **kwargs: Any) -> requests.Response:
    """Send one request with retries; return the final response (the caller maps error statuses).

    :param vendor: name used in logs and errors.
    :param idempotent: defaults to True for GET/HEAD/PUT/DELETE/OPTIONS and False for POST/PATCH.
        Pass ``True`` for a POST that only reads (OAuth token, address validation).
    :raises AmbiguousRequestError: a non-idempotent request may have taken effect but no answer came back.
    :raises TransportError: connection errors or timeouts that outlasted the retries (a
        :class:`~ml_connector.errors.RetryableError`).
    """
    method = method.upper()
    if idempotent is None:
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
    where = f"{vendor} {method} {safe_url(url)}"

    def attempt() -> requests.Response:
        started = time.monotonic()
        try:
            response = session.request(method, url, headers=headers, timeout=timeout, **kwargs)
        except requests.RequestException as exc:
            reason = f"{describe_transport_error(exc)} ({type(exc).__name__})"
            if idempotent or _never_sent(exc):
                log.warning("%s failed: %s; will retry", where, reason)
                raise _RetryableTransport(exc, reason) from exc
            raise AmbiguousRequestError(
                f"{where}: no answer ({reason}); the request may have taken effect"
            ) from None
        elapsed = (time.monotonic() - started) * 1000
        # a lane makes thousands of calls: successes at DEBUG, refusals and errors at INFO (retries: WARNING)
        log.log(logging.DEBUG if response.status_code < 400 else logging.INFO, "%s -> %s in %.0f ms", where,
                response.status_code, elapsed)
        if response.status_code in retry.statuses:
            if idempotent or response.status_code == 429:
                raise _RetryableResponse(response)
            raise AmbiguousRequestError(
                f"{where}: HTTP {response.status_code} after sending; the request may have taken effect"
            )
        return response

    def before_sleep(state: tenacity.RetryCallState) -> None:
        log.warning("%s: attempt %d failed (%s); retrying in %.2f s", where, state.attempt_number,
                    state.outcome.exception() if state.outcome else "?", state.upcoming_sleep)

    def give_up_on_long_wait(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _RetryableResponse):
            asked = retry_after_seconds(exc.response)
            return asked is not None and asked > retry.max_retry_after
        return False

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type((_RetryableResponse, _RetryableTransport)),
        wait=_wait(retry),
        stop=tenacity.stop_after_attempt(retry.attempts) | give_up_on_long_wait,
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _RetryableResponse as exc:
        return exc.response  # retries used up: the caller turns the status into a RetryableApiError
    except _RetryableTransport as exc:
        raise TransportError(f"{where}: {exc.reason} after {retry.attempts} attempts",
                             reason=describe_transport_error(exc.cause), url=safe_url(url),
                             attempts=retry.attempts) from None


def mask(value: str | None) -> None:
    """Register a secret with Airflow's log masker (no-op outside Airflow or for empty values)."""
    if not value:
        return
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow is a dependency, but keep the pure layer importable
        return
    mask_secret(value)


def json_or_text(response: requests.Response) -> Any:
    """The JSON body, or the text when it is not JSON (error pages from proxies)."""
    try:
        return response.json()
    except ValueError:
        return response.text


class _HideQueryStrings(logging.Filter):
    """urllib3 logs every request line at DEBUG with its query string, and some APIs take credentials there
    (SYSPRO e.net: ``Logon?OperatorPassword=``, every call's ``UserId`` session id): cut the query strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a.split("?", 1)[0] + "?<query hidden>" if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_HideQueryStrings())
