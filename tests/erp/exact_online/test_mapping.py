"""Exact Online mapping with plain dicts: /Date(ms)/, the goods delivery as an order, weights, customs values,
the field named for each broken document, the status line."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ml_connector.erp.exact_online import mapping as exact
from ml_connector.errors import MissingWeight, RecordError
from ml_connector.models import TrackingResult, TrackingStatus

ADDRESS = {"ID": "addr-1", "AccountName": "Bergsport Zürich AG", "ContactName": "Urs Meier",
           "AddressLine1": "Bahnhofstrasse 1", "City": "Zürich", "Postcode": "8001", "Country": "CH"}
ITEMS = {"item-boot": {"ID": "item-boot", "Code": "BOOT", "Description": "Hiking boots", "GrossWeight": 1.4,
                       "NetWeight": 1.2, "StatisticalCode": "64039113"},
         "item-tent": {"ID": "item-tent", "Code": "TENT", "Description": "Tent", "GrossWeight": None,
                       "NetWeight": None, "StatisticalCode": None}}
SALES_ORDERS = {"9003": {"OrderNumber": 9003, "Currency": "EUR",
                         "SalesOrderLines": {"results": [{"ID": "sol-1", "UnitPrice": 89.9}]}}}


def delivery(lines=None, **changes):
    doc = {"EntryID": "{0f0e0d0c-0000-4000-8000-000000000001}", "DeliveryNumber": 5003,
           "DeliveryAddress": "addr-1", "DeliveryAccountName": "Bergsport", "ShippingMethodCode": "UPS-EXP",
           "ShippingMethodDescription": "UPS Express", "Modified": "/Date(1764410400000)/",
           "GoodsDeliveryLines": {"results": lines if lines is not None else [
               {"ID": "l1", "Item": "item-boot", "ItemCode": "BOOT", "ItemDescription": "Hiking boots",
                "QuantityDelivered": 2, "SalesOrderLineID": "sol-1", "SalesOrderNumber": 9003}]}}
    doc.update(changes)
    return doc


def to_order(doc, **kw):
    args = dict(address=ADDRESS, items=ITEMS, sales_orders=SALES_ORDERS, default_origin_country="DE")
    args.update(kw)
    return exact.order_from_goods_delivery(doc, **args)


def test_exact_dates():
    assert exact.parse_date("/Date(1764410400000)/") == datetime(2025, 11, 29, 10, 0, tzinfo=UTC)
    assert exact.parse_date(None) is None
    assert exact.odata_datetime(datetime(2026, 11, 29, 10, 15, 30, 5, tzinfo=UTC)) == \
        "datetime'2026-11-29T10:15:30'"
    with pytest.raises(ValueError):
        exact.deliveries_filter(datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))


def test_a_goods_delivery_becomes_an_order_with_customs_values():
    order = to_order(delivery())
    assert (order.number, order.erp_id, order.ship_method, order.ship_method_description) == \
        ("5003", "0f0e0d0c-0000-4000-8000-000000000001", "UPS-EXP", "UPS Express")
    assert order.ship_to.country == "CH" and order.ship_to.attention == "Urs Meier"
    assert order.packages[0].weight == Decimal("2.8") and order.packages[0].weight_unit == "KGS"
    line = order.lines[0]
    assert (line.sku, line.quantity, line.unit_value, line.currency, line.origin_country, line.hs_code) == \
        ("BOOT", Decimal(2), Decimal("89.9"), "EUR", "DE", "64039113")
    assert order.modified_at == datetime(2025, 11, 29, 10, 0, tzinfo=UTC)


def test_values_the_erp_does_not_have_stay_empty_never_guessed():
    order = to_order(delivery(), sales_orders={}, default_origin_country=None)
    line = order.lines[0]
    assert line.unit_value is None and line.currency is None and line.origin_country is None


def test_weight_comes_from_the_item_then_the_settings_else_quarantine():
    tent = [{"ID": "l2", "Item": "item-tent", "ItemCode": "TENT", "QuantityDelivered": 1}]
    with pytest.raises(MissingWeight) as caught:
        to_order(delivery(lines=tent))
    assert caught.value.field == "Items.GrossWeight" and "TENT" in str(caught.value)
    assert to_order(delivery(lines=tent), item_weights={"tent": Decimal("3.2")}).packages[0].weight == Decimal("3.2")
    assert to_order(delivery(lines=tent), default_weight_per_unit=Decimal("2")).packages[0].weight == Decimal(2)


@pytest.mark.parametrize(("doc", "address", "field"), [
    (delivery(DeliveryAddress=None), None, "DeliveryAddress"),
    (delivery(), {**ADDRESS, "AddressLine1": ""}, "Addresses.AddressLine1"),
    (delivery(), {**ADDRESS, "City": None}, "Addresses.City"),
    (delivery(), {**ADDRESS, "Country": "Schweiz"}, "Addresses.Country"),
    (delivery(lines=[]), ADDRESS, "GoodsDeliveryLines"),
])
def test_a_broken_delivery_names_the_field(doc, address, field):
    with pytest.raises(RecordError) as caught:
        to_order(doc, address=address)
    assert caught.value.field == field and caught.value.record == "5003"


def test_status_line_and_tracking_body():
    delivered = TrackingResult(tracking_number="1ZA1B2C3", status=TrackingStatus.DELIVERED,
                               delivered_at=datetime(2026, 11, 30, 9, 5, tzinfo=UTC), received_by="MEIER")
    assert exact.status_text(delivered) == "UPS delivered 2026-11-30 09:05 UTC, signed by MEIER (1ZA1B2C3)"
    moving = TrackingResult(tracking_number="1ZA1B2C3", status=TrackingStatus.IN_TRANSIT)
    assert exact.status_text(moving, {"in_transit": "Unterwegs"}) == "Unterwegs (1ZA1B2C3)"
    assert exact.tracking_body(" 1ZA1B2C3 ") == {"TrackingNumber": "1ZA1B2C3"}
    with pytest.raises(RecordError):
        exact.tracking_body("")


def test_odata_envelopes():
    assert exact.results({"d": {"results": [{"a": 1}], "__next": "u"}}) == [{"a": 1}]
    assert exact.next_link({"d": {"results": [], "__next": "u"}}) == "u"
    assert exact.results({"d": {"a": 1}}) == [{"a": 1}]
    assert exact.error_message({"error": {"code": "", "message": {"lang": "", "value": "nope"}}}) == "nope"
