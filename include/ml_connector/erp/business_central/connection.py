"""The ``business_central`` connection type: the form the Airflow UI shows for ``business_central_default``."""

from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "API host", "login": "Entra client ID", "password": "Entra client secret"},
        "placeholders": {"host": "https://api.businesscentral.dynamics.com", "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "tenant_id": field("Tenant ID", "Microsoft Entra tenant id (GUID) or domain."),
        "environment": field("Environment", "Business Central environment name, e.g. Production.",
                              default="Production"),
        "company_id": field("Company ID", "The company's id (GUID) as listed by GET .../companies."),
        "authority": field("Token authority", "Entra token host.", default="https://login.microsoftonline.com"),
        "writeback_api_publisher": field("Write-back API publisher", "APIPublisher of the ml-connector AL "
                                          "extension page.", default="mlconnector"),
        "writeback_api_group": field("Write-back API group", "APIGroup of the extension page.",
                                      default="shipping"),
        "writeback_api_version": field("Write-back API version", "APIVersion of the extension page.",
                                        default="v1.0"),
    },
}
