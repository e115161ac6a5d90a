"""Airflow provider metadata: registers the ``ups`` and ``business_central`` connection types.

Airflow reads this through the ``apache_airflow_provider`` entry point in ``pyproject.toml`` (only an installed
distribution can add connection types). The UI builds the connection form from ``conn-fields`` (Airflow >= 3.2)
and its "Test" button calls the hook's ``test_connection()``.
"""

from __future__ import annotations

from typing import Any

from ml_connector import __version__


def _field(label: str, description: str, *, type_: str = "string", default: Any = None,
           secret: bool = False, **schema: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": [type_, "null"], **schema}
    if default is not None:
        spec["default"] = default
    if secret:
        spec["format"] = "password"  # masked in the form and in logs
    return {"label": label, "description": description, "schema": spec}


#: The port field stays visible: the Test button of Airflow 3.3's connection list sends ``port: 0`` for a connection
#: saved without one, and the API then refuses it (HTTP 400 "The host or port to test differs from the stored
#: connection", apache/airflow#73298). The hooks use the port only when the host URL names none.
PORT_PLACEHOLDER = "443 (the host's port; the Test button needs it)"

UPS_CONNECTION = {
    "connection-type": "ups",
    "hook-class-name": "ml_connector.carriers.ups.hook.UpsHook",
    "hook-name": "UPS (OAuth)",
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "API base URL", "login": "Client ID", "password": "Client secret"},
        "placeholders": {"host": "https://onlinetools.ups.com (CIE test: https://wwwcie.ups.com)",
                         "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "account_number": _field(
            "UPS account number",
            "The 6-character shipper number: sent as x-merchant-id for the token, as ShipperNumber and "
            "BillShipper.AccountNumber on labels (negotiated rates need it).",
            pattern="^[A-Za-z0-9]{6}$",
        ),
        "label_format": _field("Label format", "GIF (default), ZPL, EPL or SPL.", default="GIF",
                               enum=["GIF", "ZPL", "EPL", "SPL", None]),
        "label_stock_height": _field("Label stock height", "4x6 (default) or 4x8 label stock.", default="6",
                                     enum=["6", "8", None]),
        "track_alert_credential": _field(
            "Track Alert credential",
            "The opaque credential UPS sends in the 'credential' header of Track Alert webhook events; the "
            "webhook endpoint compares it in constant time.",
            secret=True,
        ),
        "transaction_src": _field("transactionSrc", "Client application name sent to UPS with each call.",
                                  default="ml-connector"),
    },
}

BUSINESS_CENTRAL_CONNECTION = {
    "connection-type": "business_central",
    "hook-class-name": "ml_connector.erp.business_central.hook.BusinessCentralHook",
    "hook-name": "Dynamics 365 Business Central",
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "API host", "login": "Entra client ID", "password": "Entra client secret"},
        "placeholders": {"host": "https://api.businesscentral.dynamics.com", "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "tenant_id": _field("Tenant ID", "Microsoft Entra tenant id (GUID) or domain."),
        "environment": _field("Environment", "Business Central environment name, e.g. Production.",
                              default="Production"),
        "company_id": _field("Company ID", "The company's id (GUID) as listed by GET .../companies."),
        "authority": _field("Token authority", "Entra token host.", default="https://login.microsoftonline.com"),
        "writeback_api_publisher": _field("Write-back API publisher", "APIPublisher of the ml-connector AL "
                                          "extension page.", default="mlconnector"),
        "writeback_api_group": _field("Write-back API group", "APIGroup of the extension page.",
                                      default="shipping"),
        "writeback_api_version": _field("Write-back API version", "APIVersion of the extension page.",
                                        default="v1.0"),
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "ml-connector",
        "name": "ml-connector",
        "description": "ERP -> parcel carrier connectors (UPS, ShipStation) for Airflow 3.",
        "versions": [__version__],
        "connection-types": [UPS_CONNECTION, BUSINESS_CENTRAL_CONNECTION],
    }
