"""Backfills driven by a real scheduler: `airflow standalone` under `make run`'s settings (scripts/env.sh: SQLite
metadata DB, LocalExecutor, generated Fernet keys; connections imported from airflow_settings.yaml into the
metadata DB) against the sandboxes.

Slow: run with `make test-slow`. Every server binds a free loopback port and is stopped by its process group id.

Backfills are created the way the README tells `make run` users to: with the DAG paused while Airflow creates
the backfill's runs, then unpaused. On a SQLite metadata DB Airflow 3.3.2 commits each backfill run as soon as
it is created (pysqlite turns every SAVEPOINT release into a COMMIT), answers 503 "Database is locked" when a
later run cannot be written, and then deletes the runs it already created, also those a scheduler of an
unpaused DAG has started: that scheduler then works on deleted rows and exits. A paused DAG's queued runs are
never touched by the scheduler, so a 503 then costs nothing but a retry.
"""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml
from tests.conftest import ROOT, stop_group
from tests.dags.conftest import PIPELINE, bc_orders, place_orders

from ml_connector.ledger import Ledger, ShipmentState

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
GOOD = ["S-ORD101001", "S-ORD101002", "S-ORD101003", "S-ORD101004", "S-ORD101005", "S-ORD101009", "S-ORD101010"]
BROKEN = ["S-ORD101006", "S-ORD101007", "S-ORD101008", "S-ORD101014"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def airflow(env: dict, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"airflow {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def make_run_env(home: Path, sandbox_ports: Path, overrides: dict[str, str]) -> dict[str, str]:
    """The environment `make run` gives Airflow: scripts/env.sh sourced, `airflow db migrate`, the pinned
    airflow.cfg, the connections (and pools) of airflow_settings.yaml imported for the sandboxes' ports (scripts/run.sh),
    then ``overrides`` (ports, the pipelines file, the ledger)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST", "ML_CONNECTOR"))}
    base.update(ML_CONNECTOR_AIRFLOW_HOME=str(home), PATH=f"{BIN}:{os.environ['PATH']}",
                PYTHONPATH=os.pathsep.join([str(ROOT / "include"), str(ROOT / "sandbox")]), **overrides)
    script = (f'. "{ROOT}/scripts/env.sh" && airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 && '
              f'pin_airflow_cfg && python -m ml_connector_sandbox.devtools import-connections '
              f'"{ROOT}/airflow_settings.yaml" --sandbox-ports "{sandbox_ports}" >/dev/null && '
              f'python -m ml_connector_sandbox.devtools import-pools "{ROOT}/airflow_settings.yaml" >/dev/null && '
              f'env -0')
    done = subprocess.run(["bash", "-c", script], env=base, capture_output=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    env = dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    env.update(overrides)
    return env


class Api:
    """The Airflow REST API as the UI calls it (a JWT from /auth/token for the generated admin password)."""

    def __init__(self, base: str, home: Path) -> None:
        self.base = base
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password},
                              timeout=30).json()["access_token"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.database_errors = 0

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        """One request; a 500 "Database error" (SQLite's write lock was busy before the request did anything:
        Airflow writes its audit log first) is submitted again, as a user would."""
        for _ in range(10):
            answer = self.session.request(method, f"{self.base}/api/v2{path}", timeout=120, **kwargs)
            if answer.status_code != 500 or "Database error" not in answer.text:
                return answer
            self.database_errors += 1
            time.sleep(2)
        return answer

    def pages(self, path: str, key: str, **params) -> list[dict]:
        items: list[dict] = []
        while True:
            page = self.call("GET", path, params={**params, "limit": 100, "offset": len(items)})
            page.raise_for_status()
            batch = page.json()[key]
            items += batch
            if len(batch) < 100:
                return items

    def health(self) -> dict:
        return requests.get(f"{self.base}/api/v2/monitor/health", timeout=30).json()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        self.call("PATCH", f"/dags/{dag_id}", json={"is_paused": paused}).raise_for_status()

    def backfill(self, body: dict) -> int:
        """Create a backfill with the DAG paused meanwhile (see the module docstring); returns how many times
        Airflow answered 503 before it was created."""
        self.set_paused(body["dag_id"], True)
        refused = 0
        try:
            for _ in range(20):
                answer = self.call("POST", "/backfills", json=body)
                if answer.status_code == 200:
                    return refused
                assert answer.status_code == 503, (answer.status_code, answer.text)
                refused += 1
                time.sleep(2)
            raise AssertionError(f"POST /api/v2/backfills answered 503 {refused} times")
        finally:
            self.set_paused(body["dag_id"], False)

    def backfill_when_accepted(self, body: dict, timeout: float) -> int:
        """:meth:`backfill` once Airflow accepts a new backfill of the DAG (409 while the last one is open)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.backfill(body)
            except AssertionError as exc:
                if "409" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(5)


@pytest.fixture
def standalone(request, sandbox, tmp_path):
    """`airflow standalone` under make run's settings; ``request.param`` is the pipeline's schedule."""
    sandbox.reset("ups")
    sandbox.reset("business_central")
    home = tmp_path / "airflow"
    settings = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    settings[PIPELINE].update(schedule=request.param, retries=1, retry_delay_seconds=1, max_retry_delay_seconds=2,
                              label_folder=f"file://{tmp_path / 'labels'}")
    (tmp_path / "pipelines.yaml").write_text(yaml.safe_dump(settings))
    ports = tmp_path / "sandbox-ports.json"
    ports.write_text(json.dumps({v: sandbox.url(v) for v in ("ups", "business_central")}))
    port = free_port()
    env = make_run_env(home, ports, {
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "ML_CONNECTOR_PIPELINES": str(tmp_path / "pipelines.yaml"),
        "AIRFLOW_CONN_ML_CONNECTOR_LEDGER": json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "ledger.db")}),
    })
    log = open(tmp_path / "standalone.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(BIN / "airflow"), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/api/v2/version"), 180, "the API server")
        wait_for(lambda: airflow(env, "dags", "unpause", PIPELINE, check=False).returncode == 0, 180,
                 "the DAG to be parsed")
        yield {"env": env, "api": Api(base, home), "bc": sandbox.url("business_central"), "sandbox": sandbox,
               "ledger": f"sqlite:///{tmp_path / 'ledger.db'}", "log": tmp_path / "standalone.log"}
    finally:
        stop_group(proc)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def backfill_create(env: dict, api: Api, first: datetime, last: datetime, *args: str, timeout: float = 180) -> None:
    """`airflow backfill create` for the days ``first``..``last``, with the DAG paused meanwhile (the CLI writes
    the runs the way the REST API does), again while SQLite is locked or the last backfill is still open."""
    def create() -> bool:
        api.set_paused(PIPELINE, True)
        try:
            done = airflow(env, "backfill", "create", "--dag-id", PIPELINE, "--from-date", first.date().isoformat(),
                           "--to-date", last.date().isoformat(), *args, check=False)
        finally:
            api.set_paused(PIPELINE, False)
        return done.returncode == 0

    wait_for(create, timeout, "Airflow to accept the backfill", interval=3)


def _backfill_runs(api: Api) -> list[dict]:
    return api.pages(f"/dags/{PIPELINE}/dagRuns", "dag_runs", run_type="backfill")


def _all_done(runs: list[dict], expected: int) -> bool:
    return len(runs) == expected and all(r["state"] in ("success", "failed") for r in runs)


@pytest.mark.parametrize("standalone", ["0 0 * * *"], indirect=True)
def test_backfill_create_processes_each_missed_day_once(standalone):
    env, bc, sandbox, api = standalone["env"], standalone["bc"], standalone["sandbox"], standalone["api"]
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day1, day2 = today - timedelta(days=3), today - timedelta(days=2)
    place_orders(bc, today - timedelta(days=20))
    place_orders(bc, day1 + timedelta(hours=9), numbers=["S-ORD101001", "S-ORD101002"])
    place_orders(bc, day2 + timedelta(hours=14), numbers=["S-ORD101003"])

    backfill_create(env, api, day1, day2)
    runs = wait_for(lambda: (r := _backfill_runs(api)) and _all_done(r, 2) and r, 300, "the backfill runs", 5)
    assert {r["state"] for r in runs} == {"success"}, runs

    rows = {r.order_number: r for r in Ledger(standalone["ledger"]).list(PIPELINE)}
    assert {n for n, r in rows.items() if r.state is ShipmentState.WRITTEN_BACK} >= {
        "S-ORD101001", "S-ORD101002", "S-ORD101003"}
    by_reference = sandbox.counters("ups")["labels_by_reference"]
    assert all(by_reference[n] == 1 for n in ("S-ORD101001", "S-ORD101002", "S-ORD101003"))
    labels = sandbox.counters("ups")["labels_created"]

    # the scheduler closes the first backfill shortly after its runs end; only then is a new one accepted
    backfill_create(env, api, day1, day2, "--reprocess-behavior", "completed")
    time.sleep(5)
    wait_for(lambda: _all_done(_backfill_runs(api), 2), 300, "the reprocessed backfill runs", 5)
    assert sandbox.counters("ups")["labels_created"] == labels


#: how long Business Central answers 429 to everything in the 96-run backfill (at least)
OUTAGE_SECONDS = 45


@pytest.mark.parametrize("standalone", ["*/15 * * * *"], indirect=True)
def test_a_day_of_the_15_minute_schedule_backfills_through_the_rest_api_with_the_scheduler_healthy(standalone):
    """96 runs through POST /api/v2/backfills (what the Backfill form sends). Business Central answers 429 to
    everything for a while (the sandbox's burst_429 knob), so some runs' extract_orders fail after their retries
    (and those runs are red); runs that quarantine new orders are red at `report`; the others are green. The
    scheduler answers healthy at every poll; no label is bought twice, and re-running the red runs once Business
    Central answers again finishes every good order."""
    bc, sandbox, api = standalone["bc"], standalone["sandbox"], standalone["api"]
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    place_orders(bc, day - timedelta(days=20))
    orders = [n for n in sorted(bc_orders(bc)) if n in GOOD + BROKEN]
    placed = {n: day + timedelta(hours=1 + 2 * i, minutes=7) for i, n in enumerate(orders)}  # 01:07, 03:07...
    for number, when in placed.items():
        place_orders(bc, when, numbers=[number])
    body = {"dag_id": PIPELINE, "from_date": day.isoformat(), "to_date": (day + timedelta(hours=23, minutes=45)).isoformat(),
            "reprocess_behavior": "none", "max_active_runs": 10}
    health: list[str] = []

    def watch(done, timeout: float, what: str, on_poll=None):
        """Poll the runs until ``done(runs)``; the scheduler must answer healthy at every poll."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = api.health()
            health.append(status["scheduler"]["status"])
            assert status["metadatabase"]["status"] == "healthy" and status["scheduler"]["status"] == "healthy", (
                status, standalone["log"].read_text()[-5000:])
            runs = _backfill_runs(api)
            if on_poll:
                on_poll(runs)
            if done(runs):
                return runs
            time.sleep(5)
        raise AssertionError(f"timed out waiting for {what}: {collections.Counter(r['state'] for r in runs)}")

    started = time.monotonic()
    refused = api.backfill(body)
    outage = {"from": None, "to": None, "since": None}

    def break_and_mend_business_central(runs):
        # the outage lasts 8 finished runs and at least OUTAGE_SECONDS: longer than an extract's HTTP and
        # Airflow retries, so some extract_orders fail however fast the runs go
        finished = sum(r["state"] in ("success", "failed") for r in runs)
        if outage["from"] is None and finished >= 30:
            sandbox.set_knobs("business_central", burst_429=1_000_000)
            outage["from"], outage["since"] = finished, time.monotonic()
        elif (outage["from"] is not None and outage["to"] is None and finished >= outage["from"] + 8
              and time.monotonic() - outage["since"] >= OUTAGE_SECONDS):
            sandbox.set_knobs("business_central", burst_429=0)
            outage["to"] = finished

    runs = watch(lambda r: _all_done(r, 96), 1800, "the 96 backfill runs", break_and_mend_business_central)
    elapsed = time.monotonic() - started
    states = _task_states(api, runs)
    extract_failed = {run for run, tis in states.items() if tis.get(("extract_orders", -1)) == "failed"}
    by_state = {r["dag_run_id"]: r["state"] for r in runs}
    print(f"\n96 backfill runs in {elapsed:.0f} s ({refused} x 503 before the backfill was created, "
          f"{api.database_errors} x 500 'Database error' resubmitted); "
          f"{collections.Counter(by_state.values())}; extract failed in {len(extract_failed)}; "
          f"health polled {len(health)} times")
    assert extract_failed, "the outage failed no extract_orders"
    assert all(by_state[run] == "failed" for run in extract_failed)
    for run, tis in states.items():
        if all(state in ("success", "skipped") for state in tis.values()):
            assert by_state[run] == "success", (run, tis)
    # each quarantine turned exactly the run that made it red; with ten runs at once that is not always the run
    # whose window holds the order: another run may pick the order up first as unfinished work
    assert _quarantined_by(api, Ledger(standalone["ledger"])) == {"failed"}

    # the red runs again, Business Central answering: every good order ends written back, each with one label
    api.backfill_when_accepted({**body, "reprocess_behavior": "failed"}, 180)
    watch(lambda r: _all_done(r, 96), 900, "the re-runs")
    ledger = Ledger(standalone["ledger"])
    rows = {r.order_number: r for r in ledger.list(PIPELINE)}
    assert {n for n in GOOD if n in rows and rows[n].state is ShipmentState.WRITTEN_BACK} == set(GOOD), {
        n: (rows[n].state, rows[n].error) if n in rows else "never read" for n in GOOD}
    assert all(sandbox.counters("ups")["labels_by_reference"][n] == 1 for n in GOOD)
    assert {n for n in BROKEN if rows[n].state is ShipmentState.QUARANTINED} == set(BROKEN)
    assert _quarantined_by(api, ledger) == {"failed"}
    assert set(health) == {"healthy"}


def _quarantined_by(api: Api, ledger: Ledger) -> set[str]:
    """The final states of the runs (of any type) whose tasks quarantined an order."""
    runs = {a["actor"].split("/")[0] for row in ledger.list(PIPELINE, [ShipmentState.QUARANTINED])
            for a in ledger.audit_trail(row.id) if a["outcome"] == "quarantined"}
    assert runs, "no order was quarantined"

    def final_states() -> set[str] | None:
        states = {r["dag_run_id"]: r["state"] for r in api.pages(f"/dags/{PIPELINE}/dagRuns", "dag_runs")}
        found = {states.get(run) for run in runs}
        return found if found <= {"success", "failed"} else None

    return wait_for(final_states, 300, "the runs that quarantined orders to finish", interval=5)


def _task_states(api: Api, runs: list[dict]) -> dict[str, dict[tuple[str, int], str]]:
    wanted = {r["dag_run_id"] for r in runs}
    states: dict[str, dict[tuple[str, int], str]] = collections.defaultdict(dict)
    for ti in api.pages(f"/dags/{PIPELINE}/dagRuns/~/taskInstances", "task_instances"):
        if ti["dag_run_id"] in wanted:
            states[ti["dag_run_id"]][(ti["task_id"], ti["map_index"])] = ti["state"]
    return states

