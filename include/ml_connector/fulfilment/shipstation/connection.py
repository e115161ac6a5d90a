"""The ``shipstation`` connection type: the form the Airflow UI shows for ``shipstation_default``."""

from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "v1 API base URL", "login": "API Key", "password": "API Secret"},
        "placeholders": {"host": "https://ssapi.shipstation.com", "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "v2_url": field("v2 API base URL", "ShipStation API v2 (labels), without /v2.",
                        default="https://api.shipstation.com"),
        "v2_api_key": field("v2 API key", "Sent as the API-Key header of v2 calls (labels).", secret=True),
        "webhook_token": field("Webhook URL token", "The unguessable secret at the end of the webhook URL "
                               "registered in ShipStation (.../ml-connector/webhooks/shipstation/<token>); "
                               "ShipStation does not sign its webhooks, so this token is the only check.",
                               secret=True),
        "calls_per_minute": field("Calls per minute", "ShipStation v1's limit per API key.", default="40"),
        "rate_share": field("Share of the limit", "Part of the per-minute limit this connector may use (the "
                            "key's other integrations keep the rest), between 0 and 1.", default="1.0"),
    },
}
