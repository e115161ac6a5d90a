"""UPS rules decided once for every ERP: deliverable ship-to addresses, references, shipper numbers."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ml_connector.carriers.ups import rules
from ml_connector.errors import ConfigurationError, RecordError, ReferenceTooLong
from ml_connector.models import Address, Order, Package


def address(**changes) -> Address:
    values = dict(name="Contoso Retail Inc.", lines=["500 Fifth Avenue"], city="New York", state="NY",
                  postal_code="10110", country="US")
    values.update(changes)
    return Address(**values)


def order(**changes) -> Order:
    values = dict(erp="test", erp_id="1", number="SO-1", ship_method="GROUND", ship_to=address(),
                  packages=[Package(weight=Decimal("2"))])
    values.update(changes)
    return Order(**values)


@pytest.mark.parametrize("street", ["PO BOX 12", "P.O. Box 9", "p o box 3", "Post Office Box 7", "POBox 1",
                                    "Po. Box 77"])
def test_po_box_spellings_are_refused_in_the_us(street):
    with pytest.raises(RecordError, match="UPS does not deliver to PO boxes") as caught:
        rules.check_ship_to(address(lines=[street]), record="SO-1")
    assert caught.value.record == "SO-1" and caught.value.field == "ship_to.lines"


@pytest.mark.parametrize("street", ["100 Box Canyon Road", "42 Boxwood Lane", "9 Depot Box Street",
                                    "1 Polo Boxing Club Way"])
def test_street_names_with_box_are_not_po_boxes(street):
    rules.check_ship_to(address(lines=[street]), record="SO-1")


def test_po_box_in_second_line_is_refused_too():
    with pytest.raises(RecordError, match="PO boxes"):
        rules.check_ship_to(address(lines=["500 Fifth Avenue", "P.O. Box 55"]), record="SO-1")


def test_po_box_outside_the_us_is_left_to_ups():
    rules.check_ship_to(address(lines=["PO Box 1200"], city="Toronto", state="ON", postal_code="M5W 1A1",
                                country="CA"), record="SO-1")


@pytest.mark.parametrize("country", ["US", "CA", "PR", "GB", "DE"])
def test_post_code_is_required_where_ups_needs_one(country):
    with pytest.raises(RecordError, match=f"no postal code, which UPS needs for country {country}") as caught:
        rules.check_ship_to(address(country=country, postal_code=None, state="XX"), record="SO-1")
    assert caught.value.field == "ship_to.postal_code" and "order SO-1" in str(caught.value)


def test_post_code_is_optional_where_countries_have_none():
    rules.check_ship_to(address(country="HK", postal_code=None, state=None, city="Hong Kong"), record="SO-1")


def test_us_state_is_required():
    with pytest.raises(RecordError, match="no state") as caught:
        rules.check_ship_to(address(state=None), record="SO-1")
    assert caught.value.field == "ship_to.state"


def test_references_follow_the_setting_and_refuse_36_characters():
    assert rules.references(order(customer_reference="PO-1"), ["number", "customer_reference"]) == ["SO-1", "PO-1"]
    assert rules.references(order(customer_reference="PO-1"), ["customer_reference"]) == ["PO-1"]
    with pytest.raises(ReferenceTooLong, match="is 36 characters; UPS reference numbers hold at most 35"):
        rules.references(order(customer_reference="X" * 36), ["number", "customer_reference"])
    assert rules.references(order(customer_reference="X" * 35), ["customer_reference"]) == ["X" * 35]


def test_shipper_number_is_six_alphanumerics():
    assert rules.check_shipper_number(" A1B2C3 ") == "A1B2C3"
    for bad in ("A1B2C", "A1B2C3D", "A1-2C3", None):
        with pytest.raises(ConfigurationError, match="6-character"):
            rules.check_shipper_number(bad)


def test_a_state_that_is_no_iso_subdivision_is_refused():
    with pytest.raises(RecordError, match="ship-to state 'XY' is not an ISO 3166-2 state/province code of US"):
        rules.check_ship_to(address(state="XY"), record="SO-1")
    rules.check_ship_to(address(country="CA", state="on", postal_code="M5W 1A1", city="Toronto"), record="SO-1")


def test_a_huge_reference_is_cut_in_the_message_never_in_what_is_sent():
    huge = "R" * 100_000
    with pytest.raises(ReferenceTooLong) as caught:
        rules.references(order(customer_reference=huge), ["customer_reference"])
    message = str(caught.value)
    assert len(message) < 600 and "(100000 characters)" in message and "is 100000 characters" in message
