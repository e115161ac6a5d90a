"""The ``bc_api`` fixture: a Business Central test client with a token, on the session sandbox reset for the test."""

from __future__ import annotations

import pytest
from tests.sandbox.business_central.client import VENDOR, Client


@pytest.fixture
def bc_api(sandbox):
    """A small client for one test: fresh sandbox state, one token."""
    sandbox.reset(VENDOR)
    client = Client(sandbox.url(VENDOR))
    client.token = client.fetch_token()
    yield client
    client.session.close()
