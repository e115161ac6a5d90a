"""Routing of API v2.0 in the Business Central sandbox (tenant, environment, company, record) and the
company's reference data."""

from __future__ import annotations

import pytest
from tests.sandbox.business_central.client import COMPANY_ID, VENDOR, odata_code

from ml_connector.erp.business_central import mapping as bc


@pytest.mark.parametrize("url_kwargs,path,code", [
    ({"tenant": "other-tenant"}, "companies", "BadRequest_NotFound"),
    ({"environment": "Sandbox"}, "companies", "BadRequest_NotFound"),
    ({}, "companies(11111111-2222-3333-4444-555555555555)/salesOrders", "Internal_CompanyNotFound"),
    ({"api": "contoso/shipping/v1.0"}, f"companies({COMPANY_ID})/salesOrderShipping", "BadRequest_NotFound"),
    ({}, f"companies({COMPANY_ID})/salesOrders(11111111-2222-3333-4444-555555555555)", "Internal_RecordNotFound"),
])
def test_wrong_tenant_environment_company_or_record_is_an_odata_404(bc_api, url_kwargs, path, code):
    response = bc_api.get(bc_api.api_url(path, **url_kwargs))
    assert response.status_code == 404
    assert odata_code(response) == code and response.json()["error"]["message"]


def test_url_without_tenant_segment_is_served(bc_api):
    response = bc_api.get(bc_api.api_url("companies", tenant=None))
    assert response.status_code == 200 and response.json()["value"][0]["id"] == COMPANY_ID


def test_company_and_company_information_are_the_ship_from(bc_api):
    company = bc_api.get(f"companies({COMPANY_ID})").json()
    assert company["name"] == "CRONUS USA, Inc."
    info = bc_api.get(f"companies({COMPANY_ID})/companyInformation").json()["value"][0]
    ship_from = bc.address_from_company_information(info)
    assert (ship_from.city, ship_from.state, ship_from.country) == ("Emeryville", "CA", "US")


def test_items_have_no_weight_and_shipment_methods_are_code10(bc_api):
    items = bc_api.get(f"companies({COMPANY_ID})/items", **{"$top": "50"},
                       headers=bc_api.headers(Prefer="odata.maxpagesize=50")).json()["value"]
    assert {"1896-S", "1900-S"} <= {item["number"] for item in items}
    assert all("weight" not in key.lower() for item in items for key in item)
    assert all(item["baseUnitOfMeasureCode"] == "PCS" for item in items)
    methods = bc_api.all_pages(bc_api.get(f"companies({COMPANY_ID})/shipmentMethods"))
    codes = {m["code"] for page in methods for m in page["value"]}
    assert {"GROUND", "NDA", "2DA", "3DS", "STANDARD", "PICKUP", "PIGEON"} <= codes
    assert all(len(code) <= 10 for code in codes)


def test_an_unknown_route_is_authenticated_first_then_an_odata_404(sandbox, bc_api):
    url = bc_api.api_url(f"companies({COMPANY_ID})/purchaseInvoices")  # not served (customers now are)
    assert bc_api.get(url, headers={"Accept": "application/json"}).status_code == 401
    response = bc_api.get(url)
    assert response.status_code == 404 and odata_code(response) == "BadRequest_NotFound"
    assert sandbox.counters(VENDOR)["auth_failures"] == 1


@pytest.mark.parametrize("path", ["companies", f"companies({COMPANY_ID})/items",
                                  f"companies({COMPANY_ID})/shipmentMethods"])
def test_writing_to_a_read_only_resource_is_an_odata_405(bc_api, path):
    response = bc_api.session.post(bc_api.api_url(path), json={}, headers=bc_api.headers(), timeout=10)
    assert response.status_code == 405 and odata_code(response) == "BadRequest_MethodNotAllowed"
