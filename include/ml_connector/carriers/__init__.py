"""Carrier mappings: pure functions between the canonical records (:mod:`ml_connector.models`) and each
carrier's request and response bodies. No I/O here; the hooks (:mod:`ml_connector.hooks`) do the HTTP."""
