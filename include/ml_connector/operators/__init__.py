"""Operators of an ERP -> carrier pipeline: ``extract_orders``, the ``process_order`` lane
(``validate_address`` -> ``create_shipment`` -> ``writeback``), ``poll_tracking`` and ``report``."""

from ml_connector.operators.base import RETRY_POLICY, LaneOperator, PipelineOperator, make_lanes
from ml_connector.operators.extract import ExtractOrdersOperator
from ml_connector.operators.report import ReportOperator
from ml_connector.operators.shipping import CreateShipmentOperator, ValidateAddressOperator, WritebackOperator
from ml_connector.operators.tracking import PollTrackingOperator

__all__ = [
    "RETRY_POLICY",
    "CreateShipmentOperator",
    "ExtractOrdersOperator",
    "LaneOperator",
    "PipelineOperator",
    "PollTrackingOperator",
    "ReportOperator",
    "ValidateAddressOperator",
    "WritebackOperator",
    "make_lanes",
]
