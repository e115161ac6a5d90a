"""DAG integrity for the whole dags/ folder: every file imports with no error, every DAG has tags, an owner,
retries and docs, parsing touches no network and no database, and every pool a DAG uses is declared in
airflow_settings.yaml (Airflow 3.3's scheduler never runs a task whose pool does not exist)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.conftest import ROOT

DAG_FILES = sorted(p.name for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

# Parse in a fresh interpreter where any socket connection or ledger engine raises.
PARSE = r"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("DAG parsing opened a network connection")
socket.socket.connect = refuse
socket.create_connection = refuse
import ml_connector.ledger.engine as engine
def no_ledger(*args, **kwargs):
    raise RuntimeError("DAG parsing opened the ledger")
engine.get_engine = no_ledger
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({
    "errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()},
    "dags": {d.dag_id: {"file": d.fileloc, "tags": sorted(d.tags), "owner": d.default_args.get("owner"),
                        "retries": d.default_args.get("retries"), "doc": bool(d.doc_md),
                        "policy": d.default_args.get("retry_policy") is not None,
                        "pools": {t.task_id: t.pool for t in d.tasks}}
             for d in bag.dags.values()},
}))
"""


@pytest.fixture(scope="module")
def parsed() -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PARSE, str(ROOT / "dags")], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_file_imports_without_errors_or_io(parsed):
    assert parsed["errors"] == {}
    files = {Path(d["file"]).name for d in parsed["dags"].values()}
    assert files == set(DAG_FILES)
    # make run unpauses each file's DAG by the file's name
    assert {dag_id: Path(d["file"]).stem for dag_id, d in parsed["dags"].items()} == {
        dag_id: dag_id for dag_id in parsed["dags"]}


@pytest.mark.parametrize("dag_file", DAG_FILES)
def test_every_dag_has_tags_owner_retries_and_docs(parsed, dag_file):
    dags = {dag_id: d for dag_id, d in parsed["dags"].items() if Path(d["file"]).name == dag_file}
    assert dags, f"{dag_file} defines no DAG"
    for dag_id, dag in dags.items():
        assert "ml-connector" in dag["tags"], dag_id
        assert dag["owner"] and dag["owner"] != "airflow", dag_id
        assert dag["retries"] >= 1 and dag["policy"], dag_id
        assert dag["doc"], dag_id


def declared_pools() -> dict[str, int]:
    document = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    return {p["pool_name"]: p["pool_slot"] for p in document["airflow"]["pools"]}


def test_every_pool_a_dag_uses_is_declared_in_airflow_settings(parsed):
    """A task whose pool does not exist is never scheduled (the scheduler logs "Tasks using non-existent pool"
    and the task stays `scheduled`; the 3.3 dag-processor shows no warning), so every pool named in
    include/pipelines.yaml must be in airflow_settings.yaml, which `make run` and `astro dev start` create."""
    declared = declared_pools()
    used = {pool for d in parsed["dags"].values() for pool in d["pools"].values()} - {"default_pool"}
    assert used, "the shipped pipelines name their pools"
    assert used <= set(declared), f"pools used but not in airflow_settings.yaml: {sorted(used - set(declared))}"
    assert all(slots >= 1 for slots in declared.values())


def test_every_shipped_pipeline_names_the_pool_of_each_api_it_calls(parsed):
    """One pool per registry API the shipped pipelines call (ml_connector_<vendor>): they share
    ml_connector_ups, each ERP has its own; airflow_settings.yaml declares exactly those."""
    from ml_connector import registry

    pipelines = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    for dag_id, block in pipelines.items():
        if "fulfilment" in block:  # its own DAG shape, paced by the ledger's shared call budget, not by pools
            continue
        assert block.get("carrier_pool") == f"ml_connector_{block.get('carrier', 'ups')}", dag_id
        assert block.get("erp_pool") == f"ml_connector_{block['erp']}", dag_id
        pools = parsed["dags"][dag_id]["pools"]
        assert pools["process_order.create_shipment"] == pools["poll_tracking"] == "ml_connector_ups", dag_id
        assert pools["process_order.writeback"] == pools["extract_orders"] == block["erp_pool"], dag_id
    apis = {block["erp"] for block in pipelines.values()} | {block.get("carrier", "ups") for block in pipelines.values()}
    assert apis <= {*registry.ERPS, *registry.CARRIERS}
    assert {f"ml_connector_{name}" for name in apis} == set(declared_pools())


# What the dag-processor has loaded before it parses a file; then every DAG file, and what parsing added.
PARSE_IMPORTS = r"""
import json, runpy, sys
import airflow.sdk, airflow.dag_processing.processor
before = set(sys.modules)
for path in sys.argv[1:]:
    runpy.run_path(path)
print(json.dumps(sorted(set(sys.modules) - before)))
"""

#: imported by a task when it runs, never while a DAG file is parsed (each costs tens of milliseconds of the
#: dag-processor's time per file and parse: the HTTP layer and hooks, the webhook routes' FastAPI, Fernet)
NOT_AT_PARSE = ("ml_connector.http", "ml_connector.hooks", "ml_connector.secrets", "fastapi", "cryptography",
                "alembic", "ml_connector.carriers.ups.webhook", "ml_connector.carriers.ups.hook")


def test_parsing_a_dag_file_imports_no_io_code():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "include"), str(ROOT),
                                                         os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", PARSE_IMPORTS, *(str(ROOT / "dags" / f) for f in DAG_FILES)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    added = json.loads(result.stdout.strip().splitlines()[-1])
    assert [m for m in added if m.startswith(NOT_AT_PARSE)] == []


#: the task names users know, the same in every ERP -> carrier DAG (plus the run's verdict, ``report``)
ERP_CARRIER_TASKS = {"extract_orders", "process_order.validate_address", "process_order.create_shipment",
                     "process_order.writeback", "poll_tracking", "report"}


def test_every_erp_to_carrier_dag_has_the_five_steps(parsed):
    pipelines = yaml.safe_load((ROOT / "include" / "pipelines.yaml").read_text())
    erp_carrier = [dag_id for dag_id, block in pipelines.items() if "fulfilment" not in block]
    assert len(erp_carrier) >= 4
    for dag_id in erp_carrier:
        assert set(parsed["dags"][dag_id]["pools"]) == ERP_CARRIER_TASKS, dag_id
