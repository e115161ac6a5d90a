"""Pure field mappings per ERP: ERP document -> canonical :class:`ml_connector.models.Order`, and
tracking/status -> the ERP's write-back body. Nothing in this package does I/O; hooks fetch, these map.
"""
