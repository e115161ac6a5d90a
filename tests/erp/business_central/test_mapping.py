"""Business Central mapping (``ml_connector.erp.business_central.mapping``): pure functions, no HTTP.

Sales orders come in two forms: the sandbox seed rendered by the sandbox's own v2.0 builder (so the
mapping is tested against the exact shapes the sandbox serves), and small hand-written documents for
edge cases the seed does not hold.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from ml_connector.erp.business_central import mapping as bc
from ml_connector.errors import MissingWeight, RecordError
from ml_connector.models import TrackingStatus
from ml_connector_sandbox.business_central import (
    SALES_ORDER_FILTER_FIELDS,
    BusinessCentralState,
    EntityBuilder,
    parse_filter,
)

AL_DIR = Path(bc.__file__).parent / "al"
WEIGHTS = {"1896-S": Decimal("88.5"), "1908-S": Decimal("31.2"), "1928-S": Decimal("4.4"),
           "1900-S": Decimal("12"), "1996-S": Decimal("41"), "1964-S": Decimal("12"), "1920-S": Decimal("120"),
           "1936-S": Decimal("12"), "2000-S": Decimal("30"), "1968-S": Decimal("30")}


@pytest.fixture(scope="module")
def seed_orders() -> dict[str, dict]:
    """Every seed order as the sandbox serves it with ``$expand=salesOrderLines,shipmentMethod``."""
    state = BusinessCentralState()
    build = EntityBuilder(state)
    return {o.number: build.sales_order(o, {"salesOrderLines", "shipmentMethod"}) for o in state.orders.values()}


def doc(**overrides) -> dict:
    """A minimal valid API v2.0 salesOrder (expanded), with ``overrides`` applied."""
    base = {
        "@odata.etag": 'W/"JzE5OzEyMzQ1Njc4OTAxMjM0NTY3ODkwMTsn"',
        "id": "1f7c3a52-0d4e-4c8e-bb61-2a9e5f0c7d11",
        "number": "S-ORD200001",
        "externalDocumentNumber": "",
        "customerName": "Contoso Retail Inc.",
        "shipToName": "Contoso Retail Inc.",
        "shipToContact": "",
        "shipToAddressLine1": "500 Fifth Avenue",
        "shipToAddressLine2": "",
        "shipToCity": "New York",
        "shipToState": "NY",
        "shipToPostCode": "10110",
        "shipToCountry": "US",
        "phoneNumber": "",
        "email": "",
        "status": "Open",
        "lastModifiedDateTime": "2026-11-01T10:15:30.123Z",
        "shipmentMethod": {"id": "x", "code": "GROUND", "displayName": "UPS Ground"},
        "salesOrderLines": [
            {"sequence": 10000, "lineType": "Item", "lineObjectNumber": "1928-S", "description": "AMSTERDAM Lamp",
             "quantity": 3, "shippedQuantity": 0},
        ],
    }
    base.update(overrides)
    return base


def order_of(document: dict, **kwargs):
    kwargs.setdefault("default_weight_per_unit", None)
    kwargs.setdefault("item_weights", WEIGHTS)
    return bc.order_from_sales_order(document, **kwargs)


# -- seed orders ------------------------------------------------------------------------------------


def test_us_residential_order_maps_every_canonical_field(seed_orders):
    source = seed_orders["S-ORD101001"]
    order = order_of(source)
    assert order.erp == "business_central"
    assert order.erp_id == source["id"]
    assert order.number == "S-ORD101001"
    assert order.ship_method == "GROUND"
    assert order.etag == source["@odata.etag"]
    assert order.modified_at is not None and order.modified_at.tzinfo is not None
    assert order.customer_reference is None  # BC sends "" for an empty External Document No.
    ship_to = order.ship_to
    assert (ship_to.name, ship_to.attention) == ("Emily Carter", None)
    assert ship_to.lines == ["14 Willow Brook Lane", "Apt 3B"]
    assert (ship_to.city, ship_to.state, ship_to.postal_code, ship_to.country) == ("Rye", "NY", "10580", "US")
    assert ship_to.phone == "+1 914 555 0142" and ship_to.email == "emily.carter@example.com"
    assert [(line.sku, line.quantity, line.unit_weight) for line in order.lines] == [
        ("1928-S", Decimal(2), Decimal("4.4"))]
    assert len(order.packages) == 1
    assert order.packages[0].weight == Decimal("8.8") and order.packages[0].weight_unit == "LBS"


def test_multi_line_order_weighs_item_lines_only(seed_orders):
    order = order_of(seed_orders["S-ORD101002"])
    assert [line.sku for line in order.lines] == ["1896-S", "1908-S"]  # comment and freight G/L line skipped
    assert order.packages[0].weight == Decimal("88.5") + 4 * Decimal("31.2")
    assert order.ship_to.attention == "Receiving Dept."
    assert order.ship_to.lines == ["1455 Market Street", "Suite 600"]
    assert order.customer_reference == "PO-88412"
    assert order.ship_method == "NDA"


def test_partly_shipped_line_counts_only_the_outstanding_quantity(seed_orders):
    order = order_of(seed_orders["S-ORD101003"])
    chairs = next(line for line in order.lines if line.sku == "1900-S")
    assert chairs.quantity == Decimal(4)  # 6 ordered, 2 already shipped
    assert order.packages[0].weight == 4 * Decimal(12) + Decimal(41)


def test_international_order_keeps_canadian_postcode_and_province(seed_orders):
    order = order_of(seed_orders["S-ORD101005"])
    assert (order.ship_to.country, order.ship_to.state, order.ship_to.postal_code) == ("CA", "ON", "M5X 1C7")
    assert order.ship_method == "STANDARD"
    # the customs values a commercial invoice needs: the line's unit price in the order's currency
    assert (order.lines[0].unit_value, order.lines[0].currency) == (Decimal("1394.6"), "USD")
    assert order.lines[0].origin_country is None  # API v2.0 items carry none: a setting, never a guess


def test_a_line_without_price_or_an_order_without_currency_leaves_them_empty():
    order = order_of(doc(currencyCode=""))
    assert (order.lines[0].unit_value, order.lines[0].currency) == (None, None)


def test_carrier_rules_are_left_to_the_carrier(seed_orders):
    """No postcode (S-ORD101006) and a PO box (S-ORD101008) map fine: whether UPS delivers there is decided
    once, in carriers/ups/rules.py, for every ERP."""
    assert order_of(seed_orders["S-ORD101006"]).ship_to.postal_code is None
    assert order_of(seed_orders["S-ORD101008"]).ship_to.lines[0].upper().startswith("P")


def test_unknown_shipment_method_is_left_to_the_carrier_mapping(seed_orders):
    order = order_of(seed_orders["S-ORD101007"])
    assert order.ship_method == "PIGEON"


def test_longest_external_document_number_is_carried_whole(seed_orders):
    order = order_of(seed_orders["S-ORD101009"])
    assert order.customer_reference == "BAYVIEW-ROBOTICS-PO-2026-00447-RUSH"
    assert len(order.customer_reference) == 35  # BC External Document No. is Code[35]


def test_every_valid_seed_order_maps_and_resolves_a_ups_service_except_the_pigeon(seed_orders):
    from ml_connector.carriers.ups.codes import build_ship_method_map, resolve_service
    from ml_connector.errors import UnknownShipMethod

    services = build_ship_method_map()  # the carrier layer's defaults, no pipeline overrides
    broken = {"S-ORD101006", "S-ORD101008"}
    for number, source in seed_orders.items():
        if number in broken:
            continue
        order = bc.order_from_sales_order(source, default_weight_per_unit=Decimal("1.5"))
        assert order.packages[0].weight > 0, number
        if number == "S-ORD101007":
            with pytest.raises(UnknownShipMethod):
                resolve_service(order.ship_method, services, record=number)
        else:
            assert resolve_service(order.ship_method, services, record=number) in {"01", "02", "03", "11"}, number


def test_company_information_is_the_default_ship_from():
    state = BusinessCentralState()
    ship_from = bc.address_from_company_information(EntityBuilder(state).company_information())
    assert ship_from.name == "CRONUS USA, Inc."
    assert ship_from.lines == ["2100 Powell Street", "Suite 900"]
    assert (ship_from.city, ship_from.state, ship_from.postal_code, ship_from.country) == (
        "Emeryville", "CA", "94608", "US")


def test_company_information_without_street_says_where_to_fix_it():
    with pytest.raises(RecordError, match="Company Information has no addressLine1"):
        bc.address_from_company_information({"displayName": "X", "city": "Y", "country": "US"})


# -- address rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("street", ["100 Box Canyon Road", "42 Boxwood Lane", "9 Depot Box Street",
                                    "1 Polo Boxing Club Way"])
def test_street_names_are_carried_as_written(street):
    assert order_of(doc(shipToAddressLine1=street)).ship_to.lines == [street]


def test_po_box_is_carried_as_written():
    document = doc(shipToAddressLine1="PO Box 1200", shipToCity="Toronto", shipToState="ON",
                   shipToPostCode="M5W 1A1", shipToCountry="CA")
    assert order_of(document).ship_to.country == "CA"


def test_missing_country_is_a_record_error():
    with pytest.raises(RecordError) as caught:
        order_of(doc(shipToCountry=""))
    assert caught.value.field == "shipToCountry"
    assert "no country" in str(caught.value) and "S-ORD200001" in str(caught.value)


def test_missing_country_takes_the_default_country_when_given():
    assert order_of(doc(shipToCountry=""), default_country="us").ship_to.country == "US"


def test_country_that_is_not_iso_two_letters_is_a_record_error():
    with pytest.raises(RecordError, match="'USA' is not an ISO 3166 two-letter country code"):
        order_of(doc(shipToCountry="USA"))


def test_empty_street_is_a_record_error():
    with pytest.raises(RecordError) as caught:
        order_of(doc(shipToAddressLine1="  ", shipToAddressLine2=""))
    assert caught.value.field == "shipToAddressLine1" and "no street" in str(caught.value)


def test_street_in_second_line_only_is_accepted():
    assert order_of(doc(shipToAddressLine1="", shipToAddressLine2="500 Fifth Avenue")).ship_to.lines == [
        "500 Fifth Avenue"]


def test_post_code_is_optional_where_countries_have_none():
    order = order_of(doc(shipToCountry="HK", shipToPostCode="", shipToState="", shipToCity="Hong Kong"))
    assert order.ship_to.postal_code is None


def test_missing_city_is_a_record_error():
    with pytest.raises(RecordError, match="no city"):
        order_of(doc(shipToCity=""))


def test_ship_to_name_falls_back_to_the_customer_name():
    assert order_of(doc(shipToName="")).ship_to.name == "Contoso Retail Inc."


def test_ship_method_falls_back_to_display_name_and_may_be_absent():
    assert order_of(doc(shipmentMethod={"code": "", "displayName": "UPS Ground"})).ship_method == "UPS Ground"
    assert order_of(doc(shipmentMethod=None)).ship_method is None


# -- weights --------------------------------------------------------------------------------------------


def test_item_weights_take_precedence_over_the_default():
    order = order_of(doc(), item_weights={"1928-S": Decimal("2")}, default_weight_per_unit=Decimal("9"))
    assert order.packages[0].weight == Decimal(6)
    assert order.lines[0].unit_weight == Decimal(2)


def test_default_weight_covers_items_without_an_entry():
    lines = [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 1},
             {"lineType": "Item", "lineObjectNumber": "1999-X", "quantity": 2}]
    order = order_of(doc(salesOrderLines=lines), item_weights={"1928-S": Decimal("4")},
                     default_weight_per_unit=Decimal("0.5"))
    assert order.packages[0].weight == Decimal(5)


def test_item_weight_keys_are_matched_case_insensitively_as_bc_codes_are():
    order = order_of(doc(), item_weights={"1928-s": Decimal("1")})
    assert order.packages[0].weight == Decimal(3)


def test_missing_weight_names_the_order_and_every_item_without_one():
    lines = [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 1},
             {"lineType": "Item", "lineObjectNumber": "1999-X", "quantity": 2},
             {"lineType": "Item", "lineObjectNumber": "2001-Y", "quantity": 1},
             {"lineType": "Item", "lineObjectNumber": "1999-X", "quantity": 1}]
    with pytest.raises(MissingWeight) as caught:
        order_of(doc(salesOrderLines=lines), item_weights={"1928-S": Decimal("4")})
    message = str(caught.value)
    assert caught.value.record == "S-ORD200001"
    assert "1999-X, 2001-Y" in message and "1928-S" not in message
    assert "item_weights" in message and "default_weight_per_unit" in message


@pytest.mark.parametrize("weights,default", [({"1928-S": Decimal(0)}, None), ({}, Decimal(0)),
                                             ({"1928-S": Decimal("-1")}, Decimal("-2")), (None, None)])
def test_weight_is_never_zero_or_negative(weights, default):
    with pytest.raises(MissingWeight, match="1928-S"):
        bc.order_from_sales_order(doc(), default_weight_per_unit=default, item_weights=weights)


def test_zero_item_weight_falls_back_to_the_default():
    order = order_of(doc(), item_weights={"1928-S": Decimal(0)}, default_weight_per_unit=Decimal(1))
    assert order.packages[0].weight == Decimal(3)


def test_weight_unit_is_carried_to_the_package():
    assert order_of(doc(), weight_unit="KGS").packages[0].weight_unit == "KGS"


def test_float_quantities_do_not_leak_binary_fractions():
    lines = [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 0.1}]
    order = order_of(doc(salesOrderLines=lines), item_weights={"1928-S": Decimal(3)})
    assert order.packages[0].weight == Decimal("0.3")


def test_order_without_item_lines_is_a_record_error():
    lines = [{"lineType": "Comment", "description": "call first", "quantity": 0},
             {"lineType": "Account", "lineObjectNumber": "40250", "quantity": 1}]
    with pytest.raises(RecordError, match="no item quantity left to ship"):
        order_of(doc(salesOrderLines=lines))


def test_fully_shipped_order_is_a_record_error():
    lines = [{"lineType": "Item", "lineObjectNumber": "1928-S", "quantity": 2, "shippedQuantity": 2}]
    with pytest.raises(RecordError, match="no item quantity left to ship"):
        order_of(doc(salesOrderLines=lines))


def test_unexpanded_order_says_to_expand_the_lines():
    document = doc()
    del document["salesOrderLines"]
    with pytest.raises(RecordError, match=r"\$expand=salesOrderLines"):
        order_of(document)


# -- filter and datetimes ---------------------------------------------------------------------------


def test_sales_orders_filter_is_released_orders_in_a_half_open_window():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    assert bc.sales_orders_filter(start, start + timedelta(minutes=15)) == (
        "status eq 'Open' and lastModifiedDateTime ge 2026-11-01T00:00:00Z "
        "and lastModifiedDateTime lt 2026-11-01T00:15:00Z")


def test_sales_orders_filter_converts_to_utc_and_keeps_fractions():
    start = datetime(2026, 11, 1, 1, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    end = datetime(2026, 11, 2, tzinfo=UTC)
    text = bc.sales_orders_filter(start, end)
    assert "ge 2026-11-01T00:00:00.25Z" in text and "lt 2026-11-02T00:00:00Z" in text


def test_sales_orders_filter_refuses_naive_and_empty_intervals():
    with pytest.raises(ValueError, match="no timezone"):
        bc.sales_orders_filter(datetime(2026, 11, 1), datetime(2026, 11, 2))
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="empty interval"):
        bc.sales_orders_filter(start, start)


def test_sales_orders_filter_is_accepted_by_the_sandbox_filter_grammar():
    start = datetime(2026, 11, 1, tzinfo=UTC)
    predicate = parse_filter(bc.sales_orders_filter(start, start + timedelta(days=1)),
                             SALES_ORDER_FILTER_FIELDS, "salesOrder")
    assert predicate({"status": "Open", "lastModifiedDateTime": "2026-11-01T12:00:00.000Z"})
    assert not predicate({"status": "Draft", "lastModifiedDateTime": "2026-11-01T12:00:00.000Z"})
    assert not predicate({"status": "Open", "lastModifiedDateTime": "2026-11-02T00:00:00.000Z"})


def test_parse_datetime_reads_bc_values():
    assert bc.parse_datetime("2026-11-01T10:15:30.1234567Z") == datetime(2026, 11, 1, 10, 15, 30, 123456,
                                                                         tzinfo=UTC)
    assert bc.parse_datetime("0001-01-01T00:00:00Z") is None
    assert bc.parse_datetime("") is None


# -- tracking write-back ------------------------------------------------------------------------------


def test_tracking_patch_has_the_custom_page_fields():
    body = bc.tracking_patch("1Z999AA10123456784", service_code="ground", status=TrackingStatus.LABEL_CREATED,
                             last_event="Shipper created a label", delivered_at=None)
    assert body == {"packageTrackingNo": "1Z999AA10123456784", "shippingAgentCode": "UPS",
                    "shippingAgentServiceCode": "GROUND", "mlShipmentStatus": "label_created",
                    "mlLastTrackingEvent": "Shipper created a label"}


def test_tracking_patch_leaves_out_what_it_is_not_given():
    assert bc.tracking_patch(" 1Z999AA10123456784 ", shipping_agent_code=None, service_code=None) == {
        "packageTrackingNo": "1Z999AA10123456784"}


def test_tracking_patch_writes_delivery_time_as_utc():
    delivered = datetime(2026, 11, 3, 9, 30, tzinfo=timezone(timedelta(hours=-5)))
    body = bc.tracking_patch("1Z999AA10123456784", service_code=None, status="delivered",
                             delivered_at=delivered)
    assert body["mlDeliveredAt"] == "2026-11-03T14:30:00Z" and body["mlShipmentStatus"] == "delivered"


def test_tracking_number_longer_than_the_bc_field_is_refused():
    with pytest.raises(RecordError, match="holds 50"):
        bc.tracking_patch("1Z" + "9" * 49, service_code=None)
    with pytest.raises(RecordError, match="no tracking number"):
        bc.tracking_patch("  ", service_code=None)


def test_agent_codes_must_fit_code10():
    with pytest.raises(RecordError, match="Code\\[10\\]"):
        bc.tracking_patch("1Z999AA10123456784", service_code="NEXT DAY AIR")


def test_last_event_is_cut_to_the_field_length():
    body = bc.tracking_patch("1Z999AA10123456784", service_code=None, last_event="x " * 80)
    assert len(body["mlLastTrackingEvent"]) == 100 and body["mlLastTrackingEvent"].endswith("...")


def test_status_longer_than_its_field_is_refused():
    with pytest.raises(RecordError, match="longer than 30"):
        bc.tracking_patch("1Z999AA10123456784", service_code=None, status="s" * 31)


def test_write_back_names_match_the_al_page_and_the_sandbox():
    page = (AL_DIR / "src" / "MLShipmentTracking.Page.al").read_text()
    page_fields = set(re.findall(r"^\s*field\((\w+);", page, re.MULTILINE))
    body = bc.tracking_patch("1Z999AA10123456784", service_code="GROUND", status="in_transit",
                             last_event="Departed", delivered_at=datetime(2026, 11, 3, tzinfo=UTC))
    assert set(body) <= page_fields
    assert {"id", "number", "lastModifiedDateTime"} <= page_fields
    for prop, value in (("APIPublisher", bc.WRITEBACK_API_PUBLISHER), ("APIGroup", bc.WRITEBACK_API_GROUP),
                        ("APIVersion", bc.WRITEBACK_API_VERSION), ("EntitySetName", bc.WRITEBACK_ENTITY_SET)):
        assert f"{prop} = '{value}';" in page
    from ml_connector_sandbox import business_central as sandbox
    assert set(body) == set(sandbox._WRITABLE)
    assert sandbox.WRITEBACK_ROUTE == (bc.WRITEBACK_API_PUBLISHER, bc.WRITEBACK_API_GROUP, bc.WRITEBACK_API_VERSION)


def test_an_unknown_country_code_is_a_record_error_naming_the_field():
    with pytest.raises(RecordError, match="ship-to country 'XX' is not an ISO 3166") as caught:
        order_of(doc(shipToCountry="XX"))
    assert caught.value.field == "shipToCountry"
