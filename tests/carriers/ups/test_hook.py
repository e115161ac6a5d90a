"""UpsHook against the UPS sandbox over real HTTP; every request it sends must validate against the UPS spec.

The token-quota tests run the sandbox with ``token_daily_quota`` 0 (every token request answers 429 10429) and
move the secret store's clock forward instead of sleeping.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa
from tests.conftest import UPS_ACCOUNT, at_once_in_processes, ups_connection
from tests.hooks.clock import MovableClock
from tests.hooks.loopback import Answer, Loopback

from ml_connector import http
from ml_connector.carriers.ups.hook import TOKEN_PATH, UpsHook, _token_expiry
from ml_connector.errors import (
    AmbiguousRequestError,
    AuthenticationError,
    PermanentApiError,
    RetryableApiError,
    RetryableError,
)
from ml_connector.ledger import Ledger, schema
from ml_connector.models import (
    Address,
    AddressClassification,
    AddressStatus,
    Dimensions,
    Order,
    OrderLine,
    Package,
    TrackingStatus,
)
from ml_connector.secrets import SecretStore, TokenRequestsRefused
from ml_connector_sandbox.credentials import UPS_CLIENT_ID, UPS_CLIENT_SECRET

FAST = http.RetryPolicy(attempts=5, backoff=0.01, max_backoff=0.05)
SHIPPER = Address(name="CRONUS USA, Inc.", phone="5105550100", lines=["2100 Powell Street"], city="Emeryville",
                  state="CA", postal_code="94608", country="US")


def order(number="S-ORD101001", country="US", lines=("12 Willow Lane", "Apt 3B"), **ship_to) -> Order:
    address = dict(name="Maria Campos", lines=list(lines), city="Rye", state="NY", postal_code="10580",
                   country=country)
    if country == "CA":
        address.update(city="Toronto", state="ON", postal_code="M5V 2T6")
    address.update(ship_to)
    # goods leaving the US need a commercial invoice: the lines carry its values
    goods = [OrderLine(sku="1896-S", description="Athens Desk", quantity=Decimal(2), unit_value=Decimal("649.4"),
                       currency="USD", origin_country="US", hs_code="940330")] if country != "US" else []
    return Order(erp="business_central", erp_id=f"id-{number}", number=number, ship_method="GROUND",
                 ship_to=Address(**address), lines=goods,
                 packages=[Package(weight=Decimal("4.5"), dimensions=Dimensions(length=10, width=8, height=6))])


@pytest.fixture
def hook(ups_conn, sqlite_ledger):
    return UpsHook(ledger=sqlite_ledger, retry=FAST)


@pytest.fixture(autouse=True)
def requests_match_the_spec(request):
    """After each test: the sandbox saw no request that breaks the UPS spec or a UPS business rule."""
    yield
    server = request.node.funcargs.get("ups") or request.node.funcargs.get("ups_conn")
    if server is not None:
        assert server.validation_errors("ups") == []


def test_token_is_requested_once_and_shared_by_hooks(hook, ups, sqlite_ledger):
    hook.validate_address(order().ship_to)
    UpsHook(ledger=sqlite_ledger, retry=FAST).validate_address(order().ship_to)
    assert ups.counters("ups")["tokens_issued"] == 1


def test_cached_token_is_encrypted_at_rest(hook, sqlite_ledger):
    token = hook.get_token()
    with sqlite_ledger.read() as conn:
        stored = conn.execute(sa.select(schema.secrets.c.ciphertext)).scalar_one()
    assert token not in stored and UPS_CLIENT_SECRET not in stored


def test_expiry_comes_from_issued_at_plus_expires_in(hook, ups):
    ups.set_knobs("ups", token_ttl_seconds=3599)
    hook.get_token()
    cached = hook.secret_store.get(hook.token_cache_key)
    assert cached.expires_at == pytest.approx(time.time() + 3599, abs=30)


def test_short_lived_token_is_refreshed_early(hook, ups):
    ups.set_knobs("ups", token_ttl_seconds=240)  # inside the 5-minute refresh margin: stale at once
    hook.get_token()
    hook.get_token()
    assert ups.counters("ups")["tokens_issued"] == 2


def test_token_expiry_parsing_handles_strings_and_missing_issued_at():
    now = 1_780_000_000.0
    assert _token_expiry({"issued_at": str(int(now * 1000)), "expires_in": "3599"}, now=now) == now + 3599
    assert _token_expiry({"expires_in": "14399"}, now=now) == now + 14399


def test_a_401_forces_one_refresh_and_one_retry(hook, ups):
    hook.validate_address(order().ship_to)
    ups.set_knobs("ups", expire_all_tokens=True)
    result = hook.validate_address(order().ship_to)
    assert result.status is AddressStatus.VALID
    assert ups.counters("ups")["tokens_issued"] == 2


def test_wrong_secret_is_an_authentication_error_without_the_secret(ups, sqlite_ledger, monkeypatch):
    conn = json.loads(ups_connection(ups.url("ups")))
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(conn))
    with pytest.raises(AuthenticationError) as err:
        UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
    assert "ups_default" in str(err.value) and "wrong-secret" not in str(err.value)


def test_address_validation_settles_residential_vs_commercial(hook):
    home = hook.validate_address(order().ship_to)
    assert home.status is AddressStatus.VALID and home.classification is AddressClassification.RESIDENTIAL
    office = hook.validate_address(Address(name="Fabrikam Design, Inc.", lines=["500 Howard Street"],
                                           city="San Francisco", state="CA", postal_code="94105", country="US"))
    assert office.classification is AddressClassification.COMMERCIAL


def test_address_validation_reports_ambiguous_and_no_candidates(hook, ups):
    ambiguous = hook.validate_address(order(lines=["1 AMBIG Street"]).ship_to)
    assert ambiguous.status is AddressStatus.AMBIGUOUS and len(ambiguous.candidates) >= 2
    ups.set_knobs("ups", xav_single_object=True)
    nowhere = hook.validate_address(order(lines=["1 NOWHERE Road"]).ship_to)
    assert nowhere.status is AddressStatus.NO_CANDIDATES


def test_rate_limit_burst_is_retried_with_backoff(hook, ups):
    hook.get_token()
    ups.set_knobs("ups", burst_429=3)
    assert hook.validate_address(order().ship_to).status is AddressStatus.VALID
    assert ups.counters("ups")["rate_limited"] == 3


def test_ship_returns_tracking_labels_and_negotiated_charges(hook, ups):
    result = hook.create_shipment(order(), service_code="03", shipper=SHIPPER, reference="S-ORD101001",
                                  extra_references=["PO-7781"], residential=True)
    assert result.tracking_numbers[0].startswith(f"1Z{UPS_ACCOUNT}03") and len(result.tracking_numbers[0]) == 18
    assert result.labels[0].image.startswith(b"GIF")
    assert result.negotiated_charges is not None and result.charges == result.negotiated_charges
    by_ref = ups.counters("ups")["labels_by_reference"]
    assert by_ref["S-ORD101001"] == 1 and by_ref["PO-7781"] == 1


def test_international_reference_goes_to_shipment_level(hook, ups):
    result = hook.create_shipment(order("S-ORD101005", country="CA"), service_code="11", shipper=SHIPPER,
                                  reference="S-ORD101005")
    assert result.tracking_numbers
    assert ups.counters("ups")["labels_by_reference"]["S-ORD101005"] == 1


def test_ship_refusal_carries_the_ups_code_and_is_permanent(hook, ups):
    with pytest.raises(PermanentApiError) as err:
        hook._call("POST", "/api/shipments/v2409/ship", json={"ShipmentRequest": {}})  # schema-invalid on purpose
    assert err.value.code and err.value.status == 400 and not err.value.retryable
    assert "UPS" in str(err.value) or "ups" in str(err.value)
    ups.reset("ups")  # the invalid request was the point of this test


def test_dropped_ship_connection_is_ambiguous_and_the_label_is_findable(hook, ups):
    ups.set_knobs("ups", crash_after_label_next=1)
    with pytest.raises(AmbiguousRequestError):
        hook.create_shipment(order(), service_code="03", shipper=SHIPPER, reference="S-ORD101001")
    found = hook.track_by_reference("S-ORD101001")
    assert len(found) == 1 and "S-ORD101001" in found[0].reference_numbers
    assert ups.counters("ups")["labels_by_reference"]["S-ORD101001"] == 1


def test_tracking_follows_the_package_to_delivery(hook, ups):
    number = hook.create_shipment(order(), service_code="03", shipper=SHIPPER,
                                  reference="S-ORD101001").tracking_numbers[0]
    assert hook.track(number).status is TrackingStatus.LABEL_CREATED
    ups.advance_ups_package(number, "in_transit")
    assert hook.track(number).status is TrackingStatus.IN_TRANSIT
    ups.advance_ups_package(number, "delivered")
    delivered = hook.track(number)
    assert delivered.status is TrackingStatus.DELIVERED and delivered.delivered_at is not None
    assert [e.status for e in delivered.events][0] is TrackingStatus.DELIVERED


def test_unknown_tracking_number_is_not_found_at_http_200(hook):
    assert hook.track("1ZA1B2C30399999999").status is TrackingStatus.NOT_FOUND


def test_void(hook):
    result = hook.create_shipment(order(), service_code="03", shipper=SHIPPER, reference="S-ORD101001")
    assert hook.void_shipment(result.shipment_id) is True
    assert hook.track(result.tracking_numbers[0]).status is TrackingStatus.VOIDED


def test_test_connection_reports_the_account(hook, ups):
    ok, message = hook.test_connection()
    assert ok and UPS_ACCOUNT in message
    assert ups.url("ups") in message and UPS_CLIENT_ID in message and "valid for" in message


def wrong_secret(ups, monkeypatch) -> None:
    conn = json.loads(ups_connection(ups.url("ups")))
    conn["password"] = "wrong-secret"
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", json.dumps(conn))


def test_test_connection_with_a_wrong_secret_says_ups_refused_it(ups, sqlite_ledger, monkeypatch):
    wrong_secret(ups, monkeypatch)
    ok, message = UpsHook(ledger=sqlite_ledger, retry=FAST).test_connection()
    assert ok is False
    assert message.startswith("UPS refused the client id/secret of connection 'ups_default'")
    assert "wrong-secret" not in message


def test_test_connection_checks_the_secret_not_the_cached_token(hook, ups, sqlite_ledger, monkeypatch):
    good = hook.get_token()  # a good token sits in the ledger, still valid for an hour
    wrong_secret(ups, monkeypatch)
    checked = UpsHook(ledger=sqlite_ledger, retry=FAST)
    ok, message = checked.test_connection()
    assert ok is False and "refused" in message
    assert checked.secret_store.get(checked.token_cache_key).value == good  # the cache was left alone


def test_test_connection_neither_reads_nor_writes_the_token_cache(ups_conn, ups):
    hook = UpsHook(retry=FAST)  # no ledger given: touching the cache would open the default one
    assert hook.test_connection()[0] is True
    assert hook._ledger is None and hook._secret_store is None
    assert ups.counters("ups")["tokens_issued"] == 1


def test_test_connection_names_an_unreachable_host(sqlite_ledger, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(closed))
    ok, message = UpsHook(ledger=sqlite_ledger, retry=FAST).test_connection()
    assert ok is False
    assert message.startswith(f"Could not reach UPS at {closed}: connection refused")


def _token_in_process(ledger_url: str, conn_json: str, barrier, errors) -> None:
    import os

    os.environ["AIRFLOW_CONN_UPS_DEFAULT"] = conn_json
    try:
        hook = UpsHook(ledger=Ledger(ledger_url), retry=FAST)
        barrier.wait()
        hook.get_token()
    except Exception as exc:  # report, do not hang the barrier of the others
        errors.put(repr(exc))


@pytest.mark.xdist_group("many_processes")  # together they would pass PostgreSQL's 100 connections
def test_fifty_worker_processes_make_one_token_request(ups, ledger_url):
    """50 processes (like 50 Celery/Kubernetes task workers) find no token at the same moment."""
    Ledger(ledger_url)  # create the schema once, as the first task would
    assert at_once_in_processes(50, _token_in_process, ledger_url, ups_connection(ups.url("ups"))) == []
    assert ups.counters("ups")["tokens_issued"] == 1


# -- the token quota is spent: a refusal is shared, not repeated (token breaker) --------------------------------

LANES = 8


def run_lanes(hooks: list[UpsHook]) -> list[str]:
    """Every hook (a lane) asks for a token at the same moment; returns what each got: "token" or an error."""
    barrier, outcomes = threading.Barrier(len(hooks)), []

    def lane(hook: UpsHook) -> None:
        barrier.wait()
        try:
            hook.get_token()
            outcomes.append("token")
        except Exception as exc:  # recorded, never lost in the thread
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=lane, args=(hook,)) for hook in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return outcomes


def test_eight_lanes_refused_for_five_minutes_make_at_most_three_token_requests(ups_conn, ups, ledger):
    """8 lanes need a token while UPS refuses every token request (quota spent) for 5 minutes.

    The 5 minutes are the secret store's clock (real time plus an offset; the sandbox's clock moves with it):
    the lanes ask together every 10 simulated seconds (30 rounds, 240 attempts; Airflow would retry a lane
    every 30 s at the soonest), and the clock moves 10 s after each round. The breaker lets one probe through
    per window: at 0, 60 and 180 s.
    """
    ups.set_knobs("ups", token_daily_quota=0)
    clock = MovableClock()

    def advance(seconds: float) -> None:
        clock.advance(seconds)
        ups.set_knobs("ups", clock_offset_seconds=clock.offset)

    hooks = [UpsHook(secret_store=SecretStore(ledger, clock=clock), retry=FAST) for _ in range(LANES)]
    outcomes: list[str] = []
    for _ in range(30):
        outcomes += run_lanes(hooks)
        advance(10)
    requests = ups.counters("ups")["token_quota_exceeded"]
    print(f"8 lanes, 5 refused minutes: {requests} token requests for {len(outcomes)} lane attempts")
    assert requests == ups.counters("ups")["rate_limited"] <= 3
    assert requests == 3  # windows of 60, 120, 240 s: probes at 0, 60 and 180 s
    assert set(outcomes) == {"RetryableApiError", "TokenRequestsRefused"}  # retryable, never a credential error
    assert outcomes.count("RetryableApiError") == requests  # the probes; every other attempt asked nothing
    breaker = hooks[0].secret_store.breaker(hooks[0].token_cache_key)
    assert breaker.reason == "quota" and breaker.refusals == 3

    # the quota is back: the first lane after the window gets a token and closes the breaker
    ups.set_knobs("ups", token_daily_quota=250)
    advance(breaker.until - clock())
    assert run_lanes(hooks) == ["token"] * LANES
    assert ups.counters("ups")["tokens_issued"] == 1
    assert hooks[0].secret_store.breaker(hooks[0].token_cache_key) is None
    # the next token lifetime: exactly one request again
    advance(3600)
    assert run_lanes(hooks) == ["token"] * LANES
    assert ups.counters("ups")["tokens_issued"] == 2 and requests == ups.counters("ups")["token_quota_exceeded"]


def test_a_waiting_lane_says_until_when_and_why_without_asking(ups_conn, ups, sqlite_ledger):
    ups.set_knobs("ups", token_daily_quota=0)
    with pytest.raises(RetryableApiError) as first:
        UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
    assert first.value.code == "10429" and first.value.status == 429
    hook = UpsHook(ledger=sqlite_ledger, retry=FAST)
    with pytest.raises(TokenRequestsRefused) as waiting:
        hook.validate_address(order().ship_to)
    until = hook.secret_store.breaker(hook.token_cache_key).until
    assert str(waiting.value) == (f"UPS token requests are refused until {time.strftime('%H:%M:%S', time.gmtime(until))}"
                                  " UTC (quota): waiting, not asking again")
    assert isinstance(waiting.value, RetryableError)  # Airflow's retry backoff applies
    counters = ups.counters("ups")
    assert counters["token_quota_exceeded"] == 1 and counters["xav_requests"] == 0
    for text in (str(first.value), str(waiting.value), hook.secret_store.breaker(hook.token_cache_key).reason):
        assert UPS_CLIENT_SECRET not in text


def test_a_wrong_secret_opens_no_breaker_and_is_not_retried(ups, sqlite_ledger, monkeypatch):
    """A refused client secret is a configuration error: each lane fails at once on one request, nothing waits."""
    wrong_secret(ups, monkeypatch)
    hooks = [UpsHook(ledger=sqlite_ledger, retry=FAST) for _ in range(LANES)]
    assert run_lanes(hooks) == ["AuthenticationError"] * LANES
    assert ups.counters("ups")["auth_failures"] == LANES  # one request per lane: no retry, no loop
    assert hooks[0].secret_store.breaker(hooks[0].token_cache_key) is None
    monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(ups.url("ups")))  # the secret is fixed
    assert run_lanes([UpsHook(ledger=sqlite_ledger, retry=FAST) for _ in range(LANES)]) == ["token"] * LANES
    assert ups.counters("ups")["tokens_issued"] == 1


@pytest.mark.parametrize("status", [429, 403, 400])
def test_10429_on_the_token_endpoint_is_a_quota_whatever_the_status(status, sqlite_ledger, monkeypatch):
    with Loopback() as server:
        server.route("POST", TOKEN_PATH, lambda r: Answer(status, {"response": {"errors": [
            {"code": "10429", "message": "Too Many Requests"}]}}))
        monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(server.url))
        with pytest.raises(RetryableApiError):
            UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
        with pytest.raises(TokenRequestsRefused, match=r"\(quota\)"):
            UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
        assert len(server.seen("POST", TOKEN_PATH)) == 1  # not retried in-process, not repeated by the next


def test_a_token_5xx_is_retried_then_opens_the_breaker(sqlite_ledger, monkeypatch):
    with Loopback() as server:
        server.route("POST", TOKEN_PATH, lambda r: Answer(503, "Service Unavailable"))
        monkeypatch.setenv("AIRFLOW_CONN_UPS_DEFAULT", ups_connection(server.url))
        with pytest.raises(RetryableApiError):
            UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
        assert len(server.seen("POST", TOKEN_PATH)) == FAST.attempts
        with pytest.raises(TokenRequestsRefused, match=r"\(HTTP 503\)"):
            UpsHook(ledger=sqlite_ledger, retry=FAST).get_token()
        assert len(server.seen("POST", TOKEN_PATH)) == FAST.attempts


def _refused_token_in_process(ledger_url: str, conn_json: str, barrier, outcomes) -> None:
    import os

    os.environ["AIRFLOW_CONN_UPS_DEFAULT"] = conn_json
    hook = UpsHook(ledger=Ledger(ledger_url), retry=FAST)
    barrier.wait()
    try:
        hook.get_token()
        outcomes.put("token")
    except Exception as exc:  # report, do not hang the others
        outcomes.put(type(exc).__name__)


@pytest.mark.xdist_group("many_processes")  # together they would pass PostgreSQL's 100 connections
def test_worker_processes_share_one_refused_token_request(ups, ledger_url):
    """8 processes (task workers) need a token at the same moment while the quota is spent: one request."""
    ups.set_knobs("ups", token_daily_quota=0)
    ctx = mp.get_context("fork")
    n = LANES
    barrier, outcomes = ctx.Barrier(n, timeout=120), ctx.Queue()
    Ledger(ledger_url)  # create the schema once, as the first task would
    conn = ups_connection(ups.url("ups"))
    procs = [ctx.Process(target=_refused_token_in_process, args=(ledger_url, conn, barrier, outcomes))
             for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * n
    assert sorted(outcomes.get(timeout=5) for _ in range(n)) == ["RetryableApiError"] + ["TokenRequestsRefused"] * 7
    assert ups.counters("ups")["token_quota_exceeded"] == 1 and ups.counters("ups")["tokens_issued"] == 0
