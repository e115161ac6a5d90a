"""Acumatica (contract-based REST API, Default endpoint) -> carrier: released shipments in, the tracking number
per package, the label file and the delivery status back on the shipment."""
