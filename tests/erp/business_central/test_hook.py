"""BusinessCentralHook against the Business Central sandbox over real HTTP.

The hook reaches the sandbox only through its Airflow connection (host and ``authority`` extra); every test
starts from a reset sandbox (seed reloaded, knobs and counters back to defaults).
"""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from tests.hooks.loopback import Answer, Loopback

from ml_connector import http
from ml_connector.erp.business_central.hook import BusinessCentralHook
from ml_connector.erp.business_central.mapping import tracking_patch
from ml_connector.errors import AuthenticationError, ConflictError, RetryableApiError
from ml_connector.ledger import schema
from ml_connector.secrets import TokenRequestsRefused
from ml_connector_sandbox.business_central import SEED_PATH
from ml_connector_sandbox.credentials import BUSINESS_CENTRAL_CLIENT_ID, BUSINESS_CENTRAL_CLIENT_SECRET

VENDOR = "business_central"
SEED = json.loads(SEED_PATH.read_text())
COMPANY_ID = SEED["company"]["id"]
CLIENT_ID = BUSINESS_CENTRAL_CLIENT_ID  # the only app the sandbox accepts; any other secret is refused
CLIENT_SECRET = BUSINESS_CENTRAL_CLIENT_SECRET
FAST = http.RetryPolicy(attempts=5, backoff=0.01, max_backoff=0.05)
ORDER_ID = {o["number"]: o["id"] for o in SEED["sales_orders"]}
THREE_DAYS_OLD = "S-ORD101011"
DRAFTS = {o["number"] for o in SEED["sales_orders"] if o["status"] != "Open"}


def released_within(minutes: float) -> set[str]:
    """Numbers of the seeded released orders modified in the last ``minutes``."""
    return {o["number"] for o in SEED["sales_orders"]
            if o["status"] == "Open" and o["modified_minutes_ago"] <= minutes}


def bc_connection(url: str, *, password: str = CLIENT_SECRET, company_id: str = COMPANY_ID, **extra) -> str:
    return json.dumps({
        "conn_type": "business_central", "host": url, "login": CLIENT_ID, "password": password,
        "extra": {"tenant_id": SEED["tenant_id"], "environment": SEED["environment"], "company_id": company_id,
                  "authority": url, **extra},
    })


@pytest.fixture
def bc(sandbox):
    """The session sandbox with Business Central reset for this test."""
    sandbox.reset(VENDOR)
    return sandbox


@pytest.fixture
def connect(bc, monkeypatch):
    """Point ``business_central_default`` at the sandbox (optionally with another secret/company/extras)."""

    def connect(**kwargs) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", bc_connection(bc.url(VENDOR), **kwargs))

    connect()
    return connect


@pytest.fixture
def make_hook(connect, sqlite_ledger):
    def make_hook(**kwargs) -> BusinessCentralHook:
        return BusinessCentralHook(ledger=sqlite_ledger, retry=FAST, **kwargs)

    return make_hook


@pytest.fixture
def hook(make_hook):
    return make_hook()


def counters(bc) -> dict:
    return bc.counters(VENDOR)


def window(days: float) -> tuple[datetime, datetime]:
    """``[now - days, now + 1 minute)``: the sandbox clock runs with ours (clock_offset_seconds = 0)."""
    now = datetime.now(UTC)
    return now - timedelta(days=days), now + timedelta(minutes=1)


def overview(bc, number: str) -> dict:
    return next(o for o in bc.control(VENDOR, "GET", "business_central/orders") if o["number"] == number)


# -- token ----------------------------------------------------------------------------------------------


def test_token_is_fetched_once_and_shared_by_hook_instances(make_hook, bc):
    make_hook().get_company()
    make_hook().get_company_information()
    assert counters(bc)["tokens_issued"] == 1
    assert counters(bc)["auth_failures"] == 0


def test_cached_token_is_encrypted_in_the_ledger(hook, bc, sqlite_ledger):
    hook.get_company()
    token = hook.get_token()
    with sqlite_ledger.read() as conn:
        rows = conn.execute(sa.select(schema.secrets.c.name, schema.secrets.c.ciphertext)).all()
    assert [name for name, _ in rows] == [f"business_central:token:{bc.url('business_central')}:{SEED['tenant_id']}:{CLIENT_ID}"]
    ciphertext = rows[0].ciphertext
    assert token and token not in ciphertext
    assert CLIENT_SECRET not in ciphertext
    assert hook.secret_store.get(rows[0].name).value == token  # ... and decrypts to the token in use


def test_expired_token_is_refreshed_once_after_401(hook, bc):
    hook.get_company()
    bc.set_knobs(VENDOR, expire_all_tokens=True)  # the server forgets it; our cache still thinks it is fresh
    assert hook.get_company()["id"] == COMPANY_ID
    c = counters(bc)
    assert c["tokens_issued"] == 2
    assert c["auth_failures"] == 1


def test_wrong_secret_raises_authentication_error_without_the_secret(make_hook, connect, bc):
    connect(password="wrong-secret")
    with pytest.raises(AuthenticationError) as caught:
        make_hook().get_company()
    message = str(caught.value)
    assert "business_central_default" in message
    assert "wrong-secret" not in message and "wrong-secret" not in repr(caught.value)
    assert caught.value.retryable is False
    assert counters(bc)["token_errors"] == 1  # a refused secret is not retried
    assert counters(bc)["tokens_issued"] == 0


# -- reads ----------------------------------------------------------------------------------------------


def test_released_orders_follow_next_link_across_pages(hook, bc):
    bc.set_knobs(VENDOR, page_size=2)
    orders = list(hook.iter_released_orders(*window(days=4)))
    numbers = [o["number"] for o in orders]
    assert len(numbers) == len(set(numbers)), "an order came back twice"
    assert set(numbers) == released_within(4 * 24 * 60)
    assert THREE_DAYS_OLD in numbers
    assert not set(numbers) & DRAFTS
    assert all(o["status"] == "Open" for o in orders)
    assert all(o["salesOrderLines"] and "shipmentMethod" in o for o in orders)  # $expand survived the paging
    assert counters(bc)["sales_order_pages_served"] >= 3
    assert counters(bc)["sales_order_pages_served"] == -(-len(numbers) // 2)


def test_narrow_window_excludes_an_order_modified_three_days_ago(hook, bc):
    numbers = [o["number"] for o in hook.iter_released_orders(*window(days=1))]
    assert THREE_DAYS_OLD not in numbers
    assert set(numbers) == released_within(24 * 60)
    assert not set(numbers) & DRAFTS


def test_touched_orders_enter_the_window(hook, bc):
    start, end = window(days=1)
    bc.control(VENDOR, "POST", "business_central/touch", {"number": THREE_DAYS_OLD})
    bc.control(VENDOR, "POST", "business_central/touch", {"number": "S-ORD101012", "status": "Open"})
    numbers = {o["number"] for o in hook.iter_released_orders(start, end)}
    assert numbers == released_within(24 * 60) | {THREE_DAYS_OLD, "S-ORD101012"}


def test_page_size_extra_asks_for_smaller_pages(make_hook, connect, bc):
    connect(page_size=3)
    bc.set_knobs(VENDOR, page_size=100)
    numbers = [o["number"] for o in make_hook().iter_released_orders(*window(days=4))]
    assert len(numbers) == len(set(numbers)) == len(released_within(4 * 24 * 60))
    assert counters(bc)["sales_order_pages_served"] == -(-len(numbers) // 3)


def test_429_burst_on_a_read_is_retried(hook, bc):
    hook.get_token()
    bc.set_knobs(VENDOR, burst_429=2)
    assert hook.get_company()["id"] == COMPANY_ID
    assert counters(bc)["rate_limited"] == 2


def test_429_with_retry_after_is_honoured(hook, bc):
    bc.set_knobs(VENDOR, burst_429=2, retry_after_seconds=0.1)
    info = hook.get_company_information()
    assert info["addressLine1"] == SEED["company_information"]["addressLine1"]
    assert counters(bc)["rate_limited"] == 2


def test_429_in_the_middle_of_paging_resumes_from_the_next_link(hook, bc):
    orders = hook.iter_released_orders(*window(days=4))
    first = next(orders)
    bc.set_knobs(VENDOR, burst_429=1)
    numbers = [first["number"], *(o["number"] for o in orders)]
    assert sorted(numbers) == sorted(released_within(4 * 24 * 60))
    assert counters(bc)["rate_limited"] == 1


def test_429_that_outlasts_the_retries_is_a_retryable_error(hook, bc):
    hook.get_token()
    bc.set_knobs(VENDOR, burst_429=FAST.attempts)
    with pytest.raises(RetryableApiError) as caught:
        hook.get_company()
    assert caught.value.status == 429 and caught.value.retryable
    assert counters(bc)["rate_limited"] == FAST.attempts


def test_get_company_information_returns_the_company_address(hook):
    info = hook.get_company_information()
    expected = SEED["company_information"]
    for key in ("displayName", "addressLine1", "addressLine2", "city", "state", "country", "postalCode",
                "phoneNumber", "email"):
        assert info[key] == expected[key], key


# -- write-back -------------------------------------------------------------------------------------------


PATCH = tracking_patch("1Z999AA10123456784", service_code="GROUND", status="Label created")


def test_update_shipping_record_writes_the_tracking_number(hook, bc):
    order_id = ORDER_ID["S-ORD101001"]
    result = hook.update_shipping_record(order_id, PATCH)
    assert result["packageTrackingNo"] == "1Z999AA10123456784"
    row = overview(bc, "S-ORD101001")
    assert row["packageTrackingNo"] == "1Z999AA10123456784"
    assert row["shippingAgentCode"] == "UPS" and row["shippingAgentServiceCode"] == "GROUND"
    assert hook.get_shipping_record(order_id)["packageTrackingNo"] == "1Z999AA10123456784"
    c = counters(bc)
    assert c["patches"] == 1 and c["etag_conflicts"] == 0


def test_etag_conflict_rereads_and_succeeds(hook, bc):
    bc.set_knobs(VENDOR, etag_conflict_next=1)
    hook.update_shipping_record(ORDER_ID["S-ORD101002"], PATCH)
    c = counters(bc)
    assert c["etag_conflicts"] == 1 and c["patches"] == 1
    assert overview(bc, "S-ORD101002")["packageTrackingNo"] == "1Z999AA10123456784"


def test_persistent_etag_conflict_raises_conflict_error(hook, bc):
    bc.set_knobs(VENDOR, etag_conflict_next=5)
    with pytest.raises(ConflictError) as caught:
        hook.update_shipping_record(ORDER_ID["S-ORD101003"], PATCH, attempts=3)
    assert caught.value.status == 412 and not caught.value.retryable
    c = counters(bc)
    assert c["etag_conflicts"] == 3 and c["patches"] == 0
    assert overview(bc, "S-ORD101003")["packageTrackingNo"] == ""


def test_replaying_the_same_patch_is_a_no_op(hook, make_hook, bc):
    order_id = ORDER_ID["S-ORD101004"]
    hook.update_shipping_record(order_id, PATCH)
    modified = overview(bc, "S-ORD101004")["lastModifiedDateTime"]
    record = make_hook().update_shipping_record(order_id, PATCH)
    assert record["packageTrackingNo"] == "1Z999AA10123456784"
    assert counters(bc)["patches"] == 1
    assert overview(bc, "S-ORD101004")["lastModifiedDateTime"] == modified  # the next poll will not see it


def test_replaying_a_delivery_patch_is_a_no_op(hook, bc):
    """BC keeps DateTimes to the millisecond: a replayed microsecond delivery time must still match."""
    order_id = ORDER_ID["S-ORD101005"]
    delivered = tracking_patch("1Z999AA10123456784", service_code="STANDARD", status="Delivered",
                               last_event="Delivered  to   front door",
                               delivered_at=datetime(2026, 11, 20, 14, 3, 7, 123456, tzinfo=UTC))
    hook.update_shipping_record(order_id, delivered)
    hook.update_shipping_record(order_id, delivered)
    assert counters(bc)["patches"] == 1
    assert overview(bc, "S-ORD101005")["mlDeliveredAt"] == "2026-11-20T14:03:07.123Z"


# -- Airflow UI ------------------------------------------------------------------------------------------


def test_test_connection_names_the_company_and_environment(hook, bc):
    ok, message = hook.test_connection()
    assert ok is True
    assert SEED["company"]["displayName"] in message
    assert SEED["environment"] in message
    assert bc.url(VENDOR) in message and "valid for" in message


def test_test_connection_checks_the_secret_not_the_cached_token(make_hook, connect, bc):
    """The bug this guards against: "Connected" with a wrong secret while a good token sat in the ledger."""
    good = make_hook().get_token()
    connect(password="wrong-secret")
    hook = make_hook()
    ok, message = hook.test_connection()
    assert ok is False
    assert message.startswith("Entra refused the client credentials of connection 'business_central_default'")
    assert "Invalid client secret" in message and "wrong-secret" not in message
    assert hook.secret_store.get(hook.token_cache_key).value == good  # left alone
    assert counters(bc)["token_errors"] == 1


def test_test_connection_neither_reads_nor_writes_the_token_cache(connect, bc):
    hook = BusinessCentralHook(retry=FAST)  # no ledger given: touching the cache would open the default one
    assert hook.test_connection()[0] is True
    assert hook._ledger is None and hook._secret_store is None
    assert counters(bc)["tokens_issued"] == 1


def test_test_connection_names_an_unreachable_host(make_hook, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_BUSINESS_CENTRAL_DEFAULT", bc_connection(closed))
    ok, message = make_hook().test_connection()
    assert ok is False and message.startswith(f"Could not reach Business Central at {closed}: connection refused")


def test_entra_busy_is_retryable_not_a_refused_secret(make_hook, connect):
    with Loopback() as entra:  # an Entra that answers 503 to everything
        entra.route("POST", f"/{SEED['tenant_id']}/oauth2/v2.0/token",
                    lambda r: Answer(503, {"error": "temporarily_unavailable", "error_description": "busy"}))
        connect(authority=entra.url)
        with pytest.raises(RetryableApiError) as caught:
            make_hook().get_token()
    assert caught.value.status == 503 and caught.value.retryable
    assert not isinstance(caught.value, AuthenticationError)
    assert len(entra.requests) == FAST.attempts
    with pytest.raises(TokenRequestsRefused, match=r"^Entra token requests are refused until .* \(HTTP 503\)"):
        make_hook().get_token()  # the next lane waits instead of asking Entra again
    assert len(entra.requests) == FAST.attempts


def test_entra_429_is_shared_for_its_retry_after(make_hook, connect):
    with Loopback() as entra:
        entra.route("POST", f"/{SEED['tenant_id']}/oauth2/v2.0/token", lambda r: Answer(
            429, {"error": "temporarily_unavailable", "error_description": "throttled"}, {"Retry-After": "600"}))
        connect(authority=entra.url)
        with pytest.raises(RetryableApiError) as caught:
            make_hook().get_token()
        assert caught.value.status == 429 and len(entra.requests) == 1  # no in-process retry of a 429
        hook = make_hook()
        for _ in range(3):
            with pytest.raises(TokenRequestsRefused) as waiting:
                hook.get_company()
        assert len(entra.requests) == 1
    breaker = hook.secret_store.breaker(hook.token_cache_key)
    assert breaker.until == pytest.approx(time.time() + 600, abs=5) and breaker.reason == "rate limited"
    assert "(rate limited): waiting, not asking again" in str(waiting.value)
    assert CLIENT_SECRET not in str(waiting.value) and CLIENT_SECRET not in str(caught.value)


def test_a_wrong_entra_secret_opens_no_breaker(make_hook, connect, bc):
    connect(password="wrong-secret")
    for attempt in range(1, 3):
        with pytest.raises(AuthenticationError):
            make_hook().get_token()
        assert counters(bc)["token_errors"] == attempt  # one request per attempt, none retried
    hook = make_hook()
    assert hook.secret_store.breaker(hook.token_cache_key) is None


def test_test_connection_with_a_wrong_company_fails(make_hook, connect):
    connect(company_id="00000000-0000-0000-0000-00000000beef")
    ok, message = make_hook().test_connection()
    assert ok is False
    assert "00000000-0000-0000-0000-00000000beef" in message


def test_test_connection_with_a_wrong_secret_hides_it(make_hook, connect):
    connect(password="wrong-secret")
    ok, message = make_hook().test_connection()
    assert ok is False
    assert "business_central_default" in message and "wrong-secret" not in message
