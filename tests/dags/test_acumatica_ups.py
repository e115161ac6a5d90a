"""Full runs of the acumatica_ups DAG with dag.test() against the UPS and Acumatica sandboxes.

Every test ends with the sandbox's open-session count at 0 (the ``acumatica`` fixture asserts it): each task
logs its Acumatica session out when it ends, also when it failed halfway.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from tests.conftest import ups_connection
from tests.dags.conftest import (
    TRACK_AT_ONCE,
    interval_end,
    load_dag,
    run_interval,
    states,
    update_pipeline_settings,
    write_pipeline_settings,
)
from tests.erp.acumatica.fixtures import (  # noqa: F401 - fixtures
    acumatica_connection,
    acumatica_fixture,
    acumatica_server_fixture,
    open_sessions,
    shipments,
    touch,
)

from ml_connector.ledger import Ledger, ShipmentState

PIPELINE = "acumatica_ups"
# full DAG runs share one metadata DB per worker: keep them on one worker (make test uses --dist loadgroup)
pytestmark = pytest.mark.xdist_group("airflow_metadata_db")

GOOD = {"000101": 1, "000102": 1, "000103": 3, "000104": 1}  # shipment -> packages (one label each)
BROKEN = {
    "000105": "no postal code",
    "000106": "'FEDEXGRND'",
    "000107": "Packages/Weight",
    "000108": "is 40 characters; UPS reference numbers hold at most 35",
    "000109": "UPS does not deliver to PO boxes",
    # abroad (US -> CA) and its sales order line has no price: the commercial invoice names the line and field
    "000113": "line 1 (item 'COFFEEMUG') has no unit value above zero",
}


@pytest.fixture
def env(acumatica, airflow_db, tmp_path, monkeypatch):
    """Everything a run needs, set the way a user would: AIRFLOW_CONN_* and the pipelines file."""
    acumatica.reset("ups")
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(acumatica.url("ups")))
    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    path = write_pipeline_settings(tmp_path, monkeypatch, PIPELINE, **TRACK_AT_ONCE, write_freight_cost=True)
    return {"sandbox": acumatica, "ledger": Ledger(f"sqlite:///{tmp_path / 'ledger.db'}"), "settings_path": path}


def rows(env) -> dict:
    return {r.order_number: r for r in env["ledger"].list(PIPELINE)}


def test_run_labels_each_package_once_writes_1z_and_label_back_and_quarantines_broken_ones(env):
    sandbox = env["sandbox"]
    end = interval_end(1)
    touch(sandbox, end - timedelta(minutes=7))
    dr = run_interval(load_dag(PIPELINE), end)

    ledger_rows = rows(env)
    erp = shipments(sandbox)
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    for number, packages in GOOD.items():
        row = ledger_rows[number]
        assert row.state is ShipmentState.WRITTEN_BACK, (number, row.error)
        assert len(row.tracking_numbers) == packages  # one 1Z per package
        assert by_reference[number] == packages  # labels under this reference: one purchase, no second
        # read back from Acumatica: each package row holds its own 1Z, each label file is attached
        assert [p["TrackingNbr"] for p in erp[number]["Packages"]] == row.tracking_numbers
        files = erp[number]["files"]
        assert sorted(files) == sorted(f"{number}_{t}.gif" for t in row.tracking_numbers)
        assert all(base64.b64decode(content) for content in files.values())
    assert erp["000103"]["Packages"][0]["TrackingNbr"] != erp["000103"]["Packages"][1]["TrackingNbr"]
    # write_freight_cost (on in this test's settings): the label's charge lands in FreightCost
    assert all(erp[n]["FreightCost"] == float(ledger_rows[n].charges.split()[0]) for n in GOOD)
    for number, reason in BROKEN.items():
        assert ledger_rows[number].state is ShipmentState.QUARANTINED, number
        assert reason in ledger_rows[number].error, (number, ledger_rows[number].error)
        assert number not in by_reference
    assert not {"000110", "000111", "000112"} & set(ledger_rows)  # on hold, confirmed, outside the window

    lanes = states(dr)
    for number in GOOD:  # lanes are named by shipment number
        assert {lanes[(step, number)] for step in ("validate_address", "create_shipment", "writeback")} == \
            {"success"}
    assert lanes[("validate_address", "000109")] == "failed"
    assert ledger_rows["000102"].service_code == "02"  # UPS2DAY is not mapped: resolved by "UPS 2nd Day Air"
    assert sandbox.validation_errors("ups") == [] and sandbox.validation_errors("acumatica") == []
    assert sandbox.counters("acumatica")["packages_inserted"] == 0
    counters = sandbox.counters("acumatica")
    assert counters["logins"] == counters["logouts"] > 0
    assert counters["logins_refused"] == 0  # never more than the licence's two sessions at once


def test_same_interval_again_buys_nothing_and_attaches_nothing_new(env):
    sandbox = env["sandbox"]
    end = interval_end(2)
    touch(sandbox, end - timedelta(minutes=5))
    dag = load_dag(PIPELINE)
    run_interval(dag, end)
    labels = sandbox.counters("ups")["labels_created"]
    files = sandbox.counters("acumatica")["files_uploaded"]
    assert labels == sum(GOOD.values()) and files == sum(GOOD.values())
    dag.test(logical_date=end + timedelta(minutes=2))  # the same interval, a second manual run
    assert sandbox.counters("ups")["labels_created"] == labels
    assert sandbox.counters("acumatica")["files_uploaded"] == files
    assert all(len(s["files"]) == GOOD[n] for n, s in shipments(sandbox).items() if n in GOOD)


def test_writeback_failing_halfway_closes_its_sessions_and_the_next_run_finishes_without_a_new_label(env):
    sandbox = env["sandbox"]
    end = interval_end(3)
    touch(sandbox, end - timedelta(days=5))
    touch(sandbox, end - timedelta(minutes=5), numbers=["000101", "000103"])
    sandbox.set_knobs("acumatica", fail_shipment_puts=1000)  # every shipment update fails
    dag = load_dag(PIPELINE)
    dr = run_interval(dag, end)
    assert states(dr)[("writeback", "000101")] == "failed"
    assert {r.state for r in rows(env).values()} == {ShipmentState.LABELLED}
    assert "Another process has updated" in rows(env)["000101"].error
    assert open_sessions(sandbox) == 0  # the failed tasks logged out

    sandbox.set_knobs("acumatica", fail_shipment_puts=0)
    run_interval(dag, end + timedelta(minutes=15))  # the next interval re-queues the unfinished rows
    assert {r.state for r in rows(env).values()} == {ShipmentState.WRITTEN_BACK}
    assert sandbox.counters("ups")["labels_created"] == 4  # 1 + 3 packages, bought once
    erp = shipments(sandbox)
    assert [p["TrackingNbr"] for p in erp["000103"]["Packages"]] == rows(env)["000103"].tracking_numbers


def test_dropped_ship_connection_adopts_the_label_instead_of_buying_another(env):
    sandbox = env["sandbox"]
    end = interval_end(4)
    touch(sandbox, end - timedelta(days=5))
    touch(sandbox, end - timedelta(minutes=5), numbers=["000101"])
    sandbox.set_knobs("ups", crash_after_label_next=1)  # UPS creates the label, then the connection drops
    run_interval(load_dag(PIPELINE), end)
    row = rows(env)["000101"]
    assert row.state is ShipmentState.WRITTEN_BACK
    assert sandbox.counters("ups")["connections_dropped"] == 1
    assert sandbox.counters("ups")["ship_requests"] == 1
    assert shipments(sandbox)["000101"]["Packages"][0]["TrackingNbr"] == row.tracking_numbers[0]


def test_rate_limits_on_both_sides_are_absorbed(env):
    sandbox = env["sandbox"]
    end = interval_end(5)
    touch(sandbox, end - timedelta(days=5))
    touch(sandbox, end - timedelta(minutes=5), numbers=["000101", "000102"])
    sandbox.set_knobs("ups", burst_429=2)
    sandbox.set_knobs("acumatica", burst_429=3)
    run_interval(load_dag(PIPELINE), end)
    assert {r.state for r in rows(env).values()} == {ShipmentState.WRITTEN_BACK}
    assert sandbox.counters("acumatica")["rate_limited"] == 3 and sandbox.counters("ups")["rate_limited"] == 2
    assert sandbox.counters("ups")["labels_created"] == 2


def test_backfill_of_two_past_days_buys_nothing_new(env):
    sandbox = env["sandbox"]
    path = env["settings_path"]
    update_pipeline_settings(path, PIPELINE, schedule="0 0 * * *")
    dag = load_dag(PIPELINE)
    today = interval_end(0).replace(hour=0, minute=0)
    day1, day2 = today - timedelta(days=2), today - timedelta(days=1)
    touch(sandbox, today - timedelta(days=9))
    touch(sandbox, day1 + timedelta(hours=10), numbers=["000101", "000102"])
    touch(sandbox, day2 + timedelta(hours=15), numbers=["000103", "000104"])
    dag.test(logical_date=day2 + timedelta(minutes=1))   # owns [day1, day2)
    dag.test(logical_date=today + timedelta(minutes=1))  # owns [day2, today)
    assert set(rows(env)) == set(GOOD)
    labels = sandbox.counters("ups")["labels_created"]
    assert labels == sum(GOOD.values())
    dag.test(logical_date=day2 + timedelta(minutes=2))  # reprocess the first day
    dag.test(logical_date=today + timedelta(minutes=2))  # and the second
    assert sandbox.counters("ups")["labels_created"] == labels
    assert {r.state for r in rows(env).values()} == {ShipmentState.WRITTEN_BACK}


def test_unknown_endpoint_version_fails_extract_names_the_versions_and_quarantines_nothing(env, monkeypatch):
    sandbox = env["sandbox"]
    end = interval_end(6)
    touch(sandbox, end - timedelta(minutes=5))
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT",
                       acumatica_connection(sandbox.url("acumatica"), endpoint_version="25.100.001"))
    dr = run_interval(load_dag(PIPELINE), end)
    assert states(dr)[("extract_orders", "-1")] == "failed"
    assert rows(env) == {}  # nothing quarantined, nothing recorded
    assert sandbox.counters("ups")["labels_created"] == 0
    assert sandbox.counters("acumatica")["logins"] == sandbox.counters("acumatica")["logouts"] == 1


def test_a_pushed_shipment_is_picked_up_by_the_next_run_whatever_its_modification_time(env):
    sandbox, ledger = env["sandbox"], env["ledger"]
    end = interval_end(7)
    touch(sandbox, end - timedelta(days=5))  # nothing in the run's window
    # what the push-notification router stores (tests/erp/acumatica/test_webhook.py covers the HTTP side)
    ledger.inbox_put("acumatica", {"Id": "push-1", "Query": "MLShipmentsReady",
                                   "Inserted": [{"ShipmentNbr": "000102"}, {"ShipmentNbr": "000110"}]},
                     dedupe_key="acumatica:push-1")
    run_interval(load_dag(PIPELINE), end)
    assert set(rows(env)) == {"000102"}  # 000110 is on hold: not ready, not recorded
    assert rows(env)["000102"].state is ShipmentState.WRITTEN_BACK
    assert ledger.inbox_pending("acumatica") == []
    assert sandbox.counters("ups")["labels_created"] == 1


def test_delivery_status_and_signature_come_back_into_the_shipment_note_once(env):
    from ml_connector_sandbox.ups.tracking import RECEIVED_BY

    sandbox = env["sandbox"]
    end = interval_end(8)
    touch(sandbox, end - timedelta(days=5))
    touch(sandbox, end - timedelta(minutes=5), numbers=["000102"])
    dag = load_dag(PIPELINE)
    run_interval(dag, end)
    tracking = rows(env)["000102"].tracking_numbers[0]
    sandbox.advance_ups_package(tracking, "delivered")
    run_interval(dag, end + timedelta(minutes=15))  # the next run polls the package
    row = rows(env)["000102"]
    assert row.state is ShipmentState.DELIVERED and row.delivered_at
    note = shipments(sandbox)["000102"]["note"]
    assert note.startswith(f"[ml-connector UPS] {tracking}: delivered") and f"signed by {RECEIVED_BY}" in note
    puts = sandbox.counters("acumatica")["shipment_puts"]
    run_interval(dag, end + timedelta(minutes=30))  # nothing changed: nothing written
    assert sandbox.counters("acumatica")["shipment_puts"] == puts
    assert shipments(sandbox)["000102"]["note"] == note


def test_no_acumatica_password_in_xcoms_logs_or_the_ledger(env, caplog):
    import logging

    import sqlalchemy as sa
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from ml_connector_sandbox.credentials import ACUMATICA_PASSWORD

    sandbox = env["sandbox"]
    end = interval_end(9)
    touch(sandbox, end - timedelta(days=5))
    touch(sandbox, end - timedelta(minutes=5), numbers=["000101", "000105"])
    caplog.set_level(logging.DEBUG)
    dr = run_interval(load_dag(PIPELINE), end)
    with create_session() as session:
        xcoms = session.scalars(sa.select(XComModel).where(XComModel.dag_id == PIPELINE,
                                                           XComModel.run_id == dr.run_id)).all()
        xcom_text = " ".join(json.dumps(x.value, default=str) for x in xcoms)
    with env["ledger"].read() as conn:
        tables = [t for t in sa.inspect(conn).get_table_names() if t.startswith("ml_") and t != "ml_secrets"]
        ledger_text = " ".join(json.dumps([dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {t}"))],
                                          default=str) for t in tables)
    assert "entity/auth/login -> 204" in caplog.text and "000101" in xcom_text
    for text in (caplog.text, xcom_text, ledger_text):
        assert ACUMATICA_PASSWORD not in text
        assert "R0lGOD" not in xcom_text  # no label image in XCom
