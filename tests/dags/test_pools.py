"""`make run`'s pool import (devtools import-pools): the pools of airflow_settings.yaml land in the Airflow
metadata database, and a second import resizes them."""

from __future__ import annotations

import pytest
from tests.conftest import ROOT

pytestmark = pytest.mark.xdist_group("airflow_metadata_db")


def pools_in_db() -> dict[str, tuple[int, str]]:
    from airflow.models import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        return {p.pool: (p.slots, p.description) for p in session.query(Pool).all()}


def test_import_pools_creates_the_settings_files_pools_and_resizes_them(airflow_db, tmp_path, capsys):
    from ml_connector_sandbox.devtools import main, read_pools

    assert main(["import-pools", str(ROOT / "airflow_settings.yaml")]) == 0
    in_db = pools_in_db()
    for pool in read_pools(ROOT / "airflow_settings.yaml"):
        assert in_db[pool["name"]] == (pool["slots"], pool["description"])
    assert "default_pool" in in_db  # left alone
    assert "pool ml_connector_ups: 8 slots" in capsys.readouterr().out

    resized = tmp_path / "airflow_settings.yaml"
    resized.write_text("airflow:\n  pools:\n    - {pool_name: ml_connector_ups, pool_slot: 3, "
                       "pool_description: two accounts}\n")
    assert main(["import-pools", str(resized)]) == 0
    assert pools_in_db()["ml_connector_ups"] == (3, "two accounts")
    assert main(["import-pools", str(ROOT / "airflow_settings.yaml")]) == 0
    assert pools_in_db()["ml_connector_ups"][0] == 8
