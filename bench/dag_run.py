"""One Business Central -> UPS DAG run of N released orders under the real Airflow scheduler, timed.

For each N: a private ``AIRFLOW_HOME`` under a temporary folder, ``airflow db migrate``, the pools of
``airflow_settings.yaml`` (as ``make run`` creates them), the bench sandbox
(:mod:`bench.sandbox`: UPS + Business Central with ``latency_ms`` on every API call and N orders modified in
the interval the scheduler is about to run), then ``airflow scheduler``, ``airflow dag-processor`` and
``airflow api-server`` (LocalExecutor, the shipped settings) on free loopback ports, each in its own process
group. Once the DAG is parsed, it is unpaused through the REST API; the scheduler creates the run of the last
complete 15-minute interval (``catchup: false``); the clock runs from the unpause to the run's success. Then
every process group is stopped (SIGTERM, then SIGKILL), by its id.

Measured per N: wall time, orders/min, API calls per order by endpoint, token requests, task instances (and the
sum of their durations), peak RSS per kind of process, ledger transactions per order (every process writes one
byte per commit to a file named by ``ML_CONNECTOR_LEDGER_COMMIT_LOG``), duplicates (UPS labels per order
reference over 1), lost orders (seeded orders without a 1Z written back in Business Central) and the most calls
each sandbox answered at once (never more than the in-flight budget, ``api_budget``).
The floor is ``sum(API calls x latency) / in-flight budget`` (per-API budget, default 16).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = "business_central_ups"
BC_COMPANY = "4d56a68f-946e-47f8-9a1f-e90c39dc4d37"
FERNET = "lX5C3uTj1gQq2tqQnG3Yd5wq0J0nKkq8s4c2W6h3l7U="
AIRFLOW_FERNET = "4yqz3mXl0t5Z2nRwE8b7Yc1vK6pQ9sD0fGhJkLmNoP8="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_path() -> str:
    parts = [str(ROOT / "include"), str(ROOT / "sandbox"), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def airflow_bin() -> str:
    candidate = Path(sys.executable).with_name("airflow")
    return str(candidate) if candidate.exists() else "airflow"


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group we started (by its id), SIGKILL what is left after ``grace`` seconds."""
    if proc.poll() is not None and not _group_alive(proc.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _group_alive(proc.pid):
        time.sleep(0.3)
        proc.poll()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RssSampler(threading.Thread):
    """Samples the RSS of every process in the given process groups; keeps the peak per kind of process."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.groups: dict[int, str] = {}
        self.peak: dict[str, float] = defaultdict(float)
        self.interval = interval
        self._stop_event = threading.Event()

    def watch(self, pgid: int, name: str) -> None:
        self.groups[pgid] = name

    def run(self) -> None:
        import psutil

        while not self._stop_event.wait(self.interval):
            for proc in psutil.process_iter(["pid", "cmdline", "memory_info"]):
                try:
                    pgid = os.getpgid(proc.info["pid"])
                except (ProcessLookupError, PermissionError):
                    continue
                if pgid not in self.groups or proc.info["memory_info"] is None:
                    continue
                kind = self.kind(self.groups[pgid], proc.info["cmdline"] or [])
                self.peak[kind] = max(self.peak[kind], proc.info["memory_info"].rss / 2**20)

    @staticmethod
    def kind(group: str, cmdline: list[str]) -> str:
        text = " ".join(cmdline)
        if group == "scheduler":
            if "supervisor" in text or "task-runner" in text or "--" in cmdline[-1:]:
                return "scheduler: task process"
            return "scheduler" if "airflow scheduler" in text else "scheduler: task process"
        return group

    def stop(self) -> None:
        self._stop_event.set()


@dataclass
class Result:
    n: int
    latency_ms: int
    budget: int
    seconds: float = 0.0
    state: str = ""
    calls: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)  # per API: the most calls its sandbox answered at once
    task_instances: int = 0
    task_seconds: float = 0.0
    tasks_by_state: dict[str, int] = field(default_factory=dict)
    task_pools: dict[str, str] = field(default_factory=dict)  # task id -> the Airflow pool it ran in
    task_durations: dict[str, dict[str, float]] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    ledger_transactions: int = 0  # write transactions (commits); reads are counted apart
    ledger_reads: int = 0
    duplicates: int = 0
    lost: int = 0
    load: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def api_calls(self) -> int:
        return sum(v for k, v in self.calls.items() if not _token_endpoint(k))

    @property
    def floor(self) -> float:
        return self.api_calls * self.latency_ms / 1000 / self.budget

    @property
    def ratio(self) -> float:
        return self.floor / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(api_calls=self.api_calls, floor=round(self.floor, 2), ratio=round(self.ratio, 3),
                   orders_per_min=round(self.n / self.seconds * 60, 1) if self.seconds else 0.0,
                   calls_per_order={k: round(v / self.n, 3) for k, v in sorted(self.calls.items())},
                   ledger_transactions_per_order=round(self.ledger_transactions / self.n, 2))
        return out


def _token_endpoint(name: str) -> bool:
    return "oauth" in name or "/token" in name


def _interval(now: datetime) -> tuple[datetime, datetime]:
    """The last complete 15-minute interval before ``now`` (what the scheduler runs on unpause)."""
    end = now.replace(second=0, microsecond=0, minute=now.minute - now.minute % 15)
    return end - timedelta(minutes=15), end


class Bench:
    """One measured DAG run of ``n`` orders (see the module doc)."""

    def __init__(self, n: int, *, latency_ms: int = 150, budget: int = 16, page_size: int = 1000,
                 timeout: float = 3600.0, keep: bool = False, settings: dict[str, Any] | None = None,
                 log=print) -> None:
        self.n, self.latency_ms, self.budget, self.page_size = n, latency_ms, budget, page_size
        self.timeout, self.keep, self.settings = timeout, keep, settings or {}
        self.log = log
        self.home = Path(tempfile.mkdtemp(prefix=f"ml-connector-bench-{n}-"))
        self.groups: list[subprocess.Popen] = []
        self.sampler = RssSampler()

    # -- environment ---------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ML_CONNECTOR"))}
        home = self.home
        env.update({
            "AIRFLOW_HOME": str(home),
            "PYTHONPATH": python_path(),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": AIRFLOW_FERNET,
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": "ml-connector-bench-jwt-secret-0123456789abcdef",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
            "ML_CONNECTOR_FERNET_KEYS": FERNET,
            "ML_CONNECTOR_PIPELINES": str(home / "pipelines.yaml"),
            "ML_CONNECTOR_LEDGER_COMMIT_LOG": str(home / "ledger-commits.log"),
            "AIRFLOW_CONN_UPS_DEFAULT": json.dumps({
                "conn_type": "ups", "host": self.urls["ups"], "login": "sandbox-client-id",
                "password": "sandbox-client-secret", "extra": {"account_number": "A1B2C3"}}),
            "AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT": json.dumps({
                "conn_type": "business_central", "host": self.urls["business_central"],
                "login": "sandbox-entra-client-id", "password": "sandbox-entra-client-secret",
                "extra": {"tenant_id": "sandbox-tenant", "environment": "Production", "company_id": BC_COMPANY,
                          "authority": self.urls["business_central"]}}),
            "AIRFLOW_CONN_ML_CONNECTOR_LEDGER": json.dumps({"conn_type": "sqlite",
                                                            "host": str(home / "ledger.db")}),
        })
        return env

    def write_settings(self) -> None:
        settings = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
        settings[PIPELINE].update(label_folder=f"file://{self.home / 'labels'}", **self.settings)
        (self.home / "pipelines.yaml").write_text(yaml.safe_dump(settings))

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.home,
                                start_new_session=True)
        log.close()
        self.groups.append(proc)
        self.sampler.watch(proc.pid, name)
        return proc

    # -- the run ---------------------------------------------------------------------------------------------

    def run(self) -> Result:
        result = Result(self.n, self.latency_ms, self.budget)
        try:
            self._run(result)
        finally:
            self.sampler.stop()
            for proc in reversed(self.groups):
                stop_group(proc)
            if not self.keep:
                import shutil

                shutil.rmtree(self.home, ignore_errors=True)
        return result

    def _run(self, result: Result) -> None:
        self.api_port = free_port()
        start, end = _interval(datetime.now(UTC))
        if (end + timedelta(minutes=15) - datetime.now(UTC)).total_seconds() < 150:
            self.log("  (the next 15-minute boundary is close: the orders also fall in the next interval)")
        # modified in [end - 4 min, end - 1 min): inside this interval, and inside the next one's overlap, so
        # the run finds them even if a boundary passes before the scheduler creates it
        port_file = self.home / "sandbox-ports.json"
        self.start("sandbox", [sys.executable, "-m", "bench.sandbox", "--orders", str(self.n),
                               "--modified-from", (end - timedelta(minutes=4)).isoformat(),
                               "--modified-to", (end - timedelta(minutes=1)).isoformat(),
                               "--latency-ms", str(self.latency_ms), "--page-size", str(self.page_size),
                               "--port-file", str(port_file)],
                   {**os.environ, "PYTHONPATH": python_path()})
        self.sampler.start()
        self.urls = self._wait_for_file(port_file, 60)
        self.write_settings()
        env = self.env()
        airflow = airflow_bin()
        self.log(f"  AIRFLOW_HOME {self.home}; airflow db migrate ...")
        migrate = subprocess.run([airflow, "db", "migrate"], env=env, cwd=self.home, capture_output=True,
                                 timeout=600)
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout.decode()[-3000:]}"
                               f"{migrate.stderr.decode()[-3000:]}")
        # the pools the pipelines name, as `make run` creates them (a task whose pool does not exist never runs)
        pools = subprocess.run([sys.executable, "-m", "ml_connector_sandbox.devtools", "import-pools",
                                str(ROOT / "airflow_settings.yaml")], env=env, cwd=self.home, capture_output=True,
                               timeout=300)
        if pools.returncode:
            raise RuntimeError(f"import-pools failed:\n{pools.stdout.decode()[-3000:]}{pools.stderr.decode()[-3000:]}")
        self.log("  " + "; ".join(pools.stdout.decode().split("\n")).strip("; "))
        self.start("api-server", [airflow, "api-server", "--port", str(self.api_port), "--host", "127.0.0.1"], env)
        self.start("dag-processor", [airflow, "dag-processor"], env)
        self.start("scheduler", [airflow, "scheduler"], env)
        api = f"http://127.0.0.1:{self.api_port}"
        session = requests.Session()
        self._wait(lambda: session.get(f"{api}/api/v2/version", timeout=5).ok, 300, "the api-server")
        token = session.get(f"{api}/auth/token", timeout=30).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        self._wait(lambda: session.get(f"{api}/api/v2/dags/{PIPELINE}", timeout=10).ok, 300,
                   f"the DAG {PIPELINE} to be parsed")
        result.load = _uptime()
        self.log(f"  parsed; unpausing {PIPELINE} (load {result.load}) ...")
        started = time.monotonic()
        session.patch(f"{api}/api/v2/dags/{PIPELINE}", json={"is_paused": False}, timeout=30).raise_for_status()
        db = self.home / "airflow.db"
        state = ""
        while time.monotonic() - started < self.timeout:
            state = self._run_state(db)
            if state in ("success", "failed"):
                break
            for proc in self.groups:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[:2]} exited with {proc.returncode}; logs in {self.home}")
            time.sleep(0.5)
        result.seconds = round(time.monotonic() - started, 1)
        result.state = state or "timeout"
        self.log(f"  run {result.state} after {result.seconds} s")
        self._collect(result, db)

    def _run_state(self, db: Path) -> str:
        try:
            with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
                row = conn.execute("SELECT state FROM dag_run WHERE dag_id = ? ORDER BY id LIMIT 1",
                                   (PIPELINE,)).fetchone()
        except sqlite3.Error:
            return ""
        return row[0] if row else ""

    def _collect(self, result: Result, db: Path) -> None:
        calls: Counter[str] = Counter()
        for vendor, url in self.urls.items():
            for name, count in requests.get(f"{url}/_bench/calls", timeout=30).json().items():
                calls[f"{vendor}: {name}"] += count
        result.calls = dict(calls)
        ups = requests.get(f"{self.urls['ups']}/_sandbox/counters", timeout=30).json()
        bc = requests.get(f"{self.urls['business_central']}/_sandbox/counters", timeout=30).json()
        result.tokens = {"ups": ups.get("tokens_issued", 0), "entra": bc.get("tokens_issued", 0)}
        result.most_in_flight = {"ups": ups.get("most_in_flight", 0), "business_central": bc.get("most_in_flight", 0)}
        by_reference = ups.get("labels_by_reference", {})
        result.duplicates = sum(max(0, count - 1) for ref, count in by_reference.items() if ref.startswith("BENCH-"))
        orders = requests.get(f"{self.urls['business_central']}/_sandbox/business_central/orders", timeout=60).json()
        result.lost = sum(1 for o in orders if o.get("number", "").startswith("BENCH-")
                          and not o.get("packageTrackingNo"))
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
            run_id = conn.execute("SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id LIMIT 1",
                                  (PIPELINE,)).fetchone()[0]
            rows = conn.execute("SELECT state, duration, task_id FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                (PIPELINE, run_id)).fetchall()
            result.task_pools = dict(conn.execute(
                "SELECT DISTINCT task_id, pool FROM task_instance WHERE dag_id = ? AND run_id = ?", (PIPELINE, run_id)))
        by_task: dict[str, list[float]] = defaultdict(list)
        for _state, duration, task_id in rows:
            by_task[task_id].append(duration or 0.0)
        result.task_durations = {task: {"count": len(d), "sum": round(sum(d), 1), "max": round(max(d), 1)}
                                 for task, d in sorted(by_task.items())}
        result.task_instances = len(rows)
        result.task_seconds = round(sum(d or 0 for _s, d, _t in rows), 1)
        result.tasks_by_state = dict(Counter(s or "none" for s, _d, _t in rows))
        result.peak_rss_mb = {k: round(v, 1) for k, v in sorted(self.sampler.peak.items())}
        commits = self.home / "ledger-commits.log"
        kinds = Counter(commits.read_bytes().decode()) if commits.exists() else Counter()
        result.ledger_transactions = kinds["w"]
        result.ledger_reads = kinds["r"]

    # -- helpers ---------------------------------------------------------------------------------------------

    def _wait_for_file(self, path: Path, timeout: float) -> dict[str, str]:
        self._wait(lambda: path.exists(), timeout, "the bench sandbox")
        return json.loads(path.read_text())

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, OSError, ValueError):
                if ready():
                    return
            for proc in self.groups:
                if proc.poll() is not None:
                    raise RuntimeError(f"{proc.args[:2]} exited with {proc.returncode} while waiting for {what};"
                                       f" logs in {self.home}")
            time.sleep(0.5)
        raise TimeoutError(f"{what} not ready after {timeout} s (logs in {self.home})")


def _uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def parse_time(dag_file: Path, repeats: int = 3) -> tuple[float, float]:
    """Cold parse time of one DAG file: a fresh interpreter with what the dag-processor has imported before it
    parses a file (``airflow.dag_processing.processor``) and, like the dag-processor's manager, those objects
    frozen out of the garbage collector (``gc.freeze()``), timing the execution of the file: ``(wall, cpu)``
    seconds of the best of ``repeats`` (CPU time is what a loaded machine does not change)."""
    code = ("import gc, time, runpy, airflow.sdk, airflow.dag_processing.processor\n"
            "gc.freeze()\n"  # as the dag-processor's manager does before it forks the parsing processes
            "t, c = time.perf_counter(), time.process_time()\n"
            f"runpy.run_path({str(dag_file)!r})\n"
            "print(time.perf_counter() - t, time.process_time() - c)\n")
    import shutil

    home = tempfile.mkdtemp(prefix="ml-connector-bench-parse-")
    env = {**os.environ, "PYTHONPATH": python_path(), "ML_CONNECTOR_FERNET_KEYS": FERNET, "AIRFLOW_HOME": home}
    times = []
    try:
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                 timeout=300)
            if out.returncode:
                raise RuntimeError(f"parsing {dag_file.name} failed:\n{out.stderr[-2000:]}")
            wall, cpu = out.stdout.strip().splitlines()[-1].split()
            times.append((float(wall), float(cpu)))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return min(times)
