"""Business Central sandbox over real HTTP: Entra tokens, API v2.0 reads and paging, the write-back page.

One sandbox process serves the whole module; every test starts from a reset (seed reloaded, knobs and
counters back to defaults).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from ml_connector.erp.business_central import mapping as bc
from ml_connector_sandbox.testing import SandboxServer

VENDOR = "business_central"
TENANT = "sandbox-tenant"
ENVIRONMENT = "Production"
COMPANY_ID = "4d56a68f-946e-47f8-9a1f-e90c39dc4d37"
SCOPE = "https://api.businesscentral.dynamics.com/.default"
OPEN_NUMBERS = {f"S-ORD1010{n:02d}" for n in range(1, 12)} | {"S-ORD101014"}
DRAFT_NUMBERS = {"S-ORD101012", "S-ORD101013"}


@pytest.fixture(scope="module")
def sandbox():
    with SandboxServer(vendors=[VENDOR]) as server:
        yield server


@pytest.fixture
def bc_api(sandbox):
    """A small client for one test: fresh sandbox state, one token."""
    sandbox.reset(VENDOR)
    client = Client(sandbox.url(VENDOR))
    client.token = client.fetch_token()
    yield client
    client.session.close()


class Client:
    """Just enough HTTP to exercise the sandbox the way the hook will."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.token: str | None = None

    def token_response(self, **form) -> requests.Response:
        data = {"grant_type": "client_credentials", "client_id": "ml-connector", "client_secret": "s3cret",
                "scope": SCOPE, **form}
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


# -- Entra token endpoint -----------------------------------------------------------------------------


def test_token_expires_in_follows_the_knob_and_is_counted(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, token_ttl_seconds=120)
    body = bc_api.token_response().json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120 and body["ext_expires_in"] == 120
    assert body["access_token"]
    assert sandbox.counters(VENDOR)["tokens_issued"] == 2  # the fixture's and this one


def test_wrong_secret_is_invalid_client(bc_api):
    response = bc_api.token_response(client_secret="wrong-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"].startswith("AADSTS7000215: Invalid client secret provided")


@pytest.mark.parametrize("form,status,error", [
    ({"scope": "https://graph.microsoft.com/.default"}, 400, "invalid_scope"),
    ({"scope": ""}, 400, "invalid_request"),
    ({"grant_type": "password"}, 400, "unsupported_grant_type"),
    ({"client_id": ""}, 400, "invalid_request"),
    ({"client_secret": ""}, 401, "invalid_client"),
    ({"tenant": "other-tenant"}, 400, "invalid_request"),
])
def test_token_request_errors_use_the_entra_shape(bc_api, form, status, error):
    response = bc_api.token_response(**form)
    assert response.status_code == status
    assert response.json()["error"] == error and response.json()["error_description"].startswith("AADSTS")


def test_client_secret_basic_is_accepted_too(bc_api):
    response = bc_api.session.post(f"{bc_api.base}/{TENANT}/oauth2/v2.0/token",
                                   data={"grant_type": "client_credentials", "scope": SCOPE},
                                   auth=("ml-connector", "s3cret"), timeout=10)
    assert response.status_code == 200


# -- authentication and routing ---------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-issued-here", "Basic dXNlcjpwYXNz"])
def test_api_needs_a_token_issued_by_the_sandbox(sandbox, bc_api, authorization):
    # A non-empty dict, so that the client does not add its own token.
    headers = {"Authorization": authorization} if authorization else {"Accept": "application/json"}
    response = bc_api.get("companies", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "Authentication_InvalidCredentials",
                                         "message": "The credentials provided are incorrect"}}
    assert sandbox.counters(VENDOR)["auth_failures"] == 1


def test_expired_token_is_refused_and_a_new_one_works(sandbox, bc_api):
    assert bc_api.get("companies").status_code == 200
    sandbox.set_knobs(VENDOR, clock_offset_seconds=3600.0)  # past the default 3599 s lifetime
    assert bc_api.get("companies").status_code == 401
    bc_api.token = bc_api.fetch_token()
    assert bc_api.get("companies").status_code == 200


def test_expire_all_tokens_knob_expires_issued_tokens(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, expire_all_tokens=True)
    assert bc_api.get("companies").status_code == 401
    assert sandbox.knobs(VENDOR)["expire_all_tokens"] is False


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


# -- salesOrders: paging and $filter ----------------------------------------------------------------


def test_released_orders_come_in_server_pages_with_absolute_next_links(sandbox, bc_api):
    first = bc_api.sales_orders(**{"$filter": "status eq 'Open'", "$expand": "salesOrderLines,shipmentMethod"})
    assert first.status_code == 200
    pages = bc_api.all_pages(first)
    assert len(pages) >= 3 and all(len(page["value"]) <= 2 for page in pages)
    for page in pages[:-1]:
        link = urlsplit(page["@odata.nextLink"])
        assert link.scheme == "http" and "$skiptoken" in parse_qs(link.query)
        assert parse_qs(link.query)["$filter"] == ["status eq 'Open'"]  # the link keeps the query
    orders = [order for page in pages for order in page["value"]]
    numbers = [order["number"] for order in orders]
    assert set(numbers) == OPEN_NUMBERS and len(numbers) == len(set(numbers))
    assert all(order["salesOrderLines"] and "shipmentMethod" in order for order in orders)
    assert pages[0]["@odata.context"].endswith(f"/api/v2.0/$metadata#companies({COMPANY_ID})/salesOrders")
    assert sandbox.counters(VENDOR)["sales_order_pages_served"] == len(pages)


def test_page_size_knob_and_prefer_maxpagesize(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, page_size=5)
    assert len(bc_api.sales_orders().json()["value"]) == 5
    response = bc_api.get(f"companies({COMPANY_ID})/salesOrders",
                          headers=bc_api.headers(Prefer="odata.maxpagesize=3"))
    assert len(response.json()["value"]) == 3
    assert response.headers["Preference-Applied"] == "odata.maxpagesize=3"


def test_top_limits_the_total_across_pages(bc_api):
    pages = bc_api.all_pages(bc_api.sales_orders(**{"$top": "3", "$filter": "status eq 'Open'"}))
    assert [len(page["value"]) for page in pages] == [2, 1]


def test_draft_orders_are_not_released(bc_api):
    drafts = bc_api.all_pages(bc_api.sales_orders(**{"$filter": "status eq 'Draft'"}))
    assert {o["number"] for page in drafts for o in page["value"]} == DRAFT_NUMBERS
    everything = bc_api.all_pages(bc_api.sales_orders())
    assert {o["number"] for page in everything for o in page["value"]} == OPEN_NUMBERS | DRAFT_NUMBERS


def test_connector_filter_selects_released_orders_of_a_half_open_window(sandbox, bc_api):
    start = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
    for number, at in (("S-ORD101001", "2026-11-01T10:00:00Z"),       # on the start: in
                       ("S-ORD101002", "2026-11-01T10:14:59.999Z"),   # just before the end: in
                       ("S-ORD101003", "2026-11-01T10:15:00Z"),       # on the end: out (next interval)
                       ("S-ORD101004", "2026-11-01T09:59:59.999Z"),   # before: out
                       ("S-ORD101012", "2026-11-01T10:05:00Z")):      # Draft: out
        sandbox.control(VENDOR, "POST", "business_central/touch", {"number": number, "modified_at": at})
    filter_text = bc.sales_orders_filter(start, start + timedelta(minutes=15))
    pages = bc_api.all_pages(bc_api.sales_orders(**{"$filter": filter_text}))
    assert {o["number"] for page in pages for o in page["value"]} == {"S-ORD101001", "S-ORD101002"}


def test_last_day_window_finds_recent_released_orders_but_not_older_ones(bc_api):
    now = datetime.now(UTC)
    filter_text = bc.sales_orders_filter(now - timedelta(days=1), now + timedelta(minutes=5))
    pages = bc_api.all_pages(bc_api.sales_orders(**{"$filter": filter_text, "$expand": "salesOrderLines"}))
    assert {o["number"] for page in pages for o in page["value"]} == OPEN_NUMBERS - {"S-ORD101011"}


@pytest.mark.parametrize("filter_text,fragment", [
    ("lastModifiedDateTime ge '2026-11-01T00:00:00Z'", "incompatible types"),
    ("status eq Open", "Could not find a property named 'Open'"),
    ("status eq 'Released'", "not valid for property 'status'"),
    ("shippingAgentCode eq 'UPS'", "Could not find a property named 'shippingAgentCode'"),
    ("contains(number,'101')", "function 'contains'"),
    ("status eq 'Open' and", "unexpected end"),
    ("not status eq 'Open'", "'not' is not supported"),
    ("status eq 'Open' xor number eq 'S'", "Syntax error at 'xor'"),
])
def test_unsupported_or_wrong_filters_are_odata_400s(bc_api, filter_text, fragment):
    response = bc_api.sales_orders(**{"$filter": filter_text})
    assert response.status_code == 400
    assert odata_code(response) == "BadRequest" and fragment in response.json()["error"]["message"]


def test_filter_with_brackets_and_or(bc_api):
    text = "(number eq 'S-ORD101001' or number eq 'S-ORD101012') and status eq 'Open'"
    assert [o["number"] for o in bc_api.sales_orders(**{"$filter": text}).json()["value"]] == ["S-ORD101001"]


def test_expand_is_needed_for_lines_and_shipment_method(bc_api):
    order = bc_api.sales_orders().json()["value"][0]
    assert "salesOrderLines" not in order and "shipmentMethod" not in order
    assert odata_code(bc_api.sales_orders(**{"$expand": "salesOrderLines($expand=item)"})) == "BadRequest"


def test_single_order_maps_to_the_canonical_order(bc_api):
    order_id = bc_api.order_id("S-ORD101002")
    response = bc_api.get(f"companies({COMPANY_ID})/salesOrders({order_id})",
                          **{"$expand": "salesOrderLines,shipmentMethod"})
    assert response.headers["ETag"] == response.json()["@odata.etag"]
    order = bc.order_from_sales_order(response.json(), default_weight_per_unit=None,
                                      item_weights={"1896-S": 88, "1908-S": 31})
    assert order.erp_id == order_id and order.ship_method == "NDA"
    assert order.etag.startswith('W/"')


# -- write-back page ----------------------------------------------------------------------------------


def test_patch_writes_tracking_and_changes_both_etags(sandbox, bc_api):
    order_id = bc_api.order_id("S-ORD101001")
    order_url = bc_api.api_url(f"companies({COMPANY_ID})/salesOrders({order_id})")
    before = bc_api.get(order_url).json()
    entity = bc_api.get(bc_api.shipping_url(order_id)).json()
    assert entity["packageTrackingNo"] == "" and entity["mlDeliveredAt"] == "0001-01-01T00:00:00Z"
    body = bc.tracking_patch("1Z999AA10123456784", service_code="GROUND", status="label_created")
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json=body,
                                    headers=bc_api.headers(**{"If-Match": entity["@odata.etag"]}), timeout=10)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["packageTrackingNo"], updated["shippingAgentCode"], updated["shippingAgentServiceCode"],
            updated["mlShipmentStatus"]) == ("1Z999AA10123456784", "UPS", "GROUND", "label_created")
    assert updated["@odata.etag"] != entity["@odata.etag"]
    after = bc_api.get(order_url).json()
    assert after["@odata.etag"] != before["@odata.etag"]
    assert bc.parse_datetime(after["lastModifiedDateTime"]) > bc.parse_datetime(before["lastModifiedDateTime"])
    assert sandbox.counters(VENDOR)["patches"] == 1
    overview = {o["number"]: o for o in sandbox.control(VENDOR, "GET", "business_central/orders")}
    assert overview["S-ORD101001"]["packageTrackingNo"] == "1Z999AA10123456784"


def test_patch_without_if_match_is_a_400(bc_api):
    order_id = bc_api.order_id("S-ORD101001")
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json={"packageTrackingNo": "1Z1"},
                                    headers=bc_api.headers(), timeout=10)
    assert response.status_code == 400 and odata_code(response) == "BadRequest_InvalidToken"
    assert "Could not validate the client concurrency token" in response.json()["error"]["message"]


def test_stale_etag_is_412_and_a_reread_succeeds(sandbox, bc_api):
    order_id = bc_api.order_id("S-ORD101004")
    stale = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
    sandbox.control(VENDOR, "POST", "business_central/touch", {"number": "S-ORD101004"})  # someone edits it
    patch = {"packageTrackingNo": "1Z999AA10123456785"}
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json=patch,
                                    headers=bc_api.headers(**{"If-Match": stale}), timeout=10)
    assert response.status_code == 412
    assert response.json() == {"error": {"code": "Request_EntityChanged",
                                         "message": "Another user has already changed the record."}}
    fresh = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
    retry = bc_api.session.patch(bc_api.shipping_url(order_id), json=patch,
                                 headers=bc_api.headers(**{"If-Match": fresh}), timeout=10)
    assert retry.status_code == 200
    assert sandbox.counters(VENDOR)["etag_conflicts"] == 1


def test_sales_order_etag_is_not_the_write_back_page_etag(bc_api):
    order_id = bc_api.order_id("S-ORD101001")
    sales_order_etag = bc_api.sales_orders(**{"$filter": "number eq 'S-ORD101001'"}).json()["value"][0][
        "@odata.etag"]
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json={"packageTrackingNo": "1Z1"},
                                    headers=bc_api.headers(**{"If-Match": sales_order_etag}), timeout=10)
    assert response.status_code == 412


def test_etag_conflict_knob_forces_a_reread(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, etag_conflict_next=2)
    order_id = bc_api.order_id("S-ORD101010")
    patch = bc.tracking_patch("1Z999AA10123456786", service_code="GROUND")
    statuses, etags = [], []
    for _ in range(3):
        etag = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
        etags.append(etag)
        response = bc_api.session.patch(bc_api.shipping_url(order_id), json=patch,
                                        headers=bc_api.headers(**{"If-Match": etag}), timeout=10)
        statuses.append(response.status_code)
    assert statuses == [412, 412, 200]
    assert len(set(etags)) == 3  # every conflict bumped the record, as another user's save would
    counters = sandbox.counters(VENDOR)
    assert counters["etag_conflicts"] == 2 and counters["patches"] == 1


@pytest.mark.parametrize("patch,status,code", [
    ({"packageTrackingNo": "1Z" + "9" * 49}, 400, "Application_StringExceededLength"),
    ({"shippingAgentCode": "DHL"}, 400, "Application_DialogException"),
    ({"shippingAgentCode": "UPS", "shippingAgentServiceCode": "WORLDWIDE"}, 400, "Application_DialogException"),
    ({"trackingNumber": "1Z1"}, 400, "BadRequest"),
    ({"number": "X"}, 400, "BadRequest"),
    ({"mlDeliveredAt": "yesterday"}, 400, "BadRequest"),
])
def test_patch_values_are_validated_like_the_al_page(bc_api, patch, status, code):
    order_id = bc_api.order_id("S-ORD101001")
    etag = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json=patch,
                                    headers=bc_api.headers(**{"If-Match": etag}), timeout=10)
    assert response.status_code == status and odata_code(response) == code


def test_new_agent_clears_the_service_unless_one_is_sent(bc_api):
    order_id = bc_api.order_id("S-ORD101001")

    def patch(body):
        etag = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
        response = bc_api.session.patch(bc_api.shipping_url(order_id), json=body,
                                        headers=bc_api.headers(**{"If-Match": etag}), timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    assert patch({"shippingAgentCode": "ups", "shippingAgentServiceCode": "ground"})[
        "shippingAgentServiceCode"] == "GROUND"
    assert patch({"shippingAgentCode": "FEDEX"})["shippingAgentServiceCode"] == ""


def test_delivery_status_round_trips(bc_api):
    order_id = bc_api.order_id("S-ORD101003")
    etag = bc_api.get(bc_api.shipping_url(order_id)).json()["@odata.etag"]
    body = bc.tracking_patch("1Z999AA10123456787", shipping_agent_code=None, service_code=None,
                             status="delivered", last_event="Delivered, front desk",
                             delivered_at=datetime(2026, 11, 3, 14, 30, tzinfo=UTC))
    response = bc_api.session.patch(bc_api.shipping_url(order_id), json=body,
                                    headers=bc_api.headers(**{"If-Match": etag}), timeout=10)
    assert response.json()["mlDeliveredAt"] == body["mlDeliveredAt"] == "2026-11-03T14:30:00Z"
    assert bc.parse_datetime(response.json()["mlDeliveredAt"]) == datetime(2026, 11, 3, 14, 30, tzinfo=UTC)


# -- throttling ---------------------------------------------------------------------------------------


def test_429_burst_uses_bc_body_without_retry_after_by_default(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, burst_429=2)
    for _ in range(2):
        response = bc_api.get("companies")
        assert response.status_code == 429 and odata_code(response) == "Application_TooManyRequests"
        assert "Retry-After" not in response.headers
    assert bc_api.token_response().status_code == 200  # the Entra endpoint is another service
    assert bc_api.get("companies").status_code == 200
    assert sandbox.counters(VENDOR)["rate_limited"] == 2


def test_retry_after_header_comes_from_its_knob(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, burst_429=1, retry_after_seconds=1)
    assert bc_api.get("companies").headers["Retry-After"] == "1"
    sandbox.set_knobs(VENDOR, retry_after_seconds=None)
    assert sandbox.knobs(VENDOR)["retry_after_seconds"] is None


def test_touch_endpoint_moves_modified_time_and_status(sandbox, bc_api):
    answer = sandbox.control(VENDOR, "POST", "business_central/touch",
                             {"number": "S-ORD101012", "status": "Open", "modified_at": "2026-11-01T10:00:00Z"})
    assert answer["status"] == "Open" and answer["lastModifiedDateTime"] == "2026-11-01T10:00:00Z"
    with pytest.raises(requests.HTTPError, match="404"):
        sandbox.control(VENDOR, "POST", "business_central/touch", {"number": "NOPE"})
