"""The common sandbox machinery seen through the UPS app: 429 bursts, latency, knobs, reset."""

from __future__ import annotations

import time

import pytest
import requests
from tests.sandbox.ups.client import UpsApi, assert_ups_error, tracking_numbers

from ml_connector_sandbox.testing import SandboxServer


# -- knobs -----------------------------------------------------------------------------------------
def test_burst_429_then_recovery_without_retry_after(api: UpsApi, ups: SandboxServer) -> None:
    api.token()  # the token endpoint is not part of the burst (it has its own quota)
    ups.set_knobs("ups", burst_429=2)
    for _ in range(2):
        response = api.track_response("1ZA1B2C30399999990")
        assert_ups_error(response, 429, "10429")
        assert "Retry-After" not in response.headers
        assert ups.counters("ups")["api_requests"] >= 1  # control endpoints are never throttled
    assert api.track("1ZA1B2C30399999990")["warnings"][0]["code"] == "TW0001"
    counters = ups.counters("ups")
    assert counters["rate_limited"] == 2
    assert ups.knobs("ups")["burst_429"] == 0


def test_latency_knob_delays_api_answers(api: UpsApi, ups: SandboxServer) -> None:
    api.token()
    ups.set_knobs("ups", latency_ms=250)
    started = time.monotonic()
    api.track("1ZA1B2C30399999990")
    assert time.monotonic() - started >= 0.2  # a loose lower bound only


def test_unknown_or_mistyped_knobs_are_refused(ups: SandboxServer) -> None:
    with pytest.raises(requests.HTTPError, match="crash_after_label_next"):
        ups.set_knobs("ups", crash_after_label=1)
    with pytest.raises(requests.HTTPError, match="latency_ms"):
        ups.set_knobs("ups", latency_ms="slow")


def test_reset_clears_state_counters_and_knobs(api: UpsApi, ups: SandboxServer) -> None:
    number = tracking_numbers(api.ship())[0]
    ups.set_knobs("ups", latency_ms=5, token_ttl_seconds=10)
    ups.reset("ups")
    assert ups.knobs("ups")["latency_ms"] == 0 and ups.knobs("ups")["token_ttl_seconds"] == 3599
    assert ups.counters("ups")["labels_created"] == 0
    api._token = None  # tokens are forgotten too
    assert "package" not in api.track(number)
