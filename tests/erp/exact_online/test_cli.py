"""`ml-connector exact-online authorize`: the sign-in URL, then the code exchange that stores the refresh token."""

from __future__ import annotations

import json

import requests

from ml_connector.cli import main
from ml_connector.erp.exact_online.hook import ExactOnlineHook
from ml_connector.ledger import Ledger


def test_authorize_prints_the_sign_in_url_then_stores_the_new_refresh_token(exact, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    redirect = "http://localhost:8080/exact/callback"
    assert main(["exact-online", "authorize", "--redirect-uri", redirect, "--ledger-url", url]) == 0
    sign_in = capsys.readouterr().out.split()[1]
    assert sign_in.startswith(exact.url("exact_online") + "/api/oauth2/auth?client_id=")
    # the person signs in; Exact redirects with the code
    answer = requests.get(sign_in, allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and answer.headers["location"].startswith(redirect)
    assert main(["exact-online", "authorize", "--redirect-uri", redirect, "--ledger-url", url,
                 "--code", answer.headers["location"]]) == 0
    assert "authorized" in capsys.readouterr().out
    hook = ExactOnlineHook(ledger=Ledger(url))
    stored = json.loads(hook.secret_store.get(hook.token_cache_key).value)["refresh_token"]
    assert exact.control("exact_online", "POST", "exact_online/refresh_token/check", {"refresh_token": stored})["valid"]
    assert exact.counters("exact_online")["code_exchanges"] == 1
    assert hook.get_item("a1000000-0000-4000-8000-000000000001")["Code"] == "BOOT"  # no refresh needed yet
    assert exact.counters("exact_online")["token_refreshes"] == 0


def test_a_wrong_code_is_refused(exact, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    assert main(["exact-online", "authorize", "--redirect-uri", "http://x/cb", "--ledger-url", url,
                 "--code", "not-the-code"]) == 1
    assert "refused" in capsys.readouterr().err
