"""Write-back without a GET before each PATCH: the write-back page's etags are read once with the orders (one
paged read of ``salesOrderShipping``); a PATCH with a stale etag gets BC's 412 and goes the old way (re-read,
then PATCH), and a replayed write-back still sends nothing."""

from __future__ import annotations

from tests.erp.business_central import test_hook as bc_tests
from tests.erp.business_central.test_hook import (
    ORDER_ID,
    PATCH,
    VENDOR,
    counters,
    overview,
    released_within,
    window,
)

from ml_connector.erp.business_central.source import BusinessCentralSettings, BusinessCentralSource

# the fixtures of the hook tests
bc, connect, make_hook, hook = bc_tests.bc, bc_tests.connect, bc_tests.make_hook, bc_tests.hook

SETTINGS = BusinessCentralSettings(erp="business_central", default_weight_per_unit=1)


def calls(bc) -> int:
    return counters(bc)["api_requests"]


def test_the_extract_carries_each_orders_write_back_etag(hook, bc):
    orders = [o for o in BusinessCentralSource(SETTINGS, hook).extract(*window(1)) if hasattr(o, "etag")]
    assert {o.number for o in orders} <= released_within(24 * 60) and orders
    for order in orders:
        assert order.etag == hook.get_shipping_record(order.erp_id)["@odata.etag"]


def test_a_current_etag_patches_without_a_get(hook, bc):
    order_id = ORDER_ID["S-ORD101001"]
    etag = hook.get_shipping_record(order_id)["@odata.etag"]
    before = calls(bc)
    hook.update_shipping_record(order_id, PATCH, etag=etag)
    assert calls(bc) - before == 1 and counters(bc)["patches"] == 1
    assert overview(bc, "S-ORD101001")["packageTrackingNo"] == PATCH["packageTrackingNo"]


def test_a_stale_etag_gets_412_then_rereads_and_writes(hook, bc):
    order_id = ORDER_ID["S-ORD101002"]
    stale = hook.get_shipping_record(order_id)["@odata.etag"]
    bc.control(VENDOR, "POST", "business_central/touch", {"number": "S-ORD101002"})  # someone edited it
    hook.update_shipping_record(order_id, PATCH, etag=stale)
    c = counters(bc)
    assert c["etag_conflicts"] == 1 and c["patches"] == 1
    assert overview(bc, "S-ORD101002")["packageTrackingNo"] == PATCH["packageTrackingNo"]


def test_a_replay_with_the_extraction_etag_sends_nothing_new(hook, make_hook, bc):
    order_id = ORDER_ID["S-ORD101004"]
    etag = hook.get_shipping_record(order_id)["@odata.etag"]
    hook.update_shipping_record(order_id, PATCH, etag=etag)
    record = make_hook().update_shipping_record(order_id, PATCH, etag=etag)  # the ledger missed the first one
    assert record["packageTrackingNo"] == PATCH["packageTrackingNo"]
    assert counters(bc)["patches"] == 1  # the stale etag got 412, the re-read found the values there
