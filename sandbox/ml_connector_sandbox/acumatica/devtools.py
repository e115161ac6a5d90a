"""``make demo`` helper for the Acumatica sandbox (found by convention by ``ml_connector_sandbox.devtools``)."""

from __future__ import annotations

from datetime import datetime

import requests

from ml_connector_sandbox.devtools import touch_in_turn

#: the seeded shipment that stays where the seed put it (3 days old: only a backfill over that day finds it)
KEEP_IN_PLACE = ("000112",)


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE
                   ) -> list[tuple[str, str]]:
    """Touch every seeded shipment except ``keep`` to just before ``interval_end``, in number order, through
    the sandbox's control endpoints only."""
    url = url.rstrip("/")
    response = requests.get(f"{url}/_sandbox/acumatica/shipments", timeout=10)
    response.raise_for_status()
    numbers = sorted(s["ShipmentNbr"] for s in response.json() if s["ShipmentNbr"] not in keep)
    return touch_in_turn(f"{url}/_sandbox/acumatica/touch", numbers, interval_end, modified_field="LastModifiedDateTime")
