"""Airflow DAG: SYSPRO -> UPS: labels for documents ready to ship, then tracking number, status and shipment cost
back into SYSPRO custom form fields.

Settings: ``include/pipelines.yaml`` (key ``syspro_ups``). Connections: ``syspro_default`` (e.net REST and
OData), ``ups_default``, ``ml_connector_ledger``. Logic: ``include/ml_connector``.
"""

from ml_connector.pipelines import erp_ups_dag

dag = erp_ups_dag("syspro_ups")
