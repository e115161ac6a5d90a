"""What every inbound webhook route shares: the ledger and the encrypted secret store, opened once per API server
process.

Webhook routes run inside Airflow's API server (the plugin in ``plugins/ml_connector_webhooks.py`` mounts each
registry vendor's ``webhook`` router under ``/ml-connector/webhooks/<vendor>``), not in a task: they store what
arrived in the ledger's webhook inbox and nothing else. Which ledger: ``$ML_CONNECTOR_LEDGER_URL`` when set (a
SQLAlchemy URL), else the Airflow connection ``ml_connector_ledger`` (else the default SQLite file under
``$AIRFLOW_HOME``), exactly as the tasks resolve it. The API server needs ``ML_CONNECTOR_FERNET_KEYS`` too:
credentials are stored encrypted.
"""

from __future__ import annotations

import os
import threading

from ml_connector.ledger import DEFAULT_CONN_ID, Ledger, resolve_ledger_url
from ml_connector.secrets import SecretStore

LEDGER_URL_ENV = "ML_CONNECTOR_LEDGER_URL"
#: the URL prefix the plugin mounts every vendor router under
PREFIX = "/ml-connector/webhooks"

_lock = threading.Lock()
_ledger: Ledger | None = None
_store: SecretStore | None = None


def ledger_url() -> str:
    """``$ML_CONNECTOR_LEDGER_URL``, else the URL of the Airflow connection ``ml_connector_ledger``."""
    return os.environ.get(LEDGER_URL_ENV) or resolve_ledger_url(DEFAULT_CONN_ID)


def ledger() -> Ledger:
    """The ledger of this process (opened, and migrated if behind, on first use)."""
    global _ledger
    with _lock:
        if _ledger is None:
            _ledger = Ledger(ledger_url())
        return _ledger


def secret_store() -> SecretStore:
    """The encrypted secret store over :func:`ledger` (webhook credentials live there)."""
    global _store
    current = ledger()
    with _lock:
        if _store is None or _store.ledger is not current:
            _store = SecretStore(current)
        return _store


def reset() -> None:
    """Forget the opened ledger (tests that point ``$ML_CONNECTOR_LEDGER_URL`` elsewhere)."""
    global _ledger, _store
    with _lock:
        _ledger = _store = None
