"""The ``syspro`` connection type: the form the Airflow UI shows for ``syspro_default``.

One connection holds both SYSPRO services: the e.net REST session (host, operator, company) and the OData
service (``odata_url`` and its Basic credentials), so that one Test checks both.
"""

from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "e.net REST base URL", "login": "SYSPRO operator", "password": "Operator password"},
        "placeholders": {"host": "https://syspro.example.com:40000/SYSPROWCFService/Rest", "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "company_id": field("Company ID", "The SYSPRO company the operator logs on to."),
        "company_password": field("Company password", "Only if the company has a password.", secret=True),
        "odata_url": field("OData service URL", "Base URL of the SYSPRO OData service (its entity sets are "
                                                 "under it), e.g. https://syspro.example.com/SYSPRO8OData."),
        "odata_user": field("OData user", "User of the OData service's HTTP Basic authentication."),
        "odata_password": field("OData password", "Password of the OData service's Basic authentication.",
                                secret=True),
        "page_size": field("OData page size", "Optional Prefer: odata.maxpagesize."),
        "max_url_length": field("Max URL length", "e.net takes XML in the query string; longer requests fail "
                                                  "with a clear error instead of being cut (IIS default 2048).",
                                default="2048"),
        "session_expired_pattern": field("Session-expired pattern", "Regular expression over an ERROR answer that "
                                         "means the session expired (then one new logon and one retry)."),
        "licence_limit_pattern": field("Licence-limit pattern", "Regular expression over a Logon ERROR answer that "
                                       "means no free e.net licence seat (retried later)."),
    },
}
