"""The only credentials the sandboxes accept, one pair per vendor (the values in ``airflow_settings.yaml``).

A sandbox refuses every other client id or secret with the vendor's own answer, so a wrong secret in a
connection fails against the sandbox exactly as it fails against the vendor:

- UPS OAuth (``POST /security/v1/oauth/token``): :data:`UPS_CLIENT_ID` / :data:`UPS_CLIENT_SECRET`;
  anything else is HTTP 401 ``{"response": {"errors": [{"code": "10401", "message": "ClientId is Invalid"}]}}``.
- Microsoft Entra for Business Central (``POST /{tenant}/oauth2/v2.0/token``): :data:`BUSINESS_CENTRAL_CLIENT_ID`
  / :data:`BUSINESS_CENTRAL_CLIENT_SECRET`; an unknown client id is HTTP 400 ``unauthorized_client``
  (AADSTS700016), a wrong secret HTTP 401 ``invalid_client`` (AADSTS7000215).

Test code imports these constants instead of repeating the strings; to exercise a refusal, use any other value.
"""

from __future__ import annotations

#: UPS app ("Client ID" / "Client Secret" of an app at developer.ups.com): the ``ups_default`` login / password.
UPS_CLIENT_ID = "sandbox-client-id"
UPS_CLIENT_SECRET = "sandbox-client-secret"

#: Microsoft Entra app registration (client id / client secret value): the ``business_central_default`` login /
#: password.
BUSINESS_CENTRAL_CLIENT_ID = "sandbox-entra-client-id"
BUSINESS_CENTRAL_CLIENT_SECRET = "sandbox-entra-client-secret"

#: Acumatica API user (the ``acumatica_default`` login / password) and its tenant; anything else is refused at
#: ``POST /entity/auth/login`` with HTTP 401 "Invalid credentials".
ACUMATICA_USERNAME = "sandbox-api-user"
ACUMATICA_PASSWORD = "sandbox-api-password"
ACUMATICA_TENANT = "RevisionTwo"
#: an OAuth client (Connected Applications) of the Acumatica sandbox: ``POST /identity/connect/token``
ACUMATICA_OAUTH_CLIENT_ID = "sandbox-oauth-client@RevisionTwo"
ACUMATICA_OAUTH_CLIENT_SECRET = "sandbox-oauth-secret"
#: Exact Online app (App Center "Client ID" / "Client secret"): the ``exact_online_default`` login / password;
#: anything else is HTTP 401 ``invalid_client`` from ``POST /api/oauth2/token``.
EXACT_ONLINE_CLIENT_ID = "sandbox-exact-client-id"
EXACT_ONLINE_CLIENT_SECRET = "sandbox-exact-client-secret"
#: SYSPRO e.net operator (the ``syspro_default`` login / password); the OData service's Basic credentials and the
#: company are in ``syspro/seed.json`` (company ``EDU1``, ``sandbox-odata-user`` / ``sandbox-odata-password``).
SYSPRO_OPERATOR = "sandbox-operator"
SYSPRO_OPERATOR_PASSWORD = "sandbox-operator-password"

#: ShipStation: v1 API Key / API Secret (``shipstation_default`` login / password, sent as HTTP Basic); anything
#: else is HTTP 401 from every v1 route. v2 (labels) takes the ``API-Key`` header :data:`SHIPSTATION_V2_API_KEY`
#: (extra ``v2_api_key``). The webhook URL token is a connection extra, not a sandbox credential.
SHIPSTATION_API_KEY = "sandbox-shipstation-key"
SHIPSTATION_API_SECRET = "sandbox-shipstation-secret"
SHIPSTATION_V2_API_KEY = "sandbox-shipstation-v2-key"

#: vendor -> (client id, client secret), for code that handles every vendor alike (devtools, tests).
SANDBOX_CREDENTIALS: dict[str, tuple[str, str]] = {
    "ups": (UPS_CLIENT_ID, UPS_CLIENT_SECRET),
    "business_central": (BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET),
    "acumatica": (ACUMATICA_USERNAME, ACUMATICA_PASSWORD),
    "exact_online": (EXACT_ONLINE_CLIENT_ID, EXACT_ONLINE_CLIENT_SECRET),
    "syspro": (SYSPRO_OPERATOR, SYSPRO_OPERATOR_PASSWORD),
    "shipstation": (SHIPSTATION_API_KEY, SHIPSTATION_API_SECRET),
}
