"""The UPS sandbox's fault knobs for unknown Ship outcomes: a 500 after the label, a slow answer, and a
reference index that lags behind purchases (and catches up when the sandbox clock moves)."""

from __future__ import annotations

import pytest
import requests
from tests.sandbox.ups.client import SHIPPER_NUMBER, UpsApi, ship_request

from ml_connector_sandbox.testing import SandboxServer


def test_error_after_label_answers_500_but_keeps_the_label(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", error_after_label_next=1)
    response = api.ship_response(ship_request())
    assert response.status_code == 500
    assert response.json()["response"]["errors"][0]["code"] == "190001"
    counters = ups.counters("ups")
    assert (counters["labels_created"], counters["ship_errors_after_label"]) == (1, 1)
    assert len(api.track_reference("SO-12345", shipperNum=SHIPPER_NUMBER)) == 1
    assert ups.knobs("ups")["error_after_label_next"] == 0
    assert api.ship_response(ship_request()).status_code == 200  # used up


def test_a_slow_ship_answer_outlasts_a_short_read_timeout_and_the_label_exists(api: UpsApi,
                                                                              ups: SandboxServer) -> None:
    ups.set_knobs("ups", ship_answer_delay_ms=1500)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.post(f"{api.base}/api/shipments/v2409/ship", json=ship_request(), headers=api.headers(),
                         timeout=(5, 0.3))
    assert ups.counters("ups")["labels_by_reference"] == {"SO-12345": 1}


def test_the_reference_index_lags_until_the_sandbox_clock_moves_on(api: UpsApi, ups: SandboxServer) -> None:
    ups.set_knobs("ups", reference_index_lag_seconds=600)
    number = api.ship()["ShipmentResults"]["PackageResults"][0]["TrackingNumber"]
    assert api.track_reference("SO-12345")[0]["warnings"][0]["code"] == "TW0001"  # not indexed yet
    assert api.track(number)["package"][0]["trackingNumber"] == number  # tracking by number works at once
    ups.set_knobs("ups", clock_offset_seconds=601.0)
    assert api.track_reference("SO-12345")[0]["package"][0]["trackingNumber"] == number
