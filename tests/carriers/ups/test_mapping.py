"""ml_connector.carriers.ups: request builders validate against the vendored UPS specs, parsers survive
UPS's object-or-array answers, and every error a person reads names the record, the field and the fix."""

from __future__ import annotations

import base64
import copy
import functools
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

import ml_connector_sandbox
from ml_connector import errors
from ml_connector.carriers import ups
from ml_connector.carriers.ups import codes, normalise
from ml_connector.models import (
    Address,
    AddressClassification,
    AddressStatus,
    Dimensions,
    Order,
    OrderLine,
    Package,
    TrackingStatus,
)

FIXTURES = Path(__file__).parent / "fixtures"
# The vendored UPS specs (the same copies the sandbox validates against).
SPEC_DIRS = [Path(p) / "specs" / "ups" for p in ml_connector_sandbox.__path__]


# --- spec validation helper (to be replaced by ml_connector_sandbox.specs.loader.SpecValidator) -------------------

@functools.cache
def _spec(name: str) -> dict[str, Any]:
    for directory in SPEC_DIRS:
        path = directory / name
        if path.exists():
            # Shipping.yaml and Tracking.yaml contain tab characters PyYAML rejects (notes trap 3).
            text = path.read_text(encoding="utf-8").replace("\t", " ")
            return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    pytest.skip(f"UPS spec {name} not found in {SPEC_DIRS}")


def _closed(node: Any) -> Any:
    """Copy a schema tree with ``additionalProperties: false`` on every object that lists properties, so a
    misspelt or invented key (the spec example's ``ShipTo.Residential``, trap 2) fails validation."""
    if isinstance(node, dict):
        out = {key: _closed(value) for key, value in node.items()}
        if "properties" in out and "additionalProperties" not in out and not {"allOf", "anyOf", "oneOf"} & out.keys():
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_closed(item) for item in node]
    return node


@functools.cache
def _validator(spec_name: str, schema_name: str, strict: bool = True) -> OAS30Validator:
    spec = _spec(spec_name)
    if strict:
        spec = {**spec, "components": _closed(copy.deepcopy(spec["components"]))}
    uri = f"urn:ups-spec:{spec_name}"
    registry = Registry().with_resource(uri, Resource.from_contents(spec, default_specification=DRAFT4))
    return OAS30Validator({"$ref": f"{uri}#/components/schemas/{schema_name}"}, registry=registry)


def assert_valid(spec_name: str, schema_name: str, body: dict[str, Any], *, strict: bool = True) -> None:
    problems = [f"{error.json_path}: {error.message}"
                for error in _validator(spec_name, schema_name, strict).iter_errors(body)]
    assert not problems, "\n".join(problems)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


# --- canonical records --------------------------------------------------------------------------------------

SHIPPER = Address(name="Acme Inc", attention="Shipping", phone="(555) 555-5555", lines=["2311 York Rd"],
                  city="Timonium", state="MD", postal_code="21093", country="US")
WAREHOUSE = Address(name="Acme Warehouse", phone="555-555-5555", lines=["10 Dock St"], city="Baltimore",
                    state="MD", postal_code="21201", country="US")
US_CUSTOMER = Address(name="Happy Dog Pet Supply", attention="Jane Doe", phone="+1 922 537 7171 x12",
                      lines=["123 Main St", "Suite 4"], city="Timonium", state="md", postal_code="21030-1234",
                      country="US")
CA_CUSTOMER = Address(name="Maple Goods", phone="+1 613 555 0100", lines=["111 Wellington St"], city="Ottawa",
                      state="ON", postal_code="K1A 0A9", country="CA")


def make_order(ship_to: Address = US_CUSTOMER, packages: list[Package] | None = None, **kw: Any) -> Order:
    if packages is None:
        packages = [
            Package(weight=Decimal("5"), dimensions=Dimensions(length=Decimal("8"), width=Decimal("10.2"),
                                                               height=Decimal("6")), description="Widgets"),
            Package(weight=Decimal("5.01"), weight_unit="LBS"),
        ]
    return Order(erp="business_central", erp_id="guid-1", number=kw.pop("number", "SO-1001"), ship_method="GROUND",
                 ship_to=ship_to, packages=packages,
                 lines=[OrderLine(sku="W-1", description="9 mm steel screws", quantity=Decimal("2"),
                                  unit_value=Decimal("4.5"), currency="USD", origin_country="US")], **kw)


def ship(order: Order | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"service_code": "03", "shipper": SHIPPER, "shipper_number": "A1B2C3",
                            "reference": "SO-1001"}
    args.update(kw)
    return ups.build_ship_request(order or make_order(), **args)


# --- request builders validate against the spec ------------------------------------------------------------

@pytest.mark.parametrize("kw", [
    {},
    {"ship_from": WAREHOUSE, "residential": True, "reference_code": "PO", "label_format": "ZPL",
     "label_stock_height": "8", "request_option": "validate", "customer_context": "run-42"},
    {"negotiated_rates": False},
], ids=["defaults", "every-option", "no-negotiated-rates"])
def test_ship_request_validates_against_shipping_spec(kw: dict[str, Any]) -> None:
    assert_valid("Shipping.yaml", "SHIPRequestWrapper", ship(**kw))


def test_international_ship_request_validates_against_shipping_spec() -> None:
    assert_valid("Shipping.yaml", "SHIPRequestWrapper", ship(make_order(CA_CUSTOMER), service_code="11"))


def test_strict_validator_rejects_keys_outside_the_schema() -> None:
    body = ship()
    body["ShipmentRequest"]["Shipment"]["ShipTo"]["Residential"] = ""  # the spec example's invented key
    with pytest.raises(AssertionError, match="Residential"):
        assert_valid("Shipping.yaml", "SHIPRequestWrapper", body)


def test_ship_request_maps_order_fields_in_the_spec_shape() -> None:
    shipment = ship()["ShipmentRequest"]["Shipment"]
    ship_to = shipment["ShipTo"]
    assert ship_to["Name"] == "Happy Dog Pet Supply"
    assert ship_to["Phone"] == {"Number": "9225377171", "Extension": "12"}
    assert ship_to["Address"] == {"AddressLine": ["123 Main St", "Suite 4"], "City": "Timonium",
                                  "StateProvinceCode": "MD", "PostalCode": "210301234", "CountryCode": "US"}
    assert shipment["Shipper"]["ShipperNumber"] == "A1B2C3"
    assert shipment["PaymentInformation"] == {
        "ShipmentCharge": [{"Type": "01", "BillShipper": {"AccountNumber": "A1B2C3"}}]}
    assert shipment["Service"] == {"Code": "03", "Description": "Ground"}
    assert "ShipFrom" not in shipment
    first, second = shipment["Package"]
    assert first["Dimensions"] == {"UnitOfMeasurement": {"Code": "IN"}, "Length": "11", "Width": "8", "Height": "6"}
    assert first["PackageWeight"] == {"UnitOfMeasurement": {"Code": "LBS"}, "Weight": "5"}
    assert second["PackageWeight"]["Weight"] == "5.1"  # rounded up, never under-declared
    assert "Dimensions" not in second


def test_label_specification_always_has_stock_size_and_gif_user_agent() -> None:
    gif = ship()["ShipmentRequest"]["LabelSpecification"]
    assert gif == {"LabelImageFormat": {"Code": "GIF"}, "HTTPUserAgent": "Mozilla/4.5",
                   "LabelStockSize": {"Height": "6", "Width": "4"}}
    zpl = ship(label_format="zpl")["ShipmentRequest"]["LabelSpecification"]
    assert zpl == {"LabelImageFormat": {"Code": "ZPL"}, "LabelStockSize": {"Height": "6", "Width": "4"}}


def test_xav_request_validates_and_splits_zip_without_region() -> None:
    body = ups.build_xav_request(US_CUSTOMER)
    assert_valid("AddressValidation.yaml", "XAVRequestWrapper", body)
    key_format = body["XAVRequest"]["AddressKeyFormat"]
    assert key_format == {"ConsigneeName": "Happy Dog Pet Supply", "AddressLine": ["123 Main St", "Suite 4"],
                          "PoliticalDivision2": "Timonium", "PoliticalDivision1": "MD",
                          "PostcodePrimaryLow": "21030", "PostcodeExtendedLow": "1234", "CountryCode": "US"}
    assert "Region" not in key_format  # Region would override city/state/zip


def test_xav_request_for_five_digit_zip_has_no_extension() -> None:
    key_format = ups.build_xav_request(SHIPPER)["XAVRequest"]["AddressKeyFormat"]
    assert key_format["PostcodePrimaryLow"] == "21093"
    assert "PostcodeExtendedLow" not in key_format


# --- reference placement (trap 6) --------------------------------------------------------------------------

def test_us_to_us_reference_goes_on_every_package_and_not_the_shipment() -> None:
    shipment = ship(reference_code="PO")["ShipmentRequest"]["Shipment"]
    assert "ReferenceNumber" not in shipment
    assert [p["ReferenceNumber"] for p in shipment["Package"]] == [[{"Value": "SO-1001", "Code": "PO"}]] * 2


def test_pr_to_pr_reference_is_package_level() -> None:
    pr = Address(name="Isla Shop", lines=["1 Calle Sol"], city="San Juan", state="PR", postal_code="00901",
                 country="PR")
    shipment = ship(make_order(pr), shipper=pr.model_copy(update={"name": "PR Shipper"}))["ShipmentRequest"]["Shipment"]
    assert "ReferenceNumber" not in shipment
    assert all(p["ReferenceNumber"] == [{"Value": "SO-1001"}] for p in shipment["Package"])


def test_us_to_canada_reference_goes_on_the_shipment_only() -> None:
    shipment = ship(make_order(CA_CUSTOMER), service_code="11")["ShipmentRequest"]["Shipment"]
    assert shipment["ReferenceNumber"] == [{"Value": "SO-1001"}]
    assert all("ReferenceNumber" not in p for p in shipment["Package"])


def test_reference_longer_than_35_is_refused_not_truncated() -> None:
    reference = "R" * 36
    with pytest.raises(errors.ReferenceTooLong) as caught:
        ship(reference=reference)
    message = str(caught.value)
    assert "SO-1001" in message and "36 characters" in message and "at most 35" in message
    assert caught.value.record == "SO-1001"


def test_reference_of_exactly_35_is_accepted() -> None:
    body = ship(reference="R" * 35)
    assert body["ShipmentRequest"]["Shipment"]["Package"][0]["ReferenceNumber"] == [{"Value": "R" * 35}]


# --- record and configuration errors -----------------------------------------------------------------------

def test_order_without_packages_raises_missing_weight() -> None:
    with pytest.raises(errors.MissingWeight, match="SO-1001"):
        ship(make_order(packages=[]))


def test_address_line_longer_than_35_is_a_record_error_naming_the_field() -> None:
    long_line = "1234 Extraordinarily Long Boulevard Name"
    order = make_order(US_CUSTOMER.model_copy(update={"lines": [long_line]}))
    with pytest.raises(errors.RecordError) as caught:
        ship(order)
    assert "address line 1" in str(caught.value) and "at most 35" in str(caught.value)
    assert caught.value.field == "ship_to.address line 1"
    assert "SO-1001" in str(caught.value)


def test_four_address_lines_are_a_record_error() -> None:
    order = make_order(US_CUSTOMER.model_copy(update={"lines": ["a", "b", "c", "d"]}))
    with pytest.raises(errors.RecordError, match="at most 3"):
        ship(order)


def test_us_zip_that_is_not_5_or_9_digits_is_a_record_error() -> None:
    order = make_order(US_CUSTOMER.model_copy(update={"postal_code": "2134"}))
    with pytest.raises(errors.RecordError, match="ZIP"):
        ship(order)


@pytest.mark.parametrize("bad", ["A1B2C", "A1B2C3D", "A1B-C3", ""])
def test_shipper_number_must_be_six_alphanumerics(bad: str) -> None:
    with pytest.raises(errors.ConfigurationError, match="6-character"):
        ship(shipper_number=bad)


def test_unknown_label_format_is_a_configuration_error_listing_the_choices() -> None:
    with pytest.raises(errors.ConfigurationError, match="EPL, GIF, SPL, ZPL"):
        ship(label_format="PDF")


def test_bad_shipper_address_is_a_configuration_error_not_a_record_error() -> None:
    with pytest.raises(errors.ConfigurationError, match="shipper address setting"):
        ship(shipper=SHIPPER.model_copy(update={"city": "C" * 31}))


# --- presence indicators (trap 5) --------------------------------------------------------------------------

def test_residential_indicator_only_when_residential() -> None:
    def indicator_present(**kw: Any) -> bool:
        body = ship(**kw)
        return "ResidentialAddressIndicator" in body["ShipmentRequest"]["Shipment"]["ShipTo"]["Address"]

    assert indicator_present(residential=True)
    assert ship(residential=True)["ShipmentRequest"]["Shipment"]["ShipTo"]["Address"][
        "ResidentialAddressIndicator"] == ""
    assert not indicator_present(residential=False)
    assert not indicator_present()  # unknown: omitted, never "N"
    residential_customer = make_order(US_CUSTOMER.model_copy(update={"residential": True}))
    assert indicator_present(order=residential_customer)
    assert not indicator_present(order=residential_customer, residential=False)  # explicit answer wins


def test_negotiated_rates_indicator_presence() -> None:
    with_rates = ship()["ShipmentRequest"]["Shipment"]
    assert with_rates["ShipmentRatingOptions"] == {"NegotiatedRatesIndicator": ""}
    without = ship(negotiated_rates=False)["ShipmentRequest"]["Shipment"]
    assert "ShipmentRatingOptions" not in without


def test_has_indicator_counts_empty_string_as_present() -> None:
    assert ups.has_indicator({"ValidAddressIndicator": ""}, "ValidAddressIndicator")
    assert not ups.has_indicator({}, "ValidAddressIndicator")
    assert not ups.has_indicator(None, "ValidAddressIndicator")


# --- ship methods ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "code"), [
    ("GROUND", "03"), ("  ups   ground ", "03"), ("nda", "01"), ("2da", "02"), ("Express Plus", "54"),
    ("65", "65"), ("m2", "M2"),
])
def test_resolve_service_normalises_and_accepts_bare_codes(method: str, code: str) -> None:
    assert ups.resolve_service(method, codes.DEFAULT_SHIP_METHOD_MAP, record="SO-1") == code


def test_unknown_ship_method_message_lists_known_methods_and_the_setting() -> None:
    with pytest.raises(errors.UnknownShipMethod) as caught:
        ups.resolve_service("Pigeon Post", {"GROUND": "03", "nda": "01"}, record="SO-7")
    message = str(caught.value)
    assert "SO-7" in message and "'Pigeon Post'" in message
    assert "GROUND, NDA" in message and "ship_method_map" in message
    assert caught.value.field == "ship_method"


def test_missing_ship_method_is_unknown() -> None:
    with pytest.raises(errors.UnknownShipMethod, match="empty"):
        ups.resolve_service(None, codes.DEFAULT_SHIP_METHOD_MAP, record="SO-8")


def test_ship_method_map_setting_layers_over_defaults_and_rejects_bad_codes() -> None:
    merged = ups.build_ship_method_map({"fedex ground": "03", "Best Way": "13"})
    assert merged["FEDEX GROUND"] == "03" and merged["BEST WAY"] == "13" and merged["NDA"] == "01"
    with pytest.raises(errors.ConfigurationError, match="not a UPS service code"):
        ups.build_ship_method_map({"Best Way": "99"})


def test_tracking_status_code_beats_type() -> None:
    assert ups.tracking_status("I", "OT") is TrackingStatus.OUT_FOR_DELIVERY
    assert ups.tracking_status("I", "ZZ", 21) is TrackingStatus.OUT_FOR_DELIVERY
    assert ups.tracking_status("MV") is TrackingStatus.VOIDED
    assert ups.tracking_status("Q") is TrackingStatus.UNKNOWN


# --- number formatting (trap 4) ----------------------------------------------------------------------------

@pytest.mark.parametrize(("weight", "text"), [
    ("5", "5"), ("5.0", "5"), ("5.01", "5.1"), ("0.04", "0.1"), ("123.45", "123.5"), ("1234.5", "1235"),
    ("12345.6", "12346"), ("99999", "99999"),
])
def test_format_weight_fits_five_characters(weight: str, text: str) -> None:
    assert ups.format_weight(Decimal(weight), "LBS") == text


@pytest.mark.parametrize("weight", ["0", "-1", "99999.01", "100000"])
def test_format_weight_refuses_what_cannot_fit(weight: str) -> None:
    with pytest.raises(errors.RecordError):
        ups.format_weight(Decimal(weight), "LBS", record="SO-1")


def test_format_weight_refuses_two_letter_units() -> None:
    with pytest.raises(errors.RecordError, match="KGS, LBS, OZS"):
        ups.format_weight(Decimal("1"), "LB")


@pytest.mark.parametrize(("value", "text"), [("1", "1"), ("10.2", "11"), ("0.1", "1"), ("998.5", "999"),
                                             ("999", "999")])
def test_format_dimension_rounds_up_to_three_characters(value: str, text: str) -> None:
    assert ups.format_dimension(Decimal(value)) == text


@pytest.mark.parametrize("value", ["0", "-2", "999.1", "1000"])
def test_format_dimension_refuses_what_cannot_fit(value: str) -> None:
    with pytest.raises(errors.RecordError):
        ups.format_dimension(Decimal(value))


def test_money_reads_string_amounts() -> None:
    charge = ups.money({"CurrencyCode": "usd", "MonetaryValue": "21.50"})
    assert charge is not None and charge.amount == Decimal("21.50") and charge.currency == "USD"
    assert ups.money(None) is None
    assert ups.money({"CurrencyCode": "USD", "MonetaryValue": "n/a"}) is None


def test_as_list_and_strip_str() -> None:
    assert ups.as_list(None) == [] and ups.as_list({"a": 1}) == [{"a": 1}] and ups.as_list([1, 2]) == [1, 2]
    assert ups.as_list("123 MAIN ST") == ["123 MAIN ST"]
    assert ups.strip_str(" 1&#xD; ") == "1" and ups.strip_str("&#xD;") is None and ups.strip_str(None) is None


# --- time formats (trap 9) ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "hours"), [("-05:00", -5), ("-04.00", -4), ("+05:30", 5.5), ("-0500", -5)])
def test_parse_gmt_offset_both_styles(text: str, hours: float) -> None:
    assert ups.parse_gmt_offset(text) == timezone(timedelta(hours=hours))


def test_parse_gmt_offset_blank_or_garbage_is_none() -> None:
    assert ups.parse_gmt_offset("") is None and ups.parse_gmt_offset(None) is None
    assert ups.parse_gmt_offset("EST") is None


def test_parse_ups_datetime_restores_dropped_leading_zero() -> None:
    moment = ups.parse_ups_datetime("20210210", "74700", "-05:00")
    assert moment == datetime(2021, 2, 10, 7, 47, tzinfo=timezone(timedelta(hours=-5)))
    assert ups.parse_ups_datetime("20210210", None).tzinfo is UTC
    with pytest.raises(ValueError):
        ups.parse_ups_datetime("2021-02-10", "074700")


# --- response parsers: object or array (trap 1) ------------------------------------------------------------

def test_parse_ship_response_array_style() -> None:
    result = ups.parse_ship_response(fixture("ups_ship_response_array.json"))
    assert result.shipment_id == "1ZA1B2C30312345678"
    assert result.tracking_numbers == ["1ZA1B2C30312345678", "1ZA1B2C30312345687"]
    assert [label.image for label in result.labels] == [b"GIF89a-label-1Z1", b"GIF89a-label-1Z2"]
    assert {label.image_format for label in result.labels} == {"GIF"}
    assert result.total_charges is not None and result.total_charges.amount == Decimal("21.50")
    assert result.negotiated_charges is not None and result.negotiated_charges.amount == Decimal("14.87")
    assert result.charges == result.negotiated_charges
    assert result.billing_weight == "11.0 LBS"
    assert result.warnings[1].startswith("UPS 120900: User Id and Shipper Number")
    assert len(result.warnings) == 2


def test_parse_ship_response_object_style() -> None:
    result = ups.parse_ship_response(fixture("ups_ship_response_object.json"))
    assert result.tracking_numbers == ["1ZA1B2C30312345678"]
    assert result.labels[0].image_format == "ZPL" and result.labels[0].image.startswith(b"^XA")
    assert result.negotiated_charges is None and result.charges.amount == Decimal("9.95")
    assert result.warnings == ["UPS 120900: User Id and Shipper Number combination is not qualified to receive "
                               "negotiated rates"]


def test_ship_response_without_identification_is_ambiguous() -> None:
    with pytest.raises(errors.AmbiguousRequestError, match="Track by reference"):
        ups.parse_ship_response({"ShipmentResponse": {"Response": {"ResponseStatus": {"Code": "1"}}}})


def test_undecodable_label_keeps_the_tracking_number() -> None:
    body = fixture("ups_ship_response_object.json")
    body["ShipmentResponse"]["ShipmentResults"]["PackageResults"]["ShippingLabel"]["GraphicImage"] = "not*base64"
    result = ups.parse_ship_response(body)
    assert result.tracking_numbers == ["1ZA1B2C30312345678"] and result.labels == []
    assert any("Label Recovery" in warning for warning in result.warnings)


def test_parse_xav_valid_array_style() -> None:
    result = ups.parse_xav_response(fixture("ups_xav_valid_array.json"))
    assert result.status is AddressStatus.VALID
    assert result.classification is AddressClassification.RESIDENTIAL and result.residential is True
    (candidate,) = result.candidates
    assert candidate.lines == ["123 MAIN ST"] and candidate.city == "NEW YORK" and candidate.state == "NY"
    assert candidate.postal_code == "10001" and candidate.postal_code_extension == "1234"


def test_parse_xav_ambiguous_object_style_takes_first_candidates_classification() -> None:
    result = ups.parse_xav_response(fixture("ups_xav_ambiguous_object.json"))
    assert result.status is AddressStatus.AMBIGUOUS
    assert result.classification is AddressClassification.COMMERCIAL and result.residential is False
    assert result.candidates[0].lines == ["26601 ALISO CREEK RD STE D"]
    assert result.messages == ["UPS 264002: Country Code is invalid or missing"]


def test_parse_xav_no_candidates() -> None:
    result = ups.parse_xav_response(fixture("ups_xav_no_candidates.json"))
    assert result.status is AddressStatus.NO_CANDIDATES and result.candidates == []
    assert result.residential is None


def test_parse_void_response_array_and_cie_singular() -> None:
    assert ups.parse_void_response(fixture("ups_void_response_array.json")) is True
    assert ups.parse_void_response(fixture("ups_void_response_cie_singular.json")) is True


def test_parse_void_response_not_voided() -> None:
    body = fixture("ups_void_response_array.json")
    body["VoidShipmentResponse"]["PackageLevelResults"][1]["Status"] = {"Code": "0", "Description": "Not Voided"}
    assert ups.parse_void_response(body) is False
    assert ups.parse_void_response({}) is False


def test_response_fixtures_match_the_specs_where_the_spec_is_right() -> None:
    # The array-style fixtures are what v2409/v2 promise; the object-style ones deliberately are not.
    assert_valid("AddressValidation.yaml", "XAVResponseWrapper", fixture("ups_xav_valid_array.json"), strict=False)
    assert_valid("Shipping.yaml", "VOIDSHIPMENTResponseWrapper", fixture("ups_void_response_array.json"),
                 strict=False)
    assert_valid("Tracking.yaml", "TrackApiResponse", fixture("ups_track_delivered.json"))
    assert_valid("Tracking.yaml", "TrackApiResponse", fixture("ups_track_not_found.json"))


# --- tracking ----------------------------------------------------------------------------------------------

def test_parse_track_response_delivered() -> None:
    result = ups.parse_track_response(fixture("ups_track_delivered.json"), "1ZA1B2C30312345678")
    edt = timezone(timedelta(hours=-4))
    assert result.status is TrackingStatus.DELIVERED
    assert result.delivered_at == datetime(2024, 4, 23, 9, 50, 4, tzinfo=edt)
    assert result.received_by == "JOHN"
    assert result.scheduled_delivery == "2024-04-23"
    assert result.reference_numbers == ["SO-1001"]
    assert [event.status for event in result.events] == [
        TrackingStatus.DELIVERED, TrackingStatus.OUT_FOR_DELIVERY, TrackingStatus.PICKED_UP,
        TrackingStatus.LABEL_CREATED]
    assert all(event.occurred_at.tzinfo is not None for event in result.events)
    assert result.events[0].location == "CHARLOTTE, NC, US"
    assert result.events[2].occurred_at == datetime(2024, 4, 22, 21, 29, 1, tzinfo=edt)


def test_parse_track_response_object_style_and_colon_offset() -> None:
    result = ups.parse_track_response(fixture("ups_track_in_transit_object.json"), "1za1b2c30312345687 ")
    assert result.tracking_number == "1ZA1B2C30312345687"
    assert result.status is TrackingStatus.IN_TRANSIT and result.delivered_at is None
    (event,) = result.events
    assert event.occurred_at == datetime(2021, 2, 10, 12, 47, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(hours=-5)
    assert result.scheduled_delivery == "2021-02-12"


def test_tw0001_is_not_found() -> None:
    result = ups.parse_track_response(fixture("ups_track_not_found.json"), "1ZA1B2C30399999999")
    assert result.status is TrackingStatus.NOT_FOUND and result.events == []
    assert ups.tracking_warnings(fixture("ups_track_not_found.json")) == [
        "UPS TW0001: Tracking Information Not Found"]
    assert ups.parse_track_response({}, "1ZA1B2C30399999999").status is TrackingStatus.NOT_FOUND


def test_parse_reference_track_response_lists_every_package() -> None:
    results = ups.parse_reference_track_response(fixture("ups_track_reference.json"))
    assert [r.tracking_number for r in results] == ["1ZA1B2C30312345678", "1ZA1B2C30312345687"]
    assert [r.status for r in results] == [TrackingStatus.LABEL_CREATED, TrackingStatus.VOIDED]
    assert all(r.reference_numbers == ["SO-1001"] for r in results)
    assert ups.parse_reference_track_response(fixture("ups_track_not_found.json")) == []


def test_track_params() -> None:
    assert ups.build_track_params() == {"locale": "en_US", "returnSignature": "true"}
    assert ups.build_track_params(signature=False)["returnSignature"] == "false"
    params = ups.build_reference_track_params("A1B2C3", date(2024, 4, 9), date(2024, 4, 23))
    assert params == {"locale": "en_US", "fromPickUpDate": "20240409", "toPickUpDate": "20240423",
                      "shipperNum": "A1B2C3", "refNumType": "SmallPackage"}
    with pytest.raises(errors.ConfigurationError):
        ups.build_reference_track_params("A1B2", date(2024, 4, 9), date(2024, 4, 23))


def test_track_alert_event_strips_number_and_reads_dot_offset() -> None:
    event = ups.parse_track_alert_event(fixture("ups_track_alert_event.json"))
    assert event.tracking_number == "1ZA1B2C30312345678"
    assert event.status is TrackingStatus.OUT_FOR_DELIVERY and event.code == "OT"
    assert event.occurred_at == datetime(2024, 4, 23, 9, 15, 19, tzinfo=timezone(timedelta(hours=-4)))
    assert event.location == "Charlotte, NC, US"


def test_track_alert_event_without_offset_uses_gmt_fields() -> None:
    body = fixture("ups_track_alert_event.json")
    del body["gmtOffset"]
    body["activityStatus"] = {"type": "D", "code": "FS", "description": "Delivered"}
    event = ups.parse_track_alert_event(body)
    assert event.status is TrackingStatus.DELIVERED
    assert event.occurred_at == datetime(2024, 4, 23, 13, 15, 19, tzinfo=UTC)


@pytest.mark.parametrize(("mutate", "match"), [
    (lambda b: b.pop("trackingNumber"), "no trackingNumber"),
    (lambda b: b.update(trackingNumber="   "), "no trackingNumber"),
    (lambda b: b.pop("activityStatus"), "no activityStatus"),
    (lambda b: b.update(activityStatus="D"), "no activityStatus"),
    (lambda b: [b.pop(k) for k in ("localActivityDate", "gmtActivityDate")], "no readable activity date"),
])
def test_malformed_track_alert_event_is_a_record_error(mutate: Any, match: str) -> None:
    body = fixture("ups_track_alert_event.json")
    mutate(body)
    with pytest.raises(errors.RecordError, match=match):
        ups.parse_track_alert_event(body)


def test_track_alert_event_that_is_not_an_object() -> None:
    with pytest.raises(errors.RecordError, match="not a JSON object"):
        ups.parse_track_alert_event(["1Z"])  # type: ignore[arg-type]


# --- the error normaliser ----------------------------------------------------------------------------------

def test_reference_placement_error_is_permanent() -> None:
    error = ups.parse_error(400, fixture("ups_error_120541.json"))
    assert isinstance(error, errors.PermanentApiError) and not error.retryable
    assert error.code == "120541" and error.status == 400 and error.vendor == "ups"
    assert error.message == "UPS 120541: Shipment/ReferenceNumber is not allowed for this shipment"


@pytest.mark.parametrize("status", [429, 400, 403])
def test_10429_is_retryable_whatever_the_status(status: int) -> None:
    error = ups.parse_error(status, fixture("ups_error_10429.json"))
    assert error.retryable and isinstance(error, errors.RetryableError)
    assert error.code == "10429" and error.status == status


def test_server_error_without_body_is_retryable() -> None:
    error = ups.parse_error(500, None)
    assert error.retryable and error.status == 500 and error.code is None
    assert "HTTP 500" in error.message


def test_non_json_body_is_kept_short_in_the_message() -> None:
    html = "<html><body>" + "Bad Gateway " * 100 + "</body></html>"
    error = ups.parse_error(502, html)
    assert error.retryable and "non-JSON" in error.message and len(error.message) < 300


def test_json_text_body_and_several_errors_object_style() -> None:
    text = json.dumps({"response": {"errors": [
        {"code": "120002", "message": "Missing or invalid ship to country"},
        {"code": "120802", "message": "Invalid address"}]}})
    error = ups.parse_error(400, text)
    assert error.message == "UPS 120002: Missing or invalid ship to country; UPS 120802: Invalid address"
    assert error.code == "120002"
    single = ups.parse_error(400, {"response": {"errors": {"code": "TV1002", "message": "Invalid inquiry number"}}})
    assert single.message == "UPS TV1002: Invalid inquiry number" and single.code == "TV1002"


def test_401_is_an_authentication_error() -> None:
    error = ups.parse_error(401, {"response": {"errors": [{"code": "250002", "message": "Invalid Authentication"}]}})
    assert isinstance(error, errors.AuthenticationError)


def test_label_bytes_survive_round_trip() -> None:
    # Label.image is bytes; the model serialises it as base64 for the ledger.
    result = ups.parse_ship_response(fixture("ups_ship_response_array.json"))
    dumped = json.loads(result.model_dump_json())
    assert base64.b64decode(dumped["labels"][0]["image"]) == b"GIF89a-label-1Z1"


def test_normalise_first_and_get_path_walk_arrays() -> None:
    assert normalise.get_path({"a": [{"b": {"c": "x"}}]}, "a", "b", "c") == "x"
    assert normalise.get_path({"a": []}, "a", "b") is None
