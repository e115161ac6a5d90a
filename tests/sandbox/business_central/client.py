"""A small Business Central client for the sandbox tests (just enough HTTP to exercise it as the hook will)."""

from __future__ import annotations

import requests

from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

VENDOR = "business_central"
TENANT = "sandbox-tenant"
ENVIRONMENT = "Production"
COMPANY_ID = "4d56a68f-946e-47f8-9a1f-e90c39dc4d37"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
OPEN_NUMBERS = {f"S-ORD1010{n:02d}" for n in range(1, 12)} | {"S-ORD101014"}
DRAFT_NUMBERS = {"S-ORD101012", "S-ORD101013"}


class Client:
    """Just enough HTTP to exercise the sandbox the way the hook will."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.token: str | None = None

    def token_response(self, **form) -> requests.Response:
        data = {"grant_type": "client_credentials", "client_id": BUSINESS_CENTRAL_CLIENT_ID,
                "client_secret": BUSINESS_CENTRAL_CLIENT_SECRET, "scope": SCOPE, **form}
        tenant = data.pop("tenant", TENANT)
        return self.session.post(f"{self.base}/{tenant}/oauth2/v2.0/token", data=data, timeout=10)

    def fetch_token(self) -> str:
        response = self.token_response()
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def api_url(self, path: str, *, tenant: str | None = TENANT, environment: str = ENVIRONMENT,
                api: str = "v2.0") -> str:
        prefix = f"/v2.0/{tenant}" if tenant else "/v2.0"
        return f"{self.base}{prefix}/{environment}/api/{api}/{path}"

    def headers(self, **extra) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def get(self, url: str, *, headers: dict | None = None, **params) -> requests.Response:
        if not url.startswith("http"):
            url = self.api_url(url)
        return self.session.get(url, params=params or None, headers=headers or self.headers(), timeout=10)

    def sales_orders(self, **params) -> requests.Response:
        return self.get(f"companies({COMPANY_ID})/salesOrders", **params)

    def all_pages(self, first: requests.Response, headers: dict | None = None) -> list[dict]:
        """Follow @odata.nextLink; return the pages' bodies."""
        pages = [first.json()]
        while "@odata.nextLink" in pages[-1]:
            response = self.get(pages[-1]["@odata.nextLink"], headers=headers)
            assert response.status_code == 200, response.text
            pages.append(response.json())
        return pages

    def shipping_url(self, order_id: str) -> str:
        return self.api_url(f"companies({COMPANY_ID})/salesOrderShipping({order_id})",
                            api="mlconnector/shipping/v1.0")

    def order_id(self, number: str) -> str:
        response = self.sales_orders(**{"$filter": f"number eq '{number}'"})
        return response.json()["value"][0]["id"]


def odata_code(response: requests.Response) -> str:
    return response.json()["error"]["code"]

