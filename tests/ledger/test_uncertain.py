"""The ledger side of label_uncertain on SQLite and PostgreSQL: the life-long label_requested_at, the states no
quarantine may hide, lookups and the rows a later run picks up; and revision 0003 upgrading a 0002 ledger in
place, rows kept and the fact "a purchase was attempted" recovered from the audit trail."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.ledger.test_migrations import _plain_engine, _schema_diffs
from tests.ledger.test_store import label_result, make_order

from ml_connector.ledger import InvalidTransition, Ledger, ShipmentState, engine, migrations

PIPELINE = "bc_ups"
S = ShipmentState


def requested(ledger: Ledger, number: str = "SO-1001", erp_id: str = "guid-1"):
    row, _ = ledger.register_order(PIPELINE, make_order(number, erp_id))
    ledger.transition(row.id, S.ADDRESS_OK, step="validate_address")
    return ledger.transition(row.id, S.LABEL_REQUESTED, step="create_shipment", reference=number)


def uncertain(ledger: Ledger, number: str = "SO-1001", erp_id: str = "guid-1", *, next_lookup_at=100.0):
    row = requested(ledger, number, erp_id)
    return ledger.mark_uncertain(row.id, step="create_shipment", reason=f"order {number}: no answer", now=50.0,
                                 next_lookup_at=next_lookup_at, lookup_until=1000.0, actor="worker")


def test_label_requested_at_is_set_once_and_kept_for_life(ledger: Ledger):
    row = requested(ledger)
    first = row.label_requested_at
    assert first is not None and row.purchase_attempted
    ledger.quarantine(row.id, step="create_shipment", error="refused")
    reopened, _ = ledger.register_order(PIPELINE, make_order(modified="2026-11-24T08:00:00Z"))
    assert reopened.state is S.EXTRACTED and reopened.label_requested_at == first
    ledger.transition(row.id, S.ADDRESS_OK, step="validate_address")
    again = ledger.transition(row.id, S.LABEL_REQUESTED, step="create_shipment")
    assert again.label_requested_at == first


def test_an_uncertain_row_is_never_quarantined_and_keeps_its_copy_of_the_order(ledger: Ledger):
    row = uncertain(ledger)
    assert (row.state, row.uncertain_since, row.next_lookup_at, row.lookup_until, row.lookup_attempts) == (
        S.LABEL_UNCERTAIN, 50.0, 100.0, 1000.0, 0)
    assert ledger.quarantine(row.id, step="create_shipment", error="lookup refused").state is S.LABEL_UNCERTAIN
    with pytest.raises(InvalidTransition):
        ledger.transition(row.id, S.QUARANTINED, step="create_shipment")
    edited = make_order(modified="2026-11-24T08:00:00Z").model_copy(update={"number": "SO-1001-EDITED"})
    after, _ = ledger.register_order(PIPELINE, edited)
    assert after.state is S.LABEL_UNCERTAIN and after.order_number == "SO-1001"  # the copy the label was asked for
    failed = ledger.register_failure(PIPELINE, erp="business_central", erp_id="guid-1", order_number="SO-1001",
                                     modified_at="2026-11-25T08:00:00Z", error="no street")
    assert failed.state is S.LABEL_UNCERTAIN


def test_a_label_requested_row_is_not_quarantined_by_an_unreadable_erp_document(ledger: Ledger):
    row = requested(ledger)
    failed = ledger.register_failure(PIPELINE, erp="business_central", erp_id="guid-1", order_number="SO-1001",
                                     modified_at="2026-11-25T08:00:00Z", error="no street")
    assert failed.state is S.LABEL_REQUESTED and row.id == failed.id


def test_lookups_are_counted_and_an_adopted_label_clears_the_bookkeeping(ledger: Ledger):
    row = uncertain(ledger)
    row = ledger.record_lookup(row.id, step="create_shipment", outcome="not_found", message="not yet",
                               next_lookup_at=200.0, error="still uncertain")
    assert (row.lookup_attempts, row.next_lookup_at, row.error) == (1, 200.0, "still uncertain")
    assert ledger.audit_trail(row.id)[-1]["outcome"] == "not_found"
    with pytest.raises(InvalidTransition):  # a bought label is recorded from label_requested only
        ledger.record_label(row.id, label_result("1ZA1B2C30312345678"), label_paths={})
    row = ledger.record_label(row.id, label_result("1ZA1B2C30312345678"), label_paths={}, adopted=True)
    assert row.state is S.LABELLED and row.tracking_numbers == ["1ZA1B2C30312345678"]
    assert (row.uncertain_since, row.next_lookup_at, row.lookup_until, row.lookup_attempts, row.error) == (
        None, None, None, 0, None)
    assert ledger.package_owner("1ZA1B2C30312345678").id == row.id


def test_unfinished_work_includes_rows_with_a_lookup_pending_only(ledger: Ledger):
    pending = uncertain(ledger, "SO-1", "g-1")
    person = uncertain(ledger, "SO-2", "g-2", next_lookup_at=None)  # the settle window is over
    watched = requested(ledger, "SO-3", "g-3")
    ledger.record_label(watched.id, label_result("1ZA1B2C30312345671"), label_paths={}, next_lookup_at=10.0,
                        lookup_until=20.0)
    ledger.transition(watched.id, S.WRITTEN_BACK, step="writeback")
    done = requested(ledger, "SO-4", "g-4")
    ledger.record_label(done.id, label_result("1ZA1B2C30312345672"), label_paths={})
    ledger.transition(done.id, S.WRITTEN_BACK, step="writeback")
    assert {r.order_number for r in ledger.unfinished(PIPELINE)} == {"SO-1", "SO-3"}
    uncertain_rows = ledger.list(PIPELINE, {S.LABEL_UNCERTAIN})
    assert [(r.order_number, r.needs_decision) for r in uncertain_rows] == [("SO-1", False), ("SO-2", True)]
    assert pending.lookup_due(100.0) and not pending.lookup_due(99.0) and not person.lookup_due(1e12)


# -- revision 0003 -------------------------------------------------------------------------------------------


def test_0002_ledger_is_upgraded_to_0003_keeping_rows_and_the_purchase_fact(ledger_url: str):
    eng = _plain_engine(ledger_url)
    try:
        with eng.begin() as conn:
            migrations.upgrade(conn, "0002")
        rows = {}
        with eng.begin() as conn:
            def shipment(number, state, **values):
                rows[number] = conn.execute(sa.text(
                    "INSERT INTO ml_shipments (pipeline, erp, erp_id, order_number, state, tracking_numbers) "
                    "VALUES ('bc_ups', 'business_central', :erp_id, :number, :state, :numbers) RETURNING id"),
                    {"erp_id": f"guid-{number}", "number": number, "state": state,
                     "numbers": values.get("numbers", "[]")}).scalar()

            def trail(number, to_state, at):
                conn.execute(sa.text(
                    "INSERT INTO ml_audit_log (shipment_pk, pipeline, order_number, step, outcome, to_state, at) "
                    "VALUES (:pk, 'bc_ups', :number, 'create_shipment', 'ok', :to_state, :at)"),
                    {"pk": rows[number], "number": number, "to_state": to_state, "at": at})

            shipment("SO-EXTRACTED", "extracted")
            shipment("SO-REQUESTED", "label_requested")
            trail("SO-REQUESTED", "label_requested", "2026-11-20 10:00:00")
            # F2 in an existing ledger: quarantined after label_requested; only the trail remembers it
            shipment("SO-F2", "quarantined")
            trail("SO-F2", "label_requested", "2026-11-19 09:00:00")
            trail("SO-F2", "label_requested", "2026-11-19 09:30:00")
            trail("SO-F2", "quarantined", "2026-11-19 10:00:00")
            shipment("SO-LABELLED", "written_back", numbers='["1ZA1B2C30312345678"]')  # no trail at all
    finally:
        eng.dispose()
    engine._SCHEMA_READY.clear()  # as in a new process

    ledger = Ledger(ledger_url)
    assert ledger.current_revision() == migrations.head_revision() >= "0003"  # later revisions build on it
    got = {r.order_number: r for r in ledger.list("bc_ups")}
    assert set(got) == {"SO-EXTRACTED", "SO-REQUESTED", "SO-F2", "SO-LABELLED"}
    assert got["SO-EXTRACTED"].label_requested_at is None
    assert got["SO-REQUESTED"].label_requested_at.replace(tzinfo=None).isoformat() == "2026-11-20T10:00:00"
    assert got["SO-F2"].label_requested_at.replace(tzinfo=None).isoformat() == "2026-11-19T09:00:00"
    assert got["SO-F2"].state is S.QUARANTINED and got["SO-F2"].purchase_attempted
    assert got["SO-LABELLED"].label_requested_at is not None
    assert got["SO-LABELLED"].tracking_numbers == ["1ZA1B2C30312345678"]
    assert all(r.lookup_attempts == 0 and r.next_lookup_at is None for r in got.values())
    assert _schema_diffs(ledger_url) == []


def test_0003_downgrade_turns_uncertain_rows_back_into_label_requested(ledger_url: str):
    ledger = Ledger(ledger_url)
    row = uncertain(ledger)
    eng = _plain_engine(ledger_url)
    try:
        with eng.begin() as conn:
            from alembic import command

            command.downgrade(migrations.config(conn), "0002")
        with eng.connect() as conn:
            state = conn.execute(sa.text("SELECT state FROM ml_shipments WHERE id = :id"), {"id": row.id}).scalar()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("ml_shipments")}
    finally:
        eng.dispose()
    assert state == "label_requested" and "label_requested_at" not in columns
