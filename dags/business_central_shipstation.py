"""Airflow DAG: Dynamics 365 Business Central <-> ShipStation: items out as products by SKU, shipped orders back as
posted sales invoices with tracking.

Settings: ``include/pipelines.yaml`` (key ``business_central_shipstation``). Connections:
``business_central_default``, ``shipstation_default``, ``ml_connector_ledger``. Logic:
``include/ml_connector/fulfilment/shipstation``.
"""

from ml_connector.fulfilment.shipstation.pipeline import fulfilment_dag

dag = fulfilment_dag("business_central_shipstation")
