"""Airflow DAG: Dynamics 365 Business Central -> UPS: labels for released sales orders, 1Z back on the order.

Settings: ``include/pipelines.yaml`` (key ``business_central_ups``). Connections: ``business_central_default``,
``ups_default``, ``ml_connector_ledger``. Logic: ``include/ml_connector``.
"""

from ml_connector.pipelines import erp_ups_dag

dag = erp_ups_dag("business_central_ups")
