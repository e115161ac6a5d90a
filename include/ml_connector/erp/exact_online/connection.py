"""The ``exact_online`` connection type: the form the Airflow UI shows for ``exact_online_default``."""

from ml_connector.connection_forms import PORT_PLACEHOLDER, field

#: Exact Online's region sites: the API of a company lives on the site of the country its licence was bought in.
REGION_HOSTS = {
    "nl": "https://start.exactonline.nl",
    "be": "https://start.exactonline.be",
    "de": "https://start.exactonline.de",
    "co.uk": "https://start.exactonline.co.uk",
    "com": "https://start.exactonline.com",
    "fr": "https://start.exactonline.fr",
    "es": "https://start.exactonline.es",
}

#: the form; connection type, hook class and name come from :mod:`ml_connector.registry`
CONNECTION_FORM = {
    "ui-field-behaviour": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "Region base URL", "login": "Client ID", "password": "Client secret"},
        "placeholders": {"host": "https://start.exactonline.de (or choose the region below)",
                         "port": PORT_PLACEHOLDER},
    },
    "conn-fields": {
        "region": field("Region", "The Exact Online site of the company (used when Host is empty): "
                                  + ", ".join(REGION_HOSTS) + ".", enum=[*REGION_HOSTS, None]),
        "division": field("Division", "The division (company) number sent on every call; empty = the user's "
                                      "current division (current/Me CurrentDivision)."),
        "refresh_token": field("Refresh token", "The refresh token of the first authorization (`ml-connector "
                                                "exact-online authorize`). ml-connector stores and rotates it in "
                                                "its ledger from then on.", secret=True),
        "redirect_uri": field("Redirect URI", "The app's redirect URI in the Exact App Center (used by the "
                                              "authorize command)."),
        "webhook_secret": field("Webhook secret", "The app's webhook secret from the Exact App Center (checks "
                                                  "the HashCode of webhook calls).", secret=True),
    },
}
