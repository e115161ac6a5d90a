"""``ml-connector shipments``: list, adopt, rebuy and retry from a shell, on SQLite and PostgreSQL; each
decision writes an audit row with who (``--by``, else the OS user) and why."""

from __future__ import annotations

import getpass

import pytest
from tests.test_service import PIPELINE, SHIPPER, Clock, ScriptedCarrier, checked_row, service, uncertain_row

from ml_connector import cli
from ml_connector.ledger import Ledger, ShipmentState


@pytest.fixture
def carrier() -> ScriptedCarrier:
    return ScriptedCarrier()


def decision(ledger: Ledger, row_id: int) -> dict:
    return [a for a in ledger.audit_trail(row_id) if a["step"] == "decision"][-1]


def test_list_shows_uncertain_orders(ledger, ledger_url, carrier, capsys):
    uncertain_row(ledger, carrier, Clock(), number="SO-1")
    checked_row(ledger, carrier, "SO-2")
    assert cli.main(["shipments", "list", PIPELINE, "--state", "label_uncertain", "--ledger-url", ledger_url]) == 0
    out = capsys.readouterr().out
    assert "SO-1" in out and "label_uncertain" in out and "ml-connector shipments adopt" in out
    assert "SO-2" not in out


def test_adopt_with_by_and_reason(ledger, ledger_url, carrier, capsys):
    row = uncertain_row(ledger, carrier, Clock())
    assert cli.main(["shipments", "adopt", PIPELINE, "SO-1", "1Z0000000000000001", "--reason", "found in UPS",
                     "--by", "ada", "--ledger-url", ledger_url]) == 0
    assert "labelled" in capsys.readouterr().out
    audit = decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"], audit["detail"]["via"]) == (
        "adopt", "ada", "found in UPS", "cli")
    assert ledger.get(row.id).tracking_numbers == ["1Z0000000000000001"]


def test_rebuy_defaults_who_to_the_os_user_and_needs_a_reason(ledger, ledger_url, carrier, capsys):
    row = uncertain_row(ledger, carrier, Clock())
    with pytest.raises(SystemExit):  # argparse: --reason is required
        cli.main(["shipments", "rebuy", PIPELINE, "SO-1", "--ledger-url", ledger_url])
    assert cli.main(["shipments", "rebuy", PIPELINE, "SO-1", "--reason", "no label at UPS",
                     "--ledger-url", ledger_url]) == 0
    audit = decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == (
        "rebuy", getpass.getuser(), "no label at UPS")
    assert ledger.get(row.id).state is ShipmentState.ADDRESS_OK


def test_retry_releases_a_quarantine(ledger, ledger_url, carrier, capsys):
    row = checked_row(ledger, carrier)
    ledger.quarantine(row.id, step="validate_address", error="weight missing")
    assert cli.main(["shipments", "retry", PIPELINE, "SO-1", "--reason", "item weights set", "--by", "grace",
                     "--ledger-url", ledger_url]) == 0
    audit = decision(ledger, row.id)
    assert (audit["outcome"], audit["actor"], audit["detail"]["reason"]) == ("retry", "grace", "item weights set")
    assert ledger.get(row.id).state is ShipmentState.EXTRACTED


def test_a_refused_decision_exits_1_with_the_reason(ledger, ledger_url, carrier, capsys):
    row = checked_row(ledger, carrier)
    service(ledger, carrier).create(row, shipper=SHIPPER)
    assert cli.main(["shipments", "retry", PIPELINE, "SO-1", "--ledger-url", ledger_url]) == 1
    assert "refused: order SO-1 in test_pipeline is labelled, not quarantined" in capsys.readouterr().err
