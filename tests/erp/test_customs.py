"""The shared rule for when an ERP source reads customs values (Exact Online, Acumatica)."""

from __future__ import annotations

import pytest

from ml_connector.erp.customs import wants_customs_values
from ml_connector.models import Address

US = Address(name="W", lines=["1 Main St"], city="Atlanta", state="GA", postal_code="30309", country="US")


@pytest.mark.parametrize(("mode", "ship_from", "country", "wanted"), [
    ("foreign", US, "CA", True), ("foreign", US, "us", False), ("foreign", US, "", False),
    ("foreign", None, "US", True),  # no ship-from: every shipment with a country counts as foreign
    ("always", US, "US", True), ("never", US, "CA", False),
])
def test_when_customs_values_are_read(mode, ship_from, country, wanted):
    assert wants_customs_values(mode, ship_from, country) is wanted
