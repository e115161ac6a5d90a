"""``make demo`` helper for the Business Central sandbox (found by convention by ``ml_connector_sandbox.devtools``)."""

from __future__ import annotations

from datetime import datetime

import requests

from ml_connector_sandbox.devtools import touch_in_turn

#: the seeded order that stays where the seed put it (3 days old: only a backfill over that day finds it)
KEEP_IN_PLACE = ("S-ORD101011",)
#: Business Central API status of a released order (BC's own "Released" is "Open" in API v2.0)
RELEASED = "Open"


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE
                   ) -> list[tuple[str, str]]:
    """Touch the sandbox's released orders (except ``keep``) to just before ``interval_end``, in number order,
    through the sandbox's control endpoints only."""
    url = url.rstrip("/")
    response = requests.get(f"{url}/_sandbox/business_central/orders", timeout=10)
    response.raise_for_status()
    numbers = sorted(o["number"] for o in response.json() if o.get("status") == RELEASED and o["number"] not in keep)
    return touch_in_turn(f"{url}/_sandbox/business_central/touch", numbers, interval_end,
                         modified_field="lastModifiedDateTime")
