"""A small UPS client for the sandbox tests: builds requests, fetches tokens, validates answers against the spec.

Every successful answer is validated against the vendored UPS spec by :class:`UpsApi`, so a sandbox
that drifts from the spec fails its tests before it misleads the connector's tests.
"""

from __future__ import annotations

import copy
from typing import Any

import requests

from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET
from ml_connector_sandbox.specs.loader import spec_validator
from ml_connector_sandbox.testing import SandboxServer

SHIPPER_NUMBER = "A1B2C3"
TRACK_HEADERS = {"transId": "0123456789abcdef0123456789abcdef", "transactionSrc": "ml-connector-tests"}

#: (spec file, spec path, method) of each call the tests make, to validate the answers.
OPERATIONS = {
    "token": ("OAuthClientCredentials.yaml", "/security/v1/oauth/token", "post"),
    "xav": ("AddressValidation.yaml", "/addressvalidation/{version}/{requestoption}", "post"),
    "ship": ("Shipping.yaml", "/shipments/{version}/ship", "post"),
    "void": ("Shipping.yaml", "/shipments/{version}/void/cancel/{shipmentidentificationnumber}", "delete"),
    "track": ("Tracking.yaml", "/track/v1/details/{inquiryNumber}", "get"),
    "track_reference": ("Tracking.yaml", "/track/v1/reference/details/{referenceNumber}", "get"),
}


def ship_request(**shipment_changes: Any) -> dict[str, Any]:
    """The minimal domestic Ship request of the API notes; keyword arguments replace Shipment keys."""
    request = {"ShipmentRequest": {
        "Request": {"RequestOption": "nonvalidate", "TransactionReference": {"CustomerContext": "SO-12345"}},
        "Shipment": {
            "Description": "ERP order SO-12345",
            "Shipper": {"Name": "Acme Inc", "AttentionName": "Shipping", "ShipperNumber": SHIPPER_NUMBER,
                        "Phone": {"Number": "5555555555"},
                        "Address": {"AddressLine": ["2311 York Rd"], "City": "Timonium", "StateProvinceCode": "MD",
                                    "PostalCode": "21093", "CountryCode": "US"}},
            "ShipTo": {"Name": "Happy Dog Pet Supply", "AttentionName": "Jane Doe", "Phone": {"Number": "9225377171"},
                       "Address": {"AddressLine": ["123 Main St"], "City": "Timonium", "StateProvinceCode": "MD",
                                   "PostalCode": "21030", "CountryCode": "US"}},
            "PaymentInformation": {"ShipmentCharge": [{"Type": "01", "BillShipper": {"AccountNumber": SHIPPER_NUMBER}}]},
            "ShipmentRatingOptions": {"NegotiatedRatesIndicator": ""},
            "Service": {"Code": "03", "Description": "Ground"},
            "Package": [{"Description": "Widgets", "Packaging": {"Code": "02"},
                         "Dimensions": {"UnitOfMeasurement": {"Code": "IN"}, "Length": "10", "Width": "8", "Height": "6"},
                         "PackageWeight": {"UnitOfMeasurement": {"Code": "LBS"}, "Weight": "5"},
                         "ReferenceNumber": [{"Value": "SO-12345"}]}]},
        "LabelSpecification": {"LabelImageFormat": {"Code": "GIF"}, "HTTPUserAgent": "Mozilla/4.5",
                               "LabelStockSize": {"Height": "6", "Width": "4"}}}}
    request["ShipmentRequest"]["Shipment"].update(copy.deepcopy(shipment_changes))
    return request


def to_canada(request: dict[str, Any]) -> dict[str, Any]:
    """Make the ship-to an address in Toronto (an international US->CA shipment)."""
    request["ShipmentRequest"]["Shipment"]["ShipTo"]["Address"] = {
        "AddressLine": ["290 Bremner Blvd"], "City": "Toronto", "StateProvinceCode": "ON", "PostalCode": "M5V3L9",
        "CountryCode": "CA"}
    # goods leaving the US: the commercial invoice UPS requires
    request["ShipmentRequest"]["Shipment"]["ShipmentServiceOptions"] = {"InternationalForms": INVOICE}
    return request


#: a minimal complete commercial invoice (InternationalForms, FormType 01)
INVOICE: dict[str, Any] = {
    "FormType": ["01"], "InvoiceNumber": "SO-777", "InvoiceDate": "20261129", "ReasonForExport": "SALE",
    "CurrencyCode": "USD",
    "Contacts": {"SoldTo": {"Name": "Maple Pets", "AttentionName": "Ann Lee", "Address": {
        "AddressLine": ["290 Bremner Blvd"], "City": "Toronto", "StateProvinceCode": "ON", "PostalCode": "M5V3L9",
        "CountryCode": "CA"}}},
    "Product": [{"Description": ["Dog bowls"], "Unit": {"Number": "2", "UnitOfMeasurement": {"Code": "PCS"},
                                                       "Value": "12.50"}, "OriginCountryCode": "US"}],
}


def xav_request(line: str, *, name: str = "Happy Dog Pet Supply", city: str | None = "Timonium",
                postcode: str | None = "21093") -> dict[str, Any]:
    """An XAVRequest for one US address."""
    key_format: dict[str, Any] = {"ConsigneeName": name, "AddressLine": [line], "PoliticalDivision1": "MD",
                                  "CountryCode": "US"}
    if city:
        key_format["PoliticalDivision2"] = city
    if postcode:
        key_format["PostcodePrimaryLow"] = postcode
    return {"XAVRequest": {"AddressKeyFormat": key_format}}


def assert_ups_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The response is ``status`` with the UPS error body carrying ``code``; return the error."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"response"} and len(body["response"]["errors"]) == 1, body
    error = body["response"]["errors"][0]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    return error


class UpsApi:
    """A tiny UPS client for the tests: fetches a token, sends calls, validates answers against the spec."""

    def __init__(self, sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.base = sandbox.url("ups")
        self.session = requests.Session()
        self._token: str | None = None

    def token_response(self, client_id: str = UPS_CLIENT_ID, secret: str = UPS_CLIENT_SECRET,
                       **kwargs: Any) -> requests.Response:
        """POST the OAuth token endpoint (with the sandbox's credentials unless told otherwise)."""
        kwargs.setdefault("data", {"grant_type": "client_credentials"})
        return self.session.post(f"{self.base}/security/v1/oauth/token", auth=(client_id, secret), timeout=10, **kwargs)

    def token(self) -> str:
        """A bearer token (fetched once per test)."""
        if self._token is None:
            response = self.token_response()
            assert response.status_code == 200, response.text
            self._token = self.checked("token", response)["access_token"]
        return self._token

    def headers(self, **extra: str) -> dict[str, str]:
        """Bearer auth plus the Track headers."""
        return {"Authorization": f"Bearer {self.token()}", **TRACK_HEADERS, **extra}

    def checked(self, operation: str, response: requests.Response) -> dict[str, Any]:
        """Validate a 200 answer against the operation's response schema and return its JSON."""
        filename, path, method = OPERATIONS[operation]
        body = response.json()
        errors = spec_validator("ups", filename).response_errors(path, method, body, status=response.status_code)
        assert errors == [], f"sandbox answer breaks {filename} {method.upper()} {path}: {errors}"
        return body

    def xav(self, body: Any, option: str = "3", version: str = "v2", **kwargs: Any) -> requests.Response:
        """POST address validation."""
        return self.session.post(f"{self.base}/api/addressvalidation/{version}/{option}", json=body,
                                 headers=self.headers(), timeout=10, **kwargs)

    def ship_response(self, body: Any, version: str = "v2409", **kwargs: Any) -> requests.Response:
        """POST a Ship request."""
        return self.session.post(f"{self.base}/api/shipments/{version}/ship", json=body, headers=self.headers(),
                                 timeout=10, **kwargs)

    def ship(self, body: Any | None = None, version: str = "v2409") -> dict[str, Any]:
        """Ship and return the validated ShipmentResponse."""
        response = self.ship_response(body or ship_request(), version)
        assert response.status_code == 200, response.text
        return self.checked("ship", response)["ShipmentResponse"]

    def void(self, shipment_id: str, **params: str) -> requests.Response:
        """DELETE a shipment (or some of its packages)."""
        return self.session.delete(f"{self.base}/api/shipments/v2409/void/cancel/{shipment_id}", params=params,
                                   headers=self.headers(), timeout=10)

    def track_response(self, number: str, **params: str) -> requests.Response:
        """GET track details."""
        return self.session.get(f"{self.base}/api/track/v1/details/{number}", params=params,
                                headers=self.headers(), timeout=10)

    def track(self, number: str, **params: str) -> dict[str, Any]:
        """Track a number and return the validated first shipment."""
        response = self.track_response(number, **params)
        assert response.status_code == 200, response.text
        return self.checked("track", response)["trackResponse"]["shipment"][0]

    def track_reference(self, reference: str, **params: str) -> list[dict[str, Any]]:
        """Track by reference and return the validated shipments."""
        response = self.session.get(f"{self.base}/api/track/v1/reference/details/{reference}", params=params,
                                    headers=self.headers(), timeout=10)
        assert response.status_code == 200, response.text
        return self.checked("track_reference", response)["trackResponse"]["shipment"]



def tracking_numbers(shipment_response: dict[str, Any]) -> list[str]:
    """PackageResults tracking numbers, whether UPS sent an array or one object."""
    results = shipment_response["ShipmentResults"]["PackageResults"]
    return [item["TrackingNumber"] for item in (results if isinstance(results, list) else [results])]

