"""SYSPRO ready-to-ship documents -> UPS labels; tracking number, status and shipment cost back into SYSPRO custom
form fields. Settings: the ``syspro_ups`` block of ``include/pipelines.yaml``."""

from ml_connector.pipelines import erp_ups_dag

dag = erp_ups_dag("syspro_ups")
