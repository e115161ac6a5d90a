"""``make demo`` helper for the Exact Online sandbox (found by convention by ``ml_connector_sandbox.devtools``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import requests

#: every seeded goods delivery is moved into the demo's interval
KEEP_IN_PLACE: tuple[str, ...] = ()


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE
                   ) -> list[tuple[str, str]]:
    """Touch every seeded goods delivery except ``keep`` to two minutes before ``interval_end``, through the
    sandbox's control endpoints only."""
    url = url.rstrip("/")
    when = (interval_end - timedelta(minutes=2)).isoformat()
    body: dict = {"modified_at": when}
    if keep:
        listed = requests.get(f"{url}/_sandbox/exact_online/deliveries", timeout=10)
        listed.raise_for_status()
        body["numbers"] = [d["number"] for d in listed.json() if d["number"] not in keep]
    answer = requests.post(f"{url}/_sandbox/exact_online/touch", json=body, timeout=10)
    answer.raise_for_status()
    return [(number, when) for number in answer.json()["touched"]]
