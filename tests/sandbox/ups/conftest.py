"""The ``api`` fixture: a UPS test client on the session sandbox, reset for each test."""

from __future__ import annotations

import pytest
from tests.sandbox.ups.client import UpsApi

from ml_connector_sandbox.testing import SandboxServer


@pytest.fixture
def api(ups: SandboxServer) -> UpsApi:
    """A test client bound to the freshly reset UPS sandbox."""
    return UpsApi(ups)
