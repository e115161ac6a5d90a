"""Encrypted secret store: encryption at rest, key rotation, and one refresh across many processes."""

from __future__ import annotations

import multiprocessing as mp
import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, MultiFernet

from ml_connector.errors import ConfigurationError
from ml_connector.ledger import Ledger, schema
from ml_connector.secrets import SecretStore, load_fernet


def test_values_are_encrypted_at_rest(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("ups:token", "very-secret-token", expires_at=time.time() + 60)
    with ledger.read() as conn:
        stored = conn.execute(sa.select(schema.secrets.c.ciphertext)).scalar_one()
    assert "very-secret-token" not in stored
    assert store.get("ups:token").value == "very-secret-token"


def test_missing_key_gives_a_clear_error(monkeypatch):
    monkeypatch.delenv("ML_CONNECTOR_FERNET_KEYS", raising=False)
    with pytest.raises(ConfigurationError, match="ML_CONNECTOR_FERNET_KEYS is not set"):
        load_fernet()
    with pytest.raises(ConfigurationError, match="not a Fernet key"):
        load_fernet("not-a-key")


def test_rotation_reencrypts_with_the_first_key(ledger: Ledger):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    SecretStore(ledger, load_fernet(old)).put("exact:refresh", "r1")
    rotated = SecretStore(ledger, load_fernet(f"{new},{old}"))
    assert rotated.rotate() == 1
    only_new = SecretStore(ledger, MultiFernet([Fernet(new.encode())]))
    assert only_new.get("exact:refresh").value == "r1"
    with pytest.raises(ConfigurationError, match="cannot be decrypted"):
        SecretStore(ledger, load_fernet(old)).get("exact:refresh")


def test_fresh_value_is_served_from_cache(ledger: Ledger):
    store = SecretStore(ledger)
    calls = []

    def refresh(current):
        calls.append(current)
        return f"token-{len(calls)}", time.time() + 3600

    assert store.get_or_refresh("k", refresh) == "token-1"
    assert store.get_or_refresh("k", refresh) == "token-1"
    assert len(calls) == 1


def test_value_is_refreshed_inside_the_margin(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "old", expires_at=time.time() + 120)  # expires in 2 min, margin is 5 min
    assert store.get_or_refresh("k", lambda cur: ("new", time.time() + 3600)) == "new"


def test_forced_refresh_reuses_a_value_another_worker_already_replaced(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("k", "replaced-by-other-worker", expires_at=time.time() + 3600)
    value = store.get_or_refresh("k", lambda cur: pytest.fail("must not refresh"), force=True,
                                 stale_value="rejected-token")
    assert value == "replaced-by-other-worker"
    assert store.get_or_refresh("k", lambda cur: ("fresh", time.time() + 3600), force=True,
                                stale_value="replaced-by-other-worker") == "fresh"


def test_refresh_receives_the_previous_value_for_rotating_tokens(ledger: Ledger):
    store = SecretStore(ledger)
    store.put("exact:refresh", "refresh-1", expires_at=time.time() - 1)
    seen = []
    store.get_or_refresh("exact:refresh", lambda cur: (seen.append(cur.value) or "refresh-2", None))
    assert seen == ["refresh-1"] and store.get("exact:refresh").value == "refresh-2"


def _refresh_in_process(url: str, barrier, counter) -> None:
    store = SecretStore(Ledger(url))
    barrier.wait()

    def refresh(_current):
        with counter.get_lock():
            counter.value += 1
        time.sleep(0.2)  # a slow token endpoint widens the race window
        return "shared-token", time.time() + 3600

    assert store.get_or_refresh("ups:token", refresh) == "shared-token"


def test_many_processes_refresh_once(ledger: Ledger, ledger_url: str):
    ctx = mp.get_context("fork")
    n = 20
    barrier, counter = ctx.Barrier(n), ctx.Value("i", 0)
    procs = [ctx.Process(target=_refresh_in_process, args=(ledger_url, barrier, counter)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n
    assert counter.value == 1
