"""The UPS sandbox over real loopback HTTP: OAuth, XAV, Ship, Void, Track, knobs, and spec conformance.

Every successful answer is validated against the vendored UPS spec by :class:`UpsApi`, so a sandbox
that drifts from the spec fails here before it misleads the connector's tests.
"""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import pytest
import requests

from ml_connector_sandbox.specs.loader import load_spec, spec_validator
from ml_connector_sandbox.testing import SandboxServer
from ml_connector_sandbox.ups_shipping import ups_check_digit

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
    return request


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

    def token_response(self, client_id: str = "ml-connector", secret: str = "s3cret", **kwargs: Any) -> requests.Response:
        """POST the OAuth token endpoint."""
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


@pytest.fixture
def api(ups: SandboxServer) -> UpsApi:
    """A test client bound to the freshly reset UPS sandbox."""
    return UpsApi(ups)


def tracking_numbers(shipment_response: dict[str, Any]) -> list[str]:
    """PackageResults tracking numbers, whether UPS sent an array or one object."""
    results = shipment_response["ShipmentResults"]["PackageResults"]
    return [item["TrackingNumber"] for item in (results if isinstance(results, list) else [results])]


# -- OAuth -----------------------------------------------------------------------------------------
def test_token_fields_are_all_strings_and_expires_in_follows_the_knob(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_ttl_seconds=1800)
    before_ms = int(time.time() * 1000)
    body = api.checked("token", api.token_response(headers={"x-merchant-id": SHIPPER_NUMBER}))
    assert set(body) == {"token_type", "issued_at", "client_id", "access_token", "scope", "expires_in",
                         "refresh_count", "status"}
    assert all(isinstance(value, str) for value in body.values()), body
    assert (body["token_type"], body["client_id"], body["scope"]) == ("Bearer", "ml-connector", "")
    assert (body["expires_in"], body["refresh_count"], body["status"]) == ("1800", "0", "approved")
    assert abs(int(body["issued_at"]) - before_ms) < 60_000  # epoch milliseconds, not seconds
    assert ups.counters("ups")["tokens_issued"] == 1


def test_default_token_lifetime_is_3599_seconds(api: UpsApi) -> None:
    assert api.token_response().json()["expires_in"] == "3599"


def test_token_stops_working_after_its_ttl(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_ttl_seconds=60)
    assert api.track("1ZA1B2C30399999990")["warnings"][0]["code"] == "TW0001"  # the token works
    ups.set_knobs("ups", clock_offset_seconds=61)  # move the sandbox clock instead of sleeping
    assert_ups_error(api.track_response("1ZA1B2C30399999990"), 401, "250002")
    assert ups.counters("ups")["auth_failures"] == 1


def test_expire_all_tokens_revokes_a_token_early(api: UpsApi, ups: SandboxServer) -> None:
    api.token()
    knobs = ups.set_knobs("ups", expire_all_tokens=True)
    assert knobs["expire_all_tokens"] is False  # an action, not a state
    error = assert_ups_error(api.track_response("1ZA1B2C30399999990"), 401, "250002")
    assert error["message"] == "Invalid Authentication Information."


def test_token_quota_answers_429_10429(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", token_daily_quota=2)
    assert [api.token_response().status_code for _ in range(2)] == [200, 200]
    response = api.token_response()
    assert_ups_error(response, 429, "10429")
    assert response.json()["response"]["errors"][0]["message"] == "Too Many Requests"
    counters = ups.counters("ups")
    assert (counters["tokens_issued"], counters["token_quota_exceeded"], counters["rate_limited"]) == (2, 1, 1)


@pytest.mark.parametrize("authorization", [None, "Basic not-base64!", "Bearer abc",
                                           "Basic " + base64.b64encode(b"client-without-secret").decode()])
def test_token_endpoint_rejects_missing_or_malformed_basic_auth(api: UpsApi, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = api.session.post(f"{api.base}/security/v1/oauth/token", data={"grant_type": "client_credentials"},
                                headers=headers, timeout=10)
    assert_ups_error(response, 401, "10401")


def test_token_endpoint_rejects_the_wrong_secret(api: UpsApi) -> None:
    assert_ups_error(api.token_response(secret="wrong-secret"), 401, "10401")


def test_token_endpoint_requires_grant_type(api: UpsApi, ups: SandboxServer) -> None:
    assert api.token_response(data={}).status_code == 400
    assert api.token_response(data={"grant_type": "password"}).status_code == 400
    recorded = ups.validation_errors("ups")
    assert any("grant_type" in error for entry in recorded for error in entry["errors"]), recorded


def test_api_routes_need_a_bearer_token(api: UpsApi) -> None:
    response = api.session.post(f"{api.base}/api/shipments/v2409/ship", json=ship_request(), timeout=10)
    assert_ups_error(response, 401, "250002")
    response = api.session.get(f"{api.base}/api/track/v1/details/1ZA1B2C30399999990",
                               headers={"Authorization": "Bearer made-up", **TRACK_HEADERS}, timeout=10)
    assert_ups_error(response, 401, "250002")


# -- Address validation ----------------------------------------------------------------------------
def test_xav_valid_address_has_one_candidate_array_and_presence_indicator(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("123 Main St")))["XAVResponse"]
    assert answer["ValidAddressIndicator"] == ""  # a presence flag: test the key, not the value
    assert "AmbiguousAddressIndicator" not in answer and "NoCandidatesIndicator" not in answer
    assert isinstance(answer["Candidate"], list) and len(answer["Candidate"]) == 1
    candidate = answer["Candidate"][0]["AddressKeyFormat"]
    assert candidate["AddressLine"] == ["123 MAIN ST"]
    assert (candidate["PoliticalDivision2"], candidate["PostcodePrimaryLow"]) == ("TIMONIUM", "21093")
    assert len(candidate["PostcodeExtendedLow"]) == 4
    assert answer["AddressClassification"] == {"Code": "1", "Description": "Commercial"}


def test_xav_ambiguous_address_has_several_candidates(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("100 AMBIG Ave")))["XAVResponse"]
    assert "AmbiguousAddressIndicator" in answer
    assert len(answer["Candidate"]) >= 2


@pytest.mark.parametrize("request_body", [
    xav_request("1 UNKNOWN Rd"), xav_request("9 Nowhere Blvd"), xav_request("123 Main St", postcode=None),
], ids=["unknown-street", "nowhere-street", "no-postcode"])
def test_xav_no_candidates(api: UpsApi, request_body: dict[str, Any]) -> None:
    answer = api.checked("xav", api.xav(request_body))["XAVResponse"]
    assert "NoCandidatesIndicator" in answer and "Candidate" not in answer
    assert answer["AddressClassification"]["Code"] == "0"


@pytest.mark.parametrize(("line", "name", "code"), [
    ("12 Oak Lane", "Happy Dog Pet Supply", "2"),
    ("12 Main St Apt 4", "Acme Inc", "2"),
    ("5 Court Ct", "Widgets LLC", "2"),
    ("1 Elm St, home office", "Store Co", "2"),
    ("1 Elm St", "Jane Doe", "2"),
    ("1 Elm St", "Acme Corp", "1"),
    ("1 Home Depot Plaza", "Hardware Store", "1"),
])
def test_xav_classification(api: UpsApi, line: str, name: str, code: str) -> None:
    answer = api.checked("xav", api.xav(xav_request(line, name=name), option="2"))["XAVResponse"]
    assert answer["AddressClassification"]["Code"] == code
    assert answer["AddressClassification"]["Description"] == {"1": "Commercial", "2": "Residential"}[code]


def test_xav_option_1_has_no_classification(api: UpsApi) -> None:
    answer = api.checked("xav", api.xav(xav_request("123 Main St"), option="1"))["XAVResponse"]
    assert "AddressClassification" not in answer
    assert "AddressClassification" not in answer["Candidate"][0]


def test_xav_single_object_knob_returns_candidate_as_an_object(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", xav_single_object=True)
    answer = api.xav(xav_request("123 Main St")).json()["XAVResponse"]
    assert isinstance(answer["Candidate"], dict)
    assert answer["Candidate"]["AddressKeyFormat"]["AddressLine"] == "123 MAIN ST"
    ambiguous = api.xav(xav_request("100 AMBIG Ave")).json()["XAVResponse"]
    assert isinstance(ambiguous["Candidate"], list)  # several candidates are still a list


def test_xav_invalid_request_is_rejected_and_recorded(api: UpsApi, ups: SandboxServer) -> None:
    body = xav_request("123 Main St")
    del body["XAVRequest"]["AddressKeyFormat"]["CountryCode"]
    error = assert_ups_error(api.xav(body), 400, "120100")
    assert "CountryCode" in error["message"]
    assert ups.validation_errors("ups")[0]["operation"] == "POST /api/addressvalidation/v2/3"


# -- Ship ------------------------------------------------------------------------------------------
def test_ship_success_answer_validates_and_carries_a_valid_1z(api: UpsApi, ups: SandboxServer) -> None:
    answer = api.ship()
    assert answer["Response"]["ResponseStatus"] == {"Code": "1", "Description": "Success"}
    results = answer["ShipmentResults"]
    assert isinstance(results["PackageResults"], list) and len(results["PackageResults"]) == 1
    number = results["PackageResults"][0]["TrackingNumber"]
    assert results["ShipmentIdentificationNumber"] == number
    assert len(number) == 18 and number.startswith(f"1Z{SHIPPER_NUMBER}03")
    assert number[-1] == ups_check_digit(number[2:17])
    assert results["ShipmentCharges"]["TotalCharges"] == {"CurrencyCode": "USD", "MonetaryValue": "12.34"}
    assert results["NegotiatedRateCharges"]["TotalCharge"]["CurrencyCode"] == "USD"
    assert float(results["BillingWeight"]["Weight"]) == 5.0
    label = results["PackageResults"][0]["ShippingLabel"]
    assert label["ImageFormat"]["Code"] == "GIF"
    assert base64.b64decode(label["GraphicImage"]).startswith(b"GIF89a")
    counters = ups.counters("ups")
    assert (counters["ship_requests"], counters["labels_created"]) == (1, 1)
    assert counters["labels_by_reference"] == {"SO-12345": 1}


def test_ups_check_digit_matches_published_numbers() -> None:
    for number in ("1ZCIETST0111111114", "1ZCIETST0422222228", "1Z023E2X0214323462"):
        assert ups_check_digit(number[2:17]) == number[-1]


def test_ship_zpl_label_is_base64_zpl_text(api: UpsApi) -> None:
    request = ship_request()
    request["ShipmentRequest"]["LabelSpecification"]["LabelImageFormat"]["Code"] = "ZPL"
    package = api.ship(request)["ShipmentResults"]["PackageResults"][0]
    zpl = base64.b64decode(package["ShippingLabel"]["GraphicImage"]).decode()
    assert zpl.startswith("^XA") and package["TrackingNumber"] in zpl
    assert package["ShippingLabel"]["ImageFormat"]["Code"] == "ZPL"


def test_negotiated_rates_only_when_the_indicator_key_is_present(api: UpsApi) -> None:
    request = ship_request()
    del request["ShipmentRequest"]["Shipment"]["ShipmentRatingOptions"]
    assert "NegotiatedRateCharges" not in api.ship(request)["ShipmentResults"]


def test_ship_two_packages_gives_two_labels(api: UpsApi, ups: SandboxServer) -> None:
    request = ship_request()
    packages = request["ShipmentRequest"]["Shipment"]["Package"]
    packages.append(copy.deepcopy(packages[0]))
    packages[1]["ReferenceNumber"] = [{"Value": "SO-12345-2"}]
    numbers = tracking_numbers(api.ship(request))
    assert len(set(numbers)) == 2
    assert ups.counters("ups")["labels_by_reference"] == {"SO-12345": 1, "SO-12345-2": 1}


def test_package_results_single_object_knob(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", package_results_single_object=True)
    response = api.ship_response(ship_request())
    assert isinstance(response.json()["ShipmentResponse"]["ShipmentResults"]["PackageResults"], dict)


def test_ship_versions_before_v2403_answer_a_single_object(api: UpsApi) -> None:
    response = api.ship_response(ship_request(), version="v1801")
    assert isinstance(response.json()["ShipmentResponse"]["ShipmentResults"]["PackageResults"], dict)


def test_ship_schema_violation_is_400_and_recorded(api: UpsApi, ups: SandboxServer) -> None:
    request = ship_request()
    del request["ShipmentRequest"]["LabelSpecification"]["LabelStockSize"]
    error = assert_ups_error(api.ship_response(request), 400, "120100")
    assert "$.ShipmentRequest.LabelSpecification" in error["message"] and "LabelStockSize" in error["message"]
    recorded = ups.validation_errors("ups")
    assert len(recorded) == 1 and recorded[0]["operation"] == "POST /api/shipments/v2409/ship"
    assert any("LabelStockSize" in message for message in recorded[0]["errors"])
    counters = ups.counters("ups")
    assert (counters["labels_created"], counters["validation_errors"]) == (0, 1)


def test_ship_rejects_a_body_that_is_not_json(api: UpsApi, ups: SandboxServer) -> None:
    response = api.session.post(f"{api.base}/api/shipments/v2409/ship", data="{not json",
                                headers={**api.headers(), "Content-Type": "application/json"}, timeout=10)
    assert_ups_error(response, 400, "120100")
    assert ups.counters("ups")["validation_errors"] == 1


def test_shipment_reference_on_us_to_us_is_120541(api: UpsApi, ups: SandboxServer) -> None:
    request = ship_request(ReferenceNumber=[{"Value": "SO-12345"}])
    error = assert_ups_error(api.ship_response(request), 400, "120541")
    assert error["message"] == "Shipment/ReferenceNumber is not allowed for this shipment"
    recorded = ups.validation_errors("ups")
    assert [(entry["kind"], entry["errors"]) for entry in recorded] == [
        ("rule", ["120541 Shipment/ReferenceNumber is not allowed for this shipment"])]
    assert ups.counters("ups")["labels_created"] == 0


def test_shipment_reference_on_pr_to_pr_is_120541(api: UpsApi) -> None:
    request = ship_request(ReferenceNumber=[{"Value": "SO-1"}])
    shipment = request["ShipmentRequest"]["Shipment"]
    for party in ("Shipper", "ShipTo"):
        shipment[party]["Address"].update({"City": "San Juan", "StateProvinceCode": "PR", "PostalCode": "00901",
                                           "CountryCode": "PR"})
    for package in shipment["Package"]:
        package.pop("ReferenceNumber")
    assert_ups_error(api.ship_response(request), 400, "120541")


def test_package_reference_on_international_is_120542(api: UpsApi) -> None:
    assert_ups_error(api.ship_response(to_canada(ship_request())), 400, "120542")


def test_shipment_reference_on_international_is_accepted(api: UpsApi, ups: SandboxServer) -> None:
    request = to_canada(ship_request(ReferenceNumber=[{"Value": "SO-777"}]))
    for package in request["ShipmentRequest"]["Shipment"]["Package"]:
        package.pop("ReferenceNumber")
    number = tracking_numbers(api.ship(request))[0]
    assert ups.counters("ups")["labels_by_reference"] == {"SO-777": 1}
    assert api.track_reference("SO-777")[0]["package"][0]["trackingNumber"] == number


def test_bill_shipper_account_must_be_the_shipper_number(api: UpsApi) -> None:
    request = ship_request(PaymentInformation={"ShipmentCharge": [{"Type": "01", "BillShipper": {"AccountNumber": "ZZZ999"}}]})
    assert_ups_error(api.ship_response(request), 400, "120120")


def test_unknown_service_is_120051(api: UpsApi) -> None:
    error = assert_ups_error(api.ship_response(ship_request(Service={"Code": "99"})), 400, "120051")
    assert error["message"] == "Invalid service"


def test_ship_package_reference_maximum_is_not_enforced(api: UpsApi) -> None:
    # UPS writes "maximum: 5" on the ReferenceNumber array to mean occurrences; JSON Schema ignores it.
    request = ship_request()
    request["ShipmentRequest"]["Shipment"]["Package"][0]["ReferenceNumber"] = [{"Value": f"R{i}"} for i in range(6)]
    assert api.ship_response(request).status_code == 200


# -- crash after label -----------------------------------------------------------------------------
def test_crash_after_label_drops_the_connection_but_keeps_the_label(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", crash_after_label_next=1)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.ship_response(ship_request())
    counters = ups.counters("ups")
    assert (counters["labels_created"], counters["connections_dropped"]) == (1, 1)
    assert counters["labels_by_reference"] == {"SO-12345": 1}
    assert ups.knobs("ups")["crash_after_label_next"] == 0

    found = api.track_reference("SO-12345", shipperNum=SHIPPER_NUMBER)
    assert len(found) == 1
    package = found[0]["package"][0]
    assert package["trackingNumber"].startswith(f"1Z{SHIPPER_NUMBER}")
    assert {"type": "PACKAGE", "number": "SO-12345"} in package["referenceNumber"]
    assert package["currentStatus"]["type"] == "M"

    api.ship()  # the knob is used up: the next call answers normally
    assert ups.counters("ups")["labels_by_reference"] == {"SO-12345": 2}


# -- Track -----------------------------------------------------------------------------------------
def test_track_by_number_through_every_status(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    package = api.track(number)["package"][0]
    assert package["trackingNumber"] == number
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("M", "MP")
    assert package["currentStatus"]["description"] == "Shipper created a label, UPS has not received the package yet."
    assert package["deliveryDate"][0]["type"] == "SDD"

    ups.advance_ups_package(number, "in_transit")
    package = api.track(number)["package"][0]
    assert [a["status"]["code"] for a in package["activity"]] == ["DP", "OR", "MP"]  # most recent first
    assert package["currentStatus"]["type"] == "I"

    ups.advance_ups_package(number, "out_for_delivery")
    assert api.track(number)["package"][0]["currentStatus"]["code"] == "OT"

    ups.advance_ups_package(number, "delivered")
    package = api.track(number, returnSignature="true")["package"][0]
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("D", "FS")
    assert package["deliveryInformation"]["receivedBy"] == "JANE DOE"
    assert base64.b64decode(package["deliveryInformation"]["signature"]["image"]).startswith(b"GIF")
    assert package["deliveryDate"][0]["type"] == "DEL"
    for activity in package["activity"]:
        assert activity["gmtOffset"] == "-05:00"
        assert len(activity["date"]) == 8 and len(activity["time"]) == 6


def test_track_exception_is_a_weather_delay(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.advance_ups_package(number, "in_transit")
    ups.advance_ups_package(number, "exception")
    package = api.track(number)["package"][0]
    assert (package["currentStatus"]["type"], package["currentStatus"]["code"]) == ("X", "X1")
    assert {entry["type"] for entry in package["deliveryDate"]} == {"SDD", "RDD"}


def test_advance_refuses_to_go_back(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.advance_ups_package(number, "delivered")
    with pytest.raises(requests.HTTPError, match="409"):
        ups.advance_ups_package(number, "in_transit")


def test_auto_advance_knob_moves_packages_along_with_the_clock(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.set_knobs("ups", tracking_auto_advance_seconds=600, clock_offset_seconds=3 * 600 + 1)
    assert api.track(number)["package"][0]["currentStatus"]["code"] == "FS"


def test_unknown_number_is_tw0001_at_http_200(api: UpsApi) -> None:
    shipment = api.track("1ZA1B2C30399999990")
    assert shipment["warnings"] == [{"code": "TW0001", "message": "Tracking Information Not Found"}]
    assert "package" not in shipment


def test_unknown_reference_is_tw0001_at_http_200(api: UpsApi) -> None:
    assert api.track_reference("NO-SUCH-ORDER")[0]["warnings"][0]["code"] == "TW0001"


def test_track_requires_trans_id_and_transaction_src(api: UpsApi) -> None:
    response = api.session.get(f"{api.base}/api/track/v1/details/1ZA1B2C30399999990",
                               headers={"Authorization": f"Bearer {api.token()}"}, timeout=10)
    error = assert_ups_error(response, 400, "TV1001")
    assert "transId" in error["message"] and "transactionSrc" in error["message"]


def test_track_rejects_a_too_short_inquiry_number(api: UpsApi) -> None:
    assert_ups_error(api.track_response("1Z1"), 400, "TV1002")


# -- Void ------------------------------------------------------------------------------------------
def test_void_marks_the_shipment_voided_and_tracking_shows_mv(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    answer = api.checked("void", api.void(number))["VoidShipmentResponse"]
    assert answer["SummaryResult"]["Status"] == {"Code": "1", "Description": "Voided"}
    assert api.track(number)["package"][0]["currentStatus"]["type"] == "MV"
    assert api.track_reference("SO-12345")[0]["package"][0]["currentStatus"]["type"] == "MV"
    assert ups.counters("ups")["voids"] == 1


def test_void_one_package_by_tracking_number(api: UpsApi) -> None:
    request = ship_request()
    packages = request["ShipmentRequest"]["Shipment"]["Package"]
    packages.append(copy.deepcopy(packages[0]))
    first, second = tracking_numbers(api.ship(request))
    answer = api.checked("void", api.void(first, trackingnumber=f'["{second}"]'))["VoidShipmentResponse"]
    assert answer["PackageLevelResults"] == [{"TrackingNumber": second, "Status": {"Code": "1", "Description": "Voided"}}]
    assert api.track(second)["package"][0]["currentStatus"]["type"] == "MV"
    assert api.track(first)["package"][0]["currentStatus"]["type"] == "M"


@pytest.mark.parametrize("params", [{}, {"trackingnumber": "string"}])
def test_void_unknown_is_190102(api: UpsApi, params: dict[str, str]) -> None:
    shipment_id = "1ZA1B2C30399999990" if not params else tracking_numbers(api.ship())[0]
    error = assert_ups_error(api.void(shipment_id, **params), 400, "190102")
    assert error["message"] == "No shipment found within the allowed void period"


# -- knobs -----------------------------------------------------------------------------------------
def test_burst_429_then_recovery_without_retry_after(api: UpsApi, ups: SandboxServer) -> None:
    api.token()  # the token endpoint is not part of the burst (it has its own quota)
    ups.set_knobs("ups", burst_429=2)
    for _ in range(2):
        response = api.track_response("1ZA1B2C30399999990")
        assert_ups_error(response, 429, "10429")
        assert "Retry-After" not in response.headers
        assert ups.counters("ups")["api_requests"] >= 1  # control endpoints are never throttled
    assert api.track("1ZA1B2C30399999990")["warnings"][0]["code"] == "TW0001"
    counters = ups.counters("ups")
    assert counters["rate_limited"] == 2
    assert ups.knobs("ups")["burst_429"] == 0


def test_latency_knob_delays_api_answers(api: UpsApi, ups: SandboxServer) -> None:
    api.token()
    ups.set_knobs("ups", latency_ms=250)
    started = time.monotonic()
    api.track("1ZA1B2C30399999990")
    assert time.monotonic() - started >= 0.2  # a loose lower bound only


def test_unknown_or_mistyped_knobs_are_refused(ups: SandboxServer) -> None:
    with pytest.raises(requests.HTTPError, match="crash_after_label_next"):
        ups.set_knobs("ups", crash_after_label=1)
    with pytest.raises(requests.HTTPError, match="latency_ms"):
        ups.set_knobs("ups", latency_ms="slow")


def test_reset_clears_state_counters_and_knobs(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.set_knobs("ups", latency_ms=5, token_ttl_seconds=10)
    ups.reset("ups")
    assert ups.knobs("ups")["latency_ms"] == 0 and ups.knobs("ups")["token_ttl_seconds"] == 3599
    assert ups.counters("ups")["labels_created"] == 0
    api._token = None  # tokens are forgotten too
    assert "package" not in api.track(number)


# -- the spec loader the sandbox relies on ---------------------------------------------------------
def test_specs_with_tabs_load_and_are_cached() -> None:
    shipping = load_spec("ups", "Shipping.yaml")
    assert "/shipments/{version}/ship" in shipping["paths"]
    assert load_spec("ups", "Shipping.yaml") is shipping
    tracking = load_spec("ups", "Tracking.yaml")
    assert "/track/v1/reference/details/{referenceNumber}" in tracking["paths"]


def test_spec_validator_reports_paths_and_resolves_refs() -> None:
    validator = spec_validator("ups", "Shipping.yaml")
    request = ship_request()
    request["ShipmentRequest"]["Shipment"]["Package"][0]["PackageWeight"]["Weight"] = "123456"
    errors = validator.request_errors("/shipments/{version}/ship", "post", request)
    assert errors == ["$.ShipmentRequest.Shipment.Package[0].PackageWeight.Weight: '123456' is too long"]
    assert validator.component_errors("ShipmentCharges_TotalCharges", {"CurrencyCode": "USD"}) == [
        "$: 'MonetaryValue' is a required property"]
    # 3.1 files use the 3.1 validator (nullable types as lists, etc.).
    alert = spec_validator("ups", "UPSTrackAlert.yaml")
    assert alert.component_errors("ErrorMessage", {"response": {"errors": []}}) == []
