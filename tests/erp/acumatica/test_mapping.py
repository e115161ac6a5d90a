"""Acumatica mapping with plain dicts shaped as the Default 24.200.001 endpoint returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from ml_connector.erp.acumatica import mapping as acu
from ml_connector.errors import MissingWeight, RecordError
from ml_connector.models import TrackingResult, TrackingStatus


def v(x):
    return {"value": x}


def shipment(**overrides):
    doc = {
        "id": "0f1e2d3c-0000-0000-0000-000000000001", "ShipmentNbr": v("000201"), "Status": v("Open"),
        "Hold": v(False), "ShipVia": v("UPSGROUND"), "LastModifiedDateTime": v("2026-11-29T10:31:28.402+03:00"),
        "ResidentialDelivery": v(False), "note": {},
        "ShippingSettings": {
            "ShipToAddress": {"AddressLine1": v("1 Market Street"), "AddressLine2": {}, "City": v("San Francisco"),
                              "State": v("CA"), "PostalCode": v("94105"), "Country": v("us")},
            "ShipToContact": {"BusinessName": v("ABar Inc."), "Attention": v("Receiving"), "Phone1": v("415"),
                              "Email": {}}},
        "Orders": [{"id": "o1", "OrderType": v("SO"), "OrderNbr": v("SO005201")}],
        "Details": [{"id": "d1", "InventoryID": v("aalego500"), "ShippedQty": v(2)}],
        "Packages": [{"id": "p1", "BoxID": v("MEDIUM"), "Weight": v(6.5), "UOM": v("KG"), "Length": v(12),
                      "Width": v(10), "Height": v(8), "TrackingNbr": {}},
                     {"id": "p2", "BoxID": v("SMALL"), "Weight": v(2), "UOM": {}, "TrackingNbr": {}}],
    }
    doc.update(overrides)
    return doc


def test_every_field_is_read_from_its_value_wrapping():
    order = acu.order_from_shipment(shipment())
    assert (order.erp, order.erp_id, order.number) == ("acumatica", "0f1e2d3c-0000-0000-0000-000000000001", "000201")
    assert order.ship_method == "UPSGROUND" and order.customer_reference == "SO005201"
    assert order.ship_to.name == "ABar Inc." and order.ship_to.attention == "Receiving"
    assert order.ship_to.country == "US" and order.ship_to.lines == ["1 Market Street"]
    assert order.modified_at == datetime(2026, 11, 29, 7, 31, 28, 402000, tzinfo=UTC)
    assert [(p.weight, p.weight_unit) for p in order.packages] == [(Decimal("6.5"), "KGS"), (Decimal("2"), "LBS")]
    assert order.packages[0].dimensions.length == 12 and order.packages[1].dimensions is None
    assert order.lines[0].sku == "AALEGO500"


def test_a_package_without_weight_names_the_field():
    doc = shipment(Packages=[{"id": "p1", "BoxID": v("MEDIUM"), "Weight": v(0)}])
    with pytest.raises(MissingWeight) as caught:
        acu.order_from_shipment(doc)
    assert caught.value.field == "Packages/Weight" and "000201" in str(caught.value)


def test_no_package_rows_weigh_the_details_or_fail():
    doc = shipment(Packages=[])
    with pytest.raises(MissingWeight):
        acu.order_from_shipment(doc)
    order = acu.order_from_shipment(doc, item_weights={"AALEGO500": Decimal("1.25")})
    assert [p.weight for p in order.packages] == [Decimal("2.50")]


@pytest.mark.parametrize(("field", "blank", "named"), [
    ("Country", {}, "ShipToAddress/Country"), ("AddressLine1", {}, "ShipToAddress/AddressLine1"),
    ("City", v(""), "ShipToAddress/City"), ("Country", v("XX"), "ShipToAddress/Country")])
def test_an_incomplete_address_names_the_acumatica_field(field, blank, named):
    doc = shipment()
    doc["ShippingSettings"]["ShipToAddress"][field] = blank
    with pytest.raises(RecordError) as caught:
        acu.order_from_shipment(doc)
    assert caught.value.field == named


def test_expand_missing_is_a_clear_error():
    with pytest.raises(RecordError, match=r"\$expand=Packages"):
        acu.order_from_shipment({k: val for k, val in shipment().items() if k != "Packages"})


def test_ready_to_ship_rule():
    assert acu.ready_to_ship(shipment(), statuses=["Open"]) is None
    assert "on hold" in acu.ready_to_ship(shipment(Hold=v(True)), statuses=["Open"])
    assert acu.ready_to_ship(shipment(Hold=v(True)), statuses=["Open"], skip_on_hold=False) is None
    assert "Confirmed" in acu.ready_to_ship(shipment(Status=v("Confirmed")), statuses=["Open"])
    tracked = shipment(Packages=[{"id": "p1", "Weight": v(1), "TrackingNbr": v("1Z")}])
    assert "tracking number" in acu.ready_to_ship(tracked, statuses=["Open"])


def test_filter_is_datetimeoffset_and_url_encoded_on_the_way_out():
    start, end = datetime(2026, 11, 29, 10, 0, tzinfo=UTC), datetime(2026, 11, 29, 10, 15, tzinfo=UTC)
    text = acu.shipments_filter(start, end, statuses=["Open", "Confirmed"])
    assert text == ("(Status eq 'Open' or Status eq 'Confirmed') and LastModifiedDateTime ge "
                    "datetimeoffset'2026-11-29T10:00:00.000+00:00' and LastModifiedDateTime lt "
                    "datetimeoffset'2026-11-29T10:15:00.000+00:00'")
    assert "%2B00%3A00" in urlencode({"$filter": text})
    with pytest.raises(ValueError):
        acu.shipments_filter(end, start, statuses=["Open"])
    with pytest.raises(ValueError):
        acu.shipments_filter(datetime(2026, 1, 1), end, statuses=["Open"])


def test_tracking_put_matches_rows_by_id_and_a_replay_sends_nothing():
    doc = shipment()
    body = acu.tracking_put(doc, ["1ZA", "1ZB"])
    assert body == {"id": doc["id"], "ShipmentNbr": v("000201"),
                    "Packages": [{"id": "p1", "TrackingNbr": v("1ZA")}, {"id": "p2", "TrackingNbr": v("1ZB")}]}
    doc["Packages"][0]["TrackingNbr"], doc["Packages"][1]["TrackingNbr"] = v("1ZA"), v("1ZB")
    assert acu.tracking_put(doc, ["1ZA", "1ZB"]) is None


def test_tracking_put_refuses_when_the_packages_changed():
    with pytest.raises(RecordError, match="packages changed"):
        acu.tracking_put(shipment(), ["1ZA"])


def test_status_line_replaces_only_its_own_line_in_the_note():
    tracking = TrackingResult(tracking_number="1ZA", status=TrackingStatus.DELIVERED, received_by="J SMITH",
                              delivered_at=datetime(2026, 11, 28, 15, 4, tzinfo=UTC))
    doc = shipment(note=v("Call before delivery\n[ml-connector UPS] 1ZA: in_transit"))
    body = acu.status_put(doc, tracking, write_note=True, custom_fields={})
    assert body["note"] == v("Call before delivery\n[ml-connector UPS] 1ZA: delivered; delivered "
                             "2026-11-28T15:04:00+00:00; signed by J SMITH")
    assert acu.status_put(shipment(note=body["note"]), tracking, write_note=True, custom_fields={}) is None


# -------------------------------------------------------------------------------- customs values


def sales_order(*lines, currency="USD", order_nbr="SO005201"):
    return {"id": "so1", "OrderType": v("SO"), "OrderNbr": v(order_nbr), "CurrencyID": v(currency),
            "Details": [{"id": f"l{n}", "LineNbr": v(n), "InventoryID": v(sku), "UnitPrice": price}
                        for n, sku, price in lines]}


def test_shipment_lines_take_price_and_currency_from_their_sales_order_line():
    doc = shipment(Details=[
        {"id": "d1", "InventoryID": v("AALEGO500"), "ShippedQty": v(2), "Description": v("Lego"),
         "OrderType": v("SO"), "OrderNbr": v("SO005201"), "OrderLineNbr": v(2)},
        {"id": "d2", "InventoryID": v("COFFEEMUG"), "ShippedQty": v(1), "Description": v("Mug")}])  # no line nbr
    so = sales_order((1, "AALEGO500", v(10)), (2, "AALEGO500", v(49.99)), (3, "COFFEEMUG", v(7.5)), currency="cad")
    items = {"AALEGO500": {"InventoryID": v("AALEGO500"), "CountryOfOrigin": v("dk"), "TariffCode": v("9503.00.0073")},
             "COFFEEMUG": {"InventoryID": v("COFFEEMUG"), "CountryOfOrigin": {}, "TariffCode": {}}}
    order = acu.order_from_shipment(doc, sales_orders={("SO", "SO005201"): so}, stock_items=items)
    lego, mug = order.lines
    # matched by OrderType/OrderNbr/OrderLineNbr (line 2, not the first line of the same item)
    assert (lego.unit_value, lego.currency, lego.origin_country, lego.hs_code) == \
        (Decimal("49.99"), "CAD", "DK", "9503000073")
    # no order line number: the first priced line of the item; the item has no origin (the settings fill it)
    assert (mug.unit_value, mug.currency, mug.origin_country, mug.hs_code) == (Decimal("7.5"), "CAD", None, None)


def test_an_unpriced_sales_order_line_leaves_the_value_empty_without_guessing():
    doc = shipment(Details=[{"id": "d1", "InventoryID": v("AALEGO500"), "ShippedQty": v(1), "OrderType": v("SO"),
                             "OrderNbr": v("SO005201"), "OrderLineNbr": v(1)}])
    so = sales_order((1, "AALEGO500", {}), (2, "AALEGO500", v(49.99)))
    line = acu.order_from_shipment(doc, sales_orders={("SO", "SO005201"): so}).lines[0]
    assert line.unit_value is None and line.currency == "USD"  # the carrier names lines[0].unit_value
    assert acu.order_from_shipment(doc).lines[0].unit_value is None  # sales order not read


def test_customs_keys_and_the_sales_order_filter():
    doc = shipment(Orders=[{"OrderType": v("SO"), "OrderNbr": v("A")}, {"OrderType": v("SO"), "OrderNbr": v("A")},
                           {"OrderType": v("QT"), "OrderNbr": v("B")}, {"OrderNbr": v("C")}],
                   Details=[{"InventoryID": v("x1")}, {"InventoryID": v("X1")}, {"InventoryID": {}}])
    assert acu.sales_order_keys(doc) == [("SO", "A"), ("QT", "B")]
    assert acu.item_ids(doc) == ["X1"]
    assert acu.ship_to_country(doc) == "US" and acu.ship_to_country({}) is None
    assert acu.sales_order_filter("SO", "O'Brien/1") == "OrderType eq 'SO' and OrderNbr eq 'O''Brien/1'"
