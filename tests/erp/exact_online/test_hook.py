"""ExactOnlineHook against the Exact Online sandbox: the rotating refresh token under the ledger lease, the
570-second rule, re-authorization, the division, $select, paging, rate limits and the error-count stop."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading

import pytest
import requests
from tests.conftest import at_once_in_processes
from tests.erp.exact_online.conftest import DIVISION, exact_connection

from ml_connector import http
from ml_connector.erp.exact_online.hook import ExactOnlineHook
from ml_connector.errors import AuthenticationError, ConfigurationError, RecordError, RetryableError
from ml_connector.ledger import Ledger
from ml_connector.secrets import SecretStore
from ml_connector_sandbox.exact_online import AUTHORIZATION_CODE

FAST = http.RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.05)
ITEM = "a1000000-0000-4000-8000-000000000001"


def stored_refresh_token(hook: ExactOnlineHook) -> str:
    return json.loads(hook.secret_store.get(hook.token_cache_key).value)["refresh_token"]


def sandbox_says_valid(sandbox, refresh_token: str) -> bool:
    return sandbox.control("exact_online", "POST", "exact_online/refresh_token/check",
                           {"refresh_token": refresh_token})["valid"]


def _token_in_process(ledger_url: str, conn_json: str, barrier, errors) -> None:
    os.environ["AIRFLOW_CONN_EXACT_ONLINE_DEFAULT"] = conn_json
    try:
        hook = ExactOnlineHook(ledger=Ledger(ledger_url), retry=FAST)
        barrier.wait()
        hook.get_token()
        hook.get_item(ITEM)  # the token works
    except Exception as exc:  # report, do not hang the barrier of the others
        errors.put(repr(exc))


@pytest.mark.xdist_group("many_processes")
def test_twenty_concurrent_tasks_make_exactly_one_refresh_and_store_the_newest_token(exact, ledger_url):
    Ledger(ledger_url)
    assert at_once_in_processes(20, _token_in_process, ledger_url, exact_connection(exact.url("exact_online"))) == []
    counters = exact.counters("exact_online")
    assert counters["token_refreshes"] == 1 and counters["token_refused"] == 0
    hook = ExactOnlineHook(ledger=Ledger(ledger_url))
    newest = stored_refresh_token(hook)
    assert sandbox_says_valid(exact, newest)  # the ledger holds the newest refresh token
    rows = Ledger(ledger_url).secret(hook.token_cache_key)
    assert newest not in rows.ciphertext  # stored encrypted


def test_twenty_threads_after_expiry_refresh_once_more_and_the_old_token_is_dead(exact, sqlite_ledger):
    now = [1_800_000_000.0]
    store = SecretStore(sqlite_ledger, clock=lambda: now[0])
    hooks = [ExactOnlineHook(ledger=sqlite_ledger, secret_store=store, retry=FAST) for _ in range(20)]
    hooks[0].get_token()
    first = stored_refresh_token(hooks[0])
    now[0] += 600  # the access token is due; Exact's clock moves on too
    exact.set_knobs("exact_online", clock_offset_seconds=600)
    barrier, outcomes = threading.Barrier(20), []

    def lane(hook: ExactOnlineHook) -> None:
        barrier.wait()
        try:
            hook.get_token()
            outcomes.append("token")
        except Exception as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=lane, args=(h,)) for h in hooks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert outcomes == ["token"] * 20
    assert exact.counters("exact_online")["token_refreshes"] == 2
    second = stored_refresh_token(hooks[0])
    assert second != first and sandbox_says_valid(exact, second) and not sandbox_says_valid(exact, first)


def test_no_refresh_is_sent_within_570_seconds_of_the_last(exact, sqlite_ledger):
    now = [1_800_000_000.0]
    store = SecretStore(sqlite_ledger, clock=lambda: now[0])
    hook = ExactOnlineHook(ledger=sqlite_ledger, secret_store=store, retry=FAST)
    token = hook.get_token()
    now[0] += 100
    with pytest.raises(RetryableError, match="one token refresh per 570 s"):
        hook.get_token(force=True, rejected=token)  # a 401 would force one: refused before any request
    assert exact.counters("exact_online")["token_refused"] == 0  # Exact never saw a too-early refresh
    assert exact.counters("exact_online")["token_refreshes"] == 1


def test_exacts_too_early_refusal_opens_the_breaker_not_a_credential_error(exact, sqlite_ledger):
    exact.set_knobs("exact_online", rotate_on_too_early=True)
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    hook.get_token()
    # another app on the same connection refreshed a moment ago: Exact says too early, with a new refresh token
    store = hook.secret_store
    entry = json.loads(store.get(hook.token_cache_key).value)
    entry.pop("refreshed_at")
    entry["access_token"] = None
    store.put(hook.token_cache_key, json.dumps(entry), expires_at=0.0)
    with pytest.raises(RetryableError):
        ExactOnlineHook(ledger=sqlite_ledger, retry=FAST).get_token()
    # the refresh token that came with the refusal was stored: it is the valid one
    assert sandbox_says_valid(exact, stored_refresh_token(hook))
    refused = exact.counters("exact_online")["token_refused"]
    with pytest.raises(RetryableError, match="one token refresh per 570 s"):  # not sent again at once
        ExactOnlineHook(ledger=sqlite_ledger, retry=FAST).get_token()
    assert exact.counters("exact_online")["token_refused"] == refused
    assert store.breaker(hook.token_cache_key) is not None  # every lane and worker waits, nobody asks


def test_a_refused_refresh_token_says_how_to_reauthorize(exact, sqlite_ledger, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT",
                       exact_connection(exact.url("exact_online"), refresh_token="revoked-token"))
    with pytest.raises(AuthenticationError) as caught:
        ExactOnlineHook(ledger=sqlite_ledger, retry=FAST).get_item(ITEM)
    message = str(caught.value)
    assert "re-authorize the app in the Exact App Center" in message
    assert "ml-connector exact-online authorize" in message and "revoked-token" not in message


def _refresh_then_die(ledger_url: str, conn_json: str) -> None:
    """Get the refresh answer, then die before the ledger stores it (a killed worker)."""
    os.environ["AIRFLOW_CONN_EXACT_ONLINE_DEFAULT"] = conn_json
    ledger = Ledger(ledger_url)
    ledger.put_secret = lambda *a, **k: os._exit(9)  # killed between the answer and the store
    ExactOnlineHook(ledger=ledger, secret_store=SecretStore(ledger, lease_seconds=0.5), retry=FAST).get_token()


def test_a_process_killed_between_refresh_and_store_leaves_a_clear_instruction(exact, sqlite_ledger):
    conn = exact_connection(exact.url("exact_online"))
    url = str(sqlite_ledger.url)
    proc = mp.get_context("fork").Process(target=_refresh_then_die, args=(url, conn))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 9 and exact.counters("exact_online")["token_refreshes"] == 1
    hook = ExactOnlineHook(ledger=sqlite_ledger, secret_store=SecretStore(sqlite_ledger, lease_seconds=0.5),
                           retry=FAST)
    with pytest.raises(AuthenticationError, match="ml-connector exact-online authorize"):
        hook.get_token()  # the dead process's lease expired; its refresh token was spent
    # what the message says to do works: the authorization-code exchange stores a new refresh token
    hook.exchange_code(AUTHORIZATION_CODE, "http://localhost/callback")
    assert sandbox_says_valid(exact, stored_refresh_token(hook))
    assert ExactOnlineHook(ledger=sqlite_ledger, retry=FAST).get_item(ITEM)["Code"] == "BOOT"


def test_division_from_current_me_when_the_extra_is_empty(exact, sqlite_ledger, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", exact_connection(exact.url("exact_online"), division=""))
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    assert hook.division == DIVISION
    ok, message = hook.test_connection()
    assert ok and "current division 123456" in message


def test_select_is_required_and_pages_are_followed(exact, sqlite_ledger):
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    token = hook.get_token()
    raw = requests.get(f"{exact.url('exact_online')}/api/v1/{DIVISION}/salesorder/GoodsDeliveries",
                       headers={"Authorization": f"Bearer {token}", "Accept": "application/json"}, timeout=10)
    assert raw.status_code == 400 and "Please add a $select" in raw.text
    assert "X-RateLimit-Minutely-Remaining" in raw.headers
    everything = list(hook.iter_all(f"{DIVISION}/salesorder/GoodsDeliveries",
                                    {"$select": "EntryID,DeliveryNumber,Modified"}))
    assert len(everything) == 9  # three pages of three through __next
    assert all(d["Modified"].startswith("/Date(") for d in everything)


def test_another_division_is_refused(exact, sqlite_ledger, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", exact_connection(exact.url("exact_online"), division="9"))
    with pytest.raises(AuthenticationError) as caught:
        ExactOnlineHook(ledger=sqlite_ledger, retry=FAST).get_item(ITEM)
    assert caught.value.code == "NoDivisionAccess"


def test_150_calls_stay_under_the_minutely_limit_without_a_429(exact, sqlite_ledger):
    exact.set_knobs("exact_online", minute_seconds=1.0, minute_limit=60)  # a short "minute", same semantics
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    for _ in range(150):
        hook.get_item(ITEM)
    assert exact.counters("exact_online")["rate_limited"] == 0  # the budget slowed the run down instead
    assert hook.rate_limited == 0 and hook.calls == 150


def test_a_429_waits_for_the_announced_reset(exact, sqlite_ledger):
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    hook.get_token()
    exact.set_knobs("exact_online", burst_429=1)
    assert hook.get_item(ITEM)["Code"] == "BOOT"
    assert hook.rate_limited == 1


def test_a_run_piling_up_error_answers_stops(exact, sqlite_ledger):
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    missing = "a1000000-0000-4000-8000-0000000000ff"
    for _ in range(8):
        assert hook.get_item(missing) is None  # 404s, counted
    with pytest.raises(ConfigurationError, match="Exact blocks an app after more than 10"):
        hook.get_item(missing)


def test_a_refused_field_keeps_exacts_message(exact, sqlite_ledger):
    exact.set_knobs("exact_online", refuse_fields="TrackingNumber")
    hook = ExactOnlineHook(ledger=sqlite_ledger, retry=FAST)
    entry = exact.control("exact_online", "GET", "exact_online/deliveries")[0]["entry_id"]
    with pytest.raises(RecordError, match="Field 'TrackingNumber' cannot be changed"):
        hook.update_goods_delivery(entry, {"TrackingNumber": "1Z999"})


def test_the_region_extra_picks_the_site_when_the_host_is_empty(sqlite_ledger, monkeypatch):
    conn = json.loads(exact_connection(""))
    conn.pop("host")
    conn["extra"]["region"] = "de"
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", json.dumps(conn))
    hook = ExactOnlineHook(ledger=sqlite_ledger)
    assert hook.base_url == "https://start.exactonline.de"
    assert hook.token_url == "https://start.exactonline.de/api/oauth2/token"
    conn["extra"]["region"] = "xx"
    monkeypatch.setenv("AIRFLOW_CONN_EXACT_ONLINE_DEFAULT", json.dumps(conn))
    with pytest.raises(ConfigurationError, match="region 'xx'"):
        _ = ExactOnlineHook(ledger=sqlite_ledger).base_url
