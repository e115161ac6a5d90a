"""The one UPS error normaliser: every UPS error body -> one typed :class:`~ml_connector.errors.ApiError`.

All UPS REST APIs answer errors as ``{"response": {"errors": [{"code", "message"}]}}`` (Shipping.yaml
``#/components/schemas/ErrorResponse``, Tracking.yaml ``#/components/schemas/Response``, UPSTrackAlert.yaml
``#/components/schemas/ErrorMessage``; notes section 8).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ml_connector import errors
from ml_connector.carriers.ups.normalise import as_list, strip_str

VENDOR = "ups"
# Codes that say "try later" whatever the HTTP status: 10429 "Too Many Requests" (api-documentation issue 123);
# 10004 and VSS100 are "Transient" in UPSTrackAlert.yaml #/info/description "Error Codes".
RETRYABLE_CODES = frozenset({"10429", "10004", "VSS100"})
_SNIPPET = 200  # characters of a non-JSON body kept in the message (gateway HTML pages can be long)


def _error_entries(body: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(body, Mapping):
        return []
    response = body.get("response") or body.get("Response")
    holder = response if isinstance(response, Mapping) else body
    raw = holder.get("errors", holder.get("Errors"))
    entries = []
    for error in as_list(raw):
        if isinstance(error, Mapping):
            code, message = strip_str(error.get("code")), strip_str(error.get("message"))
            if code or message:
                entries.append((code, message))
        elif strip_str(error):
            entries.append((None, strip_str(error)))
    return entries


def parse_error(status: int, body: Mapping[str, Any] | str | bytes | None) -> errors.ApiError:
    """Fold a UPS error answer into one typed error: ``"UPS <code>: <message>"`` (several joined with ``"; "``).

    Retryability follows the HTTP status (429, 5xx, 408) through :func:`ml_connector.errors.api_error`,
    except that the codes in :data:`RETRYABLE_CODES` (``10429``) are retryable whatever the status.

    :param status: the HTTP status code.
    :param body: the decoded JSON body, or the raw text when it was not JSON, or ``None``.
    :return: the error to raise; its ``code`` is the first UPS error code.
    """
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = None
        if decoded is not None:
            body = decoded
    entries = _error_entries(body)
    if entries:
        message = "; ".join(f"UPS {code}: {text}" if code and text else f"UPS {code or text}"
                            for code, text in entries)
    elif isinstance(body, str) and body.strip():
        message = f"UPS answered HTTP {status} with a non-JSON body: {' '.join(body.split())[:_SNIPPET]}"
    else:
        message = f"UPS answered HTTP {status} without error details"
    codes = [code for code, _ in entries if code]
    first_code = codes[0] if codes else None
    if any(code in RETRYABLE_CODES for code in codes):
        # retryable=True must be explicit: ApiError.__init__ derives it from the status otherwise, which
        # would make a RetryableApiError carrying HTTP 400/403 report retryable=False.
        return errors.RetryableApiError(message, vendor=VENDOR, status=status, code=first_code, retryable=True)
    return errors.api_error(message, vendor=VENDOR, status=status, code=first_code)
