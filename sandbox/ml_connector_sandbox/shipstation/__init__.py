"""ShipStation sandbox: API v1 (orders, shipments, products, webhooks) and v2 labels.

* v1 (``/orders``, ``/orders/{id}``, ``/orders/createorder``, ``/shipments``, ``/products``, ``/products/{id}``,
  ``/customers``, ``/customers/{id}`` (read-only: a customer is kept for the buyer of each imported order, by
  ``customerUsername`` / ``customerEmail``), ``/webhooks``, ``/webhooks/subscribe``, ``/webhooks/{id}``): HTTP Basic with the sandbox API key and secret
  (:mod:`ml_connector_sandbox.credentials`), anything else 401. Every answer carries ``X-Rate-Limit-Limit``,
  ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Reset`` (seconds); more than ``rate_limit_per_minute`` (40)
  requests in a ``rate_window_seconds`` (60) window answer 429. Times are US Pacific clock times without an
  offset (``2026-11-01T01:30:00.0000000``), and the date filters compare clock times. ``createorder`` and
  ``PUT /products/{id}`` replace the whole object (fields not sent are cleared); shipped or cancelled orders
  cannot be updated. ``/shipments`` leaves ``shipmentItems`` null unless ``includeShipmentItems=true``.
* v2 ``POST /v2/labels``: the ``API-Key`` header (:data:`~ml_connector_sandbox.credentials.SHIPSTATION_V2_API_KEY`);
  the inline shipment must name ``service_code``, ``ship_to``, ``ship_from`` and ``packages`` (failures are
  recorded as validation errors). The vendored spec (``specs/shipstation/``) is not applied strictly: its
  ``create_label_request_body`` combines ``additionalProperties: false`` with ``allOf`` and read-only required
  fields, so it refuses every request.
* Control (``/_sandbox/shipstation/``): ``orders`` (create/replace, answers the ORDER_NOTIFY payload),
  ``orders/{id}/ship`` (SHIP_NOTIFY payload with a ``resource_url``), ``touch``, ``products``,
  ``order_queries`` (the filters of each ``GET /orders``). Payloads are
  also POSTed to the subscribed target URLs.
"""

from ml_connector_sandbox.shipstation.app import create_app
from ml_connector_sandbox.shipstation.state import ShipStationState

__all__ = ["ShipStationState", "create_app"]
