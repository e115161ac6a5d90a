"""UpsHook against the UPS sandbox over real HTTP; every request it sends must validate against the UPS spec."""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa
from tests.conftest import UPS_ACCOUNT, ups_connection

from ml_connector import http
from ml_connector.carriers.ups.hook import UpsHook, _token_expiry
from ml_connector.errors import AmbiguousRequestError, AuthenticationError, PermanentApiError
from ml_connector.ledger import Ledger, schema
from ml_connector.models import (
    Address,
    AddressClassification,
    AddressStatus,
    Dimensions,
    Order,
    Package,
    TrackingStatus,
)
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
    return Order(erp="business_central", erp_id=f"id-{number}", number=number, ship_method="GROUND",
                 ship_to=Address(**address),
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
    ctx = mp.get_context("fork")
    n = 50
    barrier, errors = ctx.Barrier(n, timeout=120), ctx.Queue()
    Ledger(ledger_url)  # create the schema once, as the first task would
    conn = ups_connection(ups.url("ups"))
    procs = [ctx.Process(target=_token_in_process, args=(ledger_url, conn, barrier, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == [] and [p.exitcode for p in procs] == [0] * n
    assert ups.counters("ups")["tokens_issued"] == 1
