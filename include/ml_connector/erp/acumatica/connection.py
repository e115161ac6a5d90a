"""The ``acumatica`` connection type: the form the Airflow UI shows for ``acumatica_default``."""

from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "Tenant URL", "login": "API user", "password": "API user password"},
        "placeholders": {"host": "https://acme.acumatica.com", "login": "ml-connector-api",
                         "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "endpoint_name": field("Endpoint name", "Web service endpoint (Web Service Endpoints, SM207060).",
                               default="Default"),
        "endpoint_version": field("Endpoint version", "Exact endpoint version on this instance, e.g. 24.200.001; "
                                  "a version the instance lacks answers 404 (the Test button lists the offered "
                                  "ones).", default="24.200.001"),
        "tenant": field("Tenant", "Tenant (company) login name; leave empty on a single-tenant instance."),
        "branch": field("Branch", "Branch to sign in to (optional)."),
        "client_id": field("OAuth client ID", "Optional: a Connected Application (SM303010) client; then requests "
                           "carry a bearer token (password grant with the API user) instead of a cookie session."),
        "client_secret": field("OAuth client secret", "The Connected Application's secret.", secret=True),
        "page_size": field("Page size", "Shipments per page ($top).", default="100"),
        "push_header_name": field("Push notification header name", "Header Name set on the Acumatica push "
                                  "notification (SM302000).", default="X-ML-Connector-Token"),
        "push_header_value": field("Push notification header value", "Header Value set on the push "
                                   "notification: the shared secret the webhook compares in constant time. "
                                   "Empty: push notifications are refused.", secret=True),
    },
}
