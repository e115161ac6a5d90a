"""Error bodies of the Business Central sandbox: BC's OData errors and Microsoft Entra's token errors.

Codes marked *observed* come from cited public reports, *sandbox* ones are our choice where Microsoft
documents none.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

from ml_connector_sandbox.common import VendorError

# -- Business Central (OData) --------------------------------------------------------------------------
#: observed (docs/vendors/erp-and-shipstation.md; dynamics365smb-devitpro-pb#813): PATCH without (or with a malformed) If-Match.
INVALID_TOKEN = ("BadRequest_InvalidToken", "Could not validate the client concurrency token required by the "
                 "service. Please provide a valid token in the client request.")
#: observed (docs/vendors/erp-and-shipstation.md: "a stale etag gives 412"): If-Match no longer matches.
ENTITY_CHANGED = ("Request_EntityChanged", "Another user has already changed the record.")
#: observed (brief): missing/unknown/expired bearer token.
AUTH_INVALID = ("Authentication_InvalidCredentials", "The credentials provided are incorrect")
#: observed (docs/vendors/erp-and-shipstation.md: "429 Too Many Requests"); message wording is ours.
TOO_MANY_REQUESTS = ("Application_TooManyRequests",
                     "Too many requests reached. Actual (601). Maximum (600). Please retry the request later.")
#: observed (microsoft/AL#8283): route that no published API serves (e.g. the AL extension not installed).
NO_RESOURCE = "BadRequest_NotFound"
#: sandbox: a record id that does not exist (BC answers 404; the code is our pick).
RECORD_NOT_FOUND = "Internal_RecordNotFound"
#: observed (dynamics365smb-devitpro-pb#609) code; used for an unknown company id (404 here).
COMPANY_NOT_FOUND = "Internal_CompanyNotFound"
#: sandbox: AL Error() raised by the write-back page (unknown shipping agent/service).
DIALOG = "Application_DialogException"
#: sandbox: a Text value longer than its field.
STRING_TOO_LONG = "Application_StringExceededLength"


def odata_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> VendorError:
    """A BC OData error: ``{"error": {"code": ..., "message": ...}}``."""
    return VendorError(status, {"error": {"code": code, "message": message}}, headers)


def bad_request(message: str) -> VendorError:
    """400 ``BadRequest`` (query syntax, unknown properties, wrong types)."""
    return odata_error(400, "BadRequest", message)


def entra_error(status: int, error: str, aadsts: int, description: str) -> VendorError:
    """A Microsoft Entra token-endpoint error (``error``, ``error_description`` starting with AADSTS...)."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return VendorError(status, {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: {correlation} "
                             f"Timestamp: {now}",
        "error_codes": [aadsts],
        "timestamp": now,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    })



def not_found(request_url: object) -> VendorError:
    """BC's 404 for a route that no published API serves."""
    return odata_error(404, NO_RESOURCE, f"No HTTP resource was found that matches the request URI '{request_url}'.")


def record_not_found(entity: str, key: str) -> VendorError:
    """404 for a record id that does not exist."""
    return odata_error(404, RECORD_NOT_FOUND, f"The {entity} does not exist. Identification fields and values: "
                                              f"Id='{key}'")


def method_not_allowed(message: str) -> VendorError:
    """405 ``BadRequest_MethodNotAllowed``."""
    return odata_error(405, "BadRequest_MethodNotAllowed", message)
