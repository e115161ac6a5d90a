"""salesOrders in the Business Central sandbox: server-driven paging, $filter, $expand, one order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.sandbox.business_central.client import COMPANY_ID, DRAFT_NUMBERS, OPEN_NUMBERS, VENDOR, odata_code

from ml_connector.erp.business_central import mapping as bc

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


# -- writes: deep insert, PATCH with If-Match, lines (the ShipStation pipeline's sales_order mode) -------------

def _orders_url(bc_api, path: str = "") -> str:
    return bc_api.api_url(f"companies({COMPANY_ID})/salesOrders{path}")


def test_a_draft_order_is_created_with_lines_patched_with_if_match_and_its_lines_replaced(sandbox, bc_api):
    session, headers = bc_api.session, bc_api.headers()
    item = bc_api.get(bc_api.api_url(f"companies({COMPANY_ID})/items"), **{"$filter": "number eq '1900-S'"}).json()
    customer = bc_api.get(bc_api.api_url(f"companies({COMPANY_ID})/customers"), **{"$filter": "number eq '10000'"})
    body = {"customerId": customer.json()["value"][0]["id"], "externalDocumentNumber": "ss-key-1",
            "shipToCity": "Seattle", "salesOrderLines": [
                {"lineType": "Item", "itemId": item["value"][0]["id"], "quantity": 2, "unitPrice": 10},
                {"lineType": "Comment", "description": "Tracking 1Z carrier ups service ups_ground"}]}
    created = session.post(_orders_url(bc_api), json=body, headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "Draft" and order["number"].startswith("S-ORD") and order["shipToCity"] == "Seattle"
    assert [(x["lineType"], x["quantity"]) for x in order["salesOrderLines"]] == [("Item", 2.0), ("Comment", 0.0)]
    found = bc_api.sales_orders(**{"$filter": "externalDocumentNumber eq 'ss-key-1'",
                                   "$expand": "salesOrderLines"}).json()["value"]
    assert [o["id"] for o in found] == [order["id"]] and len(found[0]["salesOrderLines"]) == 2

    one = _orders_url(bc_api, f"({order['id']})")
    assert session.patch(one, json={"shipToCity": "Tacoma"}, headers=headers,
                         timeout=10).status_code == 400  # no If-Match
    patched = session.patch(one, json={"shipToCity": "Tacoma"}, timeout=10,
                            headers={**headers, "If-Match": order["@odata.etag"]})
    assert patched.status_code == 200 and patched.json()["shipToCity"] == "Tacoma"
    stale = session.patch(one, json={"shipToCity": "Olympia"}, timeout=10,
                          headers={**headers, "If-Match": order["@odata.etag"]})
    assert stale.status_code == 412 and odata_code(stale) == "Request_EntityChanged"

    lines = one + "/salesOrderLines"
    for line in order["salesOrderLines"]:
        assert session.delete(f"{lines}({line['id']})", headers=headers, timeout=10).status_code == 204
    added = session.post(lines, json={"lineType": "Item", "itemId": item["value"][0]["id"], "quantity": 5},
                         headers=headers, timeout=10)
    assert added.status_code == 201 and added.json()["quantity"] == 5.0
    after = bc_api.get(one, **{"$expand": "salesOrderLines"}).json()
    assert [x["quantity"] for x in after["salesOrderLines"]] == [5.0]
    assert sandbox.counters(VENDOR)["sales_orders_created"] == 1


def test_bad_sales_order_writes_are_refused_as_business_central_does(bc_api):
    session, headers = bc_api.session, bc_api.headers()
    unknown_customer = session.post(_orders_url(bc_api), json={"customerNumber": "99999"}, headers=headers,
                                    timeout=10)
    assert unknown_customer.status_code == 400 and "Customer does not exist" in unknown_customer.text
    customer = bc_api.get(bc_api.api_url(f"companies({COMPANY_ID})/customers")).json()["value"][0]["id"]
    unknown_item = session.post(_orders_url(bc_api), json={"customerId": customer, "salesOrderLines": [
        {"lineType": "Item", "itemId": "11111111-2222-3333-4444-555555555555", "quantity": 1}]}, headers=headers,
        timeout=10)
    assert unknown_item.status_code == 400 and "Item does not exist" in unknown_item.text
    released = bc_api.order_id(sorted(OPEN_NUMBERS)[0])
    etag = bc_api.get(_orders_url(bc_api, f"({released})")).json()["@odata.etag"]
    refused = session.patch(_orders_url(bc_api, f"({released})"), json={"shipToCity": "X"}, timeout=10,
                            headers={**headers, "If-Match": etag})
    assert refused.status_code == 400 and "Status must be equal to 'Open'" in refused.text
