"""International shipments: the commercial invoice (InternationalForms) for goods leaving the customs area,
shipment-level references off US/US and PR/PR, and a missing customs value quarantining the order by field."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from tests.carriers.ups.test_mapping import assert_valid

from ml_connector.carriers.ups import rules
from ml_connector.carriers.ups.carrier import UpsCarrier
from ml_connector.carriers.ups.shipping import build_ship_request
from ml_connector.errors import ConfigurationError, RecordError
from ml_connector.models import Address, Order, OrderLine, Package

BERLIN = Address(name="ML Handel GmbH", phone="+49 30 1234567", lines=["Friedrichstr. 10"], city="Berlin",
                 postal_code="10117", country="DE")
ZURICH = Address(name="Bergsport AG", attention="Urs Meier", lines=["Bahnhofstrasse 1"], city="Zürich",
                 postal_code="8001", country="CH")
VIENNA = Address(name="Wien Sport", lines=["Ring 1"], city="Wien", postal_code="1010", country="AT")


def line(**changes) -> OrderLine:
    values = dict(sku="BOOT-42", description="Hiking boots", quantity=Decimal(2), unit_value=Decimal("89.9"),
                  currency="EUR", origin_country="DE", hs_code="64039113")
    values.update(changes)
    return OrderLine(**values)


def order(ship_to: Address = ZURICH, lines=None, **kw) -> Order:
    return Order(erp="exact_online", erp_id="g-1", number="4711", ship_method="11", ship_to=ship_to,
                 packages=[Package(weight=Decimal("2.5"), weight_unit="KGS")],
                 lines=[line()] if lines is None else lines, **kw)


def ship(o: Order, shipper: Address = BERLIN) -> dict:
    return build_ship_request(o, service_code="11", shipper=shipper, shipper_number="A1B2C3", reference=o.number,
                              invoice_date=date(2026, 11, 29))


def test_customs_areas():
    assert rules.customs_area("DE") == rules.customs_area("AT") == "EU"
    assert rules.customs_area("PR") == rules.customs_area("US") == "US"
    assert rules.customs_area("CH") == "CH"
    assert rules.needs_commercial_invoice(order(ZURICH), "DE")
    assert not rules.needs_commercial_invoice(order(VIENNA), "DE")  # inside the EU
    assert not rules.needs_commercial_invoice(order(ZURICH, documents_only=True), "DE")
    assert not rules.needs_commercial_invoice(order(ZURICH), None)  # origin unknown: checked when buying


def test_swiss_delivery_gets_a_commercial_invoice_that_validates_against_the_spec():
    body = ship(order(ZURICH, lines=[line(), line(sku="SOCK", description="Wool socks", quantity=Decimal(3),
                                             unit_value=Decimal("7"), hs_code=None)]))
    assert_valid("Shipping.yaml", "SHIPRequestWrapper", body)
    shipment = body["ShipmentRequest"]["Shipment"]
    forms = shipment["ShipmentServiceOptions"]["InternationalForms"]
    assert forms["FormType"] == ["01"] and forms["InvoiceNumber"] == "4711" and forms["InvoiceDate"] == "20261129"
    assert forms["ReasonForExport"] == "SALE" and forms["CurrencyCode"] == "EUR"
    assert forms["Contacts"]["SoldTo"]["AttentionName"] == "Urs Meier"
    first, second = forms["Product"]
    assert first == {"Description": ["Hiking boots"], "OriginCountryCode": "DE", "CommodityCode": "64039113",
                     "PartNumber": "BOOT-42",
                     "Unit": {"Number": "2", "UnitOfMeasurement": {"Code": "PCS"}, "Value": "89.90"}}
    assert "CommodityCode" not in second  # no HS code in the ERP: left out, never invented
    # international: the reference is at shipment level only
    assert shipment["ReferenceNumber"] == [{"Value": "4711"}]
    assert all("ReferenceNumber" not in p for p in shipment["Package"])


def test_eu_domestic_and_documents_need_no_invoice():
    assert "ShipmentServiceOptions" not in ship(order(VIENNA, lines=[]))["ShipmentRequest"]["Shipment"]
    shipment = ship(order(ZURICH, lines=[], documents_only=True))["ShipmentRequest"]["Shipment"]
    assert "ShipmentServiceOptions" not in shipment and shipment["DocumentsOnlyIndicator"] == ""


@pytest.mark.parametrize(("changes", "field"), [
    ({"unit_value": None}, "lines[0].unit_value"),
    ({"unit_value": Decimal(0)}, "lines[0].unit_value"),
    ({"currency": None}, "lines[0].currency"),
    ({"origin_country": None}, "lines[0].origin_country"),
    ({"origin_country": "XX"}, "lines[0].origin_country"),
    ({"description": None}, "lines[0].description"),
    ({"hs_code": "12"}, "lines[0].hs_code"),
])
def test_a_missing_customs_value_quarantines_the_order_naming_the_field(changes, field):
    broken = order(ZURICH, lines=[line(**changes)])
    with pytest.raises(RecordError) as caught:
        ship(broken)
    assert caught.value.field == field and caught.value.record == "4711"
    # the carrier's plan refuses it before anything is bought, when the origin is known
    carrier = UpsCarrier(hook=object(), origin_country="DE")
    with pytest.raises(RecordError) as planned:
        carrier.plan(broken)
    assert planned.value.field == field


def test_mixed_currencies_are_refused():
    with pytest.raises(RecordError, match="several currencies"):
        ship(order(ZURICH, lines=[line(), line(currency="CHF")]))


def test_reason_for_export_is_a_setting_checked_once():
    assert UpsCarrier(hook=object(), reason_for_export="gift").reason_for_export == "GIFT"
    with pytest.raises(ConfigurationError):
        UpsCarrier(hook=object(), reason_for_export="X" * 21)


def test_sandbox_refuses_goods_leaving_the_eu_without_an_invoice(ups):
    from tests.sandbox.ups.client import UpsApi, assert_ups_error

    api = UpsApi(ups)
    body = ship(order(ZURICH))
    body["ShipmentRequest"]["Shipment"].pop("ShipmentServiceOptions")
    assert_ups_error(api.ship_response(body), 400, "120300")
    body = ship(order(ZURICH))
    body["ShipmentRequest"]["Shipment"]["ShipmentServiceOptions"]["InternationalForms"].pop("ReasonForExport")
    assert_ups_error(api.ship_response(body), 400, "120301")
    assert api.ship(ship(order(ZURICH)))  # the complete invoice is accepted
    ups.reset("ups")


def test_the_configured_country_of_origin_fills_lines_that_have_none():
    bare = order(ZURICH, lines=[line(origin_country=None, sku="BOOT-42"), line(origin_country=None, sku="SOCK"),
                                line(origin_country="IT", sku="GLOVE")])
    filled = rules.with_origin_countries(bare, {"boot-42": "VN"}, "DE")
    assert [ln.origin_country for ln in filled.lines] == ["VN", "DE", "IT"]
    assert rules.with_origin_countries(bare) is bare  # nothing configured: nothing invented
    carrier = UpsCarrier(hook=object(), origin_country="DE", default_origin_country="PT")
    assert carrier.plan(bare).service_code == "11"  # the setting completes the invoice
    with pytest.raises(RecordError) as caught:
        UpsCarrier(hook=object(), origin_country="DE").plan(bare)
    assert caught.value.field == "lines[0].origin_country"
