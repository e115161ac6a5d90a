"""Airflow DAG: Exact Online -> UPS: labels for goods deliveries (commercial invoice for goods leaving the EU),
tracking number and UPS status back on the goods delivery.

Settings: ``include/pipelines.yaml`` (key ``exact_online_ups``). Connections: ``exact_online_default``,
``ups_default``, ``ml_connector_ledger``. Logic: ``include/ml_connector``.
"""

from ml_connector.pipelines import erp_ups_dag

dag = erp_ups_dag("exact_online_ups")
