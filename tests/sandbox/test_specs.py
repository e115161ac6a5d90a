"""The spec loader the sandboxes rely on: vendored specs that need text fixes, ``$ref`` resolution, paths."""

from __future__ import annotations

from tests.sandbox.ups.client import ship_request

from ml_connector_sandbox.specs.loader import load_spec, spec_validator


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
