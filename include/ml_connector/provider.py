"""Airflow provider metadata: registers a connection type for every vendor in :mod:`ml_connector.registry`.

Airflow reads this through the ``apache_airflow_provider`` entry point in ``pyproject.toml`` (only an installed
distribution can add connection types). The UI builds the connection form from ``conn-fields`` (Airflow >= 3.2)
and its "Test" button calls the hook's ``test_connection()``. Each form lives in its vendor package
(``connection.py``); the connection type, hook class and name come from the registry.
"""

from __future__ import annotations

from typing import Any

from ml_connector import __version__, registry
from ml_connector.connection_forms import TRANSPORT_FIELDS


def connection_type(vendor: registry.Vendor) -> dict[str, Any]:
    """The provider-info entry of one vendor's connection type."""
    form = vendor.load("connection_form")
    return {
        "connection-type": vendor.conn_type,
        "hook-class-name": vendor.hook,
        "hook-name": vendor.display_name,
        **form,
        "conn-fields": {**form["conn-fields"], **TRANSPORT_FIELDS},
    }


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "ml-connector",
        "name": "ml-connector",
        "description": "ERP -> parcel carrier connectors (UPS, ShipStation) for Airflow 3.",
        "versions": [__version__],
        "connection-types": [connection_type(vendor) for vendor in registry.vendors()],
    }
