"""Typed errors: every error says whether retrying can help.

The DAG's ``ExceptionRetryPolicy`` retries :class:`RetryableError` (429, 5xx, timeouts) and fails
:class:`PermanentError` at once; operators quarantine the ledger record of a :class:`RecordError`.
Messages never contain secrets: they name the record, the field and what to do.
"""

from __future__ import annotations

#: longest value quoted whole in a message a person reads (ledger, logs, UI); what is sent is never cut
SHOWN_MAX = 200


def shown(value: object, limit: int = SHOWN_MAX) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters with the full length said, so that a
    huge field cannot flood the ledger, the task log or the UI."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


class ConnectorError(Exception):
    """Base class. ``retryable`` tells callers (and Airflow's retry policy) whether to try again."""

    retryable: bool = False

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}" if self.code else self.message


class RetryableError(ConnectorError):
    """Transient: rate limits, 5xx, timeouts, dropped connections. Retrying later can succeed."""

    retryable = True


class PermanentError(ConnectorError):
    """Retrying the same call cannot succeed: fix the data or the configuration first."""

    retryable = False


class ConfigurationError(PermanentError):
    """A connection or a pipeline setting is missing or wrong (the message names it)."""


class RecordError(PermanentError):
    """Bad input on one record: the record is quarantined with this message; the others go on.

    :param record: the ERP document number the error is about.
    :param field: the field at fault, when there is one.
    """

    def __init__(self, message: str, *, record: str | None = None, field: str | None = None,
                 code: str | None = None) -> None:
        prefix = f"order {record}: " if record else ""
        super().__init__(prefix + message, code=code)
        self.record = record
        self.field = field


class UnknownShipMethod(RecordError):
    pass


class MissingWeight(RecordError):
    pass


class ReferenceTooLong(RecordError):
    pass


class InvalidAddress(RecordError):
    pass


class ApiError(ConnectorError):
    """An HTTP API answered with an error.

    :param vendor: ``ups``, ``business_central``, ...
    :param status: the HTTP status code (kept, so that 429s can be told apart from 400s).
    :param code: the vendor's own error code (UPS ``120541``, ``10429``...).
    """

    def __init__(self, message: str, *, vendor: str, status: int | None = None, code: str | None = None,
                 retryable: bool | None = None) -> None:
        super().__init__(message, code=code)
        self.vendor = vendor
        self.status = status
        if retryable is None:
            # the typed subclasses below fix the answer; the generic class decides from the status
            retryable = type(self).__dict__.get("retryable", None) if type(self) is not ApiError else None
        if retryable is None:
            retryable = status is not None and (status == 429 or status >= 500 or status == 408)
        self.retryable = retryable

    def __str__(self) -> str:
        status = f"HTTP {self.status} " if self.status is not None else ""
        code = f"[{self.code}] " if self.code else ""
        return f"{self.vendor} {status}{code}{self.message}"


class RetryableApiError(ApiError, RetryableError):
    """An API error that retrying can fix (429, 5xx)."""

    retryable = True


class PermanentApiError(ApiError, PermanentError):
    """An API error that retrying cannot fix (4xx other than 408/429)."""

    retryable = False


class AuthenticationError(PermanentApiError):
    """Credentials were refused even after a fresh token: check the connection."""


class ConflictError(PermanentApiError):
    """A concurrency token (etag) was stale and re-reading did not resolve it."""


class AmbiguousRequestError(RetryableError):
    """A non-idempotent request (UPS Ship) was sent and no answer came back: it may or may not have
    taken effect. Callers must look the result up (track by reference) before sending it again."""


def api_error(message: str, *, vendor: str, status: int | None, code: str | None = None,
              retryable: bool | None = None) -> ApiError:
    """Build the right :class:`ApiError` subclass for an HTTP status (``retryable`` overrides the status,
    for vendor codes such as UPS ``10429`` that are transient whatever the status)."""
    if retryable is True:
        return RetryableApiError(message, vendor=vendor, status=status, code=code)
    if retryable is False:
        return PermanentApiError(message, vendor=vendor, status=status, code=code)
    if status in (401, 403):
        return AuthenticationError(message, vendor=vendor, status=status, code=code)
    if status is not None and (status == 429 or status >= 500 or status == 408):
        return RetryableApiError(message, vendor=vendor, status=status, code=code)
    return PermanentApiError(message, vendor=vendor, status=status, code=code)
