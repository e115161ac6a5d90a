"""`make bench` keeps working: a tiny run (N=5) of the real thing, scheduler, dag-processor and api-server with
LocalExecutor, against the bench sandbox. Asserts what the bench reports (success, every order labelled and
written back once, one token request per API, never more calls in flight than the budget), never how long it
took."""

from __future__ import annotations

import pytest
from bench.__main__ import summary_line
from bench.dag_run import Bench


@pytest.mark.xdist_group("bench")
def test_bench_runs_five_orders_under_the_scheduler():
    lines = []
    # a budget of 2 calls at once per API account for five one-order lanes that run at the same time: they take
    # turns through the ledger (each sandbox counts the most requests it answered at once)
    result = Bench(5, latency_ms=200, timeout=600, settings={"api_budget": 2}, log=lines.append).run()
    assert result.state == "success", lines
    assert result.duplicates == 0 and result.lost == 0
    assert result.tokens == {"ups": 1, "entra": 1}
    assert result.task_instances == 5 * 3 + 3  # one lane per order: extract, 3 steps x 5, poll, report
    assert result.calls and result.ledger_transactions > 0
    assert 1 <= result.most_in_flight["ups"] <= 2 and 1 <= result.most_in_flight["business_central"] <= 2
    # the pools of airflow_settings.yaml, created as `make run` does, hold the steps of the API they call
    assert result.task_pools == {
        "extract_orders": "ml_connector_business_central", "process_order.validate_address": "ml_connector_ups",
        "process_order.create_shipment": "ml_connector_ups", "process_order.writeback": "ml_connector_business_central",
        "poll_tracking": "ml_connector_ups", "report": "default_pool"}
    assert summary_line(result).startswith("N=5 seconds=")
    assert "duplicates=0 lost=0" in summary_line(result)
