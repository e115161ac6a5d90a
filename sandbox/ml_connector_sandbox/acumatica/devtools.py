"""``make demo`` helper for the Acumatica sandbox (found by convention by ``ml_connector_sandbox.devtools``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import requests

#: the seeded shipment that stays where the seed put it (3 days old: only a backfill over that day finds it)
KEEP_IN_PLACE = ("000112",)


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE,
                   spacing: timedelta = timedelta(seconds=10)) -> list[tuple[str, str]]:
    """Touch every seeded shipment except ``keep`` to just before ``interval_end`` (the newest one minute
    before it, the others ``spacing`` apart), through the sandbox's control endpoints only."""
    url = url.rstrip("/")
    response = requests.get(f"{url}/_sandbox/acumatica/shipments", timeout=10)
    response.raise_for_status()
    numbers = sorted(s["ShipmentNbr"] for s in response.json() if s["ShipmentNbr"] not in keep)
    placed = []
    for i, number in enumerate(numbers):
        when = interval_end - timedelta(minutes=1) - spacing * i
        touch = requests.post(f"{url}/_sandbox/acumatica/touch",
                              json={"number": number, "modified_at": when.isoformat()}, timeout=10)
        if touch.status_code != 200:
            raise SystemExit(f"sandbox refused to touch {number}: {touch.status_code} {touch.text}")
        placed.append((number, touch.json()["LastModifiedDateTime"]))
    return placed
