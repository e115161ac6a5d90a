"""``make demo`` helper for the SYSPRO sandbox (found by convention by ``ml_connector_sandbox.devtools``)."""

from __future__ import annotations

from datetime import datetime, timedelta

import requests

#: every seeded document is moved into the demo's interval
KEEP_IN_PLACE: tuple[str, ...] = ()


def place_released(url: str, interval_end: datetime, *, keep: tuple[str, ...] = KEEP_IN_PLACE,
                   spacing: timedelta = timedelta(seconds=10)) -> list[tuple[str, str]]:
    """Move the seeded documents into the minutes before ``interval_end`` through the sandbox's
    ``POST /_sandbox/syspro/place`` control endpoint (``{"at", "spacing_seconds"}``)."""
    if keep:
        raise SystemExit("the SYSPRO sandbox places every seeded document; --keep is not supported")
    at = (interval_end - timedelta(minutes=1)).isoformat()
    response = requests.post(f"{url.rstrip('/')}/_sandbox/syspro/place",
                             json={"at": at, "spacing_seconds": spacing.total_seconds()}, timeout=10)
    if response.status_code != 200:
        raise SystemExit(f"the SYSPRO sandbox refused to place its documents: {response.status_code} {response.text}")
    return [(str(number), at) for number in response.json().get("placed", [])]
