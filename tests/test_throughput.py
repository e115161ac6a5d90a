"""Throughput without giving anything up: adaptive lanes inside the in-flight budget, fewer ledger transactions per
order (with label_requested still committed before the purchase), the extract registered in batches, and tokens
kept in process memory with the ledger as the shared source."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from tests.test_service import PIPELINE, SHIPPER, ScriptedCarrier, checked_row, make_order, service

from ml_connector.erp.protocol import ExtractFailure
from ml_connector.ledger import ShipmentRow, ShipmentState
from ml_connector.operators.base import make_lanes
from ml_connector.secrets import SecretStore


def rows(count: int) -> list[ShipmentRow]:
    return [ShipmentRow(id=i, pipeline="p", erp="e", erp_id=str(i), order_number=f"SO-{i:04d}",
                        state=ShipmentState.EXTRACTED) for i in range(count)]


@pytest.fixture
def commits(ledger):
    """Counts the ledger's write transactions (commits of BEGIN IMMEDIATE transactions)."""
    counted = {"writes": 0}

    def on_commit(conn):
        if conn.get_execution_options().get("immediate"):
            counted["writes"] += 1

    sa.event.listen(ledger.engine, "commit", on_commit)
    yield counted
    sa.event.remove(ledger.engine, "commit", on_commit)


# -- lanes ------------------------------------------------------------------------------------------------------

def test_a_small_run_gets_one_lane_per_order():
    lanes = make_lanes(rows(16), max_lanes=50, one_per_order_up_to=16, parallel_lanes=4, budget=16)
    assert len(lanes) == 16 and all(len(lane["orders"]) == 1 and lane["concurrency"] == 1 for lane in lanes)


def test_a_big_run_gets_parallel_lanes_each_able_to_use_the_whole_budget():
    # how many calls each lane has in flight at once is what it holds of the shared budget (test_in_flight.py)
    lanes = make_lanes(rows(1000), max_lanes=50, one_per_order_up_to=16, parallel_lanes=4, budget=16)
    assert len(lanes) == 4 and sum(len(lane["orders"]) for lane in lanes) == 1000
    assert [lane["concurrency"] for lane in lanes] == [16, 16, 16, 16]
    assert lanes[0]["label"] == "SO-0000, SO-0001, SO-0002 +247 more"


@pytest.mark.parametrize("count", [17, 100, 1000, 5000])
@pytest.mark.parametrize("parallel", [1, 3, 4, 16, 64])
@pytest.mark.parametrize("budget", [1, 5, 16])
def test_lanes_hold_every_order_once_and_no_lane_wants_more_than_the_budget(count, parallel, budget):
    lanes = make_lanes(rows(count), max_lanes=50, one_per_order_up_to=16, parallel_lanes=parallel, budget=budget)
    assert sorted(o[0] for lane in lanes for o in lane["orders"]) == list(range(count))  # every order, once
    assert len(lanes) <= 50
    assert all(1 <= lane["concurrency"] <= min(budget, len(lane["orders"])) for lane in lanes)


# -- ledger transactions ------------------------------------------------------------------------------------------

def test_a_first_purchase_takes_two_write_transactions_and_commits_label_requested_first(ledger, commits):
    seen = []

    class Watching(ScriptedCarrier):
        def buy_label(self, order, plan, **kwargs):
            row = ledger.find(PIPELINE, order.erp_id)
            seen.append((row.state, row.claimed_by))
            return super().buy_label(order, plan, **kwargs)

    carrier = Watching()
    row = checked_row(ledger, carrier)
    before = commits["writes"]
    outcome = service(ledger, carrier, actor="lane-1").create(row, shipper=SHIPPER)
    assert outcome.tracking_numbers and carrier.bought == ["SO-1"]
    assert commits["writes"] - before == 2  # claim + label_requested, then label + release
    assert seen == [(ShipmentState.LABEL_REQUESTED, "lane-1")]  # committed, claimed, before Ship was sent
    after = ledger.get(row.id)
    assert after.state is ShipmentState.LABELLED and after.claimed_by is None
    assert [a["to_state"] for a in ledger.audit_trail(row.id)] == [
        "extracted", "address_ok", "label_requested", "labelled"]


def test_a_claim_held_by_another_worker_buys_nothing(ledger):
    carrier = ScriptedCarrier()
    row = checked_row(ledger, carrier)
    assert ledger.claim(row.id, "someone-else", ttl_seconds=600)
    from ml_connector.errors import RetryableError

    with pytest.raises(RetryableError, match="another worker"):
        service(ledger, carrier, actor="lane-1").create(row, shipper=SHIPPER)
    assert carrier.bought == [] and ledger.get(row.id).state is ShipmentState.ADDRESS_OK


def test_a_failed_purchase_gives_the_claim_back(ledger):
    carrier = ScriptedCarrier()
    carrier.ship_behaviour = "429"
    row = checked_row(ledger, carrier)
    from ml_connector.errors import RetryableError

    with pytest.raises(RetryableError):
        service(ledger, carrier, actor="lane-1").create(row, shipper=SHIPPER)
    after = ledger.get(row.id)
    assert after.state is ShipmentState.ADDRESS_OK and after.claimed_by is None


def test_the_extract_is_registered_in_one_transaction(ledger, commits):
    from datetime import UTC, datetime

    orders = [make_order(f"SO-{i}") for i in range(30)]
    broken = ExtractFailure(erp="test", erp_id="bad-1", number="SO-BAD", modified_at=datetime.now(UTC),
                            error="no postcode (shipTo.postCode)")
    before = commits["writes"]
    registered = ledger.register_orders(PIPELINE, [*orders, broken], actor="run/extract")
    assert commits["writes"] - before == 1
    assert [created for _row, created in registered] == [True] * 30 + [False]
    assert registered[-1][0].state is ShipmentState.QUARANTINED and "postCode" in registered[-1][0].error
    again = ledger.register_orders(PIPELINE, orders, actor="run2/extract")
    assert [created for _row, created in again] == [False] * 30
    assert [r.id for r, _ in again] == [r.id for r, _ in registered[:30]]


def test_new_orders_are_registered_with_a_few_statements_per_batch_whatever_its_size(ledger):
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        registered = ledger.register_orders(PIPELINE, [make_order(f"SO-{i}") for i in range(200)], actor="run/x")
    finally:
        sa.event.remove(ledger.engine, "before_cursor_execute", count)
    assert all(created for _row, created in registered) and len({r.id for r, _ in registered}) == 200
    ours = [s for s in statements if "ml_shipments" in s or "ml_audit_log" in s]
    assert len(ours) <= 4  # which exist, insert them, read them back, audit them
    trail = ledger.audit_trail(registered[123][0].id)
    assert [(a["step"], a["outcome"], a["to_state"]) for a in trail] == [("extract_orders", "ok", "extracted")]


def test_an_extract_mixing_known_new_and_repeated_documents(ledger):
    (first, _), = ledger.register_orders(PIPELINE, [make_order("SO-1")], actor="run1/x")
    changed = make_order("SO-1").model_copy(update={"ship_method": "NEXT_DAY"})
    registered = ledger.register_orders(PIPELINE, [changed, make_order("SO-2"), make_order("SO-2")], actor="run2/x")
    assert [created for _row, created in registered] == [False, True, False]
    assert registered[0][0].id == first.id and registered[0][0].order.ship_method == "NEXT_DAY"
    assert registered[1][0].id == registered[2][0].id


def test_a_lane_reads_its_rows_in_one_query(ledger):
    ids = [ledger.register_order(PIPELINE, make_order(f"SO-{i}"))[0].id for i in range(5)]
    assert [r.id for r in ledger.get_many(list(reversed(ids)))] == list(reversed(ids))
    with pytest.raises(KeyError):
        ledger.get_many([*ids, 10**9])


# -- tokens in memory -----------------------------------------------------------------------------------------

def test_a_fresh_token_is_served_from_memory_without_reading_the_ledger(ledger, monkeypatch):
    store = SecretStore(ledger)
    calls = []
    assert store.get_or_refresh("ups:t", lambda cur: calls.append(1) or ("tok-1", time.time() + 3600)) == "tok-1"
    monkeypatch.setattr(ledger, "secret", lambda name: pytest.fail("the ledger must not be read"))
    assert SecretStore(ledger).get_or_refresh("ups:t", lambda cur: pytest.fail("no refresh")) == "tok-1"
    assert calls == [1]


def test_a_rejected_token_is_forgotten_and_the_ledger_decides(ledger):
    store = SecretStore(ledger)
    store.get_or_refresh("ups:t", lambda cur: ("tok-1", time.time() + 3600))
    # another process replaced it after a 401: a forced refresh with the rejected value adopts the stored one
    ledger.put_secret("ups:t", store._encrypt("tok-2"), time.time() + 3600)
    assert store.get_or_refresh("ups:t", lambda cur: pytest.fail("no refresh"), force=True,
                                stale_value="tok-1") == "tok-2"
    assert store.get_or_refresh("ups:t", lambda cur: pytest.fail("no refresh")) == "tok-2"


def test_a_token_near_its_expiry_is_refreshed_through_the_ledger(ledger):
    now = [1_800_000_000.0]
    store = SecretStore(ledger, clock=lambda: now[0])
    store.get_or_refresh("ups:t", lambda cur: ("tok-1", now[0] + 3600))
    now[0] += 3600 - 200  # inside the 5-minute refresh margin
    assert store.get_or_refresh("ups:t", lambda cur: ("tok-2", now[0] + 3600)) == "tok-2"
    assert store.get("ups:t").value == "tok-2"


# -- durability -------------------------------------------------------------------------------------------------

def test_label_requested_is_fsynced_and_redoable_steps_are_not(sqlite_ledger):
    """SQLite: the commit that marks label_requested syncs the log (synchronous=FULL) before Ship is sent; an
    address check, a write-back mark, an extract and a claim are redone when lost and commit without an fsync.
    Every pooled connection goes back to FULL afterwards."""
    ledger = sqlite_ledger
    modes: list[int] = []

    def on_commit(conn):
        if conn.get_execution_options().get("immediate"):
            modes.append(conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0])

    sa.event.listen(ledger.engine, "commit", on_commit)
    try:
        carrier = ScriptedCarrier()
        (row, _), = ledger.register_orders(PIPELINE, [make_order("SO-1")])
        assert modes == [1]  # NORMAL
        modes.clear()
        service(ledger, carrier).check(row)
        assert modes == [1]
        modes.clear()
        seen = []

        class Watching(ScriptedCarrier):
            def buy_label(self, order, plan, **kwargs):
                seen.append(list(modes))
                return super().buy_label(order, plan, **kwargs)

        service(ledger, Watching(), actor="lane").create(ledger.get(row.id), shipper=SHIPPER)
        assert seen == [[2]]  # claim + label_requested: FULL, committed before the purchase
        assert modes == [2, 2]  # then label + release: FULL
        with ledger.engine.connect() as conn:
            assert conn.connection.dbapi_connection.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        sa.event.remove(ledger.engine, "commit", on_commit)


# -- group commit ---------------------------------------------------------------------------------------------------

def test_writes_of_several_threads_share_one_commit_and_a_failing_one_fails_alone(sqlite_ledger):
    """SQLite: threads that write while another's transaction runs are committed together (one fsync), each in
    its own savepoint: the one that raises is rolled back and raised in its own thread, the others commit."""
    import threading

    from ml_connector.ledger import schema

    ledger = sqlite_ledger
    ids = [ledger.register_order(PIPELINE, make_order(f"SO-{i}"))[0].id for i in range(6)]
    commits = []
    sa.event.listen(ledger.engine, "commit", lambda conn: commits.append(1))
    queued, release = threading.Event(), threading.Event()

    def mark(row_id, *, fail=False, block=False):
        def work(conn):
            if block:
                queued.wait(10)  # the first writer holds its transaction until the others are queued
            conn.execute(schema.shipments.update().where(schema.shipments.c.id == row_id)
                         .values(claimed_by="grouped"))
            if fail:
                raise ValueError(f"row {row_id} refused")
            return row_id
        return work

    results: dict[int, object] = {}

    def run(row_id, **kwargs):
        try:
            results[row_id] = ledger.write_grouped(mark(row_id, **kwargs))
        except ValueError as exc:
            results[row_id] = exc

    first = threading.Thread(target=run, args=(ids[0],), kwargs={"block": True})
    first.start()
    while not ledger_group_running(ledger):
        time.sleep(0.01)
    others = [threading.Thread(target=run, args=(i,), kwargs={"fail": i == ids[3]}) for i in ids[1:]]
    for t in others:
        t.start()
    while len(ledger_group_queue(ledger)) < len(others):
        time.sleep(0.01)
    queued.set()
    release.set()
    for t in [first, *others]:
        t.join(20)
    assert len(commits) == 2  # the first writer's transaction, then everyone who queued meanwhile
    assert isinstance(results.pop(ids[3]), ValueError)
    assert results == {i: i for i in ids if i != ids[3]}
    claimed = {r.id: r.claimed_by for r in ledger.get_many(ids)}
    assert claimed == {i: (None if i == ids[3] else "grouped") for i in ids}


def ledger_group_running(ledger) -> bool:
    from ml_connector.ledger.engine import _group_for

    return _group_for(ledger).running


def ledger_group_queue(ledger) -> list:
    from ml_connector.ledger.engine import _group_for

    return _group_for(ledger).queue
