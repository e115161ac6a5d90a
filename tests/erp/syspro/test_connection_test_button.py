"""The Airflow UI's connection Test button for ``syspro_default``, through a real ``airflow api-server`` (the
machinery of tests/test_connection_test_api.py), with the connection imported as ``make run`` imports it."""

from __future__ import annotations

import pytest
from tests.erp.syspro.conftest import open_sessions
from tests.test_connection_test_api import WRONG, outcome
from tests.test_connection_test_api import api_server as api_server  # noqa: F401 - a fixture

from ml_connector_sandbox.credentials import SYSPRO_OPERATOR_PASSWORD

pytestmark = pytest.mark.xdist_group("airflow_api_server")


@pytest.fixture(scope="session")
def sandbox():
    """For this module: every sandbox the connections of airflow_settings.yaml point at, SYSPRO included."""
    from ml_connector_sandbox.testing import SandboxServer

    with SandboxServer(["ups", "business_central", "syspro"]) as server:
        yield server


def test_syspro_test_button_logs_on_and_off_and_reads_odata(api_server):  # noqa: F811
    api, sandbox = api_server["api"], api_server["sandbox"]
    sandbox.reset("syspro")
    row = api.connections()["syspro_default"]
    assert row["host"] == f"{sandbox.url('syspro')}/SYSPROWCFService/Rest"  # re-pointed, path kept
    ok, message = outcome(api.press_test("syspro_default"))
    assert ok is True, message
    assert message.startswith("Logged on to SYSPRO company 'EDU1' at ") and "3 entity sets" in message, message
    counters = sandbox.counters("syspro")
    assert counters["logons"] == counters["logoffs"] == 1 and open_sessions(sandbox.url("syspro")) == 0


def test_syspro_test_button_names_the_refusal(api_server):  # noqa: F811
    api, sandbox = api_server["api"], api_server["sandbox"]
    sandbox.reset("syspro")
    api.edit("syspro_default", password=WRONG)
    try:
        ok, message = outcome(api.press_test("syspro_default"))
    finally:
        api.edit("syspro_default", password=SYSPRO_OPERATOR_PASSWORD)
    assert ok is False
    assert "refused the logon of operator 'sandbox-operator'" in message and "Invalid operator or password" in message
    assert WRONG not in message
    assert open_sessions(sandbox.url("syspro")) == 0
