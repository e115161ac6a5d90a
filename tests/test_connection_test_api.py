"""The connection "Test" button of the Airflow 3.3 UI, through a real ``airflow api-server``, against the sandboxes.

The button sits in each row of Admin > Connections. It posts the row as the list endpoint returned it
(``GET /api/v2/connections``: password masked as ``***``, extras redacted) to ``POST /api/v2/connections/test``;
the server puts the stored secrets back and calls the hook's ``test_connection()``. From the UI bundle
(``airflow/ui/dist/assets/index-*.js``, the row's test button)::

    {conn_type: n.conn_type, connection_id: n.connection_id, description: n.description ?? "",
     extra: n.extra === "" || n.extra === null ? "{}" : n.extra, host: n.host ?? "", login: n.login ?? "",
     password: n.password ?? "", port: Number(n.port), schema: n.schema ?? ""}

``Number(null)`` is ``0``: for a connection without a port the server sees a port that "differs from the stored
connection" and refuses with HTTP 400 before testing anything (apache/airflow#73298 fixes that upstream). The
connections ``make run`` imports (devtools ``import-connections`` of airflow_settings.yaml) therefore store the
port of their host URL.

About 15 s on an idle machine, nearly all of it ``airflow db migrate`` and the API server's start, once per test
session and xdist worker. (The module is one xdist group, but with pytest 9.2 and pytest-xdist 3.8 ``--dist
loadgroup`` does not keep a group on one worker, so two workers may each start a server.) The API server binds a free loopback port, runs in its own AIRFLOW_HOME under
tmp_path, and is stopped by its process group id.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tests.conftest import ROOT, UPS_ACCOUNT, stop_group

from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, SANDBOX_CREDENTIALS, UPS_CLIENT_ID

pytestmark = pytest.mark.xdist_group("airflow_api_server")  # one worker (when loadgroup honours it)
BIN = Path(sys.executable).parent
FERNET_KEY = "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U="
WRONG = "not-the-sandbox-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(env: dict, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


class AirflowApi:
    """The REST calls the UI makes, with the admin's JWT."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def connections(self) -> dict[str, dict]:
        """``GET /api/v2/connections`` as the Admin > Connections page lists them."""
        response = self.session.get(f"{self.base}/api/v2/connections",
                                    params={"limit": 50, "offset": 0, "order_by": "connection_id"}, timeout=30)
        assert response.status_code == 200, response.text
        return {row["connection_id"]: row for row in response.json()["connections"]}

    def press_test(self, connection_id: str) -> requests.Response:
        """What the row's Test button sends: the listed connection, with ``port: Number(port)``."""
        row = self.connections()[connection_id]
        port = row["port"]
        body = {
            "conn_type": row["conn_type"], "connection_id": row["connection_id"],
            "description": row["description"] if row["description"] is not None else "",
            "extra": "{}" if row["extra"] in ("", None) else row["extra"],
            "host": row["host"] if row["host"] is not None else "",
            "login": row["login"] if row["login"] is not None else "",
            "password": row["password"] if row["password"] is not None else "",
            "port": 0 if port is None else int(port),  # Number(null) === 0
            "schema": row["schema"] if row["schema"] is not None else "",
        }
        return self.session.post(f"{self.base}/api/v2/connections/test", json=body, timeout=120)

    def edit(self, connection_id: str, **changes) -> None:
        """Save the edit form with ``changes`` (``PATCH`` with the changed fields as ``update_mask``)."""
        row = self.connections()[connection_id]
        form = {key: ("" if row[key] is None else row[key])
                for key in ("description", "host", "login", "password", "schema")}
        form.update(changes)
        body = {**form, "conn_type": row["conn_type"], "connection_id": connection_id,
                "extra": None if row["extra"] in ("{}", "", None) else row["extra"],
                "port": None if form.get("port", row["port"]) in ("", None) else int(form.get("port", row["port"]))}
        response = self.session.patch(f"{self.base}/api/v2/connections/{connection_id}", json=body,
                                      params=[("update_mask", key) for key in changes], timeout=30)
        assert response.status_code == 200, response.text

    def add(self, **connection) -> None:
        """Save the add form (``POST /api/v2/connections``; blank fields are left out)."""
        response = self.session.post(f"{self.base}/api/v2/connections",
                                     json={k: v for k, v in connection.items() if v not in ("", None)}, timeout=30)
        assert response.status_code == 201, response.text


@pytest.fixture(scope="session")  # session, not module: xdist may interleave other modules' tests with these
def api_server(sandbox, tmp_path_factory):
    """``airflow db migrate``, the connections as ``make run`` imports them, then ``airflow api-server``."""
    tmp = tmp_path_factory.mktemp("ui-connection-test")
    home = tmp / "airflow"
    home.mkdir()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST", "ML_CONNECTOR"))},
        "AIRFLOW_HOME": str(home),
        "PATH": f"{BIN}:{os.environ['PATH']}",
        # this checkout's code first (the venv may hold an editable install of another checkout)
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "include", ROOT / "sandbox", ROOT)),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__FERNET_KEY": FERNET_KEY,
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # what scripts/env.sh sets for `make run`
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "ML_CONNECTOR_FERNET_KEYS": FERNET_KEY,
    }
    run(env, str(BIN / "airflow"), "db", "migrate")
    # As `make run` does: airflow_settings.yaml through devtools, hosts (and ports) re-pointed at the sandbox. A
    # copy, so that its relative ledger path lands under tmp.
    shutil.copy(ROOT / "airflow_settings.yaml", tmp / "airflow_settings.yaml")
    (tmp / "sandbox-ports.json").write_text(json.dumps(sandbox.urls))
    imported = run(env, sys.executable, "-m", "ml_connector_sandbox.devtools", "import-connections",
                   str(tmp / "airflow_settings.yaml"), "--sandbox-ports", str(tmp / "sandbox-ports.json"))
    assert "ups_default (ups)" in imported.stdout, imported.stdout
    log = open(tmp / "api-server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1", "--apps", "core"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(f"{base}/api/v2/version", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None, (tmp / "api-server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not answer within 120 s"
            time.sleep(0.5)
        passwords = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        login = requests.post(f"{base}/auth/token", json={"username": "admin", "password": passwords["admin"]},
                              timeout=30)
        assert login.status_code == 201, login.text
        yield {"api": AirflowApi(base, login.json()["access_token"]), "tmp": tmp, "sandbox": sandbox}
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture
def ui(api_server, request):
    """The API as the UI uses it, with fresh sandboxes and a fresh ledger (no token cached by an earlier test)."""
    api, sandbox = api_server["api"], api_server["sandbox"]
    sandbox.reset("ups")
    sandbox.reset("business_central")
    ledger = api_server["tmp"] / f"ledger-{request.node.name}.db"
    api.edit("ml_connector_ledger", host=str(ledger))
    return api


def sandbox_secret(vendor: str) -> str:
    return SANDBOX_CREDENTIALS[vendor][1]


def outcome(response: requests.Response) -> tuple[bool, str]:
    assert response.status_code == 200, f"HTTP {response.status_code}: {response.text}"
    body = response.json()
    return body["status"], body["message"]


# -- UPS ----------------------------------------------------------------------------------------------------


def test_ups_right_credentials(ui, sandbox):
    ok, message = outcome(ui.press_test("ups_default"))
    assert ok is True, message
    assert message.startswith(f"Authenticated with UPS at {sandbox.url('ups')} as client "), message
    assert f"for account {UPS_ACCOUNT}" in message and "valid for" in message
    assert sandbox.counters("ups")["tokens_issued"] == 1


def test_ups_wrong_secret_names_the_refusal(ui, sandbox):
    ui.edit("ups_default", password=WRONG)
    try:
        ok, message = outcome(ui.press_test("ups_default"))
    finally:
        ui.edit("ups_default", password=sandbox_secret("ups"))
    assert ok is False
    assert message.startswith("UPS refused the client id/secret of connection ") and "10401" in message, message
    assert "ClientId is Invalid" in message
    assert WRONG not in message
    assert sandbox.counters("ups")["auth_failures"] == 1


# -- Business Central ---------------------------------------------------------------------------------------


def test_business_central_right_credentials(ui):
    ok, message = outcome(ui.press_test("business_central_default"))
    assert ok is True, message
    assert message.startswith("Connected to company 'CRONUS USA, Inc.' in environment 'Production' at "), message


def test_business_central_wrong_secret_names_the_refusal(ui, sandbox):
    ui.edit("business_central_default", password=WRONG)
    try:
        ok, message = outcome(ui.press_test("business_central_default"))
    finally:
        ui.edit("business_central_default", password=sandbox_secret("business_central"))
    assert ok is False
    assert message.startswith("Entra refused the client credentials of connection ") and "AADSTS7000215" in message, message
    assert WRONG not in message
    assert sandbox.counters("business_central")["token_errors"] == 1


def test_business_central_unknown_client_id_names_the_refusal(ui):
    ui.edit("business_central_default", login="someone-elses-app")
    try:
        ok, message = outcome(ui.press_test("business_central_default"))
    finally:
        ui.edit("business_central_default", login=BUSINESS_CENTRAL_CLIENT_ID)
    assert ok is False
    assert message.startswith("Entra refused the client credentials of connection ") and "AADSTS700016" in message, message


def test_business_central_wrong_secret_after_a_successful_test(ui, sandbox):
    assert outcome(ui.press_test("business_central_default"))[0] is True  # caches a token in the ledger
    ui.edit("business_central_default", password=WRONG)
    try:
        ok, message = outcome(ui.press_test("business_central_default"))
    finally:
        ui.edit("business_central_default", password=sandbox_secret("business_central"))
    assert ok is False and "AADSTS7000215" in message, message


# -- why the stored port matters ------------------------------------------------------------------------------


def test_a_connection_without_a_port_is_refused_before_any_test(ui, sandbox):
    """Airflow 3.3.2: the button sends port 0, the stored port is NULL -> 400 (apache/airflow#73298). If this starts
    to pass with 200, Airflow has the fix and the stored ports (airflow_settings.yaml, devtools) are not needed."""
    ui.add(connection_id="ups_no_port", conn_type="ups", host=sandbox.url("ups"), login=UPS_CLIENT_ID,
           password=sandbox_secret("ups"), extra=json.dumps({"account_number": UPS_ACCOUNT}))
    response = ui.press_test("ups_no_port")
    assert response.status_code == 400
    assert "The host or port to test differs from the stored connection" in response.json()["detail"]
    assert sandbox.counters("ups")["tokens_issued"] == 0  # the hook was never called


def test_a_connection_added_with_its_port_typed_in_tests(ui, sandbox):
    url = sandbox.url("ups")
    ui.add(connection_id="ups_typed_port", conn_type="ups", host=url, port=int(url.rsplit(":", 1)[1]),
           login=UPS_CLIENT_ID, password=sandbox_secret("ups"),
           extra=json.dumps({"account_number": UPS_ACCOUNT}))
    ok, message = outcome(ui.press_test("ups_typed_port"))
    assert ok is True and message.startswith(f"Authenticated with UPS at {url} "), message
