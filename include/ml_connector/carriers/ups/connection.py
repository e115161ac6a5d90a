"""The ``ups`` connection type: the form the Airflow UI shows for ``ups_default``."""

from ml_connector.carriers.ups.rules import SHIPPER_NUMBER_PATTERN
from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "API base URL", "login": "Client ID", "password": "Client secret"},
        "placeholders": {"host": "https://onlinetools.ups.com (CIE test: https://wwwcie.ups.com)", "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "account_number": field(
            "UPS account number",
            "The 6-character shipper number: sent as x-merchant-id for the token, as ShipperNumber and "
            "BillShipper.AccountNumber on labels (negotiated rates need it).",
            pattern=SHIPPER_NUMBER_PATTERN,
        ),
        "label_format": field("Label format", "GIF (default), ZPL, EPL or SPL.", default="GIF",
                               enum=["GIF", "ZPL", "EPL", "SPL", None]),
        "label_stock_height": field("Label stock height", "4x6 (default) or 4x8 label stock.", default="6",
                                     enum=["6", "8", None]),
        "track_alert_credential": field(
            "Track Alert credential",
            "The opaque credential UPS sends in the 'credential' header of Track Alert webhook events; the "
            "webhook endpoint compares it in constant time.",
            secret=True,
        ),
        "track_alert_token_client_id": field(
            "Track Alert v2 token client id",
            "Track Alert v2: the client id you registered in the UPS portal for your token URL "
            "(/ml-connector/webhooks/ups/oauth/token); UPS fetches a bearer token there before posting events.",
        ),
        "track_alert_token_client_secret": field(
            "Track Alert v2 token client secret",
            "Track Alert v2: the client secret registered with it (HTTP Basic at the token URL).",
            secret=True,
        ),
        "transaction_src": field("transactionSrc", "Client application name sent to UPS with each call.",
                                  default="ml-connector"),
    },
}
