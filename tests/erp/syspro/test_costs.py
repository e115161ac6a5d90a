"""Shipment costs for finance: the charges of each label from the ledger, and ``ml-connector costs``."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ml_connector import cli
from ml_connector.ledger import Ledger, ShipmentState
from ml_connector.ledger.costs import COLUMNS, shipment_costs
from ml_connector.models import Address, Money, Order, Package, ShipmentResult
from ml_connector.service import _money

PIPELINE = "syspro_ups"


def _order(number: str) -> Order:
    return Order(erp="syspro", erp_id=f"ArInvoice:{number}", number=number, ship_method="GROUND",
                 ship_to=Address(name="Größe & Söhne <GmbH>", lines=["1 Harbor Way"], city="San Francisco",
                                 state="CA", postal_code="94107", country="US"),
                 packages=[Package(weight=Decimal("2.5"))])


def _label(ledger: Ledger, number: str, *, negotiated: str | None) -> None:
    row, _ = ledger.register_order(PIPELINE, _order(number))
    ledger.transition(row.id, ShipmentState.LABEL_REQUESTED, step="create_shipment", service_code="03")
    ledger.record_label(row.id, ShipmentResult(
        shipment_id=f"1Z{number}", tracking_numbers=[f"1ZA1B2C303{number}"],
        total_charges=Money(amount=Decimal("20.00"), currency="USD"),
        negotiated_charges=Money(amount=Decimal(negotiated), currency="USD") if negotiated else None),
        label_paths={})


def test_costs_are_the_negotiated_charges_when_present_else_the_published(ledger):
    _label(ledger, "100201", negotiated="18.00")
    _label(ledger, "100202", negotiated=None)
    ledger.register_order(PIPELINE, _order("100203"))  # no label: no cost
    today = datetime.now(UTC).date()
    rows = {r["order_number"]: r for r in shipment_costs(ledger, PIPELINE, today - timedelta(days=1), today)}
    assert set(rows) == {"100201", "100202"}
    assert (rows["100201"]["amount"], rows["100201"]["currency"]) == ("18.00", "USD")
    assert rows["100202"]["amount"] == "20.00"
    assert (rows["100201"]["basis"], rows["100201"]["published_amount"]) == ("negotiated", "20.00")
    assert (rows["100202"]["basis"], rows["100202"]["published_amount"]) == ("published", "20.00")
    assert rows["100201"]["tracking_numbers"] == "1ZA1B2C303100201" and rows["100201"]["service_code"] == "03"
    assert shipment_costs(ledger, PIPELINE, today - timedelta(days=9), today - timedelta(days=2)) == []
    assert shipment_costs(ledger, "other_pipeline", today, today) == []


def test_the_cli_prints_csv_for_finance(ledger_url, capsys):
    ledger = Ledger(ledger_url)
    _label(ledger, "100201", negotiated="18.00")
    today = datetime.now(UTC).date().isoformat()
    assert cli.main(["costs", PIPELINE, "--from", today, "--to", today, "--ledger-url", ledger_url]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == COLUMNS and len(rows) == 1
    assert rows[0]["order_number"] == "100201" and rows[0]["amount"] == "18.00" and rows[0]["erp_id"] == "ArInvoice:100201"
    assert cli.main(["costs", PIPELINE, "--from", today, "--to", "2020-01-01", "--ledger-url", ledger_url]) == 2
    assert cli.main(["costs", PIPELINE, "--from", "yesterday", "--to", today, "--ledger-url", ledger_url]) == 2


def test_stored_charges_read_back_as_money():
    assert _money("12.34 USD") == Money(amount=Decimal("12.34"), currency="USD")
    assert _money(None) is None and _money("") is None and _money("abc USD") is None and _money("12.34") is None
