"""SYSPRO mapping and XML helpers with plain dicts and strings (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ml_connector.erp.syspro import mapping as sy
from ml_connector.erp.syspro import xml
from ml_connector.erp.syspro.source import DEFAULT_TABLES, SysproSettings
from ml_connector.errors import MissingWeight, PermanentApiError, RecordError
from ml_connector.models import Money, TrackingResult, TrackingStatus

TABLE = sy.SysproTable(entity_set="ArInvoice", date_field="InvoiceDate", key_field="Invoice", form_type="INV")
ROW = {"Invoice": "100201", "CustomerName": "Bayview Robotics Inc", "ShipAddress1": "1 Harbor Way",
       "ShipAddress2": "Dock 4", "ShipAddress3": "San Francisco", "ShipAddress4": "CA", "ShipAddress5": "US",
       "ShipPostalCode": "94107", "ShippingInstrs": "GROUND", "CustomerPoNumber": "PO-88412",
       "InvoiceDate": "2026-11-29T10:05:00Z"}


def order(**changes):
    return sy.order_from_row({**ROW, **changes}, TABLE, default_country="US", package_weight=Decimal("2.5"))


def test_a_row_maps_to_an_order():
    result = order()
    assert result.erp_id == "ArInvoice:100201" and result.number == "100201"
    assert result.ship_to.lines == ["1 Harbor Way", "Dock 4"] and result.ship_to.city == "San Francisco"
    assert (result.ship_to.state, result.ship_to.postal_code, result.ship_to.country) == ("CA", "94107", "US")
    assert result.ship_method == "GROUND" and result.customer_reference == "PO-88412"
    assert result.packages[0].weight == Decimal("2.5")
    assert result.modified_at == datetime(2026, 11, 29, 10, 5, tzinfo=UTC)
    assert sy.split_erp_id(result.erp_id) == ("ArInvoice", "100201")


def test_country_names_and_blank_countries():
    assert order(ShipAddress5="United States").ship_to.country == "US"
    assert order(ShipAddress5="").ship_to.country == "US"  # the pipeline's default_country
    with pytest.raises(RecordError, match="ShipAddress5") as caught:
        order(ShipAddress5="Atlantis")
    assert caught.value.field == "ShipAddress5" and caught.value.record == "100201"
    with pytest.raises(RecordError, match="no default_country"):
        sy.order_from_row({**ROW, "ShipAddress5": ""}, TABLE, default_country=None, package_weight=Decimal(1))


@pytest.mark.parametrize(("column", "field"), [("ShipAddress1", "ShipAddress1"), ("ShipAddress3", "ShipAddress3"),
                                               ("CustomerName", "CustomerName")])
def test_incomplete_addresses_name_the_syspro_column(column, field):
    changes = {column: ""}
    if column == "ShipAddress1":
        changes["ShipAddress2"] = None
    with pytest.raises(RecordError) as caught:
        order(**changes)
    assert caught.value.field == field and "order 100201" in str(caught.value)


def test_postal_code_po_boxes_and_services_are_left_to_the_carrier():
    assert order(ShipPostalCode="").ship_to.postal_code is None
    assert order(ShipAddress1="PO Box 4471").ship_to.lines == ["PO Box 4471", "Dock 4"]
    assert order(ShippingInstrs="PIGEON").ship_method == "PIGEON"


def test_no_weight_anywhere_is_missing_weight():
    with pytest.raises(MissingWeight, match="package_weight"):
        sy.order_from_row(ROW, TABLE, default_country="US", package_weight=None)
    weighed = TABLE.model_copy(update={"weight_field": "Mass"})
    assert sy.order_from_row({**ROW, "Mass": "7.25"}, weighed, default_country="US",
                             package_weight=None).packages[0].weight == Decimal("7.25")
    with pytest.raises(RecordError, match="Mass"):
        sy.order_from_row({**ROW, "Mass": "heavy"}, weighed, default_country="US", package_weight=None)


def test_window_filter_has_the_ready_rule_and_a_half_open_window():
    start, end = datetime(2026, 11, 29, 10, 0, tzinfo=UTC), datetime(2026, 11, 29, 10, 15, tzinfo=UTC)
    assert sy.window_filter(TABLE, start, end, "%Y-%m-%dT%H:%M:%SZ") == (
        "InvoiceDate ge 2026-11-29T10:00:00Z and InvoiceDate lt 2026-11-29T10:15:00Z")
    ready = TABLE.model_copy(update={"ready_filter": "OrderStatus eq '4'"})
    assert sy.window_filter(ready, start, end, "%Y-%m-%d").startswith("(OrderStatus eq '4') and InvoiceDate ge 2026")


def test_custom_form_document_escapes_values_and_round_trips():
    value = "Größe & Söhne <GmbH>"
    document = sy.custom_form_document("INV", "A&B<1", {"SHIPSTAT": value}, number="x", max_length=30)
    assert "&amp;" in document and "&lt;" in document and "<GmbH>" not in document
    root = xml.parse(document)
    assert xml.text(root, "ITEM", "key", "KEYFIELD") == "A&B<1" and xml.text(root, "item", "alphavalue") == value


def test_values_longer_than_the_field_are_record_errors():
    with pytest.raises(RecordError, match="holds 30") as caught:
        sy.custom_form_document("INV", "1", {"SHIPSTAT": "X" * 31}, number="100201", max_length=30)
    assert caught.value.field == "SHIPSTAT"


def test_answers_are_read_whatever_the_case_of_their_nodes():
    answer = ('<?xml version="1.0" encoding="Windows-1252"?><SetUpCustomForm><ITEM><KEY><FormType>INV</FormType>'
              '</KEY><STATUS>Updated</STATUS></ITEM><item/></SetUpCustomForm>')
    assert sy.check_custom_form_answer(answer, number="1") == 2
    refused = "<SetupCustomForm><Item><ErrorDescription>Key '9' not found</ErrorDescription></Item></SetupCustomForm>"
    with pytest.raises(PermanentApiError, match="Key '9' not found"):
        sy.check_custom_form_answer(refused, number="9")


@pytest.mark.parametrize("answer", [
    '<!DOCTYPE x [<!ENTITY a "boom">]><x>&a;</x>',
    '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
    '<!DOCTYPE x [<!ENTITY a "b"><!ENTITY c "&a;&a;&a;&a;">]><x>&c;</x>',
])
def test_entities_are_refused_never_expanded(answer):
    with pytest.raises(xml.SysproXmlError, match="declares a DTD or entities") as caught:
        xml.parse(answer)
    assert "boom" not in str(caught.value) and "root:" not in str(caught.value)


def test_broken_xml_is_a_clear_error():
    with pytest.raises(xml.SysproXmlError, match="not well-formed"):
        xml.parse("<a><b></a>")
    with pytest.raises(xml.SysproXmlError, match="empty"):
        xml.parse("  ")


def test_status_and_cost_values():
    fields = sy.CustomFormFields()
    assert sy.tracking_values(fields, "1Z999", sy.status_text(None)) == {"TRACKNO": "1Z999", "SHIPSTAT": "LABEL CREATED"}
    delivered = TrackingResult(tracking_number="1Z", status=TrackingStatus.DELIVERED,
                               delivered_at=datetime(2026, 11, 29, 14, 3, tzinfo=UTC))
    assert sy.status_text(delivered) == "DELIVERED 2026-11-29 14:03"
    assert sy.cost_values(fields, Money(amount=Decimal("12.3"), currency="USD")) == {"SHIPCOST": "12.30",
                                                                                     "SHIPCURR": "USD"}


def test_default_settings_follow_the_product_description():
    settings = SysproSettings(erp="syspro")
    assert [(t.entity_set, t.date_field) for t in settings.tables] == [("ArInvoice", "InvoiceDate"),
                                                                       ("PorMasterHdr", "PostDate")]
    assert settings.tables == DEFAULT_TABLES and settings.business_object == "COMSFM"
    with pytest.raises(ValueError, match="each entity_set once"):
        SysproSettings(erp="syspro", tables=[TABLE, TABLE])
