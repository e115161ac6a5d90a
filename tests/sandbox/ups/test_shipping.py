"""UPS Ship and Void in the sandbox: labels, 1Z numbers, business rules, the crash-after-label knob."""

from __future__ import annotations

import base64
import copy

import pytest
import requests
from tests.sandbox.ups.client import (
    SHIPPER_NUMBER,
    UpsApi,
    assert_ups_error,
    ship_request,
    to_canada,
    tracking_numbers,
)

from ml_connector_sandbox.testing import SandboxServer
from ml_connector_sandbox.ups.shipping import ups_check_digit


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
