"""Airflow DAG: a person's decision on one shipment (adopt a label found by hand, rebuy, retry a quarantine).

No schedule: trigger it from the UI's Trigger form. Same decisions as ``ml-connector shipments ...``; each one
is audited in the ledger with who and why. Logic: ``include/ml_connector/operators/resolve.py`` and
``ShipmentDecisions`` in ``include/ml_connector/service.py``.
"""

from ml_connector.operators.resolve import build_resolve_dag

dag = build_resolve_dag()
