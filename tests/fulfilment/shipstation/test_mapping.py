"""Pure ShipStation rules: Pacific time both ways (the repeated November hour, the missing March hour), rate-limit
headers, the product merge, and the Business Central document an order becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ml_connector.errors import RecordError
from ml_connector.fulfilment.shipstation import mapping

# 2026: DST ends Sunday 1 November at 02:00 PDT (09:00 UTC), starts Sunday 8 March at 02:00 PST (10:00 UTC)
FIRST_0130 = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)   # 01:30 PDT
SECOND_0130 = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # 01:30 PST, one hour later


def test_the_repeated_november_hour_both_ways():
    assert mapping.to_pacific_text(FIRST_0130) == "2026-11-01 01:30:00"
    assert mapping.to_pacific_text(SECOND_0130) == "2026-11-01 01:30:00"
    assert mapping.to_pacific(SECOND_0130).fold == 1
    assert mapping.from_pacific("2026-11-01T01:30:00.0000000") == FIRST_0130  # first occurrence by default
    assert mapping.from_pacific("2026-11-01T01:30:00.0000000", fold=1) == SECOND_0130
    assert mapping.readings("2026-11-01T01:30:00") == {FIRST_0130, SECOND_0130}
    # round trip of every minute across the change
    at = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)
    while at < datetime(2026, 11, 1, 11, 0, tzinfo=UTC):
        local = mapping.to_pacific(at)
        assert mapping.from_pacific(local, fold=local.fold) == at
        at += timedelta(minutes=7)


def test_outside_the_change_one_reading_and_seven_fraction_digits():
    assert mapping.from_pacific("2015-08-17T09:21:59.4430000") == datetime(2015, 8, 17, 16, 21, 59, 443000, tzinfo=UTC)
    assert mapping.from_pacific("2026-01-15 10:00:00") == datetime(2026, 1, 15, 18, 0, tzinfo=UTC)  # PST
    assert len(mapping.readings("2026-07-01T12:00:00")) == 1


def test_the_missing_march_hour_reads_with_the_offset_before_the_change():
    assert mapping.from_pacific("2026-03-08T02:30:00") == datetime(2026, 3, 8, 10, 30, tzinfo=UTC)
    assert mapping.to_pacific_text(datetime(2026, 3, 8, 10, 30, tzinfo=UTC)) == "2026-03-08 03:30:00"


def test_a_window_across_the_november_change_covers_every_local_time():
    start, end = FIRST_0130, SECOND_0130 + timedelta(minutes=15)  # 08:30 .. 09:45 UTC
    low, high = mapping.pacific_window(start, end)
    # read naively the local window would be 01:30 .. 01:45, missing 01:45-02:00 PDT and 01:00-01:30 PST
    assert low <= "2026-11-01 01:00:00" and high >= "2026-11-01 01:59:59"
    # an order modified at 01:10 local belongs to the window by its second reading (09:10 UTC)
    assert mapping.in_window("2026-11-01T01:10:00", start, end)
    assert not mapping.in_window("2026-11-01T00:50:00", start, end)  # 07:50 UTC: before
    assert not mapping.in_window("2026-11-01T02:00:00", start, end)  # 10:00 UTC: after


def test_a_plain_window_is_the_local_clock_of_its_ends():
    start = datetime(2026, 7, 1, 19, 0, tzinfo=UTC)
    assert mapping.pacific_window(start, start + timedelta(minutes=15)) == ("2026-07-01 12:00:00",
                                                                             "2026-07-01 12:15:00")


def test_rate_limit_headers():
    assert mapping.rate_limit({"X-Rate-Limit-Remaining": "3", "X-Rate-Limit-Reset": "20"}, 1000.0) == (3, 1021.0)
    assert mapping.rate_limit({}, 1000.0) is None
    assert mapping.rate_limit({"X-Rate-Limit-Remaining": "x", "X-Rate-Limit-Reset": "1"}, 0) is None


def test_product_merge_sends_the_whole_product():
    product = {"productId": 7, "sku": "A", "name": "old", "price": 1.0, "defaultCost": None, "active": True,
               "weightOz": 16.0, "warehouseLocation": "A-1"}
    merged = mapping.merge_product(product, {"number": "A", "displayName": "New", "unitPrice": 2.5, "unitCost": 1.2})
    assert merged == {**product, "name": "New", "price": 2.5, "defaultCost": 1.2, "active": True}
    assert mapping.merge_product(merged, {"number": "A", "displayName": "New", "unitPrice": 2.5,
                                          "unitCost": 1.2}) is None
    assert mapping.find_sku([{"sku": "A-1"}, {"sku": "A"}], "A") == {"sku": "A"}


def test_order_key_limits_and_unknown_items_name_the_record():
    with pytest.raises(RecordError, match="at most 35"):
        mapping.order_key({"orderNumber": "1", "orderKey": "k" * 36})
    with pytest.raises(RecordError, match="no orderKey"):
        mapping.order_key({"orderNumber": "1"})
    with pytest.raises(RecordError, match="item 'NOPE' is not in Business Central") as info:
        mapping.document_lines({"orderNumber": "1", "items": [{"sku": "NOPE", "quantity": 1}]}, {})
    assert info.value.field == "items[1].sku"
    with pytest.raises(RecordError, match="has no customerUsername"):
        mapping.customer_number({"orderNumber": "1"}, "customerUsername")


def test_business_central_notifications_name_items_collections_or_nothing():
    from ml_connector.fulfilment.shipstation.mapping import notified_item

    base = "api/v2.0/companies(c1)"
    assert notified_item({"resource": f"{base}/items(AB-12)", "changeType": "updated"}) == ("item", "ab-12")
    assert notified_item({"resource": f"{base}/items('x1')", "changeType": "created"}) == ("item", "x1")
    assert notified_item({"resource": f"{base}/items(x1)", "changeType": "deleted"}) == ("deleted", "x1")
    assert notified_item({"resource": f"{base}/items", "changeType": "collection"}) == ("collection", None)
    assert notified_item({"resource": f"{base}/customers(c9)", "changeType": "updated"}) == ("other", None)
    assert notified_item({}) == ("other", None)
