"""Airflow DAG: Acumatica -> UPS: labels for released shipments (one per package), the 1Z on each package row
and the label file attached to the shipment, delivery status back in the shipment's note.

Settings: ``include/pipelines.yaml`` (key ``acumatica_ups``). Connections: ``acumatica_default``,
``ups_default``, ``ml_connector_ledger``. Logic: ``include/ml_connector``.
"""

from ml_connector.pipelines import erp_ups_dag

dag = erp_ups_dag("acumatica_ups")
