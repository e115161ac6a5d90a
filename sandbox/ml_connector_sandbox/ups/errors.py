"""UPS error bodies and the codes the UPS sandbox answers with.

Every UPS REST error has the shape ``{"response": {"errors": [{"code": "...", "message": "..."}]}}``
(Shipping.yaml ``#/components/schemas/ErrorResponse``, OAuthClientCredentials.yaml
``#/components/schemas/tokenErrorResponse``, Tracking.yaml ``#/components/schemas/Response``).
Codes marked "observed" were seen from the real API (source given); "sandbox" codes are our choice
where UPS documents none. Clients should branch on the HTTP status, not on sandbox codes.
"""

from __future__ import annotations

from ml_connector_sandbox.common import VendorError

# -- OAuth ---------------------------------------------------------------------------------------
#: observed (karrioapi/karrio#503): 401 from /security/v1/oauth/token for a bad client id/secret.
CLIENT_INVALID = ("10401", "ClientId is Invalid")
#: sandbox: grant_type missing or not client_credentials (UPS answers 400; the code is ours).
GRANT_TYPE_INVALID = ("10400", "Invalid/Missing grant_type")
#: observed (UPS-API/api-documentation#123): the 429 body of every UPS API.
TOO_MANY_REQUESTS = ("10429", "Too Many Requests")

# -- every /api route ----------------------------------------------------------------------------
#: observed (alexeybusygin/ShippingRates#66): missing, unknown, expired or revoked bearer token.
AUTH_INVALID = ("250002", "Invalid Authentication Information.")
#: sandbox: one code for every request-schema violation; the message names the JSON path.
#: (UPS uses element-specific 1201xx codes that the spec does not list.)
SCHEMA_INVALID = "120100"
#: sandbox: body is not JSON at all.
BODY_NOT_JSON = ("120100", "The request body is not valid JSON")
#: sandbox: a version segment the spec does not list.
VERSION_INVALID = "120101"

# -- Ship ----------------------------------------------------------------------------------------
#: observed (gabrielbull/php-ups-api#333, karrioapi/karrio#861): shipment-level reference on US/US or PR/PR.
SHIPMENT_REFERENCE_NOT_ALLOWED = ("120541", "Shipment/ReferenceNumber is not allowed for this shipment")
#: observed code (same sources); the wording of the message is ours.
PACKAGE_REFERENCE_NOT_ALLOWED = ("120542", "Package/ReferenceNumber is not allowed for this shipment")
#: sandbox: Shipping.yaml says BillShipper.AccountNumber "must be the same as the shipper number";
#: UPS does not publish the code it answers, 120120 is our pick.
BILL_SHIPPER_MISMATCH = ("120120", "BillShipper/AccountNumber must be the same as Shipper/ShipperNumber")
#: sandbox: goods leaving the customs area without a commercial invoice, or an invoice without what Shipping.yaml
#: says "Required for Invoice forms" (InvoiceNumber, InvoiceDate, ReasonForExport, CurrencyCode, SoldTo, Product
#: Unit and OriginCountryCode). UPS does not publish these codes; 120300/120301 are our picks.
INTERNATIONAL_FORMS_MISSING = ("120300", "InternationalForms with an Invoice (FormType 01) is required for this "
                                         "shipment")
INTERNATIONAL_FORMS_INVALID = "120301"
#: sandbox (code from the brief): Service.Code not in the Shipping.yaml service table.
SERVICE_INVALID = ("120051", "Invalid service")

#: sandbox: the fault knob ``error_after_label_next`` answers this after the label was stored (a server that
#: fails after doing the work); UPS documents no code for its 5xx answers.
INTERNAL_ERROR = ("190001", "The system is unable to process your request at this time")

# -- Void ----------------------------------------------------------------------------------------
#: observed (UPS-API/api-documentation#108): unknown shipment id or tracking number.
VOID_NOT_FOUND = ("190102", "No shipment found within the allowed void period")

# -- Track ---------------------------------------------------------------------------------------
#: observed (UPS-API/api-documentation#12).
INQUIRY_INVALID = ("TV1002", "Invalid inquiry number")
#: sandbox: transId / transactionSrc header missing (both are required by Tracking.yaml).
TRACK_HEADER_MISSING = "TV1001"
#: observed (api-documentation#102, #166, #198): a warning inside an HTTP 200, not an error.
TRACKING_NOT_FOUND = {"code": "TW0001", "message": "Tracking Information Not Found"}


def error_body(code: str, message: str) -> dict:
    """The UPS error body for one error."""
    return {"response": {"errors": [{"code": code, "message": message}]}}


def ups_error(status_code: int, code: str, message: str) -> VendorError:
    """A :class:`VendorError` carrying the UPS error body (raise it from an endpoint)."""
    return VendorError(status_code, error_body(code, message))


def ups_error_from(status_code: int, code_and_message: tuple[str, str]) -> VendorError:
    """Same as :func:`ups_error` for the ``(code, message)`` constants above."""
    return ups_error(status_code, *code_and_message)
