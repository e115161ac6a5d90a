"""SysproHook against the SYSPRO sandbox: e.net session discipline, ERROR bodies, XML safety, OData paging."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from tests.erp.syspro.conftest import custom_forms, open_sessions, syspro_connection

from ml_connector.erp.syspro import mapping as sy
from ml_connector.erp.syspro.hook import SysproError, SysproHook, SysproLicenceLimit, SysproSessionError
from ml_connector.erp.syspro.xml import SysproXmlError
from ml_connector.errors import AuthenticationError, ConfigurationError


def _write(hook: SysproHook, key: str, values: dict[str, str], form_type: str = "INV") -> str:
    document = sy.custom_form_document(form_type, key, values, number=key, max_length=30)
    return hook.setup_update("COMSFM", sy.custom_form_parameters(), document, what=f"custom form of {key}")


def test_one_logon_per_hook_reused_and_logged_off_on_close(syspro):
    url = syspro.url("syspro")
    hook = SysproHook()
    for i in range(3):
        sy.check_custom_form_answer(_write(hook, "100201", {"SHIPSTAT": f"STEP {i}"}), number="100201")
    assert syspro.counters("syspro")["logons"] == 1 and hook.logons == 1
    assert open_sessions(url) == 1
    hook.close()
    hook.close()  # idempotent
    assert open_sessions(url) == 0 and syspro.counters("syspro")["logoffs"] == 1


def test_an_expired_session_is_renewed_once_and_the_call_retried(syspro):
    hook = SysproHook()
    _write(hook, "100201", {"TRACKNO": "1ZFIRST"})
    syspro.set_knobs("syspro", expire_all_sessions=True)  # an idle timeout on the server
    _write(hook, "100201", {"TRACKNO": "1ZSECOND"})
    assert hook.logons == 2 and syspro.counters("syspro")["expired_session_calls"] == 1
    assert custom_forms(syspro.url("syspro"))[("INV", "100201")]["TRACKNO"] == "1ZSECOND"
    hook.close()
    assert open_sessions(syspro.url("syspro")) == 0


def test_a_session_that_expires_again_right_away_is_an_error_not_a_loop(syspro):
    hook = SysproHook()
    _write(hook, "100201", {"TRACKNO": "1ZFIRST"})
    syspro.set_knobs("syspro", session_idle_seconds=0)  # every session is idle-expired at its next call
    with pytest.raises(AuthenticationError, match="expired again"):
        _write(hook, "100201", {"TRACKNO": "1ZSECOND"})
    assert hook.logons == 2
    hook.close()


def test_concurrent_calls_on_one_session_are_serialized(syspro):
    syspro.set_knobs("syspro", call_latency_ms=50)
    hook = SysproHook()
    errors = []

    def work(i: int) -> None:
        try:
            _write(hook, "100201", {"SHIPSTAT": f"THREAD {i}"})
        except Exception as exc:  # pragma: no cover - the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hook.close()
    assert errors == []
    counters = syspro.counters("syspro")
    assert counters["session_collisions"] == 0 and counters["logons"] == 1 and counters["business_object_calls"] == 6


def test_wrong_operator_password_is_an_authentication_error_with_syspros_text_and_no_secret(syspro, monkeypatch):
    url = syspro.url("syspro")
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", syspro_connection(url, password="not-the-password"))
    hook = SysproHook()
    with pytest.raises(SysproSessionError) as caught:
        _write(hook, "100201", {"TRACKNO": "1Z"})
    assert "Invalid operator or password" in str(caught.value) and "not-the-password" not in str(caught.value)
    hook.close()
    assert open_sessions(url) == 0
    ok, message = SysproHook().test_connection()
    assert not ok and "refused the logon" in message


def test_no_free_licence_seat_is_retryable(syspro):
    syspro.set_knobs("syspro", licence_seats=1)
    first, second = SysproHook(), SysproHook()
    _write(first, "100201", {"TRACKNO": "1Z"})
    with pytest.raises(SysproLicenceLimit, match="licence"):
        _write(second, "100201", {"TRACKNO": "1Z"})
    first.close()
    _write(second, "100201", {"TRACKNO": "1Z"})  # the seat is free again
    second.close()
    assert open_sessions(syspro.url("syspro")) == 0


def test_an_error_body_is_a_typed_error_with_syspros_text(syspro):
    hook = SysproHook()
    with pytest.raises(SysproError, match="Business object 'NOPE' is not supported"):
        hook.setup_update("NOPE", "<x/>", "<x/>", what="test")
    answer = _write(hook, "999999", {"TRACKNO": "1Z"})
    with pytest.raises(Exception, match="Key '999999' not found"):
        sy.check_custom_form_answer(answer, number="999999")
    hook.close()


def test_ampersand_angle_brackets_and_non_ascii_round_trip(syspro):
    hook = SysproHook()
    value = "Größe & Söhne <GmbH>"
    answer = _write(hook, "100202", {"SHIPSTAT": value})
    assert sy.check_custom_form_answer(answer, number="100202") == 1  # the differently cased ITEM is found
    hook.close()
    assert custom_forms(syspro.url("syspro"))[("INV", "100202")]["SHIPSTAT"] == value


def test_a_malicious_entity_in_an_answer_is_refused_not_expanded(syspro):
    syspro.set_knobs("syspro", malicious_answer_next=1)
    hook = SysproHook()
    answer = _write(hook, "100201", {"TRACKNO": "1Z"})
    with pytest.raises(SysproXmlError, match="declares a DTD or entities") as caught:
        sy.check_custom_form_answer(answer, number="100201")
    assert "boom" not in str(caught.value)
    hook.close()


def test_an_xmlin_over_the_url_limit_fails_clearly_before_sending(syspro, monkeypatch):
    url = syspro.url("syspro")
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", syspro_connection(url, extra={"max_url_length": "400"}))
    hook = SysproHook()
    document = sy.custom_form_document("INV", "100201", {f"F{i}": "X" * 20 for i in range(10)}, number="100201",
                                       max_length=30)
    with pytest.raises(ConfigurationError, match="max_url_length of 400"):
        hook.setup_update("COMSFM", sy.custom_form_parameters(), document, what="custom form of 100201")
    assert syspro.counters("syspro")["logons"] == 0  # nothing was sent


def test_odata_reads_every_page_with_the_window_filter(syspro):
    syspro.set_knobs("syspro", page_size=2)
    hook = SysproHook()
    table = sy.SysproTable(entity_set="ArInvoice", date_field="InvoiceDate", key_field="Invoice")
    now = datetime.now(UTC)
    rows = list(hook.iter_rows("ArInvoice", sy.window_filter(table, now - timedelta(hours=2), now,
                                                              "%Y-%m-%dT%H:%M:%SZ")))
    assert len(rows) == 8 and syspro.counters("syspro")["odata_pages_served"] == 4
    assert not list(hook.iter_rows("ArInvoice", sy.window_filter(table, now - timedelta(days=9),
                                                                   now - timedelta(days=8), "%Y-%m-%dT%H:%M:%SZ")))
    ready = sy.SysproTable(entity_set="SorMaster", date_field="LastOperatorChangeDate", key_field="SalesOrder",
                           ready_filter="OrderStatus eq '4'")
    orders = list(hook.iter_rows("SorMaster", sy.window_filter(ready, now - timedelta(hours=2), now,
                                                                "%Y-%m-%dT%H:%M:%SZ")))
    assert [o["SalesOrder"] for o in orders] == ["000000000000420"]


def test_wrong_odata_password_is_an_authentication_error(syspro, monkeypatch):
    url = syspro.url("syspro")
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT",
                       syspro_connection(url, extra={"odata_password": "nope-nope"}))
    with pytest.raises(AuthenticationError, match="SYSPRO OData refused"):
        list(SysproHook().iter_rows("ArInvoice", "InvoiceDate ge 2026-01-01T00:00:00Z"))
    ok, message = SysproHook().test_connection()
    assert not ok and "OData refused" in message
    assert open_sessions(url) == 0  # the test's logon was logged off before the OData read


def test_connection_test_logs_on_and_off_and_reads_odata(syspro):
    ok, message = SysproHook().test_connection()
    assert ok, message
    assert "company 'EDU1'" in message and "3 entity sets" in message
    counters = syspro.counters("syspro")
    assert counters["logons"] == counters["logoffs"] == 1
    assert open_sessions(syspro.url("syspro")) == 0


def test_missing_company_is_a_configuration_error(syspro, monkeypatch):
    conn = json.loads(syspro_connection(syspro.url("syspro")))
    del conn["extra"]["company_id"]
    monkeypatch.setenv("AIRFLOW_CONN_SYSPRO_DEFAULT", json.dumps(conn))
    with pytest.raises(ConfigurationError, match="company_id"):
        _write(SysproHook(), "100201", {"TRACKNO": "1Z"})


def test_urllib3_debug_lines_never_show_query_strings(syspro, caplog):
    import logging

    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")
    hook = SysproHook()
    _write(hook, "100201", {"TRACKNO": "1Z"})
    hook.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("/Logon?<query hidden>" in line for line in lines)
    assert not any("OperatorPassword" in line or "UserId=" in line for line in lines)
