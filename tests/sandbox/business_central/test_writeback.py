"""The ml-connector write-back page in the Business Central sandbox: PATCH with If-Match, etags, AL rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.sandbox.business_central.client import COMPANY_ID, VENDOR, odata_code

from ml_connector.erp.business_central import mapping as bc

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
