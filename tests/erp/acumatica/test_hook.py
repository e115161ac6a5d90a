"""AcumaticaHook and AcumaticaSource against the Acumatica sandbox (a real HTTP server on loopback)."""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from tests.erp.acumatica.fixtures import (  # noqa: F401 - fixtures
    acumatica_connection,
    acumatica_fixture,
    acumatica_server_fixture,
    open_sessions,
    shipments,
)

from ml_connector.carriers.ups.carrier import UpsCarrier
from ml_connector.erp.acumatica.hook import AcumaticaHook
from ml_connector.erp.acumatica.source import AcumaticaSettings, AcumaticaSource
from ml_connector.erp.protocol import ExtractFailure
from ml_connector.errors import AuthenticationError, ConfigurationError, RecordError, RetryableError
from ml_connector.models import Label, Money, TrackingEvent, TrackingResult, TrackingStatus

SHIP_FROM = {"name": "Warehouse", "lines": ["1 Main St"], "city": "Atlanta", "state": "GA", "postal_code": "30309",
             "country": "US"}


def settings(**overrides) -> AcumaticaSettings:
    return AcumaticaSettings(ship_from=SHIP_FROM, ship_method_map={"UPSGROUND": "03"}, **overrides)


def window():
    end = datetime.now(UTC) + timedelta(minutes=1)
    return end - timedelta(hours=1), end


def test_extract_reads_released_shipments_and_logs_out(acumatica):
    source = AcumaticaSource(settings())
    items = list(source.extract(*window()))
    source.close()
    orders = {i.number: i for i in items if not isinstance(i, ExtractFailure)}
    failures = {i.number: i for i in items if isinstance(i, ExtractFailure)}
    assert set(orders) == {"000101", "000102", "000103", "000104", "000105", "000106", "000108", "000109",
                           "000113"}
    assert set(failures) == {"000107"} and failures["000107"].error.field == "Packages/Weight"
    assert len(orders["000103"].packages) == 3
    assert orders["000101"].customer_reference == "SO005201" and orders["000101"].ship_method == "UPSGROUND"
    assert orders["000104"].ship_to.country == "CA"
    assert orders["000102"].ship_to.residential is True
    # the Ship Via description (GET .../ShipVia, read once) is the carrier's second chance to resolve the service
    assert orders["000102"].ship_method_description == "UPS 2nd Day Air"
    counters = acumatica.counters("acumatica")
    assert counters["logins"] == 1 and counters["logouts"] == 1
    assert open_sessions(acumatica) == 0


def test_shipments_abroad_read_their_sales_order_and_stock_items_once(acumatica):
    source = AcumaticaSource(settings())  # customs_values: foreign (default), ship_from in the US
    orders = {i.number: i for i in source.extract(*window()) if not isinstance(i, ExtractFailure)}
    source.close()
    lego = orders["000104"].lines[0]  # US -> CA: SO005204 line 1 and the AALEGO500 stock item
    assert (lego.unit_value, lego.currency, lego.origin_country, lego.hs_code) == \
        (Decimal("49.99"), "USD", "DK", "9503000073")
    mug = orders["000113"].lines[0]  # its sales order line has no price: left empty for the carrier to name
    assert (mug.unit_value, mug.currency, mug.origin_country) == (Decimal("0"), "USD", None)
    assert orders["000101"].lines[0].unit_value is None  # domestic: nothing read
    # what the UPS carrier makes of them: 000104 gets its commercial invoice, 000113 is refused naming the field
    carrier = UpsCarrier.from_settings(settings(default_origin_country="US"))
    assert carrier.plan(orders["000104"]).service_code == "11"
    with pytest.raises(RecordError) as caught:
        carrier.plan(orders["000113"])
    assert caught.value.field == "lines[0].unit_value" and "000113" in str(caught.value)
    counters = acumatica.counters("acumatica")
    assert counters["sales_order_reads"] == 2 and counters["stock_item_reads"] == 2
    assert acumatica.validation_errors("acumatica") == []


@pytest.mark.parametrize(("mode", "reads"), [("always", 10), ("never", 0)])
def test_customs_values_setting_decides_which_shipments_read_their_sales_orders(acumatica, mode, reads):
    source = AcumaticaSource(settings(customs_values=mode))
    orders = {i.number: i for i in source.extract(*window()) if not isinstance(i, ExtractFailure)}
    source.close()
    assert acumatica.counters("acumatica")["sales_order_reads"] == reads
    assert (orders["000101"].lines[0].unit_value is not None) is (mode == "always")
    assert (orders["000104"].lines[0].unit_value is not None) is (mode == "always")


def test_sales_order_and_stock_item_reads_honour_select_and_a_missing_record_is_none(acumatica):
    with AcumaticaHook() as hook:
        so = hook.get_sales_order("SO", "SO005204")
        assert so is not None
        assert {"OrderType", "OrderNbr", "CurrencyID", "Details"} <= set(so) and "Status" not in so
        assert set(so["Details"][0]) == {"id", "rowNumber", "LineNbr", "InventoryID", "UnitPrice"}
        assert so["Details"][0]["UnitPrice"] == {"value": 49.99}
        assert hook.get_sales_order("SO", "SO999999") is None
        assert hook.get_sales_order("SO", "A/B") is None  # read with $filter: no such order
        item = hook.get_stock_item("AALEGO500")
        assert item["CountryOfOrigin"] == {"value": "DK"} and "Description" not in item
        assert hook.get_stock_item("NOSUCHITEM") is None
    assert acumatica.validation_errors("acumatica") == []
    assert open_sessions(acumatica) == 0


def test_paging_reads_every_page(acumatica, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT",
                       acumatica_connection(acumatica.url("acumatica"), page_size="2"))
    with AcumaticaHook() as hook:
        numbers = [s["ShipmentNbr"]["value"] for s in hook.iter_shipments(*window(), statuses=["Open"])]
    assert len(numbers) == len(set(numbers)) == 11  # 12 Open, one of them 3 days old


def test_unknown_endpoint_version_names_the_offered_ones(acumatica, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT",
                       acumatica_connection(acumatica.url("acumatica"), endpoint_version="19.100.001"))
    source = AcumaticaSource(settings())
    with pytest.raises(ConfigurationError) as caught:
        list(source.extract(*window()))
    source.close()
    assert "19.100.001" in caught.value.message
    assert "20.200.001, 22.200.001, 23.200.001, 24.200.001" in caught.value.message
    assert open_sessions(acumatica) == 0


def test_wrong_password_is_an_authentication_error(acumatica, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT",
                       acumatica_connection(acumatica.url("acumatica"), password="wrong"))
    hook = AcumaticaHook()
    with pytest.raises(AuthenticationError, match="Invalid credentials"):
        list(hook.iter_shipments(*window(), statuses=["Open"]))
    hook.close()
    ok, message = AcumaticaHook().test_connection()
    assert not ok and "Invalid credentials" in message


def test_third_concurrent_session_is_refused_with_a_retryable_error(acumatica, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT",
                       acumatica_connection(acumatica.url("acumatica"), login_limit_wait_seconds="0"))
    first, second, third = AcumaticaHook(), AcumaticaHook(), AcumaticaHook()
    try:
        first.endpoints()
        second.endpoints()
        assert open_sessions(acumatica) == 2
        with pytest.raises(RetryableError, match="API Login Limit"):
            third.endpoints()
    finally:
        for hook in (first, second, third):
            hook.close()
    assert open_sessions(acumatica) == 0


def test_a_login_refused_for_the_licence_limit_waits_for_a_slot_to_free(acumatica):
    first, second, third = AcumaticaHook(), AcumaticaHook(), AcumaticaHook()
    try:
        first.endpoints()
        second.endpoints()
        refused = threading.Event()

        def free_a_slot_once_refused():
            while acumatica.counters("acumatica")["logins_refused"] == 0:
                time.sleep(0.02)
            refused.set()
            first.close()

        helper = threading.Thread(target=free_a_slot_once_refused)
        helper.start()
        third.endpoints()  # refused at first, then logged in once the first hook logged out
        helper.join()
        assert refused.is_set() and third.logins == 1
    finally:
        for hook in (first, second, third):
            hook.close()


def test_connection_test_logs_in_checks_the_version_and_logs_out(acumatica):
    ok, message = AcumaticaHook().test_connection()
    assert ok, message
    assert "24.200.001" in message and "24.204.0012" in message
    assert open_sessions(acumatica) == 0


def test_an_expired_session_is_renewed_once(acumatica):
    with AcumaticaHook() as hook:
        hook.get_shipment("000101")
        acumatica.set_knobs("acumatica", expire_sessions=True)
        assert hook.get_shipment("000102")["ShipmentNbr"]["value"] == "000102"
        assert hook.logins == 2
    assert open_sessions(acumatica) == 0


def test_429_bursts_are_absorbed(acumatica):
    acumatica.set_knobs("acumatica", burst_429=2)
    with AcumaticaHook() as hook:
        assert hook.get_shipment("000101")["ShipmentNbr"]["value"] == "000101"
    assert acumatica.counters("acumatica")["rate_limited"] == 2


def test_tracking_numbers_land_on_each_package_row_and_a_replay_writes_nothing(acumatica):
    source = AcumaticaSource(settings())
    order = next(o for o in source.extract(*window()) if o.number == "000103")
    numbers = ["1ZA1B2C30300000001", "1ZA1B2C30300000002", "1ZA1B2C30300000003"]
    source.write_tracking(order, numbers, "03")
    puts = acumatica.counters("acumatica")["shipment_puts"]
    source.write_tracking(order, numbers, "03")  # a replay
    source.close()
    assert acumatica.counters("acumatica")["shipment_puts"] == puts == 1
    assert acumatica.counters("acumatica")["packages_inserted"] == 0
    assert [p["TrackingNbr"] for p in shipments(acumatica)["000103"]["Packages"]] == numbers


def test_label_file_is_attached_once(acumatica):
    source = AcumaticaSource(settings())
    order = next(o for o in source.extract(*window()) if o.number == "000101")
    label = Label(tracking_number="1ZA1B2C30300000009", image_format="GIF", image=b"GIF89a-label")
    assert source.attach_label(order, label, "000101_1ZA1B2C30300000009.gif") is True
    assert source.attach_label(order, label, "000101_1ZA1B2C30300000009.gif") is True  # replay
    source.close()
    files = shipments(acumatica)["000101"]["files"]
    assert list(files) == ["000101_1ZA1B2C30300000009.gif"]
    assert base64.b64decode(files["000101_1ZA1B2C30300000009.gif"]) == b"GIF89a-label"
    counters = acumatica.counters("acumatica")
    assert counters["files_uploaded"] == 1 and counters["files_replaced"] == 1


def test_attach_label_off_attaches_nothing(acumatica):
    source = AcumaticaSource(settings(attach_label=False))
    label = Label(tracking_number="1Z1", image_format="GIF", image=b"x")
    order = next(o for o in source.extract(*window()) if o.number == "000101")
    assert source.attach_label(order, label, "x.gif") is False
    source.close()
    assert acumatica.counters("acumatica")["files_uploaded"] == 0


def test_status_goes_to_the_note_and_custom_fields_only_on_change(acumatica):
    source = AcumaticaSource(settings(status_custom_fields={"delivered_at": "Document.UsrUPSDeliveredAt",
                                                            "received_by": "Document.UsrUPSSignedBy"}))
    order = next(o for o in source.extract(*window()) if o.number == "000101")
    delivered = datetime(2026, 11, 28, 15, 4, tzinfo=UTC)
    tracking = TrackingResult(
        tracking_number="1ZA1B2C30300000009", status=TrackingStatus.DELIVERED, delivered_at=delivered,
        received_by="J SMITH",
        events=[TrackingEvent(tracking_number="1ZA1B2C30300000009", status=TrackingStatus.DELIVERED,
                              description="Delivered", occurred_at=delivered, location="San Francisco, CA")])
    source.write_status(order, tracking)
    puts = acumatica.counters("acumatica")["shipment_puts"]
    source.write_status(order, tracking)  # unchanged: nothing written
    source.close()
    assert acumatica.counters("acumatica")["shipment_puts"] == puts == 1
    stored = shipments(acumatica)["000101"]
    assert "1ZA1B2C30300000009: delivered" in stored["note"] and "signed by J SMITH" in stored["note"]
    assert stored["custom"]["Document"] == {"UsrUPSDeliveredAt": "2026-11-28T15:04:00+00:00",
                                            "UsrUPSSignedBy": "J SMITH"}
    assert acumatica.validation_errors("acumatica") == []


def test_freight_cost_is_written_once_when_the_setting_is_on(acumatica):
    order = None
    for write in (False, True):
        source = AcumaticaSource(settings(write_freight_cost=write))
        order = order or next(o for o in source.extract(*window()) if o.number == "000101")
        source.write_charges(order, Money(amount=Decimal("14.37"), currency="USD"))
        source.write_charges(order, Money(amount=Decimal("14.37"), currency="USD"))  # a replay
        source.close()
    assert shipments(acumatica)["000101"]["FreightCost"] == 14.37
    assert acumatica.counters("acumatica")["shipment_puts"] == 1


def test_an_oauth_client_uses_one_shared_bearer_token_and_opens_no_session(acumatica, monkeypatch, tmp_path):
    import json

    from ml_connector_sandbox.credentials import ACUMATICA_OAUTH_CLIENT_ID, ACUMATICA_OAUTH_CLIENT_SECRET

    monkeypatch.setenv("AIRFLOW_CONN_ML_CONNECTOR_LEDGER", json.dumps(
        {"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}))
    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT", acumatica_connection(
        acumatica.url("acumatica"), client_id=ACUMATICA_OAUTH_CLIENT_ID, client_secret=ACUMATICA_OAUTH_CLIENT_SECRET))
    for _ in range(2):  # two tasks: one token request
        with AcumaticaHook() as hook:
            assert hook.get_shipment("000101")["ShipmentNbr"]["value"] == "000101"
            assert open_sessions(acumatica) == 0
    assert acumatica.counters("acumatica")["tokens_issued"] == 1
    assert acumatica.counters("acumatica")["logins"] == 0
    ok, message = AcumaticaHook().test_connection()
    assert ok and "OAuth client" in message

    monkeypatch.setenv("AIRFLOW_CONN_ACUMATICA_DEFAULT", acumatica_connection(
        acumatica.url("acumatica"), client_id=ACUMATICA_OAUTH_CLIENT_ID, client_secret="wrong"))
    ok, message = AcumaticaHook().test_connection()
    assert not ok and "invalid_client" in message


def test_an_endpoint_without_ship_via_resolves_by_code_only(acumatica, monkeypatch):
    hook = AcumaticaHook()
    source = AcumaticaSource(settings(), hook=hook)
    real_call = hook._call

    def no_ship_via(method, url, **kwargs):
        if url.endswith("/ShipVia"):
            url = url.replace("/ShipVia", "/NoSuchEntity")
        return real_call(method, url, **kwargs)

    monkeypatch.setattr(hook, "_call", no_ship_via)
    orders = [o for o in source.extract(*window()) if not isinstance(o, ExtractFailure)]
    source.close()
    assert orders and all(o.ship_method_description is None for o in orders)


def test_threads_hitting_an_expired_session_log_in_again_once(acumatica):
    from concurrent.futures import ThreadPoolExecutor

    with AcumaticaHook() as hook:
        hook.get_shipment("000101")
        acumatica.set_knobs("acumatica", expire_sessions=True)
        with ThreadPoolExecutor(max_workers=4) as pool:
            found = list(pool.map(lambda n: hook.get_shipment(n)["ShipmentNbr"]["value"],
                                  ["000101", "000102", "000103", "000104"] * 2))
        assert found == ["000101", "000102", "000103", "000104"] * 2
        assert hook.logins == 2 and open_sessions(acumatica) == 1
    assert acumatica.counters("acumatica")["logins"] == 2
