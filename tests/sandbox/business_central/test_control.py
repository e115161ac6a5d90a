"""Business Central throttling knobs and control endpoints."""

from __future__ import annotations

import pytest
import requests
from tests.sandbox.business_central.client import VENDOR, odata_code

# -- throttling ---------------------------------------------------------------------------------------


def test_429_burst_uses_bc_body_without_retry_after_by_default(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, burst_429=2)
    for _ in range(2):
        response = bc_api.get("companies")
        assert response.status_code == 429 and odata_code(response) == "Application_TooManyRequests"
        assert "Retry-After" not in response.headers
    assert bc_api.token_response().status_code == 200  # the Entra endpoint is another service
    assert bc_api.get("companies").status_code == 200
    assert sandbox.counters(VENDOR)["rate_limited"] == 2


def test_retry_after_header_comes_from_its_knob(sandbox, bc_api):
    sandbox.set_knobs(VENDOR, burst_429=1, retry_after_seconds=1)
    assert bc_api.get("companies").headers["Retry-After"] == "1"
    sandbox.set_knobs(VENDOR, retry_after_seconds=None)
    assert sandbox.knobs(VENDOR)["retry_after_seconds"] is None


def test_touch_endpoint_moves_modified_time_and_status(sandbox, bc_api):
    answer = sandbox.control(VENDOR, "POST", "business_central/touch",
                             {"number": "S-ORD101012", "status": "Open", "modified_at": "2026-11-01T10:00:00Z"})
    assert answer["status"] == "Open" and answer["lastModifiedDateTime"] == "2026-11-01T10:00:00Z"
    with pytest.raises(requests.HTTPError, match="404"):
        sandbox.control(VENDOR, "POST", "business_central/touch", {"number": "NOPE"})
